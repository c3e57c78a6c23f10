/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The 68-point landmark net (face-models.md 3): four densely connected
 * blocks of separable convolutions over a 112x112 face crop, a 7x7 average
 * pool and a fully connected layer giving 68 (x, y) pairs relative to the
 * padded crop, mapped back to image pixels as face-api does.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"

#include "face_int.h"

#define MODEL "face_landmark_68_model"
#define SLOT  ((size_t)56 * 56 * 32) /* largest tensor inside a block */

static const int chans[5] = {3, 32, 64, 128, 256};

static int init_dsc(struct dw_w *dw, struct gemm_w *pw, struct alloc_list *al,
                    const struct wt_file *wf, int blk, int conv, size_t cin, size_t cout, char *err,
                    size_t errlen)
{
    char nm[96];
    snprintf(nm, sizeof(nm), "dense%d/conv%d/depthwise_filter", blk, conv);
    const float *d = wt_get(wf, nm, 9 * cin);
    snprintf(nm, sizeof(nm), "dense%d/conv%d/pointwise_filter", blk, conv);
    const float *p = wt_get(wf, nm, cin * cout);
    snprintf(nm, sizeof(nm), "dense%d/conv%d/bias", blk, conv);
    const float *b = wt_get(wf, nm, cout);
    if (d == NULL || p == NULL || b == NULL)
        return wt_missing(MODEL, nm, err, errlen);
    int r = dw_w_init(dw, al, d, (int)cin, NULL, NULL);
    return r < 0 ? r : gemm_w_init(pw, al, p, (int)cin, (int)cout, NULL, b);
}

int lm_init(struct lm_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
            size_t errlen)
{
    const float *w = wt_get(wf, "dense0/conv0/filters", 27 * 32);
    const float *b = wt_get(wf, "dense0/conv0/bias", 32);
    if (w == NULL || b == NULL)
        return wt_missing(MODEL, "dense0/conv0", err, errlen);
    int r = gemm_w_init(&n->conv0, al, w, 27, 32, NULL, b);
    for (int blk = 0; blk < 4 && r == 0; blk++) {
        for (int c = blk == 0 ? 1 : 0; c < 4 && r == 0; c++) {
            size_t cin = (size_t)(c == 0 ? chans[blk] : chans[blk + 1]);
            r = init_dsc(&n->dw[blk][c], &n->pw[blk][c], al, wf, blk, c, cin,
                         (size_t)chans[blk + 1], err, errlen);
        }
    }
    w = wt_get(wf, "fc/weights", 256 * 136);
    b = wt_get(wf, "fc/bias", 136);
    if (r == 0 && (w == NULL || b == NULL))
        return wt_missing(MODEL, "fc", err, errlen);
    return r < 0 ? r : gemm_w_init(&n->fc, al, w, 256, 136, NULL, b);
}

/* Separable conv: depthwise 3x3 "same" (no bias) then pointwise + bias. */
static void dsc(struct dems_face_ctx *ctx, const struct dw_w *dw, const struct gemm_w *pw,
                const float *in, struct shape is, int stride, float *tmp, float *out, int *ret_s)
{
    int os;
    int pad = pad_same_before(is.h, 3, stride, &os);
    op_dwconv3(ctx->m->simd, in, is, stride, pad, pad, dw, tmp, os, os, ACT_NONE);
    op_gemm(ctx->m->simd, os * os, tmp, is.c, pw, out, pw->n, ACT_NONE);
    *ret_s = os;
}

/* y = relu(a + b [+ c]) over n floats. */
static void sum_relu(float *y, const float *a, const float *b, const float *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        if (c != NULL)
            v += c[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

/* One dense block from in (s x s x cin) into out; returns the output side. */
static int dense(struct dems_face_ctx *ctx, int blk, const float *in, int s, float *out)
{
    const struct lm_net *n = &ctx->m->lm;
    float *o1 = ctx->buf[1], *o2 = o1 + SLOT, *o3 = o2 + SLOT, *r = o3 + SLOT, *t = r + SLOT;
    int cin = chans[blk], c = chans[blk + 1], os;
    if (blk == 0) {
        int pad = pad_same_before(s, 3, 2, &os);
        op_conv(ctx->m->simd, in, (struct shape){s, s, cin}, 3, 3, 2, pad, pad, &n->conv0, o1, os,
                os, ACT_RELU, ctx->col);
    } else {
        dsc(ctx, &n->dw[blk][0], &n->pw[blk][0], in, (struct shape){s, s, cin}, 2, t, o1, &os);
        op_act(o1, (size_t)os * (size_t)os * (size_t)c, ACT_RELU);
    }
    struct shape ms = {os, os, c};
    size_t len = (size_t)os * (size_t)os * (size_t)c;
    int s2;
    dsc(ctx, &n->dw[blk][1], &n->pw[blk][1], o1, ms, 1, t, o2, &s2);
    sum_relu(r, o1, o2, NULL, len);
    dsc(ctx, &n->dw[blk][2], &n->pw[blk][2], r, ms, 1, t, o3, &s2);
    sum_relu(r, o1, o2, o3, len);
    op_add(o1, o2, len); /* o1 = out1 + out2; o2 is free now */
    dsc(ctx, &n->dw[blk][3], &n->pw[blk][3], r, ms, 1, t, o2, &s2);
    sum_relu(out, o1, o3, o2, len);
    return os;
}

void lm_forward(struct dems_face_ctx *ctx, const float *input, float out[136])
{
    float *a = ctx->buf[2], *b = ctx->buf[2] + SLOT;
    int s = dense(ctx, 0, input, 112, a);
    s = dense(ctx, 1, a, s, b);
    s = dense(ctx, 2, b, s, a);
    s = dense(ctx, 3, a, s, b);
    float pooled[256];
    op_avgpool_valid(b, (struct shape){s, s, 256}, 7, 2, pooled, 1, 1);
    op_gemm(ctx->m->simd, 1, pooled, 256, &ctx->m->lm.fc, out, 136, ACT_NONE);
}

int dems_face_landmarks(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                        struct dems_face *face)
{
    static const float mean[3] = {122.782f, 117.001f, 104.298f};
    struct crop cr;
    if (!img_valid(img) || !geo_detection_crop(img->width, img->height, &face->box, &cr))
        return DEMS_EINVAL;
    img_to_input(img, cr, 112, true, mean, 1.0f / 255.0f, ctx->buf[0]);
    float o[136];
    lm_forward(ctx, ctx->buf[0], o);
    geo_landmarks(o, cr, &face->box, face->landmarks);
    return 0;
}
