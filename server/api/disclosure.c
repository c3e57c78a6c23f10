/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A disclosure link as its holder (the defence, no account) uses it
 * (docs/api.md, "Disclosure to the defence"; issuing is disclosures.c):
 *
 *   POST /v1/disclosure/open       {"token", "passcode"?} → a session: the
 *                                  HttpOnly dems_disclosure cookie (Path=/v1/disclosure)
 *   GET  /v1/disclosure            the case, the link and its exhibits with hashes
 *   GET  /v1/disclosure/bundle     the court bundle's progress, size and SHA-256
 *   GET  /v1/disclosure/bundle/content                      the bundle (ranges)
 *   GET  /v1/disclosure/exhibits/{xid}/preview|poster|thumbnails|sprite.jpg
 *
 * The token is a bearer secret that only ever travels in a request body
 * (the page keeps it in the URL fragment, which browsers never send), so it
 * never reaches a log or a Referer. A link with a passcode needs it too;
 * five wrong passcodes lock the link for good. Opening, reading the list,
 * the first view of each preview and every bundle download are ledger
 * entries by the actor {"kind": "link", "id": "disclosure/<id>"}, made before
 * anything is shown; once the link is revoked, expired or locked every route
 * answers 410 link_ended, and that refusal is ledgered too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define MAX_FAILURES     5 /* wrong passcodes before a link locks */
#define MAX_FAILURES_SQL "5"
#define MAX_PASSCODE     32
#define SESSION_TTL      "12 hours"

/* The state of a link as SQL (d: disclosures). */
#define LINK_STATE                                                                                 \
    "CASE WHEN d.revoked_at IS NOT NULL THEN 'revoked' WHEN d.locked_at IS NOT NULL THEN 'locked'" \
    " WHEN d.expires_at <= now() THEN 'expired' ELSE 'live' END"

static void link_actor(int64_t id, char out[static 40])
{
    snprintf(out, 40, "disclosure/%lld", (long long)id);
}

/* Answers 410 link_ended for link id in state, ledgered against the link. */
static void refuse_ended(struct dems_req *req, int64_t id, const char *state)
{
    char actor[40], detail[120];
    link_actor(id, actor);
    snprintf(detail, sizeof(detail), "this disclosure link has ended (%s)", state);
    dems_auth_refuse_as(req, DEMS_LEDGER_ACTOR_LINK, actor, "disclosure link ended", 410,
                        "link_ended", detail);
}

/* A ledger item by the link holder of link id, about case reference case_ref. */
static struct dems_ledger_item *link_item(enum dems_ledger_type type, int64_t id,
                                          const char *case_ref)
{
    char actor[40];
    link_actor(id, actor);
    struct dems_ledger_item *it = dems_ledger_item_new(type, DEMS_LEDGER_ACTOR_LINK, actor);
    if (it != NULL && case_ref != NULL)
        snprintf(it->case_id, sizeof(it->case_id), "%s", case_ref);
    return it;
}

/* ---- POST /v1/disclosure/open ---- */

struct open_req {
    struct dems_req *req;
    int64_t id;
    char id_s[24];
    char case_ref[72];
    char hash[DEMS_PASSWORD_HASH_MAX];
    char passcode[MAX_PASSCODE + 1];
    bool passcode_ok;
    char session[DEMS_TOKEN_TEXT_MAX];
    char session_hex[65];
    char expires_at[24];
    uint64_t max_age;
};

static void open_req_free(void *p)
{
    struct open_req *o = p;
    dems_memzero(o->passcode, sizeof(o->passcode));
    dems_memzero(o->session, sizeof(o->session));
    free(o);
}

static void on_session_recorded(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct open_req *o = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ENOTFOUND) {
            refuse_ended(req, o->id, "revoked, expired or locked meanwhile");
        } else if (item->err < 0) {
            dems_resp_error(req, 503, "ledger_unavailable",
                            "the opening could not be recorded, so the link stays shut");
        } else {
            char cookie[200];
            if (dems_auth_disclosure_cookie_format(o->session, o->max_age, cookie,
                                                   sizeof(cookie)) == 0)
                dems_resp_header(req, "Set-Cookie", cookie);
            dems_resp_json(req, 200,
                           json_pack("{s:I,s:s,s:s,s:I}", "disclosure", (json_int_t)o->id,
                                     "case_reference", o->case_ref, "expires_at", o->expires_at,
                                     "session_seconds", (json_int_t)o->max_age));
        }
    }
    dems_req_unref(req);
}

/* The right token (and passcode): a session, recorded with the opening. */
static void open_session(struct dems_req *req, struct open_req *o)
{
    uint8_t hash[32];
    if (dems_token_new("ds", o->session, hash) < 0) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_hex_encode(hash, sizeof(hash), o->session_hex);
    const char *peer = dems_req_peer(req);
    struct dems_ledger_item *it = link_item(DEMS_LEDGER_DISCLOSURE_OPENED, o->id, o->case_ref);
    if (it != NULL) {
        it->payload = json_pack("{s:I}", "disclosure", (json_int_t)o->id);
        if (it->payload != NULL)
            dems_ledger_payload_set_text(it->payload, "address", peer, strlen(peer), 64);
        /* Only while the link is live: a revocation that won the race leaves no session. */
        it->pre_sql =
            strdup("INSERT INTO disclosure_sessions (disclosure_id, token_hash, address,"
                   " expires_at) SELECT d.id, decode($2, 'hex'), left($3, 64),"
                   " least(d.expires_at, now() + interval '" SESSION_TTL "')"
                   " FROM disclosures d WHERE d.id = $1::bigint AND " LINK_STATE " = 'live'");
        it->pre_nparams = 3;
        it->pre_must_change = true;
        it->pre_params[0] = strdup(o->id_s);
        it->pre_params[1] = strdup(o->session_hex);
        it->pre_params[2] = strdup(peer);
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || it->pre_params[2] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_session_recorded);
}

static void on_failure_counted(struct dems_req *req, const PGresult *res, int err)
{
    struct open_req *o = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    char actor[40];
    link_actor(o->id, actor);
    if (PQntuples(res) != 1 || api_col_bool(res, 0, "locked")) {
        dems_auth_refuse_as(req, DEMS_LEDGER_ACTOR_LINK, actor,
                            "wrong disclosure passcode: link locked", 410, "link_ended",
                            "this disclosure link has ended (locked after too many wrong "
                            "passcodes); ask the prosecutor for a new one");
        return;
    }
    char detail[120];
    snprintf(detail, sizeof(detail), "the passcode is wrong; %lld attempts are left",
             (long long)(MAX_FAILURES - api_col_int(res, 0, "passcode_failures")));
    dems_auth_refuse_as(req, DEMS_LEDGER_ACTOR_LINK, actor, "wrong disclosure passcode", 401,
                        "passcode_wrong", detail);
}

static void verify_work(void *arg)
{
    struct open_req *o = dems_req_data(arg);
    o->passcode_ok = dems_password_verify(o->hash, o->passcode, strlen(o->passcode));
}

static void verify_done(void *arg)
{
    struct dems_req *req = arg;
    struct open_req *o = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (o->passcode_ok) {
            open_session(req, o);
        } else {
            /* Counted in one statement, so parallel guesses cannot pass the bound. */
            const char *params[] = {o->id_s};
            int r = dems_db_req(req,
                                "UPDATE disclosures SET passcode_failures = passcode_failures + 1,"
                                " locked_at = CASE WHEN passcode_failures + 1 >= " MAX_FAILURES_SQL
                                " THEN now() END"
                                " WHERE id = $1::bigint AND locked_at IS NULL"
                                " RETURNING passcode_failures, locked_at IS NOT NULL AS locked",
                                1, params, on_failure_counted);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

static void on_link(struct dems_req *req, const PGresult *res, int err)
{
    struct open_req *o = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) != 1) {
        dems_auth_refuse(req, "unknown disclosure link", 404, "link_not_found",
                         "no such disclosure link");
        return;
    }
    o->id = api_col_int(res, 0, "id");
    snprintf(o->id_s, sizeof(o->id_s), "%lld", (long long)o->id);
    snprintf(o->case_ref, sizeof(o->case_ref), "%s", api_col(res, 0, "case_reference"));
    snprintf(o->expires_at, sizeof(o->expires_at), "%s", api_col(res, 0, "expires_at"));
    int64_t age = api_col_int(res, 0, "max_age");
    o->max_age = age > 0 ? (uint64_t)age : 1;
    if (strcmp(api_col(res, 0, "state"), "live") != 0) {
        refuse_ended(req, o->id, api_col(res, 0, "state"));
        return;
    }
    if (api_col_null(res, 0, "passcode_hash")) {
        open_session(req, o);
        return;
    }
    if (o->passcode[0] == '\0') {
        dems_resp_error(
            req, 401, "passcode_required",
            "this link needs the passcode the prosecutor gave you (field \"passcode\")");
        return;
    }
    snprintf(o->hash, sizeof(o->hash), "%s", api_col(res, 0, "passcode_hash"));
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), verify_work, verify_done, req) < 0) {
        dems_req_unref(req);
        dems_resp_err(req, DEMS_ENOMEM);
    }
}

/* A token's text: the prefix and base64url, as dems_token_new writes it. */
static void open_admitted(struct dems_req *req);

/* Guessing tokens or passcodes is bounded per client address (rate.c). */
void api_disclosure_open(struct dems_req *req)
{
    api_rate_take(req, "disclosure-open", open_admitted);
}

static void open_admitted(struct dems_req *req)
{
    struct open_req *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    o->req = req;
    dems_req_set_data(req, o, open_req_free);
    const char *token, *passcode;
    if (!api_get_str(req, "token", DEMS_TOKEN_TEXT_MAX - 1, true, &token) ||
        !api_get_str(req, "passcode", MAX_PASSCODE, false, &passcode))
        return;
    if (!api_token_text_ok(token)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"token\" is not a disclosure link's token");
        return;
    }
    if (passcode != NULL)
        snprintf(o->passcode, sizeof(o->passcode), "%s", passcode);
    uint8_t hash[32];
    char hex[65];
    dems_token_hash(token, strlen(token), hash);
    dems_hex_encode(hash, sizeof(hash), hex);
    const char *params[] = {hex};
    int r = dems_db_req(
        req,
        "SELECT d.id, c.reference AS case_reference, d.passcode_hash,"
        " " API_TS(
            "d.expires_at") " AS expires_at, " LINK_STATE " AS state,"
                            " extract(epoch FROM least(d.expires_at, now() + interval '" SESSION_TTL
                            "') - now())"
                            "::bigint AS max_age"
                            " FROM disclosures d JOIN cases c ON c.id = d.case_id WHERE "
                            "d.token_sha256 = $1",
        1, params, on_link);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- the holder's session: the link it opened, while live ---- */

struct link;
typedef void (*link_cb)(struct dems_req *req, struct link *l);

/* What every cookie route knows of its link; first member of its request data. */
struct link {
    int64_t id;
    char id_s[24];
    char case_id[24];
    char case_ref[72];
    link_cb next;
};

static void on_link_state(struct dems_req *req, const PGresult *res, int err)
{
    struct link *l = dems_req_data(req);
    if (!api_found(req, res, err, "link_not_found", "no such disclosure link"))
        return;
    if (strcmp(api_col(res, 0, "state"), "live") != 0) {
        refuse_ended(req, l->id, api_col(res, 0, "state"));
        return;
    }
    snprintf(l->case_id, sizeof(l->case_id), "%s", api_col(res, 0, "case_id"));
    snprintf(l->case_ref, sizeof(l->case_ref), "%s", api_col(res, 0, "case_reference"));
    l->next(req, l);
}

/* Attaches data (beginning with struct link) to req, then runs next if the link is live. */
static void link_load(struct dems_req *req, struct link *l, void (*free_fn)(void *), link_cb next)
{
    if (l == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, l, free_fn);
    l->id = dems_req_principal(req)->disclosure_id;
    snprintf(l->id_s, sizeof(l->id_s), "%lld", (long long)l->id);
    l->next = next;
    const char *params[] = {l->id_s};
    int r = dems_db_req(req,
                        "SELECT d.case_id, c.reference AS case_reference, " LINK_STATE " AS state"
                        " FROM disclosures d JOIN cases c ON c.id = d.case_id"
                        " WHERE d.id = $1::bigint",
                        1, params, on_link_state);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- GET /v1/disclosure ---- */

struct view {
    struct link l; /* first */
    json_t *doc;
};

static void view_free(void *p)
{
    struct view *v = p;
    json_decref(v->doc);
    free(v);
}

/* clang-format off */
#define LIST_SQL                                                                                   \
    "SELECT c.reference AS case_reference, c.title AS case_title, d.label,"                        \
    " " API_TS("d.expires_at") " AS expires_at, x.id, x.reference, x.description,"                 \
    " array_to_json(x.tags)::text AS tags, a.id AS sha256, a.filename, a.content_type, a.size,"    \
    " a.metadata::text AS metadata, " API_TS("a.created_at") " AS ingested_at,"                    \
    " coalesce(u.username, 'device:' || dv.serial, 'public') AS uploaded_by,"                              \
    " (SELECT array_to_json(array_agg(k.kind ORDER BY k.kind)) FROM derivatives k"                 \
    "  WHERE k.artefact = a.id)::text AS previews,"                                                \
    " (SELECT min(seq) FROM ledger_entries e WHERE e.artefact = a.id"                              \
    "  AND e.type = 'INGESTED') AS ingested_seq"                                                   \
    " FROM disclosures d JOIN cases c ON c.id = d.case_id"                                         \
    " JOIN disclosure_exhibits de ON de.disclosure_id = d.id"                                      \
    " JOIN exhibits x ON x.id = de.exhibit_id AND x.removed_at IS NULL"                            \
    " JOIN artefacts a ON a.id = x.artefact LEFT JOIN users u ON u.id = a.uploaded_by"             \
    " LEFT JOIN devices dv ON dv.id = a.uploaded_by_device"                                        \
    " WHERE d.id = $1::bigint ORDER BY x.id"
/* clang-format on */

static json_t *exhibit_json(const PGresult *res, int row)
{
    json_error_t jerr;
    json_t *tags = json_loads(api_col(res, row, "tags"), 0, &jerr);
    json_t *meta = json_loads(api_col(res, row, "metadata"), 0, &jerr);
    json_t *previews = api_col_null(res, row, "previews")
                           ? NULL
                           : json_loads(api_col(res, row, "previews"), 0, &jerr);
    json_t *o = json_pack(
        "{s:I,s:s,s:o,s:s,s:I,s:s,s:s,s:o,s:o}", "id", (json_int_t)api_col_int(res, row, "id"),
        "reference", api_col(res, row, "reference"), "tags", tags != NULL ? tags : json_array(),
        "sha256", api_col(res, row, "sha256"), "size", (json_int_t)api_col_int(res, row, "size"),
        "ingested_at", api_col(res, row, "ingested_at"), "uploaded_by",
        api_col(res, row, "uploaded_by"), "metadata", meta != NULL ? meta : json_object(),
        "previews", previews != NULL ? previews : json_array());
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "description", api_col_json_str(res, row, "description"));
    json_object_set_new(o, "filename", api_col_json_str(res, row, "filename"));
    json_object_set_new(o, "content_type", api_col_json_str(res, row, "content_type"));
    json_object_set_new(o, "ingested_seq",
                        api_col_null(res, row, "ingested_seq")
                            ? json_null()
                            : json_integer(api_col_int(res, row, "ingested_seq")));
    return o;
}

static void on_viewed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct view *v = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0) {
            dems_resp_error(req, 503, "ledger_unavailable",
                            "the view could not be recorded, so it is refused");
        } else {
            json_t *doc = v->doc;
            v->doc = NULL;
            dems_resp_json(req, 200, doc);
        }
    }
    dems_req_unref(req);
}

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    struct view *v = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    int n = PQntuples(res);
    json_t *items = json_array();
    for (int i = 0; items != NULL && i < n; i++) {
        if (json_array_append_new(items, exhibit_json(res, i)) < 0) {
            json_decref(items);
            items = NULL;
        }
    }
    v->doc = items == NULL ? NULL
                           : json_pack("{s:I,s:s,s:o}", "disclosure", (json_int_t)v->l.id,
                                       "case_reference", v->l.case_ref, "exhibits", items);
    if (v->doc != NULL && n > 0) {
        json_object_set_new(v->doc, "case_title", api_col_json_str(res, 0, "case_title"));
        json_object_set_new(v->doc, "label", api_col_json_str(res, 0, "label"));
        json_object_set_new(v->doc, "expires_at", api_col_json_str(res, 0, "expires_at"));
    }
    struct dems_ledger_item *it =
        v->doc != NULL ? link_item(DEMS_LEDGER_DISCLOSURE_VIEWED, v->l.id, v->l.case_ref) : NULL;
    if (it != NULL)
        it->payload = json_pack("{s:I,s:i}", "disclosure", (json_int_t)v->l.id, "exhibits", n);
    if (it == NULL || it->payload == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_viewed);
}

static void view_loaded(struct dems_req *req, struct link *l)
{
    const char *params[] = {l->id_s};
    int r = dems_db_req(req, LIST_SQL, 1, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disclosure_get(struct dems_req *req)
{
    link_load(req, calloc(1, sizeof(struct view)), view_free, view_loaded);
}

/* ---- the bundle ---- */

#define BUNDLE_SQL                                                                                 \
    "SELECT b.id, b.state, b.bytes_done, b.bytes_total, b.error, b.result_sha256,"                 \
    " b.result_size FROM disclosures d JOIN bundles b ON b.id = d.bundle_id"                       \
    " WHERE d.id = $1::bigint"

static void on_bundle(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "bundle_not_found", "this link has no bundle"))
        return;
    const char *state = api_col(res, 0, "state");
    json_t *o =
        json_pack("{s:I,s:s,s:{s:I,s:I}}", "id", (json_int_t)api_col_int(res, 0, "id"), "state",
                  state, "progress", "bytes_done", (json_int_t)api_col_int(res, 0, "bytes_done"),
                  "bytes_total", (json_int_t)api_col_int(res, 0, "bytes_total"));
    if (o != NULL && strcmp(state, "done") == 0) {
        json_object_set_new(o, "sha256", api_col_json_str(res, 0, "result_sha256"));
        json_object_set_new(o, "size", json_integer(api_col_int(res, 0, "result_size")));
        json_object_set_new(o, "content", json_string("/v1/disclosure/bundle/content"));
    }
    if (o != NULL && strcmp(state, "failed") == 0)
        json_object_set_new(o, "error", api_col_json_str(res, 0, "error"));
    if (o == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_resp_json(req, 200, o);
}

static void bundle_loaded(struct dems_req *req, struct link *l)
{
    const char *params[] = {l->id_s};
    int r = dems_db_req(req, BUNDLE_SQL, 1, params, on_bundle);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disclosure_bundle(struct dems_req *req)
{
    link_load(req, calloc(1, sizeof(struct link)), free, bundle_loaded);
}

static void on_bundle_content(struct dems_req *req, const PGresult *res, int err)
{
    struct link *l = dems_req_data(req);
    if (!api_found(req, res, err, "bundle_not_found", "this link has no bundle"))
        return;
    if (strcmp(api_col(res, 0, "state"), "done") != 0) {
        dems_resp_error(req, 409, "bundle_not_ready", "the bundle has not been made (yet)");
        return;
    }
    int64_t link_id = l->id, bid = api_col_int(res, 0, "id");
    char case_ref[72], case_id[24];
    snprintf(case_ref, sizeof(case_ref), "%s", l->case_ref);
    snprintf(case_id, sizeof(case_id), "%s", l->case_id);
    /* The request's data becomes the download. */
    dems_req_set_data(req, NULL, NULL);
    free(l);
    struct api_download *d = api_download_new(req);
    if (d == NULL)
        return;
    snprintf(d->blob_id, sizeof(d->blob_id), "%s", api_col(res, 0, "result_sha256"));
    snprintf(d->id, sizeof(d->id), "bundle-%lld", (long long)bid);
    snprintf(d->filename, sizeof(d->filename), "bundle-%s-%lld.zip", case_ref, (long long)bid);
    snprintf(d->content_type, sizeof(d->content_type), "application/zip");
    d->size = (uint64_t)api_col_int(res, 0, "result_size");
    if (!api_download_prepare(req, d))
        return;
    /* As staff's bundle downloads: no artefact and no case member, so a later
     * bundle of the case is unchanged by it (docs/bundle.md). */
    struct dems_ledger_item *it = link_item(DEMS_LEDGER_DOWNLOADED, link_id, NULL);
    if (it == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    it->has_sha256 = it->has_size = true;
    dems_hex_decode(d->blob_id, 64, it->sha256, 32);
    it->size = d->size;
    it->payload = json_pack(
        "{s:I,s:I,s:I,s:s}", "bundle", (json_int_t)bid, "disclosure", (json_int_t)link_id,
        "case_id", (json_int_t)api_id(case_id, strlen(case_id)), "case_reference", case_ref);
    if (it->payload != NULL && d->partial) {
        json_object_set_new(it->payload, "first", json_integer((json_int_t)d->first));
        json_object_set_new(it->payload, "last", json_integer((json_int_t)d->last));
    }
    api_ledger_submit(req, it, api_download_recorded);
}

static void content_loaded(struct dems_req *req, struct link *l)
{
    const char *params[] = {l->id_s};
    int r = dems_db_req(req, BUNDLE_SQL, 1, params, on_bundle_content);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disclosure_bundle_content(struct dems_req *req)
{
    link_load(req, calloc(1, sizeof(struct link)), free, content_loaded);
}

/* ---- previews of a disclosed exhibit ---- */

struct preview {
    struct link l; /* first */
    const char *kind;
    char xid[24];
};

static void on_derivative(struct dems_req *req, const PGresult *res, int err)
{
    struct preview *p = dems_req_data(req);
    static const char not_ready[] = "no such exhibit in this link, or its preview is not made";
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) != 1) {
        dems_resp_error(req, 404, "preview_not_ready", not_ready);
        return;
    }
    int64_t link_id = p->l.id;
    char case_ref[72], artefact[65];
    const char *kind = p->kind;
    snprintf(case_ref, sizeof(case_ref), "%s", p->l.case_ref);
    snprintf(artefact, sizeof(artefact), "%s", api_col(res, 0, "artefact"));
    dems_req_set_data(req, NULL, NULL); /* the request's data becomes the download */
    free(p);
    struct api_download *d = api_download_new(req);
    if (d == NULL)
        return;
    snprintf(d->id, sizeof(d->id), "%s", artefact);
    snprintf(d->blob_id, sizeof(d->blob_id), "%s", api_col(res, 0, "blob"));
    d->size = (uint64_t)api_col_int(res, 0, "size");
    snprintf(d->content_type, sizeof(d->content_type), "%s", api_col(res, 0, "content_type"));
    d->inline_ = true;
    if (!api_download_prepare(req, d))
        return;
    if (api_col_bool(res, 0, "viewed")) {
        api_download_start(req, d); /* the first view was ledgered */
        return;
    }
    struct dems_ledger_item *it = link_item(DEMS_LEDGER_VIEWED, link_id, case_ref);
    char link_s[24];
    snprintf(link_s, sizeof(link_s), "%lld", (long long)link_id);
    if (it != NULL) {
        it->has_artefact = it->has_sha256 = it->has_size = true;
        dems_hex_decode(artefact, 64, it->artefact, 32);
        dems_hex_decode(d->blob_id, 64, it->sha256, 32);
        it->size = d->size;
        it->payload = json_pack("{s:s,s:I}", "preview", kind, "disclosure", (json_int_t)link_id);
        it->pre_sql = strdup("INSERT INTO disclosure_views (disclosure_id, artefact, kind)"
                             " VALUES ($1::bigint, $2, $3)");
        it->pre_nparams = 3;
        it->pre_params[0] = strdup(link_s);
        it->pre_params[1] = strdup(artefact);
        it->pre_params[2] = strdup(kind);
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || it->pre_params[2] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, api_download_recorded);
}

static void preview_loaded(struct dems_req *req, struct link *l)
{
    struct preview *p = (struct preview *)l;
    const char *params[] = {l->id_s, p->xid, p->kind};
    int r = dems_db_req(
        req,
        "SELECT x.artefact, k.blob, k.size, k.content_type,"
        " EXISTS (SELECT 1 FROM disclosure_views v WHERE v.disclosure_id = de.disclosure_id"
        "  AND v.artefact = x.artefact AND v.kind = k.kind) AS viewed"
        " FROM disclosure_exhibits de JOIN exhibits x ON x.id = de.exhibit_id"
        " AND x.removed_at IS NULL JOIN derivatives k ON k.artefact = x.artefact AND k.kind = $3"
        " WHERE de.disclosure_id = $1::bigint AND de.exhibit_id = $2::bigint",
        3, params, on_derivative);
    if (r < 0)
        dems_resp_err(req, r);
}

static void serve_preview(struct dems_req *req, const char *kind)
{
    struct preview *p = calloc(1, sizeof(*p));
    struct dems_str x = dems_req_param(req, 0);
    int64_t xid = api_id(x.ptr, x.len);
    if (p != NULL) {
        p->kind = kind;
        snprintf(p->xid, sizeof(p->xid), "%lld", (long long)(xid > 0 ? xid : 0));
    }
    if (p != NULL && xid <= 0) {
        free(p);
        dems_resp_error(req, 404, "preview_not_ready",
                        "no such exhibit in this link, or its preview is not made");
        return;
    }
    link_load(req, (struct link *)p, free, preview_loaded);
}

void api_disclosure_preview(struct dems_req *req)
{
    serve_preview(req, "proxy");
}

void api_disclosure_poster(struct dems_req *req)
{
    serve_preview(req, "poster");
}

void api_disclosure_thumbnails(struct dems_req *req)
{
    serve_preview(req, "sprite_vtt");
}

void api_disclosure_sprite(struct dems_req *req)
{
    serve_preview(req, "sprite");
}
