/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS for demsd: an OpenSSL server context with TLS 1.2 as the floor (1.3
 * preferred by OpenSSL's negotiation), forward-secret AEAD suites only, and
 * either the configured certificate or a self-signed P-256 pair generated
 * under data_dir/tls on first start of the embedded default.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dems/err.h"
#include "demsd/auth.h"
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

static X509 *make_self_signed_as(EVP_PKEY *key, const char *cn, bool ca, long days)
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
        X509_gmtime_adj(X509_getm_notAfter(crt), days * 24 * 3600) == NULL ||
        !X509_set_pubkey(crt, key))
        goto fail;
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"dems", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_issuer_name(crt, name))
        goto fail;
    if (ca ? (add_ext(crt, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
              add_ext(crt, NID_key_usage, "critical,keyCertSign,cRLSign") < 0)
           : (add_ext(crt, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") < 0 ||
              add_ext(crt, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
              add_ext(crt, NID_ext_key_usage, "serverAuth") < 0))
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
    X509 *crt = key != NULL ? make_self_signed_as(key, "dems self-signed", false, 825) : NULL;
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

/*
 * The device CA: signs docks' CSRs at enrolment (POST /v1/admin/devices).
 * Generated on first start under data_dir/tls (key mode 0600).
 */
static int load_device_ca(struct dems_server *srv, char *err, size_t errlen)
{
    char dir[4096], cert[4200], key[4200];
    snprintf(dir, sizeof(dir), "%s/tls", srv->cfg->data_dir);
    snprintf(cert, sizeof(cert), "%s/device-ca.pem", dir);
    snprintf(key, sizeof(key), "%s/device-ca.key", dir);
    if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
        if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
            snprintf(err, errlen, "tls: cannot create %s", dir);
            return DEMS_EIO;
        }
        EVP_PKEY *k = EVP_EC_gen("P-256");
        X509 *c = k != NULL ? make_self_signed_as(k, "dems device CA", true, 3650) : NULL;
        int r =
            c != NULL && write_pem(key, 0600, k, NULL) == 0 && write_pem(cert, 0644, NULL, c) == 0
                ? 0
                : DEMS_EIO;
        X509_free(c);
        EVP_PKEY_free(k);
        if (r < 0) {
            snprintf(err, errlen, "tls: cannot create the device CA in %s", dir);
            return r;
        }
    }
    FILE *f = fopen(cert, "r");
    srv->device_ca = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    f = fopen(key, "r");
    srv->device_ca_key = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    if (srv->device_ca == NULL || srv->device_ca_key == NULL) {
        snprintf(err, errlen, "tls: cannot read the device CA in %s", dir);
        return DEMS_EINVAL;
    }
    return 0;
}

/* ---- device (client) certificates ---- */

static const char expired[] = "certificate_expired";
static const char not_yet_valid[] = "certificate_not_yet_valid";
static const char not_for_client[] = "certificate_not_for_client_auth";

/*
 * What TLS client authentication needs of a certificate, pinned or issued:
 * inside its validity window, and made for it — an extendedKeyUsage, when
 * there is one, that includes clientAuth (X509_check_purpose, which also
 * honours the old nsCertType), and a keyUsage, when there is one, that
 * includes digitalSignature (the client signs CertificateVerify; the
 * purpose check alone would also take keyAgreement). Unparseable times fail
 * closed.
 */
static const char *client_cert_problem(X509 *crt, time_t now)
{
    if (X509_cmp_time(X509_get0_notBefore(crt), &now) != -1)
        return not_yet_valid;
    if (X509_cmp_time(X509_get0_notAfter(crt), &now) != 1)
        return expired;
    if (X509_check_purpose(crt, X509_PURPOSE_SSL_CLIENT, 0) != 1)
        return not_for_client;
    if ((X509_get_extension_flags(crt) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(crt) & KU_DIGITAL_SIGNATURE) == 0)
        return not_for_client;
    return NULL;
}

const char *dems_tls_cert_problem(const char *pem, time_t now)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *crt = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    const char *p = crt != NULL ? client_cert_problem(crt, now) : "invalid_certificate";
    X509_free(crt);
    return p;
}

const char *dems_tls_cert_problem_text(const char *code)
{
    if (strcmp(code, expired) == 0)
        return "the certificate has expired (its notAfter date is past)";
    if (strcmp(code, not_yet_valid) == 0)
        return "the certificate is not valid yet (its notBefore date is in the future)";
    if (strcmp(code, not_for_client) == 0)
        return "the certificate is not for TLS client authentication (its extendedKeyUsage"
               " lacks clientAuth or its keyUsage lacks digitalSignature)";
    return "the certificate does not parse";
}

static int fingerprint(X509 *crt, char ret[static 65]);

/* The client's address, for the log. */
static void peer_of(X509_STORE_CTX *xs, char *out, size_t len)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    int fd = ssl != NULL ? SSL_get_fd(ssl) : -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
    }
    snprintf(out, len, "%s", host);
}

/*
 * Refused handshakes are logged, but at most once a minute per reason, with
 * how many there were since the last line: a dock retrying in a tight loop
 * must not flood the log (nor, being refused before any request, the ledger).
 */
#define REFUSAL_LOG_INTERVAL 60

struct refusal_log {
    const char *reason;
    pthread_mutex_t mu;
    time_t last;
    uint64_t count; /* refusals not yet logged */
};

static struct refusal_log refusal_logs[] = {
    {expired, PTHREAD_MUTEX_INITIALIZER, 0, 0},
    {not_yet_valid, PTHREAD_MUTEX_INITIALIZER, 0, 0},
    {not_for_client, PTHREAD_MUTEX_INITIALIZER, 0, 0},
};

static void log_refusal(X509_STORE_CTX *xs, X509 *crt, const char *reason, time_t now)
{
    struct refusal_log *rl = NULL;
    for (size_t i = 0; i < sizeof(refusal_logs) / sizeof(refusal_logs[0]); i++) {
        if (refusal_logs[i].reason == reason)
            rl = &refusal_logs[i];
    }
    if (rl == NULL)
        return;
    pthread_mutex_lock(&rl->mu);
    rl->count++;
    uint64_t n = rl->count;
    bool due = now - rl->last >= REFUSAL_LOG_INTERVAL;
    if (due) {
        rl->last = now;
        rl->count = 0;
    }
    pthread_mutex_unlock(&rl->mu);
    if (!due)
        return;
    char fp[65] = "", peer[INET6_ADDRSTRLEN];
    fingerprint(crt, fp);
    peer_of(xs, peer, sizeof(peer));
    dems_log(DEMS_LOG_WARN, NULL,
             json_pack("{s:s,s:s,s:s,s:s,s:I}", "event", "tls_client_refused", "reason", reason,
                       "cert_sha256", fp, "peer", peer, "refused", (json_int_t)n),
             "refused a client certificate at the handshake: %s",
             dems_tls_cert_problem_text(reason));
}

/* A revoked device's refused handshakes: one line a minute per device. */
static void log_revoked(X509_STORE_CTX *xs, const char *fp, const struct dems_revoked_refusal *rr)
{
    char peer[INET6_ADDRSTRLEN];
    peer_of(xs, peer, sizeof(peer));
    dems_log(DEMS_LOG_WARN, NULL,
             json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "event", "tls_client_refused", "reason",
                       "certificate_revoked", "cert_sha256", fp, "serial", rr->serial, "peer", peer,
                       "refused", (json_int_t)rr->refused),
             "refused revoked device %s at the handshake", rr->serial);
}

/*
 * Replaces OpenSSL's chain verification for client certificates. A device
 * is identified by its certificate's fingerprint, enrolled and not revoked
 * (server/auth/auth.c), not by a chain, so no chain is built: a pinned
 * certificate from another PKI and one the device CA issued are treated
 * alike. What is checked here, at every full handshake, is what the
 * certificate itself says (client_cert_problem); the handshake still proves
 * the client holds the certificate's key (CertificateVerify). A revoked
 * certificate (the in-memory set, server/auth/revoked.c) is refused first.
 * A refusal ends the handshake with a matching alert (certificate_revoked,
 * certificate_expired, unsupported_certificate, bad_certificate), before any
 * request, database or ledger work. Resumed sessions present no
 * certificate: auth.c checks revocation and dates on every request as well.
 */
static int on_client_cert(X509_STORE_CTX *xs, void *arg)
{
    struct dems_server *srv = arg;
    X509 *crt = X509_STORE_CTX_get0_cert(xs);
    char fp[65];
    if (crt == NULL || fingerprint(crt, fp) < 0) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    time_t now = time(NULL);
    struct dems_revoked_refusal rr;
    if (dems_revoked_refuse(srv->revoked, fp, now, &rr)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REVOKED);
        if (rr.log_due)
            log_revoked(xs, fp, &rr);
        return 0;
    }
    const char *problem = client_cert_problem(crt, now);
    if (problem == NULL) {
        X509_STORE_CTX_set_error(xs, X509_V_OK);
        return 1;
    }
    X509_STORE_CTX_set_error(xs, problem == expired         ? X509_V_ERR_CERT_HAS_EXPIRED
                                 : problem == not_yet_valid ? X509_V_ERR_CERT_NOT_YET_VALID
                                                            : X509_V_ERR_INVALID_PURPOSE);
    log_refusal(xs, crt, problem, now);
    return 0;
}

void dems_tls_done(struct dems_server *srv)
{
    dems_revoked_free(srv->revoked);
    srv->revoked = NULL;
    SSL_CTX_free(srv->ssl_ctx);
    X509_free(srv->device_ca);
    EVP_PKEY_free(srv->device_ca_key);
    srv->ssl_ctx = NULL;
    srv->device_ca = NULL;
    srv->device_ca_key = NULL;
}

int dems_tls_init(struct dems_server *srv, char *err, size_t errlen)
{
    int rc = load_device_ca(srv, err, errlen);
    if (rc < 0)
        return rc;
    srv->revoked = dems_revoked_new();
    if (srv->revoked == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return DEMS_ENOMEM;
    }
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
    /* Several records per read(2): half the system calls of an upload
     * (conn.c, read_buffered, wakes connections for what waits inside). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    /* ... and an idle connection holds no buffers (freed once empty). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
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
    /* Asked of every client, required of none (staff use bearer tokens). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, on_client_cert, srv);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    if (names != NULL) {
        X509_NAME *n = X509_NAME_dup(X509_get_subject_name(srv->device_ca));
        if (n != NULL)
            sk_X509_NAME_push(names, n);
        SSL_CTX_set_client_CA_list(ctx, names); /* hint for docks' TLS stacks */
    }
    static const unsigned char sid[] = "demsd";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    srv->ssl_ctx = ctx;
    return 0;
}

static int fingerprint(X509 *crt, char ret[static 65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(crt, EVP_sha256(), md, &n) != 1 || n != 32)
        return DEMS_EINVAL;
    for (unsigned i = 0; i < 32; i++)
        snprintf(ret + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static char *to_pem(X509 *crt)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b != NULL && PEM_write_bio_X509(b, crt) == 1) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        /* The BIO's memory is not NUL-terminated: copy exactly n bytes. */
        out = n > 0 ? malloc((size_t)n + 1) : NULL;
        if (out != NULL) {
            memcpy(out, p, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

int dems_tls_cert_sha256(const char *pem, char ret_sha256[static 65])
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *crt = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    int r = crt != NULL ? fingerprint(crt, ret_sha256) : DEMS_EINVAL;
    X509_free(crt);
    return r;
}

int dems_tls_issue_device_cert(struct dems_server *srv, const char *csr_pem, const char *serial,
                               char **ret_pem, char ret_sha256[static 65])
{
    BIO *b = BIO_new_mem_buf(csr_pem, -1);
    X509_REQ *req = b != NULL ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    EVP_PKEY *pub = req != NULL ? X509_REQ_get_pubkey(req) : NULL;
    X509 *crt = NULL;
    int r = DEMS_EINVAL;
    /* The CSR must be signed by the key it carries (proof of possession). */
    if (pub == NULL || X509_REQ_verify(req, pub) != 1)
        goto out;
    crt = X509_new();
    unsigned char serialno[16];
    BIGNUM *bn = NULL;
    if (crt == NULL || RAND_bytes(serialno, sizeof(serialno)) != 1)
        goto out;
    serialno[0] &= 0x7f;
    bn = BN_bin2bn(serialno, sizeof(serialno), NULL);
    X509_NAME *name = X509_get_subject_name(crt);
    bool ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)) != NULL &&
              X509_set_version(crt, 2) &&
              X509_gmtime_adj(X509_getm_notBefore(crt), -3600) != NULL &&
              X509_gmtime_adj(X509_getm_notAfter(crt), 825L * 24 * 3600) != NULL &&
              X509_set_pubkey(crt, pub) &&
              X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                         (const unsigned char *)"dems devices", -1, -1, 0) &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)serial,
                                         -1, -1, 0) &&
              X509_set_issuer_name(crt, X509_get_subject_name(srv->device_ca));
    BN_free(bn);
    if (!ok)
        goto out;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, srv->device_ca, crt, NULL, NULL, 0);
    const char *exts[][2] = {{"basicConstraints", "critical,CA:FALSE"},
                             {"keyUsage", "critical,digitalSignature"},
                             {"extendedKeyUsage", "clientAuth"}};
    for (size_t i = 0; i < 3; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, exts[i][0], exts[i][1]);
        if (e == NULL || !X509_add_ext(crt, e, -1)) {
            X509_EXTENSION_free(e);
            goto out;
        }
        X509_EXTENSION_free(e);
    }
    if (X509_sign(crt, srv->device_ca_key, EVP_sha256()) == 0)
        goto out;
    char *pem = to_pem(crt);
    if (pem == NULL || fingerprint(crt, ret_sha256) < 0) {
        free(pem);
        r = DEMS_ENOMEM;
        goto out;
    }
    *ret_pem = pem;
    r = 0;
out:
    X509_free(crt);
    EVP_PKEY_free(pub);
    X509_REQ_free(req);
    return r;
}
