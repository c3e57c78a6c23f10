/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Administrators' user management: GET /v1/admin/users lists accounts,
 * POST /v1/admin/users creates one (the Argon2id hash is computed on the
 * work pool, never on the loop); PATCH /v1/admin/users/{id} grants or
 * withdraws the face-search permission (ledgered USER_UPDATED).
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

static void on_created(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        if (dems_db_is_unique_violation(res))
            dems_resp_error(req, 409, "user_exists", "a user with that name already exists");
        else
            api_db_error(req, res, err);
        return;
    }
    dems_resp_json(req, 201,
                   json_pack("{s:I,s:s,s:s}", "id", (json_int_t)api_col_int(res, 0, "id"),
                             "username", api_col(res, 0, "username"), "role",
                             api_col(res, 0, "role")));
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
        if (r == 0)
            r = dems_db_req(c->req,
                            "INSERT INTO users (username, role, password_hash)"
                            " VALUES ($1, $2, $3) RETURNING id, username, role",
                            3, params, on_created);
        if (r < 0)
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
    return json_pack("{s:I,s:s,s:s,s:b,s:b,s:b,s:s}", "id", (json_int_t)api_col_int(res, row, "id"),
                     "username", api_col(res, row, "username"), "role", api_col(res, row, "role"),
                     "totp_enabled", api_col_bool(res, row, "totp_enabled"), "disabled",
                     api_col_bool(res, row, "disabled"), "face_search",
                     api_col_bool(res, row, "face_search"), "created_at",
                     api_col(res, row, "created_at"));
}

static void on_users(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "users", "id", user_json);
}

/* GET /v1/admin/users: accounts in id order, a page at a time. */
void api_admin_users_list(struct dems_req *req)
{
    struct api_page page;
    char a[24], limit[24];
    if (!api_page_by_id(req, &page, a, limit))
        return;
    const char *params[] = {a, limit};
    int r =
        dems_db_req(req,
                    "SELECT id, username, role, totp_enabled, disabled, face_search,"
                    " " API_TS("created_at") " AS created_at FROM users"
                                             " WHERE id > $1::bigint ORDER BY id LIMIT $2::integer",
                    2, params, on_users);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- changing an account ---- */

struct user_change {
    int64_t id;
    bool face_search;
};

static void on_user_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct user_change *u = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            api_case_changed(req, item, "the account");
        else
            dems_resp_json(req, 200,
                           json_pack("{s:I,s:b,s:I}", "id", (json_int_t)u->id, "face_search",
                                     u->face_search, "seq", (json_int_t)item->seq));
    }
    dems_req_unref(req);
}

static void on_user_found(struct dems_req *req, const PGresult *res, int err)
{
    struct user_change *u = dems_req_data(req);
    if (!api_found(req, res, err, "user_not_found", "no such user"))
        return;
    bool had = api_col_bool(res, 0, "face_search");
    if (had == u->face_search) {
        dems_resp_json(req, 200,
                       json_pack("{s:I,s:b,s:n}", "id", (json_int_t)u->id, "face_search",
                                 u->face_search, "seq"));
        return;
    }
    if (u->face_search && strcmp(api_col(res, 0, "role"), "prosecutor") == 0) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"face_search\": only officers and admins may hold the face-search "
                        "permission");
        return;
    }
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)u->id);
    const char *params[] = {id, u->face_search ? "true" : "false"};
    struct dems_ledger_item *it =
        api_change_new(req, DEMS_LEDGER_USER_UPDATED, NULL,
                       json_pack("{s:I,s:s,s:{s:{s:b,s:b}}}", "user_id", (json_int_t)u->id,
                                 "username", api_col(res, 0, "username"), "changes", "face_search",
                                 "from", had, "to", u->face_search),
                       "UPDATE users SET face_search = $2::boolean WHERE id = $1::bigint"
                       " AND face_search <> $2::boolean",
                       2, params);
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_user_changed);
}

/* PATCH /v1/admin/users/{id}: {"face_search": true|false} (ledgered USER_UPDATED). */
void api_admin_users_update(struct dems_req *req)
{
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "user_not_found", "no such user");
        return;
    }
    struct user_change *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, u, free);
    u->id = id;
    if (json_object_get(dems_req_json(req), "face_search") == NULL) {
        dems_resp_error(req, 400, "invalid_field", "field \"face_search\" is required");
        return;
    }
    if (!api_get_bool(req, "face_search", false, &u->face_search))
        return;
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    const char *params[] = {ids};
    int r = dems_db_req(req, "SELECT username, role, face_search FROM users WHERE id = $1::bigint",
                        1, params, on_user_found);
    if (r < 0)
        dems_resp_err(req, r);
}
