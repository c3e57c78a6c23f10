/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small cryptographic building blocks over libsodium and OpenSSL: random
 * bearer tokens and their stored hash, Argon2id password hashes, and
 * RFC 6238 TOTP. Pure functions; password hashing is deliberately slow and
 * must not run on an event-loop thread.
 */
#ifndef DEMS_CRYPTO_H
#define DEMS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Streaming SHA-256 over OpenSSL (which uses the CPU's SHA extensions:
 * measured 1.48 GB/s here against libsodium's 0.25 GB/s). Caller-owned
 * struct; init allocates, done frees. Copy makes dst (initialised) continue
 * from src's state. Final does not disturb the state.
 */
struct dems_sha256 {
    void *ctx; /* SHA256_CTX */
};

int dems_sha256_init(struct dems_sha256 *h);
void dems_sha256_update(struct dems_sha256 *h, const void *data, size_t n);
int dems_sha256_copy(struct dems_sha256 *dst, const struct dems_sha256 *src);
int dems_sha256_final(const struct dems_sha256 *h, uint8_t out[static 32]);
void dems_sha256_done(struct dems_sha256 *h);

/*
 * The running state in a portable form (so another process can continue
 * the hash): save writes it; restore makes an initialised h continue from
 * it (DEMS_EINVAL for a malformed state).
 */
#define DEMS_SHA256_STATE_LEN 108
void dems_sha256_save(const struct dems_sha256 *h, uint8_t out[static DEMS_SHA256_STATE_LEN]);
int dems_sha256_restore(struct dems_sha256 *h, const uint8_t in[static DEMS_SHA256_STATE_LEN]);

/* Initialises libsodium; call once before any other function here. */
int dems_crypto_init(void);

#define DEMS_TOKEN_BYTES    32 /* 256 random bits */
#define DEMS_TOKEN_TEXT_MAX 64 /* prefix + base64url, NUL included */

/*
 * Makes a fresh token: text (the bearer value handed to the client, e.g.
 * "dems_s_<43 base64url chars>") and hash (SHA-256 of the text, the only
 * form stored). prefix is 1..8 lower-case letters naming the token kind.
 */
int dems_token_new(const char *prefix, char text[static DEMS_TOKEN_TEXT_MAX],
                   uint8_t hash[static 32]);

/*
 * Writes n (1..63) random decimal digits and a NUL to out: a passcode read
 * out over the telephone (uniform; no modulo bias).
 */
int dems_passcode_new(char *out, size_t n);

/* Zeroes n bytes of a secret in a way the compiler keeps. */
void dems_memzero(void *p, size_t n);

/* SHA-256 of a presented token's text, for lookup. */
void dems_token_hash(const char *text, size_t len, uint8_t hash[static 32]);

/* Argon2id encoded-hash string length including NUL (crypto_pwhash_STRBYTES). */
#define DEMS_PASSWORD_HASH_MAX 128

/*
 * Hashes a password with Argon2id (libsodium's interactive limits, or the
 * minimum limits when fast is true — for tests only). Slow: run off-loop.
 */
int dems_password_hash(const char *password, size_t len, bool fast,
                       char out[static DEMS_PASSWORD_HASH_MAX]);

/*
 * True when password matches the encoded hash. Slow: run off-loop. Hashing
 * and checking take 64 MiB each while they run; at most two run at once in
 * a process (the others wait), which bounds that memory to 128 MiB.
 */
bool dems_password_verify(const char *encoded, const char *password, size_t len);

#define DEMS_TOTP_SECRET_BYTES 20 /* 160 bits, as RFC 4226 recommends */

/* The 6-digit RFC 6238 code (HMAC-SHA1, 30 s step) for a time step. */
uint32_t dems_totp_code(const uint8_t *secret, size_t secret_len, uint64_t step);

/*
 * Checks a 6-digit code against steps now-1, now, now+1 (clock skew). On a
 * match returns 0 and the matching step in *ret_step (callers reject a
 * step not newer than the last one used, so a code works once). Returns
 * DEMS_ETOTP when no step matches or code is not 6 digits.
 */
int dems_totp_verify(const uint8_t *secret, size_t secret_len, const char *code, uint64_t now,
                     uint64_t *ret_step);

#endif
