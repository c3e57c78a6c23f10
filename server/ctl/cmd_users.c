/* SPDX-License-Identifier: Apache-2.0 */
/* demsctl users: accounts (GET, POST /v1/admin/users; PATCH /v1/admin/users/{id}). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"

static const struct ctl_col user_cols[] = {
    {"id", "id"},
    {"username", "username"},
    {"role", "role"},
    {"totp", "totp_enabled"},
    {"totp_required", "totp_required"},
    {"disabled", "disabled"},
    {"face_search", "face_search"},
    {"created", "created_at"},
    {"last_login", "last_login_at"},
    {0},
};

/* "on"/"yes"/"true" or "off"/"no"/"false"; usage error otherwise. */
static bool on_off(const char *what, const char *v, bool *ret)
{
    *ret = strcmp(v, "on") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0;
    if (*ret || strcmp(v, "off") == 0 || strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
        return true;
    ctl_usage_error("%s: give on or off, not '%s'", what, v);
    return false;
}

static int run_list(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"limit", false, NULL},
                             {"role", false, NULL},
                             {"disabled", false, NULL},
                             {"prefix", false, NULL},
                             {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    char path[512] = "/v1/admin/users";
    bool disabled;
    const char *d = ctl_opt_get(opts, "disabled");
    if (d != NULL && !on_off("--disabled", d, &disabled))
        return CTL_USAGE;
    if ((ctl_opt_get(opts, "role") != NULL &&
         !ctl_query_add(path, sizeof(path), "role", ctl_opt_get(opts, "role"))) ||
        (d != NULL &&
         !ctl_query_add(path, sizeof(path), "disabled", disabled ? "true" : "false")) ||
        (ctl_opt_get(opts, "prefix") != NULL &&
         !ctl_query_add(path, sizeof(path), "q", ctl_opt_get(opts, "prefix"))))
        return CTL_USAGE;
    return ctl_one_list(path, "users", ctl_opt_get(opts, "limit"), user_cols);
}

static int run_create(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"role", false, NULL}, {"password-stdin", true, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the username is required");
    const char *role = ctl_opt_get(opts, "role");
    if (role == NULL)
        return ctl_usage_error("--role is required (admin, officer or prosecutor)");
    bool from_stdin = ctl_opt_get(opts, "password-stdin") != NULL;
    char *pw = ctl_read_line("new user's password", true, from_stdin);
    if (pw == NULL)
        return CTL_USAGE;
    if (!from_stdin) {
        char *again = ctl_read_line("the password again", true, false);
        bool same = again != NULL && strcmp(again, pw) == 0;
        ctl_free_secret(again);
        if (!same) {
            ctl_free_secret(pw);
            return ctl_fail(CTL_USAGE, "the passwords differ: nothing was created");
        }
    }
    json_t *body = json_pack("{s:s,s:s,s:s}", "username", pos[0], "password", pw, "role", role);
    ctl_free_secret(pw);
    static const struct ctl_col cols[] = {
        {"id", "id"}, {"username", "username"}, {"role", "role"}, {0}};
    return ctl_one("POST", "/v1/admin/users", body, cols, NULL);
}

/* USER as an id, or a username looked up in the list. */
static int user_id(struct ctl_http *h, const char *user, int64_t *ret)
{
    if (strspn(user, "0123456789") == strlen(user))
        return ctl_id_arg("USER", user, ret) ? CTL_OK : CTL_USAGE;
    json_t *all;
    char path[512] = "/v1/admin/users";
    if (!ctl_query_add(path, sizeof(path), "q", user)) /* a prefix: the name is among them */
        return CTL_USAGE;
    int r = ctl_list(h, path, "users", 0, &all);
    if (r != CTL_OK)
        return r;
    size_t i;
    json_t *u;
    bool found = false;
    json_array_foreach(json_object_get(all, "users"), i, u)
    {
        const char *name = json_string_value(json_object_get(u, "username"));
        if (!found && name != NULL && strcasecmp(name, user) == 0) {
            *ret = (int64_t)json_integer_value(json_object_get(u, "id"));
            found = true;
        }
    }
    if (!found)
        r = ctl_fail(CTL_REFUSED, "no user named '%s'", user);
    json_decref(all);
    return r;
}

/* Runs method /v1/admin/users/{id}<suffix> with body (stolen) for USER. */
static int for_user(const char *user, const char *method, const char *suffix, json_t *body)
{
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK) {
        json_decref(body);
        return r;
    }
    int64_t id = 0;
    json_t *answer = NULL;
    if ((r = user_id(&h, user, &id)) == CTL_OK) {
        char path[96];
        snprintf(path, sizeof(path), "/v1/admin/users/%lld%s", (long long)id, suffix);
        r = ctl_call(&h, method, path, body, &answer);
    }
    json_decref(body);
    if (r == CTL_OK) {
        static const struct ctl_col cols[] = {
            {"id", "id"},
            {"username", "username"},
            {"role", "role"},
            {"disabled", "disabled"},
            {"totp_required", "totp_required"},
            {"face_search", "face_search"},
            {"ledger entry", "seq"},
            {0},
        };
        ctl_print_object(answer, cols);
    }
    json_decref(answer);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static int run_update(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"role", false, NULL},
                             {"disabled", false, NULL},
                             {"totp-required", false, NULL},
                             {"face-search", false, NULL},
                             {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the user (an id or a username) is required");
    json_t *body = json_object();
    if (ctl_opt_get(opts, "role") != NULL)
        json_object_set_new(body, "role", json_string(ctl_opt_get(opts, "role")));
    const char *flags[][2] = {{"disabled", "disabled"},
                              {"totp-required", "totp_required"},
                              {"face-search", "face_search"}};
    for (size_t i = 0; i < 3; i++) {
        const char *v = ctl_opt_get(opts, flags[i][0]);
        bool on;
        char what[32];
        snprintf(what, sizeof(what), "--%s", flags[i][0]);
        if (v != NULL && !on_off(what, v, &on)) {
            json_decref(body);
            return CTL_USAGE;
        }
        if (v != NULL)
            json_object_set_new(body, flags[i][1], json_boolean(on));
    }
    if (json_object_size(body) == 0) {
        json_decref(body);
        return ctl_usage_error("nothing to change: give --role, --disabled, --totp-required or "
                               "--face-search");
    }
    return for_user(pos[0], "PATCH", "", body);
}

static int run_reset_password(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"password-stdin", true, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the user (an id or a username) is required");
    bool from_stdin = ctl_opt_get(opts, "password-stdin") != NULL;
    char *pw = ctl_read_line("new password", true, from_stdin);
    if (pw == NULL)
        return CTL_USAGE;
    if (!from_stdin) {
        char *again = ctl_read_line("the password again", true, false);
        bool same = again != NULL && strcmp(again, pw) == 0;
        ctl_free_secret(again);
        if (!same) {
            ctl_free_secret(pw);
            return ctl_fail(CTL_USAGE, "the passwords differ: nothing was changed");
        }
    }
    json_t *body = json_pack("{s:s}", "password", pw);
    ctl_free_secret(pw);
    return for_user(pos[0], "POST", "/password", body);
}

static const struct ctl_cmd cmds[] = {
    {"list", "[--role ROLE] [--disabled on|off] [--prefix TEXT] [--limit N]",
     "Lists the accounts (GET /v1/admin/users), every page, with their last sign-in:\n"
     "all, or those with a role, disabled or not, or whose username starts with --prefix.\n"
     "--limit stops after N.",
     run_list},
    {"create", "USERNAME --role ROLE [--password-stdin]",
     "Creates an account (POST /v1/admin/users). ROLE is admin, officer or prosecutor.\n"
     "The password is asked for twice on the terminal without echo, or read from the\n"
     "first line of standard input with --password-stdin. The username is case-folded.",
     run_create},
    {"update",
     "USER [--role ROLE] [--disabled on|off] [--totp-required on|off] [--face-search on|off]",
     "Changes an account (PATCH /v1/admin/users/{id}; USER is an id or a username), in\n"
     "one USER_UPDATED ledger entry: its role, whether it is disabled, whether it must\n"
     "set up TOTP, the face-search permission (not for prosecutors). Disabling or a new\n"
     "role revokes the account's sessions and API tokens. An administrator cannot\n"
     "disable or demote themselves.",
     run_update},
    {"reset-password", "USER [--password-stdin]",
     "Sets a new password (POST /v1/admin/users/{id}/password; 8 characters or more),\n"
     "asked for twice without echo or read from standard input. The account's tokens\n"
     "are revoked; a USER_UPDATED entry records the reset (not the password).",
     run_reset_password},
};

const struct ctl_group ctl_group_users = {"users", "list, create and change accounts",
                                          "Accounts (administrators only).", cmds,
                                          sizeof(cmds) / sizeof(cmds[0])};
