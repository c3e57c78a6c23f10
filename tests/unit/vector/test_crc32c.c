/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for CRC-32C (common/vector/crc32c.c, included to reach the
 * static parts): the iSCSI vectors of RFC 3720 appendix B.4 and "123456789",
 * and the slicing-by-8 table, the SSE4.2 instruction (where the CPU has it)
 * and the bit-at-a-time definition agreeing on random data of every length
 * up to 1100 bytes at every alignment, on larger buffers, and when a buffer
 * is fed in two pieces.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../../common/vector/crc32c.c"

/* The definition, one bit at a time (the fallback before the table). */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static uint32_t bitwise_fn(uint32_t crc, const void *p, size_t n)
{
    return crc_bitwise(crc, p, n);
}

struct impl {
    const char *name;
    crc_fn fn;
};

/* Every implementation this CPU can run. */
static size_t impls(struct impl out[4])
{
    size_t k = 0;
    out[k++] = (struct impl){"bitwise", bitwise_fn};
    out[k++] = (struct impl){"table", vec_crc32c_sw};
    out[k++] = (struct impl){"dispatch", vec_crc32c};
    if (vec_crc32c_hw_ok())
        out[k++] = (struct impl){"sse4.2", vec_crc32c_hw};
    return k;
}

/* Runs every implementation over an exactly sized heap copy (ASan sees
 * over-reads) and checks the result. */
static void expect(const uint8_t *data, size_t n, uint32_t want)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, data, n);
    struct impl im[4];
    size_t k = impls(im);
    for (size_t i = 0; i < k; i++) {
        uint32_t got = im[i].fn(0, copy, n);
        if (got != want)
            fail_msg("%s: %zu bytes gave %08x, want %08x", im[i].name, n, got, want);
    }
    free(copy);
}

static void test_known_vectors(void **state)
{
    (void)state;
    uint8_t b[48];

    expect((const uint8_t *)"123456789", 9, 0xe3069283u);
    expect(b, 0, 0);

    /* RFC 3720 B.4: the CRC bytes there are as sent, least significant first. */
    memset(b, 0, 32);
    expect(b, 32, 0x8a9136aau);
    memset(b, 0xff, 32);
    expect(b, 32, 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    expect(b, 32, 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    expect(b, 32, 0x113fdb5cu);
    static const uint8_t read_pdu[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    expect(read_pdu, sizeof(read_pdu), 0xd9963a56u);
}

static void fill_random(uint8_t *p, size_t n, uint64_t *x)
{
    for (size_t i = 0; i < n; i++) {
        *x = *x * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(*x >> 56);
    }
}

/* Every length 0..1100 at every offset 0..7 of an 8-aligned buffer. */
static void test_random_lengths_alignments(void **state)
{
    (void)state;
    enum { MAXN = 1100 };
    uint8_t *buf = malloc(MAXN + 8);
    assert_non_null(buf);
    uint64_t x = 42;
    fill_random(buf, MAXN + 8, &x);
    struct impl im[4];
    size_t k = impls(im);
    for (size_t off = 0; off < 8; off++) {
        for (size_t n = 0; n <= MAXN; n++) {
            uint32_t want = crc_bitwise(0, buf + off, n);
            for (size_t i = 1; i < k; i++) {
                uint32_t got = im[i].fn(0, buf + off, n);
                if (got != want)
                    fail_msg("%s: offset %zu length %zu: %08x, want %08x", im[i].name, off, n, got,
                             want);
            }
        }
    }
    free(buf);
}

/* Larger buffers, odd sizes around page and megabyte boundaries. */
static void test_random_large(void **state)
{
    (void)state;
    static const size_t sizes[] = {4095, 4096, 4097, 65536 + 3, 1u << 20, (1u << 20) + 7};
    uint64_t x = 7;
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint8_t *b = malloc(sizes[s]);
        assert_non_null(b);
        fill_random(b, sizes[s], &x);
        expect(b, sizes[s], crc_bitwise(0, b, sizes[s]));
        free(b);
    }
}

/* crc(A || B) == f(f(0, A), B) for every split point, as write_upper uses. */
static void test_incremental(void **state)
{
    (void)state;
    enum { N = 300 };
    uint8_t b[N];
    uint64_t x = 99;
    fill_random(b, N, &x);
    uint32_t whole = crc_bitwise(0, b, N);
    struct impl im[4];
    size_t k = impls(im);
    for (size_t i = 0; i < k; i++) {
        for (size_t cut = 0; cut <= N; cut++)
            assert_int_equal(im[i].fn(im[i].fn(0, b, cut), b + cut, N - cut), whole);
    }
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Best of three CPU-time runs of fn over n bytes. */
static double best_time(crc_fn fn, const uint8_t *b, size_t n)
{
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = cpu_seconds();
        volatile uint32_t c = fn(0, b, n);
        (void)c;
        double t = cpu_seconds() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/*
 * The fallback must be the table, not the bit-at-a-time loop it replaced
 * (20-27x faster in an optimised build). CPU time, best of three, and a 4x
 * bar keep this stable on a busy machine. Unoptimised or sanitised builds
 * (2x under ASan at -O0) only report the ratio.
 */
static void test_table_is_faster(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    uint8_t *b = malloc(N);
    assert_non_null(b);
    uint64_t x = 5;
    fill_random(b, N, &x);
    double bit = best_time(bitwise_fn, b, N), tab = best_time(vec_crc32c_sw, b, N);
    free(b);
    print_message("1 MiB: bitwise %.2f ms, table %.2f ms (%.1fx)\n", bit * 1e3, tab * 1e3,
                  bit / tab);
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__)
    assert_true(bit > 4 * tab);
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),   cmocka_unit_test(test_random_lengths_alignments),
        cmocka_unit_test(test_random_large),    cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_table_is_faster),
    };
    if (!vec_crc32c_hw_ok())
        print_message("CRC32 instruction not available: testing the table only\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
