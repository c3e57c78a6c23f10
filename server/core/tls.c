/*
 * TLS for demsd: an OpenSSL server context with TLS 1.2 as the floor (1.3
 * preferred by OpenSSL's negotiation), forward-secret AEAD suites only, and
 * either the configured certificate or a self-signed P-256 pair generated
 * under data_dir/tls on first start of the embedded default.
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/log.h"

/* Mozilla's "intermediate" TLS 1.2 list: ECDHE key exchange, AEAD only. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static int add_ext(X509 *crt, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, crt, crt, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(crt, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *make_self_signed(EVP_PKEY *key)
{
    X509 *crt = X509_new();
    if (crt == NULL)
        return NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    X509_NAME *name = X509_get_subject_name(crt);
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f; /* positive */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)) == NULL)
        goto fail;
    if (!X509_set_version(crt, 2) || X509_gmtime_adj(X509_getm_notBefore(crt), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(crt), 825L * 24 * 3600) == NULL ||
        !X509_set_pubkey(crt, key))
        goto fail;
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"dems", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)"dems self-signed", -1, -1, 0) ||
        !X509_set_issuer_name(crt, name))
        goto fail;
    if (add_ext(crt, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") < 0 ||
        add_ext(crt, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(crt, NID_ext_key_usage, "serverAuth") < 0)
        goto fail;
    if (X509_sign(crt, key, EVP_sha256()) == 0)
        goto fail;
    BN_free(bn);
    return crt;
fail:
    BN_free(bn);
    X509_free(crt);
    return NULL;
}

/* Writes a PEM file with the given mode via a temporary name and rename. */
static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *crt)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fchmod(fileno(f), mode);
    int ok = key != NULL ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_X509(f, crt);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    fclose(f);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int generate_pair(const char *dir, const char *cert, const char *keyp, char *err,
                         size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
        snprintf(err, errlen, "tls: cannot create %s", dir);
        return DEMS_EIO;
    }
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *crt = key != NULL ? make_self_signed(key) : NULL;
    int r = 0;
    if (crt == NULL) {
        snprintf(err, errlen, "tls: generating a self-signed certificate failed");
        r = DEMS_EINTERNAL;
    } else if (write_pem(keyp, 0600, key, NULL) < 0 || write_pem(cert, 0644, NULL, crt) < 0) {
        snprintf(err, errlen, "tls: cannot write %s", dir);
        r = DEMS_EIO;
    }
    X509_free(crt);
    EVP_PKEY_free(key);
    if (r == 0)
        dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s}", "cert", cert),
                 "generated a self-signed TLS certificate");
    return r;
}

int dems_tls_init(struct dems_server *srv, char *err, size_t errlen)
{
    const struct dems_config *cfg = srv->cfg;
    char dir[4096], cert[4200], key[4200];
    const char *certp = cfg->tls_cert, *keyp = cfg->tls_key;
    if (certp[0] == '\0') {
        snprintf(dir, sizeof(dir), "%s/tls", cfg->data_dir);
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(key, sizeof(key), "%s/key.pem", dir);
        certp = cert;
        keyp = key;
        if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
            int r = generate_pair(dir, cert, key, err, errlen);
            if (r < 0)
                return r;
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "tls: cannot create a TLS context");
        return DEMS_EINTERNAL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, certp) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, keyp, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "tls: cannot use certificate %s and key %s: %s", certp, keyp,
                 ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) : "unknown");
        SSL_CTX_free(ctx);
        return DEMS_EINVAL;
    }
    srv->ssl_ctx = ctx;
    return 0;
}
