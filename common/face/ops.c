/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The compute kernels of the face networks (NHWC float32, batch 1): a packed
 * GEMM for pointwise and im2col convolutions, depthwise 3x3, pooling and
 * element-wise steps. The hot kernels have AVX2+FMA (and, for the GEMM,
 * AVX-512F) versions chosen at run time (__builtin_cpu_supports, decided
 * once per model set) and a portable one; all accumulate in float32 like
 * tfjs. No kernel allocates.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

#include "face_int.h"

#define NR         16 /* GEMM panel width (two AVX2 vectors) */
#define MR         6  /* rows per micro-kernel */
#define MTILE      48 /* rows sharing one B panel in L1 */
#define COL_FLOATS ((size_t)256 * 1024)

float *al_floats(struct alloc_list *al, size_t n)
{
    if (al->n == al->cap) {
        size_t cap = al->cap ? 2 * al->cap : 64;
        void **p = realloc(al->p, cap * sizeof(*p));
        if (p == NULL)
            return NULL;
        al->p = p;
        al->cap = cap;
    }
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    float *f = aligned_alloc(64, bytes > 0 ? bytes : 64);
    if (f == NULL)
        return NULL;
    memset(f, 0, bytes > 0 ? bytes : 64);
    al->p[al->n++] = f;
    return f;
}

void al_free(struct alloc_list *al)
{
    for (size_t i = 0; i < al->n; i++)
        free(al->p[i]);
    free(al->p);
    *al = (struct alloc_list){0};
}

static int panels(int n)
{
    return (n + NR - 1) / NR;
}

int gemm_w_init(struct gemm_w *g, struct alloc_list *al, const float *w, int k, int n,
                const float *scale, const float *shift)
{
    size_t np = (size_t)panels(n);
    g->k = k;
    g->n = n;
    g->packed = al_floats(al, np * (size_t)k * NR);
    g->scale = al_floats(al, np * NR);
    g->shift = al_floats(al, np * NR);
    if (g->packed == NULL || g->scale == NULL || g->shift == NULL)
        return DEMS_ENOMEM;
    for (size_t p = 0; p < np; p++) {
        for (size_t kk = 0; kk < (size_t)k; kk++) {
            for (size_t j = 0; j < NR; j++) {
                size_t col = p * NR + j;
                g->packed[(p * (size_t)k + kk) * NR + j] =
                    col < (size_t)n ? w[kk * (size_t)n + col] : 0.0f;
            }
        }
    }
    for (size_t j = 0; j < (size_t)n; j++) {
        g->scale[j] = scale != NULL ? scale[j] : 1.0f;
        g->shift[j] = shift != NULL ? shift[j] : 0.0f;
    }
    return 0;
}

int dw_w_init(struct dw_w *d, struct alloc_list *al, const float *w, int c, const float *scale,
              const float *shift)
{
    size_t n = (size_t)c;
    d->c = c;
    d->w = al_floats(al, 9 * n);
    d->scale = al_floats(al, n);
    d->shift = al_floats(al, n);
    if (d->w == NULL || d->scale == NULL || d->shift == NULL)
        return DEMS_ENOMEM;
    memcpy(d->w, w, 9 * n * sizeof(float));
    for (size_t j = 0; j < n; j++) {
        d->scale[j] = scale != NULL ? scale[j] : 1.0f;
        d->shift[j] = shift != NULL ? shift[j] : 0.0f;
    }
    return 0;
}

static float act1(float v, enum act act)
{
    switch (act) {
    case ACT_RELU:
        return v > 0.0f ? v : 0.0f;
    case ACT_RELU6:
        return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    case ACT_LEAKY:
        return v > 0.0f ? v : 0.1f * v;
    case ACT_NONE:
        break;
    }
    return v;
}

/* ---- portable kernels ---- */

static void gemm_ref(int m, const float *a, int lda, const struct gemm_w *w, float *c, int ldc,
                     enum act act)
{
    int np = panels(w->n);
    size_t k = (size_t)w->k;
    for (int i = 0; i < m; i++) {
        const float *ar = a + (size_t)i * (size_t)lda;
        for (int p = 0; p < np; p++) {
            const float *bp = w->packed + (size_t)p * k * NR;
            float acc[NR] = {0};
            for (size_t kk = 0; kk < k; kk++) {
                for (int j = 0; j < NR; j++)
                    acc[j] += ar[kk] * bp[kk * NR + (size_t)j];
            }
            for (int j = 0; j < NR && p * NR + j < w->n; j++) {
                int col = p * NR + j;
                c[(size_t)i * (size_t)ldc + (size_t)col] =
                    act1(acc[j] * w->scale[col] + w->shift[col], act);
            }
        }
    }
}

static void dw_ref(const float *in, struct shape is, int stride, int pad_t, int pad_l,
                   const struct dw_w *w, float *out, int oh, int ow, enum act act)
{
    size_t C = (size_t)is.c;
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            float *o = out + ((size_t)oy * (size_t)ow + (size_t)ox) * C;
            for (size_t ch = 0; ch < C; ch++) {
                float acc = 0.0f;
                for (int ky = 0; ky < 3; ky++) {
                    int iy = oy * stride - pad_t + ky;
                    if (iy < 0 || iy >= is.h)
                        continue;
                    for (int kx = 0; kx < 3; kx++) {
                        int ix = ox * stride - pad_l + kx;
                        if (ix < 0 || ix >= is.w)
                            continue;
                        acc += in[((size_t)iy * (size_t)is.w + (size_t)ix) * C + ch] *
                               w->w[(size_t)(ky * 3 + kx) * C + ch];
                    }
                }
                o[ch] = act1(acc * w->scale[ch] + w->shift[ch], act);
            }
        }
    }
}

/* ---- AVX2 + FMA kernels ---- */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 vact(__m256 v, enum act act)
{
    switch (act) {
    case ACT_RELU:
        return _mm256_max_ps(v, _mm256_setzero_ps());
    case ACT_RELU6:
        return _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(6.0f));
    case ACT_LEAKY:
        return _mm256_max_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(0.1f)));
    case ACT_NONE:
        break;
    }
    return v;
}

/* Applies scale/shift/act to one 16-wide accumulator row and stores it. */
AVX2 static inline void store_row(float *dst, __m256 lo, __m256 hi, const struct gemm_w *w, int col,
                                  enum act act)
{
    __m256 s0 = _mm256_load_ps(w->scale + col), s1 = _mm256_load_ps(w->scale + col + 8);
    __m256 t0 = _mm256_load_ps(w->shift + col), t1 = _mm256_load_ps(w->shift + col + 8);
    lo = vact(_mm256_fmadd_ps(lo, s0, t0), act);
    hi = vact(_mm256_fmadd_ps(hi, s1, t1), act);
    if (col + NR <= w->n) {
        _mm256_storeu_ps(dst, lo);
        _mm256_storeu_ps(dst + 8, hi);
        return;
    }
    float tmp[NR];
    _mm256_storeu_ps(tmp, lo);
    _mm256_storeu_ps(tmp + 8, hi);
    for (int j = 0; col + j < w->n; j++)
        dst[j] = tmp[j];
}

AVX2 static void micro_6x16(int rows, const float *const ar[MR], const float *bp, size_t k,
                            const struct gemm_w *w, int col, float *c, size_t ldc, enum act act)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5];
    for (size_t kk = 0; kk < k; kk++) {
        __m256 b0 = _mm256_load_ps(bp + kk * NR), b1 = _mm256_load_ps(bp + kk * NR + 8);
        __m256 x = _mm256_broadcast_ss(a0 + kk);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + kk);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + kk);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + kk);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a4 + kk);
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a5 + kk);
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    __m256 lo[MR] = {c00, c10, c20, c30, c40, c50}, hi[MR] = {c01, c11, c21, c31, c41, c51};
    for (int r = 0; r < rows; r++)
        store_row(c + (size_t)r * ldc + (size_t)col, lo[r], hi[r], w, col, act);
}

AVX2 static void gemm_avx2(int m, const float *a, int lda, const struct gemm_w *w, float *c,
                           int ldc, enum act act)
{
    int np = panels(w->n);
    size_t k = (size_t)w->k;
    for (int i0 = 0; i0 < m; i0 += MTILE) {
        int i1 = i0 + MTILE < m ? i0 + MTILE : m;
        for (int p = 0; p < np; p++) {
            const float *bp = w->packed + (size_t)p * k * NR;
            for (int i = i0; i < i1; i += MR) {
                int rows = i1 - i < MR ? i1 - i : MR;
                const float *ar[MR];
                /* Short blocks repeat their last row; its results are dropped. */
                for (int r = 0; r < MR; r++)
                    ar[r] = a + (size_t)(i + (r < rows ? r : rows - 1)) * (size_t)lda;
                micro_6x16(rows, ar, bp, k, w, p * NR, c + (size_t)i * (size_t)ldc, (size_t)ldc,
                           act);
            }
        }
    }
}

AVX2 static void dw_avx2(const float *in, struct shape is, int stride, int pad_t, int pad_l,
                         const struct dw_w *w, float *out, int oh, int ow, enum act act)
{
    size_t C = (size_t)is.c, cv = C & ~(size_t)7;
    for (int oy = 0; oy < oh; oy++) {
        int ky0 = 0, ky1 = 3, iy0 = oy * stride - pad_t;
        if (iy0 < 0)
            ky0 = -iy0;
        if (iy0 + 3 > is.h)
            ky1 = is.h - iy0;
        for (int ox = 0; ox < ow; ox++) {
            int kx0 = 0, kx1 = 3, ix0 = ox * stride - pad_l;
            if (ix0 < 0)
                kx0 = -ix0;
            if (ix0 + 3 > is.w)
                kx1 = is.w - ix0;
            float *o = out + ((size_t)oy * (size_t)ow + (size_t)ox) * C;
            for (size_t ch = 0; ch < cv; ch += 8) {
                __m256 acc = _mm256_setzero_ps();
                for (int ky = ky0; ky < ky1; ky++) {
                    const float *row = in + ((size_t)(iy0 + ky) * (size_t)is.w) * C + ch;
                    for (int kx = kx0; kx < kx1; kx++) {
                        __m256 x = _mm256_loadu_ps(row + (size_t)(ix0 + kx) * C);
                        __m256 f = _mm256_loadu_ps(w->w + (size_t)(ky * 3 + kx) * C + ch);
                        acc = _mm256_fmadd_ps(x, f, acc);
                    }
                }
                acc = _mm256_fmadd_ps(acc, _mm256_loadu_ps(w->scale + ch),
                                      _mm256_loadu_ps(w->shift + ch));
                _mm256_storeu_ps(o + ch, vact(acc, act));
            }
            for (size_t ch = cv; ch < C; ch++) {
                float acc = 0.0f;
                for (int ky = ky0; ky < ky1; ky++) {
                    for (int kx = kx0; kx < kx1; kx++)
                        acc +=
                            in[((size_t)(iy0 + ky) * (size_t)is.w + (size_t)(ix0 + kx)) * C + ch] *
                            w->w[(size_t)(ky * 3 + kx) * C + ch];
                }
                o[ch] = act1(acc * w->scale[ch] + w->shift[ch], act);
            }
        }
    }
}

/* ---- AVX-512 GEMM: 12 rows x 2 panels (32 columns) per step ---- */

#define AVX512 __attribute__((target("avx512f")))
#define MR5    12

AVX512 static inline __m512 zact(__m512 v, enum act act)
{
    switch (act) {
    case ACT_RELU:
        return _mm512_max_ps(v, _mm512_setzero_ps());
    case ACT_RELU6:
        return _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(6.0f));
    case ACT_LEAKY:
        return _mm512_max_ps(v, _mm512_mul_ps(v, _mm512_set1_ps(0.1f)));
    case ACT_NONE:
        break;
    }
    return v;
}

/* Stores one 16-column accumulator (panel starting at col) of a row. */
AVX512 static inline void zstore(float *dst, __m512 v, const struct gemm_w *w, int col,
                                 enum act act)
{
    v = zact(_mm512_fmadd_ps(v, _mm512_load_ps(w->scale + col), _mm512_load_ps(w->shift + col)),
             act);
    int left = w->n - col;
    __mmask16 k = (__mmask16)(left >= NR ? 0xffffu : (1u << left) - 1u);
    _mm512_mask_storeu_ps(dst, k, v);
}

/* Spelled out so that the 24 accumulators stay in registers. */
#define Z_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define Z_DECL(r) __m512 a##r = _mm512_setzero_ps(), b##r = a##r;
#define Z_FMA2(r)                                                                                  \
    {                                                                                              \
        __m512 x = _mm512_set1_ps(ar[r][kk]);                                                      \
        a##r = _mm512_fmadd_ps(x, p0, a##r);                                                       \
        b##r = _mm512_fmadd_ps(x, p1, b##r);                                                       \
    }
#define Z_FMA1(r) a##r = _mm512_fmadd_ps(_mm512_set1_ps(ar[r][kk]), p0, a##r);
#define Z_SAVE(r)                                                                                  \
    lo[r] = a##r;                                                                                  \
    hi[r] = b##r;

/* rows x (16 * np) with np = 1 or 2 panels (bp1 NULL for one); the A row
 * pointers repeat the last row past `rows`. */
AVX512 static void micro_12x32(int rows, const float *const ar[MR5], const float *bp0,
                               const float *bp1, size_t k, const struct gemm_w *w, int col,
                               float *c, size_t ldc, enum act act)
{
    Z_ROWS(Z_DECL)
    if (bp1 != NULL) {
        for (size_t kk = 0; kk < k; kk++) {
            __m512 p0 = _mm512_load_ps(bp0 + kk * NR), p1 = _mm512_load_ps(bp1 + kk * NR);
            Z_ROWS(Z_FMA2)
        }
    } else {
        for (size_t kk = 0; kk < k; kk++) {
            __m512 p0 = _mm512_load_ps(bp0 + kk * NR);
            Z_ROWS(Z_FMA1)
        }
    }
    __m512 lo[MR5], hi[MR5];
    Z_ROWS(Z_SAVE)
    for (int r = 0; r < rows; r++) {
        float *dst = c + (size_t)r * ldc + (size_t)col;
        zstore(dst, lo[r], w, col, act);
        if (bp1 != NULL)
            zstore(dst + NR, hi[r], w, col + NR, act);
    }
}

AVX512 static void gemm_avx512(int m, const float *a, int lda, const struct gemm_w *w, float *c,
                               int ldc, enum act act)
{
    int np = panels(w->n);
    size_t k = (size_t)w->k;
    for (int i0 = 0; i0 < m; i0 += MTILE) {
        int i1 = i0 + MTILE < m ? i0 + MTILE : m;
        for (int p = 0; p < np; p += 2) {
            const float *bp0 = w->packed + (size_t)p * k * NR;
            const float *bp1 = p + 1 < np ? bp0 + k * NR : NULL;
            for (int i = i0; i < i1; i += MR5) {
                int rows = i1 - i < MR5 ? i1 - i : MR5;
                const float *ar[MR5];
                for (int r = 0; r < MR5; r++)
                    ar[r] = a + (size_t)(i + (r < rows ? r : rows - 1)) * (size_t)lda;
                micro_12x32(rows, ar, bp0, bp1, k, w, p * NR, c + (size_t)i * (size_t)ldc,
                            (size_t)ldc, act);
            }
        }
    }
}

/* ---- dispatch and the remaining ops ---- */

void op_gemm(int simd, int m, const float *a, int lda, const struct gemm_w *w, float *c, int ldc,
             enum act act)
{
    if (m <= 0)
        return;
    if (simd >= SIMD_AVX512)
        gemm_avx512(m, a, lda, w, c, ldc, act);
    else if (simd >= SIMD_AVX2)
        gemm_avx2(m, a, lda, w, c, ldc, act);
    else
        gemm_ref(m, a, lda, w, c, ldc, act);
}

void op_dwconv3(int simd, const float *in, struct shape is, int stride, int pad_t, int pad_l,
                const struct dw_w *w, float *out, int oh, int ow, enum act act)
{
    if (simd >= SIMD_AVX2)
        dw_avx2(in, is, stride, pad_t, pad_l, w, out, oh, ow, act);
    else
        dw_ref(in, is, stride, pad_t, pad_l, w, out, oh, ow, act);
}

int pad_same_before(int in, int k, int stride, int *ret_out)
{
    int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0)
        total = 0;
    *ret_out = out;
    return total / 2;
}

size_t op_conv_col_floats(int k)
{
    size_t need = (size_t)MR * (size_t)k;
    return need > COL_FLOATS ? need : COL_FLOATS;
}

/* Writes the im2col rows for output pixels [p0, p1) into col. */
static void im2col(const float *in, struct shape is, int kh, int kw, int stride, int pad_t,
                   int pad_l, int ow, int p0, int p1, float *col)
{
    size_t C = (size_t)is.c, K = (size_t)kh * (size_t)kw * C, rowlen = (size_t)kw * C;
    for (int p = p0; p < p1; p++) {
        int oy = p / ow, ox = p % ow, ix0 = ox * stride - pad_l;
        float *dst = col + (size_t)(p - p0) * K;
        bool inside_x = ix0 >= 0 && ix0 + kw <= is.w;
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * stride - pad_t + ky;
            float *d = dst + (size_t)ky * rowlen;
            if (iy < 0 || iy >= is.h) {
                memset(d, 0, rowlen * sizeof(float));
                continue;
            }
            const float *src = in + (size_t)iy * (size_t)is.w * C;
            if (inside_x) { /* the kw pixels are adjacent in memory */
                memcpy(d, src + (size_t)ix0 * C, rowlen * sizeof(float));
                continue;
            }
            for (int kx = 0; kx < kw; kx++) {
                int ix = ix0 + kx;
                if (ix < 0 || ix >= is.w)
                    memset(d + (size_t)kx * C, 0, C * sizeof(float));
                else
                    memcpy(d + (size_t)kx * C, src + (size_t)ix * C, C * sizeof(float));
            }
        }
    }
}

void op_conv(int simd, const float *in, struct shape is, int kh, int kw, int stride, int pad_t,
             int pad_l, const struct gemm_w *w, float *out, int oh, int ow, enum act act,
             float *col)
{
    int K = kh * kw * is.c;
    int m = oh * ow;
    int chunk = (int)(op_conv_col_floats(K) / (size_t)K);
    chunk -= chunk % MR;
    for (int p0 = 0; p0 < m; p0 += chunk) {
        int p1 = p0 + chunk < m ? p0 + chunk : m;
        im2col(in, is, kh, kw, stride, pad_t, pad_l, ow, p0, p1, col);
        op_gemm(simd, p1 - p0, col, K, w, out + (size_t)p0 * (size_t)w->n, w->n, act);
    }
}

/* o = max(o, x) over c floats. */
AVX2 static void vmax_avx2(float *o, const float *x, size_t c)
{
    size_t i = 0;
    for (; i + 8 <= c; i += 8)
        _mm256_storeu_ps(o + i, _mm256_max_ps(_mm256_loadu_ps(o + i), _mm256_loadu_ps(x + i)));
    for (; i < c; i++)
        o[i] = x[i] > o[i] ? x[i] : o[i];
}

static void vmax_ref(float *o, const float *x, size_t c)
{
    for (size_t i = 0; i < c; i++)
        o[i] = x[i] > o[i] ? x[i] : o[i];
}

void op_maxpool(int simd, const float *in, struct shape is, int k, int stride, int pad_t, int pad_l,
                float *out, int oh, int ow)
{
    size_t C = (size_t)is.c;
    for (int oy = 0; oy < oh; oy++) {
        /* Padding never wins a max: only the window's cells inside count. */
        int y0 = oy * stride - pad_t, y1 = y0 + k;
        y0 = y0 < 0 ? 0 : y0;
        y1 = y1 > is.h ? is.h : y1;
        for (int ox = 0; ox < ow; ox++) {
            int x0 = ox * stride - pad_l, x1 = x0 + k;
            x0 = x0 < 0 ? 0 : x0;
            x1 = x1 > is.w ? is.w : x1;
            float *o = out + ((size_t)oy * (size_t)ow + (size_t)ox) * C;
            memcpy(o, in + ((size_t)y0 * (size_t)is.w + (size_t)x0) * C, C * sizeof(float));
            for (int iy = y0; iy < y1; iy++) {
                for (int ix = x0; ix < x1; ix++) {
                    const float *x = in + ((size_t)iy * (size_t)is.w + (size_t)ix) * C;
                    if (simd >= SIMD_AVX2)
                        vmax_avx2(o, x, C);
                    else
                        vmax_ref(o, x, C);
                }
            }
        }
    }
}

void op_avgpool_valid(const float *in, struct shape is, int k, int stride, float *out, int oh,
                      int ow)
{
    size_t C = (size_t)is.c;
    float inv = 1.0f / (float)(k * k);
    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            float *o = out + ((size_t)oy * (size_t)ow + (size_t)ox) * C;
            memset(o, 0, C * sizeof(float));
            for (int ky = 0; ky < k; ky++) {
                for (int kx = 0; kx < k; kx++) {
                    const float *x = in + ((size_t)(oy * stride + ky) * (size_t)is.w +
                                           (size_t)(ox * stride + kx)) *
                                              C;
                    for (size_t ch = 0; ch < C; ch++)
                        o[ch] += x[ch];
                }
            }
            for (size_t ch = 0; ch < C; ch++)
                o[ch] *= inv;
        }
    }
}

void op_act(float *x, size_t n, enum act act)
{
    for (size_t i = 0; i < n; i++)
        x[i] = act1(x[i], act);
}

void op_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}
