/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl: the administrators' command-line client for demsd's HTTP API
 * (docs/demsctl.md). "demsctl GROUP COMMAND [OPTIONS] [ARGS]"; every
 * command has --help; the exit status says what happened (ctl.h).
 */
#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dems/version.h"

#include "ctl.h"

static const struct ctl_group *const groups[] = {
    &ctl_group_login,    &ctl_group_logout, &ctl_group_whoami, &ctl_group_users,
    &ctl_group_devices,  &ctl_group_jobs,   &ctl_group_holds,  &ctl_group_retention,
    &ctl_group_disposal, &ctl_group_audit,  &ctl_group_ledger,
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static const char exit_codes[] =
    "Exit status:\n"
    "  0  done\n"
    "  1  the server refused the request (one line: demsctl: <status> <code>: <detail>),\n"
    "     or a verification failed\n"
    "  2  usage error: a bad option, argument or configuration (one line says which)\n"
    "  3  the server cannot be reached, or TLS failed (certificate, CA, host name)\n"
    "  4  not logged in, the token file is refused, or the server rejected the token\n";

static void usage(FILE *f)
{
    fprintf(f, "usage: demsctl [GLOBAL OPTIONS] COMMAND [SUBCOMMAND] [OPTIONS] [ARGS]\n"
               "       demsctl --version | --help\n\n"
               "The administrators' client for a dems server.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NGROUPS; i++)
        fprintf(f, "  %-10s %s\n", groups[i]->name, groups[i]->summary);
    fprintf(f,
            "\n'demsctl COMMAND --help' explains one.\n\n"
            "Global options (anywhere on the line):\n"
            "  --server URL       the server, https://HOST:PORT\n"
            "  --ca FILE          the CA certificate(s) to verify it with (PEM)\n"
            "  --json             print the server's JSON instead of tables\n"
            "  --config FILE      the config file\n"
            "  --token-file FILE  where the token is kept\n"
            "  --timeout SECONDS  per request (default 60)\n\n"
            "The server and CA come from the flags, else DEMS_URL and DEMS_CA, else the config\n"
            "file (--config, DEMS_CONFIG, or ~/.config/dems/demsctl.conf: 'server = URL',\n"
            "'ca = FILE', 'token_file = FILE', 'ledger_key = VKEY', 'timeout = N'), else the\n"
            "server the stored token was made for. The token is kept in ~/.config/dems/token\n"
            "(DEMS_TOKEN_FILE, --token-file), mode 0600; a token file others can read is\n"
            "refused.\n\n%s",
            exit_codes);
}

static void version(void)
{
    struct dems_version_lib libs[4];
    dems_version_glibc(&libs[0]);
    dems_version_openssl(&libs[1]);
    dems_version_jansson(&libs[2]);
    dems_version_libcurl(&libs[3]);
    dems_version_print(stdout, "demsctl", libs, 4);
}

static void group_usage(const struct ctl_group *g, FILE *f)
{
    if (g->cmds[0].name == NULL) {
        fprintf(f, "usage: demsctl %s %s\n\n%s\n", g->name, g->cmds[0].usage, g->cmds[0].help);
        return;
    }
    fprintf(f, "usage: demsctl %s COMMAND [OPTIONS] [ARGS]\n\n%s\n\nCommands:\n", g->name, g->help);
    for (size_t i = 0; i < g->ncmds; i++)
        fprintf(f, "  %-14s %s\n", g->cmds[i].name, g->cmds[i].usage);
    fprintf(f,
            "\n'demsctl %s COMMAND --help' explains one. Global options and exit status: "
            "demsctl --help.\n",
            g->name);
}

int ctl_group_run(const struct ctl_group *g, int argc, char **argv)
{
    char words[96];
    if (g->cmds[0].name == NULL) {
        ctl_set_command(g->name);
        int r = g->cmds[0].run(argc, argv, &g->cmds[0]);
        if (r == CTL_HELP) {
            group_usage(g, stdout);
            return CTL_OK;
        }
        return r;
    }
    ctl_set_command(g->name);
    if (argc == 0)
        return ctl_usage_error("give a command: %s", g->cmds[0].name);
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        group_usage(g, stdout);
        return CTL_OK;
    }
    for (size_t i = 0; i < g->ncmds; i++) {
        const struct ctl_cmd *c = &g->cmds[i];
        if (strcmp(argv[0], c->name) != 0)
            continue;
        snprintf(words, sizeof(words), "%s %s", g->name, c->name);
        ctl_set_command(words);
        int r = c->run(argc - 1, argv + 1, c);
        if (r == CTL_HELP) {
            printf("usage: demsctl %s %s %s\n\n%s\n", g->name, c->name, c->usage, c->help);
            return CTL_OK;
        }
        return r;
    }
    if (strncmp(argv[0], "--", 2) == 0)
        return ctl_usage_error("unknown option '%s' (give the command first)", argv[0]);
    return ctl_usage_error("unknown command '%s'", argv[0]);
}

int main(int argc, char **argv)
{
    /* Global options may come before the command. */
    int i = 1;
    struct ctl_opt none[] = {{0}};
    while (i < argc && strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i], "--help") != 0 &&
           strcmp(argv[i], "--version") != 0) {
        const char *a = argv[i];
        bool flag = strcmp(a, "--json") == 0;
        int take = flag || strchr(a, '=') != NULL ? 1 : 2;
        if (i + take > argc)
            take = argc - i;
        const char *pos[1];
        int n = ctl_parse(take, argv + i, none, pos, 0);
        if (n < 0)
            return CTL_USAGE;
        i += take;
    }
    if (i >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    const char *cmd = argv[i];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CTL_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        version();
        return CTL_OK;
    }
    if (sodium_init() < 0)
        return ctl_fail(CTL_USAGE, "libsodium failed to initialise");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ctl_fail(CTL_UNREACHABLE, "libcurl failed to initialise");
    int r = -1;
    for (size_t g = 0; g < NGROUPS; g++)
        if (strcmp(cmd, groups[g]->name) == 0)
            r = ctl_group_run(groups[g], argc - i - 1, argv + i + 1);
    if (r == -1)
        r = ctl_usage_error("unknown command '%s'", cmd);
    curl_global_cleanup();
    return r;
}
