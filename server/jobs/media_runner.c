/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starting a media runner (`demsd media-sandbox`, `demsd media-frames`:
 * server/cli/media.c) from a worker and collecting its one-line JSON
 * answer. A worker has threads, so it never forks its own sandbox: it
 * posix_spawns /proc/self/exe, a fresh single-threaded process that forks
 * the sandboxed child safely. The runner gets its own process group (one
 * kill reaches it and its child), an empty signal mask with SIGCHLD,
 * SIGPIPE and SIGTERM at their defaults, the caller's fds on 3, 4, ... and
 * the answer pipe on stdout. The runner enforces the configured timeout
 * itself; the caller's deadline is the backstop for a runner that hangs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/media.h"
#include "demsd/jobs.h"

extern char **environ;

/* Largest answer accepted from a runner. */
#define ANSWER_MAX (8u << 20)
/* Words a caller may add. */
#define MAX_EXTRA 32

double dems_media_runner_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double dems_media_runner_deadline(const struct dems_config *cfg)
{
    return dems_media_runner_clock() + (double)cfg->media_timeout + 60;
}

void dems_media_runner_kill(pid_t pid)
{
    if (pid > 0)
        kill(-pid, SIGKILL);
}

static void free_words(char **words)
{
    for (size_t i = 0; words[i] != NULL; i++)
        free(words[i]);
}

/* argv for the runner: demsd SUBCOMMAND EXTRA... --timeout S --memory B
 * [--sandbox-user U], as writable copies (posix_spawn takes char *const[]). */
static int build_argv(const struct dems_config *cfg, const char *subcommand,
                      const char *const *extra, char **words, size_t cap)
{
    char tmo[24], mem[24];
    const char *tail[] = {"--timeout",       tmo, "--memory", mem, "--sandbox-user",
                          cfg->sandbox_user, NULL};
    size_t n = 0, k = 0;

    snprintf(tmo, sizeof(tmo), "%llu", (unsigned long long)cfg->media_timeout);
    snprintf(mem, sizeof(mem), "%llu", (unsigned long long)cfg->media_memory);
    if (cfg->sandbox_user == NULL || cfg->sandbox_user[0] == '\0')
        tail[4] = NULL; /* the runner's default (nobody) if it is root */
    words[n] = NULL;
    for (; extra != NULL && extra[k] != NULL; k++)
        if (k == MAX_EXTRA)
            return DEMS_EINVAL;
    const char *head[] = {"demsd", subcommand};
    for (size_t i = 0; i < 2 + k + 6 && n + 1 < cap; i++) {
        const char *w = i < 2 ? head[i] : i < 2 + k ? extra[i - 2] : tail[i - 2 - k];
        if (w == NULL)
            break;
        if ((words[n] = strdup(w)) == NULL) {
            free_words(words);
            return DEMS_ENOMEM;
        }
        words[++n] = NULL;
    }
    return 0;
}

static void spawn_attrs(posix_spawnattr_t *attr)
{
    sigset_t none, deflt;

    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGCHLD);
    sigaddset(&deflt, SIGPIPE);
    sigaddset(&deflt, SIGTERM);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &deflt);
    posix_spawnattr_setpgroup(attr, 0);
    posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                       POSIX_SPAWN_SETPGROUP);
}

int dems_media_runner_spawn(const struct dems_config *cfg, const char *subcommand,
                            const char *const *extra_args, const int *fds, int nfds, pid_t *ret_pid,
                            int *ret_answer_fd, char *err, size_t errlen)
{
    char *argv[2 + MAX_EXTRA + 6 + 1];
    int src[DEMS_MEDIA_RUNNER_MAX_FDS], pfd[2] = {-1, -1};
    int r = nfds < 0 || nfds > DEMS_MEDIA_RUNNER_MAX_FDS ? DEMS_EINVAL : 0;

    if (r == 0)
        r = build_argv(cfg, subcommand, extra_args, argv, sizeof(argv) / sizeof(argv[0]));
    if (r < 0) {
        snprintf(err, errlen, "cannot start the media runner: %s",
                 r == DEMS_ENOMEM ? "out of memory" : "too many arguments or descriptors");
        return r;
    }
    for (int i = 0; i < nfds; i++)
        src[i] = -1;
    /* Sources above the targets (1, 3, 4, ...), so no dup2 overwrites another's source. */
    bool ok = pipe2(pfd, O_CLOEXEC) == 0;
    for (int i = 0; ok && i < nfds; i++)
        ok = fds[i] < 0 || (src[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64)) >= 0;
    int errnum = errno;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    spawn_attrs(&attr);
    /* An fd of -1 leaves its number closed (a skipped output). */
    for (int i = 0; ok && i < nfds; i++)
        ok = (src[i] >= 0 ? posix_spawn_file_actions_adddup2(&fa, src[i], 3 + i)
                          : posix_spawn_file_actions_addclose(&fa, 3 + i)) == 0;
    if (ok)
        ok = posix_spawn_file_actions_adddup2(&fa, pfd[1], 1) == 0;
    pid_t pid = -1;
    if (ok && (errnum = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, environ)) != 0)
        ok = false;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free_words(argv);
    for (int i = 0; i < nfds; i++)
        if (src[i] >= 0)
            close(src[i]);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (!ok) {
        if (pfd[0] >= 0)
            close(pfd[0]);
        snprintf(err, errlen, "cannot start the media runner: %s", strerror(errnum));
        return DEMS_EINTERNAL;
    }
    *ret_pid = pid;
    *ret_answer_fd = pfd[0];
    return 0;
}

/* ---- the answer ---- */

/*
 * Reads the answer until EOF. Returns 0 at EOF, 1 when the runner had to
 * be killed at the deadline or because the worker is stopping (*stopped),
 * -1 when the answer is too long or memory ran out (killed too).
 */
static int read_answer(pid_t pid, int fd, double deadline, const struct dems_job_ctx *ctx,
                       char **buf, size_t *len, bool *stopped)
{
    size_t cap = 0;

    for (;;) {
        double left = deadline - dems_media_runner_clock();
        if (left <= 0 || (ctx != NULL && dems_job_stopping(ctx))) {
            *stopped = left > 0;
            dems_media_runner_kill(pid);
            return 1;
        }
        struct pollfd q = {.fd = fd, .events = POLLIN};
        int n = poll(&q, 1, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (n <= 0)
            continue;
        if (*len == cap) {
            size_t ncap = cap == 0 ? 1 << 16 : 2 * cap;
            char *nb = ncap <= ANSWER_MAX ? realloc(*buf, ncap + 1) : NULL;
            if (nb == NULL) {
                dems_media_runner_kill(pid);
                return -1;
            }
            *buf = nb;
            cap = ncap;
        }
        ssize_t k = read(fd, *buf + *len, cap - *len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 0;
        *len += (size_t)k;
    }
}

static enum dems_media_code code_from(const char *name)
{
    for (int c = DEMS_MEDIA_OK; c <= DEMS_MEDIA_INTERNAL; c++) {
        if (name != NULL && strcmp(dems_media_code_str((enum dems_media_code)c), name) == 0)
            return (enum dems_media_code)c;
    }
    return DEMS_MEDIA_INTERNAL;
}

static int parse_answer(json_t *ans, int status, int got, json_t **ret_result,
                        struct dems_media_error *me)
{
    json_t *res = json_object_get(ans, "result"), *e = json_object_get(ans, "error");

    if (json_is_object(res)) {
        *ret_result = json_incref(res);
        me->code = DEMS_MEDIA_OK;
        return 0;
    }
    if (json_is_object(e)) {
        const char *m = json_string_value(json_object_get(e, "message"));
        me->code = code_from(json_string_value(json_object_get(e, "code")));
        snprintf(me->message, sizeof(me->message), "%s", m != NULL ? m : "(no message)");
        return dems_media_code_err(me->code);
    }
    me->code = DEMS_MEDIA_INTERNAL;
    snprintf(me->message, sizeof(me->message), "the media runner %s",
             got > 0               ? "was killed: no answer in time"
             : got < 0             ? "was killed: its answer was too long"
             : WIFSIGNALED(status) ? "was killed by a signal"
                                   : "gave no answer");
    return DEMS_EINTERNAL;
}

int dems_media_runner_finish(pid_t pid, int answer_fd, double deadline,
                             const struct dems_job_ctx *ctx, json_t **ret_result,
                             struct dems_media_error *me)
{
    char *buf = NULL;
    size_t len = 0;
    bool stopped = false;
    int got = read_answer(pid, answer_fd, deadline, ctx, &buf, &len, &stopped);
    int status = 0;

    close(answer_fd);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    json_t *ans = got == 0 && buf != NULL ? (buf[len] = '\0', json_loads(buf, 0, NULL)) : NULL;
    free(buf);
    int r;
    if (stopped) {
        me->code = DEMS_MEDIA_INTERNAL;
        snprintf(me->message, sizeof(me->message),
                 "the media runner was stopped: the worker "
                 "is stopping");
        r = DEMS_EUNAVAIL;
    } else {
        r = parse_answer(ans, status, got, ret_result, me);
    }
    json_decref(ans);
    return r;
}
