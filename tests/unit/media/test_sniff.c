/* SPDX-License-Identifier: Apache-2.0 */
/* Magic-number sniffing (common/media/sniff.c): each family, the edges of
 * the head, and what is refused by the portal's allow-list. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdint.h>
#include <string.h>

#include "dems/sniff.h"

static struct dems_sniffed of(const char *bytes, size_t n)
{
    uint8_t head[DEMS_SNIFF_HEAD + 64];
    memset(head, 0xaa, sizeof(head));
    memcpy(head, bytes, n);
    return dems_sniff(head, n);
}

#define SNIFF(lit) of((lit), sizeof(lit) - 1)

static void check(struct dems_sniffed s, enum dems_sniff_kind kind, const char *format)
{
    assert_int_equal(s.kind, kind);
    assert_string_equal(s.format, format);
    assert_non_null(s.label);
    assert_non_null(s.mime_type);
}

static void test_video(void **state)
{
    (void)state;
    check(SNIFF("\x00\x00\x00\x20"
                "ftypisom\x00\x00\x02\x00"),
          DEMS_SNIFF_VIDEO, "mp4");
    check(SNIFF("\x00\x00\x00\x14"
                "ftypqt  \x00\x00\x02\x00"),
          DEMS_SNIFF_VIDEO, "quicktime");
    check(SNIFF("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm"), DEMS_SNIFF_VIDEO, "webm");
    check(SNIFF("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska"), DEMS_SNIFF_VIDEO,
          "matroska");
    check(SNIFF("RIFF\x10\x00\x00\x00"
                "AVI LIST"),
          DEMS_SNIFF_VIDEO, "avi");
    check(SNIFF("DHAV\xfd\x00\x00\x00"), DEMS_SNIFF_VIDEO, "dahua-dav");
    check(SNIFF("IMKH\x01\x01\x00\x00"), DEMS_SNIFF_VIDEO, "hikvision");
    check(SNIFF("\x00\x00\x00\x01\x67\x42\xc0\x1e"), DEMS_SNIFF_VIDEO, "h26x-annexb");
    check(SNIFF("\x00\x00\x00\x01\x40\x01\x0c\x01"), DEMS_SNIFF_VIDEO, "h26x-annexb");
    check(SNIFF("\x00\x00\x01\xba\x44\x00"), DEMS_SNIFF_VIDEO, "mpeg-ps");
    /* A transport stream needs its second sync byte one packet on. */
    uint8_t ts[400] = {0};
    ts[0] = 0x47;
    ts[188] = 0x47;
    check(dems_sniff(ts, sizeof(ts)), DEMS_SNIFF_VIDEO, "mpeg-ts");
    ts[188] = 0;
    assert_int_equal(dems_sniff(ts, sizeof(ts)).kind, DEMS_SNIFF_UNKNOWN);
}

static void test_stills_audio_archives(void **state)
{
    (void)state;
    check(SNIFF("\xff\xd8\xff\xe0\x00\x10JFIF"), DEMS_SNIFF_IMAGE, "jpeg");
    check(SNIFF("\x89PNG\r\n\x1a\n\x00\x00"), DEMS_SNIFF_IMAGE, "png");
    check(SNIFF("\x00\x00\x00\x18"
                "ftypheic\x00\x00"),
          DEMS_SNIFF_IMAGE, "heic");
    check(SNIFF("RIFF\x10\x00\x00\x00"
                "WAVEfmt "),
          DEMS_SNIFF_AUDIO, "wav");
    check(SNIFF("ID3\x04\x00"), DEMS_SNIFF_AUDIO, "mp3");
    check(SNIFF("\x00\x00\x00\x18"
                "ftypM4A \x00\x00"),
          DEMS_SNIFF_AUDIO, "m4a");
    check(SNIFF("PK\x03\x04\x14\x00"), DEMS_SNIFF_ARCHIVE, "zip");
    check(SNIFF("7z\xbc\xaf\x27\x1c\x00\x04"), DEMS_SNIFF_ARCHIVE, "7z");
    uint8_t tar[512] = {'a'};
    memcpy(tar + 257, "ustar", 5);
    check(dems_sniff(tar, sizeof(tar)), DEMS_SNIFF_ARCHIVE, "tar");
    /* ... but not past the head: a tar cut before its magic is unknown. */
    assert_int_equal(dems_sniff(tar, 260).kind, DEMS_SNIFF_UNKNOWN);
}

static void test_refused_kinds(void **state)
{
    (void)state;
    struct dems_sniffed s = SNIFF("MZ\x90\x00\x03\x00");
    check(s, DEMS_SNIFF_OTHER, "windows-program");
    assert_false(dems_sniff_portal_allowed(s.kind));
    s = SNIFF("%PDF-1.7\n");
    check(s, DEMS_SNIFF_OTHER, "pdf");
    assert_false(dems_sniff_portal_allowed(s.kind));
    s = SNIFF("hello, this is text\n");
    check(s, DEMS_SNIFF_UNKNOWN, "unknown");
    assert_false(dems_sniff_portal_allowed(s.kind));
    assert_string_equal(dems_sniff_kind_name(s.kind), "unknown");
    /* Empty and one-byte heads are unknown, never read past. */
    assert_int_equal(dems_sniff((const uint8_t *)"", 0).kind, DEMS_SNIFF_UNKNOWN);
    assert_int_equal(dems_sniff((const uint8_t *)"\xff", 1).kind, DEMS_SNIFF_UNKNOWN);
    assert_int_equal(dems_sniff((const uint8_t *)"\x00\x00\x00\x01", 4).kind, DEMS_SNIFF_UNKNOWN);
    /* A NAL with the forbidden bit is not Annex B. */
    assert_int_equal(SNIFF("\x00\x00\x00\x01\xe7\x42").kind, DEMS_SNIFF_UNKNOWN);
    assert_true(dems_sniff_portal_allowed(DEMS_SNIFF_VIDEO));
    assert_true(dems_sniff_portal_allowed(DEMS_SNIFF_ARCHIVE));
    assert_string_equal(dems_sniff_kind_name(DEMS_SNIFF_ARCHIVE), "archive");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_video),
        cmocka_unit_test(test_stills_audio_archives),
        cmocka_unit_test(test_refused_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
