/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The caller's own account: GET /v1/me, TOTP enrolment (POST /v1/me/totp
 * issues a secret; POST /v1/me/totp/confirm turns it on once a code from it
 * verifies) and API tokens for scripts (create, list, revoke). Minting
 * tokens and enrolling TOTP need a login session: an API token cannot mint
 * more tokens.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/db.h"

#include "api_int.h"

static void user_id_param(struct dems_req *req, char out[static 24])
{
    snprintf(out, 24, "%lld", (long long)dems_req_principal(req)->user_id);
}

static bool need_session(struct dems_req *req)
{
    if (strcmp(dems_req_principal(req)->token_kind, "session") == 0)
        return true;
    dems_resp_error(req, 403, "session_required", "this needs a login session, not an API token");
    return false;
}

static void on_me(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0 || PQntuples(res) != 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    const struct dems_principal *p = dems_req_principal(req);
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:b,s:b,s:s,s:s}", "id", (json_int_t)api_col_int(res, 0, "id"), "username",
        api_col(res, 0, "username"), "role", api_col(res, 0, "role"), "totp_enabled",
        api_col_bool(res, 0, "totp_enabled"), "face_search", api_col_bool(res, 0, "face_search"),
        "created_at", api_col(res, 0, "created_at"), "token_kind", p->token_kind);
    /* A login session's CSRF token, for state changes by its cookie (docs/api.md). */
    if (o != NULL && strcmp(p->token_kind, "session") == 0 && p->csrf[0] != '\0')
        json_object_set_new(o, "csrf_token", json_string(p->csrf));
    /* An admin may require TOTP: until it is set up only these routes answer. */
    if (o != NULL)
        json_object_set_new(o, "totp_required",
                            json_boolean(api_col_bool(res, 0, "totp_required")));
    dems_resp_json(req, 200, o);
}

void api_me(struct dems_req *req)
{
    char uid[24];
    user_id_param(req, uid);
    const char *params[] = {uid};
    int r = dems_db_req(req,
                        "SELECT id, username, role, totp_enabled, face_search, totp_required,"
                        " " API_TS("created_at") " AS created_at FROM users WHERE id = $1",
                        1, params, on_me);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- TOTP ---- */

static void on_enrolled(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (dems_db_affected(res) != 1) {
        dems_resp_error(req, 409, "totp_already_enabled", "one-time codes are already enabled");
        return;
    }
    /* The new secret comes back in the RETURNING row, so nothing secret has
     * to be kept on the request while the update runs. */
    const char *hex = api_col(res, 0, "secret");
    uint8_t secret[DEMS_TOTP_SECRET_BYTES];
    if (dems_hex_decode(hex, strlen(hex), secret, sizeof(secret)) < 0) {
        dems_resp_err(req, DEMS_EINTERNAL);
        return;
    }
    char b32[64], uri[256];
    dems_base32_encode(secret, sizeof(secret), b32);
    sodium_memzero(secret, sizeof(secret));
    snprintf(uri, sizeof(uri),
             "otpauth://totp/dems:%s?secret=%s&issuer=dems&algorithm=SHA1&digits=6&period=30",
             dems_req_principal(req)->username, b32);
    dems_resp_json(
        req, 200, json_pack("{s:s,s:s,s:b}", "secret", b32, "otpauth_uri", uri, "totp_enabled", 0));
}

void api_totp_enrol(struct dems_req *req)
{
    if (!need_session(req))
        return;
    uint8_t secret[DEMS_TOTP_SECRET_BYTES];
    char hex[2 * DEMS_TOTP_SECRET_BYTES + 1], uid[24];
    randombytes_buf(secret, sizeof(secret));
    dems_hex_encode(secret, sizeof(secret), hex);
    sodium_memzero(secret, sizeof(secret));
    user_id_param(req, uid);
    const char *params[] = {uid, hex};
    int r = dems_db_req(req,
                        "UPDATE users SET totp_secret = decode($2, 'hex'), updated_at = now()"
                        " WHERE id = $1 AND NOT totp_enabled"
                        " RETURNING encode(totp_secret, 'hex') AS secret",
                        2, params, on_enrolled);
    sodium_memzero(hex, sizeof(hex));
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_confirmed(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (dems_db_affected(res) != 1) {
        dems_resp_error(req, 409, "totp_already_enabled", "one-time codes are already enabled");
        return;
    }
    dems_resp_json(req, 200, json_pack("{s:b}", "totp_enabled", 1));
}

static void on_secret(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0 || PQntuples(res) != 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    if (api_col_bool(res, 0, "totp_enabled")) {
        dems_resp_error(req, 409, "totp_already_enabled", "one-time codes are already enabled");
        return;
    }
    const char *hex = api_col(res, 0, "secret");
    uint8_t secret[64];
    size_t hl = strlen(hex);
    if (hl == 0 || hl / 2 > sizeof(secret) || dems_hex_decode(hex, hl, secret, hl / 2) < 0) {
        dems_resp_error(req, 409, "totp_not_enrolled", "start enrolment with POST /v1/me/totp");
        return;
    }
    const char *code = json_string_value(json_object_get(dems_req_json(req), "code"));
    uint64_t step;
    int r = dems_totp_verify(secret, hl / 2, code, (uint64_t)time(NULL), &step);
    sodium_memzero(secret, sizeof(secret));
    if (r < 0) {
        dems_resp_error(req, 400, "invalid_totp", "the one-time code does not match");
        return;
    }
    char uid[24], s[24];
    user_id_param(req, uid);
    snprintf(s, sizeof(s), "%llu", (unsigned long long)step);
    const char *params[] = {uid, s};
    r = dems_db_req(req,
                    "UPDATE users SET totp_enabled = true, totp_last_step = $2, updated_at = now()"
                    " WHERE id = $1 AND totp_secret IS NOT NULL AND NOT totp_enabled",
                    2, params, on_confirmed);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_totp_confirm(struct dems_req *req)
{
    const char *code;
    if (!need_session(req) || !api_get_str(req, "code", 6, true, &code))
        return;
    char uid[24];
    user_id_param(req, uid);
    const char *params[] = {uid};
    int r = dems_db_req(req,
                        "SELECT encode(totp_secret, 'hex') AS secret, totp_enabled FROM users"
                        " WHERE id = $1",
                        1, params, on_secret);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- API tokens ---- */

static void on_token_created(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0 || PQntuples(res) != 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    dems_resp_json(req, 201,
                   json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)api_col_int(res, 0, "id"),
                             "token", api_col(res, 0, "token"), "name", api_col(res, 0, "name"),
                             "expires_at", api_col(res, 0, "expires_at")));
}

void api_tokens_create(struct dems_req *req)
{
    const char *name;
    int64_t days;
    if (!need_session(req) || !api_get_str(req, "name", 100, true, &name) ||
        !api_get_int(req, "ttl_days", 1, 365, 90, &days))
        return;
    char token[DEMS_TOKEN_TEXT_MAX], hex[65], uid[24], ttl[24];
    uint8_t hash[32];
    if (dems_token_new("api", token, hash) < 0) {
        dems_resp_err(req, DEMS_EINTERNAL);
        return;
    }
    dems_hex_encode(hash, sizeof(hash), hex);
    user_id_param(req, uid);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)days);
    /* The token text rides along as $5 so the answer can show it once; it
     * is never stored (only its hash is). */
    const char *params[] = {hex, uid, name, ttl, token};
    int r = dems_db_req(req,
                        "INSERT INTO auth_tokens (token_hash, user_id, kind, name, expires_at)"
                        " VALUES (decode($1, 'hex'), $2, 'api', $3,"
                        " now() + make_interval(days => $4::int))"
                        " RETURNING id, name, " API_TS("expires_at") " AS expires_at,"
                                                                     " $5::text AS token",
                        5, params, on_token_created);
    sodium_memzero(token, sizeof(token));
    if (r < 0)
        dems_resp_err(req, r);
}

static json_t *token_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)api_col_int(res, row, "id"), "name",
                     api_col(res, row, "name"), "created_at", api_col(res, row, "created_at"),
                     "expires_at", api_col(res, row, "expires_at"));
}

static void on_token_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "tokens", "id", token_json);
}

/* GET /v1/me/tokens: the caller's live API tokens in id order, a page at a time. */
void api_tokens_list(struct dems_req *req)
{
    struct api_page page;
    char uid[24], a[24], limit[24];
    if (!api_page_by_id(req, &page, a, limit))
        return;
    user_id_param(req, uid);
    const char *params[] = {uid, a, limit};
    int r = dems_db_req(
        req,
        "SELECT id, name, " API_TS(
            "created_at") " AS created_at,"
                          " " API_TS("expires_at") " AS expires_at FROM auth_tokens"
                                                   " WHERE user_id = $1 AND kind = 'api' AND "
                                                   "revoked_at IS NULL"
                                                   " AND expires_at > now() AND id > $2::bigint "
                                                   "ORDER BY id LIMIT $3::integer",
        3, params, on_token_list);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_token_revoked(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (dems_db_affected(res) != 1) {
        dems_resp_error(req, 404, "not_found", "no such API token");
        return;
    }
    dems_resp_json(req, 204, NULL);
}

void api_tokens_revoke(struct dems_req *req)
{
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "not_found", "no such API token");
        return;
    }
    char ids[24], uid[24];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    user_id_param(req, uid);
    const char *params[] = {ids, uid};
    int r = dems_db_req(req,
                        "UPDATE auth_tokens SET revoked_at = now() WHERE id = $1"
                        " AND user_id = $2 AND kind = 'api' AND revoked_at IS NULL",
                        2, params, on_token_revoked);
    if (r < 0)
        dems_resp_err(req, r);
}
