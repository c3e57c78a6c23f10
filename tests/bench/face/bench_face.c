/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark of the face engine, stage by stage, one thread:
 *   bench_face [--models DIR] [--detector ssd|tiny] [--reps N] IMAGE...
 * Per image: median milliseconds of detection (decoded frame in, boxes out,
 * including resize and NMS), and per face the landmarks (crop + net +
 * mapping) and the descriptor (alignment crop + ResNet). Prints one JSON
 * object shaped like `tests/face/reference.js --bench`, so run.sh can put
 * the C engine beside tfjs's wasm and cpu backends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/face.h"
#include "dems/str.h"

#define MAX_FACES 64
#define MAX_REPS  50

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* One full pass; writes the three stage times. Returns the face count. */
static size_t pass(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                   const struct dems_face_opts *o, struct dems_face *faces, double t[3])
{
    size_t n = 0;
    double t0 = now_ms();
    if (dems_face_detect(ctx, img, o, faces, MAX_FACES, &n) < 0)
        return 0;
    double t1 = now_ms();
    for (size_t i = 0; i < n; i++)
        dems_face_landmarks(ctx, img, &faces[i]);
    double t2 = now_ms();
    for (size_t i = 0; i < n; i++)
        dems_face_describe(ctx, img, &faces[i]);
    double t3 = now_ms();
    t[0] = t1 - t0;
    t[1] = t2 - t1;
    t[2] = t3 - t2;
    return n;
}

int main(int argc, char **argv)
{
    const char *models = NULL;
    int reps = 5, i = 1;
    uint64_t u;
    struct dems_face_opts o;
    dems_face_opts_init(&o, DEMS_FACE_DETECTOR_SSD);
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--models") == 0)
            models = argv[i + 1];
        else if (strcmp(argv[i], "--reps") == 0 &&
                 dems_parse_u64(argv[i + 1], strlen(argv[i + 1]), MAX_REPS, &u) == 0)
            reps = (int)u;
        else if (strcmp(argv[i], "--detector") == 0 && strcmp(argv[i + 1], "tiny") == 0)
            dems_face_opts_init(&o, DEMS_FACE_DETECTOR_TINY);
    }
    if (reps < 1 || reps > MAX_REPS || i >= argc) {
        fprintf(stderr, "usage: bench_face [--models DIR] [--detector ssd|tiny] [--reps N] "
                        "IMAGE...\n");
        return 2;
    }
    char dir[4096], err[1024];
    struct dems_face_models *m = NULL;
    if (dems_face_models_find(models, "/proc/self/exe", dir, sizeof(dir)) < 0 ||
        dems_face_models_load(dir, &m, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_face: cannot load models from %s\n", dir);
        return 1;
    }
    struct dems_face_ctx *ctx = dems_face_ctx_new(m);
    static struct dems_face faces[MAX_FACES];
    printf("{\"backend\": \"dems-c\", \"images\": [");
    for (int f = i; f < argc && ctx != NULL; f++) {
        struct dems_face_image img;
        if (dems_face_image_load(argv[f], &img, err, sizeof(err)) < 0) {
            fprintf(stderr, "bench_face: %s: %s\n", argv[f], err);
            continue;
        }
        double t[3], d[MAX_REPS], l[MAX_REPS], e[MAX_REPS];
        size_t n = pass(ctx, &img, &o, faces, t); /* warm-up */
        for (int r = 0; r < reps; r++) {
            pass(ctx, &img, &o, faces, t);
            d[r] = t[0];
            l[r] = t[1];
            e[r] = t[2];
        }
        const char *base = strrchr(argv[f], '/');
        double nf = n > 0 ? (double)n : 1.0;
        printf("%s{\"file\": \"%s\", \"faces\": %zu, \"detect_ms\": %.2f, "
               "\"landmarks_ms_per_face\": %.2f, \"descriptor_ms_per_face\": %.2f}",
               f > i ? ", " : "", base != NULL ? base + 1 : argv[f], n, median(d, reps),
               n > 0 ? median(l, reps) / nf : 0.0, n > 0 ? median(e, reps) / nf : 0.0);
        dems_face_image_done(&img);
    }
    printf("]}\n");
    dems_face_ctx_free(ctx);
    dems_face_models_free(m);
    return 0;
}
