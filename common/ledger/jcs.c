/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 8785 JSON canonicalisation over jansson values, restricted to the
 * JSON the ledger uses: integers only (in the I-JSON safe range, where RFC
 * 8785's ECMAScript number form is plain decimal), strings, booleans, null,
 * arrays and objects. Object members are sorted by the UTF-16 code units of
 * their names (RFC 8785 section 3.2.3), which differs from UTF-8 byte order
 * only between U+E000..U+FFFF and the supplementary planes.
 */
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ledger_int.h"

struct member {
    const char *key;
    size_t len;
    const json_t *value;
};

/* Decodes the code point at s[*i] (valid UTF-8 assumed) and advances *i. */
static uint32_t next_cp(const uint8_t *s, size_t len, size_t *i)
{
    uint8_t c = s[*i];
    size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : 3;
    uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1fu) : n == 2 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t k = 1; k <= n && *i + k < len; k++)
        cp = (cp << 6) | (s[*i + k] & 0x3fu);
    *i += n + 1;
    return cp;
}

/* The first UTF-16 code unit of cp, and the second (0 when there is none). */
static void utf16_units(uint32_t cp, uint32_t u[2])
{
    if (cp < 0x10000) {
        u[0] = cp;
        u[1] = 0;
    } else {
        u[0] = 0xd800 + ((cp - 0x10000) >> 10);
        u[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
    }
}

static int cmp_utf16(const char *a, size_t alen, const char *b, size_t blen)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    size_t i = 0, j = 0;
    uint32_t pend_a = 0, pend_b = 0; /* a pending low surrogate */

    for (;;) {
        uint32_t ua, ub, u[2];
        bool ea = pend_a == 0 && i >= alen, eb = pend_b == 0 && j >= blen;
        if (ea || eb)
            return ea && eb ? 0 : ea ? -1 : 1;
        if (pend_a != 0) {
            ua = pend_a;
            pend_a = 0;
        } else {
            utf16_units(next_cp(x, alen, &i), u);
            ua = u[0];
            pend_a = u[1];
        }
        if (pend_b != 0) {
            ub = pend_b;
            pend_b = 0;
        } else {
            utf16_units(next_cp(y, blen, &j), u);
            ub = u[0];
            pend_b = u[1];
        }
        if (ua != ub)
            return ua < ub ? -1 : 1;
    }
}

static int member_cmp(const void *pa, const void *pb)
{
    const struct member *a = pa, *b = pb;
    return cmp_utf16(a->key, a->len, b->key, b->len);
}

/* RFC 8785 section 3.2.2.2: escape only '"', '\\' and C0 controls. */
static int put_string(struct dems_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    int r;

    if (!dems_utf8_valid(s, len))
        return DEMS_EINVAL;
    if ((r = dems_buf_append(out, "\"", 1)) < 0)
        return r;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        char esc[6];
        size_t n = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
        }
        if ((r = dems_buf_append(out, s + run, i - run)) < 0 ||
            (r = dems_buf_append(out, esc, n)) < 0)
            return r;
        run = i + 1;
    }
    if ((r = dems_buf_append(out, s + run, len - run)) < 0)
        return r;
    return dems_buf_append(out, "\"", 1);
}

static int encode(const json_t *j, struct dems_buf *out, int depth);

static int encode_object(const json_t *j, struct dems_buf *out, int depth)
{
    size_t n = json_object_size(j), i = 0;
    struct member *m = NULL;
    int r = 0;

    if (n > 0 && (m = calloc(n, sizeof(*m))) == NULL)
        return DEMS_ENOMEM;
    /* jansson's iterator API takes a non-const object but does not modify it. */
    json_t *obj = (json_t *)(uintptr_t)j;
    for (void *it = json_object_iter(obj); it != NULL && i < n;
         it = json_object_iter_next(obj, it), i++) {
        m[i].key = json_object_iter_key(it);
        m[i].len = json_object_iter_key_len(it);
        m[i].value = json_object_iter_value(it);
    }
    if (n > 1)
        qsort(m, n, sizeof(*m), member_cmp);
    r = dems_buf_append(out, "{", 1);
    for (i = 0; i < n && r == 0; i++) {
        if (i > 0 && (r = dems_buf_append(out, ",", 1)) < 0)
            break;
        if ((r = put_string(out, m[i].key, m[i].len)) < 0 || (r = dems_buf_append(out, ":", 1)) < 0)
            break;
        r = encode(m[i].value, out, depth + 1);
    }
    free(m);
    if (r < 0)
        return r;
    return dems_buf_append(out, "}", 1);
}

static int encode(const json_t *j, struct dems_buf *out, int depth)
{
    int r;

    if ((json_is_object(j) || json_is_array(j)) && depth >= DEMS_JCS_MAX_DEPTH)
        return DEMS_EINVAL;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return encode_object(j, out, depth);
    case JSON_ARRAY:
        if ((r = dems_buf_append(out, "[", 1)) < 0)
            return r;
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i > 0 && (r = dems_buf_append(out, ",", 1)) < 0)
                return r;
            if ((r = encode(json_array_get(j, i), out, depth + 1)) < 0)
                return r;
        }
        return dems_buf_append(out, "]", 1);
    case JSON_STRING:
        return put_string(out, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);
        char num[24];
        if (v > DEMS_JCS_MAX_INT || v < -DEMS_JCS_MAX_INT)
            return DEMS_EINVAL;
        int n = snprintf(num, sizeof(num), "%lld", (long long)v);
        return dems_buf_append(out, num, (size_t)n);
    }
    case JSON_TRUE:
        return dems_buf_append(out, "true", 4);
    case JSON_FALSE:
        return dems_buf_append(out, "false", 5);
    case JSON_NULL:
        return dems_buf_append(out, "null", 4);
    case JSON_REAL:
    default:
        return DEMS_EINVAL; /* RFC 8785 allows them; the ledger does not. */
    }
}

int dems_jcs_encode(const json_t *json, struct dems_buf *out)
{
    size_t mark = out->len;

    if (json == NULL)
        return DEMS_EINVAL;
    int r = encode(json, out, 0);
    if (r < 0)
        out->len = mark;
    return r;
}

/* Rejects what jansson accepts but canonical ledger JSON does not. */
static int check_value(const json_t *j, int depth)
{
    if ((json_is_object(j) || json_is_array(j)) && depth >= DEMS_JCS_MAX_DEPTH)
        return DEMS_EINVAL;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *v;
        json_t *obj = (json_t *)(uintptr_t)j;
        json_object_foreach(obj, key, v)
        {
            if (check_value(v, depth + 1) < 0)
                return DEMS_EINVAL;
        }
        return 0;
    }
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(j); i++)
            if (check_value(json_array_get(j, i), depth + 1) < 0)
                return DEMS_EINVAL;
        return 0;
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);
        return v > DEMS_JCS_MAX_INT || v < -DEMS_JCS_MAX_INT ? DEMS_EINVAL : 0;
    }
    case JSON_REAL:
        return DEMS_EINVAL;
    default:
        return 0;
    }
}

int dems_jcs_parse(const char *text, size_t len, json_t **ret_json)
{
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);

    if (j == NULL)
        return DEMS_EINVAL;
    if (check_value(j, 0) < 0) {
        json_decref(j);
        return DEMS_EINVAL;
    }
    *ret_json = j;
    return 0;
}
