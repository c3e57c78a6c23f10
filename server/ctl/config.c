/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where demsctl finds the server, its CA and the token (flags, then the
 * environment, then the config file, then the token file), the token file
 * itself (mode 0600 in a directory made 0700; refused when anyone else
 * could read it), and prompts (without echo for secrets).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "ctl.h"

#define MAX_FILE        16384
#define MAX_ANSWER_LINE 4096

/* An environment variable; an empty one counts as unset. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* $XDG_CONFIG_HOME/dems/<name>, else ~/.config/dems/<name>; owned or NULL. */
static char *default_path(const char *name)
{
    const char *xdg = env("XDG_CONFIG_HOME");
    const char *home = env("HOME");
    char buf[PATH_MAX];
    if (xdg != NULL && xdg[0] == '/') {
        snprintf(buf, sizeof(buf), "%s/dems/%s", xdg, name);
        return strdup(buf);
    }
    if (home == NULL || home[0] == '\0') {
        struct passwd *pw = getpwuid(getuid());
        home = pw != NULL ? pw->pw_dir : NULL;
    }
    if (home == NULL)
        return NULL;
    snprintf(buf, sizeof(buf), "%s/.config/dems/%s", home, name);
    return strdup(buf);
}

/* Reads a small file into a NUL-terminated owned buffer; NULL with errno set. */
static char *read_small(int fd)
{
    char *buf = malloc(MAX_FILE + 1);
    size_t n = 0;
    if (buf == NULL)
        return NULL;
    for (;;) {
        ssize_t got = read(fd, buf + n, MAX_FILE + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            free(buf);
            return NULL;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n > MAX_FILE) {
            free(buf);
            errno = EFBIG;
            return NULL;
        }
    }
    buf[n] = '\0';
    return buf;
}

/* s without leading and trailing white space (cut in place). */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/*
 * Walks "key = value" lines (blank lines and '#' comments skipped; a value
 * may be wrapped in double quotes). Calls fn for each; a line without '='
 * stops the walk with its 1-based number in *ret_bad.
 */
static void each_setting(char *text, void (*fn)(void *ctx, const char *key, const char *value),
                         void *ctx, int *ret_bad)
{
    int lineno = 0;
    *ret_bad = 0;
    for (char *line = text; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        lineno++;
        char *k = trim(line);
        if (*k != '\0' && *k != '#') {
            char *eq = strchr(k, '=');
            if (eq == NULL) {
                *ret_bad = lineno;
                return;
            }
            *eq = '\0';
            k = trim(k);
            char *v = trim(eq + 1);
            size_t vl = strlen(v);
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v[vl - 1] = '\0';
                v++;
            }
            fn(ctx, k, v);
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
}

struct file_settings {
    char *server, *ca, *token_file, *ledger_key, *timeout;
    const char *unknown;
};

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = strdup(v);
}

static void file_setting(void *ctx, const char *key, const char *value)
{
    struct file_settings *fs = ctx;
    if (strcmp(key, "server") == 0)
        set_str(&fs->server, value);
    else if (strcmp(key, "ca") == 0)
        set_str(&fs->ca, value);
    else if (strcmp(key, "token_file") == 0)
        set_str(&fs->token_file, value);
    else if (strcmp(key, "ledger_key") == 0)
        set_str(&fs->ledger_key, value);
    else if (strcmp(key, "timeout") == 0)
        set_str(&fs->timeout, value);
    else if (fs->unknown == NULL)
        fs->unknown = key;
}

static void file_settings_done(struct file_settings *fs)
{
    free(fs->server);
    free(fs->ca);
    free(fs->token_file);
    free(fs->ledger_key);
    free(fs->timeout);
}

/* Reads the config file; a missing default one is no error. */
static int read_config(struct file_settings *fs)
{
    const char *given = ctl_global.config != NULL ? ctl_global.config : env("DEMS_CONFIG");
    char *path = given != NULL ? strdup(given) : default_path("demsctl.conf");
    if (path == NULL)
        return CTL_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int r = e == ENOENT && given == NULL
                    ? CTL_OK
                    : ctl_fail(CTL_USAGE, "cannot read the config file %s: %s", path, strerror(e));
        free(path);
        return r;
    }
    char *text = read_small(fd);
    close(fd);
    if (text == NULL) {
        int r = ctl_fail(CTL_USAGE, "cannot read the config file %s: %s", path, strerror(errno));
        free(path);
        return r;
    }
    int bad;
    each_setting(text, file_setting, fs, &bad);
    int r = CTL_OK;
    if (bad != 0)
        r = ctl_fail(CTL_USAGE, "%s line %d: expected 'key = value'", path, bad);
    else if (fs->unknown != NULL)
        r = ctl_fail(CTL_USAGE,
                     "%s: unknown setting '%s' (known: server, ca, token_file, ledger_key, "
                     "timeout)",
                     path, fs->unknown);
    free(text);
    free(path);
    return r;
}

/* "https://host[:port]" with no path; the trailing slash dropped. Owned or NULL. */
static char *check_url(const char *url, const char *where)
{
    size_t len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    if (len <= 8 || strncmp(url, "https://", 8) != 0) {
        ctl_usage_error("the server URL %s (from %s) must start with https://", url, where);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= ' ' || c >= 0x7F || (i >= 8 && (c == '?' || c == '#' || c == '@'))) {
            ctl_usage_error("the server URL %s (from %s) is not a plain https://HOST:PORT", url,
                            where);
            return NULL;
        }
    }
    return strndup(url, len);
}

static int token_read(const char *path, struct ctl_token *ret, char *err, size_t errlen);

/* Whether two server URLs are the same, trailing slashes aside. */
static bool same_server(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 0 && a[la - 1] == '/')
        la--;
    while (lb > 0 && b[lb - 1] == '/')
        lb--;
    return la == lb && strncmp(a, b, la) == 0;
}

int ctl_config_load(struct ctl_config *cfg, bool need_server)
{
    struct file_settings fs = {0};
    memset(cfg, 0, sizeof(*cfg));
    int r = read_config(&fs);
    if (r != CTL_OK) {
        file_settings_done(&fs);
        return r;
    }
    const char *server = NULL, *ca = NULL, *where = NULL, *tf = NULL;
    const char *timeout = ctl_global.timeout != NULL ? ctl_global.timeout : fs.timeout;
    if (ctl_global.server != NULL)
        server = ctl_global.server, where = "--server";
    else if (env("DEMS_URL") != NULL)
        server = env("DEMS_URL"), where = "DEMS_URL";
    else if (fs.server != NULL)
        server = fs.server, where = "the config file";
    ca = ctl_global.ca != NULL ? ctl_global.ca : env("DEMS_CA") != NULL ? env("DEMS_CA") : fs.ca;
    tf = ctl_global.token_file != NULL    ? ctl_global.token_file
         : env("DEMS_TOKEN_FILE") != NULL ? env("DEMS_TOKEN_FILE")
                                          : fs.token_file;
    cfg->token_path = tf != NULL ? strdup(tf) : default_path("token");
    cfg->ledger_key = fs.ledger_key != NULL ? strdup(fs.ledger_key) : NULL;
    cfg->timeout = 60;
    if (timeout != NULL) {
        int64_t t;
        if (!ctl_int_arg("timeout", timeout, 1, 86400, &t)) {
            file_settings_done(&fs);
            ctl_config_done(cfg);
            return CTL_USAGE;
        }
        cfg->timeout = (long)t;
    }
    if (cfg->token_path == NULL) {
        file_settings_done(&fs);
        ctl_config_done(cfg);
        return ctl_fail(CTL_USAGE, "no home directory: give --token-file");
    }
    /* Last, the server the stored token was made for (and its CA). */
    struct ctl_token tok = {0};
    char ignored[PATH_MAX + 256];
    if ((server == NULL || ca == NULL) &&
        token_read(cfg->token_path, &tok, ignored, sizeof(ignored)) == CTL_OK) {
        if (server == NULL)
            server = tok.server, where = "the token file";
        if (ca == NULL && same_server(server, tok.server))
            ca = tok.ca;
    }
    if (server != NULL && (cfg->server = check_url(server, where)) == NULL)
        r = CTL_USAGE;
    else if (server == NULL && need_server)
        r = ctl_usage_error(
            "no server: give --server https://HOST:PORT, set DEMS_URL, or put 'server = ...' "
            "in ~/.config/dems/demsctl.conf");
    if (r == CTL_OK && ca != NULL)
        cfg->ca = strdup(ca);
    ctl_token_done(&tok);
    file_settings_done(&fs);
    if (r != CTL_OK)
        ctl_config_done(cfg);
    return r;
}

void ctl_config_done(struct ctl_config *cfg)
{
    free(cfg->server);
    free(cfg->ca);
    free(cfg->token_path);
    free(cfg->ledger_key);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---------------------------------------------------------------------- */

struct token_settings {
    struct ctl_token *t;
    const char *unknown;
};

static void token_setting(void *ctx, const char *key, const char *value)
{
    struct token_settings *ts = ctx;
    if (strcmp(key, "server") == 0)
        set_str(&ts->t->server, value);
    else if (strcmp(key, "ca") == 0)
        set_str(&ts->t->ca, value);
    else if (strcmp(key, "token") == 0)
        set_str(&ts->t->token, value);
    else if (strcmp(key, "kind") == 0)
        snprintf(ts->t->kind, sizeof(ts->t->kind), "%s", value);
    else if (strcmp(key, "id") == 0)
        set_str(&ts->t->id, value);
    else if (ts->unknown == NULL)
        ts->unknown = key;
}

/* Reads the token file; on failure writes why to err and returns CTL_AUTH. */
static int token_read(const char *path, struct ctl_token *ret, char *err, size_t errlen)
{
    memset(ret, 0, sizeof(*ret));
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    const char *why = NULL;
    if (fd < 0 && errno == ENOENT) {
        snprintf(err, errlen, "not logged in (no token in %s): run demsctl login", path);
        return CTL_AUTH;
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot read the token file %s: %s", path, strerror(errno));
        return CTL_AUTH;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        why = "is not a regular file";
    else if (st.st_uid != geteuid())
        why = "belongs to another user";
    if (why != NULL || (st.st_mode & 077) != 0) {
        close(fd);
        if (why != NULL)
            snprintf(err, errlen, "the token file %s %s: refused", path, why);
        else
            snprintf(err, errlen,
                     "the token file %s can be read by others (mode %04o): refused; chmod 600 "
                     "it (and revoke the token if others could read it), or log in again",
                     path, (unsigned)(st.st_mode & 07777));
        return CTL_AUTH;
    }
    char *text = read_small(fd);
    close(fd);
    if (text == NULL) {
        snprintf(err, errlen, "cannot read the token file %s: %s", path, strerror(errno));
        return CTL_AUTH;
    }
    struct token_settings ts = {.t = ret};
    int bad;
    each_setting(text, token_setting, &ts, &bad);
    explicit_bzero(text, MAX_FILE + 1);
    free(text);
    if (bad != 0 || ts.unknown != NULL || ret->server == NULL || ret->token == NULL ||
        ret->token[0] == '\0') {
        ctl_token_done(ret);
        snprintf(err, errlen, "the token file %s is not one demsctl wrote: log in again", path);
        return CTL_AUTH;
    }
    return CTL_OK;
}

int ctl_token_read(const char *path, struct ctl_token *ret)
{
    char err[PATH_MAX + 256];
    int r = token_read(path, ret, err, sizeof(err));
    if (r != CTL_OK)
        ctl_fail(r, "%s", err);
    return r;
}

/* Makes the directories of path that are missing, mode 0700. */
static int make_parents(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -1;
    if (make_parents(dir) != 0)
        return -1;
    return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

int ctl_token_write(const char *path, const struct ctl_token *t)
{
    if (make_parents(path) != 0)
        return ctl_fail(CTL_USAGE, "cannot make the directory of %s: %s", path, strerror(errno));
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp))
        return ctl_fail(CTL_USAGE, "the token file's name is too long");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return ctl_fail(CTL_USAGE, "cannot write the token file %s: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (f == NULL || fchmod(fd, 0600) != 0) {
        int e = errno;
        if (f != NULL)
            fclose(f);
        else
            close(fd);
        unlink(tmp);
        return ctl_fail(CTL_USAGE, "cannot write the token file %s: %s", path, strerror(e));
    }
    fprintf(f,
            "# demsctl's credential for %s: a bearer token, as good as your password.\n"
            "# Keep it private (mode 0600); demsctl logout revokes it and removes this file.\n",
            t->server);
    fprintf(f, "server = %s\n", t->server);
    if (t->ca != NULL)
        fprintf(f, "ca = %s\n", t->ca);
    fprintf(f, "kind = %s\n", t->kind[0] != '\0' ? t->kind : "session");
    if (t->id != NULL)
        fprintf(f, "id = %s\n", t->id);
    fprintf(f, "token = %s\n", t->token);
    bool ok = fflush(f) == 0 && fsync(fd) == 0;
    int e = errno;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        e = ok ? errno : e;
        unlink(tmp);
        return ctl_fail(CTL_USAGE, "cannot write the token file %s: %s", path, strerror(e));
    }
    return CTL_OK;
}

void ctl_token_done(struct ctl_token *t)
{
    free(t->server);
    free(t->ca);
    ctl_free_secret(t->token);
    free(t->id);
    memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------------- */

static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_quiet;

/* Ctrl-C at a password prompt must not leave the terminal without echo. */
static void restore_tty(int sig)
{
    if (tty_quiet)
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

char *ctl_read_line(const char *prompt, bool secret, bool from_stdin)
{
    char *buf = malloc(MAX_ANSWER_LINE + 1);
    size_t n = 0;
    if (buf == NULL) {
        ctl_fail(CTL_USAGE, "out of memory");
        return NULL;
    }
    int fd = from_stdin ? STDIN_FILENO : open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        free(buf);
        ctl_fail(CTL_USAGE, "no terminal to ask for the %s (give it on standard input)", prompt);
        return NULL;
    }
    if (!from_stdin) {
        dprintf(fd, "%s: ", prompt);
        if (secret && tcgetattr(fd, &tty_saved) == 0) {
            struct termios quiet = tty_saved;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            quiet.c_lflag |= ECHONL;
            tty_fd = fd;
            signal(SIGINT, restore_tty);
            signal(SIGTERM, restore_tty);
            signal(SIGHUP, restore_tty);
            if (tcsetattr(fd, TCSAFLUSH, &quiet) == 0)
                tty_quiet = 1;
        }
    }
    bool ended = false;
    for (;;) {
        char c;
        ssize_t got = read(fd, &c, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            ended = n == 0;
            break;
        }
        if (c == '\n')
            break;
        if (n < MAX_ANSWER_LINE)
            buf[n++] = c;
    }
    if (tty_quiet) {
        tcsetattr(fd, TCSAFLUSH, &tty_saved);
        tty_quiet = 0;
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
    }
    if (!from_stdin)
        close(fd);
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    if (ended) {
        free(buf);
        ctl_fail(CTL_USAGE, "no %s given (input ended)", prompt);
        return NULL;
    }
    return buf;
}

void ctl_free_secret(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}
