/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Public submission links, as officers manage them (docs/api.md, "Public
 * submissions"; the public side is portal.c):
 *
 *   POST /v1/cases/{id}/submission-links              make a request (one submitter)
 *                                                     or an appeal (many); 201: the
 *                                                     token, shown this once
 *   GET  /v1/cases/{id}/submission-links              the case's links
 *   POST /v1/cases/{id}/submission-links/{lid}/revoke end one now
 *
 * The token (256 random bits, "dems_sl_...") is stored only as its SHA-256;
 * the link to send is /portal/#<token>, the token in the fragment so that
 * it never reaches a log or a Referer header. Making and revoking are ledger
 * entries (SUBMISSION_REQUESTED, SUBMISSION_LINK_REVOKED) naming the case.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/runtime.h"

#include "api_int.h"

#define GiB ((int64_t)1 << 30)
#define TiB (GiB << 10)

struct link_req {
    struct api_case c; /* first: api_case_load fills it */
    char lid[24];
    char expires[24];
    char token[DEMS_TOKEN_TEXT_MAX];
    char token_hex[65];
};

static void link_req_free(void *p)
{
    struct link_req *l = p;
    dems_memzero(l->token, sizeof(l->token));
    free(l);
}

static struct link_req *link_req_new(struct dems_req *req)
{
    struct link_req *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, l, link_req_free);
    return l;
}

/* ---- listing ---- */

/* $1 case id, $2 cursor, $3 limit, $4 link id or NULL. */
/* clang-format off */
#define LINKS_SQL                                                                                  \
    "SELECT l.id, l.kind, l.title, l.message, l.submitter_name, l.submitter_contact,"             \
    " l.contact_required, l.max_files, l.max_bytes, l.max_submissions, l.link_max_bytes,"          \
    " l.daily_max_bytes, l.max_concurrent, cb.username AS created_by,"                             \
    " " API_TS("l.created_at") " AS created_at, " API_TS("l.expires_at") " AS expires_at,"         \
    " " API_TS("l.revoked_at") " AS revoked_at, rb.username AS revoked_by,"                        \
    " CASE WHEN l.revoked_at IS NOT NULL THEN 'revoked' WHEN l.expires_at <= now()"                \
    "  THEN 'expired' ELSE 'live' END AS state,"                                                   \
    " (SELECT count(*) FROM submissions s WHERE s.link_id = l.id) AS submissions,"                 \
    " (SELECT coalesce(sum(u.length), 0) FROM uploads u JOIN submissions s"                        \
    "  ON s.id = u.owner_submission_id WHERE s.link_id = l.id AND u.state = 'complete')"           \
    "  AS bytes_received"                                                                          \
    " FROM submission_links l JOIN users cb ON cb.id = l.created_by"                               \
    " LEFT JOIN users rb ON rb.id = l.revoked_by"                                                  \
    " WHERE l.case_id = $1::bigint AND l.id > $2::bigint"                                          \
    " AND ($4::bigint IS NULL OR l.id = $4::bigint) ORDER BY l.id LIMIT $3::integer"
/* clang-format on */

static json_t *link_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_t *o =
        json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:{s:I,s:I,s:I,s:I,s:I,s:I},s:I,s:I}", "id",
                  (json_int_t)api_col_int(res, row, "id"), "kind", api_col(res, row, "kind"),
                  "state", api_col(res, row, "state"), "title", api_col(res, row, "title"),
                  "message", api_col(res, row, "message"), "created_by",
                  api_col(res, row, "created_by"), "created_at", api_col(res, row, "created_at"),
                  "contact_required", api_col_bool(res, row, "contact_required"), "limits",
                  "max_files", (json_int_t)api_col_int(res, row, "max_files"), "max_bytes",
                  (json_int_t)api_col_int(res, row, "max_bytes"), "max_submissions",
                  (json_int_t)api_col_int(res, row, "max_submissions"), "link_max_bytes",
                  (json_int_t)api_col_int(res, row, "link_max_bytes"), "daily_max_bytes",
                  (json_int_t)api_col_int(res, row, "daily_max_bytes"), "max_concurrent",
                  (json_int_t)api_col_int(res, row, "max_concurrent"), "submissions",
                  (json_int_t)api_col_int(res, row, "submissions"), "bytes_received",
                  (json_int_t)api_col_int(res, row, "bytes_received"));
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "expires_at", api_col_json_str(res, row, "expires_at"));
    json_object_set_new(o, "submitter_name", api_col_json_str(res, row, "submitter_name"));
    json_object_set_new(o, "submitter_contact", api_col_json_str(res, row, "submitter_contact"));
    json_object_set_new(o, "revoked_at", api_col_json_str(res, row, "revoked_at"));
    json_object_set_new(o, "revoked_by", api_col_json_str(res, row, "revoked_by"));
    return o;
}

static void on_links(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "links", "id", link_json);
}

static void list_loaded(struct dems_req *req, struct api_case *c)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {c->id_s, after, limit, NULL};
    int r = dems_db_req(req, LINKS_SQL, 4, params, on_links);
    if (r < 0)
        dems_resp_err(req, r);
}

/* The case's officers and administrators; not prosecutors (this is intake). */
#define LINK_READERS (API_CASE_ADMIN | API_CASE_MEMBERS)

void api_submission_links_list(struct dems_req *req)
{
    if (link_req_new(req) != NULL)
        api_case_load(req, LINK_READERS, list_loaded);
}

/* ---- one link, after a change ---- */

static void on_link_row(struct dems_req *req, const PGresult *res, int err)
{
    struct link_req *l = dems_req_data(req);
    if (!api_found(req, res, err, "link_not_found", "no such submission link"))
        return;
    json_t *o = link_json(req, res, 0);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    bool made = l->token[0] != '\0';
    if (made) {
        /* The only time the token exists outside the submitter's hands. */
        char path[DEMS_TOKEN_TEXT_MAX + 16];
        snprintf(path, sizeof(path), "/portal/#%s", l->token);
        json_object_set_new(o, "token", json_string(l->token));
        json_object_set_new(o, "path", json_string(path));
    }
    dems_resp_json(req, made ? 201 : 200, o);
}

static void on_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct link_req *l = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0) {
            api_case_changed(req, item, "the submission link");
        } else {
            const char *params[] = {l->c.id_s, "0", "1", l->lid};
            int r = dems_db_req(req, LINKS_SQL, 4, params, on_link_row);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

/* ---- make ---- */

#define INSERT_SQL                                                                                 \
    "INSERT INTO submission_links (id, case_id, kind, token_hash, title, message,"                 \
    " submitter_name, submitter_contact, contact_required, max_files, max_bytes,"                  \
    " max_submissions, link_max_bytes, daily_max_bytes, max_concurrent, created_by, expires_at)"   \
    " OVERRIDING SYSTEM VALUE VALUES ($1::bigint, $2::bigint, $3, decode($4, 'hex'), $5,"          \
    " coalesce($6, ''), $7, $8, $9::boolean, $10::integer, $11::bigint, $12::integer,"             \
    " $13::bigint, $14::bigint, $15::integer, $16::bigint, to_timestamp($17::bigint))"

/* The limits a link is made with: given, or defaults by kind. */
struct limits {
    int64_t max_files, max_bytes, max_submissions, link_max_bytes, daily_max_bytes, max_concurrent;
};

static bool read_limits(struct dems_req *req, bool appeal, struct limits *m)
{
    /* No per-file cap below Tus-Max-Size: a submission's bytes are bounded, not its files'. */
    int64_t def_bytes = 500 * GiB;
    if (!api_get_int(req, "max_files", 1, 1000, appeal ? 100 : 200, &m->max_files) ||
        !api_get_int(req, "max_bytes", 1, 1024 * TiB, def_bytes, &m->max_bytes) ||
        !api_get_int(req, "max_submissions", 1, appeal ? 100000 : 1, appeal ? 1000 : 1,
                     &m->max_submissions) ||
        !api_get_int(req, "link_max_bytes", 1, 1024 * TiB, appeal ? 20 * TiB : m->max_bytes,
                     &m->link_max_bytes) ||
        !api_get_int(req, "daily_max_bytes", 1, 1024 * TiB, m->link_max_bytes,
                     &m->daily_max_bytes) ||
        !api_get_int(req, "max_concurrent", 1, 1000, appeal ? 200 : 16, &m->max_concurrent))
        return false;
    return true;
}

static void on_ids(struct dems_req *req, const PGresult *res, int err)
{
    struct link_req *l = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    snprintf(l->lid, sizeof(l->lid), "%s", api_col(res, 0, "link_id"));
    json_t *body = dems_req_json(req);
    const char *kind = json_string_value(json_object_get(body, "kind"));
    bool appeal = strcmp(kind, "appeal") == 0;
    struct limits m;
    bool contact_required;
    if (!read_limits(req, appeal, &m) ||
        !api_get_bool(req, "contact_required", false, &contact_required))
        return;
    uint8_t hash[32];
    if (dems_token_new("sl", l->token, hash) < 0) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_hex_encode(hash, sizeof(hash), l->token_hex);
    struct dems_ledger_item *it = api_case_item(req, &l->c, DEMS_LEDGER_SUBMISSION_REQUESTED);
    if (it == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    const char *title = json_string_value(json_object_get(body, "title"));
    it->payload =
        json_pack("{s:I,s:I,s:s,s:s,s:I,s:I,s:I}", "case_id", (json_int_t)l->c.id, "link",
                  (json_int_t)api_id(l->lid, strlen(l->lid)), "kind", kind, "expires_at",
                  api_col(res, 0, "expires_at"), "max_files", (json_int_t)m.max_files, "max_bytes",
                  (json_int_t)m.max_bytes, "max_submissions", (json_int_t)m.max_submissions);
    if (it->payload != NULL)
        dems_ledger_payload_set_text(it->payload, "title", title, strlen(title), 800);
    const char *texts[] = {"message", "submitter_name", "submitter_contact"};
    char num[6][24];
    int64_t nums[] = {m.max_files,      m.max_bytes,       m.max_submissions,
                      m.link_max_bytes, m.daily_max_bytes, m.max_concurrent};
    for (int i = 0; i < 6; i++)
        snprintf(num[i], sizeof(num[i]), "%lld", (long long)nums[i]);
    const char *params[17] = {l->lid,
                              l->c.id_s,
                              kind,
                              l->token_hex,
                              title,
                              NULL,
                              NULL,
                              NULL,
                              contact_required ? "t" : "f",
                              num[0],
                              num[1],
                              num[2],
                              num[3],
                              num[4],
                              num[5],
                              l->c.who.user_id,
                              l->expires};
    for (int i = 0; i < 3; i++)
        params[5 + i] = json_string_value(json_object_get(body, texts[i]));
    _Static_assert(17 <= DEMS_LEDGER_PRE_MAX, "pre-statement parameters");
    it->pre_sql = strdup(INSERT_SQL);
    it->pre_nparams = 17;
    bool ok = it->payload != NULL && it->pre_sql != NULL;
    for (int i = 0; ok && i < 17; i++) {
        if (params[i] != NULL) {
            it->pre_params[i] = strdup(params[i]);
            ok = it->pre_params[i] != NULL;
        }
    }
    if (!ok) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_changed);
}

/* The link's end: portal_link_days ahead by default, at most portal_link_max_days (a
 * limit that may change at run time; the default never passes it). */
static bool link_expiry(struct dems_req *req, const struct dems_config *cfg, char out[static 24])
{
    struct dems_runtime *rt = malloc(sizeof(*rt));
    if (rt == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return false;
    }
    dems_runtime_get(rt);
    uint64_t max = rt->portal_link_max_days;
    free(rt);
    uint64_t def = cfg->portal_link_days < max ? cfg->portal_link_days : max;
    return api_expiry_field(req, def, max, "portal_link_max_days", out);
}
static void create_loaded(struct dems_req *req, struct api_case *c)
{
    struct link_req *l = (struct link_req *)c;
    const struct dems_config *cfg = dems_req_loop(req)->srv->cfg;
    const char *kind, *title, *message, *name, *contact;
    if (!api_case_open(req, c) || !api_get_str(req, "kind", 16, true, &kind) ||
        !api_get_str(req, "title", 200, true, &title) ||
        !api_get_str(req, "message", 4000, false, &message) ||
        !api_get_str(req, "submitter_name", 200, false, &name) ||
        !api_get_str(req, "submitter_contact", 200, false, &contact) ||
        !link_expiry(req, cfg, l->expires))
        return;
    if (strcmp(kind, "request") != 0 && strcmp(kind, "appeal") != 0) {
        dems_resp_error(req, 400, "invalid_field", "field \"kind\" must be request or appeal");
        return;
    }
    if (strcmp(kind, "appeal") == 0 && (name != NULL || contact != NULL)) {
        dems_resp_error(req, 400, "invalid_field",
                        "an appeal is for anyone: it names no submitter (submitter_name, "
                        "submitter_contact are for requests)");
        return;
    }
    /* The id first, to name the link in its entry; and the expiry as text. */
    const char *params[] = {l->expires};
    int r =
        dems_db_req(req,
                    "SELECT nextval(pg_get_serial_sequence('submission_links', 'id')) AS link_id,"
                    " " API_TS("to_timestamp($1::bigint)") " AS expires_at",
                    1, params, on_ids);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_submission_links_create(struct dems_req *req)
{
    if (link_req_new(req) != NULL)
        api_case_load(req, API_CASE_EDITORS, create_loaded);
}

/* ---- revoke ---- */

static void on_revoke_row(struct dems_req *req, const PGresult *res, int err)
{
    struct link_req *l = dems_req_data(req);
    if (!api_found(req, res, err, "link_not_found", "no such submission link of this case"))
        return;
    if (!api_col_null(res, 0, "revoked_at")) {
        dems_resp_error(req, 409, "link_revoked", "the link is revoked already");
        return;
    }
    const char *reason = json_string_value(json_object_get(dems_req_json(req), "reason"));
    struct dems_ledger_item *it = api_case_item(req, &l->c, DEMS_LEDGER_SUBMISSION_LINK_REVOKED);
    if (it != NULL) {
        it->payload = json_pack("{s:I,s:I}", "case_id", (json_int_t)l->c.id, "link",
                                (json_int_t)api_id(l->lid, strlen(l->lid)));
        if (it->payload != NULL && reason != NULL)
            dems_ledger_payload_set_text(it->payload, "reason", reason, strlen(reason), 1000);
        it->pre_sql =
            strdup("UPDATE submission_links SET revoked_at = now(),"
                   " revoked_by = $2::bigint WHERE id = $1::bigint AND revoked_at IS NULL");
        it->pre_nparams = 2;
        it->pre_must_change = true;
        it->pre_params[0] = strdup(l->lid);
        it->pre_params[1] = strdup(l->c.who.user_id);
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
    struct link_req *l = (struct link_req *)c;
    const char *reason;
    if (!api_get_str(req, "reason", 500, false, &reason))
        return;
    struct dems_str p = dems_req_param(req, 1);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "link_not_found", "no such submission link of this case");
        return;
    }
    snprintf(l->lid, sizeof(l->lid), "%lld", (long long)id);
    const char *params[] = {l->lid, c->id_s};
    int r = dems_db_req(req,
                        "SELECT revoked_at FROM submission_links WHERE id = $1::bigint"
                        " AND case_id = $2::bigint",
                        2, params, on_revoke_row);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_submission_links_revoke(struct dems_req *req)
{
    if (link_req_new(req) != NULL)
        api_case_load(req, API_CASE_EDITORS, revoke_loaded);
}
