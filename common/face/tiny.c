/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tiny face detector (face-models.md 2): a YOLOv2-style net of separable
 * convolutions with leaky ReLU and max-pooling, 5 anchors per cell of an
 * S x S grid (S = input/32), and face-api's pop-highest NMS at IoU 0.4.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"

#include "face_int.h"

#define MODEL "tiny_face_detector_model"

static const int chans[6] = {16, 32, 64, 128, 256, 512};
/* face-api's BOX_ANCHORS, JS doubles. */
static const double anchors[5][2] = {{1.603231, 2.094468},
                                     {6.041143, 7.080126},
                                     {2.882459, 3.518061},
                                     {4.266906, 5.178857},
                                     {9.041765, 10.66308}};

int tiny_init(struct tiny_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
              size_t errlen)
{
    char nm[96];
    const float *w = wt_get(wf, "conv0/filters", 27 * 16), *b = wt_get(wf, "conv0/bias", 16);
    if (w == NULL || b == NULL)
        return wt_missing(MODEL, "conv0", err, errlen);
    int r = gemm_w_init(&n->conv0, al, w, 27, 16, NULL, b);
    for (int i = 1; i < 6 && r == 0; i++) {
        size_t cin = (size_t)chans[i - 1], cout = (size_t)chans[i];
        snprintf(nm, sizeof(nm), "conv%d/depthwise_filter", i);
        const float *dw = wt_get(wf, nm, 9 * cin);
        snprintf(nm, sizeof(nm), "conv%d/pointwise_filter", i);
        const float *pw = wt_get(wf, nm, cin * cout);
        snprintf(nm, sizeof(nm), "conv%d/bias", i);
        const float *bias = wt_get(wf, nm, cout);
        if (dw == NULL || pw == NULL || bias == NULL)
            return wt_missing(MODEL, nm, err, errlen);
        r = dw_w_init(&n->dw[i], al, dw, (int)cin, NULL, NULL);
        if (r == 0)
            r = gemm_w_init(&n->pw[i], al, pw, (int)cin, (int)cout, NULL, bias);
    }
    w = wt_get(wf, "conv8/filters", 512 * 25);
    b = wt_get(wf, "conv8/bias", 25);
    if (r == 0 && (w == NULL || b == NULL))
        return wt_missing(MODEL, "conv8", err, errlen);
    if (r == 0)
        r = gemm_w_init(&n->conv8, al, w, 512, 25, NULL, b);
    return r;
}

/* Returns the grid size; the 25 outputs per cell end up in ctx->buf[0]. */
static int forward(struct dems_face_ctx *ctx, int size)
{
    const struct tiny_net *n = &ctx->m->tiny;
    int simd = ctx->m->simd;
    float **b = ctx->buf;
    int s = size - 2, os;
    /* conv0: 3x3 valid, then 2x2/2 max-pool "same". */
    op_conv(simd, b[0], (struct shape){size, size, 3}, 3, 3, 1, 0, 0, &n->conv0, b[1], s, s,
            ACT_LEAKY, ctx->col);
    int pad = pad_same_before(s, 2, 2, &os);
    op_maxpool(simd, b[1], (struct shape){s, s, 16}, 2, 2, pad, pad, b[0], os, os);
    s = os;
    for (int i = 1; i < 6; i++) {
        /* Explicit 1-pixel zero padding + valid 3x3 = padding 1 on each side. */
        struct shape is = {s, s, chans[i - 1]};
        op_dwconv3(simd, b[0], is, 1, 1, 1, &n->dw[i], b[2], s, s, ACT_NONE);
        op_gemm(simd, s * s, b[2], chans[i - 1], &n->pw[i], b[1], chans[i], ACT_LEAKY);
        int stride = i < 5 ? 2 : 1;
        pad = pad_same_before(s, 2, stride, &os);
        op_maxpool(simd, b[1], (struct shape){s, s, chans[i]}, 2, stride, pad, pad, b[0], os, os);
        s = os;
    }
    op_gemm(simd, s * s, b[0], 512, &n->conv8, b[1], 25, ACT_NONE);
    memcpy(b[0], b[1], (size_t)s * (size_t)s * 25 * sizeof(float));
    return s;
}

/* face-api decodes in JS doubles. */
static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* face-api's iou() on the candidates' Boxes rescaled by the input size s:
 * x * s and (right - left) * s, the right edge being x + width again. */
static double iou(const double *a, const double *b, double s)
{
    double ax = a[0] * s, ay = a[1] * s, aw = (a[2] - a[0]) * s, ah = (a[3] - a[1]) * s;
    double bx = b[0] * s, by = b[1] * s, bw = (b[2] - b[0]) * s, bh = (b[3] - b[1]) * s;
    double w = fmax(0.0, fmin(ax + aw, bx + bw) - fmax(ax, bx));
    double h = fmax(0.0, fmin(ay + ah, by + bh) - fmax(ay, by));
    double inter = w * h;
    return inter / (aw * ah + bw * bh - inter);
}

int tiny_detect(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                const struct dems_face_opts *o, struct dems_face *faces, size_t cap, size_t *ret_n)
{
    static const float mean[3] = {117.001f, 114.697f, 97.404f};
    int size = o->tiny_size;
    struct crop all = {0, 0, img->width, img->height};
    img_to_input(img, all, size, false, mean, 1.0f / 255.0f, ctx->buf[0]);
    int g = forward(ctx, size);

    double rw = geo_reshaped(img->width, img->width, img->height, size);
    double rh = geo_reshaped(img->height, img->width, img->height, size);
    double insize = fmax(rw, rh), cfx = insize / rw, cfy = insize / rh;
    /* cand: per candidate (left, top, right, bottom) relative, then the
     * score, all doubles as in face-api (at most 19 * 19 * 5 of them). */
    double *box = (double *)(void *)ctx->cand;
    int nc = 0;
    for (int row = 0; row < g; row++) {
        for (int col = 0; col < g; col++) {
            for (int a = 0; a < 5; a++) {
                const float *t = ctx->buf[0] + ((size_t)(row * g + col) * 5 + (size_t)a) * 5;
                double sc = sigmoid(t[4]);
                if (!(sc > o->min_score))
                    continue;
                double cx = ((double)col + sigmoid(t[0])) / g * cfx;
                double cy = ((double)row + sigmoid(t[1])) / g * cfy;
                double w = exp(t[2]) * anchors[a][0] / g * cfx;
                double h = exp(t[3]) * anchors[a][1] / g * cfy;
                double *bx = box + (size_t)nc * 5;
                bx[0] = cx - w / 2;
                bx[1] = cy - h / 2;
                bx[2] = bx[0] + w;
                bx[3] = bx[1] + h;
                bx[4] = sc;
                ctx->order[nc++] = 1; /* still a candidate */
            }
        }
    }
    /* face-api: repeatedly take the best remaining (the later one on ties)
     * and drop every remaining box overlapping it by more than iou. */
    size_t out = 0;
    for (;;) {
        int best = -1;
        for (int i = 0; i < nc; i++) {
            if (ctx->order[i] && (best < 0 || box[(size_t)i * 5 + 4] >= box[(size_t)best * 5 + 4]))
                best = i;
        }
        if (best < 0)
            break;
        ctx->order[best] = 0;
        const double *bb = box + (size_t)best * 5;
        for (int i = 0; i < nc; i++) {
            if (ctx->order[i] && iou(bb, box + (size_t)i * 5, insize) > o->iou)
                ctx->order[i] = 0;
        }
        if (out < cap) {
            faces[out] = (struct dems_face){.score = (float)bb[4]};
            geo_tiny_box(bb, img->width, img->height, &faces[out].box);
            out++;
        }
    }
    *ret_n = out;
    return 0;
}
