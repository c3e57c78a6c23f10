/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unpacking archives (include/dems/unpack.h). The pure parts: member path
 * checks (absolute, "..", backslashes, drive prefixes, controls, bidi,
 * encodings, lengths), printable names, code page 437, skip reasons and
 * frame heads. Then the reader, in process and in the sandbox, on ZIP files
 * written here with libarchive: regular members extracted whole; symlinks,
 * unsafe names, nested archives and encrypted members listed with why; a
 * ZIP bomb, too many members and a member over its bound stopped; a file
 * that is no ZIP refused.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"
#include "dems/unpack.h"

/* ---- names ---- */

static enum dems_unpack_name_fault check(const char *s)
{
    return dems_unpack_name_check(s, strlen(s));
}

static void test_names(void **state)
{
    (void)state;
    static const char *const ok[] = {"clip.mp4",
                                     "CH01/2024-01-01 12.00.dav",
                                     "a/b/c.txt",
                                     "\xc3\xbc"
                                     "ber.mp4",
                                     "...",
                                     "a..b",
                                     ".hidden",
                                     "12:30.dav",
                                     "x/y:z"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(check(ok[i]), DEMS_UNPACK_NAME_OK);
    assert_int_equal(check(""), DEMS_UNPACK_NAME_EMPTY);
    assert_int_equal(check("/etc/passwd"), DEMS_UNPACK_NAME_ABSOLUTE);
    assert_int_equal(check("../evil.mp4"), DEMS_UNPACK_NAME_DOTDOT);
    assert_int_equal(check("a/../../evil"), DEMS_UNPACK_NAME_DOTDOT);
    assert_int_equal(check("a/.."), DEMS_UNPACK_NAME_DOTDOT);
    assert_int_equal(check(".."), DEMS_UNPACK_NAME_DOTDOT);
    assert_int_equal(check("..\\..\\evil"), DEMS_UNPACK_NAME_BACKSLASH);
    assert_int_equal(check("a\\b"), DEMS_UNPACK_NAME_BACKSLASH);
    assert_int_equal(check("C:evil"), DEMS_UNPACK_NAME_DRIVE);
    assert_int_equal(check("c:/windows/x"), DEMS_UNPACK_NAME_DRIVE);
    assert_int_equal(check("./a"), DEMS_UNPACK_NAME_DOT);
    assert_int_equal(check("a//b"), DEMS_UNPACK_NAME_DOT);
    assert_int_equal(check("a/"), DEMS_UNPACK_NAME_DOT);
    assert_int_equal(check("a\tb"), DEMS_UNPACK_NAME_CONTROL);
    assert_int_equal(check("a\x7f"), DEMS_UNPACK_NAME_CONTROL);
    assert_int_equal(check("a\xc2\x85"), DEMS_UNPACK_NAME_CONTROL); /* U+0085, C1 */
    assert_int_equal(dems_unpack_name_check("a\0b", 3), DEMS_UNPACK_NAME_CONTROL);
    assert_int_equal(check("invoice\xe2\x80\xae"
                           "4pm.exe"),
                     DEMS_UNPACK_NAME_BIDI);                         /* U+202E */
    assert_int_equal(check("a\xe2\x81\xa6"), DEMS_UNPACK_NAME_BIDI); /* U+2066 */
    assert_int_equal(check("\xff"), DEMS_UNPACK_NAME_ENCODING);
    assert_int_equal(check("\xc0\xaf"), DEMS_UNPACK_NAME_ENCODING);     /* overlong "/" */
    assert_int_equal(check("\xed\xa0\x80"), DEMS_UNPACK_NAME_ENCODING); /* a surrogate */
    assert_int_equal(check("\xf4\x90\x80\x80"), DEMS_UNPACK_NAME_ENCODING);
    assert_int_equal(check("\xe2\x80"), DEMS_UNPACK_NAME_ENCODING); /* cut short */
    char long_name[DEMS_UNPACK_NAME_MAX + 2];
    memset(long_name, 'a', sizeof(long_name));
    for (size_t i = 100; i < sizeof(long_name); i += 100)
        long_name[i] = '/';
    assert_int_equal(dems_unpack_name_check(long_name, DEMS_UNPACK_NAME_MAX), DEMS_UNPACK_NAME_OK);
    assert_int_equal(dems_unpack_name_check(long_name, DEMS_UNPACK_NAME_MAX + 1),
                     DEMS_UNPACK_NAME_TOO_LONG);
    memset(long_name, 'b', 300);
    assert_int_equal(dems_unpack_name_check(long_name, 256), DEMS_UNPACK_NAME_COMPONENT_LONG);
    assert_int_equal(dems_unpack_name_check(long_name, 255), DEMS_UNPACK_NAME_OK);
    for (int f = DEMS_UNPACK_NAME_OK; f <= DEMS_UNPACK_NAME_DOT; f++)
        assert_non_null(dems_unpack_name_fault_str((enum dems_unpack_name_fault)f));
    assert_string_equal(dems_unpack_name_fault_str(DEMS_UNPACK_NAME_ABSOLUTE), "absolute path");
}

static void test_display_and_cp437(void **state)
{
    (void)state;
    char out[DEMS_UNPACK_DISPLAY_MAX + 1];
    size_t n = dems_unpack_name_display((const uint8_t *)"a\x01\\b\xff\xe2\x80\xae.mp4", 12, out);
    assert_string_equal(out, "a\\x01\\\\b\\xFF\\u{202E}.mp4");
    assert_int_equal(n, strlen(out));
    assert_int_equal(dems_unpack_name_display((const uint8_t *)"", 0, out), 9);
    assert_string_equal(out, "(no name)");
    uint8_t big[3000];
    memset(big, 0x01, sizeof(big));
    n = dems_unpack_name_display(big, sizeof(big), out);
    assert_true(n <= DEMS_UNPACK_DISPLAY_MAX);
    assert_int_equal(strlen(out), n);
    assert_memory_equal(out + n - 3, "...", 3);
    /* A detail is cut shorter; a text that fits is kept whole. */
    char det[DEMS_UNPACK_DETAIL_MAX + 1];
    n = dems_unpack_detail_display(big, sizeof(big), det);
    assert_true(n <= DEMS_UNPACK_DETAIL_MAX && strlen(det) == n);
    memset(big, 'x', DEMS_UNPACK_DETAIL_MAX);
    assert_int_equal(dems_unpack_detail_display(big, DEMS_UNPACK_DETAIL_MAX, det),
                     DEMS_UNPACK_DETAIL_MAX);
    assert_int_equal(dems_unpack_detail_display(big, DEMS_UNPACK_DETAIL_MAX + 1, det),
                     DEMS_UNPACK_DETAIL_MAX);
    assert_memory_equal(det + DEMS_UNPACK_DETAIL_MAX - 3, "...", 3);
    assert_int_equal(dems_unpack_detail_display(big, 0, det), 0);
    /* Valid UTF-8 is kept; anything else is code page 437. */
    char u[64];
    assert_int_equal(dems_unpack_name_utf8((const uint8_t *)"\xc3\xbc.mp4", 6, u, sizeof(u)), 6);
    assert_string_equal(u, "\xc3\xbc.mp4");
    n = dems_unpack_name_utf8((const uint8_t *)"\x81"
                                               "ber\xe1.dav",
                              9, u, sizeof(u));
    assert_string_equal(u, "\xc3\xbc"
                           "ber\xc3\x9f.dav"); /* "über" and "ß" */
    assert_int_equal(n, strlen(u));
    assert_int_equal(dems_unpack_name_utf8((const uint8_t *)"\xb0\xb0", 2, u, 4), 4); /* cut */
    assert_int_equal(dems_unpack_name_check(u, strlen(u)), DEMS_UNPACK_NAME_OK);
}

static void test_reasons_and_frames(void **state)
{
    (void)state;
    for (int r = DEMS_UNPACK_SYMLINK; r <= DEMS_UNPACK_UNREADABLE; r++) {
        const char *s = dems_unpack_reason_str((enum dems_unpack_reason)r);
        assert_non_null(s);
        assert_int_equal(dems_unpack_reason_parse(s, strlen(s)), r);
    }
    assert_null(dems_unpack_reason_str(0));
    assert_null(dems_unpack_reason_str(99));
    assert_int_equal(dems_unpack_reason_parse("symlinks", 8), 0);
    uint8_t h[DEMS_UNPACK_FRAME_HEAD];
    enum dems_unpack_frame t;
    uint32_t len;
    dems_unpack_frame_head(h, DEMS_UNPACK_DATA, 65536);
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), 0);
    assert_int_equal(t, DEMS_UNPACK_DATA);
    assert_int_equal(len, 65536);
    dems_unpack_frame_head(h, DEMS_UNPACK_DATA, 65537);
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), DEMS_EINVAL);
    dems_unpack_frame_head(h, DEMS_UNPACK_DATA, 0);
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), DEMS_EINVAL);
    dems_unpack_frame_head(h, DEMS_UNPACK_END, 7);
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), DEMS_EINVAL);
    dems_unpack_frame_head(h, DEMS_UNPACK_BEGIN, 4);
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), DEMS_EINVAL);
    dems_unpack_frame_head(h, DEMS_UNPACK_BEGIN, 4 + DEMS_UNPACK_NAME_MAX + 1);
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), DEMS_EINVAL);
    dems_unpack_frame_head(h, (enum dems_unpack_frame)'Z', 8);
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), DEMS_EINVAL);
    dems_unpack_frame_head(h, DEMS_UNPACK_END, 8);
    h[2] = 1;
    assert_int_equal(dems_unpack_frame_parse(h, &t, &len), DEMS_EINVAL);
}

/* ---- archives written with libarchive ---- */

static char dir[256];

struct member {
    const char *name;
    mode_t type;      /* AE_IFREG, AE_IFLNK, AE_IFDIR, AE_IFIFO */
    const char *data; /* regular: its bytes (or the link's target) */
    size_t len;       /* regular: bytes (data repeated or zeros when data is NULL) */
};

/* Writes a ZIP with members; options (e.g. encryption) may be NULL. */
static void write_zip(const char *path, const struct member *m, size_t n, const char *options)
{
    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    if (options != NULL) {
        assert_int_equal(archive_write_set_options(a, options), ARCHIVE_OK);
        assert_int_equal(archive_write_set_passphrase(a, "secret"), ARCHIVE_OK);
    }
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    static uint8_t block[65536];
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_filetype(e, m[i].type);
        archive_entry_set_perm(e, 0644);
        if (m[i].type == AE_IFLNK)
            archive_entry_set_symlink(e, m[i].data);
        if (m[i].type == AE_IFREG)
            archive_entry_set_size(e, (la_int64_t)m[i].len);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        for (size_t done = 0; m[i].type == AE_IFREG && done < m[i].len;) {
            size_t k = m[i].len - done < sizeof(block) ? m[i].len - done : sizeof(block);
            if (m[i].data != NULL)
                for (size_t j = 0; j < k; j++)
                    block[j] = (uint8_t)m[i].data[(done + j) % strlen(m[i].data)];
            else
                memset(block, 0, k);
            assert_int_equal(archive_write_data(a, block, k), (la_ssize_t)k);
            done += k;
        }
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* What the frames said about one member. */
struct got {
    uint32_t index;
    char name[DEMS_UNPACK_DISPLAY_MAX + 1];
    char reason[40]; /* "" when extracted */
    char detail[DEMS_UNPACK_DETAIL_MAX + 1];
    uint64_t size;
    uint8_t head[16];
};

/* Parses the frames in file path into got[]; returns how many members. */
static size_t read_frames(const char *path, struct got *got, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t payload[DEMS_UNPACK_FRAME_MAX];
    uint8_t h[DEMS_UNPACK_FRAME_HEAD];
    size_t n = 0;
    bool open_member = false;
    while (fread(h, 1, sizeof(h), f) == sizeof(h)) {
        enum dems_unpack_frame t;
        uint32_t len;
        assert_int_equal(dems_unpack_frame_parse(h, &t, &len), 0);
        assert_int_equal(fread(payload, 1, len, f), len);
        struct got *g = &got[n];
        if (t == DEMS_UNPACK_BEGIN || t == DEMS_UNPACK_SKIP) {
            assert_false(open_member);
            assert_true(n < cap);
            memset(g, 0, sizeof(*g));
            g->index = (uint32_t)payload[0] | (uint32_t)payload[1] << 8;
            const char *p = (const char *)payload + 4;
            size_t left = len - 4;
            if (t == DEMS_UNPACK_SKIP) {
                snprintf(g->reason, sizeof(g->reason), "%.39s", p);
                left -= strlen(p) + 1, p += strlen(p) + 1;
                snprintf(g->detail, sizeof(g->detail), "%.200s", p);
                left -= strlen(p) + 1, p += strlen(p) + 1;
                n++;
            } else {
                open_member = true;
            }
            memcpy(g->name, p, left);
        } else if (t == DEMS_UNPACK_DATA) {
            assert_true(open_member);
            if (g->size < sizeof(g->head))
                memcpy(g->head + g->size, payload,
                       len < sizeof(g->head) - g->size ? len : sizeof(g->head) - g->size);
            g->size += len;
        } else if (t == DEMS_UNPACK_END) {
            assert_true(open_member);
            uint64_t sz = 0;
            for (int i = 0; i < 8; i++)
                sz |= (uint64_t)payload[i] << (8 * i);
            assert_int_equal(sz, g->size);
            open_member = false;
            n++;
        } else {
            assert_int_equal(t, DEMS_UNPACK_ABANDON);
            assert_true(open_member);
            snprintf(g->reason, sizeof(g->reason), "%.39s", (const char *)payload);
            open_member = false;
            n++;
        }
    }
    assert_false(open_member);
    fclose(f);
    return n;
}

static struct dems_unpack_limits limits_for(const char *zip)
{
    struct stat st;
    assert_int_equal(stat(zip, &st), 0);
    return (struct dems_unpack_limits){.max_members = 100,
                                       .max_member_bytes = 1 << 20,
                                       .max_total_bytes = 64 << 20,
                                       .max_ratio = 100,
                                       .archive_size = (uint64_t)st.st_size};
}

/* Unpacks zip (in the sandbox or not) into frames at DIR/frames; returns dems_unpack's status. */
static int unpack(const char *zip, const struct dems_unpack_limits *lim, bool sandboxed,
                  json_t **summary, struct dems_media_error *err)
{
    char out[300];
    snprintf(out, sizeof(out), "%s/frames", dir);
    int in = open(zip, O_RDONLY | O_CLOEXEC);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(in >= 0 && fd >= 0);
    struct dems_media_limits mlim;
    dems_media_limits_init(&mlim);
    mlim.timeout = 60;
    *summary = NULL;
    int r = sandboxed ? dems_unpack_sandboxed(in, fd, lim, &mlim, summary, err)
                      : dems_unpack(in, fd, lim, summary, err);
    close(in);
    close(fd);
    return r;
}

static const struct got *find(const struct got *g, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(g[i].name, name) == 0)
            return &g[i];
    static const struct got none;
    for (size_t i = 0; i < n; i++)
        print_message("member %u: %s [%s] %s\n", g[i].index, g[i].name, g[i].reason, g[i].detail);
    fail_msg("no member %s", name);
    return &none;
}

static void mixed(bool sandboxed)
{
    char zip[300], frames[300];
    snprintf(zip, sizeof(zip), "%s/mixed.zip", dir);
    snprintf(frames, sizeof(frames), "%s/frames", dir);
    const struct member m[] = {
        {"CH01/", AE_IFDIR, NULL, 0},
        {"CH01/a.dav", AE_IFREG, "DHAV-frame-", 200000},
        {"CH01/b.txt", AE_IFREG, "hello", 5},
        {"empty.bin", AE_IFREG, "", 0},
        {"../evil.mp4", AE_IFREG, "evil", 4},
        {"/abs/evil.mp4", AE_IFREG, "evil", 4},
        {"a\\..\\b.mp4", AE_IFREG, "evil", 4},
        {"link.mp4", AE_IFLNK, "/etc/passwd", 0},
        {"inner.zip", AE_IFREG, "PK\x03\x04", 100}, /* sniffs as a ZIP */
        {"big.bin", AE_IFREG, "0123456789", 2 << 20},
    };
    write_zip(zip, m, sizeof(m) / sizeof(m[0]), NULL);
    struct dems_unpack_limits lim = limits_for(zip);
    json_t *sum;
    struct dems_media_error err = {0};
    int r = unpack(zip, &lim, sandboxed, &sum, &err);
    if (r != 0)
        fail_msg("unpack failed: %s", err.message);
    assert_int_equal(json_integer_value(json_object_get(sum, "entries")), 10);
    assert_int_equal(json_integer_value(json_object_get(sum, "directories")), 1);
    assert_int_equal(json_integer_value(json_object_get(sum, "extracted")), 3);
    assert_int_equal(json_integer_value(json_object_get(sum, "skipped")), 6);
    json_decref(sum);
    struct got g[16];
    size_t n = read_frames(frames, g, 16);
    assert_int_equal(n, 9);
    const struct got *a = find(g, n, "CH01/a.dav");
    assert_string_equal(a->reason, "");
    assert_int_equal(a->size, 200000);
    assert_memory_equal(a->head, "DHAV-frame-DHAV-", 16);
    assert_int_equal(a->index, 1);
    assert_int_equal(find(g, n, "CH01/b.txt")->size, 5);
    assert_int_equal(find(g, n, "empty.bin")->size, 0);
    assert_string_equal(find(g, n, "../evil.mp4")->reason, "unsafe_name");
    assert_string_equal(find(g, n, "../evil.mp4")->detail, "parent directory (..)");
    assert_string_equal(find(g, n, "/abs/evil.mp4")->detail, "absolute path");
    /* libarchive reads a backslash in a ZIP name as a separator, so the
     * Windows-style traversal is caught as "..". */
    assert_string_equal(find(g, n, "a/../b.mp4")->detail, "parent directory (..)");
    assert_string_equal(find(g, n, "link.mp4")->reason, "symlink");
    assert_string_equal(find(g, n, "link.mp4")->detail, "-> /etc/passwd");
    assert_string_equal(find(g, n, "inner.zip")->reason, "nested_archive");
    assert_string_equal(find(g, n, "big.bin")->reason, "too_large");
}

static void test_mixed_in_process(void **state)
{
    (void)state;
    mixed(false);
}

static void test_mixed_sandboxed(void **state)
{
    (void)state;
    mixed(true);
}

static void test_encrypted(void **state)
{
    (void)state;
    char zip[300], frames[300];
    snprintf(zip, sizeof(zip), "%s/enc.zip", dir);
    snprintf(frames, sizeof(frames), "%s/frames", dir);
    const struct member m[] = {{"secret.mp4", AE_IFREG, "data", 1000}};
    write_zip(zip, m, 1, "zip:encryption=zipcrypt");
    struct dems_unpack_limits lim = limits_for(zip);
    json_t *sum;
    struct dems_media_error err = {0};
    assert_int_equal(unpack(zip, &lim, true, &sum, &err), 0);
    json_decref(sum);
    struct got g[4];
    assert_int_equal(read_frames(frames, g, 4), 1);
    assert_string_equal(g[0].reason, "encrypted");
}

static void test_bounds(void **state)
{
    (void)state;
    char zip[300];
    snprintf(zip, sizeof(zip), "%s/bomb.zip", dir);
    /* 64 MiB of zeros deflate to about 64 KiB: a ratio near 1000. */
    const struct member bomb[] = {{"zeros.bin", AE_IFREG, NULL, 64u << 20}};
    write_zip(zip, bomb, 1, NULL);
    struct dems_unpack_limits lim = limits_for(zip);
    lim.max_member_bytes = 1ULL << 40;
    lim.max_total_bytes = 1ULL << 40;
    json_t *sum;
    struct dems_media_error err = {0};
    assert_int_equal(unpack(zip, &lim, true, &sum, &err), DEMS_ETOOBIG);
    assert_int_equal(err.code, DEMS_MEDIA_TOO_LARGE);
    assert_non_null(strstr(err.message, "expansion ratio over 100"));
    /* The total bound, with the ratio out of the way. */
    lim.max_ratio = 100000;
    lim.max_total_bytes = 1 << 20;
    assert_int_equal(unpack(zip, &lim, false, &sum, &err), DEMS_ETOOBIG);
    assert_non_null(strstr(err.message, "unpack_max_total_bytes"));
    /* Too many members. */
    struct member many[12];
    char names[12][8];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof(names[i]), "f%d", i);
        many[i] = (struct member){names[i], AE_IFREG, "x", 1};
    }
    snprintf(zip, sizeof(zip), "%s/many.zip", dir);
    write_zip(zip, many, 12, NULL);
    lim = limits_for(zip);
    lim.max_members = 11;
    assert_int_equal(unpack(zip, &lim, true, &sum, &err), DEMS_ETOOBIG);
    assert_non_null(strstr(err.message, "more than 11 members"));
    lim.max_members = 12;
    assert_int_equal(unpack(zip, &lim, true, &sum, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(sum, "extracted")), 12);
    json_decref(sum);
}

static void test_not_a_zip(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof(path), "%s/not.zip", dir);
    FILE *f = fopen(path, "wb");
    fputs("PK\x03\x04 this is no zip at all, only its first four bytes", f);
    fclose(f);
    struct dems_unpack_limits lim = limits_for(path);
    json_t *sum;
    struct dems_media_error err = {0};
    assert_int_equal(unpack(path, &lim, true, &sum, &err), DEMS_EINVAL);
    assert_int_equal(err.code, DEMS_MEDIA_INVALID);
    assert_non_null(strstr(err.message, "not a readable ZIP archive"));
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/dems-unpack-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_display_and_cp437),
        cmocka_unit_test(test_reasons_and_frames),
        cmocka_unit_test(test_mixed_in_process),
        cmocka_unit_test(test_mixed_sandboxed),
        cmocka_unit_test(test_encrypted),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_not_a_zip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
