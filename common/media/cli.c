/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dems-media: the media library from the command line, for operators and the
 * benchmark.
 *   dems-media probe FILE [--sandbox]               prints the probe JSON
 *   dems-media preview FILE OUTDIR [--sandbox] [options]
 *       writes OUTDIR/proxy.mp4, poster.jpg, sprite.jpg, thumbnails.vtt and
 *       result.json, and prints the result JSON
 *   dems-media versions                             FFmpeg library versions (JSON)
 *   dems-media --version | --help | COMMAND --help
 * Options: --timeout S, --threads N, --crf N, --preset NAME, --max-height N,
 * --interval S. Exit status 0, 1 on a media failure (code and message on
 * stderr), 2 on usage errors (one line on stderr).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"
#include "dems/str.h"
#include "dems/version.h"

static const char usage_text[] =
    "Usage: dems-media probe FILE [--sandbox] [--timeout S]\n"
    "       dems-media preview FILE OUTDIR [--sandbox] [--timeout S] [--threads N]\n"
    "                  [--crf N] [--preset NAME] [--max-height N] [--interval S]\n"
    "       dems-media versions\n"
    "       dems-media --version | --help\n"
    "\n"
    "probe prints the media's probe JSON; preview writes OUTDIR/proxy.mp4, poster.jpg,\n"
    "sprite.jpg, thumbnails.vtt and result.json and prints the result JSON; versions\n"
    "prints FFmpeg's library versions and build configuration as JSON.\n"
    "\n"
    "Options:\n"
    "  --sandbox        decode in a sandboxed child process (seccomp, rlimits)\n"
    "  --timeout S      give up after S seconds\n"
    "  --threads N      encoder threads (preview)\n"
    "  --crf N          x264 quality, 0-51 (preview)\n"
    "  --preset NAME    x264 preset (preview)\n"
    "  --max-height N   proxy height limit, 16-4320 (preview)\n"
    "  --interval S     seconds between thumbnails (preview)\n"
    "\n"
    "Exit status: 0 done, 1 media failure (code and message on stderr), 2 usage error.\n";

/* One line on stderr for a usage error; exit status 2. */
static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "dems-media: %s%s%s (try dems-media --help)\n", what, arg ? " " : "",
            arg ? arg : "");
    return 2;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int version(void)
{
    struct dems_version_lib libs[10];
    size_t n = 0;
    dems_version_glibc(&libs[n++]);
    n += dems_version_ffmpeg(&libs[n], 10 - n);
    dems_version_seccomp(&libs[n++]);
    dems_version_jansson(&libs[n++]);
    dems_version_print(stdout, "dems-media", libs, n);
    return 0;
}

static int print_json(json_t *j, FILE *f)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

    if (s == NULL)
        return 1;
    fprintf(f, "%s\n", s);
    free(s);
    return 0;
}

static int num(const char *s, uint64_t max, int *ret)
{
    uint64_t v;

    if (s == NULL || dems_parse_u64(s, strlen(s), max, &v) < 0)
        return -1;
    *ret = (int)v;
    return 0;
}

struct opts {
    bool sandbox;
    struct dems_media_params p;
    struct dems_media_limits lim;
};

/* Sets one valued option; -1 when the value is bad, -2 when the name is unknown. */
static int set_opt(struct opts *o, const char *a, const char *v)
{
    int n;

    if (strcmp(a, "--preset") == 0) {
        o->p.preset = v;
        return 0;
    }
    if (strcmp(a, "--timeout") == 0)
        return num(v, 86400 * 7, &n) < 0 ? -1 : (o->lim.timeout = (uint32_t)n, 0);
    if (strcmp(a, "--threads") == 0)
        return num(v, 64, &n) < 0 ? -1 : (o->p.threads = n, 0);
    if (strcmp(a, "--crf") == 0)
        return num(v, 51, &n) < 0 ? -1 : (o->p.crf = n, 0);
    if (strcmp(a, "--max-height") == 0) {
        if (num(v, 4320, &n) < 0 || n < 16)
            return -1;
        o->p.max_height = n;
        o->p.max_width = n * 16 / 9;
        return 0;
    }
    if (strcmp(a, "--interval") == 0)
        return num(v, 3600, &n) < 0 || n <= 0 ? -1 : (o->p.thumb_interval = n, 0);
    return -2;
}

/* Parses the options after the positionals; 0, or 2 after a usage error line. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--sandbox") == 0) {
            o->sandbox = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return usage_error("unexpected argument", a);
        int r = set_opt(o, a, i + 1 < argc ? argv[i + 1] : NULL);
        if (r == -2)
            return usage_error("unknown option", a);
        if (r < 0)
            return usage_error("bad or missing value for", a);
        i++;
    }
    return 0;
}

static int fail(const struct dems_media_error *e)
{
    fprintf(stderr, "dems-media: %s: %s\n", dems_media_code_str(e->code), e->message);
    return 1;
}

static int out_open(const char *dir, const char *name)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static int cmd_probe(const char *file, const struct opts *o)
{
    struct dems_media_error e = {0};
    json_t *j = NULL;
    int fd = open(file, O_RDONLY | O_CLOEXEC), r;

    if (fd < 0) {
        perror(file);
        return 1;
    }
    r = o->sandbox ? dems_media_probe_sandboxed(fd, &o->lim, &j, &e)
                   : dems_media_probe(fd, &o->lim, &j, &e);
    close(fd);
    if (r < 0)
        return fail(&e);
    r = print_json(j, stdout);
    json_decref(j);
    return r;
}

static int cmd_preview(const char *file, const char *dir, const struct opts *o)
{
    struct dems_media_error e = {0};
    struct dems_media_outputs out = {
        .proxy_fd = out_open(dir, "proxy.mp4"),
        .poster_fd = out_open(dir, "poster.jpg"),
        .sprite_fd = out_open(dir, "sprite.jpg"),
        .index_fd = out_open(dir, "thumbnails.vtt"),
    };
    int fd = open(file, O_RDONLY | O_CLOEXEC), rfd = out_open(dir, "result.json"), r = 1;
    json_t *j = NULL;

    if (fd < 0 || rfd < 0 || out.proxy_fd < 0 || out.poster_fd < 0 || out.sprite_fd < 0 ||
        out.index_fd < 0) {
        perror(fd < 0 ? file : dir);
        goto done;
    }
    r = o->sandbox ? dems_media_preview_sandboxed(fd, &out, &o->p, &o->lim, &j, &e)
                   : dems_media_preview(fd, &out, &o->p, &o->lim, &j, &e);
    if (r < 0) {
        r = fail(&e);
        goto done;
    }
    FILE *f = fdopen(rfd, "w");
    if (f != NULL) {
        rfd = -1;
        print_json(j, f);
        fclose(f);
    }
    r = print_json(j, stdout);
done:
    json_decref(j);
    const int fds[] = {fd, rfd, out.proxy_fd, out.poster_fd, out.sprite_fd, out.index_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return r;
}

int main(int argc, char **argv)
{
    struct opts o = {0};

    dems_media_params_init(&o.p);
    dems_media_limits_init(&o.lim);
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    /* --help anywhere (dems-media preview --help) shows the help. */
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i]) || strcmp(argv[1], "help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)
        return version();
    if (strcmp(argv[1], "versions") == 0) {
        if (argc > 2)
            return usage_error("unexpected argument", argv[2]);
        json_t *v = dems_media_versions();
        int r = print_json(v, stdout);
        json_decref(v);
        return r;
    }
    if (strcmp(argv[1], "probe") == 0) {
        if (argc < 3)
            return usage_error("probe needs FILE", NULL);
        int r = parse_opts(argc - 3, argv + 3, &o);
        return r != 0 ? r : cmd_probe(argv[2], &o);
    }
    if (strcmp(argv[1], "preview") == 0) {
        if (argc < 4)
            return usage_error("preview needs FILE and OUTDIR", NULL);
        int r = parse_opts(argc - 4, argv + 4, &o);
        return r != 0 ? r : cmd_preview(argv[2], argv[3], &o);
    }
    return usage_error("unknown command", argv[1]);
}
