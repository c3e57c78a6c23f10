/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the face engine shared by the files of common/face/: the
 * weight table read from TF.js manifests, the packed layer weights, the
 * compute kernels and the networks' forward passes. Not for use outside.
 */
#ifndef DEMS_FACE_INT_H
#define DEMS_FACE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "dems/face.h"

/* ---- weights.c: one model's tensors, dequantised to float32 ---- */

struct wt_entry {
    char *name;
    size_t count;
    float *data;
};

struct wt_file {
    struct wt_entry *e;
    size_t n;
    float *arena;
};

/* Loads dir/<model>-weights_manifest.json and its .bin, verifying both
 * against the pinned SHA-256. Returns 0 or a DEMS_E* with err filled. */
int wt_load(struct wt_file *wf, const char *dir, const char *model, char *err, size_t errlen);
void wt_done(struct wt_file *wf);
/* The tensor called name if it holds exactly count floats, else NULL. */
const float *wt_get(const struct wt_file *wf, const char *name, size_t count);
/* Copies the pinned hex SHA-256 of file into out (65 bytes); false if none. */
bool wt_pinned_sha256(const char *file, const char **ret_hex);

/* ---- ops.c: kernels (NHWC, float32, batch 1) ---- */

enum act { ACT_NONE, ACT_RELU, ACT_RELU6, ACT_LEAKY };

/* GEMM right-hand side: a [K x N] weight matrix packed in panels of 16
 * columns (zero-padded), plus per-column scale and shift applied to the
 * product (y = acc * scale + shift; scale NULL means 1). */
struct gemm_w {
    int k, n;
    float *packed; /* [ceil(n/16)][k][16] */
    float *scale;  /* n or NULL */
    float *shift;  /* n */
};

/* Depthwise 3x3 weights [9][c] with an optional per-channel affine after. */
struct dw_w {
    int c;
    float *w;
    float *scale; /* c or NULL */
    float *shift; /* c or NULL */
};

/* Everything a forward pass allocates lives in a model-owned list. */
struct alloc_list {
    void **p;
    size_t n, cap;
};

float *al_floats(struct alloc_list *al, size_t n);
void al_free(struct alloc_list *al);

/* Packs w [k x n] (TF layout) into g; scale/shift are copied (shift NULL = 0). */
int gemm_w_init(struct gemm_w *g, struct alloc_list *al, const float *w, int k, int n,
                const float *scale, const float *shift);
int dw_w_init(struct dw_w *d, struct alloc_list *al, const float *w, int c, const float *scale,
              const float *shift);

/* Kernel family, chosen once at model load from the CPU's features. */
enum simd_level {
    SIMD_NONE = 0,   /* portable C */
    SIMD_AVX2 = 1,   /* AVX2 + FMA */
    SIMD_AVX512 = 2, /* AVX-512F GEMM, AVX2 elsewhere */
};

/* C[m x n] = act(A[m x k] * W * scale + shift); lda/ldc in floats. */
void op_gemm(int simd, int m, const float *a, int lda, const struct gemm_w *w, float *c, int ldc,
             enum act act);

struct shape {
    int h, w, c;
};

/* TF "same" padding before the first row/column for (in, k, stride). */
int pad_same_before(int in, int k, int stride, int *ret_out);

/* Depthwise 3x3 with explicit padding (pad_t/pad_l before; the output size
 * is given), then affine and act. */
void op_dwconv3(int simd, const float *in, struct shape is, int stride, int pad_t, int pad_l,
                const struct dw_w *w, float *out, int oh, int ow, enum act act);

/* Full conv kh x kw via im2col in chunks + GEMM. col must hold
 * op_conv_col_floats(k) floats. */
void op_conv(int simd, const float *in, struct shape is, int kh, int kw, int stride, int pad_t,
             int pad_l, const struct gemm_w *w, float *out, int oh, int ow, enum act act,
             float *col);
size_t op_conv_col_floats(int k);

void op_maxpool(int simd, const float *in, struct shape is, int k, int stride, int pad_t, int pad_l,
                float *out, int oh, int ow);
void op_avgpool_valid(const float *in, struct shape is, int k, int stride, float *out, int oh,
                      int ow);
void op_act(float *x, size_t n, enum act act);
void op_add(float *y, const float *x, size_t n);

/* ---- image.c: crop, pad to square, bilinear resize, normalise ---- */

struct crop {
    int x, y, w, h; /* region of the source image (already clipped) */
};

#define MAX_INPUT_SIDE 608

/* Writes the s x s x 3 network input (s <= MAX_INPUT_SIDE): the crop zero-padded to a square
 * (centred, or at bottom/right), resized as TF's legacy resizeBilinear, then
 * (v - mean[c]) * mul. */
void img_to_input(const struct dems_face_image *img, struct crop cr, int s, bool center,
                  const float mean[3], float mul, float *out);

/* Whether img has pixels, sane dimensions and a stride that fits a row. */
bool img_valid(const struct dems_face_image *img);

/* ---- geometry.c: boxes, crops and landmarks as face-api computes them ---- */

/* computeReshapedDimensions: one side (side_px of a w x h image) scaled so the
 * longer side is s, rounded. */
double geo_reshaped(int side_px, int w, int h, int s);

/* The detection box of an SSD output b = (ymin, xmin, ymax, xmax) in the
 * padded 512 square, in image pixels. */
void geo_ssd_box(const float b[4], int img_w, int img_h, struct dems_face_box *ret);

/* The detection box of a tiny-detector candidate b = (left, top, right,
 * bottom) relative to the image, in image pixels. */
void geo_tiny_box(const double b[4], int img_w, int img_h, struct dems_face_box *ret);

/* Box.clipAtImageBorders + floor of the box (x, y, w, h) in pixels; false
 * when nothing of it is inside the image. */
bool geo_clip(int img_w, int img_h, double x, double y, double w, double h, struct crop *ret);

/* The crop the landmark net sees for a detection box. */
bool geo_detection_crop(int img_w, int img_h, const struct dems_face_box *box, struct crop *ret);

/* The 68 landmarks in image pixels from the net's output o (relative to the
 * centred, padded crop cr) and the detection box. */
void geo_landmarks(const float o[136], struct crop cr, const struct dems_face_box *box,
                   double ret[DEMS_FACE_LANDMARKS][2]);

/* The recogniser's crop (alignDlib) from the landmarks and the landmark crop;
 * false when it is empty or not finite. */
bool geo_align_crop(int img_w, int img_h, const double lm[DEMS_FACE_LANDMARKS][2],
                    struct crop lmcrop, struct crop *ret);

/* ---- networks ---- */

#define SSD_ANCHORS 5118

struct ssd_net {
    struct gemm_w conv0; /* 3x3 s2 3->32 */
    struct dw_w dw[14];  /* 1..13 */
    struct gemm_w pw[14];
    struct gemm_w extra[8];
    struct gemm_w box[6], cls[6];
    float *anchors; /* [5118][4] */
};

struct tiny_net {
    struct gemm_w conv0;
    struct dw_w dw[6]; /* 1..5 */
    struct gemm_w pw[6];
    struct gemm_w conv8;
};

struct lm_net {
    struct gemm_w conv0;  /* dense0/conv0, plain 3x3 */
    struct dw_w dw[4][4]; /* [block][conv], dw[0][0] unused */
    struct gemm_w pw[4][4];
    struct gemm_w fc;
};

struct rec_net {
    struct gemm_w conv[29]; /* in manifest order, scale folded in */
    struct gemm_w fc;
};

struct dems_face_models {
    int simd;
    struct alloc_list al;
    struct ssd_net ssd;
    struct tiny_net tiny;
    struct lm_net lm;
    struct rec_net rec;
};

struct dems_face_ctx {
    const struct dems_face_models *m;
    float *buf[3];  /* activations, BUF_FLOATS each */
    float *col;     /* im2col chunk */
    float *boxes;   /* SSD_ANCHORS x 4 */
    float *classes; /* SSD_ANCHORS x 3 */
    float *tmp;     /* 8192 floats: tiny detector candidate scores */
    int *order;     /* SSD_ANCHORS: candidate order / liveness flags */
    float *cand;    /* 6 x SSD_ANCHORS: scores + kept boxes (SSD), boxes (tiny) */
};

/* Largest activation any network needs: SSD conv1 256x256x64, tiny conv0
 * at the largest input 606x606x16, input 608x608x3. */
#define BUF_FLOATS ((size_t)606 * 606 * 16)

int ssd_init(struct ssd_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
             size_t errlen);
int tiny_init(struct tiny_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
              size_t errlen);
int lm_init(struct lm_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
            size_t errlen);
int rec_init(struct rec_net *n, struct alloc_list *al, const struct wt_file *wf, char *err,
             size_t errlen);

int ssd_detect(struct dems_face_ctx *ctx, const struct dems_face_image *img,
               const struct dems_face_opts *o, struct dems_face *faces, size_t cap, size_t *ret_n);
int tiny_detect(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                const struct dems_face_opts *o, struct dems_face *faces, size_t cap, size_t *ret_n);
/* Runs the landmark net on a 112x112x3 input; writes 136 raw outputs. */
void lm_forward(struct dems_face_ctx *ctx, const float *input, float out[136]);
/* Runs the recogniser on a 150x150x3 input; writes the descriptor. */
void rec_forward(struct dems_face_ctx *ctx, const float *input, float out[128]);

/* Reports a missing tensor. */
int wt_missing(const char *model, const char *name, char *err, size_t errlen);

#endif
