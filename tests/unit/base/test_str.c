/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/base: bounded parsing, hex, base32, capped buffers. */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/str.h"

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_int_equal(dems_parse_u64("12345", 5, UINT64_MAX, &v), 0);
    assert_true(v == 12345);
    assert_int_equal(dems_parse_u64("18446744073709551615", 20, UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    v = 7;
    assert_int_equal(dems_parse_u64("18446744073709551616", 20, UINT64_MAX, &v), DEMS_ETOOBIG);
    assert_int_equal(dems_parse_u64("101", 3, 100, &v), DEMS_ETOOBIG);
    assert_int_equal(dems_parse_u64("100", 3, 100, &v), 0);
    assert_true(v == 100);
    v = 7;
    assert_int_equal(dems_parse_u64("", 0, 100, &v), DEMS_EINVAL);
    assert_int_equal(dems_parse_u64("-1", 2, 100, &v), DEMS_EINVAL);
    assert_int_equal(dems_parse_u64(" 1", 2, 100, &v), DEMS_EINVAL);
    assert_int_equal(dems_parse_u64("1x", 2, 100, &v), DEMS_EINVAL);
    assert_true(v == 7); /* untouched on failure */
}

static void test_hex(void **state)
{
    (void)state;
    const uint8_t in[] = {0x00, 0xab, 0xff, 0x10};
    char out[9];
    dems_hex_encode(in, 4, out);
    assert_string_equal(out, "00abff10");
    uint8_t back[4];
    assert_int_equal(dems_hex_decode("00ABff10", 8, back, 4), 0);
    assert_memory_equal(back, in, 4);
    assert_int_equal(dems_hex_decode("00abff1", 7, back, 4), DEMS_EINVAL);
    assert_int_equal(dems_hex_decode("00abfg10", 8, back, 4), DEMS_EINVAL);
}

static void test_base32(void **state)
{
    (void)state;
    /* RFC 4648 section 10 vectors, without padding. */
    char out[32];
    dems_base32_encode((const uint8_t *)"foobar", 6, out);
    assert_string_equal(out, "MZXW6YTBOI");
    dems_base32_encode((const uint8_t *)"f", 1, out);
    assert_string_equal(out, "MY");
    assert_int_equal(dems_base32_len(20), 32);
}

static void test_str(void **state)
{
    (void)state;
    assert_true(dems_str_eq_ci(DEMS_STR("Content-Length"), "content-length"));
    assert_false(dems_str_eq_ci(DEMS_STR("Content-Lengt"), "content-length"));
    struct dems_str t = dems_str_trim(DEMS_STR(" \tabc \t"));
    assert_int_equal(t.len, 3);
    assert_memory_equal(t.ptr, "abc", 3);
}

static void test_buf_cap(void **state)
{
    (void)state;
    struct dems_buf b;
    dems_buf_init(&b, 10);
    assert_int_equal(dems_buf_append(&b, "12345", 5), 0);
    assert_int_equal(dems_buf_append(&b, "12345", 5), 0);
    assert_int_equal(dems_buf_append(&b, "1", 1), DEMS_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "1234512345", 10);
    dems_buf_done(&b);
}

static void test_err_table(void **state)
{
    (void)state;
    assert_string_equal(dems_err_code(DEMS_EINVAL), "invalid_request");
    assert_int_equal(dems_err_http_status(DEMS_ETOOBIG), 413);
    assert_int_equal(dems_err_http_status(DEMS_EAUTH), 401);
    assert_int_equal(dems_err_http_status(DEMS_EFORBIDDEN), 403);
    assert_string_equal(dems_err_code(-999), "internal_error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_u64), cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base32),    cmocka_unit_test(test_str),
        cmocka_unit_test(test_buf_cap),   cmocka_unit_test(test_err_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
