/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Distance kernels: squared L2 between float vectors and between a query in
 * code space and 8-bit codes, each in a scalar, an AVX2/FMA and an AVX-512
 * version. The build carries no global -m flags: the SIMD versions are
 * compiled for their target with function attributes and the best one the
 * CPU supports is picked once, at first use.
 */
#include <stddef.h>
#include <stdint.h>

#include "vector_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

static float l2_scalar(const float *a, const float *b, size_t dim)
{
    /* Four partial sums let the compiler keep several additions in flight. */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= dim; i += 4) {
        float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
        float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < dim; i++) {
        float d = a[i] - b[i];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

static float sq8_scalar(const float *q, const uint8_t *c, size_t dim)
{
    float s0 = 0, s1 = 0;
    size_t i = 0;
    for (; i + 2 <= dim; i += 2) {
        float d0 = q[i] - (float)c[i], d1 = q[i + 1] - (float)c[i + 1];
        s0 += d0 * d0;
        s1 += d1 * d1;
    }
    for (; i < dim; i++) {
        float d = q[i] - (float)c[i];
        s0 += d * d;
    }
    return s0 + s1;
}

#if HAVE_X86
__attribute__((target("avx2,fma"))) static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) static float l2_avx2(const float *a, const float *b, size_t dim)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    for (; i + 8 <= dim; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < dim; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

__attribute__((target("avx2,fma"))) static float sq8_avx2(const float *q, const uint8_t *c,
                                                          size_t dim)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(c + i));
        __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(raw));
        __m256 c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(raw, 8)));
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), c0);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), c1);
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < dim; i++) {
        float d = q[i] - (float)c[i];
        s += d * d;
    }
    return s;
}

__attribute__((target("avx512f"))) static float l2_avx512(const float *a, const float *b,
                                                          size_t dim)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    if (i < dim) {
        /* Masked loads read only the remaining lanes, so no scalar tail. */
        size_t left = dim - i;
        __mmask16 m0 = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1u);
        __m512 d0 =
            _mm512_sub_ps(_mm512_maskz_loadu_ps(m0, a + i), _mm512_maskz_loadu_ps(m0, b + i));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        if (left > 16) {
            __mmask16 m1 = (__mmask16)((1u << (left - 16)) - 1u);
            __m512 d1 = _mm512_sub_ps(_mm512_maskz_loadu_ps(m1, a + i + 16),
                                      _mm512_maskz_loadu_ps(m1, b + i + 16));
            s1 = _mm512_fmadd_ps(d1, d1, s1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

__attribute__((target("avx512f"))) static float sq8_avx512(const float *q, const uint8_t *c,
                                                           size_t dim)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        __m128i r0 = _mm_loadu_si128((const __m128i *)(const void *)(c + i));
        __m128i r1 = _mm_loadu_si128((const __m128i *)(const void *)(c + i + 16));
        __m512 d0 =
            _mm512_sub_ps(_mm512_loadu_ps(q + i), _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(r0)));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16),
                                  _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(r1)));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < dim; i++) {
        float d = q[i] - (float)c[i];
        s += d * d;
    }
    return s;
}
#endif

static const struct vec_kernels kern_scalar = {"scalar", l2_scalar, sq8_scalar};
#if HAVE_X86
static const struct vec_kernels kern_avx2 = {"avx2", l2_avx2, sq8_avx2};
static const struct vec_kernels kern_avx512 = {"avx512", l2_avx512, sq8_avx512};
#endif

static const struct vec_kernels *pick(void)
{
#if HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return &kern_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &kern_avx2;
#endif
    return &kern_scalar;
}

const struct vec_kernels *vec_kernels_get(void)
{
    /* Racing first calls compute the same answer; the store is atomic. */
    static const struct vec_kernels *chosen;
    const struct vec_kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k == NULL) {
        k = pick();
        __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    }
    return k;
}

const char *dems_vector_kernel_name(void)
{
    return vec_kernels_get()->name;
}
