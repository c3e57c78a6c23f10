/*
 * Small helpers for the ledger module: SHA-256 through OpenSSL (which uses
 * the CPU's SHA extensions; whole-log verification is hash-bound), strict
 * base64 through libsodium, and a UTF-8 validator for note text.
 */
#include <openssl/evp.h>
#include <sodium.h>
#include <string.h>

#include "dems/err.h"

#include "ledger_int.h"

void ledger_sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[static 32])
{
    uint8_t small[1024];

    /* Most inputs are small: one-shot on a stack copy avoids a context allocation. */
    if (alen <= sizeof(small) && blen <= sizeof(small) - alen) {
        if (alen > 0)
            memcpy(small, a, alen);
        if (blen > 0)
            memcpy(small + alen, b, blen);
        EVP_Digest(small, alen + blen, out, NULL, EVP_sha256(), NULL);
        return;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
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

int ledger_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *ret_n)
{
    size_t n = 0;
    const char *end = NULL;

    if (len % 4 != 0)
        return DEMS_EINVAL;
    if (sodium_base642bin(out, cap, s, len, NULL, &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0)
        return DEMS_EINVAL;
    if (end != s + len)
        return DEMS_EINVAL;
    *ret_n = n;
    return 0;
}

bool ledger_utf8_valid(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;

    while (i < len) {
        uint8_t c = p[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (n > len - i - 1)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}
