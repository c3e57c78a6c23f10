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
    {"disabled", "disabled"},
    {"face_search", "face_search"},
    {"created", "created_at"},
    {0},
};

static int run_list(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"limit", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    return ctl_one_list("/v1/admin/users", "users", ctl_opt_get(opts, "limit"), user_cols);
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
    int r = ctl_list(h, "/v1/admin/users", "users", 0, &all);
    if (r != CTL_OK)
        return r;
    size_t i;
    json_t *u;
    r = ctl_fail(CTL_REFUSED, "no user named '%s'", user);
    json_array_foreach(json_object_get(all, "users"), i, u)
    {
        const char *name = json_string_value(json_object_get(u, "username"));
        if (name != NULL && strcasecmp(name, user) == 0) {
            *ret = (int64_t)json_integer_value(json_object_get(u, "id"));
            r = CTL_OK;
        }
    }
    json_decref(all);
    return r;
}

static int run_update(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"face-search", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the user (an id or a username) is required");
    const char *fs = ctl_opt_get(opts, "face-search");
    if (fs == NULL)
        return ctl_usage_error("nothing to change: give --face-search on|off");
    bool on = strcmp(fs, "on") == 0 || strcmp(fs, "yes") == 0 || strcmp(fs, "true") == 0;
    if (!on && strcmp(fs, "off") != 0 && strcmp(fs, "no") != 0 && strcmp(fs, "false") != 0)
        return ctl_usage_error("--face-search: give on or off, not '%s'", fs);
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK)
        return r;
    int64_t id = 0;
    json_t *answer = NULL;
    if ((r = user_id(&h, pos[0], &id)) == CTL_OK) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/admin/users/%lld", (long long)id);
        json_t *body = json_pack("{s:b}", "face_search", on);
        r = ctl_call(&h, "PATCH", path, body, &answer);
        json_decref(body);
    }
    if (r == CTL_OK) {
        static const struct ctl_col cols[] = {
            {"id", "id"}, {"face_search", "face_search"}, {"ledger entry", "seq"}, {0}};
        ctl_print_object(answer, cols);
    }
    json_decref(answer);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static const struct ctl_cmd cmds[] = {
    {"list", "[--limit N]",
     "Lists the accounts (GET /v1/admin/users), every page; --limit stops after N.", run_list},
    {"create", "USERNAME --role ROLE [--password-stdin]",
     "Creates an account (POST /v1/admin/users). ROLE is admin, officer or prosecutor.\n"
     "The password is asked for twice on the terminal without echo, or read from the\n"
     "first line of standard input with --password-stdin. The username is case-folded.",
     run_create},
    {"update", "USER --face-search on|off",
     "Changes an account (PATCH /v1/admin/users/{id}; USER is an id or a username):\n"
     "--face-search grants or withdraws the face-search permission (not for\n"
     "prosecutors). The change is a USER_UPDATED ledger entry.",
     run_update},
};

const struct ctl_group ctl_group_users = {"users", "list, create and change accounts",
                                          "Accounts (administrators only).", cmds,
                                          sizeof(cmds) / sizeof(cmds[0])};
