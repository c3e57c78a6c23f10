/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libsodium's crypto_secretstream_xchacha20poly1305 push and pull, byte for
 * byte, computed with OpenSSL's ChaCha20-Poly1305 (which picks AVX-512 or
 * AVX2 code at run time: 3.7 GB/s on the development VM against 0.8-1.0
 * GB/s for libsodium 1.0.18's secretstream). A secretstream chunk is the
 * RFC 8439 AEAD, with no associated data, of a 64-byte block holding the tag
 * followed by the message, of which only the block's first byte is kept;
 * the state is libsodium's own (set up by its init_push / init_pull, which
 * derive the subkey, and rekeyed by its rekey), so either side may be
 * libsodium. Every blob in the store is in this format (demsd/blobs.h).
 *
 * struct dems_sstream holds the OpenSSL contexts (one per thread; init
 * allocates, done frees); the stream state is the caller's.
 */
#ifndef DEMS_SSTREAM_H
#define DEMS_SSTREAM_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

struct dems_sstream {
    void *aead; /* EVP_CIPHER_CTX, ChaCha20-Poly1305 */
    void *ks;   /* EVP_CIPHER_CTX, ChaCha20 (the tag block's key stream, pull) */
};

int dems_sstream_init(struct dems_sstream *x);
void dems_sstream_done(struct dems_sstream *x);

/*
 * crypto_secretstream_xchacha20poly1305_push without associated data: out
 * gets mlen + crypto_secretstream_xchacha20poly1305_ABYTES bytes (it must
 * not overlap m). mlen is at most 1 GiB. Returns 0 or DEMS_ECRYPTO (OpenSSL
 * failed; st is then unchanged).
 */
int dems_sstream_push(struct dems_sstream *x, crypto_secretstream_xchacha20poly1305_state *st,
                      uint8_t *out, const uint8_t *m, size_t mlen, uint8_t tag);

/*
 * crypto_secretstream_xchacha20poly1305_pull without associated data: m
 * gets inlen - ABYTES bytes (it must not overlap in), *ret_tag the tag.
 * Returns 0, or DEMS_ECRYPTO when the chunk is not authentic (m is then
 * zeroed and st unchanged) or shorter than ABYTES.
 */
int dems_sstream_pull(struct dems_sstream *x, crypto_secretstream_xchacha20poly1305_state *st,
                      uint8_t *m, size_t *ret_mlen, uint8_t *ret_tag, const uint8_t *in,
                      size_t inlen);

#endif
