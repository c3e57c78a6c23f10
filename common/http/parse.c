/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming request parser: Debian's http-parser does the HTTP/1.1
 * grammar (including chunked bodies and the request-smuggling checks on
 * Content-Length/Transfer-Encoding); this file collects the request line and
 * headers into one capped buffer, turns them into a struct dems_http_head,
 * and passes body bytes straight through to the caller without copying.
 *
 * Debian builds http-parser without HTTP_PARSER_STRICT, which leaves out
 * some checks a request-smuggling defence needs: any two bytes after a
 * chunk's data pass as its CRLF, and any byte after a CR at the end of a
 * chunk-size line, of the last chunk or of the head passes as its LF. This
 * file puts them back. Every byte http-parser consumes is either body data
 * (reported by on_body) or framing; framing bytes are checked here, in
 * stream order, before anything that follows them is handed on: the head
 * and the end of a message are delivered only after http-parser has stopped
 * on them (it is paused in its callback) and the framing up to that point
 * has been checked, and each body piece only after the framing before it.
 * It also refuses what RFC 9112 says to refuse and http-parser accepts:
 * transfer codings other than chunked (501), Transfer-Encoding in HTTP/1.0,
 * and repeated fields that must appear once (Authorization, Host, ...).
 */
#include <http_parser.h>
#include <stdio.h>
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

/* An http-parser callback stopped the parser so this file can check framing
 * before delivering the event. */
enum pending { PENDING_NONE, PENDING_HEAD, PENDING_END };

struct dems_http_parser {
    http_parser hp;
    http_parser_settings settings;
    const struct dems_http_parser_cb *cb;
    void *arg;

    /* Framing checks, in absolute stream offsets (bytes consumed so far). */
    const uint8_t *exec_data; /* the buffer http_parser_execute is running on */
    uint64_t exec_base;       /* stream offset of exec_data[0] */
    uint64_t scan_next;       /* first stream byte not yet checked or skipped */
    bool prev_cr;             /* the last framing byte checked was a CR */
    unsigned want_crlf;       /* 2 or 1: bytes of a chunk data's CRLF still due */
    uint64_t chunk_left;      /* data bytes left in the current chunk */
    bool in_trailers;         /* header callbacks now carry trailer fields */
    enum pending pending;
    char err_buf[96]; /* err_message when it names a field */

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

/* Checks the framing bytes of the stream from scan_next up to offset end. */
static int scan_framing(struct dems_http_parser *p, uint64_t end)
{
    for (; p->scan_next < end; p->scan_next++) {
        uint8_t b = p->exec_data[p->scan_next - p->exec_base];
        if (p->want_crlf > 0) {
            if (b != (p->want_crlf == 2 ? '\r' : '\n'))
                return fail(p, 400, "bad_request", "chunk data is not followed by CRLF");
            p->want_crlf--;
            p->prev_cr = false;
            continue;
        }
        if (p->prev_cr && b != '\n')
            return fail(p, 400, "bad_request", "a CR in the request framing is not followed by LF");
        p->prev_cr = b == '\r';
    }
    return 0;
}

/* The stream offset of a pointer into the buffer being executed. */
static uint64_t offset_of(const struct dems_http_parser *p, const char *at)
{
    return p->exec_base + (uint64_t)((const uint8_t *)at - p->exec_data);
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
    p->in_trailers = false;
    p->chunk_left = 0;
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
    /* Trailer fields (after a chunked body) are ignored (RFC 9110 section
     * 6.5.1); http-parser bounds their size. Appending them to raw could
     * move the head a handler is still reading. */
    if (p->in_trailers)
        return 0;
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
    if (p->in_trailers)
        return 0;
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

/*
 * Fields dems reads as one value, which a sender must not repeat (RFC 9110
 * section 5.3: only list-valued fields may be). Taking the first of two
 * Authorization or Host lines is how a request means one thing to a proxy
 * and another to dems; refuse instead. Content-Length is refused repeated by
 * http-parser already; it is listed so the rule holds whatever the library.
 */
static const char *const singletons[] = {
    "authorization",   "host",
    "content-length",  "content-type",
    "range",           "upload-offset",
    "upload-length",   "upload-metadata",
    "upload-checksum", "upload-defer-length",
    "tus-resumable",   "x-http-method-override",
};

static int check_singletons(struct dems_http_parser *p, const struct dems_http_head *h)
{
    for (size_t k = 0; k < sizeof(singletons) / sizeof(singletons[0]); k++) {
        size_t seen = 0;
        for (size_t i = 0; i < h->nheaders && seen < 2; i++)
            seen += dems_str_eq_ci(h->headers[i].name, singletons[k]) ? 1 : 0;
        if (seen > 1) {
            snprintf(p->err_buf, sizeof(p->err_buf), "header field %s is repeated", singletons[k]);
            return fail(p, 400, "bad_request", p->err_buf);
        }
    }
    return 0;
}

/* Counts a Transfer-Encoding value's codings (empty list elements skipped). */
static void count_codings(struct dems_str v, size_t *nchunked, size_t *nother, bool *last_chunked)
{
    while (v.len > 0) {
        const char *comma = memchr(v.ptr, ',', v.len);
        size_t n = comma != NULL ? (size_t)(comma - v.ptr) : v.len;
        struct dems_str c = dems_str_trim((struct dems_str){v.ptr, n});
        if (c.len > 0) {
            *last_chunked = dems_str_eq_ci(c, "chunked");
            if (*last_chunked)
                (*nchunked)++;
            else
                (*nother)++;
        }
        v.ptr += n + (comma != NULL ? 1 : 0);
        v.len -= n + (comma != NULL ? 1 : 0);
    }
}

/*
 * RFC 9112 section 6: chunked must be the final coding, applied once, and
 * an HTTP/1.0 request must not have one (400, the framing is faulty); a
 * coding dems does not implement (gzip, deflate, ...) is 501, not ignored.
 */
static int check_transfer_coding(struct dems_http_parser *p, const struct dems_http_head *h)
{
    size_t nfields = 0, nchunked = 0, nother = 0;
    bool last_chunked = false;
    for (size_t i = 0; i < h->nheaders; i++) {
        if (dems_str_eq_ci(h->headers[i].name, "transfer-encoding")) {
            nfields++;
            count_codings(h->headers[i].value, &nchunked, &nother, &last_chunked);
        }
    }
    if (nfields == 0)
        return 0;
    if (p->hp.http_major == 1 && p->hp.http_minor == 0)
        return fail(p, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
    /* http-parser frames the body only when it too saw chunked last. */
    if (!last_chunked || (p->hp.flags & F_CHUNKED) == 0)
        return fail(p, 400, "bad_request", "chunked is not the final transfer coding");
    if (nchunked > 1)
        return fail(p, 400, "bad_request", "chunked transfer coding applied more than once");
    if (nother > 0)
        return fail(p, 501, "not_implemented",
                    "transfer codings other than chunked are not supported");
    return 0;
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
    if (check_singletons(p, h) != 0 || check_transfer_coding(p, h) != 0)
        return 1;
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

/* Stops http-parser on the head's last byte; feed checks the framing up to
 * it and then delivers the head (deliver_head). */
static int on_headers_complete(http_parser *hp)
{
    struct dems_http_parser *p = from_hp(hp);
    p->in_trailers = true; /* any later header callbacks of this message */
    p->pending = PENDING_HEAD;
    http_parser_pause(hp, 1);
    return 0;
}

static int on_chunk_header(http_parser *hp)
{
    struct dems_http_parser *p = from_hp(hp);
    p->chunk_left = hp->content_length;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct dems_http_parser *p = from_hp(hp);
    uint64_t start = offset_of(p, at);
    if (scan_framing(p, start) != 0)
        return 1;
    p->scan_next = start + n;
    if ((hp->flags & F_CHUNKED) && n > 0) {
        p->chunk_left -= n < p->chunk_left ? n : p->chunk_left;
        if (p->chunk_left == 0)
            p->want_crlf = 2;
    }
    return callback_result(p, p->cb->on_body(p->arg, (const uint8_t *)at, n));
}

/* Stops http-parser just after the message's last byte; feed checks the
 * framing up to it and then delivers the end (deliver_end). */
static int on_message_complete(http_parser *hp)
{
    struct dems_http_parser *p = from_hp(hp);
    p->pending = PENDING_END;
    http_parser_pause(hp, 1);
    return 0;
}

static int deliver_head(struct dems_http_parser *p)
{
    if (build_head(p) != 0)
        return -1;
    return callback_result(p, p->cb->on_head(p->arg, &p->head)) != 0 ? -1 : 0;
}

static int deliver_end(struct dems_http_parser *p)
{
    p->in_message = false;
    return callback_result(p, p->cb->on_end(p->arg)) != 0 ? -1 : 0;
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
    p->settings.on_chunk_header = on_chunk_header;
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

/*
 * A stop this file asked for (head or end): check the framing through the
 * event's last byte, then deliver the event. The head's last byte (its final
 * LF) is still unconsumed when http-parser stops there; the end's is not.
 * Returns 0 to go on, DEMS_EAGAIN when the callback paused, -1 on failure.
 */
static int deliver_pending(struct dems_http_parser *p, uint64_t consumed)
{
    enum pending what = p->pending;
    p->pending = PENDING_NONE;
    if (scan_framing(p, what == PENDING_HEAD ? consumed + 1 : consumed) != 0)
        return -1;
    http_parser_pause(&p->hp, 0);
    int r = what == PENDING_HEAD ? deliver_head(p) : deliver_end(p);
    if (r != 0)
        return -1;
    return HTTP_PARSER_ERRNO(&p->hp) == HPE_PAUSED ? DEMS_EAGAIN : 0;
}

/* After http-parser stopped by itself: check framing, record the outcome. */
static void after_execute(struct dems_http_parser *p, const uint8_t *data, size_t used, size_t n,
                          uint64_t consumed)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (e == HPE_INVALID_METHOD && !(used < n && is_upper(data[used]))) {
        /* Not even a method-shaped word (e.g. a TLS record sent to the
         * plain-text parser): malformed rather than unimplemented. */
        fail(p, 400, "bad_request", "malformed request line");
        p->state = DEMS_HTTP_FAILED;
    } else if (e != HPE_OK && e != HPE_PAUSED) {
        map_hp_error(p, e);
        p->state = DEMS_HTTP_FAILED;
    } else if (scan_framing(p, consumed) != 0) {
        p->state = DEMS_HTTP_FAILED;
    } else if (e == HPE_PAUSED) {
        p->state = DEMS_HTTP_PAUSED;
    } else if (used < n) {
        /* http-parser stops early only on error or upgrade; treat an
         * upgrade (which dems does not speak) as a bad request. */
        fail(p, 400, "bad_request", "protocol upgrade is not supported");
        p->state = DEMS_HTTP_FAILED;
    }
}

size_t dems_http_parser_feed(struct dems_http_parser *p, const uint8_t *data, size_t n)
{
    size_t off = 0;
    while (p->state == DEMS_HTTP_PARSING && off < n) {
        p->pending = PENDING_NONE;
        p->exec_data = data + off;
        size_t used = http_parser_execute(&p->hp, &p->settings, (const char *)data + off, n - off);
        uint64_t consumed = p->exec_base + used;
        int r = 0;
        if (HTTP_PARSER_ERRNO(&p->hp) == HPE_PAUSED && p->pending != PENDING_NONE) {
            r = deliver_pending(p, consumed);
            if (r == DEMS_EAGAIN)
                p->state = DEMS_HTTP_PAUSED;
            else if (r < 0)
                p->state = DEMS_HTTP_FAILED;
        } else {
            after_execute(p, data + off, used, n - off, consumed);
            r = 1; /* http-parser ran out of input or stopped for good */
        }
        p->exec_base = consumed;
        off += used;
        if (r != 0)
            break;
    }
    return off;
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
