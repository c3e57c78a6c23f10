/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming SHA-256 for evidence bytes (see dems/crypto.h). OpenSSL's EVP
 * implementation is used rather than libsodium's because it picks the CPU's
 * SHA instructions at run time; hashing every uploaded byte is on the ingest
 * path, so the sixfold difference is the difference in throughput.
 */
#include <openssl/evp.h>

#include "dems/crypto.h"
#include "dems/err.h"

int dems_sha256_init(struct dems_sha256 *h)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        h->ctx = NULL;
        return DEMS_ENOMEM;
    }
    h->ctx = ctx;
    return 0;
}

void dems_sha256_update(struct dems_sha256 *h, const void *data, size_t n)
{
    EVP_DigestUpdate(h->ctx, data, n);
}

int dems_sha256_copy(struct dems_sha256 *dst, const struct dems_sha256 *src)
{
    return EVP_MD_CTX_copy_ex(dst->ctx, src->ctx) == 1 ? 0 : DEMS_ENOMEM;
}

int dems_sha256_final(const struct dems_sha256 *h, uint8_t out[static 32])
{
    struct dems_sha256 tmp;
    if (dems_sha256_init(&tmp) < 0 || dems_sha256_copy(&tmp, h) < 0) {
        dems_sha256_done(&tmp);
        return DEMS_ENOMEM;
    }
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(tmp.ctx, out, &len);
    dems_sha256_done(&tmp);
    return ok == 1 && len == 32 ? 0 : DEMS_EINTERNAL;
}

void dems_sha256_done(struct dems_sha256 *h)
{
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}
