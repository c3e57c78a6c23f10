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
 *
 * demsd unpack-sandbox does the same for an archive (dems_unpack_sandboxed,
 * include/dems/unpack.h): the archive on fd 3, its members as frames on
 * fd 4 (a pipe the worker reads while this runs), the summary on stdout.
 *
 * demsd media-frames samples a video's frames for face indexing
 * (dems_media_frames_sandboxed): the input on fd 3, upright RGB24 frames on
 * fd 4 (a pipe the worker reads while this runs), the result on stdout.
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
#include "dems/unpack.h"
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

static const char unpack_usage[] =
    "Usage: demsd unpack-sandbox --archive-size N [--max-members N] [--max-member-bytes N]\n"
    "                            [--max-total-bytes N] [--max-ratio N] [--timeout S]\n"
    "                            [--memory BYTES] [--sandbox-user NAME]\n\n"
    "Internal: run by `demsd worker` for each ZIP archive to unpack. Reads the\n"
    "archive (a regular file) on fd 3, writes its members as frames to fd 4 and\n"
    "prints one JSON line with the summary (docs/media.md, \"Unpacking archives\").\n"
    "The reader runs in the media sandbox, as NAME when this runs as root.\n";

/* Applies one of the options both runners take; false when arg is not one. */
static bool sandbox_option(int argc, char **argv, int *i, struct dems_media_limits *lim, bool *ok,
                           bool *bad_user)
{
    uint64_t v = 0;
    if (strcmp(argv[*i], "--timeout") == 0) {
        *ok = number(argc, argv, i, 7 * 86400, &v);
        lim->timeout = (uint32_t)v;
        if (lim->cpu_seconds < 2 * lim->timeout)
            lim->cpu_seconds = 2 * lim->timeout;
    } else if (strcmp(argv[*i], "--memory") == 0) {
        *ok = number(argc, argv, i, UINT64_MAX, &v);
        lim->memory = v;
    } else if (strcmp(argv[*i], "--sandbox-user") == 0 && *i + 1 < argc) {
        *bad_user = sandbox_account(argv[++*i], lim) < 0;
    } else {
        return false;
    }
    return true;
}

int dems_cli_unpack_sandbox(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(unpack_usage, stdout);
        return 0;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
        return answer_error("media_internal", "the worker that started this runner is gone");
    struct dems_media_limits lim;
    dems_media_limits_init(&lim);
    struct dems_unpack_limits ul = {.max_members = 10000,
                                    .max_member_bytes = 1ULL << 36,
                                    .max_total_bytes = 1ULL << 38,
                                    .max_ratio = 100};
    struct {
        const char *name;
        uint64_t *v;
    } const nums[] = {{"--max-members", &ul.max_members},
                      {"--max-member-bytes", &ul.max_member_bytes},
                      {"--max-total-bytes", &ul.max_total_bytes},
                      {"--max-ratio", &ul.max_ratio},
                      {"--archive-size", &ul.archive_size}};
    for (int i = 1; i < argc; i++) {
        bool ok = true, bad_user = false, known = false;
        for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]) && !known; k++) {
            if (strcmp(argv[i], nums[k].name) == 0) {
                ok = number(argc, argv, &i, UINT64_MAX, nums[k].v);
                known = true;
            }
        }
        if (!known && !sandbox_option(argc, argv, &i, &lim, &ok, &bad_user)) {
            fprintf(stderr, "demsd unpack-sandbox: unknown option %s\n", argv[i]);
            return 2;
        }
        if (bad_user)
            return answer_error("media_internal", "the sandbox account (sandbox_user) does "
                                                  "not exist or is root");
        if (!ok) {
            fprintf(stderr, "demsd unpack-sandbox: %s needs a positive number\n", argv[i - 1]);
            return 2;
        }
    }
    if (ul.archive_size == 0) {
        fprintf(stderr, "demsd unpack-sandbox: --archive-size is required\n");
        return 2;
    }
    if (fcntl(3, F_GETFD) < 0 || fcntl(4, F_GETFD) < 0)
        return answer_error("media_internal", "no archive on fd 3 or no frame pipe on fd 4");
    json_t *summary = NULL;
    struct dems_media_error err = {.code = DEMS_MEDIA_OK};
    int r = dems_unpack_sandboxed(3, 4, &ul, &lim, &summary, &err);
    close(4); /* the worker sees the frames end with the child */
    if (r < 0)
        return answer_error(dems_media_code_str(err.code), err.message);
    json_t *j = json_pack("{s:o}", "result", summary);
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL)
        return answer_error("media_internal", "out of memory");
    printf("%s\n", s);
    free(s);
    return 0;
}

static const char frames_usage[] =
    "Usage: demsd media-frames [--fps F] [--max-side N] [--threads N] [--keep-nonref]\n"
    "                          [--max-pixels N] [--max-total-pixels N] [--max-duration S]\n"
    "                          [--timeout S] [--memory BYTES] [--sandbox-user NAME]\n\n"
    "Internal: run by `demsd worker` to sample a video's frames for face indexing.\n"
    "Reads the input on fd 3, writes F frames per second of video (default 2) as\n"
    "upright RGB24 frames, the longer side at most N pixels (default 1920), to\n"
    "fd 4 (a pipe the worker reads while this runs; docs/media.md, \"Frame\n"
    "sampling for face indexing\") and prints one JSON line with the result. The\n"
    "decoder skips non-reference frames unless --keep-nonref, and uses one thread\n"
    "unless --threads. It runs in the media sandbox, as NAME when this runs as root.\n";

/* A decimal number in (0, max], such as 2 or 0.5. */
static bool decimal(int argc, char **argv, int *i, double max, double *ret)
{
    if (*i + 1 >= argc)
        return false;
    const char *v = argv[++*i];
    char *end = NULL;
    if (v[0] < '0' || v[0] > '9')
        return false; /* no sign, space, "inf" or "nan" */
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || !(d > 0 && d <= max))
        return false;
    *ret = d;
    return true;
}

/* Applies a frame-sampling or limit option; false when arg is not one. */
static bool frames_option(int argc, char **argv, int *i, struct dems_media_frames_params *p,
                          struct dems_media_limits *lim, bool *ok)
{
    uint64_t v = 0;
    const char *a = argv[*i];
    if (strcmp(a, "--fps") == 0) {
        *ok = decimal(argc, argv, i, 30, &p->fps);
    } else if (strcmp(a, "--max-side") == 0) {
        *ok = number(argc, argv, i, 16384, &v) && v >= 16;
        p->max_side = (uint32_t)v;
    } else if (strcmp(a, "--threads") == 0) {
        *ok = number(argc, argv, i, 16, &v);
        p->threads = (int)v;
    } else if (strcmp(a, "--keep-nonref") == 0) {
        p->skip_nonref = false;
    } else if (strcmp(a, "--max-pixels") == 0) {
        *ok = number(argc, argv, i, UINT64_MAX, &v);
        lim->max_pixels = v;
    } else if (strcmp(a, "--max-total-pixels") == 0) {
        *ok = number(argc, argv, i, UINT64_MAX, &v);
        lim->max_total_pixels = v;
    } else if (strcmp(a, "--max-duration") == 0) {
        *ok = number(argc, argv, i, 366ULL * 86400, &v);
        lim->max_duration = (double)v;
    } else {
        return false;
    }
    return true;
}

int dems_cli_media_frames(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(frames_usage, stdout);
        return 0;
    }
    struct dems_media_limits lim;
    struct dems_media_frames_params p;
    dems_media_limits_init(&lim);
    dems_media_frames_params_init(&p);
    for (int i = 1; i < argc; i++) {
        bool ok = true, bad_user = false;
        const char *opt = argv[i];
        if (!frames_option(argc, argv, &i, &p, &lim, &ok) &&
            !sandbox_option(argc, argv, &i, &lim, &ok, &bad_user)) {
            fprintf(stderr, "demsd media-frames: unknown option %s\n", opt);
            return 2;
        }
        if (bad_user)
            return answer_error("media_internal", "the sandbox account (sandbox_user) does "
                                                  "not exist or is root");
        if (!ok) {
            fprintf(stderr, "demsd media-frames: %s needs a number in its range\n", opt);
            return 2;
        }
    }
    /* Die with the worker that started us (its sandboxed child dies with us). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
        return answer_error("media_internal", "the worker that started this runner is gone");
    if (fcntl(3, F_GETFD) < 0 || fcntl(4, F_GETFD) < 0)
        return answer_error("media_internal", "no input on fd 3 or no frame pipe on fd 4");
    json_t *result = NULL;
    struct dems_media_error err = {.code = DEMS_MEDIA_OK};
    int r = dems_media_frames_sandboxed(3, 4, &p, &lim, &result, &err);
    close(4); /* the worker sees the frames end with the child */
    if (r < 0)
        return answer_error(dems_media_code_str(err.code), err.message);
    json_t *j = json_pack("{s:o}", "result", result);
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL)
        return answer_error("media_internal", "out of memory");
    printf("%s\n", s);
    free(s);
    return 0;
}
