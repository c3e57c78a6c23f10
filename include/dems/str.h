/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Text views and bounded parsing. Wire text is a struct dems_str (pointer and
 * length, not NUL-terminated). Numbers from the network are parsed only by
 * dems_parse_u64, which always takes a maximum.
 */
#ifndef DEMS_STR_H
#define DEMS_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dems_str {
    const char *ptr;
    size_t len;
};

#define DEMS_STR(lit) ((struct dems_str){(lit), sizeof(lit) - 1})

/* A view of a NUL-terminated string (borrowed). */
struct dems_str dems_str_from(const char *s);

/* True when a and b hold the same bytes. */
bool dems_str_eq(struct dems_str a, struct dems_str b);

/* True when a equals the NUL-terminated lit, ignoring ASCII case. */
bool dems_str_eq_ci(struct dems_str a, const char *lit);

/* The view with leading and trailing spaces and tabs removed. */
struct dems_str dems_str_trim(struct dems_str s);

/*
 * Parses decimal digits s[0..len) into *ret. No sign, no spaces, no empty
 * string. Returns 0, DEMS_EINVAL for a non-digit, or DEMS_ETOOBIG when the
 * value exceeds max. *ret is written only on success.
 */
int dems_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *ret);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void dems_hex_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decodes exactly 2n hex digits into out[n]. Returns 0 or DEMS_EINVAL.
 */
int dems_hex_decode(const char *in, size_t len, uint8_t *out, size_t n);

/*
 * RFC 4648 base32 (upper-case, no padding) of n bytes into out, which must
 * hold dems_base32_len(n) + 1 bytes.
 */
/*
 * The length (1 to 4) of the UTF-8 sequence at s[0..avail) with its code
 * point in *ret_cp, or 0 when the bytes there are not one (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF, nothing cut short,
 * no stray continuation byte). avail must be at least 1.
 */
size_t dems_utf8_next(const uint8_t *s, size_t avail, uint32_t *ret_cp);

/* True when s[0..len) is valid UTF-8 (as dems_utf8_next reads it). */
bool dems_utf8_valid(const char *s, size_t len);

size_t dems_base32_len(size_t n);
void dems_base32_encode(const uint8_t *in, size_t n, char *out);

/* Checked size arithmetic: false on overflow, *ret untouched then. */
static inline bool dems_size_add(size_t a, size_t b, size_t *ret)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r))
        return false;
    *ret = r;
    return true;
}

static inline bool dems_size_mul(size_t a, size_t b, size_t *ret)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return false;
    *ret = r;
    return true;
}

#endif
