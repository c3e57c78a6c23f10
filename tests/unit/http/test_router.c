/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for server/http/router.c against a route table of its own. */
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

#include "demsd/http.h"

static void h(struct dems_req *req)
{
    (void)req;
}

#define R(m, p, r)                                                                                 \
    {                                                                                              \
        .method = (m), .pattern = (p), .roles = (r), .handle = h                                   \
    }

const struct dems_route dems_routes[] = {
    R(DEMS_HTTP_GET, "/healthz", DEMS_ROLE_PUBLIC),
    R(DEMS_HTTP_GET, "/v1/things/{id}", DEMS_ROLE_STAFF),
    R(DEMS_HTTP_DELETE, "/v1/things/{id}", DEMS_ROLE_ADMIN),
    R(DEMS_HTTP_GET, "/v1/things/{id}/parts/{part}", DEMS_ROLE_OFFICER),
    R(DEMS_HTTP_POST, "/v1/locked", 0),
    R(DEMS_HTTP_GET, "/v1/tiles/entries/{rest*}", DEMS_ROLE_STAFF),
    R(DEMS_HTTP_GET, "/v1/tiles/{rest*}", DEMS_ROLE_PUBLIC),
};
const size_t dems_nroutes = sizeof(dems_routes) / sizeof(dems_routes[0]);

static const struct dems_route *m(enum dems_http_method meth, const char *path,
                                  struct dems_str *params, size_t *n, int *status, char *allow)
{
    return dems_router_match(meth, dems_str_from(path), params, n, status, allow, 128);
}

static void test_match_and_params(void **state)
{
    (void)state;
    struct dems_str p[DEMS_MAX_PATH_PARAMS];
    size_t n = 99;
    int st = 0;
    char allow[128];
    const struct dems_route *r = m(DEMS_HTTP_GET, "/v1/things/42/parts/wheel", p, &n, &st, allow);
    assert_ptr_equal(r, &dems_routes[3]);
    assert_int_equal(n, 2);
    assert_true(p[0].len == 2 && memcmp(p[0].ptr, "42", 2) == 0);
    assert_true(p[1].len == 5 && memcmp(p[1].ptr, "wheel", 5) == 0);
    r = m(DEMS_HTTP_HEAD, "/healthz", p, &n, &st, allow); /* HEAD served by GET */
    assert_ptr_equal(r, &dems_routes[0]);
    assert_int_equal(n, 0);
}

static void test_404_and_405(void **state)
{
    (void)state;
    struct dems_str p[DEMS_MAX_PATH_PARAMS];
    size_t n;
    int st = 0;
    char allow[128];
    assert_null(m(DEMS_HTTP_GET, "/v1/things", p, &n, &st, allow));
    assert_int_equal(st, 404);
    assert_null(m(DEMS_HTTP_GET, "/v1/things/", p, &n, &st, allow)); /* empty segment */
    assert_int_equal(st, 404);
    assert_null(m(DEMS_HTTP_GET, "/v1/things/1/extra", p, &n, &st, allow));
    assert_int_equal(st, 404);
    assert_null(m(DEMS_HTTP_GET, "/healthz/", p, &n, &st, allow));
    assert_int_equal(st, 404);
    assert_null(m(DEMS_HTTP_PUT, "/v1/things/7", p, &n, &st, allow));
    assert_int_equal(st, 405);
    assert_string_equal(allow, "GET, HEAD, DELETE");
}

/* A last {name*} takes the rest of the path, slashes included (tlog tile paths). */
static void test_rest_of_path(void **state)
{
    (void)state;
    struct dems_str p[DEMS_MAX_PATH_PARAMS];
    size_t n = 99;
    int st = 0;
    char allow[128];
    const struct dems_route *r = m(DEMS_HTTP_GET, "/v1/tiles/0/x001/234.p/5", p, &n, &st, allow);
    assert_ptr_equal(r, &dems_routes[6]);
    assert_int_equal(n, 1);
    assert_true(p[0].len == 14 && memcmp(p[0].ptr, "0/x001/234.p/5", 14) == 0);
    r = m(DEMS_HTTP_GET, "/v1/tiles/entries/000", p, &n, &st, allow); /* the earlier route */
    assert_ptr_equal(r, &dems_routes[5]);
    assert_true(p[0].len == 3 && memcmp(p[0].ptr, "000", 3) == 0);
    r = m(DEMS_HTTP_GET, "/v1/tiles/entries/", p, &n, &st, allow); /* empty rest: the next */
    assert_ptr_equal(r, &dems_routes[6]);
    assert_true(p[0].len == 8 && memcmp(p[0].ptr, "entries/", 8) == 0);
    assert_null(m(DEMS_HTTP_GET, "/v1/tiles/", p, &n, &st, allow)); /* the rest is never empty */
    assert_int_equal(st, 404);
    /* {id} still takes one segment only. */
    assert_null(m(DEMS_HTTP_GET, "/v1/things/1/2", p, &n, &st, allow));
}

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(dems_role_parse("admin"), DEMS_ROLE_ADMIN);
    assert_int_equal(dems_role_parse("prosecutor"), DEMS_ROLE_PROSECUTOR);
    assert_int_equal(dems_role_parse("root"), 0);
    assert_string_equal(dems_role_name(DEMS_ROLE_OFFICER), "officer");
    /* Default deny: a route with no roles admits nobody. */
    assert_int_equal(dems_routes[4].roles & DEMS_ROLE_STAFF, 0);
    assert_int_equal(dems_routes[2].roles & DEMS_ROLE_OFFICER, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_and_params),
        cmocka_unit_test(test_404_and_405),
        cmocka_unit_test(test_rest_of_path),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
