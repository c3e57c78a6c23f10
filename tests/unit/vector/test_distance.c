/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the distance kernels (common/vector/distance.c, included to
 * reach the static per-ISA versions): every version the CPU can run agrees
 * with a double-precision reference at every dimension from 1 to 300.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../../common/vector/distance.c"

static double ref_l2(const float *a, const float *b, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

static double ref_sq8(const float *q, const uint8_t *c, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++)
        s += ((double)q[i] - c[i]) * ((double)q[i] - c[i]);
    return s;
}

static void check(const struct vec_kernels *k)
{
    enum { MAXD = 300 };
    /* One spare element each side catches reads past the end under ASan. */
    float *a = malloc(MAXD * sizeof(float)), *b = malloc(MAXD * sizeof(float));
    float *q = malloc(MAXD * sizeof(float));
    uint8_t *c = malloc(MAXD);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(q);
    assert_non_null(c);
    uint32_t x = 12345;
    for (size_t i = 0; i < MAXD; i++) {
        x = x * 1103515245u + 12345u;
        a[i] = (float)((x >> 8) % 2001) / 1000.0f - 1.0f;
        x = x * 1103515245u + 12345u;
        b[i] = (float)((x >> 8) % 2001) / 1000.0f - 1.0f;
        q[i] = (float)((x >> 4) % 25600) / 100.0f;
        c[i] = (uint8_t)(x >> 20);
    }
    for (size_t dim = 1; dim <= MAXD; dim++) {
        /* Inputs are sized exactly dim so any overread trips ASan. */
        float *ea = malloc(dim * sizeof(float)), *eb = malloc(dim * sizeof(float));
        float *eq = malloc(dim * sizeof(float));
        uint8_t *ec = malloc(dim);
        assert_non_null(ea);
        assert_non_null(eb);
        assert_non_null(eq);
        assert_non_null(ec);
        memcpy(ea, a, dim * sizeof(float));
        memcpy(eb, b, dim * sizeof(float));
        memcpy(eq, q, dim * sizeof(float));
        memcpy(ec, c, dim);
        double r1 = ref_l2(ea, eb, dim), r2 = ref_sq8(eq, ec, dim);
        assert_true(fabs(k->l2(ea, eb, dim) - r1) <= 1e-4 * (1 + r1));
        assert_true(fabs(k->sq8(eq, ec, dim) - r2) <= 1e-4 * (1 + r2));
        free(ea);
        free(eb);
        free(eq);
        free(ec);
    }
    free(a);
    free(b);
    free(q);
    free(c);
}

static void test_kernels(void **state)
{
    (void)state;
    check(&kern_scalar);
#if HAVE_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        check(&kern_avx2);
    if (__builtin_cpu_supports("avx512f"))
        check(&kern_avx512);
#endif
    const struct vec_kernels *k = vec_kernels_get();
    assert_non_null(k);
    assert_true(k == vec_kernels_get());
    assert_non_null(dems_vector_kernel_name());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
