/* SPDX-License-Identifier: Apache-2.0 */
/*
 * index.html, the bundle's printable report: the case, an exhibits table,
 * each exhibit's custody timeline, the case's own entries, and how to
 * verify. Self-contained (inline CSS; no scripts, fonts, images or links
 * to fetch) and built only from the manifest and the custody entries, so
 * it is as deterministic as they are. Every string is HTML-escaped.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

#include "bundle_int.h"

#define CSS                                                                                        \
    "body{font-family:serif;margin:2em;color:#000}h1{font-size:1.5em}h2{font-size:1.2em;"          \
    "margin-top:1.5em}table{border-collapse:collapse;width:100%;margin:.5em 0}"                    \
    "th,td{border:1px solid #888;padding:.25em .4em;text-align:left;vertical-align:top;"           \
    "font-size:.85em}code,.h{font-family:monospace;word-break:break-all}"                          \
    "section{page-break-inside:avoid}@media print{h2{page-break-before:auto}}"

/* Appends trusted markup. */
static int raw(struct dems_buf *out, const char *s)
{
    return dems_buf_append(out, s, strlen(s));
}

static int rawf(struct dems_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int rawf(struct dems_buf *out, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= sizeof tmp ? DEMS_ETOOBIG : dems_buf_append(out, tmp, (size_t)n);
}

static int esc(struct dems_buf *out, const char *s)
{
    return s != NULL ? dems_buf_html_escape(out, s, strlen(s)) : 0;
}

/* A manifest value as text: strings as they are, integers in decimal, anything else as JSON. */
static int value(struct dems_buf *out, const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return raw(out, "&#8212;");
    if (json_is_string(v))
        return dems_buf_html_escape(out, json_string_value(v), json_string_length(v));
    if (json_is_integer(v))
        return rawf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    int r = text != NULL ? esc(out, text) : DEMS_ENOMEM;
    free(text);
    return r;
}

static int cell(struct dems_buf *out, const json_t *obj, const char *key)
{
    int r = raw(out, "<td>");
    if (r == 0)
        r = value(out, json_object_get(obj, key));
    return r == 0 ? raw(out, "</td>") : r;
}

static int hash_cell(struct dems_buf *out, const json_t *x)
{
    int r = raw(out, "<td class=\"h\">");
    r = r == 0 ? value(out, json_object_get(x, "sha256")) : r;
    return r == 0 ? raw(out, "</td>") : r;
}

static int head(struct dems_buf *out, const json_t *m)
{
    const json_t *c = json_object_get(m, "case"), *cp = json_object_get(m, "checkpoint");
    int r = raw(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<title>Court bundle ");
    r = r == 0 ? value(out, json_object_get(c, "reference")) : r;
    r = r == 0 ? raw(out, "</title><style>" CSS "</style></head>\n<body>\n<h1>Court bundle: ") : r;
    r = r == 0 ? value(out, json_object_get(c, "reference")) : r;
    r = r == 0 ? raw(out, "</h1>\n<table><tr><th>Case</th>") : r;
    r = r == 0 ? cell(out, c, "reference") : r;
    r = r == 0 ? raw(out, "</tr><tr><th>Title</th>") : r;
    r = r == 0 ? cell(out, c, "title") : r;
    r = r == 0 ? raw(out, "</tr><tr><th>Offence</th>") : r;
    r = r == 0 ? cell(out, c, "offence") : r;
    r = r == 0 ? raw(out, "</tr><tr><th>Ledger as of</th>") : r;
    r = r == 0 ? cell(out, m, "as_of") : r;
    r = r == 0 ? raw(out, "</tr><tr><th>Checkpoint</th><td><code>") : r;
    r = r == 0 ? value(out, json_object_get(cp, "origin")) : r;
    r = r == 0 ? raw(out, "</code>, tree size ") : r;
    r = r == 0 ? value(out, json_object_get(cp, "size")) : r;
    r = r == 0 ? raw(out, ", root <code>") : r;
    r = r == 0 ? value(out, json_object_get(cp, "root")) : r;
    return r == 0 ? raw(out, "</code></td></tr></table>\n") : r;
}

static int exhibits_table(struct dems_buf *out, const json_t *exhibits)
{
    static const char *const cols[] = {"reference", "description",    "filename",     "size",
                                       "sha256",    "recorded_start", "recorded_end", "device",
                                       "uploader",  "ingested_at",    "ingested_seq"};
    int r = raw(out, "<h2>Exhibits</h2>\n<table><tr><th>Exhibit</th><th>Description</th>"
                     "<th>File</th><th>Bytes</th><th>SHA-256</th><th>Recorded from</th>"
                     "<th>to</th><th>Device</th><th>Uploaded by</th><th>Ingested</th>"
                     "<th>Ledger entry</th></tr>\n");
    size_t i;
    const json_t *x;
    json_array_foreach(exhibits, i, x)
    {
        r = r == 0 ? raw(out, "<tr>") : r;
        for (size_t c = 0; r == 0 && c < sizeof cols / sizeof cols[0]; c++)
            r = strcmp(cols[c], "sha256") == 0 ? hash_cell(out, x) : cell(out, x, cols[c]);
        r = r == 0 ? raw(out, "</tr>\n") : r;
    }
    return r == 0 ? raw(out, "</table>\n") : r;
}

static const struct bundle_decoded *find_entry(const struct bundle_decoded *e, size_t n,
                                               json_int_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((json_int_t)e[mid].e.seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && (json_int_t)e[lo].e.seq == seq ? &e[lo] : NULL;
}

static int entry_row(struct dems_buf *out, const struct bundle_decoded *d)
{
    char when[25];
    if (dems_ledger_time_format(d->e.time_ms, when) < 0)
        when[0] = '\0';
    int r = rawf(out, "<tr><td>%" PRIu64 "</td><td>%s</td><td>%s</td><td>", d->e.seq, when,
                 dems_ledger_type_name(d->e.type));
    r = r == 0 ? esc(out, d->e.actor_id) : r;
    r = r == 0 ? raw(out, "</td><td><code>") : r;
    r = r == 0 && d->e.payload != NULL ? value(out, d->e.payload) : r;
    return r == 0 ? raw(out, "</code></td></tr>\n") : r;
}

static int timeline(struct dems_buf *out, const json_t *seqs, const struct bundle_decoded *e,
                    size_t n)
{
    int r = raw(out, "<table><tr><th>Entry</th><th>Time (UTC)</th><th>Event</th><th>Actor</th>"
                     "<th>Details</th></tr>\n");
    size_t i;
    const json_t *s;
    json_array_foreach(seqs, i, s)
    {
        const struct bundle_decoded *d = find_entry(e, n, json_integer_value(s));
        if (r == 0 && d != NULL)
            r = entry_row(out, d);
    }
    return r == 0 ? raw(out, "</table>\n") : r;
}

static int timelines(struct dems_buf *out, const json_t *m, const struct bundle_decoded *e,
                     size_t n)
{
    size_t i;
    const json_t *x;
    int r = 0;
    json_array_foreach(json_object_get(m, "exhibits"), i, x)
    {
        r = r == 0 ? raw(out, "<section><h2>Custody of exhibit ") : r;
        r = r == 0 ? value(out, json_object_get(x, "reference")) : r;
        r = r == 0 ? raw(out, "</h2>\n") : r;
        r = r == 0 ? timeline(out, json_object_get(x, "custody"), e, n) : r;
        r = r == 0 ? raw(out, "</section>\n") : r;
    }
    const json_t *cc = json_object_get(m, "case_custody");
    if (r == 0 && json_array_size(cc) > 0) {
        r = raw(out, "<section><h2>Entries about the case</h2>\n");
        r = r == 0 ? timeline(out, cc, e, n) : r;
        r = r == 0 ? raw(out, "</section>\n") : r;
    }
    return r;
}

static int how_to_verify(struct dems_buf *out, const char *vkey)
{
    int r = raw(out, "<h2>How to verify this bundle</h2>\n<ol>"
                     "<li>Obtain the ledger's verifier key from the force independently of "
                     "this bundle. The key this bundle names is <code>");
    r = r == 0 ? esc(out, vkey) : r;
    r = r == 0 ? raw(out, "</code>.</li>\n<li>Run <code>dems-verify bundle BUNDLE.zip --key "
                          "KEY</code>. It checks every file against the SHA-256 in "
                          "<code>manifest.json</code>, every custody entry's signature, every "
                          "inclusion proof in <code>proofs/</code> against the signed "
                          "checkpoint in <code>checkpoint.txt</code>, the checkpoint's "
                          "signature along the key chain in <code>keys.jsonl</code>, and that "
                          "each exhibit's INGESTED entry records its SHA-256.</li>\n"
                          "<li>Without dems-verify: <code>sha256sum</code> each file and compare "
                          "with the manifest; each line of <code>custody.jsonl</code> holds the "
                          "canonical entry bytes (base64), whose leaf hash is SHA-256 of a zero "
                          "byte followed by the bytes; each <code>.tlog-proof</code> file is a "
                          "C2SP tlog-proof@v1 inclusion proof of that leaf (RFC 9162) against "
                          "the checkpoint, a C2SP signed note.</li>\n</ol>\n"
                          "<p>This page is a rendering of <code>manifest.json</code> and "
                          "<code>custody.jsonl</code>; it is not itself signed.</p>\n")
               : r;
    return r;
}

int bundle_html(const json_t *manifest, const struct bundle_decoded *entries, size_t n,
                const char *vkey, struct dems_buf *out)
{
    int r = head(out, manifest);
    if (r == 0)
        r = exhibits_table(out, json_object_get(manifest, "exhibits"));
    if (r == 0)
        r = timelines(out, manifest, entries, n);
    if (r == 0)
        r = how_to_verify(out, vkey);
    return r == 0 ? raw(out, "</body></html>\n") : r;
}
