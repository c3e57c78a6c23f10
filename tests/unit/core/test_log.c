/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for server/core/log.c: logged strings are escaped and bounded,
 * whatever bytes a client sent.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demsd/log.h"

/* dems_log_str(s, len) as a C string (owned by the caller). */
static char *logged(const char *s, size_t len)
{
    json_t *j = dems_log_str(s, len);
    assert_non_null(j);
    char *out = strdup(json_string_value(j));
    json_decref(j);
    return out;
}

static void expect(const char *in, size_t len, const char *want)
{
    char *got = logged(in, len);
    if (strcmp(got, want) != 0)
        fail_msg("got \"%s\", want \"%s\"", got, want);
    free(got);
}

static void test_plain_text_unchanged(void **state)
{
    (void)state;
    expect("/v1/evidence/abc", 16, "/v1/evidence/abc");
    expect("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
           "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    expect("a\\x41", 5, "a\\x41"); /* a backslash is left alone: escaping twice is a no-op */
    expect("", 0, "");
}

static void test_controls_and_bad_utf8_escaped(void **state)
{
    (void)state;
    expect("a\x1b[2Jb", 6, "a\\x1b[2Jb");
    expect("x\r\ny\t\x7f", 6, "x\\x0d\\x0ay\\x09\\x7f");
    expect("nul\0byte", 8, "nul\\x00byte");
    expect("\xff\xfe", 2, "\\xff\\xfe");
    expect("\xc3", 1, "\\xc3");                                  /* cut short */
    expect("\xc0\xaf", 2, "\\xc0\\xaf");                         /* overlong '/' */
    expect("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");                /* a surrogate */
    expect("\xc2\x85", 2, "\\u0085");                            /* C1 control NEL */
    expect("evil\xe2\x80\xaetxt.exe", 14, "evil\\u202etxt.exe"); /* right-to-left override */
    expect("\xe2\x80\xa8\xef\xbb\xbf", 6, "\\u2028\\ufeff");
}

static void test_bounded_with_mark(void **state)
{
    (void)state;
    size_t n = 32 * 1024;
    char *big = malloc(n);
    memset(big, 'a', n);
    big[0] = '/';
    char *got = logged(big, n);
    assert_true(strlen(got) <= DEMS_LOG_STR_MAX + 40);
    assert_memory_equal(got, big, DEMS_LOG_STR_MAX);
    assert_string_equal(got + DEMS_LOG_STR_MAX, "...[truncated, 32768 bytes]");
    free(got);
    /* Escapes count against the bound, and a character is never split. */
    for (size_t i = 0; i < n; i++)
        big[i] = "\x01\xe2\x82\xac"[i % 4];
    got = logged(big, n);
    char *mark = strstr(got, "...[truncated, 32768 bytes]");
    assert_non_null(mark);
    assert_true((size_t)(mark - got) <= DEMS_LOG_STR_MAX);
    assert_memory_equal(got, "\\x01\xe2\x82\xac\\x01", 11);
    json_t *j = json_string(got); /* still valid UTF-8 */
    assert_non_null(j);
    json_decref(j);
    free(got);
    /* Exactly the bound: no mark. */
    got = logged(big + 1, 0);
    assert_string_equal(got, "");
    free(got);
    memset(big, 'b', DEMS_LOG_STR_MAX);
    got = logged(big, DEMS_LOG_STR_MAX);
    assert_int_equal(strlen(got), DEMS_LOG_STR_MAX);
    free(got);
    free(big);
}

/* Runs dems_log with stderr sent to a file; returns what it wrote. */
static char *capture(json_t *fields, const char *arg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    int saved = dup(2);
    dup2(fileno(f), 2);
    dems_log(DEMS_LOG_WARN, "rid", fields, "refused %s", arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = ftell(f);
    rewind(f);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return out;
}

static void test_dems_log_escapes_every_field(void **state)
{
    (void)state;
    char big[2000];
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *line =
        capture(json_pack("{s:s,s:s,s:i}", "path", big, "agent", "x\x1b]0;pwned\x07y", "n", 5),
                "\x1b[31mred\xff");
    assert_true(strlen(line) < 256 + 1024 + 200);
    assert_int_equal(line[strlen(line) - 1], '\n');
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    assert_non_null(o);
    assert_non_null(
        strstr(json_string_value(json_object_get(o, "path")), "[truncated, 1999 bytes]"));
    assert_string_equal(json_string_value(json_object_get(o, "agent")), "x\\x1b]0;pwned\\x07y");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "refused \\x1b[31mred\\xff");
    assert_int_equal(json_integer_value(json_object_get(o, "n")), 5);
    assert_string_equal(json_string_value(json_object_get(o, "request_id")), "rid");
    json_decref(o);
    free(line);
}

/* Runs fn with stderr sent to a file; returns what was written. */
static char *capture_fn(void (*fn)(void))
{
    FILE *f = tmpfile();
    assert_non_null(f);
    int saved = dup(2);
    dup2(fileno(f), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = ftell(f);
    rewind(f);
    char *out = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return out;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void flood(void)
{
    for (int i = 0; i < 20000; i++)
        DEMS_LOG_LIMITED(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "flood"),
                         "accept failed: %d", i);
    DEMS_LOG_LIMITED(DEMS_LOG_WARN, NULL, NULL, "another site");
}

static void after_interval(void)
{
    usleep(1100 * 1000);
    dems_log_flush();
    dems_log_flush(); /* nothing more to say */
}

static void test_repeated_lines_limited(void **state)
{
    (void)state;
    dems_log_set_limit(5, 1000);
    char *out = capture_fn(flood);
    assert_int_equal(count(out, "accept failed"), 5);
    assert_int_equal(count(out, "another site"), 1);
    assert_int_equal(count(out, "log_suppressed"), 0);
    free(out);
    out = capture_fn(after_interval);
    assert_int_equal(count(out, "\n"), 1);
    assert_non_null(strstr(out, "\"suppressed\":19995"));
    assert_non_null(strstr(out, "suppressed 19995 similar lines from tests/unit/core/test_log.c:"));
    free(out);
    /* A new interval writes again. */
    out = capture_fn(flood);
    assert_int_equal(count(out, "accept failed"), 5);
    free(out);
    dems_log_set_limit(DEMS_LOG_BURST, DEMS_LOG_INTERVAL * 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_unchanged),
        cmocka_unit_test(test_controls_and_bad_utf8_escaped),
        cmocka_unit_test(test_bounded_with_mark),
        cmocka_unit_test(test_dems_log_escapes_every_field),
        cmocka_unit_test(test_repeated_lines_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
