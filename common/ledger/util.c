/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers for the ledger module: SHA-256 through OpenSSL (which uses
 * the CPU's SHA extensions; whole-log verification is hash-bound), strict
 * base64 through libsodium, and a UTF-8 validator for note text.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "dems/err.h"

#include "ledger_int.h"

/*
 * SHA-256 fetched once: EVP_sha256() looks the implementation up under a
 * lock on every use, which showed in whole-log verification profiles. The
 * fetched object lives for the process.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md != NULL ? sha256_md : EVP_sha256();
}

void ledger_sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[static 32])
{
    uint8_t small[1024];

    /* Most inputs are small: one-shot on a stack copy avoids a context allocation. */
    if (alen <= sizeof(small) && blen <= sizeof(small) - alen) {
        if (alen > 0)
            memcpy(small, a, alen);
        if (blen > 0)
            memcpy(small + alen, b, blen);
        EVP_Digest(small, alen + blen, out, NULL, sha256(), NULL);
        return;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, a, alen) != 1 || EVP_DigestUpdate(ctx, b, blen) != 1 ||
        EVP_DigestFinal_ex(ctx, out, NULL) != 1) {
        /* Only allocation can fail here; fall back to libsodium's portable code. */
        crypto_hash_sha256_state st;
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, a, alen);
        crypto_hash_sha256_update(&st, b, blen);
        crypto_hash_sha256_final(&st, out);
    }
    EVP_MD_CTX_free(ctx);
}

void ledger_b64_encode(const uint8_t *in, size_t n, char *out)
{
    sodium_bin2base64(out, ledger_b64_len(n) + 1, in, n, sodium_base64_VARIANT_ORIGINAL);
}

/* 0..63 for the standard alphabet, 0xff otherwise. */
static const uint8_t b64_value[256] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3e, 0xff, 0xff, 0xff, 0x3f,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

/*
 * Table-driven rather than libsodium's constant-time decoder: nothing
 * decoded here is secret, and whole-log verification decodes every entry.
 */
int ledger_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *ret_n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = 0, full;

    if (len % 4 != 0)
        return DEMS_EINVAL;
    full = len == 0 ? 0 : p[len - 1] == '=' ? len - 4 : len;
    if (full / 4 * 3 > cap)
        return DEMS_EINVAL;
    for (size_t i = 0; i < full; i += 4) {
        uint32_t a = b64_value[p[i]], b = b64_value[p[i + 1]], c = b64_value[p[i + 2]],
                 d = b64_value[p[i + 3]];
        if (((a | b | c | d) & 0x80) != 0)
            return DEMS_EINVAL;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        out[n] = (uint8_t)(v >> 16);
        out[n + 1] = (uint8_t)(v >> 8);
        out[n + 2] = (uint8_t)v;
        n += 3;
    }
    if (full < len) {
        /* The padded quantum: "xx==" or "xxx=", with the unused bits zero (canonical). */
        size_t i = full;
        uint32_t a = b64_value[p[i]], b = b64_value[p[i + 1]];
        bool one = p[i + 2] == '=';
        uint32_t c = one ? 0 : b64_value[p[i + 2]];
        size_t add = one ? 1 : 2;
        if (((a | b | c) & 0x80) != 0 || add > cap - n)
            return DEMS_EINVAL;
        if (one ? (b & 0x0f) != 0 : (c & 0x03) != 0)
            return DEMS_EINVAL;
        uint32_t v = a << 18 | b << 12 | c << 6;
        out[n++] = (uint8_t)(v >> 16);
        if (!one)
            out[n++] = (uint8_t)(v >> 8);
    }
    *ret_n = n;
    return 0;
}

/* 0..15 for hex digits (lower-case only), 0xff otherwise. */
static uint8_t hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return (uint8_t)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (uint8_t)(c - 'a' + 10);
    return 0xff;
}

int ledger_hex_decode_lower(const char *s, uint8_t *out, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    uint8_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        uint8_t hi = hex_value(p[2 * i]), lo = hex_value(p[2 * i + 1]);
        bad |= hi | lo;
        out[i] = (uint8_t)(hi << 4 | (lo & 0x0f));
    }
    return (bad & 0xf0) != 0 ? DEMS_EINVAL : 0;
}
