/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/http/download.c: Content-Disposition for hostile
 * and non-ASCII names (RFC 6266 / RFC 8187), the file-name check, and the
 * Content-Type allow-list.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <string.h>

#include "dems/err.h"
#include "dems/http.h"

static const char *disp(const char *name)
{
    static char out[1024];
    assert_int_equal(dems_http_content_disposition("attachment", name, "ID", out, sizeof(out)), 0);
    return out;
}

static void test_ascii_names_stay_plain(void **state)
{
    (void)state;
    assert_string_equal(disp("clip 1.mp4"), "attachment; filename=\"clip 1.mp4\"");
    assert_string_equal(disp(""), "attachment; filename=\"ID\"");
}

static void test_quotes_and_backslashes_cannot_end_the_value(void **state)
{
    (void)state;
    /* The fallback replaces them; filename* carries the exact name. */
    assert_string_equal(disp("a\"; filename=evil.exe"),
                        "attachment; filename=\"a_; filename=evil.exe\"; "
                        "filename*=UTF-8''a%22%3B%20filename%3Devil.exe");
    assert_string_equal(disp("x\\y"), "attachment; filename=\"x_y\"; filename*=UTF-8''x%5Cy");
}

static void test_non_ascii_names_use_filename_star(void **state)
{
    (void)state;
    assert_string_equal(disp("caméra €.mp4"), "attachment; filename=\"cam_ra _.mp4\"; "
                                              "filename*=UTF-8''cam%C3%A9ra%20%E2%82%AC.mp4");
    assert_string_equal(disp("日本"),
                        "attachment; filename=\"__\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC");
}

static void test_controls_bidi_and_bad_utf8_are_dropped(void **state)
{
    (void)state;
    /* "invoice<RLO>fdp.exe" would display as "invoiceexe.pdf". */
    assert_string_equal(disp("invoice\xE2\x80\xAE"
                             "fdp.exe"),
                        "attachment; filename=\"invoicefdp.exe\"; "
                        "filename*=UTF-8''invoicefdp.exe");
    assert_string_equal(disp("a\r\nSet-Cookie: x=y"), "attachment; filename=\"aSet-Cookie: x=y\"; "
                                                      "filename*=UTF-8''aSet-Cookie%3A%20x%3Dy");
    assert_string_equal(disp("\xFF\xC0\xAF"
                             "b"),
                        "attachment; filename=\"b\"; filename*=UTF-8''b");
    /* A right-to-left mark is a legal name character but no use in a header. */
    assert_string_equal(disp("a\xE2\x80\x8F"
                             "b"),
                        "attachment; filename=\"ab\"; filename*=UTF-8''ab");
    /* Nothing left: the fallback. */
    assert_string_equal(disp("\xE2\x81\xA6\x01"), "attachment; filename=\"ID\"");
}

static void test_too_small_is_an_error(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(
        dems_http_content_disposition("attachment", "long-name.mp4", "ID", out, sizeof(out)),
        DEMS_ETOOBIG);
}

static void test_filename_ok(void **state)
{
    (void)state;
    static const char *const good[] = {"clip.mp4", "caméra.mp4", "日本.mov", "a b-c_d.e",
                                       "a\xE2\x80\x8F"
                                       "b"};
    static const char *const bad[] = {"a\xE2\x80\xAE"
                                      "b",
                                      "a\xE2\x81\xA6"
                                      "b",
                                      "tab\there",
                                      "nl\n",
                                      "\xC3\x28",
                                      "\xED\xA0\x80",
                                      "\xC0\xAF",
                                      "del\x7F",
                                      "c1\xC2\x85"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(dems_http_filename_ok(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(dems_http_filename_ok(bad[i], strlen(bad[i])));
}

static void test_served_type_allow_list(void **state)
{
    (void)state;
    assert_string_equal(dems_http_served_type("video/mp4"), "video/mp4");
    assert_string_equal(dems_http_served_type("Video/MP4; codecs=avc1"), "video/mp4");
    assert_string_equal(dems_http_served_type("image/jpeg"), "image/jpeg");
    /* Court bundles and archives (always as attachments). */
    assert_string_equal(dems_http_served_type("application/zip"), "application/zip");
    assert_string_equal(dems_http_served_type("text/html"), "application/octet-stream");
    assert_string_equal(dems_http_served_type("image/svg+xml"), "application/octet-stream");
    assert_string_equal(dems_http_served_type("video/mp4x"), "application/octet-stream");
    assert_string_equal(dems_http_served_type(""), "application/octet-stream");
    assert_string_equal(dems_http_served_type("video/mp4\r\nX: y"), "application/octet-stream");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_names_stay_plain),
        cmocka_unit_test(test_quotes_and_backslashes_cannot_end_the_value),
        cmocka_unit_test(test_non_ascii_names_use_filename_star),
        cmocka_unit_test(test_controls_bidi_and_bad_utf8_are_dropped),
        cmocka_unit_test(test_too_small_is_an_error),
        cmocka_unit_test(test_filename_ok),
        cmocka_unit_test(test_served_type_allow_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
