/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disclosure links for the defence, as staff manage them (docs/api.md,
 * "Disclosure to the defence"; the holder's side is disclosure.c):
 *
 *   POST /v1/cases/{id}/disclosures              a prosecutor issues a link to chosen
 *                                                exhibits (201: the token, and the
 *                                                passcode if asked, shown this once)
 *   GET  /v1/cases/{id}/disclosures              the case's links (a prosecutor: their own)
 *   POST /v1/cases/{id}/disclosures/{did}/revoke the issuing prosecutor, the lead, an admin
 *
 * Issuing needs a live share with download rights covering every chosen
 * exhibit: the link hands the defence a court bundle of them, which is
 * queued with the link. The token (256 random bits) is stored only as its
 * SHA-256 and the optional passcode (10 digits, for the prosecutor to give
 * out of band) only as an Argon2id hash. Issuing and revoking are ledger
 * entries (DISCLOSED, DISCLOSURE_REVOKED) naming the case and the link.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define PASSCODE_DIGITS 10
#define MAX_LABEL       200

struct disc_req {
    struct api_case c; /* first: api_case_load fills it */
    struct dems_req *req;
    struct api_selection sel;
    char did[24]; /* the link: made (create) or named (revoke) */
    char bundle_id[24];
    char expires[24];      /* epoch seconds */
    char expires_text[24]; /* the same, RFC 3339 */
    char *chosen;          /* exhibit ids, a bigint[] literal */
    json_t *refs;          /* their references, for the entry */
    bool want_passcode;
    char token[DEMS_TOKEN_TEXT_MAX];
    char token_hex[65];
    char passcode[PASSCODE_DIGITS + 1];
    char passcode_hash[DEMS_PASSWORD_HASH_MAX];
    int hash_err;
};

static void disc_req_free(void *p)
{
    struct disc_req *d = p;
    api_selection_done(&d->sel);
    free(d->chosen);
    json_decref(d->refs);
    dems_memzero(d->token, sizeof(d->token));
    dems_memzero(d->passcode, sizeof(d->passcode));
    free(d);
}

static struct disc_req *disc_req_new(struct dems_req *req)
{
    struct disc_req *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    d->req = req;
    dems_req_set_data(req, d, disc_req_free);
    return d;
}

/* ---- listing ---- */

/* $1 case id, $2 issuer's user id or NULL (all), $3 cursor, $4 limit, $5 link id or NULL. */
/* clang-format off */
#define LINKS_SQL                                                                                  \
    "SELECT d.id, d.label, " API_TS("d.expires_at") " AS expires_at, cb.username AS created_by,"   \
    " " API_TS("d.created_at") " AS created_at, " API_TS("d.revoked_at") " AS revoked_at,"         \
    " rb.username AS revoked_by, d.passcode_hash IS NOT NULL AS passcode, d.bundle_id,"            \
    " d.passcode_failures,"                                                                        \
    " CASE WHEN d.revoked_at IS NOT NULL THEN 'revoked' WHEN d.locked_at IS NOT NULL"              \
    "  THEN 'locked' WHEN d.expires_at <= now() THEN 'expired' ELSE 'live' END AS state,"          \
    " (SELECT count(*) FROM disclosure_sessions s WHERE s.disclosure_id = d.id) AS opened,"        \
    " (SELECT " API_TS("max(s.created_at)") " FROM disclosure_sessions s"                          \
    "  WHERE s.disclosure_id = d.id) AS last_opened_at,"                                           \
    " (SELECT array_to_json(array_agg(x.reference ORDER BY x.id)) FROM disclosure_exhibits de"     \
    "  JOIN exhibits x ON x.id = de.exhibit_id WHERE de.disclosure_id = d.id)::text AS exhibits"   \
    " FROM disclosures d JOIN users cb ON cb.id = d.created_by"                                    \
    " LEFT JOIN users rb ON rb.id = d.revoked_by"                                                  \
    " WHERE d.case_id = $1::bigint AND ($2::bigint IS NULL OR d.created_by = $2::bigint)"          \
    " AND d.id > $3::bigint AND ($5::bigint IS NULL OR d.id = $5::bigint)"                         \
    " ORDER BY d.id LIMIT $4::integer"
/* clang-format on */

static json_t *link_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_error_t jerr;
    json_t *ex = json_loads(api_col(res, row, "exhibits"), JSON_DECODE_ANY, &jerr);
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:o}", "id", (json_int_t)api_col_int(res, row, "id"),
        "state", api_col(res, row, "state"), "expires_at", api_col(res, row, "expires_at"),
        "created_by", api_col(res, row, "created_by"), "created_at",
        api_col(res, row, "created_at"), "passcode_required", api_col_bool(res, row, "passcode"),
        "opened", (json_int_t)api_col_int(res, row, "opened"), "passcode_failures",
        (json_int_t)api_col_int(res, row, "passcode_failures"), "exhibits",
        json_is_array(ex) ? ex : json_array());
    if (o == NULL) {
        json_decref(ex);
        return NULL;
    }
    if (!json_is_array(ex))
        json_decref(ex);
    json_object_set_new(o, "label", api_col_json_str(res, row, "label"));
    json_object_set_new(o, "revoked_at", api_col_json_str(res, row, "revoked_at"));
    json_object_set_new(o, "revoked_by", api_col_json_str(res, row, "revoked_by"));
    json_object_set_new(o, "last_opened_at", api_col_json_str(res, row, "last_opened_at"));
    json_object_set_new(o, "bundle",
                        api_col_null(res, row, "bundle_id")
                            ? json_null()
                            : json_integer(api_col_int(res, row, "bundle_id")));
    return o;
}

static void on_links(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "disclosures", "id", link_json);
}

/* A prosecutor sees the links they issued; the case's staff and admins all of them. */
static const char *issuer_filter(const struct api_case *c)
{
    return strcmp(c->role, "prosecutor") == 0 ? c->who.user_id : NULL;
}

static void list_loaded(struct dems_req *req, struct api_case *c)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {c->id_s, issuer_filter(c), after, limit, NULL};
    int r = dems_db_req(req, LINKS_SQL, 5, params, on_links);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disclosures_list(struct dems_req *req)
{
    if (disc_req_new(req) != NULL)
        api_case_load(req, API_CASE_READERS, list_loaded);
}

/* ---- one link, after a change ---- */

static void on_link_row(struct dems_req *req, const PGresult *res, int err)
{
    struct disc_req *d = dems_req_data(req);
    if (!api_found(req, res, err, "disclosure_not_found", "no such disclosure link"))
        return;
    json_t *o = link_json(req, res, 0);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    bool made = d->token[0] != '\0';
    if (made) {
        /* The only time the token and passcode exist outside the holder's hands. */
        char path[DEMS_TOKEN_TEXT_MAX + 16];
        snprintf(path, sizeof(path), "/disclosure/#%s", d->token);
        json_object_set_new(o, "token", json_string(d->token));
        json_object_set_new(o, "path", json_string(path));
        if (d->want_passcode)
            json_object_set_new(o, "passcode", json_string(d->passcode));
    }
    dems_resp_json(req, made ? 201 : 200, o);
}

static void answer_link(struct dems_req *req, struct disc_req *d)
{
    const char *params[] = {d->c.id_s, NULL, "0", "1", d->did};
    int r = dems_db_req(req, LINKS_SQL, 5, params, on_link_row);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct disc_req *d = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            api_case_changed(req, item, "the disclosure link");
        else
            answer_link(req, d);
    }
    dems_req_unref(req);
}

/* ---- issue ---- */

/* Link, its exhibits and its bundle (with the job that makes it), in one statement. */
static const char issue_sql[] =
    "WITH d AS (INSERT INTO disclosures (id, case_id, token_sha256, passcode_hash, label,"
    " expires_at, created_by, bundle_id) OVERRIDING SYSTEM VALUE VALUES ($1::bigint,"
    " $2::bigint, $3, $4, $5, to_timestamp($6::bigint), $7::bigint, $8::bigint) RETURNING id),"
    " de AS (INSERT INTO disclosure_exhibits (disclosure_id, exhibit_id)"
    " SELECT d.id, e FROM d, unnest($9::bigint[]) e),"
    " j AS (SELECT dems_enqueue_job('bundle', jsonb_build_object('bundle', $8::bigint),"
    " 'bundle-' || $8::bigint, 0, NULL) AS job)"
    " INSERT INTO bundles (id, case_id, requested_by, exhibits, include_previews, job_id)"
    " OVERRIDING SYSTEM VALUE SELECT $8::bigint, $2::bigint, $7::bigint, $9::bigint[], false,"
    " j.job FROM j";

static void issue(struct disc_req *d)
{
    struct dems_req *req = d->req;
    const json_t *label = json_object_get(dems_req_json(req), "label");
    struct dems_ledger_item *it = api_case_item(req, &d->c, DEMS_LEDGER_DISCLOSED);
    if (it != NULL) {
        it->payload =
            json_pack("{s:I,s:I,s:I,s:O,s:s,s:b}", "case_id", (json_int_t)d->c.id, "disclosure",
                      (json_int_t)api_id(d->did, strlen(d->did)), "bundle",
                      (json_int_t)api_id(d->bundle_id, strlen(d->bundle_id)), "exhibits", d->refs,
                      "expires_at", d->expires_text, "passcode", d->want_passcode);
        if (it->payload != NULL && label != NULL)
            dems_ledger_payload_set_text(it->payload, "label", json_string_value(label),
                                         json_string_length(label), MAX_LABEL * 4);
        it->pre_sql = strdup(issue_sql);
        it->pre_nparams = 9;
        it->pre_params[0] = strdup(d->did);
        it->pre_params[1] = strdup(d->c.id_s);
        it->pre_params[2] = strdup(d->token_hex);
        it->pre_params[3] = d->want_passcode ? strdup(d->passcode_hash) : NULL;
        it->pre_params[4] = label != NULL ? strdup(json_string_value(label)) : NULL;
        it->pre_params[5] = strdup(d->expires);
        it->pre_params[6] = strdup(d->c.who.user_id);
        it->pre_params[7] = strdup(d->bundle_id);
        it->pre_params[8] = strdup(d->chosen);
    }
    bool ok = it != NULL && it->payload != NULL && it->pre_sql != NULL;
    for (int i = 0; ok && i < 9; i++)
        ok = it->pre_params[i] != NULL || i == 3 || i == 4;
    ok = ok && (!d->want_passcode || it->pre_params[3] != NULL) &&
         (label == NULL || it->pre_params[4] != NULL);
    if (!ok) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_changed);
}

static void hash_work(void *arg)
{
    struct disc_req *d = dems_req_data(arg);
    d->hash_err = dems_password_hash(d->passcode, strlen(d->passcode), false, d->passcode_hash);
}

static void hash_done(void *arg)
{
    struct dems_req *req = arg;
    struct disc_req *d = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (d->hash_err < 0)
            dems_resp_err(req, d->hash_err);
        else
            issue(d);
    }
    dems_req_unref(req);
}

static void on_chosen(struct dems_req *req, const PGresult *res, int err)
{
    struct disc_req *d = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (api_col_int(res, 0, "unknown") > 0) {
        dems_resp_error(req, 400, "exhibit_not_in_case",
                        "an exhibit of the selection is not a current exhibit of this case shared "
                        "with you with download rights");
        return;
    }
    if (api_col_int(res, 0, "nchosen") == 0) {
        dems_resp_error(req, 400, "empty_selection",
                        "the case has no exhibit shared with you that you may disclose");
        return;
    }
    json_error_t jerr;
    d->chosen = strdup(api_col(res, 0, "chosen"));
    d->refs = json_loads(api_col(res, 0, "refs"), 0, &jerr);
    snprintf(d->did, sizeof(d->did), "%s", api_col(res, 0, "link_id"));
    snprintf(d->bundle_id, sizeof(d->bundle_id), "%s", api_col(res, 0, "bundle_id"));
    snprintf(d->expires_text, sizeof(d->expires_text), "%s", api_col(res, 0, "expires_at"));
    uint8_t hash[32];
    if (d->chosen == NULL || !json_is_array(d->refs) || dems_token_new("dl", d->token, hash) < 0) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_hex_encode(hash, sizeof(hash), d->token_hex);
    if (!d->want_passcode) {
        issue(d);
        return;
    }
    /* Argon2id is slow by design: off the loop. */
    dems_passcode_new(d->passcode, PASSCODE_DIGITS);
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), hash_work, hash_done, req) < 0) {
        dems_req_unref(req);
        dems_resp_err(req, DEMS_ENOMEM);
    }
}

static void create_loaded(struct dems_req *req, struct api_case *c)
{
    struct disc_req *d = (struct disc_req *)c;
    if (!c->can_download) {
        dems_auth_refuse(req, "share without download rights", 403, "forbidden",
                         "your share of this case does not allow downloads, so you may not "
                         "disclose its exhibits");
        return;
    }
    const char *label;
    if (!api_get_str(req, "label", MAX_LABEL, false, &label) || !api_case_expiry(req, d->expires))
        return;
    json_t *pc = json_object_get(dems_req_json(req), "passcode");
    if (pc != NULL && !json_is_boolean(pc)) {
        dems_resp_error(req, 400, "invalid_field", "field \"passcode\" must be true or false");
        return;
    }
    d->want_passcode = json_is_true(pc);
    if (!api_selection_read(req, &d->sel))
        return;
    const char *params[] = {c->id_s,    c->who.user_id, d->sel.all ? "t" : "f",
                            d->sel.ids, d->sel.refs,    d->expires};
    /* The exhibits this prosecutor may disclose (shared with download rights), the
     * chosen ones, the named ones not among them, and the ids the link and its
     * bundle will have. */
    int r = dems_db_req(
        req,
        "WITH x AS (SELECT x.id, x.reference, lower(x.reference) AS ref FROM exhibits x"
        " WHERE x.case_id = $1::bigint AND " API_EXHIBIT_SEEN_SQL(
            "x", "'prosecutor'", "$2",
            "ss.can_download") "),"
                               " pick AS (SELECT x.id, x.reference FROM x WHERE $3::boolean"
                               " OR x.id = ANY ($4::bigint[]) OR x.ref = ANY ($5::text[]))"
                               " SELECT (SELECT array_agg(id ORDER BY id) FROM pick)::text AS "
                               "chosen,"
                               " (SELECT array_to_json(array_agg(reference ORDER BY id))"
                               "  FROM pick)::text AS refs,"
                               " (SELECT count(*) FROM pick) AS nchosen,"
                               " (SELECT count(*) FROM unnest($4::bigint[]) i"
                               "  WHERE i NOT IN (SELECT id FROM x))"
                               " + (SELECT count(*) FROM unnest($5::text[]) f"
                               "  WHERE f NOT IN (SELECT ref FROM x)) AS unknown,"
                               " nextval(pg_get_serial_sequence('disclosures', 'id')) AS link_id,"
                               " nextval(pg_get_serial_sequence('bundles', 'id')) AS bundle_id,"
                               " " API_TS("to_timestamp($6::bigint)") " AS expires_at",
        6, params, on_chosen);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disclosures_create(struct dems_req *req)
{
    if (disc_req_new(req) != NULL)
        api_case_load(req, API_CASE_PROSECUTOR, create_loaded);
}

/* ---- revoke ---- */

static void on_revoke_row(struct dems_req *req, const PGresult *res, int err)
{
    struct disc_req *d = dems_req_data(req);
    if (!api_found(req, res, err, "disclosure_not_found", "no such disclosure link of this case"))
        return;
    if (!api_col_null(res, 0, "revoked_at")) {
        dems_resp_error(req, 409, "disclosure_revoked", "the link is revoked already");
        return;
    }
    const char *reason = json_string_value(json_object_get(dems_req_json(req), "reason"));
    struct dems_ledger_item *it = api_case_item(req, &d->c, DEMS_LEDGER_DISCLOSURE_REVOKED);
    if (it != NULL) {
        it->payload = json_pack("{s:I,s:I}", "case_id", (json_int_t)d->c.id, "disclosure",
                                (json_int_t)api_id(d->did, strlen(d->did)));
        if (it->payload != NULL && reason != NULL)
            dems_ledger_payload_set_text(it->payload, "reason", reason, strlen(reason), 1000);
        it->pre_sql = strdup("UPDATE disclosures SET revoked_at = now(), revoked_by = $2::bigint"
                             " WHERE id = $1::bigint AND revoked_at IS NULL");
        it->pre_nparams = 2;
        it->pre_must_change = true;
        it->pre_params[0] = strdup(d->did);
        it->pre_params[1] = strdup(d->c.who.user_id);
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
    struct disc_req *d = (struct disc_req *)c;
    const char *reason;
    if (!api_get_str(req, "reason", 500, false, &reason))
        return;
    struct dems_str p = dems_req_param(req, 1);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "disclosure_not_found", "no such disclosure link of this case");
        return;
    }
    snprintf(d->did, sizeof(d->did), "%lld", (long long)id);
    /* A prosecutor may revoke only the links they issued. */
    const char *params[] = {d->did, c->id_s, issuer_filter(c)};
    int r = dems_db_req(req,
                        "SELECT revoked_at FROM disclosures WHERE id = $1::bigint"
                        " AND case_id = $2::bigint AND ($3::bigint IS NULL"
                        " OR created_by = $3::bigint)",
                        3, params, on_revoke_row);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disclosures_revoke(struct dems_req *req)
{
    if (disc_req_new(req) != NULL)
        api_case_load(req, API_CASE_MANAGERS | API_CASE_PROSECUTOR, revoke_loaded);
}
