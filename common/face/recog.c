/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face recogniser (face-models.md 4): dlib's ResNet-29 metric net over a
 * 150x150 crop chosen by face-api's alignDlib rule, giving a 128-d
 * descriptor compared by euclidean distance. Each conv's bias and the
 * folded batch-norm "scale" are merged into one per-channel affine.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

#include "face_int.h"

#define MODEL "face_recognition_model"
#define SLOT  ((size_t)72 * 72 * 32)

enum blk_kind { B_CONV, B_RES, B_DOWN };

static const struct {
    const char *name;
    enum blk_kind kind;
    int cin, cout;
} blocks[] = {
    {"conv32_down", B_CONV, 3, 32},
    {"conv32_1", B_RES, 32, 32},
    {"conv32_2", B_RES, 32, 32},
    {"conv32_3", B_RES, 32, 32},
    {"conv64_down", B_DOWN, 32, 64},
    {"conv64_1", B_RES, 64, 64},
    {"conv64_2", B_RES, 64, 64},
    {"conv64_3", B_RES, 64, 64},
    {"conv128_down", B_DOWN, 64, 128},
    {"conv128_1", B_RES, 128, 128},
    {"conv128_2", B_RES, 128, 128},
    {"conv256_down", B_DOWN, 128, 256},
    {"conv256_1", B_RES, 256, 256},
    {"conv256_2", B_RES, 256, 256},
    {"conv256_down_out", B_DOWN, 256, 256},
};
#define NBLOCKS (sizeof(blocks) / sizeof(blocks[0]))

/* Loads prefix/{conv/filters,conv/bias,scale/weights,scale/biases}. */
static int init_cl(struct gemm_w *g, struct alloc_list *al, const struct wt_file *wf,
                   const char *prefix, int k, int cin, int cout, char *err, size_t errlen)
{
    char nm[4][128];
    size_t kk = (size_t)(k * k * cin), n = (size_t)cout;
    snprintf(nm[0], sizeof(nm[0]), "%s/conv/filters", prefix);
    snprintf(nm[1], sizeof(nm[1]), "%s/conv/bias", prefix);
    snprintf(nm[2], sizeof(nm[2]), "%s/scale/weights", prefix);
    snprintf(nm[3], sizeof(nm[3]), "%s/scale/biases", prefix);
    const float *w = wt_get(wf, nm[0], kk * n), *b = wt_get(wf, nm[1], n);
    const float *sw = wt_get(wf, nm[2], n), *sb = wt_get(wf, nm[3], n);
    if (w == NULL || b == NULL || sw == NULL || sb == NULL)
        return wt_missing(MODEL, nm[0], err, errlen);
    float *shift = malloc(n * sizeof(float));
    if (shift == NULL)
        return DEMS_ENOMEM;
    for (size_t c = 0; c < n; c++)
        shift[c] = b[c] * sw[c] + sb[c]; /* (acc + b) * s + t */
    int r = gemm_w_init(g, al, w, (int)kk, cout, sw, shift);
    free(shift);
    return r;
}

int rec_init(struct rec_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
             size_t errlen)
{
    char pre[96];
    int r = 0, at = 0;
    for (size_t i = 0; i < NBLOCKS && r == 0; i++) {
        if (blocks[i].kind == B_CONV) {
            r = init_cl(&n->conv[at++], al, wf, blocks[i].name, 7, blocks[i].cin, blocks[i].cout,
                        err, errlen);
            continue;
        }
        snprintf(pre, sizeof(pre), "%s/conv1", blocks[i].name);
        r = init_cl(&n->conv[at++], al, wf, pre, 3, blocks[i].cin, blocks[i].cout, err, errlen);
        snprintf(pre, sizeof(pre), "%s/conv2", blocks[i].name);
        if (r == 0)
            r = init_cl(&n->conv[at++], al, wf, pre, 3, blocks[i].cout, blocks[i].cout, err,
                        errlen);
    }
    const float *fc = wt_get(wf, "fc", 256 * 128);
    if (r == 0 && fc == NULL)
        return wt_missing(MODEL, "fc", err, errlen);
    return r < 0 ? r : gemm_w_init(&n->fc, al, fc, 256, 128, NULL, NULL);
}

/* x = relu(CL2(relu(CL1(x))) + x), 3x3 "same" convs. */
static void residual(struct dems_face_ctx *ctx, const struct gemm_w *cv, float *x, int s, int c)
{
    float *t1 = ctx->buf[2], *t2 = ctx->buf[2] + SLOT;
    struct shape sh = {s, s, c};
    op_conv(ctx->m->simd, x, sh, 3, 3, 1, 1, 1, &cv[0], t1, s, s, ACT_RELU, ctx->col);
    op_conv(ctx->m->simd, t1, sh, 3, 3, 1, 1, 1, &cv[1], t2, s, s, ACT_NONE, ctx->col);
    size_t n = (size_t)s * (size_t)s * (size_t)c;
    for (size_t i = 0; i < n; i++) {
        float v = t2[i] + x[i];
        x[i] = v > 0.0f ? v : 0.0f;
    }
}

/* The downsampling block; x (s x s x cin) becomes (sb x sb x cout). */
static int residual_down(struct dems_face_ctx *ctx, const struct gemm_w *cv, float *x, int s,
                         int cin, int cout)
{
    float *t1 = ctx->buf[2], *t2 = ctx->buf[2] + SLOT, *b = ctx->buf[2] + 2 * SLOT;
    int sa = (s - 3) / 2 + 1, sb = s / 2;
    op_conv(ctx->m->simd, x, (struct shape){s, s, cin}, 3, 3, 2, 0, 0, &cv[0], t1, sa, sa, ACT_RELU,
            ctx->col);
    op_conv(ctx->m->simd, t1, (struct shape){sa, sa, cout}, 3, 3, 1, 1, 1, &cv[1], t2, sa, sa,
            ACT_NONE, ctx->col);
    op_avgpool_valid(x, (struct shape){s, s, cin}, 2, 2, b, sb, sb);
    /* b's channels are zero-extended to cout; a gets a zero bottom row and
     * right column when it is smaller. */
    for (int y = 0; y < sb; y++) {
        for (int xx = 0; xx < sb; xx++) {
            float *o = x + ((size_t)y * (size_t)sb + (size_t)xx) * (size_t)cout;
            const float *pb = b + ((size_t)y * (size_t)sb + (size_t)xx) * (size_t)cin;
            const float *pa = y < sa && xx < sa
                                  ? t2 + ((size_t)y * (size_t)sa + (size_t)xx) * (size_t)cout
                                  : NULL;
            for (int c = 0; c < cout; c++) {
                float v = (c < cin ? pb[c] : 0.0f) + (pa != NULL ? pa[c] : 0.0f);
                o[c] = v > 0.0f ? v : 0.0f;
            }
        }
    }
    return sb;
}

void rec_forward(struct dems_face_ctx *ctx, const float *input, float out[128])
{
    const struct rec_net *n = &ctx->m->rec;
    float *x = ctx->buf[1], *t = ctx->buf[2];
    op_conv(ctx->m->simd, input, (struct shape){150, 150, 3}, 7, 7, 2, 0, 0, &n->conv[0], t, 72, 72,
            ACT_RELU, ctx->col);
    op_maxpool(ctx->m->simd, t, (struct shape){72, 72, 32}, 3, 2, 0, 0, x, 35, 35);
    int s = 35, at = 1;
    for (size_t i = 1; i < NBLOCKS; i++) {
        if (blocks[i].kind == B_RES)
            residual(ctx, &n->conv[at], x, s, blocks[i].cout);
        else
            s = residual_down(ctx, &n->conv[at], x, s, blocks[i].cin, blocks[i].cout);
        at += 2;
    }
    float mean[256] = {0};
    for (int p = 0; p < s * s; p++) {
        for (int c = 0; c < 256; c++)
            mean[c] += x[(size_t)p * 256 + (size_t)c];
    }
    for (int c = 0; c < 256; c++)
        mean[c] /= (float)(s * s);
    op_gemm(ctx->m->simd, 1, mean, 256, &n->fc, out, 128, ACT_NONE);
}

int dems_face_describe(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                       struct dems_face *face)
{
    static const float mean[3] = {122.782f, 117.001f, 104.298f};
    struct crop lmcrop, cr;
    const double(*lm)[2] = (const double(*)[2])face->landmarks; /* C17 needs the cast */
    if (!img_valid(img) || !geo_detection_crop(img->width, img->height, &face->box, &lmcrop) ||
        !geo_align_crop(img->width, img->height, lm, lmcrop, &cr))
        return DEMS_EINVAL;
    img_to_input(img, cr, 150, true, mean, 1.0f / 255.0f, ctx->buf[0]);
    rec_forward(ctx, ctx->buf[0], face->descriptor);
    return 0;
}

float dems_face_distance(const float a[static DEMS_FACE_DESCRIPTOR],
                         const float b[static DEMS_FACE_DESCRIPTOR])
{
    double s = 0.0;
    for (int i = 0; i < DEMS_FACE_DESCRIPTOR; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return (float)sqrt(s);
}
