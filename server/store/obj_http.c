/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The object-store client's HTTP layer: one libcurl easy handle per request
 * (kept in a small idle pool so connections are reused), the backend's
 * signature rebuilt before every attempt, and the retry rules the stores
 * document (Azure: "retry on 408, 429, 500, 502, 503, 504 with exponential
 * backoff"; S3: "500, 503 SlowDown: retry with backoff"):
 *
 *   - connection failures, timeouts, truncated answers, 408, 429 and 5xx are
 *     transient: retried up to store_retries times after 100 ms · 2^n
 *     (at most 8 s) with full jitter, or the Retry-After the store asked for
 *     (at most 30 s);
 *   - anything else is an answer: 2xx succeeds, 404 is DEMS_ENOTFOUND,
 *     401/403 DEMS_EAUTH, the rest DEMS_EIO.
 *
 * Every request of the stores' APIs we use is idempotent (PUT of a whole
 * object, a block or a part; GET; HEAD; DELETE; a block list; completing a
 * multipart upload, which the S3 backend checks after a retry), so a retry
 * after a lost answer is safe.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dems/err.h"
#include "demsd/log.h"

#include "obj_int.h"

#define OBJ_GROW_MAX        (32u << 20) /* a listing page or an error body, at most */
#define OBJ_BACKOFF_MS      100u
#define OBJ_BACKOFF_CAP_MS  8000u
#define OBJ_RETRY_AFTER_CAP 30u

void obj_req_init(struct obj_req *r, const char *op, const char *key, const char *method)
{
    memset(r, 0, sizeof(*r));
    r->op = op;
    r->key = key;
    r->method = method;
}

int obj_req_header(struct obj_req *r, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        return DEMS_ETOOBIG;
    struct curl_slist *l = curl_slist_append(r->headers, line);
    if (l == NULL)
        return DEMS_ENOMEM;
    r->headers = l;
    return 0;
}

void obj_req_done(struct obj_req *r)
{
    curl_slist_free_all(r->headers);
    curl_slist_free_all(r->sent);
    free(r->grow);
    r->headers = NULL;
    r->sent = NULL;
    r->grow = NULL;
}

static CURL *handle_get(struct dems_objstore *s)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->nidle > 0)
        h = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->lock);
    return h != NULL ? h : curl_easy_init();
}

static void handle_put(struct dems_objstore *s, CURL *h)
{
    pthread_mutex_lock(&s->lock);
    if (s->nidle < OBJ_POOL) {
        s->idle[s->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (h != NULL)
        curl_easy_cleanup(h);
}

struct attempt {
    struct obj_req *r;
    unsigned retry_after; /* seconds; 0 = none */
    bool overflow;
};

/* Appends n bytes to r's growing buffer, kept NUL-terminated; false on ENOMEM. */
static bool grow_append(struct obj_req *r, const char *p, size_t n)
{
    uint8_t *g = realloc(r->grow, r->out_len + n + 1);
    if (g == NULL)
        return false;
    r->grow = g;
    memcpy(g + r->out_len, p, n);
    r->out_len += n;
    g[r->out_len] = '\0';
    return true;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct attempt *a = arg;
    struct obj_req *r = a->r;
    size_t n = size * nmemb;
    if (r->out_grow) {
        if (r->out_len + n > OBJ_GROW_MAX) {
            a->overflow = true;
            return 0;
        }
        return grow_append(r, p, n) ? n : 0;
    }
    /* An error answer's body goes to the growing buffer for its code (4 KiB of it). */
    if (r->status == 0 || r->status >= 300) {
        size_t keep = r->out_len < 4096 ? 4096 - r->out_len : 0;
        return grow_append(r, p, keep < n ? keep : n) ? n : 0;
    }
    if (r->out_len + n > r->outcap) {
        a->overflow = true;
        return 0;
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
    return n;
}

static bool header_is(const char *p, size_t n, const char *name, const char **val, size_t *vlen)
{
    size_t l = strlen(name);
    if (n <= l || strncasecmp(p, name, l) != 0 || p[l] != ':')
        return false;
    const char *v = p + l + 1;
    const char *e = p + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
        e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return true;
}

static uint64_t parse_u64(const char *v, size_t n, bool *ok)
{
    uint64_t x = 0;
    *ok = n > 0 && n <= 19;
    for (size_t i = 0; i < n && *ok; i++) {
        if (v[i] < '0' || v[i] > '9')
            *ok = false;
        else
            x = x * 10 + (uint64_t)(v[i] - '0');
    }
    return x;
}

static void copy_text(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    struct attempt *a = arg;
    struct obj_req *r = a->r;
    size_t n = size * nmemb;
    const char *v;
    size_t vl;
    bool ok;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after 100 Continue) */
        const char *sp = memchr(p, ' ', n);
        r->status = 0;
        if (sp != NULL && (size_t)(p + n - sp) > 3) {
            uint64_t st = parse_u64(sp + 1, 3, &ok);
            if (ok)
                r->status = (long)st;
        }
        r->content_length = 0;
        r->content_range_len = 0;
        r->etag[0] = '\0';
        r->copy_status[0] = '\0';
        r->err_code[0] = '\0';
        a->retry_after = 0;
    } else if (header_is(p, n, "content-length", &v, &vl)) {
        uint64_t x = parse_u64(v, vl, &ok);
        if (ok)
            r->content_length = x;
    } else if (header_is(p, n, "content-range", &v, &vl)) {
        const char *slash = memchr(v, '/', vl);
        if (slash != NULL) {
            uint64_t x = parse_u64(slash + 1, (size_t)(v + vl - slash - 1), &ok);
            if (ok)
                r->content_range_len = x;
        }
    } else if (header_is(p, n, "etag", &v, &vl)) {
        copy_text(r->etag, sizeof(r->etag), v, vl);
    } else if (header_is(p, n, "x-ms-copy-status", &v, &vl)) {
        copy_text(r->copy_status, sizeof(r->copy_status), v, vl);
    } else if (header_is(p, n, "x-ms-error-code", &v, &vl)) {
        copy_text(r->err_code, sizeof(r->err_code), v, vl);
    } else if (header_is(p, n, "x-ms-request-id", &v, &vl) ||
               header_is(p, n, "x-amz-request-id", &v, &vl)) {
        copy_text(r->request_id, sizeof(r->request_id), v, vl);
    } else if (header_is(p, n, "retry-after", &v, &vl)) {
        uint64_t x = parse_u64(v, vl, &ok);
        if (ok)
            a->retry_after = x > OBJ_RETRY_AFTER_CAP ? OBJ_RETRY_AFTER_CAP : (unsigned)x;
    }
    return n;
}

static bool transient_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_COULDNT_RESOLVE_HOST:
        return true;
    default:
        return false;
    }
}

static bool transient_status(long st)
{
    return st == 408 || st == 429 || (st >= 500 && st <= 599 && st != 501 && st != 505);
}

static bool quiet(const struct obj_req *r)
{
    for (size_t i = 0; i < sizeof(r->quiet_status) / sizeof(r->quiet_status[0]); i++) {
        if (r->quiet_status[i] != 0 && r->quiet_status[i] == r->status)
            return true;
    }
    return false;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Full jitter: a random wait up to 100 ms · 2^attempt, at most 8 s. */
static unsigned backoff_ms(unsigned attempt)
{
    unsigned cap = OBJ_BACKOFF_MS << (attempt < 7 ? attempt : 7);
    if (cap > OBJ_BACKOFF_CAP_MS)
        cap = OBJ_BACKOFF_CAP_MS;
    return randombytes_uniform(cap + 1);
}

void obj_backoff(unsigned attempt)
{
    sleep_ms(backoff_ms(attempt));
}

/* The store's own error code from an error body (<Code>...</Code>), when not in a header. */
static void body_code(struct obj_req *r)
{
    if (r->err_code[0] != '\0' || r->grow == NULL || r->out_len == 0)
        return;
    const char *v;
    size_t vl;
    const char *b = (const char *)r->grow;
    if (obj_xml_find(b, b + r->out_len, "Code", &v, &vl) != NULL)
        (void)obj_xml_text(v, vl, r->err_code, sizeof(r->err_code));
}

/* A request that reads or removes (a 404 means "no such object"), not one that writes. */
static bool reading(const struct obj_req *r)
{
    return strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0 ||
           strcmp(r->method, "DELETE") == 0;
}

/*
 * A 404 about the container or bucket in a request about an object: the
 * store is misconfigured, the object is not "missing". (A request about the
 * container itself, with no key, takes it as the answer: prepare.)
 */
static bool container_gone(const struct obj_req *r)
{
    return r->key != NULL && r->key[0] != '\0' &&
           (strcmp(r->err_code, "NoSuchBucket") == 0 ||
            strcmp(r->err_code, "ContainerNotFound") == 0);
}

static CURLcode perform(struct dems_objstore *s, CURL *h, struct obj_req *r, struct attempt *a,
                        char *curl_err)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, s->timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A stalled transfer fails long before the whole-request timeout. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    if (s->ca_file[0] != '\0')
        curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(r->method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else { /* PUT, POST: the body from memory, Content-Length set by curl */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body != NULL ? (const char *)r->body : "");
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->sent);
    return curl_easy_perform(h);
}

int obj_http_do(struct dems_objstore *s, struct obj_req *r)
{
    CURL *h = handle_get(s);
    if (h == NULL)
        return DEMS_ENOMEM;
    int rc = DEMS_EIO;
    char curl_err[CURL_ERROR_SIZE];
    for (unsigned attempt = 0;; attempt++) {
        struct attempt a = {.r = r};
        r->status = 0;
        r->out_len = 0;
        r->err_code[0] = '\0';
        r->request_id[0] = '\0';
        curl_err[0] = '\0';
        curl_slist_free_all(r->sent);
        r->sent = NULL;
        /* The backend's headers, then its signature over them, then ours. */
        for (struct curl_slist *l = r->headers; l != NULL; l = l->next) {
            struct curl_slist *n = curl_slist_append(r->sent, l->data);
            if (n == NULL) {
                rc = DEMS_ENOMEM;
                goto out;
            }
            r->sent = n;
        }
        if (r->sign != NULL) {
            int sr = r->sign(s, r);
            if (sr < 0) {
                rc = sr;
                goto out;
            }
        }
        bool has_type = false;
        for (struct curl_slist *l = r->sent; l != NULL; l = l->next)
            has_type = has_type || strncasecmp(l->data, "content-type:", 13) == 0;
        /* No Expect: 100-continue round trip; no Content-Type curl would invent. */
        struct curl_slist *n = curl_slist_append(r->sent, "Expect:");
        if (n != NULL && !has_type)
            n = curl_slist_append(n, "Content-Type:");
        if (n == NULL) {
            rc = DEMS_ENOMEM;
            goto out;
        }
        r->sent = n;

        CURLcode cc = perform(s, h, r, &a, curl_err);
        bool retry = false;
        if (a.overflow) {
            rc = DEMS_EIO;
            snprintf(r->err_code, sizeof(r->err_code), "answer_too_large");
        } else if (cc != CURLE_OK) {
            retry = transient_curl(cc);
            rc = retry ? DEMS_EUNAVAIL : DEMS_EIO;
            r->status = 0;
            snprintf(r->err_code, sizeof(r->err_code), "curl: %.52s",
                     curl_err[0] != '\0' ? curl_err : curl_easy_strerror(cc));
        } else {
            long st = 0;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
            r->status = st;
            body_code(r);
            if ((st >= 200 && st < 300) || (quiet(r) && !container_gone(r))) {
                rc = 0;
                break;
            }
            /* S3's RequestTimeout (400): the store gave up waiting for our body. */
            retry =
                transient_status(st) || (st == 400 && strcmp(r->err_code, "RequestTimeout") == 0);
            rc = st == 404 && reading(r) && !container_gone(r) ? DEMS_ENOTFOUND
                 : st == 401 || st == 403                      ? DEMS_EAUTH
                 : retry                                       ? DEMS_EUNAVAIL
                                                               : DEMS_EIO;
        }
        if (!retry || attempt >= s->retries)
            break;
        unsigned ms = a.retry_after > 0 ? a.retry_after * 1000u : backoff_ms(attempt);
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:s,s:s,s:i,s:s,s:i,s:i}", "event", "objstore_retry", "op", r->op,
                           "key", r->key != NULL ? r->key : "", "status", (int)r->status,
                           "store_error", r->err_code, "attempt", (int)attempt + 1, "wait_ms",
                           (int)ms),
                 "object store %s %s: %ld %s; retrying in %u ms", r->op,
                 r->key != NULL ? r->key : "", r->status, r->err_code, ms);
        sleep_ms(ms);
    }
out:
    if (rc < 0 && !(rc == DEMS_ENOTFOUND && quiet(r)))
        obj_log_failure(s, r, rc);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL); /* curl_err is about to go */
    handle_put(s, h);
    return rc;
}

void obj_log_failure(struct dems_objstore *s, const struct obj_req *r, int err)
{
    dems_log(DEMS_LOG_WARN, NULL,
             json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "event", "objstore_failed", "store",
                       s->where, "op", r->op, "key", r->key != NULL ? r->key : "", "status",
                       (int)r->status, "store_error", r->err_code, "request_id", r->request_id,
                       "code", dems_err_code(err)),
             "object store %s %s failed: HTTP %ld %s (%s)", r->op, r->key != NULL ? r->key : "",
             r->status, r->err_code[0] != '\0' ? r->err_code : "-", dems_strerror(err));
}
