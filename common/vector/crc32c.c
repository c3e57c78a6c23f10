/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, as in iSCSI, RFC 3720
 * appendix B.4), the checksum of the index file. On x86-64 with SSE4.2 the
 * CRC32 instruction computes it; everywhere else a slicing-by-8 table does
 * (Kounavis & Berry, "A Systematic Approach to Building High Performance
 * Software-based CRC Generators", 2005): eight 256-entry tables, built once,
 * let each step fold eight input bytes with eight look-ups instead of the
 * sixty-four shift-and-xor steps of the bit-at-a-time definition.
 *
 * Why not a library: of the Debian packages, only Intel's ISA-L (libisal)
 * offers CRC-32C; its portable fallback (what runs off x86 and arm64) is a
 * byte-at-a-time table, slower than this one, its length is an int, and a
 * new run-time dependency for a 60-line function did not seem worth it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vector_int.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define POLY 0x82f63b78u

/* table[k][b]: the CRC register after byte b followed by k zero bytes. */
static uint32_t table[8][256];
static bool have_hw;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++) {
        for (int k = 1; k < 8; k++)
            table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xffu];
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* The register form (no pre/post inversion), eight bytes per step. */
static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t n)
{
    for (; n >= 8; n -= 8, p += 8) {
        /* Bytes are combined explicitly, so the result is the same on every
         * byte order and alignment; compilers turn this into one load. */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = table[7][lo & 0xffu] ^ table[6][(lo >> 8) & 0xffu] ^ table[5][(lo >> 16) & 0xffu] ^
            table[4][lo >> 24] ^ table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
    }
    for (; n > 0; n--, p++)
        c = (c >> 8) ^ table[0][(c ^ *p) & 0xffu];
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
    }
    uint32_t c32 = (uint32_t)c64;
    for (; n > 0; n--)
        c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t vec_crc32c_sw(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&init_once, init);
    return ~crc_table(~crc, data, n);
}

bool vec_crc32c_hw_ok(void)
{
    pthread_once(&init_once, init);
    return have_hw;
}

uint32_t vec_crc32c_hw(uint32_t crc, const void *data, size_t n)
{
#if defined(__x86_64__)
    return ~crc_hw(~crc, data, n);
#else
    return vec_crc32c_sw(crc, data, n);
#endif
}

uint32_t vec_crc32c(uint32_t crc, const void *data, size_t n)
{
    if (vec_crc32c_hw_ok())
        return vec_crc32c_hw(crc, data, n);
    return vec_crc32c_sw(crc, data, n);
}
