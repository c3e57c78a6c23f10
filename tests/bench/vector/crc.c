/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `dems-vector-bench crc`: throughput of the index file checksum, CRC-32C, in
 * its three forms: the CRC32 instruction (SSE4.2, x86-64), the slicing-by-8
 * table that runs everywhere else, and the bit-at-a-time definition the table
 * replaced. Each is timed in CPU seconds (fair on a shared machine), best of
 * a few runs, over the same random buffer; all three must agree.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The module's internal CRC entry points (a benchmark of the module's own). */
#include "../../../common/vector/vector_int.h"

int bench_crc(size_t mib, unsigned reps);

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t crc_bitwise(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* Best-of-reps MB/s (10^6 bytes per second) of fn over buf. */
static double rate(uint32_t (*fn)(uint32_t, const void *, size_t), const uint8_t *buf, size_t n,
                   unsigned reps, uint32_t *ret_crc)
{
    double best = 0;
    for (unsigned r = 0; r < reps; r++) {
        double t0 = cpu_seconds();
        *ret_crc = fn(0, buf, n);
        double t = cpu_seconds() - t0;
        if (t > 0 && (best == 0 || t < best))
            best = t;
    }
    return best > 0 ? (double)n / best / 1e6 : 0;
}

int bench_crc(size_t mib, unsigned reps)
{
    size_t n = mib << 20;
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        return -1;
    uint64_t x = 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(x >> 56);
    }
    uint32_t c_tab, c_hw = 0, c_bit;
    double tab = rate(vec_crc32c_sw, buf, n, reps, &c_tab);
    bool hw_ok = vec_crc32c_hw_ok();
    double hw = hw_ok ? rate(vec_crc32c_hw, buf, n, reps, &c_hw) : 0;
    /* The bitwise form is slow: a sixteenth of the buffer, once. */
    double bit = rate(crc_bitwise, buf, n / 16, 1, &c_bit);
    bool agree = c_tab == (hw_ok ? c_hw : c_tab) && c_bit == vec_crc32c_sw(0, buf, n / 16);
    printf("crc32c %zu MiB, best of %u (CPU time)\n", mib, reps);
    printf("  bitwise   %9.0f MB/s\n", bit);
    printf("  table     %9.0f MB/s  (%.1fx bitwise)\n", tab, tab / bit);
    if (hw_ok)
        printf("  sse4.2    %9.0f MB/s  (%.1fx table)\n", hw, hw / tab);
    else
        printf("  sse4.2    not available on this CPU\n");
    printf("  results %s\n", agree ? "agree" : "DISAGREE");
    free(buf);
    return agree ? 0 : -1;
}
