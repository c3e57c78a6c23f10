/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl login, logout, whoami. Login signs in (POST /v1/auth/login,
 * asking for the one-time code when the server says totp_required), mints
 * an API token with the session (POST /v1/me/tokens), ends the session and
 * keeps the API token in the token file (mode 0600); --session keeps the
 * login session's token instead. Logout revokes what was kept and removes
 * the file.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/* A CA path as an absolute one, so the token file works from any directory. */
static char *absolute(const char *path)
{
    char buf[PATH_MAX];
    if (path == NULL)
        return NULL;
    return realpath(path, buf) != NULL ? strdup(buf) : strdup(path);
}

/* POST /v1/auth/login. Returns CTL_OK and the answer, or an exit code; *ret_totp_needed. */
static int sign_in(struct ctl_http *h, const char *user, const char *password, const char *totp,
                   json_t **ret_doc, bool *ret_totp_needed)
{
    json_t *body = json_pack("{s:s,s:s}", "username", user, "password", password);
    struct ctl_resp resp;
    *ret_doc = NULL;
    *ret_totp_needed = false;
    if (body == NULL)
        return ctl_fail(CTL_USAGE, "out of memory");
    if (totp != NULL)
        json_object_set_new(body, "totp", json_string(totp));
    int r = ctl_http_do(h, "POST", "/v1/auth/login", body, &resp);
    /* The body held the password: wipe jansson's copy. */
    const char *pw = json_string_value(json_object_get(body, "password"));
    if (pw != NULL)
        explicit_bzero((char *)(uintptr_t)pw, strlen(pw));
    json_decref(body);
    if (r != CTL_OK)
        return r;
    const char *code = json_string_value(json_object_get(resp.json, "code"));
    if (resp.status == 401 && totp == NULL && code != NULL && strcmp(code, "totp_required") == 0) {
        *ret_totp_needed = true;
        ctl_resp_done(&resp);
        return CTL_AUTH;
    }
    r = ctl_check(&resp);
    if (r == CTL_OK && json_string_value(json_object_get(resp.json, "token")) == NULL)
        r = ctl_fail(CTL_REFUSED, "the login answer holds no token");
    if (r == CTL_OK) {
        *ret_doc = resp.json;
        resp.json = NULL;
    }
    ctl_resp_done(&resp);
    return r;
}

static int run_login(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"username", false, NULL},
                             {"password-stdin", true, NULL},
                             {"totp", false, NULL},
                             {"session", true, NULL},
                             {"token-name", false, NULL},
                             {"ttl-days", false, NULL},
                             {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    const char *user_opt = ctl_opt_get(opts, "username");
    if (n == 1 && user_opt != NULL)
        return ctl_usage_error("give the username once");
    if (n == 1)
        user_opt = pos[0];
    bool from_stdin = ctl_opt_get(opts, "password-stdin") != NULL;
    bool keep_session = ctl_opt_get(opts, "session") != NULL;
    int64_t ttl = 90;
    if (ctl_opt_get(opts, "ttl-days") != NULL &&
        !ctl_int_arg("--ttl-days", ctl_opt_get(opts, "ttl-days"), 1, 365, &ttl))
        return CTL_USAGE;
    if (keep_session && (ctl_opt_get(opts, "ttl-days") || ctl_opt_get(opts, "token-name")))
        return ctl_usage_error("--session keeps the login session: no --ttl-days or --token-name");
    if (from_stdin && user_opt == NULL)
        return ctl_usage_error("--password-stdin needs the username (USERNAME or --username)");

    struct ctl_config cfg;
    int r = ctl_config_load(&cfg, true);
    if (r != CTL_OK)
        return r;
    char *user = user_opt != NULL ? strdup(user_opt) : ctl_read_line("username", false, false);
    char *password = user != NULL ? ctl_read_line("password", true, from_stdin) : NULL;
    char *totp = NULL;
    json_t *doc = NULL;
    struct ctl_http h;
    r = user == NULL || password == NULL ? CTL_USAGE : ctl_http_init(&h, cfg.server, cfg.ca, NULL);
    if (r != CTL_OK) {
        free(user);
        ctl_free_secret(password);
        ctl_config_done(&cfg);
        return r;
    }
    h.cfg = &cfg;
    bool need_totp;
    r = sign_in(&h, user, password, ctl_opt_get(opts, "totp"), &doc, &need_totp);
    if (need_totp) {
        /* After --password-stdin the code is the next line of standard input. */
        totp = ctl_read_line("one-time code (TOTP)", false, from_stdin);
        r = totp == NULL ? CTL_AUTH : sign_in(&h, user, password, totp, &doc, &need_totp);
    }
    ctl_free_secret(password);
    ctl_free_secret(totp);
    if (r != CTL_OK) {
        free(user);
        ctl_http_done(&h);
        ctl_config_done(&cfg);
        return r;
    }
    const char *session = json_string_value(json_object_get(doc, "token"));
    struct ctl_token tok = {.server = cfg.server, .ca = absolute(cfg.ca)};
    const char *expires = json_string_value(json_object_get(doc, "expires_at"));
    json_t *minted = NULL;
    char idbuf[32] = "";
    if (keep_session) {
        snprintf(tok.kind, sizeof(tok.kind), "session");
        tok.token = (char *)(uintptr_t)session;
    } else {
        char host[128] = "";
        char name[200];
        gethostname(host, sizeof(host) - 1);
        const char *tname = ctl_opt_get(opts, "token-name");
        snprintf(name, sizeof(name), "demsctl on %s", host[0] != '\0' ? host : "unknown host");
        json_t *body = json_pack("{s:s,s:I}", "name", tname != NULL ? tname : name, "ttl_days",
                                 (json_int_t)ttl);
        h.token = session;
        r = ctl_call(&h, "POST", "/v1/me/tokens", body, &minted);
        json_decref(body);
        if (r == CTL_OK && json_string_value(json_object_get(minted, "token")) == NULL)
            r = ctl_fail(CTL_REFUSED, "the server made no API token");
        if (r == CTL_OK) {
            snprintf(tok.kind, sizeof(tok.kind), "api");
            tok.token = (char *)(uintptr_t)json_string_value(json_object_get(minted, "token"));
            snprintf(idbuf, sizeof(idbuf), "%lld",
                     (long long)json_integer_value(json_object_get(minted, "id")));
            tok.id = idbuf;
            expires = json_string_value(json_object_get(minted, "expires_at"));
        }
    }
    if (r == CTL_OK && (r = ctl_token_write(cfg.token_path, &tok)) != CTL_OK && !keep_session) {
        /* Not kept: do not leave a live token behind. */
        char path[64];
        struct ctl_resp resp;
        snprintf(path, sizeof(path), "/v1/me/tokens/%s", idbuf);
        if (ctl_http_do(&h, "DELETE", path, NULL, &resp) == CTL_OK)
            ctl_resp_done(&resp);
    }
    if (!keep_session) {
        /* The session was only for minting: end it. */
        struct ctl_resp resp;
        if (ctl_http_do(&h, "POST", "/v1/auth/logout", NULL, &resp) == CTL_OK)
            ctl_resp_done(&resp);
    }
    if (r == CTL_OK) {
        json_t *out =
            json_pack("{s:s,s:s,s:s,s:s?,s:s}", "server", cfg.server, "username", user, "kind",
                      tok.kind, "expires_at", expires, "token_file", cfg.token_path);
        if (ctl_global.json)
            ctl_print_json(out);
        else
            printf("Logged in to %s as %s: %s token (until %s) kept in %s\n", cfg.server, user,
                   keep_session ? "session" : "API", expires != NULL ? expires : "?",
                   cfg.token_path);
        json_decref(out);
    }
    if (minted != NULL) {
        const char *t = json_string_value(json_object_get(minted, "token"));
        if (t != NULL)
            explicit_bzero((char *)(uintptr_t)t, strlen(t));
    }
    if (session != NULL)
        explicit_bzero((char *)(uintptr_t)session, strlen(session));
    json_decref(minted);
    json_decref(doc);
    free(tok.ca);
    free(user);
    ctl_http_done(&h);
    ctl_config_done(&cfg);
    return r;
}

static int run_logout(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"local", true, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    if (ctl_opt_get(opts, "local") != NULL) {
        int r = ctl_config_load(&cfg, false);
        if (r != CTL_OK)
            return r;
        if (unlink(cfg.token_path) != 0)
            r = ctl_fail(CTL_AUTH, "no token in %s", cfg.token_path);
        else if (!ctl_global.json)
            printf("Removed %s (the token was not revoked)\n", cfg.token_path);
        ctl_config_done(&cfg);
        return r;
    }
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK)
        return r;
    struct ctl_resp resp;
    char path[64];
    bool api = strcmp(tok.kind, "api") == 0 && tok.id != NULL;
    if (api)
        snprintf(path, sizeof(path), "/v1/me/tokens/%s", tok.id);
    r = ctl_http_do(&h, api ? "DELETE" : "POST", api ? path : "/v1/auth/logout", NULL, &resp);
    if (r == CTL_OK) {
        /* 401: the token was already revoked or expired; nothing to undo. */
        if (resp.status != 401)
            r = ctl_check(&resp);
        ctl_resp_done(&resp);
    }
    if (r == CTL_OK) {
        if (unlink(cfg.token_path) != 0)
            r = ctl_fail(CTL_USAGE, "the token is revoked, but %s could not be removed",
                         cfg.token_path);
        else if (!ctl_global.json)
            printf("Logged out of %s: the token is revoked and %s removed\n", cfg.server,
                   cfg.token_path);
    } else {
        ctl_fail(r,
                 "the token was not revoked and is kept in %s (demsctl logout --local only "
                 "removes it)",
                 cfg.token_path);
    }
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static int run_whoami(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK)
        return r;
    json_t *me;
    r = ctl_call(&h, "GET", "/v1/me", NULL, &me);
    if (r == CTL_OK) {
        json_object_del(me, "csrf_token");
        json_object_set_new(me, "server", json_string(cfg.server));
        static const struct ctl_col cols[] = {
            {"server", "server"},      {"username", "username"},
            {"role", "role"},          {"token", "token_kind"},
            {"totp", "totp_enabled"},  {"id", "id"},
            {"created", "created_at"}, {0},
        };
        ctl_print_object(me, cols);
    }
    json_decref(me);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static const struct ctl_cmd login_cmd[] = {
    {NULL,
     "[USERNAME] [--password-stdin] [--totp CODE] [--session] [--token-name NAME] "
     "[--ttl-days N]",
     "Signs in to the server and keeps a token for the next commands in the token file\n"
     "(~/.config/dems/token, mode 0600, in a directory made 0700). The password is asked\n"
     "for on the terminal without echo, or read from the first line of standard input\n"
     "with --password-stdin (then the username must be given). When the account has\n"
     "TOTP, the one-time code is asked for too (--totp gives it; after --password-stdin\n"
     "it is the next line of standard input).\n\n"
     "By default the login session mints an API token (POST /v1/me/tokens; --token-name,\n"
     "default \"demsctl on HOST\"; --ttl-days 1-365, default 90), the session is ended,\n"
     "and the API token is kept: it shows in the account's token list and `demsctl\n"
     "logout` revokes it. --session keeps the login session's token instead (it ends\n"
     "with the server's session_ttl).\n\n"
     "The token file also records the server and CA it was made for: later commands\n"
     "use them when no other server is configured, and refuse to send the token to\n"
     "another server.",
     run_login},
};

static const struct ctl_cmd logout_cmd[] = {
    {NULL, "[--local]",
     "Revokes the kept token (DELETE /v1/me/tokens/ID for an API token, POST\n"
     "/v1/auth/logout for a session) and removes the token file. When the server cannot\n"
     "be reached the file is kept; --local removes it without revoking.",
     run_logout},
};

static const struct ctl_cmd whoami_cmd[] = {
    {NULL, "", "Shows who the kept token signs in as (GET /v1/me).", run_whoami},
};

const struct ctl_group ctl_group_login = {"login", "sign in and keep a token", NULL, login_cmd, 1};
const struct ctl_group ctl_group_logout = {"logout", "revoke the token and remove it", NULL,
                                           logout_cmd, 1};
const struct ctl_group ctl_group_whoami = {"whoami", "who the token signs in as", NULL, whoami_cmd,
                                           1};
