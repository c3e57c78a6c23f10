/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl's output: the server's JSON as it came (--json, indented), or
 * tables and "name: value" lines for people. What the server sends back
 * was written by others (file names, reasons, descriptions), so control
 * characters never reach the terminal: they are shown as '?'.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/str.h"

#include "ctl.h"

#define MAX_CELL 80 /* a table cell's widest (an evidence id fits); longer ones are cut */

void ctl_print_json(const json_t *json)
{
    char *text = json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text != NULL)
        printf("%s\n", text);
    free(text);
}

static const json_t *member(const json_t *obj, const char *dotted)
{
    char name[64];
    const json_t *v = obj;
    while (v != NULL && *dotted != '\0') {
        const char *dot = strchr(dotted, '.');
        size_t len = dot != NULL ? (size_t)(dot - dotted) : strlen(dotted);
        snprintf(name, sizeof(name), "%.*s", (int)len, dotted);
        v = json_object_get(v, name);
        dotted += len + (dot != NULL);
    }
    return v;
}

/* Replaces control characters (C0, DEL, C1 and the bidirectional overrides) with '?'. */
static void clean(char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = dems_utf8_next((const uint8_t *)s + i, len - i, &cp);
        if (k == 0) {
            s[i++] = '?';
            continue;
        }
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
            (cp >= 0x2066 && cp <= 0x2069)) {
            memset(s + i, '?', k);
            /* one '?' for the character: squeeze the rest out */
            memmove(s + i + 1, s + i + k, len - i - k + 1);
            len -= k - 1;
            i++;
            continue;
        }
        i += k;
    }
}

char *ctl_value_text(const json_t *obj, const char *dotted)
{
    const json_t *v = member(obj, dotted);
    char *out;
    if (v == NULL || json_is_null(v))
        out = strdup("-");
    else if (json_is_string(v))
        out = strdup(json_string_value(v));
    else if (json_is_true(v))
        out = strdup("yes");
    else if (json_is_false(v))
        out = strdup("no");
    else if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        out = strdup(buf);
    } else
        out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (out != NULL)
        clean(out);
    return out;
}

/* Display width of UTF-8 text (one column per character). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s != '\0'; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Cuts s to at most max characters, ending in "..." when cut. */
static void cut(char *s, size_t max)
{
    size_t w = 0, i = 0;
    for (; s[i] != '\0'; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && ++w > max - 3)
            break;
    }
    if (width(s) > max)
        snprintf(s + i, 4, "...");
}

void ctl_print_list(const json_t *json, const char *key, const struct ctl_col *cols)
{
    if (ctl_global.json) {
        ctl_print_json(json);
        return;
    }
    const json_t *items = json_object_get(json, key);
    size_t rows = json_array_size(items), ncols = 0;
    while (cols[ncols].heading != NULL)
        ncols++;
    if (rows == 0) {
        printf("(no %s)\n", key);
        return;
    }
    char **cell = calloc((rows + 1) * ncols, sizeof(char *));
    size_t *w = calloc(ncols, sizeof(size_t));
    if (cell == NULL || w == NULL) {
        free(cell);
        free(w);
        ctl_print_json(json);
        return;
    }
    for (size_t c = 0; c < ncols; c++) {
        cell[c] = strdup(cols[c].heading);
        for (size_t r = 0; r < rows; r++) {
            char *t = ctl_value_text(json_array_get(items, r), cols[c].member);
            if (t != NULL && c + 1 < ncols)
                cut(t, MAX_CELL);
            cell[(r + 1) * ncols + c] = t;
        }
        for (size_t r = 0; r <= rows; r++) {
            size_t cw = cell[r * ncols + c] != NULL ? width(cell[r * ncols + c]) : 0;
            w[c] = cw > w[c] ? cw : w[c];
        }
    }
    for (size_t r = 0; r <= rows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *t = cell[r * ncols + c] != NULL ? cell[r * ncols + c] : "?";
            if (c + 1 < ncols)
                printf("%s%*s  ", t, (int)(w[c] - width(t)), "");
            else
                printf("%s\n", t);
        }
    }
    for (size_t i = 0; i < (rows + 1) * ncols; i++)
        free(cell[i]);
    free(cell);
    free(w);
    const char *next = json_string_value(json_object_get(json, "next_cursor"));
    if (next != NULL)
        printf("(more: stopped at --limit)\n");
}

void ctl_print_object(const json_t *json, const struct ctl_col *cols)
{
    if (ctl_global.json) {
        ctl_print_json(json);
        return;
    }
    size_t w = 0;
    for (const struct ctl_col *c = cols; c->heading != NULL; c++)
        w = strlen(c->heading) > w ? strlen(c->heading) : w;
    for (const struct ctl_col *c = cols; c->heading != NULL; c++) {
        char *t = ctl_value_text(json, c->member);
        printf("%s:%*s %s\n", c->heading, (int)(w - strlen(c->heading)), "", t != NULL ? t : "?");
        free(t);
    }
}
