/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bearer tokens and password hashes. A token is 256 bits from libsodium's
 * CSPRNG shown to the client as "dems_<kind>_<base64url>"; only SHA-256 of
 * that text is stored, so a stolen database holds no usable tokens.
 */
#include <pthread.h>
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

/*
 * Argon2id at the interactive limit holds 64 MiB while it hashes or checks
 * one password. At most PW_AT_ONCE run at once in a process and the others
 * wait their turn, so a burst of logins costs time rather than 64 MiB per
 * thread that may run one (with an object store demsd's work pool has 8).
 */
#define PW_AT_ONCE 2

static pthread_mutex_t pw_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pw_cv = PTHREAD_COND_INITIALIZER;
static unsigned pw_running;

static void pw_enter(void)
{
    pthread_mutex_lock(&pw_mu);
    while (pw_running >= PW_AT_ONCE)
        pthread_cond_wait(&pw_cv, &pw_mu);
    pw_running++;
    pthread_mutex_unlock(&pw_mu);
}

static void pw_leave(void)
{
    pthread_mutex_lock(&pw_mu);
    pw_running--;
    pthread_cond_signal(&pw_cv);
    pthread_mutex_unlock(&pw_mu);
}

int dems_password_hash(const char *password, size_t len, bool fast,
                       char out[static DEMS_PASSWORD_HASH_MAX])
{
    unsigned long long ops = fast ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = fast ? crypto_pwhash_MEMLIMIT_MIN : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    /* crypto_pwhash_str picks Argon2id (libsodium >= 1.0.15). */
    pw_enter();
    int r = crypto_pwhash_str_alg(out, password, len, ops, mem, crypto_pwhash_ALG_ARGON2ID13);
    pw_leave();
    return r != 0 ? DEMS_ENOMEM : 0;
}

bool dems_password_verify(const char *encoded, const char *password, size_t len)
{
    pw_enter();
    bool ok = crypto_pwhash_str_verify(encoded, password, len) == 0;
    pw_leave();
    return ok;
}
