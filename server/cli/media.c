/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsd media-sandbox: runs one sandboxed preview for a worker (internal).
 *
 * The media sandbox forks (common/media); forking a threaded process is only
 * safe when no other thread can hold a lock the child needs, and a worker has
 * several threads (job slots, its LISTEN thread, a ledger appender), while
 * an AddressSanitizer build's allocator is not fork-safe at all. So a worker
 * starts this command with posix_spawn (a fresh, single-threaded process),
 * handing it the input on fd 3 and the outputs on fds 4-7, and this process
 * calls dems_media_preview_sandboxed. The answer is one JSON line on stdout:
 * {"result": {...}} or {"error": {"code", "message"}}.
 */
#include "dems/media.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/str.h"
#include "demsd/cli.h"

static const char usage[] =
    "Usage: demsd media-sandbox [--max-pixels N] [--max-total-pixels N] [--max-duration S]\n"
    "                           [--timeout S] [--memory BYTES] [--sandbox-user NAME]\n\n"
    "Internal: run by `demsd worker` for each preview. Reads the input on fd 3,\n"
    "writes the proxy, poster, sprite and WebVTT index to fds 4, 5, 6 and 7 (each\n"
    "may be closed to skip it) and prints one JSON line with the result. The\n"
    "decoder runs as NAME when this runs as root (default nobody), else as the\n"
    "caller's unprivileged account.\n";

static int answer_error(const char *code, const char *message)
{
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s != NULL)
        printf("%s\n", s);
    free(s);
    json_decref(j);
    return 1;
}

/*
 * The decoder's account when this runner is root (config key sandbox_user);
 * unprivileged, the decoder keeps our account and the name is not needed.
 */
static int sandbox_account(const char *name, struct dems_media_limits *lim)
{
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(name);
    if (pw == NULL || pw->pw_uid == 0 || pw->pw_gid == 0)
        return -1;
    lim->uid = pw->pw_uid;
    lim->gid = pw->pw_gid;
    return 0;
}

/* The value after argv[*i] as a number in [1, max]. */
static bool number(int argc, char **argv, int *i, uint64_t max, uint64_t *ret)
{
    if (*i + 1 >= argc)
        return false;
    const char *v = argv[++*i];
    return dems_parse_u64(v, strlen(v), max, ret) == 0 && *ret > 0;
}

int dems_cli_media_sandbox(int argc, char **argv)
{
    /* Die with the worker that started us (its sandboxed child dies with us). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
        return answer_error("media_internal", "the worker that started this runner is gone");
    struct dems_media_limits lim;
    struct dems_media_params p;
    dems_media_limits_init(&lim);
    dems_media_params_init(&p);
    for (int i = 1; i < argc; i++) {
        uint64_t v = 0;
        bool ok = true;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--max-pixels") == 0) {
            ok = number(argc, argv, &i, UINT64_MAX, &v);
            lim.max_pixels = v;
        } else if (strcmp(argv[i], "--max-total-pixels") == 0) {
            ok = number(argc, argv, &i, UINT64_MAX, &v);
            lim.max_total_pixels = v;
        } else if (strcmp(argv[i], "--max-duration") == 0) {
            ok = number(argc, argv, &i, 366ULL * 86400, &v);
            lim.max_duration = (double)v;
        } else if (strcmp(argv[i], "--timeout") == 0) {
            ok = number(argc, argv, &i, 7 * 86400, &v);
            lim.timeout = (uint32_t)v;
            if (lim.cpu_seconds < 2 * lim.timeout)
                lim.cpu_seconds = 2 * lim.timeout; /* codec threads share the CPU budget */
        } else if (strcmp(argv[i], "--memory") == 0) {
            ok = number(argc, argv, &i, UINT64_MAX, &v);
            lim.memory = v;
        } else if (strcmp(argv[i], "--sandbox-user") == 0 && i + 1 < argc) {
            if (sandbox_account(argv[++i], &lim) < 0)
                return answer_error("media_internal", "the sandbox account (sandbox_user) does "
                                                      "not exist or is root");
        } else {
            fprintf(stderr, "demsd media-sandbox: unknown option %s\n", argv[i]);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "demsd media-sandbox: %s needs a positive number\n", argv[i - 1]);
            return 2;
        }
    }
    /* Closed descriptors are skipped outputs; the input must be there (and a
     * free number would soon be reused by the sandbox's own pipe). */
    if (fcntl(3, F_GETFD) < 0)
        return answer_error("media_internal", "no input: file descriptor 3 is not open");
    int fd[4];
    for (int i = 0; i < 4; i++)
        fd[i] = fcntl(4 + i, F_GETFD) < 0 ? -1 : 4 + i;
    struct dems_media_outputs out = {
        .proxy_fd = fd[0], .poster_fd = fd[1], .sprite_fd = fd[2], .index_fd = fd[3]};
    json_t *result = NULL;
    struct dems_media_error err = {.code = DEMS_MEDIA_OK};
    int r = dems_media_preview_sandboxed(3, &out, &p, &lim, &result, &err);
    if (r < 0)
        return answer_error(dems_media_code_str(err.code), err.message);
    json_t *j = json_pack("{s:o}", "result", result);
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s == NULL) {
        json_decref(j);
        return answer_error("media_internal", "out of memory");
    }
    printf("%s\n", s);
    free(s);
    json_decref(j);
    return 0;
}
