/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/auth/login and POST /v1/auth/logout.
 *
 * Login runs as a chain of async steps on the request's loop: check the
 * throttle counters (per account and per address, in PostgreSQL so all
 * instances share them) -> fetch the user -> verify the Argon2id hash on the
 * work pool (a dummy hash when the user does not exist, so timing does not
 * reveal which names exist) -> check TOTP when enrolled (each code works
 * once) -> create the session token. Every failure is counted before the
 * 401 goes out. With "cookie": true the token is also set as the
 * dems_session cookie (for browsers' media elements; see server/auth/auth.c
 * for where it counts); logout clears it.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"

#include "api_int.h"

struct login {
    struct dems_req *req;
    char username[DEMS_MAX_USERNAME + 1];
    char *password; /* sodium_malloc'd, wiped on free */
    size_t password_len;
    char totp[8];
    bool has_totp;
    bool cookie; /* also set the session cookie */
    char user_key[DEMS_MAX_USERNAME + 3];
    char addr_key[72];
    bool found;
    bool disabled;
    bool password_ok;
    char user_id[24];
    char hash[DEMS_PASSWORD_HASH_MAX];
    uint8_t secret[64];
    size_t secret_len;
    bool totp_enabled;
    uint64_t step;
    char token[DEMS_TOKEN_TEXT_MAX];
};

/* A valid Argon2id hash of a random password, verified when the user does
 * not exist so that both paths cost the same. Made once. */
static char dummy_hash[DEMS_PASSWORD_HASH_MAX];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy(void)
{
    char pw[32];
    randombytes_buf(pw, sizeof(pw));
    dems_password_hash(pw, sizeof(pw), false, dummy_hash);
}

static void login_free(struct login *l)
{
    if (l->password != NULL)
        sodium_free(l->password);
    dems_req_unref(l->req);
    sodium_memzero(l, sizeof(*l));
    free(l);
}

/* Answers and ends the chain. */
static void login_end(struct login *l, int status, const char *code, const char *msg)
{
    if (status != 0)
        dems_resp_error(l->req, status, code, msg);
    login_free(l);
}

static bool login_query(struct login *l, const char *sql, int n, const char *const *params,
                        void (*cb)(void *arg, const PGresult *res, int err))
{
    if (dems_req_is_aborted(l->req)) {
        login_free(l);
        return false;
    }
    int r = dems_db_query(dems_req_loop(l->req)->db, sql, n, params, cb, l);
    if (r < 0) {
        dems_resp_err(l->req, r == DEMS_EUNAVAIL ? r : DEMS_EDB);
        login_free(l);
        return false;
    }
    return true;
}

static const struct dems_config *cfg_of(const struct login *l)
{
    return dems_req_loop(l->req)->srv->cfg;
}

static void on_failure_recorded(void *arg, const PGresult *res, int err)
{
    (void)res;
    (void)err;
    struct login *l = arg;
    if (l->found && l->password_ok && l->totp_enabled)
        login_end(l, 401, "invalid_totp", "the one-time code is wrong or was already used");
    else
        login_end(l, 401, "invalid_credentials", "wrong username or password");
}

/* Counts one failure against the account and the address, then answers. */
static void record_failure(struct login *l)
{
    char window[24];
    snprintf(window, sizeof(window), "%llu", (unsigned long long)cfg_of(l)->login_window);
    const char *params[] = {l->user_key, l->addr_key, window};
    login_query(l,
                "INSERT INTO login_throttle AS t (key, failures, window_start)"
                " SELECT k, 1, now() FROM (VALUES ($1), ($2)) AS v (k)"
                " ON CONFLICT (key) DO UPDATE SET"
                " failures = CASE WHEN t.window_start <= now() - make_interval(secs => $3::int)"
                "   THEN 1 ELSE t.failures + 1 END,"
                " window_start = CASE WHEN t.window_start <= now() - make_interval(secs => $3::int)"
                "   THEN now() ELSE t.window_start END",
                3, params, on_failure_recorded);
}

static void on_ignored(void *arg, const PGresult *res, int err)
{
    (void)arg;
    (void)res;
    (void)err;
}

static void on_session(void *arg, const PGresult *res, int err)
{
    struct login *l = arg;
    if (err < 0 || PQntuples(res) != 1) {
        dems_resp_err(l->req, DEMS_EDB);
        login_free(l);
        return;
    }
    char cookie[160];
    if (l->cookie &&
        dems_auth_cookie_format(l->token, cfg_of(l)->session_ttl, cookie, sizeof(cookie)) == 0)
        dems_resp_header(l->req, "Set-Cookie", cookie);
    char csrf[65];
    dems_auth_csrf(l->token, strlen(l->token), csrf);
    dems_resp_json(l->req, 200,
                   json_pack("{s:s,s:s,s:s}", "token", l->token, "expires_at",
                             api_col(res, 0, "expires_at"), "csrf_token", csrf));
    /* A successful login clears the account's failure count. */
    const char *params[] = {l->user_key};
    if (dems_db_query(dems_req_loop(l->req)->db, "DELETE FROM login_throttle WHERE key = $1", 1,
                      params, on_ignored, NULL) < 0) {
        /* Not fatal: the window expires the count anyway. */
    }
    login_free(l);
}

static void create_session(struct login *l)
{
    uint8_t hash[32];
    char hex[65], ttl[24];
    if (dems_token_new("s", l->token, hash) < 0) {
        login_end(l, 500, "internal_error", "cannot create a token");
        return;
    }
    dems_hex_encode(hash, sizeof(hash), hex);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)cfg_of(l)->session_ttl);
    const char *params[] = {hex, l->user_id, ttl};
    login_query(l,
                "WITH u AS (UPDATE users SET last_login_at = now() WHERE id = $2::bigint)"
                " INSERT INTO auth_tokens (token_hash, user_id, kind, expires_at)"
                " VALUES (decode($1, 'hex'), $2, 'session',"
                " now() + make_interval(secs => $3::int))"
                " RETURNING " API_TS("expires_at") " AS expires_at",
                3, params, on_session);
}

static void on_step_stored(void *arg, const PGresult *res, int err)
{
    struct login *l = arg;
    if (err < 0) {
        dems_resp_err(l->req, DEMS_EDB);
        login_free(l);
    } else if (dems_db_affected(res) != 1) {
        record_failure(l); /* the code's step was used already: a replay */
    } else {
        create_session(l);
    }
}

static void check_totp(struct login *l)
{
    uint64_t step;
    if (!l->has_totp) {
        /* Right password, no code: ask for it without counting a failure. */
        login_end(l, 401, "totp_required", "this account needs a one-time code (field \"totp\")");
        return;
    }
    if (dems_totp_verify(l->secret, l->secret_len, l->totp, (uint64_t)time(NULL), &step) < 0) {
        record_failure(l);
        return;
    }
    char s[24];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)step);
    const char *params[] = {l->user_id, s};
    /* Conditional update: only a step newer than the last used one passes. */
    login_query(l, "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2", 2,
                params, on_step_stored);
}

static void verify_work(void *arg)
{
    struct login *l = arg;
    pthread_once(&dummy_once, make_dummy);
    const char *hash = l->found ? l->hash : dummy_hash;
    l->password_ok = dems_password_verify(hash, l->password, l->password_len) && l->found;
}

static void verify_done(void *arg)
{
    struct login *l = arg;
    if (dems_req_is_aborted(l->req)) {
        login_free(l);
        return;
    }
    if (!l->password_ok || l->disabled) {
        record_failure(l);
        return;
    }
    if (l->totp_enabled)
        check_totp(l);
    else
        create_session(l);
}

static void on_user(void *arg, const PGresult *res, int err)
{
    struct login *l = arg;
    if (err < 0) {
        dems_resp_err(l->req, DEMS_EDB);
        login_free(l);
        return;
    }
    if (PQntuples(res) == 1) {
        l->found = true;
        snprintf(l->user_id, sizeof(l->user_id), "%s", api_col(res, 0, "id"));
        snprintf(l->hash, sizeof(l->hash), "%s", api_col(res, 0, "password_hash"));
        const char *hex = api_col(res, 0, "totp_secret");
        size_t hl = strlen(hex);
        if (hl > 0 && hl / 2 <= sizeof(l->secret) &&
            dems_hex_decode(hex, hl, l->secret, hl / 2) == 0)
            l->secret_len = hl / 2;
        l->totp_enabled = api_col_bool(res, 0, "totp_enabled") && l->secret_len > 0;
        l->disabled = api_col_bool(res, 0, "disabled");
    }
    if (dems_work_submit(dems_req_loop(l->req), verify_work, verify_done, l) < 0)
        login_end(l, 503, "out_of_memory", "out of memory");
}

static void on_throttle(void *arg, const PGresult *res, int err)
{
    struct login *l = arg;
    if (err < 0) {
        dems_resp_err(l->req, DEMS_EDB);
        login_free(l);
        return;
    }
    const struct dems_config *cfg = cfg_of(l);
    bool user_locked = (uint64_t)api_col_int(res, 0, "user_failures") >= cfg->login_max_failures;
    bool addr_locked =
        (uint64_t)api_col_int(res, 0, "addr_failures") >= cfg->login_max_failures_per_address;
    if (user_locked || addr_locked) {
        /* Retry when the later of the two lockouts ends (at least a second). */
        int64_t wait = 1, u = api_col_int(res, 0, "user_left"),
                a = api_col_int(res, 0, "addr_left");
        if (user_locked && u > wait)
            wait = u;
        if (addr_locked && a > wait)
            wait = a;
        char retry[24], msg[160];
        snprintf(retry, sizeof(retry), "%lld", (long long)wait);
        snprintf(msg, sizeof(msg),
                 "too many failed logins from this %s; try again in %lld seconds, or ask an"
                 " administrator to lift the lockout",
                 user_locked ? "account" : "address", (long long)wait);
        dems_resp_header(l->req, "Retry-After", retry);
        login_end(l, 429, "too_many_attempts", msg);
        return;
    }
    const char *params[] = {l->username};
    login_query(l,
                "SELECT id, password_hash, encode(totp_secret, 'hex') AS totp_secret, totp_enabled,"
                " disabled"
                " FROM users WHERE username = $1",
                1, params, on_user);
}

/* Whole seconds until the counting window of key k ends (0 when none). */
#define LEFT_SQL(k)                                                                                \
    "coalesce(ceil(extract(epoch FROM max(window_start) FILTER (WHERE key = " k ")"                \
    " + make_interval(secs => $3::int) - now()))::bigint, 0)"

void api_login(struct dems_req *req)
{
    const char *username, *password, *totp;
    if (!api_get_str(req, "username", DEMS_MAX_USERNAME, true, &username) ||
        !api_get_str(req, "password", DEMS_MAX_PASSWORD, true, &password) ||
        !api_get_str(req, "totp", 6, false, &totp))
        return;
    json_t *cookie = json_object_get(dems_req_json(req), "cookie");
    if (cookie != NULL && !json_is_boolean(cookie)) {
        dems_resp_error(req, 400, "invalid_field", "field \"cookie\" must be true or false");
        return;
    }
    struct login *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    l->req = req;
    dems_req_ref(req);
    l->cookie = json_is_true(cookie);
    l->password_len = strlen(password);
    l->password = sodium_malloc(l->password_len + 1);
    if (l->password == NULL) {
        login_end(l, 503, "out_of_memory", "out of memory");
        return;
    }
    memcpy(l->password, password, l->password_len + 1);
    snprintf(l->username, sizeof(l->username), "%s", username);
    dems_auth_username_fold(l->username);
    if (totp != NULL) {
        snprintf(l->totp, sizeof(l->totp), "%s", totp);
        l->has_totp = true;
    }
    snprintf(l->user_key, sizeof(l->user_key), "u:%s", l->username);
    snprintf(l->addr_key, sizeof(l->addr_key), "a:%s", dems_req_peer(req));
    char window[24];
    snprintf(window, sizeof(window), "%llu",
             (unsigned long long)dems_req_loop(req)->srv->cfg->login_window);
    const char *params[] = {l->user_key, l->addr_key, window};
    login_query(l,
                "SELECT coalesce(max(failures) FILTER (WHERE key = $1), 0) AS user_failures,"
                " coalesce(max(failures) FILTER (WHERE key = $2), 0) AS addr_failures,"
                " " LEFT_SQL("$1") " AS user_left, " LEFT_SQL(
                    "$2") " AS addr_left"
                          " FROM login_throttle WHERE key IN ($1, $2)"
                          " AND window_start > now() - make_interval(secs => $3::int)",
                3, params, on_throttle);
}

static void on_revoked(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    /* The token is dead either way; clear the cookie that may carry it. */
    char cookie[160];
    if (dems_auth_cookie_format("", 0, cookie, sizeof(cookie)) == 0)
        dems_resp_header(req, "Set-Cookie", cookie);
    dems_resp_json(req, 204, NULL);
}

void api_logout(struct dems_req *req)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)dems_req_principal(req)->token_id);
    const char *params[] = {id};
    int r = dems_db_req(req, "UPDATE auth_tokens SET revoked_at = now() WHERE id = $1", 1, params,
                        on_revoked);
    if (r < 0)
        dems_resp_err(req, r);
}
