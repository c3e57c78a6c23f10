/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Query strings, decoded once for every route by the rules of
 * application/x-www-form-urlencoded (WHATWG URL, "application/x-www-form-
 * urlencoded parsing"): pairs split at '&', name and value at the first '=',
 * '+' is a space and %XX is the byte XX.
 *
 * Unlike the browser's parser (and libevent's evhttp_uridecode, which copies
 * a malformed escape through unchanged), this one is strict, because a
 * silently "repaired" parameter is a parameter the handler did not get: a
 * malformed escape (%zz, or a '%' without two hex digits after it), a
 * decoded NUL byte, a repeated name and more than DEMS_MAX_QUERY_PARAMS
 * pairs are all refused, so the caller can answer 400.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/http.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes in[0..len) into out (room for len + 1 bytes), NUL-terminated.
 * Returns the decoded length, or -1 for a malformed escape or a NUL byte.
 */
static long decode_part(const char *in, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = len - i > 2 ? hex_value(in[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(in[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0')
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return (long)n;
}

/* Names the parameter in an error message when it is plain enough to quote. */
static void describe(const struct dems_str *name, char *out, size_t outlen)
{
    bool plain = name != NULL && name->len > 0 && name->len <= 40;
    for (size_t i = 0; plain && i < name->len; i++) {
        char c = name->ptr[i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.';
    }
    if (plain)
        snprintf(out, outlen, "query parameter \"%.*s\"", (int)name->len, name->ptr);
    else
        snprintf(out, outlen, "a query parameter");
}

static int refuse(const struct dems_str *name, const char *why, char *err, size_t errlen)
{
    char who[64];
    describe(name, who, sizeof(who));
    snprintf(err, errlen, "%s %s", who, why);
    return DEMS_EINVAL;
}

/* Decodes one "name=value" pair into the next slot and the text buffer. */
static int add_pair(struct dems_http_query *q, struct dems_str pair, size_t *used, char *err,
                    size_t errlen)
{
    const char *eq = memchr(pair.ptr, '=', pair.len);
    struct dems_str raw_name = {pair.ptr, eq != NULL ? (size_t)(eq - pair.ptr) : pair.len};
    struct dems_str raw_value = {eq != NULL ? eq + 1 : pair.ptr + pair.len,
                                 eq != NULL ? pair.len - raw_name.len - 1 : 0};
    char *name = q->text + *used;
    long nlen = decode_part(raw_name.ptr, raw_name.len, name);
    if (nlen < 0)
        return refuse(NULL, "has a malformed name (bad %-escape or a NUL byte)", err, errlen);
    *used += (size_t)nlen + 1;
    struct dems_str dname = {name, (size_t)nlen};
    char *value = q->text + *used;
    long vlen = decode_part(raw_value.ptr, raw_value.len, value);
    if (vlen < 0)
        return refuse(&dname, "is malformed (bad %-escape or a NUL byte)", err, errlen);
    *used += (size_t)vlen + 1;
    for (size_t i = 0; i < q->nparams; i++) {
        if (dems_str_eq(q->params[i].name, dname))
            return refuse(&dname, "is repeated (give each parameter once)", err, errlen);
    }
    if (q->nparams == DEMS_MAX_QUERY_PARAMS) {
        snprintf(err, errlen, "too many query parameters (at most %d)", DEMS_MAX_QUERY_PARAMS);
        return DEMS_EINVAL;
    }
    q->params[q->nparams++] = (struct dems_http_param){dname, {value, (size_t)vlen}};
    return 0;
}

int dems_http_query_parse(struct dems_http_query *q, struct dems_str raw, char *err, size_t errlen)
{
    *q = (struct dems_http_query){0};
    /* Each non-empty pair of L raw bytes decodes to at most L bytes plus two
     * NULs, and pairs are at least one byte plus a separator apart. */
    size_t cap;
    if (!dems_size_mul(raw.len, 2, &cap) || !dems_size_add(cap, 2, &cap))
        return DEMS_ENOMEM;
    q->text = malloc(cap);
    if (q->text == NULL)
        return DEMS_ENOMEM;
    size_t used = 0;
    while (raw.len > 0) {
        const char *amp = memchr(raw.ptr, '&', raw.len);
        size_t plen = amp != NULL ? (size_t)(amp - raw.ptr) : raw.len;
        if (plen > 0) {
            int r = add_pair(q, (struct dems_str){raw.ptr, plen}, &used, err, errlen);
            if (r < 0) {
                dems_http_query_done(q);
                return r;
            }
        }
        if (amp == NULL)
            break;
        raw.ptr += plen + 1;
        raw.len -= plen + 1;
    }
    return 0;
}

void dems_http_query_done(struct dems_http_query *q)
{
    if (q == NULL)
        return;
    free(q->text);
    *q = (struct dems_http_query){0};
}

const struct dems_str *dems_http_query_get(const struct dems_http_query *q, const char *name)
{
    struct dems_str n = dems_str_from(name);
    for (size_t i = 0; i < q->nparams; i++) {
        if (dems_str_eq(q->params[i].name, n))
            return &q->params[i].value;
    }
    return NULL;
}
