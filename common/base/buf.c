/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Capped growable buffer. Growth doubles up to the cap so appends stay
 * amortised O(1) and no buffer ever exceeds what its owner allowed.
 */
#include "dems/buf.h"

#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

void dems_buf_init(struct dems_buf *b, size_t max)
{
    *b = (struct dems_buf){.max = max};
}

void dems_buf_done(struct dems_buf *b)
{
    free(b->data);
    *b = (struct dems_buf){.max = b->max};
}

void dems_buf_reset(struct dems_buf *b)
{
    b->len = 0;
}

int dems_buf_append(struct dems_buf *b, const void *p, size_t n)
{
    if (n > b->max - b->len)
        return DEMS_ETOOBIG;
    size_t need = b->len + n;
    if (need > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 256;
        while (cap < need)
            cap = cap > b->max / 2 ? b->max : cap * 2;
        uint8_t *d = realloc(b->data, cap);
        if (d == NULL)
            return DEMS_ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len = need;
    return 0;
}

int dems_buf_html_escape(struct dems_buf *b, const char *s, size_t len)
{
    int r = 0;
    size_t start = 0;
    for (size_t i = 0; r == 0 && i < len; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            continue;
        }
        r = dems_buf_append(b, s + start, i - start);
        if (r == 0)
            r = dems_buf_append(b, rep, strlen(rep));
        start = i + 1;
    }
    return r == 0 ? dems_buf_append(b, s + start, len - start) : r;
}

int dems_buf_csv_field(struct dems_buf *b, const char *s)
{
    int r = dems_buf_append(b, "\"", 1);
    if (r == 0 && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@'))
        r = dems_buf_append(b, "'", 1);
    size_t start = 0, i = 0;
    for (; r == 0 && s[i] != '\0'; i++) {
        if (s[i] == '"') {
            r = dems_buf_append(b, s + start, i + 1 - start); /* through the quote, then again */
            start = i;
        }
    }
    if (r == 0)
        r = dems_buf_append(b, s + start, i - start);
    return r == 0 ? dems_buf_append(b, "\"", 1) : r;
}
