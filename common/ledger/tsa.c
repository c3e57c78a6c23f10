/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 3161 requests and the checks of answers and stored tokens, over
 * OpenSSL's TS API. The verification context is built from a request
 * (TS_REQ_to_TS_VERIFY_CTX), so the imprint's algorithm (SHA-256) is
 * checked as well as its bytes; OpenSSL verifies the signer's chain with
 * the purpose X509_PURPOSE_TIMESTAMP_SIGN, which requires the critical
 * extendedKeyUsage of timeStamping alone (RFC 3161 section 2.3).
 */
#include "dems/tsa.h"

#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"

#include "ledger_int.h"

struct dems_tsa_trust {
    X509_STORE *store;
};

/* The newest OpenSSL error as one line ("what: reason: detail"), then clears the queue. */
static void ossl_why(char *why, size_t whylen, const char *what)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_last_error_all(NULL, NULL, NULL, &data, &flags);
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    bool has_data = data != NULL && (flags & ERR_TXT_STRING) != 0 && data[0] != '\0';
    snprintf(why, whylen, "%s%s%.200s%s%.200s", what, reason != NULL ? ": " : "",
             reason != NULL ? reason : "", has_data ? ": " : "", has_data ? data : "");
    ERR_clear_error();
}

struct dems_tsa_trust *dems_tsa_trust_load(const char *ca_file, char *err, size_t errlen)
{
    struct dems_tsa_trust *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->store = X509_STORE_new();
    if (t->store == NULL || X509_STORE_load_file(t->store, ca_file) != 1) {
        char why[300];
        ossl_why(why, sizeof(why), "no certificate could be read");
        snprintf(err, errlen, "%.300s: %s", ca_file, why);
        dems_tsa_trust_free(t);
        return NULL;
    }
    return t;
}

void dems_tsa_trust_free(struct dems_tsa_trust *t)
{
    if (t == NULL)
        return;
    X509_STORE_free(t->store);
    free(t);
}

/* A TimeStampReq over imprint, with nonce when it is not NULL. NULL: out of memory. */
static TS_REQ *make_req(const uint8_t imprint[static 32], const uint8_t *nonce)
{
    TS_REQ *req = TS_REQ_new();
    TS_MSG_IMPRINT *mi = TS_MSG_IMPRINT_new();
    X509_ALGOR *alg = X509_ALGOR_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *n = NULL;
    uint8_t msg[32];
    memcpy(msg, imprint, sizeof(msg));
    bool ok = req != NULL && mi != NULL && alg != NULL &&
              X509_ALGOR_set0(alg, OBJ_nid2obj(NID_sha256), V_ASN1_NULL, NULL) == 1 &&
              TS_MSG_IMPRINT_set_algo(mi, alg) == 1 &&
              TS_MSG_IMPRINT_set_msg(mi, msg, (int)sizeof(msg)) == 1 &&
              TS_REQ_set_msg_imprint(req, mi) == 1 && TS_REQ_set_version(req, 1) == 1 &&
              TS_REQ_set_cert_req(req, 1) == 1;
    if (ok && nonce != NULL) {
        bn = BN_bin2bn(nonce, DEMS_TSA_NONCE_BYTES, NULL);
        n = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
        ok = n != NULL && TS_REQ_set_nonce(req, n) == 1;
    }
    ASN1_INTEGER_free(n);
    BN_free(bn);
    X509_ALGOR_free(alg);
    TS_MSG_IMPRINT_free(mi);
    if (!ok) {
        TS_REQ_free(req);
        return NULL;
    }
    return req;
}

int dems_tsa_request(const uint8_t imprint[static 32],
                     uint8_t ret_nonce[static DEMS_TSA_NONCE_BYTES], uint8_t **ret_der,
                     size_t *ret_len)
{
    uint8_t nonce[DEMS_TSA_NONCE_BYTES];
    if (RAND_bytes(nonce, (int)sizeof(nonce)) != 1)
        return DEMS_EINTERNAL;
    TS_REQ *req = make_req(imprint, nonce);
    if (req == NULL)
        return DEMS_ENOMEM;
    int n = i2d_TS_REQ(req, NULL);
    uint8_t *der = n > 0 ? malloc((size_t)n) : NULL;
    unsigned char *p = der;
    if (der == NULL || i2d_TS_REQ(req, &p) != n) {
        free(der);
        TS_REQ_free(req);
        ERR_clear_error();
        return n > 0 ? DEMS_ENOMEM : DEMS_EINTERNAL;
    }
    TS_REQ_free(req);
    memcpy(ret_nonce, nonce, sizeof(nonce));
    *ret_der = der;
    *ret_len = (size_t)n;
    return 0;
}

/* ---- what a token says ---- */

/* genTime as milliseconds since the epoch (a fraction's first three digits). */
static int gen_time_ms(const ASN1_GENERALIZEDTIME *t, int64_t *ret)
{
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    int ok = epoch != NULL && ASN1_TIME_diff(&days, &secs, epoch, t);
    ASN1_TIME_free(epoch);
    if (!ok || days < 0 || secs < 0)
        return DEMS_EINVAL;
    int64_t ms = ((int64_t)days * 86400 + secs) * 1000;
    /* YYYYMMDDHHMMSS[.f*]Z (RFC 3161 section 2.4.2: no fraction's trailing zeros). */
    const unsigned char *s = ASN1_STRING_get0_data(t);
    int len = ASN1_STRING_length(t);
    if (len > 15 && s[14] == '.') {
        int64_t scale = 100;
        for (int i = 15; i < len && s[i] >= '0' && s[i] <= '9' && scale > 0; i++, scale /= 10)
            ms += (int64_t)(s[i] - '0') * scale;
    }
    *ret = ms;
    return 0;
}

static int serial_hex(const ASN1_INTEGER *serial, char out[static 67])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    int r = DEMS_EINVAL;
    if (hex != NULL && strlen(hex) <= 66 && hex[0] != '-') {
        size_t i = 0;
        for (; hex[i] != '\0'; i++)
            out[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] - 'A' + 'a' : hex[i]);
        out[i] = '\0';
        r = 0;
    }
    OPENSSL_free(hex);
    BN_free(bn);
    return r;
}

/* Fills info from a verified token. Returns 0, or DEMS_EINVAL with why. */
static int token_info(PKCS7 *token, struct dems_tsa_info *info, char *why, size_t whylen)
{
    TS_TST_INFO *tst = PKCS7_to_TS_TST_INFO(token);
    int n = i2d_PKCS7(token, NULL);
    uint8_t *der = n > 0 ? malloc((size_t)n) : NULL;
    unsigned char *p = der;
    int r = DEMS_EINVAL;
    if (tst == NULL || der == NULL || i2d_PKCS7(token, &p) != n) {
        snprintf(why, whylen, "the token cannot be read back");
    } else if (gen_time_ms(TS_TST_INFO_get_time(tst), &info->gen_time_ms) < 0 ||
               dems_ledger_time_format(info->gen_time_ms, info->gen_time) < 0) {
        snprintf(why, whylen, "the token's genTime is not a time from 1970 to 9999");
    } else if (serial_hex(TS_TST_INFO_get_serial(tst), info->serial) < 0) {
        snprintf(why, whylen, "the token's serial number is negative or longer than 32 bytes");
    } else if (OBJ_obj2txt(info->policy, (int)sizeof(info->policy), TS_TST_INFO_get_policy_id(tst),
                           1) <= 0) {
        snprintf(why, whylen, "the token's policy is not an object identifier");
    } else {
        ledger_sha256_2(der, (size_t)n, NULL, 0, info->token_sha256);
        r = 0;
    }
    free(der);
    TS_TST_INFO_free(tst);
    ERR_clear_error();
    return r;
}

/* ---- checks ---- */

/*
 * A verification context for a token over imprint (and nonce when not
 * NULL), trusting trust. NULL: out of memory.
 */
static TS_VERIFY_CTX *verify_ctx(const uint8_t imprint[static 32], const uint8_t *nonce,
                                 const struct dems_tsa_trust *trust)
{
    TS_REQ *req = make_req(imprint, nonce);
    TS_VERIFY_CTX *ctx = req != NULL ? TS_REQ_to_TS_VERIFY_CTX(req, NULL) : NULL;
    TS_REQ_free(req);
    if (ctx == NULL || X509_STORE_up_ref(trust->store) != 1) {
        TS_VERIFY_CTX_free(ctx);
        return NULL;
    }
    TS_VERIFY_CTX_set_store(ctx, trust->store); /* the context frees its reference */
    unsigned flags = TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_SIGNER | TS_VFY_IMPRINT;
    if (nonce != NULL)
        flags |= TS_VFY_NONCE;
    TS_VERIFY_CTX_set_flags(ctx, (int)flags);
    return ctx;
}

/* RFC 3161 section 2.4.2's PKIStatus values, by number. */
static const char *status_name(long s)
{
    static const char *const names[] = {"granted", "grantedWithMods",   "rejection",
                                        "waiting", "revocationWarning", "revocationNotification"};
    return s >= 0 && s < 6 ? names[s] : "unknown";
}

/* Refuses a status other than granted (or grantedWithMods), naming it. */
static int check_status(TS_RESP *resp, char *why, size_t whylen)
{
    TS_STATUS_INFO *si = TS_RESP_get_status_info(resp);
    long s = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(si));
    if (s == 0 || s == 1)
        return 0;
    const STACK_OF(ASN1_UTF8STRING) *text = TS_STATUS_INFO_get0_text(si);
    const ASN1_UTF8STRING *t0 =
        text != NULL && sk_ASN1_UTF8STRING_num(text) > 0 ? sk_ASN1_UTF8STRING_value(text, 0) : NULL;
    char said[101] = "";
    if (t0 != NULL) {
        /* The TSA's words are untrusted: printable ASCII only, bounded. */
        int len = ASN1_STRING_length(t0);
        const unsigned char *d = ASN1_STRING_get0_data(t0);
        size_t j = 0;
        for (int i = 0; i < len && j < sizeof(said) - 1; i++)
            said[j++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
        said[j] = '\0';
    }
    snprintf(why, whylen, "the TSA answered status %s (%ld)%s%s%s", status_name(s), s,
             said[0] != '\0' ? ": \"" : "", said, said[0] != '\0' ? "\"" : "");
    return DEMS_ECRYPTO;
}

int dems_tsa_response_check(const uint8_t *resp, size_t len, const uint8_t imprint[static 32],
                            const uint8_t nonce[static DEMS_TSA_NONCE_BYTES],
                            const struct dems_tsa_trust *trust, uint8_t **ret_token,
                            size_t *ret_token_len, struct dems_tsa_info *ret_info, char *why,
                            size_t whylen)
{
    if (len == 0 || len > DEMS_TSA_MAX_RESPONSE) {
        snprintf(why, whylen, "the answer is %s", len == 0 ? "empty" : "too big");
        return DEMS_EINVAL;
    }
    const unsigned char *p = resp;
    TS_RESP *r = d2i_TS_RESP(NULL, &p, (long)len);
    if (r == NULL || p != resp + len) {
        snprintf(why, whylen, "the answer is not a DER TimeStampResp (RFC 3161 section 2.4.2)");
        TS_RESP_free(r);
        ERR_clear_error();
        return DEMS_EINVAL;
    }
    int rc = check_status(r, why, whylen);
    PKCS7 *token = TS_RESP_get_token(r);
    if (rc == 0 && (token == NULL || TS_RESP_get_tst_info(r) == NULL)) {
        snprintf(why, whylen, "the answer is granted but carries no token");
        rc = DEMS_EINVAL;
    }
    TS_VERIFY_CTX *ctx = rc == 0 ? verify_ctx(imprint, nonce, trust) : NULL;
    if (rc == 0 && ctx == NULL) {
        snprintf(why, whylen, "out of memory");
        rc = DEMS_ENOMEM;
    }
    if (rc == 0 && TS_RESP_verify_token(ctx, token) != 1) {
        ossl_why(why, whylen, "the token does not verify");
        rc = DEMS_ECRYPTO;
    }
    struct dems_tsa_info info;
    if (rc == 0)
        rc = token_info(token, &info, why, whylen);
    uint8_t *der = NULL;
    int n = rc == 0 ? i2d_PKCS7(token, &der) : 0;
    uint8_t *out = n > 0 ? malloc((size_t)n) : NULL;
    if (rc == 0 && out == NULL) {
        snprintf(why, whylen, "out of memory");
        rc = DEMS_ENOMEM;
    }
    if (rc == 0) {
        memcpy(out, der, (size_t)n);
        *ret_token = out;
        *ret_token_len = (size_t)n;
        *ret_info = info;
    }
    OPENSSL_free(der);
    TS_VERIFY_CTX_free(ctx);
    TS_RESP_free(r);
    ERR_clear_error();
    return rc;
}

int dems_tsa_token_check(const uint8_t *token, size_t len, const uint8_t imprint[static 32],
                         const struct dems_tsa_trust *trust, struct dems_tsa_info *ret_info,
                         char *why, size_t whylen)
{
    if (len == 0 || len > DEMS_TSA_MAX_RESPONSE) {
        snprintf(why, whylen, "the token is %s", len == 0 ? "empty" : "too big");
        return DEMS_EINVAL;
    }
    const unsigned char *p = token;
    PKCS7 *t = d2i_PKCS7(NULL, &p, (long)len);
    if (t == NULL || p != token + len) {
        snprintf(why, whylen, "not a DER TimeStampToken (RFC 3161 section 2.4.2)");
        PKCS7_free(t);
        ERR_clear_error();
        return DEMS_EINVAL;
    }
    TS_VERIFY_CTX *ctx = verify_ctx(imprint, NULL, trust);
    int rc = 0;
    if (ctx == NULL) {
        snprintf(why, whylen, "out of memory");
        rc = DEMS_ENOMEM;
    } else if (TS_RESP_verify_token(ctx, t) != 1) {
        ossl_why(why, whylen, "the token does not verify");
        rc = DEMS_ECRYPTO;
    }
    struct dems_tsa_info info;
    if (rc == 0)
        rc = token_info(t, &info, why, whylen);
    if (rc == 0)
        *ret_info = info;
    TS_VERIFY_CTX_free(ctx);
    PKCS7_free(t);
    ERR_clear_error();
    return rc;
}
