/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SSD MobileNetV1 face detector (face-models.md 1): MobileNetV1 backbone
 * at 512x512, 8 extra layers, 6 box/class heads over 5118 anchors, box
 * decoding and face-api's score-ordered NMS. Heads run as soon as their
 * input exists, so three activation buffers suffice.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

#include "face_int.h"

#define MODEL  "ssd_mobilenetv1_model"
#define BN_EPS 0.0010000000474974513f

static const int dw_stride2[14] = {[2] = 1, [4] = 1, [6] = 1, [12] = 1};
static const int chans[14] = {32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024};
static const int extra_k[8] = {1, 3, 1, 3, 1, 3, 1, 3};
static const int extra_out[8] = {256, 512, 128, 256, 128, 256, 64, 128};
static const int head_in[6] = {512, 1024, 512, 256, 256, 128};
static const int head_anchors[6] = {3, 6, 6, 6, 6, 6};

static int get(const struct wt_file *wf, const char *name, size_t n, const float **ret, char *err,
               size_t errlen)
{
    *ret = wt_get(wf, name, n);
    return *ret != NULL ? 0 : wt_missing(MODEL, name, err, errlen);
}

static int init_backbone(struct ssd_net *n, struct alloc_list *al, const struct wt_file *wf,
                         char *err, size_t errlen)
{
    char nm[160];
    const float *w, *b, *g, *be, *mu, *var;
    int r = get(wf, "MobilenetV1/Conv2d_0_pointwise/weights", 27 * 32, &w, err, errlen);
    if (r == 0)
        r = get(wf, "MobilenetV1/Conv2d_0_pointwise/convolution_bn_offset", 32, &b, err, errlen);
    if (r == 0)
        r = gemm_w_init(&n->conv0, al, w, 27, 32, NULL, b);
    for (int i = 1; i < 14 && r == 0; i++) {
        size_t cin = (size_t)chans[i - 1], cout = (size_t)chans[i];
#define P(s) (snprintf(nm, sizeof(nm), "MobilenetV1/Conv2d_%d_" s, i), nm)
        if ((r = get(wf, P("depthwise/depthwise_weights"), 9 * cin, &w, err, errlen)) < 0 ||
            (r = get(wf, P("depthwise/BatchNorm/gamma"), cin, &g, err, errlen)) < 0 ||
            (r = get(wf, P("depthwise/BatchNorm/beta"), cin, &be, err, errlen)) < 0 ||
            (r = get(wf, P("depthwise/BatchNorm/moving_mean"), cin, &mu, err, errlen)) < 0 ||
            (r = get(wf, P("depthwise/BatchNorm/moving_variance"), cin, &var, err, errlen)) < 0)
            break;
        float *scale = malloc(cin * sizeof(float)), *shift = malloc(cin * sizeof(float));
        if (scale == NULL || shift == NULL) {
            free(scale);
            free(shift);
            return DEMS_ENOMEM;
        }
        /* tf.batchNorm: (x - mean) * gamma / sqrt(var + eps) + beta */
        for (size_t c = 0; c < cin; c++) {
            scale[c] = g[c] / sqrtf(var[c] + BN_EPS);
            shift[c] = be[c] - mu[c] * scale[c];
        }
        r = dw_w_init(&n->dw[i], al, w, (int)cin, scale, shift);
        free(scale);
        free(shift);
        if (r == 0 && (r = get(wf, P("pointwise/weights"), cin * cout, &w, err, errlen)) == 0 &&
            (r = get(wf, P("pointwise/convolution_bn_offset"), cout, &b, err, errlen)) == 0)
            r = gemm_w_init(&n->pw[i], al, w, (int)cin, (int)cout, NULL, b);
#undef P
    }
    return r;
}

static int init_heads(struct ssd_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
                      size_t errlen)
{
    char nm[160], nb[160];
    const float *w, *b;
    int r = 0, cin = 1024;
    for (int j = 0; j < 8 && r == 0; j++) {
        size_t k = (size_t)(extra_k[j] * extra_k[j] * cin), cout = (size_t)extra_out[j];
        snprintf(nm, sizeof(nm), "Prediction/Conv2d_%d_pointwise/weights", j);
        snprintf(nb, sizeof(nb), "Prediction/Conv2d_%d_pointwise/convolution_bn_offset", j);
        if ((r = get(wf, nm, k * cout, &w, err, errlen)) == 0 &&
            (r = get(wf, nb, cout, &b, err, errlen)) == 0)
            r = gemm_w_init(&n->extra[j], al, w, (int)k, (int)cout, NULL, b);
        cin = extra_out[j];
    }
    for (int h = 0; h < 6 && r == 0; h++) {
        size_t cin_h = (size_t)head_in[h], a = (size_t)head_anchors[h];
        static const char *const kind[2] = {"BoxEncodingPredictor", "ClassPredictor"};
        for (int t = 0; t < 2 && r == 0; t++) {
            size_t cout = a * (t == 0 ? 4 : 3);
            snprintf(nm, sizeof(nm), "Prediction/BoxPredictor_%d/%s/weights", h, kind[t]);
            snprintf(nb, sizeof(nb), "Prediction/BoxPredictor_%d/%s/biases", h, kind[t]);
            if ((r = get(wf, nm, cin_h * cout, &w, err, errlen)) == 0 &&
                (r = get(wf, nb, cout, &b, err, errlen)) == 0)
                r = gemm_w_init(t == 0 ? &n->box[h] : &n->cls[h], al, w, (int)cin_h, (int)cout,
                                NULL, b);
        }
    }
    return r;
}

int ssd_init(struct ssd_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
             size_t errlen)
{
    const float *a;
    int r = init_backbone(n, al, wf, err, errlen);
    if (r == 0)
        r = init_heads(n, al, wf, err, errlen);
    if (r == 0)
        r = get(wf, "Output/extra_dim", SSD_ANCHORS * 4, &a, err, errlen);
    if (r == 0) {
        n->anchors = al_floats(al, SSD_ANCHORS * 4);
        if (n->anchors == NULL)
            return DEMS_ENOMEM;
        memcpy(n->anchors, a, SSD_ANCHORS * 4 * sizeof(float));
    }
    return r;
}

/* Runs head h on a hw-pixel map; off is its first anchor. */
static void head(struct dems_face_ctx *ctx, int h, const float *in, int hw, int *off)
{
    const struct ssd_net *n = &ctx->m->ssd;
    int a = head_anchors[h];
    op_gemm(ctx->m->simd, hw, in, head_in[h], &n->box[h], ctx->boxes + (size_t)*off * 4, a * 4,
            ACT_NONE);
    op_gemm(ctx->m->simd, hw, in, head_in[h], &n->cls[h], ctx->classes + (size_t)*off * 3, a * 3,
            ACT_NONE);
    *off += hw * a;
}

static void forward(struct dems_face_ctx *ctx)
{
    const struct ssd_net *n = &ctx->m->ssd;
    int simd = ctx->m->simd;
    float **b = ctx->buf;
    int cur = 1, other = 0, off = 0, s = 256;
    op_conv(simd, b[0], (struct shape){512, 512, 3}, 3, 3, 2, 0, 0, &n->conv0, b[1], 256, 256,
            ACT_RELU6, ctx->col);
    for (int i = 1; i < 14; i++) {
        int stride = dw_stride2[i] ? 2 : 1, os;
        int pad = pad_same_before(s, 3, stride, &os);
        struct shape is = {s, s, chans[i - 1]};
        op_dwconv3(simd, b[cur], is, stride, pad, pad, &n->dw[i], b[2], os, os, ACT_RELU6);
        op_gemm(simd, os * os, b[2], chans[i - 1], &n->pw[i], b[other], chans[i], ACT_RELU6);
        s = os;
        int t = cur;
        cur = other;
        other = t;
        if (i == 11)
            head(ctx, 0, b[cur], s * s, &off);
    }
    head(ctx, 1, b[cur], s * s, &off);
    int cin = 1024;
    for (int j = 0; j < 8; j++) {
        int k = extra_k[j], stride = k == 3 ? 2 : 1, os;
        int pad = pad_same_before(s, k, stride, &os);
        struct shape is = {s, s, cin};
        if (k == 1)
            op_gemm(simd, s * s, b[cur], cin, &n->extra[j], b[other], extra_out[j], ACT_RELU6);
        else
            op_conv(simd, b[cur], is, 3, 3, 2, pad, pad, &n->extra[j], b[other], os, os, ACT_RELU6,
                    ctx->col);
        s = os;
        cin = extra_out[j];
        int t = cur;
        cur = other;
        other = t;
        if (k == 3)
            head(ctx, 2 + j / 2, b[cur], s * s, &off);
    }
}

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* Decoded (ymin, xmin, ymax, xmax) of anchor i in the padded square. */
static void decode(const struct dems_face_ctx *ctx, int i, float out[4])
{
    const float *a = ctx->m->ssd.anchors + (size_t)i * 4, *t = ctx->boxes + (size_t)i * 4;
    float ha = a[2] - a[0], wa = a[3] - a[1];
    float cya = a[0] + ha / 2, cxa = a[1] + wa / 2;
    float cy = t[0] / 10 * ha + cya, cx = t[1] / 10 * wa + cxa;
    float h2 = expf(t[2] / 5) * ha / 2, w2 = expf(t[3] / 5) * wa / 2;
    out[0] = cy - h2;
    out[1] = cx - w2;
    out[2] = cy + h2;
    out[3] = cx + w2;
}

/* IoU of two decoded boxes, in doubles as face-api's nonMaxSuppression. */
static double iou(const float *p, const float *q)
{
    double ay0 = fmin(p[0], p[2]), ax0 = fmin(p[1], p[3]), ay1 = fmax(p[0], p[2]),
           ax1 = fmax(p[1], p[3]);
    double by0 = fmin(q[0], q[2]), bx0 = fmin(q[1], q[3]), by1 = fmax(q[0], q[2]),
           bx1 = fmax(q[1], q[3]);
    double aa = (ay1 - ay0) * (ax1 - ax0), ab = (by1 - by0) * (bx1 - bx0);
    if (aa <= 0 || ab <= 0)
        return 0.0;
    double ih = fmax(fmin(ay1, by1) - fmax(ay0, by0), 0.0);
    double iw = fmax(fmin(ax1, bx1) - fmax(ax0, bx0), 0.0);
    return ih * iw / (aa + ab - ih * iw);
}

/* Orders candidate indices by score, descending; ties keep anchor order. */
static void sort_candidates(int *idx, const float *score, int n)
{
    for (int i = 1; i < n; i++) { /* insertion sort: n is small after the threshold */
        int v = idx[i], j = i - 1;
        while (j >= 0 && score[idx[j]] < score[v]) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
}

int ssd_detect(struct dems_face_ctx *ctx, const struct dems_face_image *img,
               const struct dems_face_opts *o, struct dems_face *faces, size_t cap, size_t *ret_n)
{
    static const float mean[3] = {127.5f, 127.5f, 127.5f};
    struct crop all = {0, 0, img->width, img->height};
    img_to_input(img, all, 512, false, mean, 1.0f / 127.5f, ctx->buf[0]);
    forward(ctx);

    float *score = ctx->cand; /* [SSD_ANCHORS] scores, then accepted boxes */
    float *sel = ctx->cand + SSD_ANCHORS;
    int nc = 0;
    for (int i = 0; i < SSD_ANCHORS; i++) {
        score[i] = sigmoid(ctx->classes[(size_t)i * 3 + 1]);
        if (score[i] > o->min_score)
            ctx->order[nc++] = i;
    }
    sort_candidates(ctx->order, score, nc);
    size_t ns = 0, out = 0;
    for (int c = 0; c < nc && ns < (size_t)o->max_results; c++) {
        float bx[4];
        decode(ctx, ctx->order[c], bx);
        bool keep = true;
        for (size_t j = 0; j < ns && keep; j++)
            keep = iou(bx, sel + j * 4) <= o->iou;
        if (!keep)
            continue;
        memcpy(sel + ns * 4, bx, sizeof(bx));
        ns++;
        if (out >= cap)
            continue;
        faces[out] = (struct dems_face){.score = score[ctx->order[c]]};
        geo_ssd_box(bx, img->width, img->height, &faces[out].box);
        out++;
    }
    *ret_n = out;
    return 0;
}
