/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming SHA-256 for evidence bytes (see dems/crypto.h). OpenSSL's
 * implementation is used rather than libsodium's because it picks the CPU's
 * SHA instructions at run time; hashing every uploaded byte is on the ingest
 * path, so the sixfold difference is the difference in throughput.
 *
 * It is OpenSSL's SHA256_CTX rather than an EVP context because an upload
 * staged in an object store is continued by whichever node takes its next
 * PATCH, so the running hash must be saved and restored (dems_sha256_save),
 * which EVP cannot do. SHA256_Update is the same code EVP's provider runs;
 * the functions are deprecated in OpenSSL 3 only in favour of EVP.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "dems/be.h"
#include "dems/crypto.h"
#include "dems/err.h"

int dems_sha256_init(struct dems_sha256 *h)
{
    SHA256_CTX *ctx = malloc(sizeof(*ctx));
    if (ctx == NULL || SHA256_Init(ctx) != 1) {
        free(ctx);
        h->ctx = NULL;
        return DEMS_ENOMEM;
    }
    h->ctx = ctx;
    return 0;
}

void dems_sha256_update(struct dems_sha256 *h, const void *data, size_t n)
{
    SHA256_Update(h->ctx, data, n);
}

int dems_sha256_copy(struct dems_sha256 *dst, const struct dems_sha256 *src)
{
    memcpy(dst->ctx, src->ctx, sizeof(SHA256_CTX));
    return 0;
}

int dems_sha256_final(const struct dems_sha256 *h, uint8_t out[static 32])
{
    SHA256_CTX tmp;
    memcpy(&tmp, h->ctx, sizeof(tmp));
    int ok = SHA256_Final(out, &tmp);
    memset(&tmp, 0, sizeof(tmp));
    return ok == 1 ? 0 : DEMS_EINTERNAL;
}

void dems_sha256_done(struct dems_sha256 *h)
{
    free(h->ctx);
    h->ctx = NULL;
}

/*
 * The saved form: the eight chaining words, the bit count (high, low), the
 * bytes in the unfinished block and that block, all big-endian words: a
 * layout of its own, so it does not depend on how OpenSSL lays out its
 * struct or on the machine's byte order.
 */
void dems_sha256_save(const struct dems_sha256 *h, uint8_t out[static DEMS_SHA256_STATE_LEN])
{
    const SHA256_CTX *c = h->ctx;
    for (int i = 0; i < 8; i++)
        dems_put_be32(out + 4 * i, c->h[i]);
    dems_put_be32(out + 32, c->Nh);
    dems_put_be32(out + 36, c->Nl);
    dems_put_be32(out + 40, c->num);
    const uint8_t *block = (const uint8_t *)c->data;
    memset(out + 44, 0, 64);
    memcpy(out + 44, block, c->num < 64 ? c->num : 64);
}

int dems_sha256_restore(struct dems_sha256 *h, const uint8_t in[static DEMS_SHA256_STATE_LEN])
{
    SHA256_CTX *c = h->ctx;
    uint32_t num = dems_get_be32(in + 40), nl = dems_get_be32(in + 36);
    /* The unfinished block holds exactly the bytes past the last whole block. */
    if (num >= 64 || (nl / 8) % 64 != num)
        return DEMS_EINVAL;
    if (SHA256_Init(c) != 1)
        return DEMS_EINTERNAL;
    for (int i = 0; i < 8; i++)
        c->h[i] = dems_get_be32(in + 4 * i);
    c->Nh = dems_get_be32(in + 32);
    c->Nl = nl;
    c->num = num;
    memcpy(c->data, in + 44, num);
    return 0;
}
