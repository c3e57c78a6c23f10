/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/http/query.c: application/x-www-form-urlencoded
 * decoding of query strings, and what it refuses.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/http.h"

static int parse(struct dems_http_query *q, const char *raw, char *err, size_t errlen)
{
    return dems_http_query_parse(q, dems_str_from(raw), err, errlen);
}

/* The decoded value of name, as a NUL-terminated string; NULL when absent. */
static const char *get(const struct dems_http_query *q, const char *name)
{
    const struct dems_str *v = dems_http_query_get(q, name);
    if (v == NULL)
        return NULL;
    assert_int_equal(v->ptr[v->len], '\0');
    return v->ptr;
}

static void test_decodes_escapes_and_plus(void **state)
{
    (void)state;
    struct dems_http_query q;
    char err[160] = "";
    assert_int_equal(parse(&q,
                           "before=2026-01-01T00%3A00%3A00Z&a=x+y&b=%2B01%3a00&c=%e2%82%ac"
                           "&d=&e&%6eame=v&f=a=b",
                           err, sizeof(err)),
                     0);
    assert_string_equal(get(&q, "before"), "2026-01-01T00:00:00Z");
    assert_string_equal(get(&q, "a"), "x y");    /* '+' is a space */
    assert_string_equal(get(&q, "b"), "+01:00"); /* %2B is a plus; lower-case hex too */
    assert_string_equal(get(&q, "c"), "\xe2\x82\xac");
    assert_string_equal(get(&q, "d"), "");
    assert_string_equal(get(&q, "e"), "");     /* no '=': empty value */
    assert_string_equal(get(&q, "name"), "v"); /* names are decoded too */
    assert_string_equal(get(&q, "f"), "a=b");  /* split at the first '=' only */
    assert_null(get(&q, "missing"));
    assert_null(get(&q, "%6eame"));
    assert_int_equal(q.nparams, 8);
    dems_http_query_done(&q);
}

static void test_empty_and_skipped_pairs(void **state)
{
    (void)state;
    struct dems_http_query q;
    char err[160];
    assert_int_equal(parse(&q, "", err, sizeof(err)), 0);
    assert_int_equal(q.nparams, 0);
    dems_http_query_done(&q);
    assert_int_equal(parse(&q, "&&a=1&&", err, sizeof(err)), 0);
    assert_int_equal(q.nparams, 1);
    assert_string_equal(get(&q, "a"), "1");
    dems_http_query_done(&q);
}

static void test_refuses_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *raw;
        const char *detail; /* a substring of the error */
    } bad[] = {
        {"before=%zz", "\"before\" is malformed"},
        {"before=%", "\"before\" is malformed"},
        {"before=%4", "\"before\" is malformed"},
        {"before=abc%4", "\"before\" is malformed"},
        {"before=%g1", "\"before\" is malformed"},
        {"x=%00", "\"x\" is malformed"},
        {"x=a%00b", "\"x\" is malformed"},
        {"%zz=1", "malformed name"},
        {"a%00=1", "malformed name"},
        {"limit=1&limit=2", "\"limit\" is repeated"},
        {"limit=1&lim%69t=2", "\"limit\" is repeated"}, /* the same name once decoded */
        {"x%0a=%zz", "a query parameter is malformed"}, /* an odd name is not echoed */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct dems_http_query q;
        char err[160] = "";
        assert_int_equal(parse(&q, bad[i].raw, err, sizeof(err)), DEMS_EINVAL);
        if (strstr(err, bad[i].detail) == NULL)
            fail_msg("%s: got \"%s\"", bad[i].raw, err);
        assert_int_equal(q.nparams, 0);
        dems_http_query_done(&q);
    }
}

static void test_too_many_parameters(void **state)
{
    (void)state;
    char raw[1024] = "";
    size_t n = 0;
    for (int i = 0; i < DEMS_MAX_QUERY_PARAMS; i++)
        n += (size_t)snprintf(raw + n, sizeof(raw) - n, "p%d=%d&", i, i);
    struct dems_http_query q;
    char err[160];
    assert_int_equal(parse(&q, raw, err, sizeof(err)), 0);
    assert_int_equal(q.nparams, DEMS_MAX_QUERY_PARAMS);
    dems_http_query_done(&q);
    snprintf(raw + n, sizeof(raw) - n, "one=more");
    assert_int_equal(parse(&q, raw, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "too many"));
    dems_http_query_done(&q);
}

/* Every byte value, escaped, comes back (except NUL, refused above). */
static void test_every_byte_round_trips(void **state)
{
    (void)state;
    char raw[256 * 3 + 8] = "v=";
    size_t n = 2;
    for (int c = 1; c < 256; c++)
        n += (size_t)snprintf(raw + n, sizeof(raw) - n, "%%%02X", c);
    struct dems_http_query q;
    char err[160];
    assert_int_equal(parse(&q, raw, err, sizeof(err)), 0);
    const struct dems_str *v = dems_http_query_get(&q, "v");
    assert_non_null(v);
    assert_int_equal(v->len, 255);
    for (int c = 1; c < 256; c++)
        assert_int_equal((unsigned char)v->ptr[c - 1], c);
    dems_http_query_done(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes_escapes_and_plus),
        cmocka_unit_test(test_empty_and_skipped_pairs),
        cmocka_unit_test(test_refuses_malformed),
        cmocka_unit_test(test_too_many_parameters),
        cmocka_unit_test(test_every_byte_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
