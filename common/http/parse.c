/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming request parser: Debian's http-parser does the HTTP/1.1
 * grammar (including chunked bodies and the request-smuggling checks on
 * Content-Length/Transfer-Encoding); this file collects the request line and
 * headers into one capped buffer, turns them into a struct dems_http_head,
 * and passes body bytes straight through to the caller without copying.
 */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/http.h"

/* Where each header field sits in the head buffer while it is assembled. */
struct span {
    size_t name_off, name_len;
    size_t value_off, value_len;
};

struct dems_http_parser {
    http_parser hp;
    http_parser_settings settings;
    const struct dems_http_parser_cb *cb;
    void *arg;

    struct dems_buf raw; /* request target, then header names and values */
    size_t url_len;
    struct span spans[DEMS_MAX_HEADERS];
    size_t nspans;
    bool in_value; /* the last header callback was a value */
    bool in_message;

    struct dems_http_head head;
    enum dems_http_parser_state state;
    int err_status;
    const char *err_code;
    const char *err_message;
};

static struct dems_http_parser *from_hp(http_parser *hp)
{
    return hp->data;
}

/* Records an error and stops http-parser by returning nonzero. */
static int fail(struct dems_http_parser *p, int status, const char *code, const char *message)
{
    if (p->err_status == 0) {
        p->err_status = status;
        p->err_code = code;
        p->err_message = message;
    }
    return 1;
}

static int fail_err(struct dems_http_parser *p, int err)
{
    return fail(p, dems_err_http_status(err), dems_err_code(err), dems_strerror(err));
}

static int append_raw(struct dems_http_parser *p, const char *at, size_t n)
{
    int r = dems_buf_append(&p->raw, at, n);
    if (r == DEMS_ETOOBIG)
        return fail(p, 431, "header_too_large", "request header block is too large");
    if (r < 0)
        return fail_err(p, r);
    return 0;
}

static int on_message_begin(http_parser *hp)
{
    struct dems_http_parser *p = from_hp(hp);
    dems_buf_reset(&p->raw);
    p->url_len = 0;
    p->nspans = 0;
    p->in_value = false;
    p->in_message = true;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    struct dems_http_parser *p = from_hp(hp);
    if (append_raw(p, at, n) != 0)
        return 1;
    p->url_len += n;
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct dems_http_parser *p = from_hp(hp);
    if (p->nspans == 0 || p->in_value) {
        if (p->nspans == DEMS_MAX_HEADERS)
            return fail(p, 431, "header_too_large", "too many header fields");
        p->spans[p->nspans++] = (struct span){.name_off = p->raw.len};
        p->in_value = false;
    }
    if (append_raw(p, at, n) != 0)
        return 1;
    p->spans[p->nspans - 1].name_len += n;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct dems_http_parser *p = from_hp(hp);
    struct span *s = &p->spans[p->nspans - 1];
    if (!p->in_value) {
        s->value_off = p->raw.len;
        p->in_value = true;
    }
    if (append_raw(p, at, n) != 0)
        return 1;
    s->value_len += n;
    return 0;
}

static enum dems_http_method map_method(unsigned m)
{
    switch (m) {
    case HTTP_GET:
        return DEMS_HTTP_GET;
    case HTTP_HEAD:
        return DEMS_HTTP_HEAD;
    case HTTP_POST:
        return DEMS_HTTP_POST;
    case HTTP_PUT:
        return DEMS_HTTP_PUT;
    case HTTP_PATCH:
        return DEMS_HTTP_PATCH;
    case HTTP_DELETE:
        return DEMS_HTTP_DELETE;
    case HTTP_OPTIONS:
        return DEMS_HTTP_OPTIONS;
    default:
        return DEMS_HTTP_OTHER;
    }
}

/* Builds the head from the raw buffer; pointers are stable from here on. */
static int build_head(struct dems_http_parser *p)
{
    struct dems_http_head *h = &p->head;
    const char *base = (const char *)p->raw.data;
    h->method = map_method(p->hp.method);
    h->method_name = http_method_str((enum http_method)p->hp.method);
    h->target = (struct dems_str){base, p->url_len};
    h->path = h->target;
    h->query = (struct dems_str){"", 0};
    const char *q = p->url_len > 0 ? memchr(base, '?', p->url_len) : NULL;
    if (q != NULL) {
        h->path.len = (size_t)(q - base);
        h->query = (struct dems_str){q + 1, p->url_len - h->path.len - 1};
    }
    if (p->hp.http_major != 1)
        return fail(p, 505, "http_version_not_supported", "only HTTP/1.x is supported");
    if (h->path.len == 0 || h->path.ptr[0] != '/')
        return fail(p, 400, "bad_request", "request target must be an absolute path");
    h->nheaders = p->nspans;
    for (size_t i = 0; i < p->nspans; i++) {
        const struct span *s = &p->spans[i];
        h->headers[i].name = (struct dems_str){base + s->name_off, s->name_len};
        h->headers[i].value = dems_str_trim((struct dems_str){base + s->value_off, s->value_len});
    }
    h->http_major = p->hp.http_major;
    h->http_minor = p->hp.http_minor;
    h->keep_alive = http_should_keep_alive(&p->hp) != 0;
    h->chunked = (p->hp.flags & F_CHUNKED) != 0;
    h->has_length = dems_http_head_get(h, "content-length") != NULL;
    h->content_length = h->has_length ? p->hp.content_length : 0;
    const struct dems_str *expect = dems_http_head_get(h, "expect");
    h->expect_continue = expect != NULL && dems_str_eq_ci(*expect, "100-continue");
    return 0;
}

/* Maps a callback's return to http-parser's: pause, error or go on. */
static int callback_result(struct dems_http_parser *p, int r)
{
    if (r == DEMS_EAGAIN) {
        http_parser_pause(&p->hp, 1);
        return 0;
    }
    if (r < 0)
        return fail_err(p, r);
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct dems_http_parser *p = from_hp(hp);
    if (build_head(p) != 0)
        return -1; /* any value but 0/1/2 is an error here */
    if (callback_result(p, p->cb->on_head(p->arg, &p->head)) != 0)
        return -1;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct dems_http_parser *p = from_hp(hp);
    return callback_result(p, p->cb->on_body(p->arg, (const uint8_t *)at, n));
}

static int on_message_complete(http_parser *hp)
{
    struct dems_http_parser *p = from_hp(hp);
    p->in_message = false;
    return callback_result(p, p->cb->on_end(p->arg));
}

struct dems_http_parser *dems_http_parser_new(const struct dems_http_parser_cb *cb, void *arg)
{
    struct dems_http_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    http_parser_settings_init(&p->settings);
    p->settings.on_message_begin = on_message_begin;
    p->settings.on_url = on_url;
    p->settings.on_header_field = on_header_field;
    p->settings.on_header_value = on_header_value;
    p->settings.on_headers_complete = on_headers_complete;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_message_complete;
    p->cb = cb;
    p->arg = arg;
    dems_buf_init(&p->raw, DEMS_MAX_HEADER_BYTES);
    p->state = DEMS_HTTP_PARSING;
    return p;
}

void dems_http_parser_free(struct dems_http_parser *p)
{
    if (p == NULL)
        return;
    dems_buf_done(&p->raw);
    free(p);
}

/* Turns an http-parser error into a status, unless a callback set one. */
static void map_hp_error(struct dems_http_parser *p, enum http_errno e)
{
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        fail(p, 431, "header_too_large", "request header block is too large");
        break;
    case HPE_INVALID_METHOD:
        fail(p, 501, "not_implemented", "request method is not implemented");
        break;
    case HPE_INVALID_VERSION:
        fail(p, 505, "http_version_not_supported", "only HTTP/1.x is supported");
        break;
    default:
        fail(p, 400, "bad_request", http_errno_description(e));
        break;
    }
}

static bool is_upper(uint8_t c)
{
    return c >= 'A' && c <= 'Z';
}

size_t dems_http_parser_feed(struct dems_http_parser *p, const uint8_t *data, size_t n)
{
    if (p->state != DEMS_HTTP_PARSING || n == 0)
        return 0;
    size_t used = http_parser_execute(&p->hp, &p->settings, (const char *)data, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (e == HPE_PAUSED) {
        p->state = DEMS_HTTP_PAUSED;
    } else if (e == HPE_INVALID_METHOD && !(used < n && is_upper(data[used]))) {
        /* Not even a method-shaped word (e.g. a TLS record sent to the
         * plain-text parser): malformed rather than unimplemented. */
        fail(p, 400, "bad_request", "malformed request line");
        p->state = DEMS_HTTP_FAILED;
    } else if (e != HPE_OK) {
        map_hp_error(p, e);
        p->state = DEMS_HTTP_FAILED;
    } else if (used < n) {
        /* http-parser stops early only on error or upgrade; treat an
         * upgrade (which dems does not speak) as a bad request. */
        fail(p, 400, "bad_request", "protocol upgrade is not supported");
        p->state = DEMS_HTTP_FAILED;
    }
    return used;
}

enum dems_http_parser_state dems_http_parser_state(const struct dems_http_parser *p)
{
    return p->state;
}

void dems_http_parser_resume(struct dems_http_parser *p)
{
    if (p->state != DEMS_HTTP_PAUSED)
        return;
    http_parser_pause(&p->hp, 0);
    p->state = DEMS_HTTP_PARSING;
}

void dems_http_parser_error(const struct dems_http_parser *p, int *ret_status,
                            const char **ret_code, const char **ret_message)
{
    *ret_status = p->err_status != 0 ? p->err_status : 400;
    *ret_code = p->err_code != NULL ? p->err_code : "bad_request";
    *ret_message = p->err_message != NULL ? p->err_message : "malformed request";
}

bool dems_http_parser_in_message(const struct dems_http_parser *p)
{
    return p->in_message;
}

const struct dems_str *dems_http_head_get(const struct dems_http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        if (dems_str_eq_ci(h->headers[i].name, name))
            return &h->headers[i].value;
    }
    return NULL;
}
