/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/ledger/tsa.c over the answers of a real TSA
 * (`openssl ts -reply`, tests/vectors/tsa, PROVENANCE.md): a granted answer
 * passes every check and says what it should; a wrong nonce, imprint or
 * trust store, a rejection, garbage and trailing bytes are each refused
 * with their reason; the request carries what it says.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ts.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/tsa.h"

#include "vec.h"

/* The vectors' request: imprint 00 01 .. 1f, nonce 01 02 .. 08. */
static const uint8_t IMPRINT[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t NONCE[DEMS_TSA_NONCE_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};

static char *path_of(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/tsa/%s", vec_dir, name);
    return path;
}

/* Reads vec_dir/tsa/name; owned. */
static uint8_t *slurp(const char *name, size_t *ret_len)
{
    FILE *f = fopen(path_of(name), "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(DEMS_TSA_MAX_RESPONSE + 2);
    assert_non_null(buf);
    size_t n = fread(buf, 1, DEMS_TSA_MAX_RESPONSE + 1, f);
    fclose(f);
    assert_true(n > 0 && n <= DEMS_TSA_MAX_RESPONSE);
    *ret_len = n;
    return buf;
}

static struct dems_tsa_trust *trust(const char *name)
{
    char err[512];
    struct dems_tsa_trust *t = dems_tsa_trust_load(path_of(name), err, sizeof(err));
    assert_non_null(t);
    return t;
}

/* Checks resp against IMPRINT/nonce and trust; returns the result, with why. */
static int check(const uint8_t *resp, size_t len, const uint8_t *imprint, const uint8_t *nonce,
                 const char *ca, char *why, size_t whylen)
{
    struct dems_tsa_trust *t = trust(ca);
    uint8_t *token = NULL;
    size_t tlen = 0;
    struct dems_tsa_info info;
    int r =
        dems_tsa_response_check(resp, len, imprint, nonce, t, &token, &tlen, &info, why, whylen);
    if (r == 0)
        free(token);
    else
        assert_null(token);
    dems_tsa_trust_free(t);
    return r;
}

static void test_granted(void **state)
{
    (void)state;
    size_t len, tok_len;
    uint8_t *resp = slurp("granted.der", &len);
    uint8_t *want = slurp("token.der", &tok_len);
    struct dems_tsa_trust *t = trust("ca.pem");
    uint8_t *token = NULL;
    size_t n = 0;
    struct dems_tsa_info info;
    char why[400] = "";
    assert_int_equal(
        dems_tsa_response_check(resp, len, IMPRINT, NONCE, t, &token, &n, &info, why, sizeof(why)),
        0);
    /* The token is the answer's timeStampToken, byte for byte. */
    assert_int_equal(n, tok_len);
    assert_memory_equal(token, want, n);
    uint8_t sha[32];
    crypto_hash_sha256(sha, want, tok_len);
    assert_memory_equal(info.token_sha256, sha, 32);
    assert_string_equal(info.gen_time, "2026-12-07T04:22:56.759Z"); /* milliseconds kept */
    assert_true(info.gen_time_ms == 1796617376759LL);
    assert_string_equal(info.serial, "02");
    assert_string_equal(info.policy, "1.2.3.4.1");
    /* The stored token checks the same, without the nonce. */
    struct dems_tsa_info again;
    assert_int_equal(dems_tsa_token_check(token, n, IMPRINT, t, &again, why, sizeof(why)), 0);
    assert_string_equal(again.gen_time, info.gen_time);
    assert_memory_equal(again.token_sha256, sha, 32);
    free(token);
    dems_tsa_trust_free(t);
    free(resp);
    free(want);
}

static void test_refusals(void **state)
{
    (void)state;
    size_t len;
    uint8_t *resp = slurp("granted.der", &len);
    char why[400];
    uint8_t other[32];
    memcpy(other, IMPRINT, 32);
    other[31] ^= 1;
    uint8_t nonce[DEMS_TSA_NONCE_BYTES];
    memcpy(nonce, NONCE, sizeof(nonce));
    nonce[7] ^= 1;

    assert_int_equal(check(resp, len, IMPRINT, nonce, "ca.pem", why, sizeof(why)), DEMS_ECRYPTO);
    assert_non_null(strstr(why, "nonce mismatch"));
    assert_int_equal(check(resp, len, other, NONCE, "ca.pem", why, sizeof(why)), DEMS_ECRYPTO);
    assert_non_null(strstr(why, "message imprint mismatch"));
    assert_int_equal(check(resp, len, IMPRINT, NONCE, "other-ca.pem", why, sizeof(why)),
                     DEMS_ECRYPTO);
    assert_non_null(strstr(why, "certificate verify error"));
    /* Bytes after the answer, a cut answer, nothing, too much. */
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, resp, len);
    longer[len] = 0;
    assert_int_equal(check(longer, len + 1, IMPRINT, NONCE, "ca.pem", why, sizeof(why)),
                     DEMS_EINVAL);
    assert_non_null(strstr(why, "not a DER TimeStampResp"));
    assert_int_equal(check(resp, len - 1, IMPRINT, NONCE, "ca.pem", why, sizeof(why)), DEMS_EINVAL);
    assert_int_equal(check(resp, 0, IMPRINT, NONCE, "ca.pem", why, sizeof(why)), DEMS_EINVAL);
    assert_int_equal(
        check(resp, DEMS_TSA_MAX_RESPONSE + 1, IMPRINT, NONCE, "ca.pem", why, sizeof(why)),
        DEMS_EINVAL);
    assert_non_null(strstr(why, "too big"));
    /* One flipped bit inside the signed content breaks the signature. */
    size_t at = len / 4;
    resp[at] ^= 0x01;
    assert_true(check(resp, len, IMPRINT, NONCE, "ca.pem", why, sizeof(why)) < 0);
    free(longer);
    free(resp);

    uint8_t *rej = slurp("rejected.der", &len);
    assert_int_equal(check(rej, len, IMPRINT, NONCE, "ca.pem", why, sizeof(why)), DEMS_ECRYPTO);
    assert_non_null(strstr(why, "status rejection (2)"));
    assert_non_null(strstr(why, "Message digest algorithm is not supported."));
    free(rej);
}

static void test_token_check(void **state)
{
    (void)state;
    size_t len;
    uint8_t *tok = slurp("token.der", &len);
    struct dems_tsa_trust *t = trust("ca.pem"), *other = trust("other-ca.pem");
    struct dems_tsa_info info;
    char why[400];
    uint8_t imprint[32];
    memcpy(imprint, IMPRINT, 32);
    imprint[0] ^= 0x80;
    assert_int_equal(dems_tsa_token_check(tok, len, IMPRINT, t, &info, why, sizeof(why)), 0);
    assert_int_equal(dems_tsa_token_check(tok, len, imprint, t, &info, why, sizeof(why)),
                     DEMS_ECRYPTO);
    assert_non_null(strstr(why, "message imprint mismatch"));
    assert_int_equal(dems_tsa_token_check(tok, len, IMPRINT, other, &info, why, sizeof(why)),
                     DEMS_ECRYPTO);
    assert_int_equal(dems_tsa_token_check(tok, len - 1, IMPRINT, t, &info, why, sizeof(why)),
                     DEMS_EINVAL);
    assert_int_equal(
        dems_tsa_token_check((const uint8_t *)"garbage", 7, IMPRINT, t, &info, why, sizeof(why)),
        DEMS_EINVAL);
    dems_tsa_trust_free(other);
    dems_tsa_trust_free(t);
    free(tok);
}

static void test_request(void **state)
{
    (void)state;
    uint8_t nonce[DEMS_TSA_NONCE_BYTES], nonce2[DEMS_TSA_NONCE_BYTES], *der = NULL, *der2 = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(dems_tsa_request(IMPRINT, nonce, &der, &len), 0);
    assert_int_equal(dems_tsa_request(IMPRINT, nonce2, &der2, &len2), 0);
    assert_memory_not_equal(nonce, nonce2, sizeof(nonce)); /* fresh each time */
    const unsigned char *p = der;
    TS_REQ *req = d2i_TS_REQ(NULL, &p, (long)len);
    assert_non_null(req);
    assert_true(p == der + len);
    assert_int_equal(TS_REQ_get_version(req), 1);
    assert_int_equal(TS_REQ_get_cert_req(req), 1);
    assert_null(TS_REQ_get_policy_id(req));
    TS_MSG_IMPRINT *mi = TS_REQ_get_msg_imprint(req);
    assert_int_equal(OBJ_obj2nid(TS_MSG_IMPRINT_get_algo(mi)->algorithm), NID_sha256);
    ASN1_OCTET_STRING *msg = TS_MSG_IMPRINT_get_msg(mi);
    assert_int_equal(ASN1_STRING_length(msg), 32);
    assert_memory_equal(ASN1_STRING_get0_data(msg), IMPRINT, 32);
    BIGNUM *got = ASN1_INTEGER_to_BN(TS_REQ_get_nonce(req), NULL);
    BIGNUM *want = BN_bin2bn(nonce, DEMS_TSA_NONCE_BYTES, NULL);
    assert_int_equal(BN_cmp(got, want), 0);
    BN_free(got);
    BN_free(want);
    TS_REQ_free(req);
    free(der);
    free(der2);
}

static void test_trust_load(void **state)
{
    (void)state;
    char err[512];
    assert_null(dems_tsa_trust_load("/nonexistent/ca.pem", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    /* A file without a certificate (a DER answer) is no trust store. */
    assert_null(dems_tsa_trust_load(path_of("rejected.der"), err, sizeof(err)));
    assert_non_null(strstr(err, "rejected.der"));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        vec_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_granted),     cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_token_check), cmocka_unit_test(test_request),
        cmocka_unit_test(test_trust_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
