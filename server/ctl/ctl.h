/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl, the administrators' command-line client (docs/demsctl.md): the
 * pieces its command groups share. Options and usage errors (opts.c), where
 * the server, its CA and the token come from (config.c), requests over
 * libcurl (http.c), and output (out.c). Each command group is one file
 * (cmd_*.c) with a struct ctl_group.
 *
 * Exit codes: CTL_OK 0, CTL_REFUSED 1 (the server refused, or verification
 * failed), CTL_USAGE 2, CTL_UNREACHABLE 3 (cannot reach the server, TLS
 * failure), CTL_AUTH 4 (not logged in, or the token was rejected). Every
 * failure prints one line on stderr starting "demsctl: ".
 */
#ifndef DEMS_CTL_H
#define DEMS_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dems/buf.h"

struct ctl_col;

enum {
    CTL_OK = 0,
    CTL_REFUSED = 1,
    CTL_USAGE = 2,
    CTL_UNREACHABLE = 3,
    CTL_AUTH = 4,
    CTL_HELP = -1, /* --help was asked for: the caller prints the help, exit 0 */
};

/* ---------------------------------------------------------------------- */
/* Options (opts.c)                                                        */
/* ---------------------------------------------------------------------- */

/* One option: "--name VALUE", "--name=VALUE", or a flag (no value). */
struct ctl_opt {
    const char *name;
    bool is_flag;
    const char *value; /* set when given (flags: "1") */
};

/* The options every command takes, wherever they stand on the line. */
struct ctl_global {
    const char *server;     /* --server URL */
    const char *ca;         /* --ca FILE */
    const char *config;     /* --config FILE */
    const char *token_file; /* --token-file FILE */
    const char *timeout;    /* --timeout SECONDS */
    bool json;              /* --json */
};

extern struct ctl_global ctl_global;

/* "demsctl users list": for usage errors' "(try ... --help)". */
void ctl_set_command(const char *words);

/*
 * Prints "demsctl: <message> (try demsctl <command> --help)" on stderr and
 * returns CTL_USAGE.
 */
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "demsctl: <message>" on stderr and returns code. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Parses argv (after the command words) into opts (terminated by a NULL
 * name) and the global options; positionals go to pos (at most npos).
 * Returns the number of positionals, CTL_HELP for --help, or -CTL_USAGE
 * after printing a usage error.
 */
int ctl_parse(int argc, char **argv, struct ctl_opt *opts, const char **pos, int npos);

/* The option's value, or NULL. */
const char *ctl_opt_get(const struct ctl_opt *opts, const char *name);

/*
 * Parses an option or argument as a decimal integer in [min, max].
 * On error prints a usage error naming what and returns false.
 */
bool ctl_int_arg(const char *what, const char *s, int64_t min, int64_t max, int64_t *ret);

/* ---------------------------------------------------------------------- */
/* Configuration and credentials (config.c)                                 */
/* ---------------------------------------------------------------------- */

struct ctl_config {
    char *server;     /* https://host:port, no trailing slash */
    char *ca;         /* CA bundle file, or NULL for the system's */
    char *token_path; /* where the token lives */
    char *ledger_key; /* a pinned note verifier key (ledger_key = ...), or NULL */
    long timeout;     /* seconds per request */
};

/*
 * Resolves the server, CA and token file: flags, then DEMS_URL / DEMS_CA /
 * DEMS_TOKEN_FILE, then the config file (--config, DEMS_CONFIG, or
 * $XDG_CONFIG_HOME/dems/demsctl.conf, else ~/.config/dems/demsctl.conf),
 * then the token file's own server and CA (those it was made with). When
 * need_server is set and none is known, prints a line and returns
 * CTL_USAGE. Returns CTL_OK or an exit code.
 */
int ctl_config_load(struct ctl_config *cfg, bool need_server);
void ctl_config_done(struct ctl_config *cfg);

/* A stored credential. */
struct ctl_token {
    char *server;
    char *ca;      /* NULL when none was given */
    char *token;   /* the bearer token (secret) */
    char kind[16]; /* "api" or "session" */
    char *id;      /* an API token's id (for logout), or NULL */
};

/*
 * Reads the token file: it must be a regular file owned by the user and
 * readable by nobody else (mode 0600 or stricter), else it is refused.
 * Returns CTL_OK, or CTL_AUTH after printing why (not logged in, refused,
 * malformed).
 */
int ctl_token_read(const char *path, struct ctl_token *ret);

/*
 * Writes the token file atomically, mode 0600, creating its directory
 * mode 0700 when missing. Returns CTL_OK or CTL_USAGE after printing why.
 */
int ctl_token_write(const char *path, const struct ctl_token *t);
void ctl_token_done(struct ctl_token *t);

/* ---------------------------------------------------------------------- */
/* HTTP (http.c)                                                            */
/* ---------------------------------------------------------------------- */

struct ctl_http {
    const struct ctl_config *cfg;
    const char *server; /* the base URL requests go to */
    const char *ca;
    const char *token; /* bearer token, or NULL */
    void *curl;        /* CURL *, kept for connection reuse */
};

struct ctl_resp {
    long status;
    bool had_token; /* the request carried a bearer token */
    struct dems_buf body;
    json_t *json; /* the body parsed, when it is JSON */
};

/* Starts a client; token may be NULL. Returns CTL_OK or CTL_UNREACHABLE. */
int ctl_http_init(struct ctl_http *h, const char *server, const char *ca, const char *token);
void ctl_http_done(struct ctl_http *h);

/*
 * Sends method path (path and query; query values already escaped) with
 * body (a JSON value, borrowed; NULL sends none) and reads the answer into
 * *ret (free with ctl_resp_done). Returns CTL_OK with any status, or
 * CTL_UNREACHABLE after printing why the request failed (connection, TLS,
 * timeout, a body over 64 MiB).
 */
int ctl_http_do(struct ctl_http *h, const char *method, const char *path, const json_t *body,
                struct ctl_resp *ret);

/*
 * As ctl_http_do for a GET whose answer is streamed to out (no timeout for
 * the whole transfer, but one for a stalled one). The status is in
 * *ret_status; an error body (status >= 400) goes to ret->body instead.
 */
int ctl_http_download(struct ctl_http *h, const char *path, FILE *out, struct ctl_resp *ret);

void ctl_resp_done(struct ctl_resp *r);

/* The path segment or query value s, %-escaped; owned, NULL on out of memory. */
char *ctl_escape(const char *s);

/*
 * Appends "<sep>name=<value escaped>" to path (capacity cap), sep being
 * '?' for the first parameter and '&' after. Returns false (usage error
 * printed) when it does not fit.
 */
bool ctl_query_add(char *path, size_t cap, const char *name, const char *value);

/*
 * Maps an answer to an exit code: 2xx is CTL_OK; otherwise prints
 * "demsctl: <status> <code>: <detail>" and returns CTL_AUTH for 401,
 * CTL_REFUSED for anything else.
 */
int ctl_check(const struct ctl_resp *r);

/*
 * The common start of a command that needs the server and the token:
 * loads the configuration and the token, and starts a client. Returns
 * CTL_OK or an exit code (after printing why).
 */
int ctl_session(struct ctl_config *cfg, struct ctl_token *tok, struct ctl_http *h);
void ctl_session_done(struct ctl_config *cfg, struct ctl_token *tok, struct ctl_http *h);

/*
 * A request with a JSON answer in a session: sends it and checks the
 * status (ctl_check). On CTL_OK *ret_json owns the answer (NULL for an
 * empty body).
 */
int ctl_call(struct ctl_http *h, const char *method, const char *path, const json_t *body,
             json_t **ret_json);

/*
 * GETs every page of a list (Lists in docs/api.md): path (with '?' or not)
 * plus limit and cursor, following next_cursor until it is null or max items
 * were read (max 0: all). Returns CTL_OK and *ret_json =
 * {"<key>": [all items], "next_cursor": where it stopped}, or an exit code.
 */
int ctl_list(struct ctl_http *h, const char *path, const char *key, uint64_t max,
             json_t **ret_json);

/* ---------------------------------------------------------------------- */
/* One-request commands (run.c)                                             */
/* ---------------------------------------------------------------------- */

/*
 * Opens a session, sends method path with body (stolen; NULL for none),
 * prints the answer and closes. The answer is printed as an object with
 * cols (with --json as it came, or {} when it is empty); then the line done,
 * when not NULL, for people. Returns the exit code.
 */
int ctl_one(const char *method, const char *path, json_t *body, const struct ctl_col *cols,
            const char *done);

/* Opens a session, reads the whole list (up to limit items; NULL: all), prints it, closes. */
int ctl_one_list(const char *path, const char *key, const char *limit, const struct ctl_col *cols);

/* A positive integer id argument; prints a usage error and returns false otherwise. */
bool ctl_id_arg(const char *what, const char *s, int64_t *ret);

/* An evidence id: 64 hex digits (lower case is sent); usage error otherwise. */
bool ctl_evidence_arg(const char *s, char out[static 65]);

/* ---------------------------------------------------------------------- */
/* Output (out.c)                                                           */
/* ---------------------------------------------------------------------- */

/* A table column: a heading and the member shown (dotted for nesting). */
struct ctl_col {
    const char *heading;
    const char *member;
};

/*
 * Prints json as the answer: with --json the JSON itself (indented), else
 * the array at key as a table of cols (or "(none)" when it is empty).
 */
void ctl_print_list(const json_t *json, const char *key, const struct ctl_col *cols);

/* Prints one object: --json as JSON, else "member: value" lines of cols. */
void ctl_print_object(const json_t *json, const struct ctl_col *cols);

/* Prints json as indented JSON on stdout. */
void ctl_print_json(const json_t *json);

/*
 * The text of member (dotted path) of obj for a table: strings as they are
 * with control characters replaced, null/absent as "-", true/false as
 * yes/no, numbers in decimal, objects and arrays as compact JSON. Owned.
 */
char *ctl_value_text(const json_t *obj, const char *member);

/* ---------------------------------------------------------------------- */
/* Prompts (config.c)                                                       */
/* ---------------------------------------------------------------------- */

/*
 * Reads one line: from the terminal (prompt shown on it, without echo when
 * secret) or, when from_stdin, from standard input (no prompt). The
 * newline is dropped. Returns owned text, or NULL (message printed) when
 * there is no terminal or input ended.
 */
char *ctl_read_line(const char *prompt, bool secret, bool from_stdin);

/* Frees a secret after wiping it. */
void ctl_free_secret(char *s);

/* ---------------------------------------------------------------------- */
/* Command groups                                                           */
/* ---------------------------------------------------------------------- */

struct ctl_cmd {
    const char *name;
    const char *usage; /* after "demsctl <group> " */
    const char *help;
    int (*run)(int argc, char **argv, const struct ctl_cmd *self);
};

struct ctl_group {
    const char *name;
    const char *summary;
    const char *help; /* the group's description, above its commands */
    const struct ctl_cmd *cmds;
    size_t ncmds;
};

/* Runs a group's sub-command: help, dispatch, unknown names. */
int ctl_group_run(const struct ctl_group *g, int argc, char **argv);

/* A command that is the whole group (login, logout, whoami): group with one nameless cmd. */

extern const struct ctl_group ctl_group_login, ctl_group_logout, ctl_group_whoami, ctl_group_users,
    ctl_group_devices, ctl_group_jobs, ctl_group_holds, ctl_group_retention, ctl_group_disposal,
    ctl_group_audit, ctl_group_ledger;

#endif
