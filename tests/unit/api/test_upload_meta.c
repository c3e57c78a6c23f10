/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for server/api/upload_meta.c: tus metadata and RFC 3339 times. */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
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
    /* A fraction does not stand for the zone. */
    assert_false(upload_parse_rfc3339("2026-11-24T08:30:00.123", 23, &t));
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

/* Builds "filename <base64 of raw>" for raw bytes. */
static json_t *parse_filename(const char *raw, size_t n, char *err)
{
    char b64[1400], header[1500], declared[65];
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)raw, n,
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(header, sizeof(header), "filename %s", b64);
    return parse(header, declared, err);
}

/* A description as long as documented (2000 bytes) is kept whole; one byte more is refused. */
static void test_description_length(void **state)
{
    (void)state;
    static char raw[2001], b64[2800], header[2900];
    char err[200], declared[65];
    memset(raw, 'd', sizeof(raw));
    for (size_t n = 2000; n <= 2001; n++) {
        sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)raw, n,
                          sodium_base64_VARIANT_ORIGINAL);
        snprintf(header, sizeof(header), "description %s", b64);
        json_t *m = parse(header, declared, err);
        if (n == 2000) {
            assert_non_null(m);
            assert_int_equal(json_string_length(json_object_get(m, "description")), 2000);
            json_decref(m);
        } else {
            assert_null(m);
            assert_non_null(strstr(err, "description"));
        }
    }
}

static void test_filename_utf8_and_bidi(void **state)
{
    (void)state;
    char err[200];
    static const struct {
        const char *raw;
        size_t n;
        const char *why; /* NULL: accepted */
    } cases[] = {
        {"caf\xc3\xa9.mp4", 9, NULL},               /* é */
        {"\xe8\xad\xa6\xe5\xaf\x9f.mp4", 10, NULL}, /* 警察 */
        {"\xf0\x9f\x8e\xa5.mp4", 8, NULL},          /* U+1F3A5 */
        {"a\xe2\x80\x8f"
         "b",
         5, NULL},                        /* U+200F RLM is a mark, not an override */
        {"caf\xe9.mp4", 8, "UTF-8"},      /* Latin-1 */
        {"\xc0\xaf.mp4", 6, "UTF-8"},     /* overlong '/' */
        {"\xed\xa0\x80.mp4", 7, "UTF-8"}, /* surrogate */
        {"\xf4\x90\x80\x80", 4, "UTF-8"}, /* above U+10FFFF */
        {"ab\xe2\x82", 4, "UTF-8"},       /* truncated */
        {"\xff", 1, "UTF-8"},
        {"invoice\xe2\x80\xaegpj.exe", 17, "bidirectional"}, /* U+202E */
        {"a\xe2\x80\xaa"
         "b",
         5, "bidirectional"}, /* U+202A */
        {"a\xe2\x81\xa6"
         "b",
         5, "bidirectional"}, /* U+2066 */
        {"a\xe2\x81\xa9"
         "b",
         5, "bidirectional"}, /* U+2069 */
        {"a\xc2\x85"
         "b",
         4, "control"}, /* U+0085 (C1) */
        {"a\xc2\x9f"
         "b",
         4, "control"},               /* U+009F (C1) */
        {"a\x1b[31mb", 8, "control"}, /* C0 ESC */
        {"a\x7f"
         "b",
         3, "control"},
        {"a\0b", 3, "control"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *m = parse_filename(cases[i].raw, cases[i].n, err);
        if (cases[i].why == NULL) {
            assert_non_null(m);
            const json_t *f = json_object_get(m, "filename");
            assert_non_null(f);
            assert_int_equal(json_string_length(f), cases[i].n);
            json_decref(m);
        } else {
            assert_null(m);
            assert_non_null(strstr(err, "filename"));
            assert_non_null(strstr(err, cases[i].why));
        }
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
        cmocka_unit_test(test_filename_utf8_and_bidi),
        cmocka_unit_test(test_description_length),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
