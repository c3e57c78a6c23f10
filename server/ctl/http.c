/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl's requests, over one libcurl easy handle (its connection is
 * reused from request to request). HTTPS only, the peer and host name
 * always verified (against the given CA, else the system's), TLS 1.2 at
 * least, no redirects followed, a timeout on every request. The bearer
 * token goes in one header and nowhere else: libcurl's verbose output is
 * never switched on, and no error message quotes a request's headers.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/version.h"

#include "ctl.h"

#define MAX_ANSWER ((size_t)64 << 20)

int ctl_http_init(struct ctl_http *h, const char *server, const char *ca, const char *token)
{
    memset(h, 0, sizeof(*h));
    h->server = server;
    h->ca = ca;
    h->token = token;
    h->curl = curl_easy_init();
    if (h->curl == NULL)
        return ctl_fail(CTL_UNREACHABLE, "libcurl failed to start");
    return CTL_OK;
}

void ctl_http_done(struct ctl_http *h)
{
    if (h->curl != NULL)
        curl_easy_cleanup(h->curl);
    h->curl = NULL;
}

void ctl_resp_done(struct ctl_resp *r)
{
    dems_buf_done(&r->body);
    json_decref(r->json);
    r->json = NULL;
}

char *ctl_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(s);
    char *out = malloc(3 * len + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

bool ctl_query_add(char *path, size_t cap, const char *name, const char *value)
{
    char *e = ctl_escape(value);
    size_t len = strlen(path);
    bool ok =
        e != NULL && (size_t)snprintf(path + len, cap - len, "%c%s=%s",
                                      strchr(path, '?') != NULL ? '&' : '?', name, e) < cap - len;
    free(e);
    if (!ok) {
        path[len] = '\0';
        ctl_usage_error("--%s: too long", name);
    }
    return ok;
}

struct sink {
    struct dems_buf *buf;
    FILE *out; /* a download's file, for a 2xx answer */
    CURL *curl;
    bool too_big;
};

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    struct sink *s = ctx;
    size_t len = size * n;
    long status = 0;
    if (s->out != NULL) {
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300)
            return fwrite(p, 1, len, s->out);
    }
    if (s->buf->len + len > MAX_ANSWER || dems_buf_append(s->buf, p, len) != 0) {
        s->too_big = true;
        return 0;
    }
    return len;
}

/* Options every request shares; headers is set by the caller. */
static void common_opts(struct ctl_http *h, const char *url, char *errbuf)
{
    CURL *c = h->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (h->ca != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->ca);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    long timeout = h->cfg != NULL ? h->cfg->timeout : 60;
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout < 10 ? timeout : 10L);
    char ua[64];
    snprintf(ua, sizeof(ua), "demsctl/%s", dems_version);
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
}

static struct curl_slist *make_headers(struct ctl_http *h, bool json_body)
{
    struct curl_slist *l = NULL, *t;
    l = curl_slist_append(NULL, "Accept: application/json, application/problem+json, */*");
    if (l != NULL && (t = curl_slist_append(l, json_body ? "Content-Type: application/json"
                                                         : "Content-Type:")) != NULL)
        l = t;
    if (l != NULL && (t = curl_slist_append(l, "Expect:")) != NULL)
        l = t;
    if (l != NULL && h->token != NULL) {
        size_t n = strlen(h->token) + 32;
        char *auth = malloc(n);
        if (auth == NULL) {
            curl_slist_free_all(l);
            return NULL;
        }
        snprintf(auth, n, "Authorization: Bearer %s", h->token);
        t = curl_slist_append(l, auth);
        explicit_bzero(auth, n);
        free(auth);
        if (t == NULL) {
            curl_slist_free_all(l);
            return NULL;
        }
    }
    return l;
}

static int perform(struct ctl_http *h, const char *method, const char *path, const json_t *body,
                   FILE *out, struct ctl_resp *ret)
{
    memset(ret, 0, sizeof(*ret));
    dems_buf_init(&ret->body, MAX_ANSWER);
    ret->had_token = h->token != NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    size_t ulen = strlen(h->server) + strlen(path) + 1;
    char *url = malloc(ulen);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *headers = make_headers(h, body != NULL);
    if (url == NULL || headers == NULL || (body != NULL && text == NULL)) {
        free(url);
        free(text);
        curl_slist_free_all(headers);
        return ctl_fail(CTL_UNREACHABLE, "out of memory");
    }
    snprintf(url, ulen, "%s%s", h->server, path);
    common_opts(h, url, errbuf);
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    struct sink sink = {.buf = &ret->body, .out = out, .curl = c};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    long timeout = h->cfg != NULL ? h->cfg->timeout : 60;
    if (out != NULL) {
        /* A long download is fine; a stalled one is not. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, timeout);
    } else {
        curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout);
    }
    bool post = strcmp(method, "POST") == 0;
    if (post)
        curl_easy_setopt(c, CURLOPT_POST, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (text != NULL || post) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text != NULL ? text : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, text != NULL ? (long)strlen(text) : 0L);
    }
    CURLcode cr = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ret->status);
    char *ctype = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
    bool is_json = ctype != NULL && strstr(ctype, "json") != NULL;
    curl_slist_free_all(headers);
    free(text);
    free(url);
    if (cr != CURLE_OK) {
        if (sink.too_big)
            return ctl_fail(CTL_UNREACHABLE, "%s %s: the answer is larger than %zu MiB", method,
                            path, MAX_ANSWER >> 20);
        if (cr == CURLE_WRITE_ERROR && out != NULL)
            return ctl_fail(CTL_UNREACHABLE, "%s %s: writing the answer failed", method, path);
        return ctl_fail(CTL_UNREACHABLE, "cannot reach %s: %s", h->server,
                        errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cr));
    }
    if (is_json && ret->body.len > 0)
        ret->json = json_loadb((const char *)ret->body.data, ret->body.len, 0, NULL);
    return CTL_OK;
}

int ctl_http_do(struct ctl_http *h, const char *method, const char *path, const json_t *body,
                struct ctl_resp *ret)
{
    return perform(h, method, path, body, NULL, ret);
}

int ctl_http_download(struct ctl_http *h, const char *path, FILE *out, struct ctl_resp *ret)
{
    return perform(h, "GET", path, NULL, out, ret);
}

/* Writes text to out with control characters (terminal escapes) replaced by '?'. */
static void put_clean(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        fputc(c < 0x20 || c == 0x7F ? '?' : c, out);
    }
}

int ctl_check(const struct ctl_resp *r)
{
    if (r->status >= 200 && r->status < 300)
        return CTL_OK;
    const char *code = json_string_value(json_object_get(r->json, "code"));
    const char *detail = json_string_value(json_object_get(r->json, "detail"));
    fprintf(stderr, "demsctl: %ld %s: ", r->status, code != NULL ? code : "error");
    if (detail != NULL) {
        put_clean(stderr, detail, strlen(detail));
    } else {
        /* Not a problem document: the start of the body, on one line. */
        size_t n = r->body.len < 200 ? r->body.len : 200;
        put_clean(stderr, (const char *)r->body.data, n);
        if (n == 0)
            fputs("(no detail)", stderr);
    }
    if (r->status == 401 && r->had_token)
        fputs(" (log in again: demsctl login)", stderr);
    fputc('\n', stderr);
    return r->status == 401 ? CTL_AUTH : CTL_REFUSED;
}

int ctl_session(struct ctl_config *cfg, struct ctl_token *tok, struct ctl_http *h)
{
    memset(tok, 0, sizeof(*tok));
    memset(h, 0, sizeof(*h));
    int r = ctl_config_load(cfg, true);
    if (r != CTL_OK)
        return r;
    if ((r = ctl_token_read(cfg->token_path, tok)) != CTL_OK) {
        ctl_config_done(cfg);
        return r;
    }
    size_t ls = strlen(tok->server);
    while (ls > 0 && tok->server[ls - 1] == '/')
        ls--;
    if (strlen(cfg->server) != ls || strncmp(cfg->server, tok->server, ls) != 0) {
        r = ctl_fail(CTL_AUTH,
                     "the token in %s is for %s, not %s: log in there (or give --token-file)",
                     cfg->token_path, tok->server, cfg->server);
        ctl_session_done(cfg, tok, h);
        return r;
    }
    if ((r = ctl_http_init(h, cfg->server, cfg->ca, tok->token)) != CTL_OK) {
        ctl_session_done(cfg, tok, h);
        return r;
    }
    h->cfg = cfg;
    return CTL_OK;
}

void ctl_session_done(struct ctl_config *cfg, struct ctl_token *tok, struct ctl_http *h)
{
    ctl_http_done(h);
    ctl_token_done(tok);
    ctl_config_done(cfg);
}

int ctl_call(struct ctl_http *h, const char *method, const char *path, const json_t *body,
             json_t **ret_json)
{
    struct ctl_resp resp;
    *ret_json = NULL;
    int r = ctl_http_do(h, method, path, body, &resp);
    if (r == CTL_OK)
        r = ctl_check(&resp);
    if (r == CTL_OK && resp.body.len > 0 && resp.json == NULL)
        r = ctl_fail(CTL_REFUSED, "%s %s: the answer (status %ld) is not JSON", method, path,
                     resp.status);
    if (r == CTL_OK) {
        *ret_json = resp.json;
        resp.json = NULL;
    }
    ctl_resp_done(&resp);
    return r;
}

int ctl_list(struct ctl_http *h, const char *path, const char *key, uint64_t max, json_t **ret_json)
{
    json_t *all = json_array();
    char *cursor = NULL, *raw = NULL; /* the cursor escaped, and as given */
    int r = CTL_OK;
    if (all == NULL)
        return ctl_fail(CTL_REFUSED, "out of memory");
    for (;;) {
        uint64_t want = 200;
        if (max > 0 && max - json_array_size(all) < want)
            want = max - json_array_size(all);
        size_t n = strlen(path) + 64 + (cursor != NULL ? strlen(cursor) : 0);
        char *url = malloc(n);
        if (url == NULL) {
            r = ctl_fail(CTL_REFUSED, "out of memory");
            break;
        }
        snprintf(url, n, "%s%climit=%llu%s%s", path, strchr(path, '?') != NULL ? '&' : '?',
                 (unsigned long long)want, cursor != NULL ? "&cursor=" : "",
                 cursor != NULL ? cursor : "");
        json_t *page;
        r = ctl_call(h, "GET", url, NULL, &page);
        free(url);
        if (r != CTL_OK)
            break;
        json_t *items = json_object_get(page, key);
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        if (!json_is_array(items)) {
            json_decref(page);
            r = ctl_fail(CTL_REFUSED, "GET %s: the answer has no \"%s\" list", path, key);
            break;
        }
        json_array_extend(all, items);
        free(cursor);
        free(raw);
        cursor = next != NULL ? ctl_escape(next) : NULL;
        raw = next != NULL ? strdup(next) : NULL;
        json_decref(page);
        if (cursor == NULL || (max > 0 && json_array_size(all) >= max))
            break;
    }
    free(cursor);
    if (r != CTL_OK) {
        json_decref(all);
        free(raw);
        return r;
    }
    /* Where it stopped (null at the end): the caller can go on from there. */
    json_t *doc = json_object();
    json_object_set_new(doc, key, all);
    json_object_set_new(doc, "next_cursor", raw != NULL ? json_string(raw) : json_null());
    free(raw);
    *ret_json = doc;
    return CTL_OK;
}
