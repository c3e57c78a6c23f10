/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/http: the streaming request parser, fed whole and
 * one byte at a time, with its limits and error statuses.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/http.h"

struct rec {
    int heads, ends;
    const struct dems_http_head *head; /* borrowed until the next message */
    char end_path[256];                /* the head's path, read again at the end */
    char path[256], query[256], host[64];
    enum dems_http_method method;
    uint64_t content_length;
    bool chunked, keep_alive, expect;
    char body[8192];
    size_t body_len;
    int pause_on_head;
    size_t body_limit;
};

static int on_head(void *arg, const struct dems_http_head *h)
{
    struct rec *r = arg;
    r->heads++;
    r->head = h;
    r->method = h->method;
    snprintf(r->path, sizeof(r->path), "%.*s", (int)h->path.len, h->path.ptr);
    snprintf(r->query, sizeof(r->query), "%.*s", (int)h->query.len, h->query.ptr);
    const struct dems_str *host = dems_http_head_get(h, "HOST");
    if (host != NULL)
        snprintf(r->host, sizeof(r->host), "%.*s", (int)host->len, host->ptr);
    r->content_length = h->content_length;
    r->chunked = h->chunked;
    r->keep_alive = h->keep_alive;
    r->expect = h->expect_continue;
    return r->pause_on_head ? DEMS_EAGAIN : 0;
}

static int on_body(void *arg, const uint8_t *p, size_t n)
{
    struct rec *r = arg;
    if (r->body_limit != 0 && r->body_len + n > r->body_limit)
        return DEMS_ETOOBIG;
    if (r->body_len + n > sizeof(r->body))
        return DEMS_ETOOBIG;
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    return 0;
}

static int on_end(void *arg)
{
    struct rec *r = arg;
    r->ends++;
    if (r->head != NULL)
        snprintf(r->end_path, sizeof(r->end_path), "%.*s", (int)r->head->path.len,
                 r->head->path.ptr);
    return DEMS_EAGAIN; /* one message at a time, like the server */
}

static const struct dems_http_parser_cb cb = {on_head, on_body, on_end};

/* Feeds all of s, resuming after each message; step = bytes per feed. */
static void feed_all(struct dems_http_parser *p, const char *s, size_t len, size_t step)
{
    size_t off = 0;
    while (off < len && dems_http_parser_state(p) != DEMS_HTTP_FAILED) {
        if (dems_http_parser_state(p) == DEMS_HTTP_PAUSED)
            dems_http_parser_resume(p);
        size_t n = len - off < step ? len - off : step;
        off += dems_http_parser_feed(p, (const uint8_t *)s + off, n);
    }
}

static void test_simple_get_any_split(void **state)
{
    (void)state;
    const char req[] = "GET /v1/evidence/abc?x=1&y=2 HTTP/1.1\r\nHost: example\r\n"
                       "X-Pad:   spaced  \r\n\r\n";
    for (size_t step = 1; step <= sizeof(req); step++) {
        struct rec r = {0};
        struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
        feed_all(p, req, sizeof(req) - 1, step);
        assert_int_equal(r.heads, 1);
        assert_int_equal(r.ends, 1);
        assert_int_equal(r.method, DEMS_HTTP_GET);
        assert_string_equal(r.path, "/v1/evidence/abc");
        assert_string_equal(r.query, "x=1&y=2");
        assert_string_equal(r.host, "example");
        assert_true(r.keep_alive);
        dems_http_parser_free(p);
    }
}

static void test_body_content_length_and_chunked(void **state)
{
    (void)state;
    const char cl[] = "POST /x HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
                      "hello world";
    const char ch[] = "PATCH /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    for (size_t step = 1; step < 80; step += 7) {
        struct rec r = {0};
        struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
        feed_all(p, cl, sizeof(cl) - 1, step);
        assert_int_equal(r.ends, 1);
        assert_true(r.content_length == 11 && r.expect);
        assert_int_equal(r.body_len, 11);
        assert_memory_equal(r.body, "hello world", 11);
        dems_http_parser_free(p);

        struct rec r2 = {0};
        p = dems_http_parser_new(&cb, &r2);
        feed_all(p, ch, sizeof(ch) - 1, step);
        assert_int_equal(r2.ends, 1);
        assert_true(r2.chunked);
        assert_int_equal(r2.method, DEMS_HTTP_PATCH);
        assert_int_equal(r2.body_len, 11);
        assert_memory_equal(r2.body, "hello world", 11);
        dems_http_parser_free(p);
    }
}

static void test_pipelined_and_pause(void **state)
{
    (void)state;
    const char two[] = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n";
    struct rec r = {.pause_on_head = 1};
    struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
    size_t used = dems_http_parser_feed(p, (const uint8_t *)two, sizeof(two) - 1);
    assert_true(used < sizeof(two) - 1);
    assert_int_equal(dems_http_parser_state(p), DEMS_HTTP_PAUSED);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.ends, 0);
    assert_true(dems_http_parser_in_message(p));
    dems_http_parser_resume(p);
    used += dems_http_parser_feed(p, (const uint8_t *)two + used, sizeof(two) - 1 - used);
    assert_int_equal(r.ends, 1);
    assert_false(dems_http_parser_in_message(p));
    dems_http_parser_resume(p);
    r.pause_on_head = 0;
    used += dems_http_parser_feed(p, (const uint8_t *)two + used, sizeof(two) - 1 - used);
    assert_int_equal(used, sizeof(two) - 1);
    assert_int_equal(r.ends, 2);
    assert_string_equal(r.path, "/b");
    assert_false(r.keep_alive); /* HTTP/1.0 without keep-alive */
    dems_http_parser_free(p);
}

static int fail_status(const char *req, size_t len, size_t step)
{
    struct rec r = {0};
    struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
    feed_all(p, req, len, step);
    int status = 0;
    if (dems_http_parser_state(p) == DEMS_HTTP_FAILED) {
        const char *code, *msg;
        dems_http_parser_error(p, &status, &code, &msg);
        assert_non_null(code);
        assert_non_null(msg);
    }
    dems_http_parser_free(p);
    return status;
}

static void test_errors(void **state)
{
    (void)state;
    static char big[40000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(fail_status(big, sizeof(big), 4096), 431);
    char many[4096];
    size_t o = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 120; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "H%d: v\r\n", i);
    assert_int_equal(fail_status(many, o, 100), 431);
    const char smuggle[] =
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_int_equal(fail_status(smuggle, sizeof(smuggle) - 1, 1000), 400);
    assert_int_equal(fail_status("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 31, 1000), 400);
    assert_int_equal(fail_status("GET nopath HTTP/1.1\r\n\r\n", 23, 1000), 400);
    assert_int_equal(fail_status("\x16\x03\x01\x02\x00", 5, 1000), 400);
    assert_int_equal(fail_status("PROPFIND / HTTP/1.1\r\n\r\n", 23, 1000), 0); /* parsed */
    const char cl[] = "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    assert_int_equal(fail_status(cl, sizeof(cl) - 1, 1000), 400);
    assert_int_equal(fail_status("GET / HTTP/9.9\r\n\r\n", 18, 1000), 505);
}

/* What a request does at every split: its status (0 = parsed), heads and ends. */
struct outcome {
    int status, heads, ends;
    size_t body_len;
};

static struct outcome run_split(const char *req, size_t len, size_t step)
{
    struct rec r = {0};
    struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
    feed_all(p, req, len, step);
    struct outcome o = {0, r.heads, r.ends, r.body_len};
    if (dems_http_parser_state(p) == DEMS_HTTP_FAILED) {
        const char *code, *msg;
        dems_http_parser_error(p, &o.status, &code, &msg);
    }
    dems_http_parser_free(p);
    return o;
}

/*
 * http-parser as Debian builds it (non-strict) takes any two bytes after a
 * chunk's data as its CRLF, and any byte after a CR at the end of a chunk-size
 * line or of the head. Each must be refused before the bytes that follow are
 * delivered (no later body byte, no end of message), at every split.
 */
static void test_chunk_framing_is_strict(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        size_t body_before; /* body bytes delivered before the refusal */
        int heads;
    } bad[] = {
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY6\r\n "
         "world\r\n0\r\n\r\n",
         5, 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX0\r\n\r\n", 5, 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\nX0\r\n\r\n", 5, 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n", 5, 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\rXhello\r\n0\r\n\r\n", 0, 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\rXhello\r\n0\r\n\r\n", 0, 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\rX\r\n", 5, 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\rX", 5, 1},
        {"GET / HTTP/1.1\r\nHost: a\r\n\rXGET / HTTP/1.1\r\n\r\n", 0, 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i].req);
        for (size_t step = 1; step <= len; step++) {
            struct outcome o = run_split(bad[i].req, len, step);
            if (o.status != 400 || o.ends != 0 || o.body_len != bad[i].body_before ||
                o.heads != bad[i].heads)
                fail_msg("case %zu step %zu: status %d heads %d ends %d body %zu", i, step,
                         o.status, o.heads, o.ends, o.body_len);
        }
    }
    /* Well-formed framing still passes at every split, with extensions and trailers. */
    const char good[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhel\rl\r\n"
                        "1\r\n\r\r\n0\r\nX-Trailer: t\r\n\r\nGET /next HTTP/1.1\r\n\r\n";
    for (size_t step = 1; step <= sizeof(good) - 1; step++) {
        struct outcome o = run_split(good, sizeof(good) - 1, step);
        assert_int_equal(o.status, 0);
        assert_int_equal(o.ends, 2);
        assert_int_equal(o.body_len, 6);
    }
}

/* Trailer fields are ignored; they must not disturb the head still in use. */
static void test_trailers_leave_the_head_alone(void **state)
{
    (void)state;
    static char req[20000];
    size_t n = (size_t)snprintf(req, sizeof(req),
                                "POST /the/path HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "3\r\nabc\r\n0\r\nX-Trailer: ");
    memset(req + n, 'v', 16000);
    n += 16000;
    n += (size_t)snprintf(req + n, sizeof(req) - n, "\r\nAuthorization: x\r\n\r\n");
    for (size_t step = 997; step <= n; step += 4001) {
        struct rec r = {0};
        struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
        feed_all(p, req, n, step);
        assert_int_equal(dems_http_parser_state(p), DEMS_HTTP_PAUSED);
        assert_int_equal(r.ends, 1);
        assert_string_equal(r.end_path, "/the/path");
        assert_null(dems_http_head_get(r.head, "x-trailer"));
        dems_http_parser_free(p);
    }
}

/* RFC 9112 section 6.1: only chunked is understood; anything else is 501. */
static void test_transfer_codings(void **state)
{
    (void)state;
    static const struct {
        const char *te;
        int status;
    } cases[] = {
        {"Transfer-Encoding: gzip, chunked\r\n", 501},
        {"Transfer-Encoding: GZIP,chunked\r\n", 501},
        {"Transfer-Encoding: identity, chunked\r\n", 501},
        {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501},
        {"Transfer-Encoding: chunked, chunked\r\n", 400},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", 400},
        {"Transfer-Encoding: gzip\r\n", 400},
        {"Transfer-Encoding: chunked;x=1\r\n", 400},
        {"Transfer-Encoding: \r\n", 400},
        {"Transfer-Encoding: chunked\r\n", 0},
        {"Transfer-Encoding: Chunked \r\n", 0},
        {"Transfer-Encoding: , chunked\r\n", 400}, /* not chunked to http-parser */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        int len = snprintf(req, sizeof(req), "POST / HTTP/1.1\r\n%s\r\n3\r\nabc\r\n0\r\n\r\n",
                           cases[i].te);
        for (size_t step = 1; step <= (size_t)len; step += 5) {
            struct outcome o = run_split(req, (size_t)len, step);
            if (o.status != cases[i].status || o.heads != (cases[i].status == 0))
                fail_msg("%s step %zu: status %d heads %d", cases[i].te, step, o.status, o.heads);
        }
    }
    /* A Transfer-Encoding in an HTTP/1.0 request means faulty framing. */
    const char old[] = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_int_equal(run_split(old, sizeof(old) - 1, 1000).status, 400);
}

/* Fields that must appear once are refused when repeated, never "first wins". */
static void test_repeated_singletons(void **state)
{
    (void)state;
    static const char *const dup[] = {
        "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
        "authorization: Bearer a\r\nAUTHORIZATION: Bearer a\r\n",
        "Host: a\r\nHost: b\r\n",
        "Content-Type: a/b\r\nContent-Type: a/b\r\n",
        "Upload-Offset: 0\r\nUpload-Offset: 5\r\n",
        "Upload-Length: 5\r\nUpload-Length: 5\r\n",
        "Upload-Metadata: a\r\nUpload-Metadata: b\r\n",
        "Upload-Checksum: sha256 x\r\nUpload-Checksum: sha256 y\r\n",
        "Tus-Resumable: 1.0.0\r\nTus-Resumable: 1.0.0\r\n",
        "X-HTTP-Method-Override: PATCH\r\nX-HTTP-Method-Override: DELETE\r\n",
        "Range: bytes=0-1\r\nRange: bytes=2-3\r\n",
        "Content-Length: 0\r\nContent-Length: 0\r\n",
    };
    for (size_t i = 0; i < sizeof(dup) / sizeof(dup[0]); i++) {
        char req[256];
        int len = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n%s\r\n", dup[i]);
        struct outcome o = run_split(req, (size_t)len, 7);
        if (o.status != 400 || o.heads != 0)
            fail_msg("%s: status %d heads %d", dup[i], o.status, o.heads);
    }
    /* List-valued fields may repeat. */
    const char ok[] = "GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\nCookie: a=1\r\n"
                      "Cookie: b=2\r\nIf-None-Match: \"x\"\r\nIf-None-Match: \"y\"\r\n\r\n";
    struct outcome o = run_split(ok, sizeof(ok) - 1, 1000);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.ends, 1);
}

static void test_body_limit_from_callback(void **state)
{
    (void)state;
    struct rec r = {.body_limit = 4};
    struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
    const char req[] = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    feed_all(p, req, sizeof(req) - 1, 1000);
    assert_int_equal(dems_http_parser_state(p), DEMS_HTTP_FAILED);
    int status;
    const char *code, *msg;
    dems_http_parser_error(p, &status, &code, &msg);
    assert_int_equal(status, 413);
    /* A failed parser consumes nothing more. */
    assert_int_equal(dems_http_parser_feed(p, (const uint8_t *)"GET", 3), 0);
    dems_http_parser_free(p);
}

static void test_other_method_reported(void **state)
{
    (void)state;
    struct rec r = {0};
    struct dems_http_parser *p = dems_http_parser_new(&cb, &r);
    feed_all(p, "PROPFIND /x HTTP/1.1\r\n\r\n", 24, 1000);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.method, DEMS_HTTP_OTHER);
    dems_http_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get_any_split),
        cmocka_unit_test(test_body_content_length_and_chunked),
        cmocka_unit_test(test_pipelined_and_pause),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_body_limit_from_callback),
        cmocka_unit_test(test_other_method_reported),
        cmocka_unit_test(test_chunk_framing_is_strict),
        cmocka_unit_test(test_trailers_leave_the_head_alone),
        cmocka_unit_test(test_transfer_codings),
        cmocka_unit_test(test_repeated_singletons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
