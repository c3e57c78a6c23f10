/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/crypto: RFC 6238 vectors, tokens, Argon2id. */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"

static const uint8_t rfc_secret[] = "12345678901234567890";

/* RFC 6238 appendix B (SHA-1), last six digits of each 8-digit value. */
static void test_totp_rfc6238_vectors(void **state)
{
    (void)state;
    static const struct {
        uint64_t t;
        uint32_t code;
    } v[] = {{59, 287082},       {1111111109, 81804},  {1111111111, 50471},
             {1234567890, 5924}, {2000000000, 279037}, {20000000000ULL, 353130}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal(dems_totp_code(rfc_secret, 20, v[i].t / 30), v[i].code);
}

static void test_totp_verify_window(void **state)
{
    (void)state;
    uint64_t now = 1234567890, step = 0;
    char code[7];
    snprintf(code, sizeof(code), "%06u", dems_totp_code(rfc_secret, 20, now / 30 - 1));
    assert_int_equal(dems_totp_verify(rfc_secret, 20, code, now, &step), 0);
    assert_true(step == now / 30 - 1);
    snprintf(code, sizeof(code), "%06u", dems_totp_code(rfc_secret, 20, now / 30 + 2));
    assert_int_equal(dems_totp_verify(rfc_secret, 20, code, now, &step), DEMS_ETOTP);
    assert_int_equal(dems_totp_verify(rfc_secret, 20, "12345", now, &step), DEMS_ETOTP);
    assert_int_equal(dems_totp_verify(rfc_secret, 20, "12345a", now, &step), DEMS_ETOTP);
    assert_int_equal(dems_totp_verify(rfc_secret, 20, NULL, now, &step), DEMS_ETOTP);
}

static void test_tokens(void **state)
{
    (void)state;
    char a[DEMS_TOKEN_TEXT_MAX], b[DEMS_TOKEN_TEXT_MAX];
    uint8_t ha[32], hb[32], again[32];
    assert_int_equal(dems_token_new("s", a, ha), 0);
    assert_int_equal(dems_token_new("s", b, hb), 0);
    assert_int_equal(strncmp(a, "dems_s_", 7), 0);
    assert_int_equal(strlen(a), 7 + 43); /* 256 bits in unpadded base64url */
    assert_string_not_equal(a, b);
    assert_memory_not_equal(ha, hb, 32);
    dems_token_hash(a, strlen(a), again);
    assert_memory_equal(ha, again, 32);
    assert_int_equal(dems_token_new("", a, ha), DEMS_EINVAL);
    assert_int_equal(dems_token_new("toolongprefix", a, ha), DEMS_EINVAL);
}

static void test_password(void **state)
{
    (void)state;
    char h[DEMS_PASSWORD_HASH_MAX];
    assert_int_equal(dems_password_hash("hunter22", 8, true, h), 0);
    assert_int_equal(strncmp(h, "$argon2id$", 10), 0);
    assert_true(dems_password_verify(h, "hunter22", 8));
    assert_false(dems_password_verify(h, "hunter23", 8));
    assert_false(dems_password_verify("garbage", "hunter22", 8));
}

/* FIPS 180-2's "abc" and the two-block message, and a state saved at every
 * length from 0 to 200 and restored into a fresh hash gives the same digest. */
static void test_sha256_save_restore(void **state)
{
    (void)state;
    static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const uint8_t want[32] = {0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8,
                                     0xe5, 0xc0, 0x26, 0x93, 0x0c, 0x3e, 0x60, 0x39,
                                     0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67,
                                     0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1};
    uint8_t buf[200], whole[32], got[32], saved[DEMS_SHA256_STATE_LEN];
    struct dems_sha256 a, b;
    assert_int_equal(dems_sha256_init(&a), 0);
    dems_sha256_update(&a, msg, strlen(msg));
    assert_int_equal(dems_sha256_final(&a, got), 0);
    assert_memory_equal(got, want, 32);
    dems_sha256_done(&a);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(dems_sha256_init(&a), 0);
    dems_sha256_update(&a, buf, sizeof(buf));
    assert_int_equal(dems_sha256_final(&a, whole), 0);
    dems_sha256_done(&a);
    for (size_t cut = 0; cut <= sizeof(buf); cut++) {
        assert_int_equal(dems_sha256_init(&a), 0);
        assert_int_equal(dems_sha256_init(&b), 0);
        dems_sha256_update(&a, buf, cut);
        dems_sha256_save(&a, saved);
        assert_int_equal(dems_sha256_restore(&b, saved), 0);
        dems_sha256_update(&b, buf + cut, sizeof(buf) - cut);
        assert_int_equal(dems_sha256_final(&b, got), 0);
        assert_memory_equal(got, whole, 32);
        dems_sha256_done(&a);
        dems_sha256_done(&b);
    }
    /* A state whose block length disagrees with its bit count is refused. */
    assert_int_equal(dems_sha256_init(&a), 0);
    dems_sha256_update(&a, buf, 10);
    dems_sha256_save(&a, saved);
    saved[43] = 11;
    assert_int_equal(dems_sha256_restore(&a, saved), DEMS_EINVAL);
    saved[43] = 64;
    assert_int_equal(dems_sha256_restore(&a, saved), DEMS_EINVAL);
    dems_sha256_done(&a);
}

int main(void)
{
    if (dems_crypto_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_totp_rfc6238_vectors),
        cmocka_unit_test(test_sha256_save_restore),
        cmocka_unit_test(test_totp_verify_window),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
