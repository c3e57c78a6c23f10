/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Request authentication and account bootstrap. A bearer token is looked up
 * by the SHA-256 of its text, joined with its user; revoked, expired and
 * disabled-user tokens are refused. The lookup is one async query on the
 * request's loop. A login session's token may also come in the dems_session
 * cookie, but only on GET and HEAD: browsers attach cookies to requests other
 * sites make them send, so no state-changing request is ever authorised by
 * one (cross-site request forgery has nothing to act with), and the bearer
 * header wins when both are present. A route may fold its first read into a
 * staff token's lookup (struct dems_auth_fold): one statement, not two.
 * The lookups are prepared statements.
 */
#include "demsd/auth.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

struct pending {
    struct dems_principal *out;
    void (*done)(struct dems_req *req, int err);
};

static int64_t parse_id(const char *s)
{
    uint64_t v = 0;
    if (dems_parse_u64(s, strlen(s), INT64_MAX, &v) < 0)
        return 0;
    return (int64_t)v;
}

/* Row 0's column called name (it must be in the query). */
static const char *col(const PGresult *res, const char *name)
{
    int c = PQfnumber(res, name);
    return c < 0 ? "" : PQgetvalue(res, 0, c);
}

/* One lookup in flight; holds a reference to its request. */
struct auth_ctx {
    struct dems_req *req;
    struct pending p;
    bool from_cookie; /* only login sessions may come as a cookie */
    bool folded;      /* the route's read came with the lookup: row(s) to keep */
};

/*
 * The common end of a lookup: answers a failed query (DEMS_EDB) or a token
 * found nowhere (DEMS_EAUTH) and returns NULL; otherwise the principal to
 * fill from row 0, after which the caller calls ctx->p.done. Either way the
 * caller then calls lookup_end.
 */
static struct dems_principal *lookup_found(struct auth_ctx *ctx, const PGresult *res, int err)
{
    if (dems_req_is_aborted(ctx->req))
        return NULL;
    /* Folded, the lookup's one row comes once per row of the route's read. */
    if (err < 0 || (ctx->folded ? PQntuples(res) < 1 : PQntuples(res) != 1)) {
        ctx->p.done(ctx->req, err < 0 ? DEMS_EDB : DEMS_EAUTH);
        return NULL;
    }
    return ctx->p.out;
}

static void lookup_end(struct auth_ctx *ctx)
{
    dems_req_unref(ctx->req);
    free(ctx);
}

/*
 * Starts the lookup of a presented token by its SHA-256 ($1, hex) with stmt,
 * or with the route's read folded in when fold is not NULL.
 */
static int lookup_begin(struct dems_req *req, struct dems_str tok, bool from_cookie,
                        struct dems_db_stmt *stmt, const struct dems_auth_fold *fold,
                        void (*cb)(void *, const PGresult *, int), struct dems_principal *out,
                        void (*done)(struct dems_req *req, int err))
{
    uint8_t hash[32];
    char hex[65];
    dems_token_hash(tok.ptr, tok.len, hash);
    dems_hex_encode(hash, sizeof(hash), hex);
    struct auth_ctx *ctx = malloc(sizeof(*ctx));
    if (ctx == NULL)
        return DEMS_ENOMEM;
    *ctx = (struct auth_ctx){.req = req,
                             .p = {.out = out, .done = done},
                             .from_cookie = from_cookie,
                             .folded = fold != NULL};
    const char *params[1 + DEMS_AUTH_FOLD_MAX] = {hex};
    if (fold != NULL) {
        assert(fold->nparams <= DEMS_AUTH_FOLD_MAX && fold->stmt->nparams == 1 + fold->nparams);
        stmt = fold->stmt;
        for (int i = 0; i < fold->nparams && i < DEMS_AUTH_FOLD_MAX; i++)
            params[1 + i] = fold->params[i];
    }
    int r = dems_db_query_stmt(dems_req_loop(req)->db, stmt, params, cb, ctx);
    if (r < 0) {
        free(ctx);
        return r == DEMS_EUNAVAIL ? r : DEMS_EDB;
    }
    dems_req_ref(req);
    return 0;
}

static void on_lookup(void *arg, const PGresult *res, int err)
{
    struct auth_ctx *ctx = arg;
    struct dems_principal *o = lookup_found(ctx, res, err);
    if (o != NULL) {
        o->user_id = parse_id(col(res, "user_id"));
        snprintf(o->username, sizeof(o->username), "%s", col(res, "username"));
        o->role = dems_role_parse(col(res, "role"));
        o->token_id = parse_id(col(res, "token_id"));
        o->face_search = strcmp(col(res, "face_search"), "t") == 0;
        o->totp_setup = strcmp(col(res, "totp_setup"), "t") == 0;
        snprintf(o->token_kind, sizeof(o->token_kind), "%s", col(res, "kind"));
        bool kind_ok = !ctx->from_cookie || strcmp(o->token_kind, "session") == 0;
        bool ok = o->role != 0 && kind_ok;
        /* Kept for the handler; if the copy fails, it reads for itself. */
        if (ok && ctx->folded)
            dems_req_set_folded(ctx->req, PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES));
        ctx->p.done(ctx->req, ok ? 0 : DEMS_EAUTH);
    }
    lookup_end(ctx);
}

static int device_begin(struct dems_req *req, struct dems_principal *out,
                        void (*done)(struct dems_req *req, int err));

/* Looks up a token's text (from the header or the cookie). */
static int token_begin(struct dems_req *req, struct dems_str tok, bool from_cookie,
                       const struct dems_auth_fold *fold, struct dems_principal *out,
                       void (*done)(struct dems_req *req, int err))
{
    static struct dems_db_stmt stmt = DEMS_DB_STMT(DEMS_AUTH_TOKEN_SQL, 1);
    dems_auth_csrf(tok.ptr, tok.len, out->csrf);
    return lookup_begin(req, tok, from_cookie, &stmt, fold, on_lookup, out, done);
}

/*
 * A defence link holder's session (the dems_disclosure cookie, made by
 * POST /v1/disclosure/open). The session is found whatever its link's state:
 * the disclosure routes answer an ended link 410 themselves, so the holder
 * learns why, and that refusal is ledgered against the link.
 */
static void on_disclosure(void *arg, const PGresult *res, int err)
{
    struct auth_ctx *ctx = arg;
    struct dems_principal *o = lookup_found(ctx, res, err);
    if (o != NULL) {
        o->role = DEMS_ROLE_DISCLOSURE;
        o->token_id = parse_id(col(res, "id"));
        o->disclosure_id = parse_id(col(res, "disclosure_id"));
        snprintf(o->username, sizeof(o->username), "disclosure/%lld", (long long)o->disclosure_id);
        snprintf(o->token_kind, sizeof(o->token_kind), "disclosure");
        ctx->p.done(ctx->req, o->disclosure_id > 0 ? 0 : DEMS_EAUTH);
    }
    lookup_end(ctx);
}

static int disclosure_begin(struct dems_req *req, struct dems_str tok, struct dems_principal *out,
                            void (*done)(struct dems_req *req, int err))
{
    static struct dems_db_stmt stmt =
        DEMS_DB_STMT("SELECT id, disclosure_id FROM disclosure_sessions"
                     " WHERE token_hash = decode($1, 'hex') AND expires_at > now()",
                     1);
    return lookup_begin(req, tok, true, &stmt, NULL, on_disclosure, out, done);
}

/*
 * A submitter's bearer token (docs/api.md, "Public submissions"): found
 * while its submission exists and has not been disposed of; whether the
 * link still takes uploads is for the routes to say (410 link_ended), so
 * that a submitter can still read their receipt after the link ends.
 */
static void on_submitter(void *arg, const PGresult *res, int err)
{
    struct auth_ctx *ctx = arg;
    struct dems_principal *o = lookup_found(ctx, res, err);
    if (o != NULL) {
        o->role = DEMS_ROLE_SUBMITTER;
        o->submission_id = parse_id(col(res, "id"));
        snprintf(o->username, sizeof(o->username), "submission/%lld", (long long)o->submission_id);
        snprintf(o->token_kind, sizeof(o->token_kind), "submission");
        ctx->p.done(ctx->req, o->submission_id > 0 ? 0 : DEMS_EAUTH);
    }
    lookup_end(ctx);
}

static int submitter_begin(struct dems_req *req, struct dems_str tok, struct dems_principal *out,
                           void (*done)(struct dems_req *req, int err))
{
    static struct dems_db_stmt stmt =
        DEMS_DB_STMT("SELECT id FROM submissions WHERE token_hash = decode($1, 'hex')"
                     " AND state <> 'disposed'",
                     1);
    return lookup_begin(req, tok, false, &stmt, NULL, on_submitter, out, done);
}

/* Safe methods: the cookie alone authorises these only. The method as
 * sent, so X-HTTP-Method-Override (POST only) cannot smuggle one in. */
static bool cookie_allowed(const struct dems_http_head *h)
{
    return h->method == DEMS_HTTP_GET || h->method == DEMS_HTTP_HEAD;
}

/*
 * A state change by the session cookie needs the session's CSRF token in
 * X-CSRF-Token (dems_auth_csrf). Returns 0 with *tok the cookie's token
 * when both are there and match, DEMS_ENOTFOUND when the header is absent
 * (the cookie is then not looked at: as before, no cookie authorises a
 * state change), DEMS_EAUTH when the cookie is missing or malformed or the
 * token does not match.
 */
static int cookie_with_csrf(const struct dems_http_head *head, struct dems_str *tok)
{
    const struct dems_str *x = dems_http_head_get(head, DEMS_CSRF_HEADER);
    if (x == NULL)
        return DEMS_ENOTFOUND;
    int r = dems_auth_cookie_token(head, tok);
    if (r < 0)
        return DEMS_EAUTH;
    char want[65];
    dems_auth_csrf(tok->ptr, tok->len, want);
    if (x->len != 64)
        return DEMS_EAUTH;
    unsigned char diff = 0;
    for (size_t i = 0; i < 64; i++) /* constant time */
        diff |= (unsigned char)(x->ptr[i] ^ want[i]);
    return diff == 0 ? 0 : DEMS_EAUTH;
}

int dems_auth_begin(struct dems_req *req, struct dems_principal *out,
                    const struct dems_auth_fold *fold, void (*done)(struct dems_req *req, int err))
{
    const struct dems_http_head *head = dems_req_head(req);
    const struct dems_str *h = dems_http_head_get(head, "authorization");
    if (h == NULL) {
        struct dems_str tok;
        int r = cookie_allowed(head) ? dems_auth_cookie_token(head, &tok)
                                     : cookie_with_csrf(head, &tok);
        if (r == DEMS_ENOTFOUND && cookie_allowed(head)) {
            /* No staff session: a defence link holder's, then a dock's certificate. */
            r = dems_auth_cookie_named(head, DEMS_DISCLOSURE_COOKIE, &tok);
            if (r == 0)
                return disclosure_begin(req, tok, out, done);
        }
        if (r == DEMS_ENOTFOUND)
            return device_begin(req, out, done);
        return r < 0 ? r : token_begin(req, tok, true, fold, out, done);
    }
    if (h->len < 8 || !dems_str_eq_ci((struct dems_str){h->ptr, 7}, "bearer ") ||
        h->len - 7 > DEMS_TOKEN_TEXT_MAX)
        return DEMS_EAUTH;
    struct dems_str tok = dems_str_trim((struct dems_str){h->ptr + 7, h->len - 7});
    if (tok.len == 0)
        return DEMS_EAUTH;
    size_t np = strlen(DEMS_SUBMITTER_TOKEN_PREFIX);
    if (tok.len > np && memcmp(tok.ptr, DEMS_SUBMITTER_TOKEN_PREFIX, np) == 0)
        return submitter_begin(req, tok, out, done);
    return token_begin(req, tok, false, fold, out, done);
}

bool dems_auth_username_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > DEMS_MAX_USERNAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '@' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

void dems_auth_username_fold(char *name)
{
    for (; *name != '\0'; name++) {
        if (*name >= 'A' && *name <= 'Z')
            *name = (char)(*name - 'A' + 'a');
    }
}

int dems_auth_create_user_sync(PGconn *db, const char *name, const char *role, const char *password,
                               char *err, size_t errlen)
{
    char username[DEMS_MAX_USERNAME + 1];
    if (strlen(name) < sizeof(username)) {
        memcpy(username, name, strlen(name) + 1);
        dems_auth_username_fold(username);
    } else {
        username[0] = '\0'; /* too long: refused below */
    }
    if (!dems_auth_username_ok(username)) {
        snprintf(err, errlen, "username must be 1-64 characters of A-Z a-z 0-9 . _ @ -");
        return DEMS_EINVAL;
    }
    if (dems_role_parse(role) == 0) {
        snprintf(err, errlen, "role must be admin, officer or prosecutor");
        return DEMS_EINVAL;
    }
    size_t plen = strlen(password);
    if (plen < 8 || plen > DEMS_MAX_PASSWORD) {
        snprintf(err, errlen, "password must be 8 to %d bytes", DEMS_MAX_PASSWORD);
        return DEMS_EINVAL;
    }
    char hash[DEMS_PASSWORD_HASH_MAX];
    if (dems_password_hash(password, plen, false, hash) < 0) {
        snprintf(err, errlen, "out of memory hashing the password");
        return DEMS_ENOMEM;
    }
    const char *params[] = {username, role, hash};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO users (username, role, password_hash)"
                                 " VALUES ($1, $2, $3)",
                                 3, NULL, params, NULL, NULL, 0);
    int r = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        if (dems_db_is_unique_violation(res)) {
            snprintf(err, errlen, "user %s already exists", username);
            r = DEMS_ECONFLICT;
        } else {
            snprintf(err, errlen, "database: %.300s", PQresultErrorMessage(res));
            r = DEMS_EDB;
        }
    }
    PQclear(res);
    return r;
}

/* ---- devices (TLS client certificates) ---- */

static void on_denied_logged(struct dems_ledger_item *item, void *arg)
{
    (void)item;
    (void)arg;
}

/*
 * What an ACCESS_DENIED entry may spend on each string the client chose
 * (canonical bytes, escapes counted). Together with the marks and hashes
 * dems_ledger_payload_set_text adds, they stay far below the payload cap.
 */
#define DENIED_MAX_METHOD 32
#define DENIED_MAX_PATH   1024
#define DENIED_MAX_REASON 256

/* The payload of an ACCESS_DENIED entry for req: method, path, reason, each bounded. */
static json_t *denied_payload(const struct dems_http_head *h, const char *reason)
{
    json_t *p = json_object();
    const char *m = h->method_name != NULL ? h->method_name : "";
    if (p == NULL ||
        dems_ledger_payload_set_text(p, "method", m, strlen(m), DENIED_MAX_METHOD) < 0 ||
        dems_ledger_payload_set_text(p, "path", h->path.ptr, h->path.len, DENIED_MAX_PATH) < 0 ||
        dems_ledger_payload_set_text(p, "reason", reason, strlen(reason), DENIED_MAX_REASON) < 0) {
        json_decref(p);
        return NULL;
    }
    return p;
}

/* Ledgers req's refusal, or counts it when over the bounds (see auth.h). */
/* The refused actor: kind and id given, or the request's principal. */
static int denied(struct dems_req *req, enum dems_ledger_actor kind, const char *actor_id,
                  const char *reason, const uint8_t *artefact, unsigned *ret_retry_after)
{
    const struct dems_principal *p = dems_req_principal(req);
    if (actor_id == NULL) {
        kind = p->role == DEMS_ROLE_DEVICE       ? DEMS_LEDGER_ACTOR_DEVICE
               : p->role == DEMS_ROLE_DISCLOSURE ? DEMS_LEDGER_ACTOR_LINK
                                                 : DEMS_LEDGER_ACTOR_USER;
        actor_id = p->role == DEMS_ROLE_DEVICE ? p->serial
                   : p->username[0] != '\0'    ? p->username
                                               : "unknown";
    }
    const struct dems_http_head *h = dems_req_head(req);
    struct dems_loop *loop = dems_req_loop(req);
    struct dems_ledger_refusal rf = {
        .actor_kind = kind,
        .actor_id = actor_id,
        .address = dems_req_peer(req),
        .method = h->method_name,
        .path = h->path,
        .reason = reason,
    };
    int r = dems_ledger_refusal_admit(loop->srv, &rf, ret_retry_after);
    if (r < 0)
        return r;
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_ACCESS_DENIED, rf.actor_kind, rf.actor_id);
    if (it == NULL)
        return 0;
    if (artefact != NULL) {
        it->has_artefact = true;
        memcpy(it->artefact, artefact, sizeof(it->artefact));
    }
    it->payload = denied_payload(h, reason);
    if (it->payload == NULL) {
        dems_ledger_item_free(it);
        return 0;
    }
    /*
     * Nobody waits for it, so it completes on the appender's thread (loop
     * NULL): posted to a loop, it could arrive after that loop has shut
     * down (demsd stopping with refusals still queued) and use it freed.
     */
    it->done = on_denied_logged;
    dems_ledger_append(loop->srv, NULL, it);
    return 0;
}

int dems_auth_denied(struct dems_req *req, const char *reason, const uint8_t *artefact)
{
    unsigned wait = 0;
    return denied(req, DEMS_LEDGER_ACTOR_USER, NULL, reason, artefact, &wait);
}

void dems_auth_refuse(struct dems_req *req, const char *reason, int status, const char *code,
                      const char *detail)
{
    dems_auth_refuse_as(req, DEMS_LEDGER_ACTOR_USER, NULL, reason, status, code, detail);
}

void dems_auth_refuse_as(struct dems_req *req, enum dems_ledger_actor kind, const char *actor_id,
                         const char *reason, int status, const char *code, const char *detail)
{
    unsigned wait = 0;
    if (denied(req, kind, actor_id, reason, NULL, &wait) == 0) {
        dems_resp_error(req, status, code, detail);
        return;
    }
    char retry[16], msg[200];
    snprintf(retry, sizeof(retry), "%u", wait);
    snprintf(msg, sizeof(msg),
             "too many refused requests: this one is counted in a summary rather than recorded "
             "on its own; try again in %u seconds",
             wait);
    dems_resp_header(req, "Retry-After", retry);
    dems_resp_error(req, 429, "too_many_refusals", msg);
}

static void refuse_revoked(struct dems_req *req)
{
    dems_resp_error(req, 403, "device_revoked", "this device has been revoked");
}

/* The enrolled device row found by fingerprint: who it is, and may it? */
static void device_found(struct auth_ctx *ctx, const PGresult *res)
{
    struct dems_principal *o = ctx->p.out;
    o->role = DEMS_ROLE_DEVICE;
    o->device_id = parse_id(PQgetvalue(res, 0, PQfnumber(res, "id")));
    snprintf(o->serial, sizeof(o->serial), "%s", PQgetvalue(res, 0, PQfnumber(res, "serial")));
    snprintf(o->username, sizeof(o->username), "device:%s", o->serial);
    snprintf(o->token_kind, sizeof(o->token_kind), "device");
    if (PQgetvalue(res, 0, PQfnumber(res, "revoked"))[0] == 't') {
        /* Revoked by another demsd, and this one had not heard yet: ledger
         * this first refusal; from now on the set refuses the device first. */
        struct dems_server *srv = dems_req_loop(ctx->req)->srv;
        if (dems_revoked_add(srv->revoked, dems_req_peer_cert(ctx->req), o->serial) != 0)
            dems_auth_denied(ctx->req, "device revoked", NULL);
        refuse_revoked(ctx->req);
        ctx->p.done(ctx->req, DEMS_EFORBIDDEN);
        return;
    }
    /* The presented certificate is the enrolled one (same fingerprint), so
     * its dates are checked here too: a session resumed, or a connection
     * kept open, past notAfter was never through a handshake that would
     * have refused it. */
    const char *problem =
        dems_tls_cert_problem(PQgetvalue(res, 0, PQfnumber(res, "certificate")), time(NULL));
    if (problem != NULL) {
        dems_resp_error(ctx->req, 401, problem, dems_tls_cert_problem_text(problem));
        ctx->p.done(ctx->req, DEMS_EAUTH);
        return;
    }
    ctx->p.done(ctx->req, 0);
}

static void on_device(void *arg, const PGresult *res, int err)
{
    struct auth_ctx *ctx = arg;
    if (!dems_req_is_aborted(ctx->req)) {
        if (err < 0)
            ctx->p.done(ctx->req, DEMS_EDB);
        else if (PQntuples(res) != 1)
            ctx->p.done(ctx->req, DEMS_EAUTH);
        else
            device_found(ctx, res);
    }
    dems_req_unref(ctx->req);
    free(ctx);
}

static int device_begin(struct dems_req *req, struct dems_principal *out,
                        void (*done)(struct dems_req *req, int err))
{
    const char *fp = dems_req_peer_cert(req);
    if (fp == NULL)
        return DEMS_EAUTH;
    /* Known revoked (a session or connection from before the revocation):
     * refused before any database or ledger work; the handshake refusals
     * and the DEVICE_REVOKED entry account for it. */
    if (dems_revoked_has(dems_req_loop(req)->srv->revoked, fp)) {
        refuse_revoked(req);
        return DEMS_EFORBIDDEN;
    }
    struct auth_ctx *ctx = malloc(sizeof(*ctx));
    if (ctx == NULL)
        return DEMS_ENOMEM;
    *ctx = (struct auth_ctx){.req = req, .p = {.out = out, .done = done}};
    const char *params[] = {fp};
    int r = dems_db_query(dems_req_loop(req)->db,
                          "SELECT id, serial, revoked_at IS NOT NULL AS revoked, certificate"
                          " FROM devices WHERE cert_sha256 = $1",
                          1, params, on_device, ctx);
    if (r < 0) {
        free(ctx);
        return r == DEMS_EUNAVAIL ? r : DEMS_EDB;
    }
    dems_req_ref(req);
    return 0;
}

bool dems_auth_totp_setup_route(const struct dems_route *route)
{
    static const char *const allowed[] = {"/v1/me", "/v1/me/totp", "/v1/me/totp/confirm",
                                          "/v1/auth/logout"};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (strcmp(route->pattern, allowed[i]) == 0)
            return true;
    return false;
}
