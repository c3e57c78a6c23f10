/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Administrators' user management (docs/api.md, "Accounts (admin)"):
 *   GET   /v1/admin/users[?role=&disabled=&q=]    accounts in id order, with last sign-in
 *   POST  /v1/admin/users                         {"username", "password", "role"}
 *   PATCH /v1/admin/users/{id}                    any of {"role", "disabled", "totp_required",
 *                                                 "face_search"}; disabling or a new role
 *                                                 revokes its sessions and API tokens at once
 *   POST  /v1/admin/users/{id}/password           {"password"}: a reset; tokens revoked
 * Every change is one USER_UPDATED entry (what changed, from and to) in the
 * transaction of the change. Argon2id hashes are computed on the work pool,
 * never on the loop. An admin cannot disable or demote their own account.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

struct create {
    struct dems_req *req;
    char username[DEMS_MAX_USERNAME + 1];
    char role[16];
    char *password; /* sodium_malloc'd */
    char hash[DEMS_PASSWORD_HASH_MAX];
    int err;
};

static void create_free(struct create *c)
{
    if (c->password != NULL)
        sodium_free(c->password);
    dems_req_unref(c->req);
    free(c);
}

static void on_created_row(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "user_not_found", "no such user"))
        return;
    dems_resp_json(req, 201,
                   json_pack("{s:I,s:s,s:s,s:I}", "id", (json_int_t)api_col_int(res, 0, "id"),
                             "username", api_col(res, 0, "username"), "role",
                             api_col(res, 0, "role"), "seq",
                             (json_int_t)api_col_int(res, 0, "seq")));
}

static void on_created(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ECONFLICT) {
            dems_resp_error(req, 409, "user_exists", "a user with that name already exists");
        } else if (item->err < 0) {
            api_case_changed(req, item, "the account");
        } else {
            char seq[24];
            snprintf(seq, sizeof(seq), "%llu", (unsigned long long)item->seq);
            const char *username = json_string_value(json_object_get(item->payload, "username"));
            const char *params[] = {username, seq};
            int r = dems_db_req(req,
                                "SELECT id, username, role, $2::bigint AS seq FROM users"
                                " WHERE username = $1",
                                2, params, on_created_row);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

static void hash_work(void *arg)
{
    struct create *c = arg;
    c->err = dems_password_hash(c->password, strlen(c->password), false, c->hash);
}

static void hash_done(void *arg)
{
    struct create *c = arg;
    if (!dems_req_is_aborted(c->req)) {
        const char *params[] = {c->username, c->role, c->hash};
        int r = c->err;
        struct dems_ledger_item *it =
            r < 0 ? NULL
                  : api_change_new(c->req, DEMS_LEDGER_USER_CREATED, NULL,
                                   json_pack("{s:s,s:s}", "username", c->username, "role", c->role),
                                   "INSERT INTO users (username, role, password_hash)"
                                   " VALUES ($1, $2, $3)",
                                   3, params);
        if (it != NULL)
            api_ledger_submit(c->req, it, on_created);
        else if (r < 0)
            dems_resp_err(c->req, r);
    }
    create_free(c);
}

void api_admin_users_create(struct dems_req *req)
{
    const char *username, *password, *role;
    if (!api_get_str(req, "username", DEMS_MAX_USERNAME, true, &username) ||
        !api_get_str(req, "password", DEMS_MAX_PASSWORD, true, &password) ||
        !api_get_str(req, "role", 16, true, &role))
        return;
    if (!dems_auth_username_ok(username)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"username\" must be 1-64 characters of A-Z a-z 0-9 . _ @ -");
        return;
    }
    if (dems_role_parse(role) == 0) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"role\" must be admin, officer or prosecutor");
        return;
    }
    if (strlen(password) < 8) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"password\" must be at least 8 characters");
        return;
    }
    struct create *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    c->req = req;
    dems_req_ref(req);
    snprintf(c->username, sizeof(c->username), "%s", username);
    dems_auth_username_fold(c->username);
    snprintf(c->role, sizeof(c->role), "%s", role);
    c->password = sodium_malloc(strlen(password) + 1);
    if (c->password != NULL)
        memcpy(c->password, password, strlen(password) + 1);
    if (c->password == NULL || dems_work_submit(dems_req_loop(req), hash_work, hash_done, c) < 0) {
        dems_resp_err(req, DEMS_ENOMEM);
        create_free(c);
    }
}

static json_t *user_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack(
        "{s:I,s:s,s:s,s:b,s:b,s:b,s:b,s:s,s:o}", "id", (json_int_t)api_col_int(res, row, "id"),
        "username", api_col(res, row, "username"), "role", api_col(res, row, "role"),
        "totp_enabled", api_col_bool(res, row, "totp_enabled"), "totp_required",
        api_col_bool(res, row, "totp_required"), "disabled", api_col_bool(res, row, "disabled"),
        "face_search", api_col_bool(res, row, "face_search"), "created_at",
        api_col(res, row, "created_at"), "last_login_at",
        api_col_json_str(res, row, "last_login_at"));
}

#define USER_COLS                                                                                  \
    "id, username, role, totp_enabled, totp_required, disabled, face_search,"                      \
    " " API_TS("created_at") " AS created_at, " API_TS("last_login_at") " AS last_login_at"

static void on_users(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "users", "id", user_json);
}

/* GET /v1/admin/users: accounts in id order, a page at a time, filtered. */
void api_admin_users_list(struct dems_req *req)
{
    struct api_page page;
    char a[24], limit[24], role[16], dis[8], q[DEMS_MAX_USERNAME + 1];
    const char *prole = NULL, *pdis = NULL, *pq = NULL;
    if (!api_page_by_id(req, &page, a, limit) || !api_text_param(req, "role", 15, role, &prole) ||
        !api_text_param(req, "disabled", 5, dis, &pdis) ||
        !api_text_param(req, "q", DEMS_MAX_USERNAME, q, &pq))
        return;
    if (prole != NULL && dems_role_parse(prole) == 0) {
        api_bad_param(req, "role", "must be admin, officer or prosecutor");
        return;
    }
    if (pdis != NULL && strcmp(pdis, "true") != 0 && strcmp(pdis, "false") != 0) {
        api_bad_param(req, "disabled", "must be true or false");
        return;
    }
    if (pq != NULL)
        dems_auth_username_fold(q);
    const char *params[] = {a, limit, prole, pdis, pq};
    int r = dems_db_req(req,
                        "SELECT " USER_COLS " FROM users WHERE id > $1::bigint"
                        " AND ($3::text IS NULL OR role = $3)"
                        " AND ($4::boolean IS NULL OR disabled = $4::boolean)"
                        " AND ($5::text IS NULL OR starts_with(username, $5))"
                        " ORDER BY id LIMIT $2::integer",
                        5, params, on_users);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- changing an account ---- */

struct user_change {
    struct dems_req *req;
    int64_t id;
    char ids[24];
    /* What the body asks for. */
    bool has_role, has_disabled, has_totp, has_face;
    char role[16];
    bool disabled, totp_required, face_search;
    /* A password reset: the new hash, computed on the work pool. */
    char *password; /* sodium_malloc'd */
    char hash[DEMS_PASSWORD_HASH_MAX];
    int err;
};

static void change_free(void *p)
{
    struct user_change *u = p;
    if (u->password != NULL)
        sodium_free(u->password);
    free(u);
}

static struct user_change *change_new(struct dems_req *req)
{
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "user_not_found", "no such user");
        return NULL;
    }
    struct user_change *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, u, change_free);
    u->req = req;
    u->id = id;
    snprintf(u->ids, sizeof(u->ids), "%lld", (long long)id);
    return u;
}

/* The account as it is now, with the entry that changed it (NULL: none). */
static void on_user_row(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "user_not_found", "no such user"))
        return;
    json_t *o = user_json(req, res, 0);
    if (o != NULL)
        json_object_set_new(o, "seq",
                            api_col_null(res, 0, "seq") ? json_null()
                                                        : json_integer(api_col_int(res, 0, "seq")));
    dems_resp_json(req, 200, o);
}

static void answer_user(struct dems_req *req, const struct user_change *u, const char *seq)
{
    const char *params[] = {u->ids, seq};
    int r =
        dems_db_req(req, "SELECT " USER_COLS ", $2::bigint AS seq FROM users WHERE id = $1::bigint",
                    2, params, on_user_row);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_user_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct user_change *u = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0) {
            api_case_changed(req, item, "the account");
        } else {
            char seq[24];
            snprintf(seq, sizeof(seq), "%llu", (unsigned long long)item->seq);
            answer_user(req, u, seq);
        }
    }
    dems_req_unref(req);
}

/* The tokens of $1 revoked, as a CTE the change's statement runs when $revoke. */
#define REVOKE_CTE(revoke)                                                                         \
    "WITH t AS (UPDATE auth_tokens SET revoked_at = now() WHERE user_id = $1::bigint"              \
    " AND revoked_at IS NULL AND " revoke " RETURNING 1)"

static void on_user_found(struct dems_req *req, const PGresult *res, int err)
{
    struct user_change *u = dems_req_data(req);
    if (!api_found(req, res, err, "user_not_found", "no such user"))
        return;
    const char *role = u->has_role ? u->role : api_col(res, 0, "role");
    bool disabled = u->has_disabled ? u->disabled : api_col_bool(res, 0, "disabled");
    bool totp = u->has_totp ? u->totp_required : api_col_bool(res, 0, "totp_required");
    bool face = u->has_face ? u->face_search : api_col_bool(res, 0, "face_search");
    if (strcmp(role, "prosecutor") == 0 && face) {
        if (u->has_face) {
            dems_resp_error(req, 400, "invalid_field",
                            "field \"face_search\": only officers and admins may hold the "
                            "face-search permission");
            return;
        }
        face = false; /* a prosecutor cannot keep it */
    }
    bool role_changed = strcmp(role, api_col(res, 0, "role")) != 0;
    if (u->id == dems_req_principal(req)->user_id && (role_changed || disabled)) {
        dems_resp_error(req, 409, "cannot_change_self",
                        "an administrator cannot disable or demote their own account");
        return;
    }
    json_t *changes = json_object();
    if (role_changed)
        json_object_set_new(changes, "role",
                            json_pack("{s:s,s:s}", "from", api_col(res, 0, "role"), "to", role));
    if (disabled != api_col_bool(res, 0, "disabled"))
        json_object_set_new(changes, "disabled",
                            json_pack("{s:b,s:b}", "from", !disabled, "to", disabled));
    if (totp != api_col_bool(res, 0, "totp_required"))
        json_object_set_new(changes, "totp_required",
                            json_pack("{s:b,s:b}", "from", !totp, "to", totp));
    if (face != api_col_bool(res, 0, "face_search"))
        json_object_set_new(changes, "face_search",
                            json_pack("{s:b,s:b}", "from", !face, "to", face));
    if (changes == NULL || json_object_size(changes) == 0) {
        json_decref(changes);
        answer_user(req, u, NULL); /* nothing to change: no entry */
        return;
    }
    bool revoke = role_changed || disabled;
    const char *params[] = {u->ids,
                            role,
                            disabled ? "true" : "false",
                            totp ? "true" : "false",
                            face ? "true" : "false",
                            revoke ? "true" : "false"};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_USER_UPDATED, NULL,
        json_pack("{s:I,s:s,s:o,s:b}", "user_id", (json_int_t)u->id, "username",
                  api_col(res, 0, "username"), "changes", changes, "tokens_revoked", revoke),
        REVOKE_CTE(
            "$6::boolean") " UPDATE users SET role = $2, disabled = $3::boolean, totp_required = "
                           "$4::boolean,"
                           " face_search = $5::boolean, updated_at = now() WHERE id = $1::bigint"
                           " AND (role, disabled, totp_required, face_search) IS DISTINCT FROM"
                           " ($2, $3::boolean, $4::boolean, $5::boolean) AND (SELECT count(*) FROM "
                           "t) >= 0",
        6, params);
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_user_changed);
}

/* Reads an optional boolean field that is present into *ret; *has when it was. */
static bool opt_bool(struct dems_req *req, const char *key, bool *has, bool *ret)
{
    *has = json_object_get(dems_req_json(req), key) != NULL;
    return !*has || api_get_bool(req, key, false, ret);
}

/* PATCH /v1/admin/users/{id} (ledgered USER_UPDATED). */
void api_admin_users_update(struct dems_req *req)
{
    struct user_change *u = change_new(req);
    if (u == NULL)
        return;
    json_t *body = dems_req_json(req);
    static const char *const known[] = {"role", "disabled", "totp_required", "face_search"};
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "field \"%.60s\" cannot be changed here (role, disabled, totp_required,"
                     " face_search)",
                     key);
            dems_resp_error(req, 400, "invalid_field", msg);
            return;
        }
    }
    if (json_object_size(body) == 0) {
        dems_resp_error(req, 400, "invalid_field",
                        "give at least one field to change: role, disabled, totp_required,"
                        " face_search");
        return;
    }
    const char *role = NULL;
    if (!api_get_str(req, "role", 15, false, &role) ||
        !opt_bool(req, "disabled", &u->has_disabled, &u->disabled) ||
        !opt_bool(req, "totp_required", &u->has_totp, &u->totp_required) ||
        !opt_bool(req, "face_search", &u->has_face, &u->face_search))
        return;
    if (role != NULL) {
        if (dems_role_parse(role) == 0) {
            dems_resp_error(req, 400, "invalid_field",
                            "field \"role\" must be admin, officer or prosecutor");
            return;
        }
        u->has_role = true;
        snprintf(u->role, sizeof(u->role), "%s", role);
    }
    const char *params[] = {u->ids};
    int r = dems_db_req(req,
                        "SELECT username, role, disabled, totp_required, face_search FROM users"
                        " WHERE id = $1::bigint",
                        1, params, on_user_found);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- password reset ---- */

static void reset_hash_work(void *arg)
{
    struct user_change *u = arg;
    u->err = dems_password_hash(u->password, strlen(u->password), false, u->hash);
    sodium_free(u->password);
    u->password = NULL;
}

static void on_reset_user(struct dems_req *req, const PGresult *res, int err);

static void reset_hash_done(void *arg)
{
    struct user_change *u = arg;
    struct dems_req *req = u->req;
    if (!dems_req_is_aborted(req)) {
        const char *params[] = {u->ids};
        int r = u->err < 0 ? u->err
                           : dems_db_req(req, "SELECT username FROM users WHERE id = $1::bigint", 1,
                                         params, on_reset_user);
        if (r < 0)
            dems_resp_err(req, r);
    }
    dems_req_unref(req);
}

static void on_reset_user(struct dems_req *req, const PGresult *res, int err)
{
    struct user_change *u = dems_req_data(req);
    if (!api_found(req, res, err, "user_not_found", "no such user"))
        return;
    const char *params[] = {u->ids, u->hash};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_USER_UPDATED, NULL,
        json_pack("{s:I,s:s,s:{s:s},s:b}", "user_id", (json_int_t)u->id, "username",
                  api_col(res, 0, "username"), "changes", "password", "reset", "tokens_revoked", 1),
        REVOKE_CTE("true") " UPDATE users SET password_hash = $2, updated_at = now()"
                           " WHERE id = $1::bigint AND (SELECT count(*) FROM t) >= 0",
        2, params);
    sodium_memzero(u->hash, sizeof(u->hash));
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_user_changed);
}

/* POST /v1/admin/users/{id}/password: {"password"}; its tokens are revoked. */
void api_admin_users_password(struct dems_req *req)
{
    struct user_change *u = change_new(req);
    const char *password;
    if (u == NULL || !api_get_str(req, "password", DEMS_MAX_PASSWORD, true, &password))
        return;
    if (strlen(password) < 8) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"password\" must be at least 8 characters");
        return;
    }
    u->password = sodium_malloc(strlen(password) + 1);
    if (u->password == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    memcpy(u->password, password, strlen(password) + 1);
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), reset_hash_work, reset_hash_done, u) < 0) {
        dems_req_unref(req);
        dems_resp_err(req, DEMS_ENOMEM);
    }
}
