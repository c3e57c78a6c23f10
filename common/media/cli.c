/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dems-media: the media library from the command line, for operators and the
 * benchmark.
 *   dems-media probe FILE [--sandbox]               prints the probe JSON
 *   dems-media preview FILE OUTDIR [--sandbox] [options]
 *       writes OUTDIR/proxy.mp4, poster.jpg, sprite.jpg, thumbnails.vtt and
 *       result.json, and prints the result JSON
 *   dems-media versions                             FFmpeg library versions
 * Options: --timeout S, --threads N, --crf N, --preset NAME, --max-height N,
 * --interval S. Exit status 0, 1 on a media failure (code and message on
 * stderr), 2 on usage errors.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"
#include "dems/str.h"

static int usage(void)
{
    fprintf(stderr, "usage: dems-media probe FILE [--sandbox]\n"
                    "       dems-media preview FILE OUTDIR [--sandbox] [--timeout S] "
                    "[--threads N]\n"
                    "                  [--crf N] [--preset NAME] [--max-height N] "
                    "[--interval S]\n"
                    "       dems-media versions\n");
    return 2;
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

static int parse_opts(int argc, char **argv, struct opts *o)
{
    int v;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--sandbox") == 0) {
            o->sandbox = true;
            continue;
        }
        if (strcmp(a, "--preset") == 0 && next != NULL)
            o->p.preset = next;
        else if (strcmp(a, "--timeout") == 0 && num(next, 86400 * 7, &v) == 0)
            o->lim.timeout = (uint32_t)v;
        else if (strcmp(a, "--threads") == 0 && num(next, 64, &v) == 0)
            o->p.threads = v;
        else if (strcmp(a, "--crf") == 0 && num(next, 51, &v) == 0)
            o->p.crf = v;
        else if (strcmp(a, "--max-height") == 0 && num(next, 4320, &v) == 0 && v >= 16)
            o->p.max_height = v, o->p.max_width = v * 16 / 9;
        else if (strcmp(a, "--interval") == 0 && num(next, 3600, &v) == 0 && v > 0)
            o->p.thumb_interval = v;
        else
            return -1;
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
    if (argc >= 2 && strcmp(argv[1], "versions") == 0) {
        json_t *v = dems_media_versions();
        int r = print_json(v, stdout);
        json_decref(v);
        return r;
    }
    if (argc >= 3 && strcmp(argv[1], "probe") == 0) {
        if (parse_opts(argc - 3, argv + 3, &o) < 0)
            return usage();
        return cmd_probe(argv[2], &o);
    }
    if (argc >= 4 && strcmp(argv[1], "preview") == 0) {
        if (parse_opts(argc - 4, argv + 4, &o) < 0)
            return usage();
        return cmd_preview(argv[2], argv[3], &o);
    }
    return usage();
}
