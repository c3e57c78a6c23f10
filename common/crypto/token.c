/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bearer tokens and password hashes. A token is 256 bits from libsodium's
 * CSPRNG shown to the client as "dems_<kind>_<base64url>"; only SHA-256 of
 * that text is stored, so a stolen database holds no usable tokens.
 */
#include <sodium.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"

int dems_crypto_init(void)
{
    return sodium_init() < 0 ? DEMS_EINTERNAL : 0;
}

int dems_token_new(const char *prefix, char text[static DEMS_TOKEN_TEXT_MAX],
                   uint8_t hash[static 32])
{
    size_t plen = strlen(prefix);
    if (plen == 0 || plen > 8)
        return DEMS_EINVAL;
    uint8_t raw[DEMS_TOKEN_BYTES];
    randombytes_buf(raw, sizeof(raw));
    memcpy(text, "dems_", 5);
    memcpy(text + 5, prefix, plen);
    text[5 + plen] = '_';
    size_t off = 6 + plen;
    sodium_bin2base64(text + off, DEMS_TOKEN_TEXT_MAX - off, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    dems_token_hash(text, strlen(text), hash);
    return 0;
}

void dems_memzero(void *p, size_t n)
{
    sodium_memzero(p, n);
}

int dems_passcode_new(char *out, size_t n)
{
    if (n == 0 || n > 63)
        return DEMS_EINVAL;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)('0' + randombytes_uniform(10));
    out[n] = '\0';
    return 0;
}

void dems_token_hash(const char *text, size_t len, uint8_t hash[static 32])
{
    crypto_hash_sha256(hash, (const unsigned char *)text, len);
}

int dems_password_hash(const char *password, size_t len, bool fast,
                       char out[static DEMS_PASSWORD_HASH_MAX])
{
    unsigned long long ops = fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = fast ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    /* crypto_pwhash_str picks Argon2id (libsodium >= 1.0.15). */
    if (crypto_pwhash_str_alg(out, password, len, ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return DEMS_ENOMEM;
    return 0;
}

bool dems_password_verify(const char *encoded, const char *password, size_t len)
{
    return crypto_pwhash_str_verify(encoded, password, len) == 0;
}
