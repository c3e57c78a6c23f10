/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face engine's front: finding and loading the model set, per-thread
 * contexts with their scratch buffers, option checks and detector dispatch.
 */
#include "dems/face.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dems/err.h"

#include "face_int.h"

#define PKG_MODEL "node_modules/@vladmandic/face-api/model"
#define PROBE     "face_recognition_model-weights_manifest.json"

void dems_face_opts_init(struct dems_face_opts *opts, enum dems_face_detector detector)
{
    *opts = (struct dems_face_opts){
        .detector = detector,
        .min_score = 0.5,
        .iou = detector == DEMS_FACE_DETECTOR_TINY ? 0.4 : 0.5,
        .max_results = 100,
        .tiny_size = 416,
    };
}

/* Whether dir (or dir/PKG_MODEL) holds the models; writes the one that does. */
static bool try_dir(const char *dir, char *buf, size_t n)
{
    char path[4096];
    struct stat st;
    static const char *const sub[2] = {"", "/" PKG_MODEL};
    for (int i = 0; i < 2; i++) {
        if ((size_t)snprintf(path, sizeof(path), "%s%s/" PROBE, dir, sub[i]) >= sizeof(path))
            continue;
        if (stat(path, &st) == 0 && (size_t)snprintf(buf, n, "%s%s", dir, sub[i]) < n)
            return true;
    }
    return false;
}

int dems_face_models_find(const char *dir, const char *exe_path, char *buf, size_t n)
{
    if (dir != NULL) {
        if (try_dir(dir, buf, n))
            return 0;
        snprintf(buf, n, "no face models in %s (install them with deploy/install.d/face-models)",
                 dir);
        return DEMS_ENOTFOUND;
    }
    const char *env = getenv("DEMS_MODELS");
    if (env != NULL && env[0] != '\0' && try_dir(env, buf, n))
        return 0;
    char base[4096], cand[4200];
    if (exe_path != NULL && realpath(exe_path, base) != NULL) {
        for (int up = 0; up <= 5; up++) {
            char *slash = strrchr(base, '/');
            if (slash == NULL)
                break;
            *slash = '\0';
            snprintf(cand, sizeof(cand), "%s/.models", base);
            if (try_dir(cand, buf, n))
                return 0;
        }
    }
    if (try_dir("/usr/share/dems/face-models", buf, n))
        return 0;
    snprintf(buf, n,
             "face models not found (looked in --models, $DEMS_MODELS, .models/ beside "
             "the executable's checkout, /usr/share/dems/face-models): install them with "
             "deploy/install.d/face-models");
    return DEMS_ENOTFOUND;
}

static int load_one(struct dems_face_models *m, const char *dir, const char *model, char *err,
                    size_t errlen)
{
    struct wt_file wf;
    int r = wt_load(&wf, dir, model, err, errlen);
    if (r < 0)
        return r;
    if (strcmp(model, "ssd_mobilenetv1_model") == 0)
        r = ssd_init(&m->ssd, &m->al, &wf, err, errlen);
    else if (strcmp(model, "tiny_face_detector_model") == 0)
        r = tiny_init(&m->tiny, &m->al, &wf, err, errlen);
    else if (strcmp(model, "face_landmark_68_model") == 0)
        r = lm_init(&m->lm, &m->al, &wf, err, errlen);
    else
        r = rec_init(&m->rec, &m->al, &wf, err, errlen);
    wt_done(&wf);
    return r;
}

int dems_face_models_load(const char *dir, struct dems_face_models **ret_models, char *err,
                          size_t errlen)
{
    static const char *const names[4] = {"ssd_mobilenetv1_model", "tiny_face_detector_model",
                                         "face_landmark_68_model", "face_recognition_model"};
    char local[512];
    if (err == NULL || errlen == 0) {
        err = local;
        errlen = sizeof(local);
    }
    err[0] = '\0';
    struct dems_face_models *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return DEMS_ENOMEM;
    __builtin_cpu_init();
    /* DEMS_FACE_SIMD=0/1/2 caps the kernel family (tests, benchmarks). */
    const char *cap = getenv("DEMS_FACE_SIMD");
    int max = cap != NULL && cap[0] >= '0' && cap[0] <= '2' ? cap[0] - '0' : SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        m->simd = __builtin_cpu_supports("avx512f") ? SIMD_AVX512 : SIMD_AVX2;
    if (m->simd > max)
        m->simd = max;
    int r = 0;
    for (int i = 0; i < 4 && r == 0; i++)
        r = load_one(m, dir, names[i], err, errlen);
    if (r < 0) {
        if (r == DEMS_ENOMEM)
            snprintf(err, errlen, "out of memory loading the face models");
        dems_face_models_free(m);
        return r;
    }
    *ret_models = m;
    return 0;
}

void dems_face_models_free(struct dems_face_models *models)
{
    if (models == NULL)
        return;
    al_free(&models->al);
    free(models);
}

struct dems_face_ctx *dems_face_ctx_new(const struct dems_face_models *models)
{
    struct dems_face_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->m = models;
    size_t sizes[] = {BUF_FLOATS,      BUF_FLOATS,      BUF_FLOATS, op_conv_col_floats(1),
                      SSD_ANCHORS * 4, SSD_ANCHORS * 3, 8192,       6 * SSD_ANCHORS};
    float **slots[] = {&ctx->buf[0], &ctx->buf[1],  &ctx->buf[2], &ctx->col,
                       &ctx->boxes,  &ctx->classes, &ctx->tmp,    &ctx->cand};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        *slots[i] = aligned_alloc(64, (sizes[i] * sizeof(float) + 63) & ~(size_t)63);
        if (*slots[i] == NULL)
            goto fail;
    }
    ctx->order = calloc(SSD_ANCHORS, sizeof(int));
    if (ctx->order == NULL)
        goto fail;
    return ctx;
fail:
    dems_face_ctx_free(ctx);
    return NULL;
}

void dems_face_ctx_free(struct dems_face_ctx *ctx)
{
    if (ctx == NULL)
        return;
    for (int i = 0; i < 3; i++)
        free(ctx->buf[i]);
    free(ctx->col);
    free(ctx->boxes);
    free(ctx->classes);
    free(ctx->tmp);
    free(ctx->cand);
    free(ctx->order);
    free(ctx);
}

static bool opts_ok(const struct dems_face_opts *o)
{
    if (!(o->min_score >= 0.0 && o->min_score < 1.0) || !(o->iou > 0.0 && o->iou <= 1.0))
        return false;
    if (o->detector == DEMS_FACE_DETECTOR_SSD)
        return o->max_results >= 1 && o->max_results <= SSD_ANCHORS;
    return o->detector == DEMS_FACE_DETECTOR_TINY && o->tiny_size >= 64 && o->tiny_size <= 608 &&
           o->tiny_size % 32 == 0;
}

int dems_face_detect(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                     const struct dems_face_opts *opts, struct dems_face *faces, size_t cap,
                     size_t *ret_n)
{
    if (!opts_ok(opts) || !img_valid(img))
        return DEMS_EINVAL;
    if (opts->detector == DEMS_FACE_DETECTOR_TINY)
        return tiny_detect(ctx, img, opts, faces, cap, ret_n);
    return ssd_detect(ctx, img, opts, faces, cap, ret_n);
}
