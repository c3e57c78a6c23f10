/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shares with prosecutors (docs/api.md, "Sharing"):
 *   POST /v1/cases/{id}/shares               {"prosecutor", "expires_at", "can_download"?,
 *                                            "exhibits"?: [exhibit references]} (lead, admin)
 *   GET  /v1/cases/{id}/shares               the case's shares (members, admins)
 *   POST /v1/cases/{id}/shares/{sid}/revoke  (lead, admin)
 *   GET  /v1/me/shares                       what is shared with the caller (prosecutors)
 * A share gives one prosecutor the whole case or the chosen exhibits, to
 * view (previews, metadata) or also to download originals, until it expires
 * or is revoked; then every route answers the prosecutor 403 share_ended
 * (ledgered). Creating and revoking are ledger entries (SHARED, SHARE_REVOKED).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dems/err.h"
#include "dems/limits.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define MAX_EXHIBITS 500

struct share_req {
    struct api_case c; /* first: api_case_load fills it */
    char prosecutor[DEMS_MAX_USERNAME + 1];
    char expires[24]; /* epoch seconds */
    char sid[24];
    bool can_download;
    char *refs; /* a PostgreSQL array literal of lower-cased exhibit references; NULL whole case */
    size_t nrefs;
};

static void share_req_free(void *p)
{
    struct share_req *s = p;
    free(s->refs);
    free(s);
}

static struct share_req *share_req_new(struct dems_req *req)
{
    struct share_req *s = calloc(1, sizeof(*s));
    if (s == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_req_set_data(req, s, share_req_free);
    return s;
}

/* ---- listing ---- */

/* $1 case id or NULL, $2 prosecutor id or NULL, $3 cursor, $4 limit, $5 share id or NULL. */
/* clang-format off */
#define SHARES_SQL                                                                                 \
    "SELECT s.id, s.case_id, c.reference AS case_reference, c.title AS case_title,"                \
    " p.username AS prosecutor, s.whole_case, s.can_download,"                                     \
    " " API_TS("s.expires_at") " AS expires_at, cb.username AS created_by,"                        \
    " " API_TS("s.created_at") " AS created_at, " API_TS("s.revoked_at") " AS revoked_at,"         \
    " rb.username AS revoked_by,"                                                                  \
    " CASE WHEN s.revoked_at IS NOT NULL THEN 'revoked' WHEN s.expires_at <= now()"                \
    "  THEN 'expired' ELSE 'live' END AS state,"                                                   \
    " (SELECT array_to_json(array_agg(x.reference ORDER BY x.id)) FROM share_exhibits se"          \
    "  JOIN exhibits x ON x.id = se.exhibit_id WHERE se.share_id = s.id)::text AS exhibits"        \
    " FROM shares s JOIN cases c ON c.id = s.case_id JOIN users p ON p.id = s.prosecutor"          \
    " JOIN users cb ON cb.id = s.created_by LEFT JOIN users rb ON rb.id = s.revoked_by"            \
    " WHERE ($1::bigint IS NULL OR s.case_id = $1::bigint)"                                        \
    " AND ($2::bigint IS NULL OR s.prosecutor = $2::bigint) AND s.id > $3::bigint"                 \
    " AND ($5::bigint IS NULL OR s.id = $5::bigint)"                                               \
    " ORDER BY s.id LIMIT $4::integer"
/* clang-format on */

static json_t *share_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_error_t jerr;
    json_t *ex = api_col_null(res, row, "exhibits")
                     ? json_null()
                     : json_loads(api_col(res, row, "exhibits"), 0, &jerr);
    json_t *o =
        json_pack("{s:I,s:I,s:s,s:s,s:s,s:b,s:b,s:s,s:s,s:s,s:s,s:o}", "id",
                  (json_int_t)api_col_int(res, row, "id"), "case_id",
                  (json_int_t)api_col_int(res, row, "case_id"), "case_reference",
                  api_col(res, row, "case_reference"), "case_title",
                  api_col(res, row, "case_title"), "prosecutor", api_col(res, row, "prosecutor"),
                  "whole_case", api_col_bool(res, row, "whole_case"), "can_download",
                  api_col_bool(res, row, "can_download"), "expires_at",
                  api_col(res, row, "expires_at"), "created_by", api_col(res, row, "created_by"),
                  "created_at", api_col(res, row, "created_at"), "state",
                  api_col(res, row, "state"), "exhibits", ex != NULL ? ex : json_null());
    if (o != NULL) {
        json_object_set_new(o, "revoked_at", api_col_json_str(res, row, "revoked_at"));
        json_object_set_new(o, "revoked_by", api_col_json_str(res, row, "revoked_by"));
    }
    return o;
}

static void on_shares(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "shares", "id", share_json);
}

static void list(struct dems_req *req, const char *case_id, const char *prosecutor)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {case_id, prosecutor, after, limit, NULL};
    int r = dems_db_req(req, SHARES_SQL, 5, params, on_shares);
    if (r < 0)
        dems_resp_err(req, r);
}

static void list_loaded(struct dems_req *req, struct api_case *c)
{
    list(req, c->id_s, NULL);
}

void api_shares_list(struct dems_req *req)
{
    if (share_req_new(req) != NULL)
        api_case_load(req, API_CASE_ADMIN | API_CASE_MEMBERS, list_loaded);
}

void api_shares_mine(struct dems_req *req)
{
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    list(req, NULL, uid);
}

/* ---- create ---- */

static void on_share_row(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "share_not_found", "no such share"))
        return;
    json_t *o = share_json(req, res, 0);
    if (o == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_resp_json(req,
                       dems_req_head(req)->method == DEMS_HTTP_POST &&
                               ((struct share_req *)dems_req_data(req))->sid[0] == '\0'
                           ? 201
                           : 200,
                       o);
}

/* Answers with share s->sid, or (just made: no id yet) the case's newest share. */
static void answer_share(struct dems_req *req, struct share_req *s)
{
    char sql[sizeof(SHARES_SQL) + 64];
    snprintf(sql, sizeof(sql), "SELECT * FROM (%s) q ORDER BY q.id DESC LIMIT 1", SHARES_SQL);
    const char *params[] = {s->c.id_s, NULL, "0", "1000000000", s->sid[0] != '\0' ? s->sid : NULL};
    int r = dems_db_req(req, sql, 5, params, on_share_row);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct share_req *s = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            api_case_changed(req, item, "the share");
        else
            answer_share(req, s);
    }
    dems_req_unref(req);
}

static void on_checked(struct dems_req *req, const PGresult *res, int err)
{
    struct share_req *s = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (api_col_null(res, 0, "prosecutor_id")) {
        dems_resp_error(req, 400, "not_a_prosecutor",
                        "field \"prosecutor\" must name an enabled prosecutor account");
        return;
    }
    if (s->refs != NULL && (size_t)api_col_int(res, 0, "found") != s->nrefs) {
        dems_resp_error(req, 400, "unknown_exhibit",
                        "field \"exhibits\" names an exhibit this case does not hold");
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    struct dems_ledger_item *it = api_case_item(req, &s->c, DEMS_LEDGER_SHARED);
    if (it != NULL) {
        json_t *ex = json_object_get(dems_req_json(req), "exhibits");
        it->payload =
            json_pack("{s:I,s:s,s:b,s:s,s:O}", "case_id", (json_int_t)s->c.id, "prosecutor",
                      s->prosecutor, "can_download", s->can_download, "expires_at",
                      api_col(res, 0, "expires_at"), "exhibits", ex != NULL ? ex : json_null());
        it->pre_sql =
            strdup("WITH s AS (INSERT INTO shares (case_id, prosecutor, whole_case, can_download,"
                   " expires_at, created_by) VALUES ($1::bigint, $2::bigint, $3::text IS NULL,"
                   " $4::boolean, to_timestamp($5::bigint), $6::bigint) RETURNING id)"
                   " INSERT INTO share_exhibits (share_id, exhibit_id) SELECT s.id, x.id FROM s, "
                   "exhibits x"
                   " WHERE x.case_id = $1::bigint AND x.removed_at IS NULL"
                   " AND lower(x.reference) = ANY ($3::text[])");
        it->pre_nparams = 6;
        it->pre_params[0] = strdup(s->c.id_s);
        it->pre_params[1] = strdup(api_col(res, 0, "prosecutor_id"));
        it->pre_params[2] = s->refs != NULL ? strdup(s->refs) : NULL;
        it->pre_params[3] = strdup(s->can_download ? "true" : "false");
        it->pre_params[4] = strdup(s->expires);
        it->pre_params[5] = strdup(uid);
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || (s->refs != NULL && it->pre_params[2] == NULL) ||
        it->pre_params[3] == NULL || it->pre_params[4] == NULL || it->pre_params[5] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_changed);
}

/* Reads "exhibits" (absent: the whole case) into s->refs. */
static bool read_exhibits(struct dems_req *req, struct share_req *s)
{
    json_t *v = json_object_get(dems_req_json(req), "exhibits");
    if (v == NULL)
        return true;
    if (!json_is_array(v) || json_array_size(v) > MAX_EXHIBITS) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"exhibits\" must be a list of up to 500 exhibit references");
        return false;
    }
    if (json_array_size(v) == 0) {
        dems_resp_error(req, 400, "empty_selection",
                        "field \"exhibits\" is empty: leave it out to share the whole case");
        return false;
    }
    size_t cap = json_array_size(v) * 36 + 3, n = 0;
    s->refs = malloc(cap);
    if (s->refs == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return false;
    }
    s->refs[n++] = '{';
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *r = json_string_value(json_array_get(v, i));
        size_t len = r != NULL ? strlen(r) : 0;
        bool ok = len >= 1 && len <= 32;
        for (size_t k = 0; ok && k < len; k++)
            ok = (r[k] >= 'A' && r[k] <= 'Z') || (r[k] >= 'a' && r[k] <= 'z') ||
                 (r[k] >= '0' && r[k] <= '9') || strchr("/._-", r[k]) != NULL;
        for (size_t k = 0; ok && k < i; k++)
            ok = strcasecmp(json_string_value(json_array_get(v, k)), r) != 0;
        if (!ok) {
            dems_resp_error(req, 400, "invalid_field",
                            "field \"exhibits\" must hold distinct exhibit references");
            return false;
        }
        if (i > 0)
            s->refs[n++] = ',';
        s->refs[n++] = '"';
        for (size_t k = 0; k < len; k++)
            s->refs[n++] = (char)(r[k] >= 'A' && r[k] <= 'Z' ? r[k] - 'A' + 'a' : r[k]);
        s->refs[n++] = '"';
    }
    s->refs[n++] = '}';
    s->refs[n] = '\0';
    s->nrefs = json_array_size(v);
    return true;
}

static void create_loaded(struct dems_req *req, struct api_case *c)
{
    struct share_req *s = (struct share_req *)c;
    if (!api_case_open(req, c))
        return;
    const char *pros;
    if (!api_get_str(req, "prosecutor", DEMS_MAX_USERNAME, true, &pros))
        return;
    json_t *dl = json_object_get(dems_req_json(req), "can_download");
    if (dl != NULL && !json_is_boolean(dl)) {
        dems_resp_error(req, 400, "invalid_field", "field \"can_download\" must be true or false");
        return;
    }
    s->can_download = json_is_true(dl);
    if (!api_case_expiry(req, s->expires))
        return;
    if (!dems_auth_username_ok(pros)) {
        dems_resp_error(req, 400, "not_a_prosecutor",
                        "field \"prosecutor\" must name an enabled prosecutor account");
        return;
    }
    snprintf(s->prosecutor, sizeof(s->prosecutor), "%s", pros);
    dems_auth_username_fold(s->prosecutor);
    if (!read_exhibits(req, s))
        return;
    const char *params[] = {s->prosecutor, c->id_s, s->refs, s->expires};
    int r = dems_db_req(
        req,
        "SELECT (SELECT id FROM users WHERE username = $1 AND role = 'prosecutor'"
        " AND NOT disabled) AS prosecutor_id,"
        " (SELECT count(*) FROM exhibits x WHERE x.case_id = $2::bigint AND x.removed_at IS NULL"
        "  AND lower(x.reference) = ANY ($3::text[])) AS found,"
        " " API_TS("to_timestamp($4::bigint)") " AS expires_at",
        4, params, on_checked);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_shares_create(struct dems_req *req)
{
    if (share_req_new(req) != NULL)
        api_case_load(req, API_CASE_MANAGERS, create_loaded);
}

/* ---- revoke ---- */

static void on_revoke_row(struct dems_req *req, const PGresult *res, int err)
{
    struct share_req *s = dems_req_data(req);
    if (!api_found(req, res, err, "share_not_found", "no such share of this case"))
        return;
    if (!api_col_null(res, 0, "revoked_at")) {
        dems_resp_error(req, 409, "share_revoked", "the share is revoked already");
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    const char *reason = json_string_value(json_object_get(dems_req_json(req), "reason"));
    struct dems_ledger_item *it = api_case_item(req, &s->c, DEMS_LEDGER_SHARE_REVOKED);
    if (it != NULL) {
        it->payload = json_pack("{s:I,s:I,s:s}", "case_id", (json_int_t)s->c.id, "share",
                                (json_int_t)api_id(s->sid, strlen(s->sid)), "prosecutor",
                                api_col(res, 0, "prosecutor"));
        if (it->payload != NULL && reason != NULL)
            dems_ledger_payload_set_text(it->payload, "reason", reason, strlen(reason), 1000);
        it->pre_sql = strdup("UPDATE shares SET revoked_at = now(), revoked_by = $2::bigint"
                             " WHERE id = $1::bigint AND revoked_at IS NULL");
        it->pre_nparams = 2;
        it->pre_must_change = true;
        it->pre_params[0] = strdup(s->sid);
        it->pre_params[1] = strdup(uid);
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_changed);
}

static void revoke_loaded(struct dems_req *req, struct api_case *c)
{
    struct share_req *s = (struct share_req *)c;
    const char *reason;
    if (!api_get_str(req, "reason", 500, false, &reason))
        return;
    struct dems_str p = dems_req_param(req, 1);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "share_not_found", "no such share of this case");
        return;
    }
    snprintf(s->sid, sizeof(s->sid), "%lld", (long long)id);
    const char *params[] = {s->sid, c->id_s};
    int r = dems_db_req(req,
                        "SELECT s.revoked_at, p.username AS prosecutor FROM shares s"
                        " JOIN users p ON p.id = s.prosecutor"
                        " WHERE s.id = $1::bigint AND s.case_id = $2::bigint",
                        2, params, on_revoke_row);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_shares_revoke(struct dems_req *req)
{
    if (share_req_new(req) != NULL)
        api_case_load(req, API_CASE_MANAGERS, revoke_loaded);
}
