/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the streaming request parser (common/http). The first
 * input byte picks how the rest is split into feeds, so the fuzzer explores
 * token boundaries across reads as a slow client would produce them. Every
 * pause is resumed; the parser must never consume more than it was given
 * and must stop consuming once failed. Each head's query string also goes
 * through the query decoder.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "dems/err.h"
#include "dems/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t body_total;

static int on_head(void *arg, const struct dems_http_head *h)
{
    (void)arg;
    /* Touch every field so sanitizers see any bad pointer. */
    size_t sum = h->path.len + h->query.len + h->target.len;
    for (size_t i = 0; i < h->nheaders; i++)
        sum += h->headers[i].name.len + h->headers[i].value.len;
    if (h->target.len > 0 && h->target.ptr[h->target.len - 1] == '\0')
        sum++;
    /* The query decoder sees the same untrusted bytes. */
    struct dems_http_query q;
    char err[160];
    if (dems_http_query_parse(&q, h->query, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < q.nparams; i++) {
            if (q.params[i].value.ptr[q.params[i].value.len] != '\0')
                abort();
            sum += q.params[i].name.len;
        }
    }
    dems_http_query_done(&q);
    return sum % 7 == 0 ? DEMS_EAGAIN : 0;
}

static int on_body(void *arg, const uint8_t *p, size_t n)
{
    (void)arg;
    if (n > 0)
        body_total += p[0] + p[n - 1];
    return body_total > (1u << 20) ? DEMS_ETOOBIG : 0;
}

static int on_end(void *arg)
{
    (void)arg;
    return DEMS_EAGAIN;
}

static const struct dems_http_parser_cb cb = {on_head, on_body, on_end};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 64) + 1;
    data++;
    size--;
    struct dems_http_parser *p = dems_http_parser_new(&cb, NULL);
    if (p == NULL)
        return 0;
    size_t off = 0;
    int stalls = 0;
    while (off < size && dems_http_parser_state(p) != DEMS_HTTP_FAILED && stalls < 4) {
        if (dems_http_parser_state(p) == DEMS_HTTP_PAUSED)
            dems_http_parser_resume(p);
        size_t n = size - off < step ? size - off : step;
        size_t used = dems_http_parser_feed(p, data + off, n);
        if (used > n)
            abort();
        stalls = used == 0 ? stalls + 1 : 0;
        off += used;
    }
    if (dems_http_parser_state(p) == DEMS_HTTP_FAILED) {
        int status;
        const char *code, *msg;
        dems_http_parser_error(p, &status, &code, &msg);
        if (status < 400 || status > 599 || code == NULL || msg == NULL)
            abort();
        if (dems_http_parser_feed(p, data, size) != 0)
            abort();
    }
    dems_http_parser_free(p);
    return 0;
}
