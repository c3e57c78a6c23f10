/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for server/api/upload_meta.c: tus metadata and RFC 3339 times. */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdint.h>
#include <string.h>

#include "../../../server/api/upload_meta.h"

#define NOW 1795000000 /* 2026-11-18 */

static void test_rfc3339(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_true(upload_parse_rfc3339("1970-01-01T00:00:00Z", 20, &t));
    assert_true(t == 0);
    assert_true(upload_parse_rfc3339("2026-11-24T09:30:00.250+01:00", 29, &t));
    assert_true(t == 1795509000);
    assert_true(upload_parse_rfc3339("2026-11-24T08:30:00-00:00", 25, &t));
    assert_true(t == 1795509000);
    assert_false(upload_parse_rfc3339("2026-02-30T00:00:00Z", 20, &t));
    assert_false(upload_parse_rfc3339("2026-11-24 08:30:00Z", 20, &t));
    assert_false(upload_parse_rfc3339("2026-11-24T24:00:00Z", 20, &t));
    assert_false(upload_parse_rfc3339("2026-11-24T08:30:00", 19, &t));
    assert_false(upload_parse_rfc3339("2026-11-24T08:30:00.Z", 21, &t));
    assert_false(upload_parse_rfc3339("2026-11-24T08:30:00+0100", 24, &t));
}

static json_t *parse(const char *h, char *declared, char *err)
{
    return upload_meta_parse(dems_str_from(h), NOW, declared, err, 200);
}

static void test_metadata_ok(void **state)
{
    (void)state;
    char declared[65], err[200];
    /* filename "a.mp4", filetype "video/mp4", flag key without value is unknown */
    json_t *m = parse("filename YS5tcDQ=, filetype dmlkZW8vbXA0", declared, err);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "filename")), "a.mp4");
    assert_string_equal(json_string_value(json_object_get(m, "content_type")), "video/mp4");
    assert_string_equal(declared, "");
    json_decref(m);
    m = parse("", declared, err);
    assert_non_null(m);
    assert_int_equal(json_object_size(m), 0);
    json_decref(m);
    /* sha256 of "" declared in upper case is normalised. */
    m = parse("sha256 "
              "RTNCMEM0NDI5OEZDMUMxNDlBRkJGNEM4OTk2RkI5MjQyN0FFNDFFNDY0OUI5MzRDQTQ5NTk5MUI3ODUy"
              "Qjg1NQ==",
              declared, err);
    assert_non_null(m);
    assert_string_equal(declared,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    json_decref(m);
}

static void test_metadata_errors(void **state)
{
    (void)state;
    char declared[65], err[200];
    static const struct {
        const char *header, *field;
    } cases[] = {
        {"filename %%%", "filename"},
        {"colour cmVk", "colour"},
        {"filename YQ==,filename Yg==", "filename"},
        {"recording_start MjAyNi0xMS0xMFQxMDowMDowMFo=,"
         "recording_end MjAyNi0xMS0xMFQwOTowMDowMFo=",
         "recording_end"},
        {"recording_start MTk5OS0xMi0zMVQwMDowMDowMFo=", "recording_start"},
        {"officer_id YSBi", "officer_id"},
        {"filetype dmlkZW8=", "filetype"},
        {"sha256 YWJj", "sha256"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *m = parse(cases[i].header, declared, err);
        assert_null(m);
        assert_non_null(strstr(err, cases[i].field));
    }
}

static void test_ids(void **state)
{
    (void)state;
    assert_true(upload_id_ok(dems_str_from("0123456789abcdef0123456789abcdef")));
    assert_false(upload_id_ok(dems_str_from("0123456789ABCDEF0123456789abcdef")));
    assert_false(upload_id_ok(dems_str_from("0123456789abcdef")));
    assert_false(upload_id_ok(dems_str_from("../../../../../../etc/passwd/xxxx")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_metadata_ok),
        cmocka_unit_test(test_metadata_errors),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
