/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTPS connections and their requests. Bytes come off a bufferevent_openssl
 * whose read high-watermark bounds what a connection may buffer; they are fed
 * through the streaming parser (common/http) one request at a time. A request
 * is routed, authenticated and checked against its route's body limit as soon
 * as its head is complete — the parser is paused meanwhile — and only then is
 * its body read. Responses go to the bufferevent; when the last byte has left,
 * the connection either closes or resumes parsing (keep-alive, pipelining).
 *
 * Lifetime: a connection is referenced by its loop (until closed) and by its
 * current request; requests are referenced by the connection and by pending
 * async work. Memory is released on a later loop pass (dems_conn_reap), never
 * inside the callbacks that closed it.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/http.h"
#include "demsd/log.h"
#include "demsd/metrics.h"

#define EXTRA_HEADERS_MAX 4096

struct dems_conn {
    struct dems_loop *loop;
    struct dems_conn *prev, *next; /* the loop's live list */
    struct dems_conn *dead_next;
    int refs;
    struct bufferevent *bev;
    struct dems_http_parser *parser;
    struct event *timer;
    struct dems_req *req;
    char peer[64];
    struct dems_admit_key admit_key; /* the admission slot this connection holds */
    uint64_t window_bytes;           /* body bytes read in the current rate window */
    bool rate_timing;                /* the timer measures the body rate */
    bool closed;
    bool closing;     /* close once the current response has been written */
    bool head_timing; /* the header deadline is armed */
    bool lingering;   /* answered and closing: discarding what the client still sends */
    bool peer_checked;
    char peer_cert[65]; /* SHA-256 of the client certificate, "" when none */
};

struct dems_req {
    int refs;
    struct dems_conn *conn;
    const struct dems_http_head *head; /* NULL for errors before the head */
    enum dems_http_method method;      /* after X-HTTP-Method-Override */
    char id[17];
    const struct dems_route *route;
    struct dems_str params[DEMS_MAX_PATH_PARAMS];
    size_t nparams;
    struct dems_principal principal;
    struct dems_http_query query; /* decoded query string (empty when none) */
    struct dems_buf body;
    json_t *json;
    struct dems_buf extra; /* "Name: value\r\n" lines */
    PGresult *folded;      /* the route's read folded into authentication, or NULL */
    void *data;            /* a streaming handler's state */
    void (*data_free)(void *data);
    int status;
    bool responded;
    bool aborted;
    bool body_done;    /* the parser has seen the end of this message */
    size_t body_seen;  /* streaming routes: body bytes so far */
    bool streaming;    /* a response whose body follows in pieces */
    bool stream_ended; /* dems_resp_end was called */
    bool chunked;      /* ... with chunked transfer coding */
    bool own_cache;    /* the handler set Cache-Control: no default no-store */
    void (*on_drain)(struct dems_req *req);
    struct timespec start;
};

static void conn_process(struct dems_conn *c);
static void conn_close(struct dems_conn *c);
static void stop_rate_window(struct dems_conn *c);

/* ---- references ---- */

static void conn_unref(struct dems_conn *c)
{
    if (--c->refs > 0)
        return;
    struct dems_loop *loop = c->loop;
    c->dead_next = loop->dead;
    loop->dead = c;
    event_active(loop->reap_ev, EV_TIMEOUT, 0);
}

void dems_conn_reap(struct dems_loop *loop)
{
    while (loop->dead != NULL) {
        struct dems_conn *c = loop->dead;
        loop->dead = c->dead_next;
        dems_http_parser_free(c->parser);
        free(c);
    }
}

void dems_req_ref(struct dems_req *req)
{
    req->refs++;
}

void dems_req_unref(struct dems_req *req)
{
    if (--req->refs > 0)
        return;
    struct dems_conn *c = req->conn;
    if (req->route != NULL)
        dems_metrics_in_flight((size_t)(req->route - dems_routes), -1);
    dems_buf_done(&req->body);
    dems_buf_done(&req->extra);
    dems_http_query_done(&req->query);
    json_decref(req->json);
    PQclear(req->folded);
    if (req->data_free != NULL)
        req->data_free(req->data);
    free(req);
    conn_unref(c);
}

/*
 * Request ids need to be unique, not secret: a per-loop counter from a random
 * start, scrambled by splitmix64 so ids do not look sequential. No syscall
 * per request (randombytes_buf would make one).
 */
static void make_request_id(struct dems_loop *loop, char out[static 17])
{
    if (loop->req_counter == 0)
        randombytes_buf(&loop->req_counter, sizeof(loop->req_counter));
    uint64_t z = (loop->req_counter += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[z & 15];
        z >>= 4;
    }
    out[16] = '\0';
}

static struct dems_req *req_new(struct dems_conn *c)
{
    struct dems_req *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->refs = 1; /* the connection's */
    req->conn = c;
    c->refs++;
    make_request_id(c->loop, req->id);
    dems_buf_init(&req->body, 0);
    dems_buf_init(&req->extra, EXTRA_HEADERS_MAX);
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    return req;
}

/* ---- accessors ---- */

const struct dems_http_head *dems_req_head(const struct dems_req *req)
{
    return req->head;
}

const char *dems_req_id(const struct dems_req *req)
{
    return req->id;
}

const char *dems_req_peer(const struct dems_req *req)
{
    return req->conn->peer;
}

struct dems_loop *dems_req_loop(const struct dems_req *req)
{
    return req->conn->loop;
}

const struct dems_principal *dems_req_principal(const struct dems_req *req)
{
    return &req->principal;
}

struct dems_str dems_req_param(const struct dems_req *req, size_t i)
{
    return i < req->nparams ? req->params[i] : (struct dems_str){"", 0};
}

const char *dems_req_peer_cert(struct dems_req *req)
{
    struct dems_conn *c = req->conn;
    if (!c->peer_checked && c->bev != NULL) {
        c->peer_checked = true;
        X509 *x = SSL_get1_peer_certificate(bufferevent_openssl_get_ssl(c->bev));
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (x != NULL && X509_digest(x, EVP_sha256(), md, &n) == 1 && n == 32) {
            for (unsigned i = 0; i < 32; i++)
                snprintf(c->peer_cert + 2 * i, 3, "%02x", md[i]);
        }
        X509_free(x);
    }
    return c->peer_cert[0] != '\0' ? c->peer_cert : NULL;
}

bool dems_req_is_aborted(const struct dems_req *req)
{
    return req->aborted;
}

json_t *dems_req_json(const struct dems_req *req)
{
    return req->json;
}

const struct dems_http_query *dems_req_query_all(const struct dems_req *req)
{
    return &req->query;
}

bool dems_req_query(const struct dems_req *req, const char *name, struct dems_str *ret_value)
{
    const struct dems_str *v = dems_http_query_get(&req->query, name);
    if (v == NULL)
        return false;
    *ret_value = *v;
    return true;
}

/* ---- responses ---- */

static const char *reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 412:
        return "Precondition Failed";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 460:
        return "Checksum Mismatch";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

static const char *http_date(struct dems_loop *loop)
{
    time_t now = time(NULL);
    if ((int64_t)now != loop->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(loop->date, sizeof(loop->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        loop->date_sec = (int64_t)now;
    }
    return loop->date;
}

int dems_resp_header(struct dems_req *req, const char *name, const char *value)
{
    if (strcasecmp(name, "Cache-Control") == 0)
        req->own_cache = true;
    int r = dems_buf_append(&req->extra, name, strlen(name));
    if (r == 0)
        r = dems_buf_append(&req->extra, ": ", 2);
    if (r == 0)
        r = dems_buf_append(&req->extra, value, strlen(value));
    if (r == 0)
        r = dems_buf_append(&req->extra, "\r\n", 2);
    return r;
}

static bool has_body(const struct dems_http_head *h)
{
    return h->chunked || h->content_length > 0;
}

/* Keep the connection only when the whole request has been (or will be)
 * read, so the next bytes on the wire start a new request. */
static bool keep_alive(const struct dems_req *req)
{
    const struct dems_conn *c = req->conn;
    return req->head != NULL && req->head->keep_alive && !c->closing && !c->loop->draining &&
           (req->body_done || !has_body(req->head)) &&
           dems_http_parser_state(c->parser) != DEMS_HTTP_FAILED;
}

/* After answering from on_head: a bodyless request runs on to its end (so
 * the connection can be kept); one with a body stops here and is closed. */
static int answered_early(const struct dems_req *req)
{
    return has_body(req->head) ? DEMS_EAGAIN : 0;
}

/* Writes the status line and headers. length UINT64_MAX means chunked. */
static void send_head(struct dems_req *req, int status, const char *ctype, uint64_t len)
{
    struct dems_conn *c = req->conn;
    req->responded = true;
    req->status = status;
    if (!keep_alive(req))
        c->closing = true;
    const struct dems_config *cfg = c->loop->srv->cfg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: %s\r\nX-Request-Id: %s\r\n"
                        "Strict-Transport-Security: max-age=%llu\r\n"
                        "X-Content-Type-Options: nosniff\r\n",
                        status, reason(status), http_date(c->loop),
                        c->closing ? "close" : "keep-alive", req->id,
                        (unsigned long long)cfg->hsts_max_age);
    /* no-store unless the handler chose its own policy (static pages, previews). */
    if (!req->own_cache)
        evbuffer_add_printf(out, "Cache-Control: no-store\r\n");
    if (ctype != NULL)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    if (len == UINT64_MAX)
        evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    else if (status != 204 && status != 304)
        evbuffer_add_printf(out, "Content-Length: %llu\r\n", (unsigned long long)len);
    evbuffer_add(out, req->extra.data != NULL ? req->extra.data : (const uint8_t *)"",
                 req->extra.len);
    evbuffer_add(out, "\r\n", 2);
}

static bool is_head_only(const struct dems_req *req)
{
    return req->head != NULL && req->method == DEMS_HTTP_HEAD;
}

static void send_response(struct dems_req *req, int status, const char *ctype, const void *body,
                          size_t len)
{
    if (req->responded || req->aborted)
        return;
    struct dems_conn *c = req->conn;
    send_head(req, status, ctype, len);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (len > 0 && !is_head_only(req))
        evbuffer_add(out, body, len);
    /* Nothing more to read for this request: stop the body clocks. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    stop_rate_window(c);
    /* The write callback finishes the request once the bytes are out. */
    bufferevent_enable(c->bev, EV_WRITE);
}

int dems_resp_start(struct dems_req *req, int status, const char *content_type, uint64_t length,
                    void (*on_drain)(struct dems_req *req))
{
    if (req->responded || req->aborted)
        return DEMS_EIO;
    struct dems_conn *c = req->conn;
    send_head(req, status, content_type, length);
    req->streaming = true;
    req->chunked = length == UINT64_MAX;
    req->on_drain = on_drain;
    req->stream_ended = is_head_only(req);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    stop_rate_window(c);
    /* Ask for more whenever the queued output falls to half the bound. */
    bufferevent_setwatermark(c->bev, EV_WRITE, DEMS_MAX_CONN_OUTPUT / 2, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    return 0;
}

void dems_resp_abort(struct dems_req *req)
{
    if (!req->aborted)
        conn_close(req->conn);
}

bool dems_resp_wants_more(const struct dems_req *req)
{
    return !req->aborted && req->streaming && !req->stream_ended &&
           evbuffer_get_length(bufferevent_get_output(req->conn->bev)) < DEMS_MAX_CONN_OUTPUT;
}

int dems_resp_write(struct dems_req *req, const void *data, size_t n)
{
    if (req->aborted || !req->streaming || req->stream_ended)
        return DEMS_EIO;
    if (n == 0)
        return 0;
    struct evbuffer *out = bufferevent_get_output(req->conn->bev);
    if (req->chunked)
        evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add(out, data, n);
    if (req->chunked)
        evbuffer_add(out, "\r\n", 2);
    return 0;
}

void dems_resp_end(struct dems_req *req)
{
    if (req->aborted || !req->streaming || req->stream_ended)
        return;
    req->stream_ended = true;
    struct dems_conn *c = req->conn;
    if (req->chunked && !is_head_only(req))
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void dems_resp_bytes(struct dems_req *req, int status, const char *content_type, const void *data,
                     size_t len)
{
    send_response(req, status, content_type, data, len);
}

static void send_json(struct dems_req *req, int status, const char *ctype, json_t *body)
{
    static const char oom[] = "{\"type\":\"urn:dems:problem:out_of_memory\","
                              "\"title\":\"Service Unavailable\",\"status\":503,"
                              "\"detail\":\"out of memory\",\"code\":\"out_of_memory\"}";
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        send_response(req, 503, "application/problem+json", oom, sizeof(oom) - 1);
        return;
    }
    send_response(req, status, ctype, text, strlen(text));
    free(text);
}

void dems_resp_json(struct dems_req *req, int status, json_t *body)
{
    if (body == NULL) {
        send_response(req, status, NULL, NULL, 0);
        return;
    }
    send_json(req, status, "application/json", body);
}

/*
 * RFC 9457 problem details. The type names the stable code (a URN: it
 * identifies, it is not fetched), the title is the status's reason phrase,
 * the detail says what happened this time, and "code" stays as an extension
 * member so clients written against the earlier {"error":{"code"}} shape
 * keep one stable field to switch on. A 401 says how to authenticate
 * (RFC 9110 section 11.6.1; RFC 6750 section 3 for bearer tokens).
 */
void dems_resp_error(struct dems_req *req, int status, const char *code, const char *message)
{
    dems_resp_problem(req, status, code, message, NULL);
}

void dems_resp_problem(struct dems_req *req, int status, const char *code, const char *message,
                       json_t *extra)
{
    if (req->responded || req->aborted) {
        json_decref(extra);
        return;
    }
    if (status == 401) {
        bool sent_token =
            req->head != NULL && dems_http_head_get(req->head, "authorization") != NULL;
        dems_resp_header(req, "WWW-Authenticate",
                         sent_token ? "Bearer realm=\"dems\", error=\"invalid_token\""
                                    : "Bearer realm=\"dems\"");
    }
    char type[96];
    snprintf(type, sizeof(type), "urn:dems:problem:%s", code);
    json_t *body = json_pack("{s:s,s:s,s:i,s:s,s:s}", "type", type, "title", reason(status),
                             "status", status, "detail", message, "code", code);
    if (body != NULL && extra != NULL)
        json_object_update_missing(body, extra);
    json_decref(extra);
    send_json(req, status, "application/problem+json", body);
}

void dems_resp_err(struct dems_req *req, int err)
{
    dems_resp_error(req, dems_err_http_status(err), dems_err_code(err), dems_strerror(err));
}

/* ---- request lifecycle ---- */

/* The HTTP bytes a connection reads (arg non-NULL: its input buffer) and writes. */
static void count_bytes(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    if (arg != NULL)
        dems_metrics_bytes(info->n_added, 0);
    else
        dems_metrics_bytes(0, info->n_deleted);
}

static void log_request(const struct dems_req *req)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - req->start.tv_sec) * 1e3 +
                (double)(now.tv_nsec - req->start.tv_nsec) / 1e6;
    dems_metrics_request(req->route != NULL ? (size_t)(req->route - dems_routes) : dems_nroutes,
                         req->status, ms / 1e3);
    json_t *f = json_pack("{s:s,s:i,s:f,s:s}", "peer", req->conn->peer, "status", req->status,
                          "duration_ms", ms, "event", "request");
    if (f != NULL && req->head != NULL) {
        json_object_set_new(f, "method", json_string(req->head->method_name));
        /* The client's bytes: bounded and escaped (dems_log_str). */
        json_object_set_new(f, "path", dems_log_str(req->head->path.ptr, req->head->path.len));
    }
    if (f != NULL && req->principal.user_id != 0)
        json_object_set_new(f, "user",
                            dems_log_str(req->principal.username, strlen(req->principal.username)));
    dems_log(DEMS_LOG_INFO, req->id, f, "request");
}

static void arm_idle_timer(struct dems_conn *c)
{
    const struct dems_config *cfg = c->loop->srv->cfg;
    struct timeval tv = {.tv_sec = (time_t)cfg->idle_timeout};
    c->head_timing = false;
    c->rate_timing = false;
    evtimer_add(c->timer, &tv);
}

/*
 * Closing right after an error answer while the client is still sending
 * (an oversized body, say) would make the kernel reset the connection and
 * the client could lose the answer. Like nginx's lingering close, keep
 * reading and discarding for a short while first.
 */
#define LINGER_SECONDS 2

static void start_linger(struct dems_conn *c)
{
    c->lingering = true;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    struct timeval tv = {.tv_sec = LINGER_SECONDS};
    c->head_timing = false;
    c->rate_timing = false;
    evtimer_add(c->timer, &tv);
}

/* Called when the response's last byte has been handed to the socket. */
static void finish_request(struct dems_conn *c)
{
    struct dems_req *req = c->req;
    bool unread = !req->body_done && req->head != NULL && has_body(req->head);
    unread = unread || dems_http_parser_state(c->parser) == DEMS_HTTP_FAILED;
    c->req = NULL;
    log_request(req);
    dems_req_unref(req);
    if (c->closing) {
        if (unread)
            start_linger(c);
        else
            conn_close(c);
        return;
    }
    arm_idle_timer(c);
    dems_http_parser_resume(c->parser);
    conn_process(c);
}

/* An error before any route ran (or from the parser): answer and close. */
static void early_error(struct dems_conn *c, int status, const char *code, const char *msg)
{
    if (c->req == NULL) {
        c->req = req_new(c);
        if (c->req == NULL) {
            conn_close(c);
            return;
        }
    }
    c->closing = true;
    dems_resp_error(c->req, status, code, msg);
}

/*
 * The minimum body rate. body_timeout only notices a body that stops; one
 * byte every few seconds never trips it and holds a connection (and, for an
 * upload, its staging file) for as long as the client likes. So while a
 * body is read the connection's timer measures it: every body_rate_window
 * seconds the body must have brought at least body_min_rate bytes a second,
 * or the request is answered 408 and the connection closed. A window in
 * which dems itself was not reading (the parser paused for a handler, or
 * unread input waiting) does not count against the client.
 */
static void start_rate_window(struct dems_conn *c)
{
    const struct dems_config *cfg = c->loop->srv->cfg;
    if (cfg->body_min_rate == 0 || c->req->body_done)
        return;
    struct timeval tv = {.tv_sec = (time_t)cfg->body_rate_window};
    c->rate_timing = true;
    c->window_bytes = 0;
    evtimer_add(c->timer, &tv);
}

static void stop_rate_window(struct dems_conn *c)
{
    if (!c->rate_timing)
        return;
    c->rate_timing = false;
    evtimer_del(c->timer);
}

static void on_rate_window(struct dems_conn *c)
{
    const struct dems_config *cfg = c->loop->srv->cfg;
    struct dems_req *req = c->req;
    c->rate_timing = false;
    if (req == NULL || req->responded || req->body_done)
        return;
    bool waiting_on_us = dems_http_parser_state(c->parser) != DEMS_HTTP_PARSING ||
                         evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
    uint64_t need = cfg->body_min_rate * cfg->body_rate_window;
    if (waiting_on_us || c->window_bytes >= need) {
        start_rate_window(c);
        return;
    }
    DEMS_LOG_LIMITED(
        DEMS_LOG_INFO, req->id,
        json_pack("{s:s,s:s,s:I,s:I}", "peer", c->peer, "event", "body_too_slow", "bytes",
                  (json_int_t)c->window_bytes, "seconds", (json_int_t)cfg->body_rate_window),
        "request body arrived below body_min_rate (%llu bytes in %llu s): 408",
        (unsigned long long)c->window_bytes, (unsigned long long)cfg->body_rate_window);
    c->closing = true;
    dems_resp_error(req, 408, "request_timeout", "the request body arrived too slowly");
}

static void start_body(struct dems_req *req)
{
    struct dems_conn *c = req->conn;
    const struct dems_http_head *h = req->head;
    if (h->expect_continue && (h->chunked || h->content_length > 0))
        evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
    const struct dems_config *cfg = c->loop->srv->cfg;
    struct timeval tv = {.tv_sec = (time_t)cfg->body_timeout};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    if (has_body(h))
        start_rate_window(c);
}

void dems_req_set_data(struct dems_req *req, void *data, void (*free_fn)(void *data))
{
    req->data = data;
    req->data_free = free_fn;
}

void *dems_req_data(const struct dems_req *req)
{
    return req->data;
}

const PGresult *dems_req_folded(const struct dems_req *req)
{
    return req->folded;
}

void dems_req_set_folded(struct dems_req *req, PGresult *res)
{
    PQclear(req->folded);
    req->folded = res;
}

/* Authorised: run the route's begin hook, then read the body. Returns 0 to
 * read on at once, DEMS_EAGAIN when reading waits (answered, or begin
 * will call dems_req_continue). */
static int proceed(struct dems_req *req)
{
    if (req->route->begin != NULL) {
        int r = req->route->begin(req);
        if (r == DEMS_EAGAIN)
            return DEMS_EAGAIN;
        if (r < 0) {
            if (!req->responded)
                dems_resp_err(req, r);
            return answered_early(req);
        }
    }
    start_body(req);
    return 0;
}

void dems_req_continue(struct dems_req *req)
{
    if (req->aborted || req->responded)
        return;
    start_body(req);
    dems_http_parser_resume(req->conn->parser);
    conn_process(req->conn);
}

void dems_req_hold(struct dems_req *req)
{
    if (req->aborted || req->conn == NULL)
        return;
    /* Not even into the input buffer: while it holds, the socket fills and
     * TCP slows the client (OpenSSL's bufferevent otherwise keeps waking
     * the loop for input it is not taking). */
    bufferevent_disable(req->conn->bev, EV_READ);
}

void dems_req_resume(struct dems_req *req)
{
    if (req->aborted || req->conn == NULL)
        return;
    bufferevent_enable(req->conn->bev, EV_READ);
    if (req->responded)
        return;
    dems_http_parser_resume(req->conn->parser);
    conn_process(req->conn);
}

static void on_auth_done(struct dems_req *req, int err)
{
    if (req->aborted || req->responded)
        return;
    if (err < 0) {
        dems_resp_err(req, err);
        return;
    }
    if ((req->route->roles & req->principal.role) == 0) {
        dems_log(DEMS_LOG_WARN, req->id,
                 json_pack("{s:o,s:s}", "user",
                           dems_log_str(req->principal.username, strlen(req->principal.username)),
                           "event", "access_denied"),
                 "role %s may not call this route", dems_role_name(req->principal.role));
        dems_auth_refuse(req, "role may not use this endpoint", 403, "forbidden",
                         "your role may not use this endpoint");
        return;
    }
    if (req->principal.totp_setup && !dems_auth_totp_setup_route(req->route)) {
        dems_resp_error(req, 403, "totp_setup_required",
                        "an administrator requires this account to use a one-time code: set it"
                        " up first (POST /v1/me/totp, then /v1/me/totp/confirm)");
        return;
    }
    if (proceed(req) == 0) {
        dems_http_parser_resume(req->conn->parser);
        conn_process(req->conn);
    }
}

static int check_body_limits(struct dems_req *req)
{
    const struct dems_http_head *h = req->head;
    size_t max = req->route->max_body;
    if (h->has_length && h->content_length > max) {
        dems_resp_error(req, 413, "too_large",
                        max == 0 ? "this endpoint takes no request body"
                                 : "request body is too large");
        return -1;
    }
    if (h->chunked && max == 0) {
        dems_resp_error(req, 413, "too_large", "this endpoint takes no request body");
        return -1;
    }
    dems_buf_init(&req->body, req->route->body != NULL ? 0 : max);
    return 0;
}

/* Decodes the query string once, for every route (dems_req_query); a
 * malformed one is answered 400 before any handler runs. */
static int decode_query(struct dems_req *req)
{
    char err[160];
    int r = dems_http_query_parse(&req->query, req->head->query, err, sizeof(err));
    if (r == DEMS_EINVAL)
        dems_resp_error(req, 400, "invalid_parameter", err);
    else if (r < 0)
        dems_resp_err(req, r);
    return r;
}

/* Proxies that block PATCH/DELETE send POST with X-HTTP-Method-Override
 * (tus core); honour it for POST only. */
static enum dems_http_method effective_method(const struct dems_http_head *head)
{
    const struct dems_str *o = dems_http_head_get(head, "x-http-method-override");
    if (head->method != DEMS_HTTP_POST || o == NULL)
        return head->method;
    static const struct {
        const char *name;
        enum dems_http_method m;
    } map[] = {{"PATCH", DEMS_HTTP_PATCH},    {"DELETE", DEMS_HTTP_DELETE},
               {"PUT", DEMS_HTTP_PUT},        {"POST", DEMS_HTTP_POST},
               {"GET", DEMS_HTTP_GET},        {"HEAD", DEMS_HTTP_HEAD},
               {"OPTIONS", DEMS_HTTP_OPTIONS}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (dems_str_eq_ci(*o, map[i].name))
            return map[i].m;
    }
    return DEMS_HTTP_OTHER;
}

static int on_head(void *arg, const struct dems_http_head *head)
{
    struct dems_conn *c = arg;
    evtimer_del(c->timer);
    c->head_timing = false;
    struct dems_req *req = req_new(c);
    if (req == NULL)
        return DEMS_ENOMEM;
    c->req = req;
    req->head = head;
    req->method = effective_method(head);
    if (req->method == DEMS_HTTP_OTHER) {
        dems_resp_error(req, 501, "not_implemented", "request method is not implemented");
        return answered_early(req);
    }
    int status = 0;
    char allow[128];
    req->route = dems_router_match(req->method, head->path, req->params, &req->nparams, &status,
                                   allow, sizeof(allow));
    if (req->route != NULL)
        dems_metrics_in_flight((size_t)(req->route - dems_routes), 1);
    if (req->route == NULL) {
        if (status == 405) {
            dems_resp_header(req, "Allow", allow);
            dems_resp_error(req, 405, "method_not_allowed", "method not allowed on this path");
        } else {
            dems_resp_error(req, 404, "not_found", "no such endpoint");
        }
        return answered_early(req);
    }
    if (decode_query(req) < 0)
        return answered_early(req);
    if (check_body_limits(req) < 0)
        return DEMS_EAGAIN; /* only fails for requests with a body */
    if (req->route->roles & DEMS_ROLE_PUBLIC)
        return proceed(req);
    struct dems_auth_fold fold;
    bool folds = req->route->fold != NULL && req->route->fold(req, &fold);
    int r = dems_auth_begin(req, &req->principal, folds ? &fold : NULL, on_auth_done);
    if (r < 0) {
        dems_resp_err(req, r);
        return answered_early(req);
    }
    return DEMS_EAGAIN; /* resumed by on_auth_done or finish_request */
}

static int on_body(void *arg, const uint8_t *data, size_t n)
{
    struct dems_conn *c = arg;
    struct dems_req *req = c->req;
    if (req->responded)
        return DEMS_EAGAIN;
    c->window_bytes += n;
    if (req->route->body != NULL) {
        if (n > req->route->max_body - req->body_seen)
            return DEMS_ETOOBIG;
        req->body_seen += n;
        int r = req->route->body(req, data, n);
        return r < 0 && req->responded ? DEMS_EAGAIN : r;
    }
    return dems_buf_append(&req->body, data, n); /* DEMS_ETOOBIG -> 413 */
}

static bool is_json_type(const struct dems_http_head *h)
{
    const struct dems_str *ct = dems_http_head_get(h, "content-type");
    if (ct == NULL)
        return false;
    struct dems_str base = *ct;
    const char *semi = memchr(base.ptr, ';', base.len);
    if (semi != NULL)
        base.len = (size_t)(semi - base.ptr);
    return dems_str_eq_ci(dems_str_trim(base), "application/json");
}

static int on_end(void *arg)
{
    struct dems_conn *c = arg;
    struct dems_req *req = c->req;
    if (req == NULL)
        return 0; /* the end of a message answered and finished earlier */
    req->body_done = true;
    stop_rate_window(c);
    if (req->responded)
        return DEMS_EAGAIN;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    if (req->route->body == NULL && req->body.len > 0) {
        if (!is_json_type(req->head)) {
            dems_resp_error(req, 415, "unsupported_media_type",
                            "request body must be application/json");
            return DEMS_EAGAIN;
        }
        json_error_t jerr;
        req->json =
            json_loadb((const char *)req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &jerr);
        if (req->json == NULL || !json_is_object(req->json)) {
            dems_resp_error(req, 400, "invalid_json", "request body must be a JSON object");
            return DEMS_EAGAIN;
        }
    }
    req->route->handle(req);
    return DEMS_EAGAIN;
}

static const struct dems_http_parser_cb parser_cb = {
    .on_head = on_head,
    .on_body = on_body,
    .on_end = on_end,
};

/*
 * TLS reads ahead (server/core/tls.c): OpenSSL takes up to 64 KiB from the
 * socket per read, several records at once, where without it each 16 KiB
 * record costs two reads and a wake-up. So records can wait inside OpenSSL
 * with the socket empty, and a connection whose reading was stopped (the
 * input's high-watermark, dems_req_hold) would never be woken for them when
 * reading starts again. Whenever input has been consumed and reading is on,
 * records still buffered are read at once (the read event run by hand;
 * with nothing complete buffered that reads nothing and ends).
 */
static void read_buffered(struct dems_conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (ssl != NULL && (bufferevent_get_enabled(c->bev) & EV_READ) != 0 && SSL_has_pending(ssl))
        event_active(&c->bev->ev_read, EV_READ, 1);
}

/* Feeds buffered input to the parser until it pauses or runs dry. */
static void conn_process(struct dems_conn *c)
{
    while (!c->closed && dems_http_parser_state(c->parser) == DEMS_HTTP_PARSING) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t used = dems_http_parser_feed(c->parser, v.iov_base, v.iov_len);
        if (c->closed)
            return;
        evbuffer_drain(in, used);
        if (dems_http_parser_state(c->parser) == DEMS_HTTP_FAILED) {
            int status;
            const char *code, *msg;
            dems_http_parser_error(c->parser, &status, &code, &msg);
            early_error(c, status, code, msg);
            return;
        }
    }
    if (!c->closed && c->req == NULL && !c->head_timing && dems_http_parser_in_message(c->parser)) {
        /* The first bytes of a head: the client now has header_timeout to
         * finish it, however slowly it trickles (slowloris). */
        struct timeval tv = {.tv_sec = (time_t)c->loop->srv->cfg->header_timeout};
        c->head_timing = true;
        evtimer_add(c->timer, &tv);
    }
    if (!c->closed)
        read_buffered(c);
}

/* ---- bufferevent callbacks ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct dems_conn *c = arg;
    if (c->lingering) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        read_buffered(c);
        return;
    }
    conn_process(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct dems_conn *c = arg;
    struct dems_req *req = c->req;
    if (req == NULL || !req->responded)
        return;
    if (req->streaming && !req->stream_ended) {
        if (req->on_drain != NULL) {
            dems_req_ref(req);
            req->on_drain(req);
            dems_req_unref(req);
        }
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        finish_request(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct dems_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        /* The handshake may have read the first request with it. */
        read_buffered(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        DEMS_LOG_LIMITED(DEMS_LOG_INFO, c->req != NULL ? c->req->id : NULL,
                         json_pack("{s:s,s:s}", "peer", c->peer, "event", "timeout"),
                         "closing a connection that stalled");
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_close(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dems_conn *c = arg;
    if (c->rate_timing) {
        on_rate_window(c);
        return;
    }
    if (c->head_timing)
        DEMS_LOG_LIMITED(DEMS_LOG_INFO, NULL,
                         json_pack("{s:s,s:s}", "peer", c->peer, "event", "timeout"),
                         "closing a connection whose request head did not arrive in time");
    conn_close(c);
}

/* ---- connection lifecycle ---- */

static void conn_close(struct dems_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    struct dems_loop *loop = c->loop;
    if (c->req != NULL) {
        struct dems_req *req = c->req;
        c->req = NULL;
        req->aborted = true;
        if (req->responded)
            log_request(req);
        dems_req_unref(req);
    }
    bufferevent_free(c->bev);
    c->bev = NULL;
    event_free(c->timer);
    c->timer = NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    loop->nconns--;
    dems_admit_release(loop->srv, &c->admit_key);
    conn_unref(c);
    dems_loop_maybe_exit(loop);
}

static void format_peer(const struct sockaddr *sa, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, host,
                  sizeof(host));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, host,
                  sizeof(host));
    snprintf(out, len, "%s", host);
}

void dems_conn_accept(struct dems_loop *loop, int fd, const struct sockaddr *sa,
                      const struct dems_admit_key *key)
{
    struct dems_conn *c = calloc(1, sizeof(*c));
    SSL *ssl = SSL_new(loop->srv->ssl_ctx);
    if (c == NULL || ssl == NULL)
        goto fail;
    c->admit_key = *key;
    c->loop = loop;
    c->refs = 1;
    /* Responses leave as several TLS records; with Nagle's algorithm the
     * last would wait for the client's delayed ACK (~40 ms per response). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    format_peer(sa, c->peer, sizeof(c->peer));
    c->parser = dems_http_parser_new(&parser_cb, c);
    c->timer = evtimer_new(loop->base, on_timer, c);
    if (c->parser == NULL || c->timer == NULL)
        goto fail;
    c->bev = bufferevent_openssl_socket_new(loop->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (c->bev == NULL)
        goto fail;
    ssl = NULL; /* owned by the bufferevent now */
    fd = -1;
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    evbuffer_add_cb(bufferevent_get_input(c->bev), count_bytes, c); /* non-NULL: input */
    evbuffer_add_cb(bufferevent_get_output(c->bev), count_bytes, NULL);
    bufferevent_setwatermark(c->bev, EV_READ, 0, DEMS_MAX_CONN_INPUT);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* The TLS handshake and the first request head share one deadline. */
    struct timeval tv = {.tv_sec = (time_t)loop->srv->cfg->header_timeout};
    c->head_timing = true;
    evtimer_add(c->timer, &tv);
    c->next = loop->conns;
    if (loop->conns != NULL)
        loop->conns->prev = c;
    loop->conns = c;
    loop->nconns++;
    return;
fail:
    dems_admit_release(loop->srv, key);
    if (ssl != NULL)
        SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    if (c != NULL) {
        if (c->timer != NULL)
            event_free(c->timer);
        dems_http_parser_free(c->parser);
        free(c);
    }
}

void dems_conn_drain_all(struct dems_loop *loop)
{
    struct dems_conn *c = loop->conns;
    while (c != NULL) {
        struct dems_conn *next = c->next;
        if (c->req == NULL && !dems_http_parser_in_message(c->parser))
            conn_close(c);
        else
            c->closing = true;
        c = next;
    }
}

void dems_conn_close_all(struct dems_loop *loop)
{
    while (loop->conns != NULL)
        conn_close(loop->conns);
}
