/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for server/auth/cookie.c: finding dems_session in Cookie
 * headers and formatting Set-Cookie. */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <string.h>

#include "dems/err.h"
#include "demsd/auth.h"

#define TOK "dems_s_AbC-12_xyz"

/* A head with the given Cookie header values (NULL-terminated). */
static struct dems_http_head head_of(const char *const *values)
{
    struct dems_http_head h = {.method = DEMS_HTTP_GET};
    h.headers[h.nheaders++] = (struct dems_http_header){dems_str_from("Host"), dems_str_from("x")};
    for (size_t i = 0; values[i] != NULL; i++)
        h.headers[h.nheaders++] = (struct dems_http_header){
            dems_str_from(i % 2 ? "COOKIE" : "cookie"), dems_str_from(values[i])};
    return h;
}

static int find(const char *const *values, struct dems_str *tok)
{
    struct dems_http_head h = head_of(values);
    return dems_auth_cookie_token(&h, tok);
}

static void test_found(void **state)
{
    (void)state;
    struct dems_str t;
    const char *const *cases[] = {
        (const char *const[]){"dems_session=" TOK, NULL},
        (const char *const[]){"a=1; dems_session=" TOK "; b=2", NULL},
        (const char *const[]){"a=1;dems_session= " TOK " ;b", NULL},
        (const char *const[]){"a=1", "dems_session=" TOK, NULL}, /* split headers */
        (const char *const[]){"junk; ===; ;", "x=dems_session=no; dems_session=" TOK, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(find(cases[i], &t), 0);
        assert_true(dems_str_eq(t, dems_str_from(TOK)));
    }
}

static void test_absent(void **state)
{
    (void)state;
    struct dems_str t;
    const char *const *cases[] = {
        (const char *const[]){NULL},
        (const char *const[]){"", NULL},
        (const char *const[]){"dems_session", NULL}, /* no '=': not a pair */
        (const char *const[]){"DEMS_SESSION=" TOK, NULL},
        (const char *const[]){"xdems_session=" TOK "; dems_sessionx=" TOK, NULL},
        (const char *const[]){";;;; = ; =x", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(find(cases[i], &t), DEMS_ENOTFOUND);
}

static void test_refused(void **state)
{
    (void)state;
    struct dems_str t;
    char long_value[100] = "dems_session=";
    memset(long_value + 13, 'A', 64);
    const char *const *cases[] = {
        (const char *const[]){"dems_session=", NULL},
        (const char *const[]){"dems_session=a b", NULL},
        (const char *const[]){"dems_session=\"" TOK "\"", NULL},
        (const char *const[]){"dems_session=" TOK "$", NULL},
        (const char *const[]){"dems_session=\xff\xfe", NULL},
        (const char *const[]){"dems_session=" TOK "; dems_session=" TOK, NULL},
        (const char *const[]){"dems_session=" TOK, "dems_session=other", NULL},
        (const char *const[]){long_value, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(find(cases[i], &t), DEMS_EAUTH);
    long_value[13 + 63] = '\0'; /* 63 characters fit (a token's text at most) */
    assert_int_equal(find((const char *const[]){long_value, NULL}, &t), 0);
    assert_int_equal(t.len, 63);
}

static void test_format(void **state)
{
    (void)state;
    char out[160];
    assert_int_equal(dems_auth_cookie_format(TOK, 43200, out, sizeof(out)), 0);
    assert_string_equal(out, "dems_session=" TOK
                             "; Path=/v1/; Secure; HttpOnly; SameSite=Strict; Max-Age=43200");
    assert_int_equal(dems_auth_cookie_format("", 0, out, sizeof(out)), 0);
    assert_string_equal(out,
                        "dems_session=; Path=/v1/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    assert_int_equal(dems_auth_cookie_format(TOK, 1, out, 20), DEMS_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found),
        cmocka_unit_test(test_absent),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
