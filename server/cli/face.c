/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `demsd face detect|embed IMAGE...`: runs the face engine on image files
 * and prints one JSON array with an object per image (file, width, height,
 * faces with score, box, 68 landmarks and, for embed, the 128-d
 * descriptor). A bad image gets one line on stderr and an "error" member
 * in its object; the others are still processed, and the exit status is 1.
 */
#include "dems/face.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"
#include "demsd/cli.h"

#define MAX_FACES 256

struct face_args {
    bool embed;
    const char *models;
    struct dems_face_opts opts;
    int first; /* argv index of the first image */
};

static void usage(FILE *f)
{
    fputs("usage: demsd face detect|embed [options] IMAGE...\n"
          "\n"
          "Finds faces in JPEG, PNG or binary PPM images and prints one JSON array:\n"
          "[{\"file\", \"width\", \"height\", \"faces\": [{\"score\", \"box\": {\"x\", \"y\", "
          "\"width\", \"height\"},\n"
          "  \"landmarks\": [[x, y] x 68], \"descriptor\": [128 numbers]}]}]\n"
          "(pixels in the image's own coordinates; detect omits the descriptor).\n"
          "Descriptors are compared by euclidean distance; below 0.5 is a candidate\n"
          "match to be reviewed by a person, never an identification.\n"
          "\n"
          "options:\n"
          "  --models DIR        face-api model directory (default: $DEMS_MODELS, then\n"
          "                      .models/ of the checkout holding demsd, then\n"
          "                      /usr/share/dems/face-models; install with\n"
          "                      deploy/install.d/face-models)\n"
          "  --detector ssd|tiny SSD MobileNetV1 (default, accurate) or the tiny detector\n"
          "  --min-score F       keep detections scoring above F (default 0.5)\n"
          "  --iou F             non-maximum suppression overlap (ssd 0.5, tiny 0.4)\n"
          "  --max-results N     at most N faces per image (ssd; default 100)\n"
          "  --input-size N      tiny detector input, multiple of 32, 64..608 (416)\n"
          "  --help              this text\n",
          f);
}

static int parse_float(const char *s, double lo, double hi, double *ret)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return DEMS_EINVAL;
    *ret = v;
    return 0;
}

static int parse_int(const char *s, uint64_t max, int *ret)
{
    uint64_t v;
    int r = dems_parse_u64(s, strlen(s), max, &v);
    if (r == 0)
        *ret = (int)v;
    return r;
}

/* Parses the options after the subcommand; 2 on a usage error, -1 on --help. */
static int parse_args(int argc, char **argv, struct face_args *a)
{
    double min_score = -1.0, iou = -1.0;
    int max_results = -1, size = -1;
    a->opts.detector = DEMS_FACE_DETECTOR_SSD;
    int i = 2;
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(o, "--help") == 0)
            return -1;
        int r = v == NULL ? DEMS_EINVAL : 0;
        if (r == 0 && strcmp(o, "--models") == 0)
            a->models = v;
        else if (r == 0 && strcmp(o, "--detector") == 0 && strcmp(v, "ssd") == 0)
            a->opts.detector = DEMS_FACE_DETECTOR_SSD;
        else if (r == 0 && strcmp(o, "--detector") == 0 && strcmp(v, "tiny") == 0)
            a->opts.detector = DEMS_FACE_DETECTOR_TINY;
        else if (r == 0 && strcmp(o, "--min-score") == 0)
            r = parse_float(v, 0.0, 0.999, &min_score);
        else if (r == 0 && strcmp(o, "--iou") == 0)
            r = parse_float(v, 0.01, 1.0, &iou);
        else if (r == 0 && strcmp(o, "--max-results") == 0)
            r = parse_int(v, 5118, &max_results);
        else if (r == 0 && strcmp(o, "--input-size") == 0)
            r = parse_int(v, 608, &size);
        else
            r = DEMS_EINVAL;
        if (r < 0) {
            fprintf(stderr, "demsd face: bad option %s%s%s (try demsd face --help)\n", o,
                    v != NULL ? " " : "", v != NULL ? v : "");
            return 2;
        }
        i += 2;
    }
    enum dems_face_detector det = a->opts.detector;
    dems_face_opts_init(&a->opts, det);
    if (min_score >= 0.0)
        a->opts.min_score = min_score;
    if (iou > 0.0)
        a->opts.iou = iou;
    if (max_results > 0)
        a->opts.max_results = max_results;
    if (size >= 0)
        a->opts.tiny_size = size;
    if (size >= 0 && (size < 64 || size % 32 != 0)) {
        fprintf(stderr, "demsd face: --input-size must be a multiple of 32 in 64..608\n");
        return 2;
    }
    if (i >= argc) {
        fprintf(stderr, "demsd face: no images given\n");
        return 2;
    }
    a->first = i;
    return 0;
}

static void print_string(const char *s)
{
    json_t *j = json_string(s);
    char *d = j != NULL ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(d != NULL ? d : "\"?\"", stdout);
    free(d);
    json_decref(j);
}

static void print_face(const struct dems_face *f, bool embed)
{
    printf("{\"score\": %.6f, \"box\": {\"x\": %.3f, \"y\": %.3f, \"width\": %.3f, "
           "\"height\": %.3f}, \"landmarks\": [",
           (double)f->score, f->box.x, f->box.y, f->box.width, f->box.height);
    for (int i = 0; i < DEMS_FACE_LANDMARKS; i++)
        printf("%s[%.3f, %.3f]", i ? ", " : "", f->landmarks[i][0], f->landmarks[i][1]);
    putchar(']');
    if (embed) {
        fputs(", \"descriptor\": [", stdout);
        for (int i = 0; i < DEMS_FACE_DESCRIPTOR; i++)
            printf("%s%.6f", i ? ", " : "", (double)f->descriptor[i]);
        putchar(']');
    }
    putchar('}');
}

/* Landmarks (and descriptors) for the n detected faces. A face whose box
 * holds no pixel of the image (possible at very low --min-score) is dropped,
 * as face-api drops empty crops. Returns the faces kept. */
static size_t analyse(struct dems_face_ctx *ctx, const struct dems_face_image *img, bool embed,
                      struct dems_face *faces, size_t n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (dems_face_landmarks(ctx, img, &faces[i]) < 0 ||
            (embed && dems_face_describe(ctx, img, &faces[i]) < 0))
            continue;
        if (kept != i)
            faces[kept] = faces[i];
        kept++;
    }
    return kept;
}

/* Processes one file; prints its JSON object. Returns 0 or a DEMS_E*. */
static int one_image(struct dems_face_ctx *ctx, const struct face_args *a, const char *file,
                     struct dems_face *faces)
{
    char err[512] = "";
    struct dems_face_image img = {0};
    size_t n = 0;
    int r = dems_face_image_load(file, &img, err, sizeof(err));
    if (r == 0) {
        r = dems_face_detect(ctx, &img, &a->opts, faces, MAX_FACES, &n);
        if (r < 0)
            snprintf(err, sizeof(err), "face detection failed: %s", dems_strerror(r));
        else
            n = analyse(ctx, &img, a->embed, faces, n);
    }
    fputs("{\"file\": ", stdout);
    print_string(file);
    if (r < 0) {
        fprintf(stderr, "demsd face: %s: %s\n", file, err);
        fputs(", \"error\": ", stdout);
        print_string(err);
        putchar('}');
        dems_face_image_done(&img);
        return r;
    }
    printf(", \"width\": %d, \"height\": %d, \"faces\": [", img.width, img.height);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ", " : "", stdout);
        print_face(&faces[i], a->embed);
    }
    fputs("]}", stdout);
    dems_face_image_done(&img);
    return 0;
}

int dems_cli_face(int argc, char **argv)
{
    struct face_args a = {0};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "detect") != 0 && strcmp(argv[1], "embed") != 0) {
        fprintf(stderr, "demsd face: unknown subcommand %s (detect or embed)\n", argv[1]);
        return 2;
    }
    a.embed = strcmp(argv[1], "embed") == 0;
    int r = parse_args(argc, argv, &a);
    if (r != 0) {
        if (r < 0)
            usage(stdout);
        return r < 0 ? 0 : r;
    }
    char dir[4096], err[1024];
    if (dems_face_models_find(a.models, "/proc/self/exe", dir, sizeof(dir)) < 0) {
        fprintf(stderr, "demsd face: %s\n", dir);
        return 2;
    }
    struct dems_face_models *m = NULL;
    if (dems_face_models_load(dir, &m, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd face: %s\n", err);
        return 2;
    }
    struct dems_face_ctx *ctx = dems_face_ctx_new(m);
    struct dems_face *faces = calloc(MAX_FACES, sizeof(*faces));
    int status = 0;
    if (ctx == NULL || faces == NULL) {
        fprintf(stderr, "demsd face: out of memory\n");
        status = 1;
    } else {
        putchar('[');
        for (int i = a.first; i < argc; i++) {
            fputs(i > a.first ? ",\n" : "", stdout);
            if (one_image(ctx, &a, argv[i], faces) < 0)
                status = 1;
        }
        puts("]");
    }
    free(faces);
    dems_face_ctx_free(ctx);
    dems_face_models_free(m);
    return status;
}
