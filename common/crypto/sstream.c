/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libsodium's secretstream (XChaCha20-Poly1305) chunks computed with
 * OpenSSL's ChaCha20-Poly1305 (see dems/sstream.h). The construction, as in
 * libsodium's crypto_secretstream/xchacha20poly1305/secretstream_xchacha20poly1305.c:
 * with k and nonce (a 4-byte little-endian counter, then 8 bytes) from the
 * state, the Poly1305 key is ChaCha20(k, nonce) block 0; the block
 * {tag, 0 x 63} is encrypted with block counter 1 and the message from block
 * counter 2; the MAC covers the (empty) associated data, the whole encrypted
 * block, the ciphertext, padding and the lengths, as RFC 8439 does for the
 * plaintext block || message. The chunk is encrypted block[0] || ciphertext
 * || MAC. Then the state's last 8 nonce bytes are XORed with the MAC's
 * first 8, the counter is incremented and, when it wraps or the tag asks,
 * the state is rekeyed.
 *
 * One difference: libsodium pads the ciphertext with (mlen mod 16) zero
 * bytes where RFC 8439 pads to a multiple of 16, so the two agree only when
 * mlen mod 16 is 0 or 8. Other chunks (in the blob store only a stream's
 * last, shorter chunk) go through libsodium itself.
 */
#include "dems/sstream.h"

#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>

#include "dems/err.h"

#define ABYTES   crypto_secretstream_xchacha20poly1305_ABYTES
#define MACBYTES 16
#define BLOCK    64
#define MAX_MSG  (1u << 30)

_Static_assert(ABYTES == 1 + MACBYTES, "secretstream chunk overhead");
_Static_assert(sizeof(((crypto_secretstream_xchacha20poly1305_state *)0)->nonce) == 12,
               "secretstream nonce");

static EVP_CIPHER_CTX *ctx_new(const char *name)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_CTX *ctx = c != NULL ? EVP_CIPHER_CTX_new() : NULL;
    if (ctx != NULL && EVP_CipherInit_ex(ctx, c, NULL, NULL, NULL, 1) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        ctx = NULL;
    }
    EVP_CIPHER_free(c); /* the context keeps its own reference */
    return ctx;
}

int dems_sstream_init(struct dems_sstream *x)
{
    x->aead = ctx_new("ChaCha20-Poly1305");
    x->ks = ctx_new("ChaCha20");
    if (x->aead == NULL || x->ks == NULL) {
        dems_sstream_done(x);
        return DEMS_ENOMEM;
    }
    return 0;
}

void dems_sstream_done(struct dems_sstream *x)
{
    EVP_CIPHER_CTX_free(x->aead);
    EVP_CIPHER_CTX_free(x->ks);
    x->aead = x->ks = NULL;
}

/* Whether libsodium's padding of a message of mlen bytes is RFC 8439's. */
static bool rfc_padded(size_t mlen)
{
    return mlen % 16 == 0 || mlen % 16 == 8;
}

/* After a chunk with this MAC and tag: the next nonce, and a new key when due. */
static void advance(crypto_secretstream_xchacha20poly1305_state *st, const uint8_t mac[MACBYTES],
                    uint8_t tag)
{
    for (size_t i = 0; i < 8; i++)
        st->nonce[4 + i] ^= mac[i];
    sodium_increment(st->nonce, 4);
    if ((tag & crypto_secretstream_xchacha20poly1305_TAG_REKEY) != 0 ||
        sodium_is_zero(st->nonce, 4))
        crypto_secretstream_xchacha20poly1305_rekey(st);
}

int dems_sstream_push(struct dems_sstream *x, crypto_secretstream_xchacha20poly1305_state *st,
                      uint8_t *out, const uint8_t *m, size_t mlen, uint8_t tag)
{
    if (!rfc_padded(mlen)) {
        unsigned long long clen = 0;
        return crypto_secretstream_xchacha20poly1305_push(st, out, &clen, m, mlen, NULL, 0, tag) ==
                       0
                   ? 0
                   : DEMS_ECRYPTO;
    }
    EVP_CIPHER_CTX *c = x->aead;
    uint8_t block[BLOCK] = {tag}, mac[MACBYTES];
    int n = 0, ok = mlen <= MAX_MSG;
    ok = ok && EVP_CipherInit_ex(c, NULL, NULL, st->k, st->nonce, 1) == 1;
    ok = ok && EVP_CipherUpdate(c, block, &n, block, BLOCK) == 1 && n == BLOCK;
    ok = ok &&
         (mlen == 0 || (EVP_CipherUpdate(c, out + 1, &n, m, (int)mlen) == 1 && (size_t)n == mlen));
    ok = ok && EVP_CipherFinal_ex(c, mac, &n) == 1 && n == 0;
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, MACBYTES, mac) == 1;
    if (!ok)
        return DEMS_ECRYPTO;
    out[0] = block[0];
    memcpy(out + 1 + mlen, mac, MACBYTES);
    advance(st, mac, tag);
    return 0;
}

int dems_sstream_pull(struct dems_sstream *x, crypto_secretstream_xchacha20poly1305_state *st,
                      uint8_t *m, size_t *ret_mlen, uint8_t *ret_tag, const uint8_t *in,
                      size_t inlen)
{
    static const uint8_t zero[BLOCK];
    uint8_t iv[16] = {1}, block[BLOCK], plain[BLOCK], mac[MACBYTES];
    size_t mlen = inlen - ABYTES;
    int n = 0;
    if (inlen < ABYTES || mlen > MAX_MSG)
        return DEMS_ECRYPTO;
    if (!rfc_padded(mlen)) {
        unsigned long long plen = 0;
        if (crypto_secretstream_xchacha20poly1305_pull(st, m, &plen, ret_tag, in, inlen, NULL, 0) !=
            0) {
            sodium_memzero(m, mlen);
            return DEMS_ECRYPTO;
        }
        *ret_mlen = (size_t)plen;
        return 0;
    }
    /* The encrypted block, of which the chunk carries only the first byte: key stream 1. */
    memcpy(iv + 4, st->nonce, 12);
    int ok = EVP_CipherInit_ex(x->ks, NULL, NULL, st->k, iv, 1) == 1 &&
             EVP_CipherUpdate(x->ks, block, &n, zero, BLOCK) == 1 && n == BLOCK;
    block[0] = in[0];
    memcpy(mac, in + 1 + mlen, MACBYTES);
    EVP_CIPHER_CTX *c = x->aead;
    ok = ok && EVP_CipherInit_ex(c, NULL, NULL, st->k, st->nonce, 0) == 1;
    ok = ok && EVP_CipherUpdate(c, plain, &n, block, BLOCK) == 1 && n == BLOCK;
    ok = ok &&
         (mlen == 0 || (EVP_CipherUpdate(c, m, &n, in + 1, (int)mlen) == 1 && (size_t)n == mlen));
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, MACBYTES, mac) == 1;
    ok = ok && EVP_CipherFinal_ex(c, block, &n) == 1;
    if (!ok) {
        sodium_memzero(m, mlen);
        sodium_memzero(plain, sizeof plain);
        return DEMS_ECRYPTO;
    }
    *ret_tag = plain[0];
    *ret_mlen = mlen;
    advance(st, mac, plain[0]);
    return 0;
}
