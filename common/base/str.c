/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Text views, bounded decimal parsing, hex and base32. These are the only
 * places that turn untrusted text into numbers or bytes.
 */
#include "dems/str.h"

#include <string.h>

#include "dems/err.h"

struct dems_str dems_str_from(const char *s)
{
    return (struct dems_str){s, s != NULL ? strlen(s) : 0};
}

bool dems_str_eq(struct dems_str a, struct dems_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool dems_str_eq_ci(struct dems_str a, const char *lit)
{
    size_t n = strlen(lit);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (lower(a.ptr[i]) != lower(lit[i]))
            return false;
    }
    return true;
}

struct dems_str dems_str_trim(struct dems_str s)
{
    while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int dems_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *ret)
{
    if (len == 0)
        return DEMS_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return DEMS_EINVAL;
        uint64_t d = (uint64_t)(s[i] - '0');
        /* Check before multiplying so v never wraps (ngx_atoi's cutoff). */
        if (v > (max - d) / 10)
            return DEMS_ETOOBIG;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

void dems_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int dems_hex_decode(const char *in, size_t len, uint8_t *out, size_t n)
{
    if (len / 2 != n || len % 2 != 0)
        return DEMS_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]);
        int lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return DEMS_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

size_t dems_base32_len(size_t n)
{
    return (n * 8 + 4) / 5;
}

void dems_base32_encode(const uint8_t *in, size_t n, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0)
        out[o++] = alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

size_t dems_utf8_next(const uint8_t *s, size_t avail, uint32_t *ret_cp)
{
    uint8_t b = s[0];
    size_t n;
    uint32_t cp, min;
    if (b < 0x80) {
        *ret_cp = b;
        return 1;
    } else if (b >= 0xc2 && b <= 0xdf) {
        n = 2, cp = b & 0x1fu, min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 3, cp = b & 0x0fu, min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4, cp = b & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *ret_cp = cp;
    return n;
}

bool dems_utf8_valid(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = dems_utf8_next(p + i, len - i, &cp);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}
