/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit reports, built from the ledger alone (docs/api.md, "Audit reports"):
 *   GET /v1/admin/audit/evidence/{id}[?format=html]   an artefact's custody:
 *       every entry naming it, each with its canonical bytes and its RFC 9162
 *       inclusion proof against the latest signed checkpoint (entries after
 *       it are listed with "proof": null), the checkpoint and its key
 *   GET /v1/admin/audit/cases/{id}[?format=html]      the same for a case: the
 *       entries naming the case and those naming any artefact ever its exhibit
 *   GET /v1/admin/audit/users/{username}?from=&to=    a user's activity over a
 *       period (entry times, RFC 3339; at most 366 days) as CSV
 * Which entries belong to a report is found from the entries' own bytes
 * (their artefact column and case index are derived from the bytes when
 * appended); exhibits only say which artefacts to look for.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"

#include "api_int.h"

#define REPORT_MAX_ENTRIES 20000
#define REPORT_LIMIT       "20001" /* one more than the most a report holds */
#define HTML_MAX           (64u << 20)

struct audit {
    bool html;
    bool is_case;
    char subject[65]; /* the artefact id, or the case id */
    char title[300];
    json_t *doc;
    uint64_t *seq; /* entries under the checkpoint, proven */
    size_t n;
    uint64_t size; /* the checkpoint's */
    struct api_prover *prover;
};

static void audit_free(void *p)
{
    struct audit *a = p;
    json_decref(a->doc);
    free(a->seq);
    api_prover_free(a->prover);
    free(a);
}

static struct audit *audit_new(struct dems_req *req)
{
    struct audit *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, a, audit_free);
    char fmt[8];
    const char *f = NULL;
    if (!api_text_param(req, "format", 4, fmt, &f))
        return NULL;
    if (f != NULL && strcmp(f, "json") != 0 && strcmp(f, "html") != 0) {
        api_bad_param(req, "format", "must be json or html");
        return NULL;
    }
    a->html = f != NULL && strcmp(f, "html") == 0;
    return a;
}

static json_t *b64(const uint8_t *p, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    json_t *s = json_string(out);
    free(out);
    return s;
}

/* ---- the printable page ---- */

static int raw(struct dems_buf *b, const char *s)
{
    return dems_buf_append(b, s, strlen(s));
}

static int esc(struct dems_buf *b, const char *s)
{
    return s != NULL ? dems_buf_html_escape(b, s, strlen(s)) : 0;
}

static int esc_json(struct dems_buf *b, const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return raw(b, "&#8212;");
    if (json_is_string(v))
        return dems_buf_html_escape(b, json_string_value(v), json_string_length(v));
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    int r = text != NULL ? esc(b, text) : DEMS_ENOMEM;
    free(text);
    return r;
}

/* Runs x unless an earlier step failed (r: the first failure). */
#define THEN(x)                                                                                    \
    do {                                                                                           \
        if (r == 0)                                                                                \
            r = (x);                                                                               \
    } while (0)

static void send_html(struct dems_req *req, const struct audit *a)
{
    struct dems_buf b;
    dems_buf_init(&b, HTML_MAX);
    json_t *entries = json_object_get(a->doc, "entries");
    char num[64];
    int r = raw(&b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    THEN(esc(&b, a->title));
    THEN(raw(&b, "</title><style>body{font-family:serif;margin:2em}table{border-collapse:"
                 "collapse;width:100%}th,td{border:1px solid #888;padding:.25em .4em;"
                 "text-align:left;vertical-align:top;font-size:.85em}code{font-family:"
                 "monospace;word-break:break-all}</style></head><body><h1>"));
    THEN(esc(&b, a->title));
    THEN(raw(&b, "</h1><p>Generated "));
    THEN(esc_json(&b, json_object_get(a->doc, "generated_at")));
    THEN(raw(&b, " from the custody ledger. Each entry below is proven included in the "
                 "signed checkpoint at the end (JSON form of this report: the same address "
                 "without <code>format=html</code>; verify with dems-verify).</p>"
                 "<table><thead><tr><th>#</th><th>time (UTC)</th><th>type</th><th>actor</th>"
                 "<th>case</th><th>details</th><th>included</th></tr></thead><tbody>"));
    for (size_t i = 0; r == 0 && i < json_array_size(entries); i++) {
        json_t *e = json_array_get(entries, i), *body = json_object_get(e, "body");
        json_t *actor = json_object_get(body, "actor");
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(e, "index")));
        r = raw(&b, "<tr><td>");
        THEN(raw(&b, num));
        THEN(raw(&b, "</td><td>"));
        THEN(esc_json(&b, json_object_get(body, "time")));
        THEN(raw(&b, "</td><td>"));
        THEN(esc_json(&b, json_object_get(body, "type")));
        THEN(raw(&b, "</td><td>"));
        THEN(esc_json(&b, json_object_get(actor, "kind")));
        THEN(raw(&b, ":"));
        THEN(esc_json(&b, json_object_get(actor, "id")));
        THEN(raw(&b, "</td><td>"));
        THEN(esc_json(&b, json_object_get(body, "case")));
        THEN(raw(&b, "</td><td><code>"));
        THEN(esc_json(&b, json_object_get(body, "payload")));
        THEN(raw(&b, "</code></td><td>"));
        THEN(raw(&b,
                 json_is_array(json_object_get(e, "proof")) ? "proven" : "after the checkpoint"));
        THEN(raw(&b, "</td></tr>"));
    }
    THEN(raw(&b, "</tbody></table><h2>Signed checkpoint</h2><pre>"));
    THEN(esc_json(&b, json_object_get(a->doc, "checkpoint")));
    THEN(raw(&b, "</pre><p>Verifier key: <code>"));
    THEN(esc_json(&b, json_object_get(a->doc, "vkey")));
    THEN(raw(&b, "</code></p></body></html>\n"));
    if (r < 0)
        dems_resp_err(req, r);
    else
        dems_resp_bytes(req, 200, "text/html; charset=utf-8", b.data, b.len);
    dems_buf_done(&b);
}

/* ---- the entries and their proofs ---- */

/* Adds each proven entry's proof (a->seq[k] is entries[...]'s "index"). */
static void answer(struct dems_req *req, struct audit *a)
{
    json_t *entries = json_object_get(a->doc, "entries");
    struct dems_merkle_proof *proof = malloc(sizeof(*proof));
    int e = proof == NULL ? DEMS_ENOMEM : 0;
    size_t k = 0;
    for (size_t i = 0; e == 0 && i < json_array_size(entries) && k < a->n; i++) {
        json_t *entry = json_array_get(entries, i);
        if ((uint64_t)json_integer_value(json_object_get(entry, "index")) != a->seq[k])
            continue;
        e = api_prover_prove(a->prover, k++, proof);
        json_t *hashes = json_array();
        for (size_t h = 0; e == 0 && h < proof->len; h++)
            json_array_append_new(hashes, b64(proof->hash[h], 32));
        json_object_set_new(entry, "proof", hashes);
    }
    free(proof);
    if (e < 0) {
        dems_resp_err(req, e == DEMS_ENOTFOUND ? DEMS_EDB : e);
        return;
    }
    if (a->html)
        send_html(req, a);
    else
        dems_resp_json(req, 200, json_incref(a->doc));
}

static void on_subtrees(struct dems_req *req, const PGresult *res, int err)
{
    struct audit *a = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_prover_feed(a->prover, res);
    answer(req, a);
}

/* The entries of res as the report lists them (no proofs yet); NULL when out of memory. */
static json_t *entries_of(const PGresult *res)
{
    json_t *entries = json_array();
    for (int row = 0; entries != NULL && row < PQntuples(res); row++) {
        if (api_col_null(res, row, "seq"))
            continue; /* the subject, with no entry */
        size_t blen = 0;
        unsigned char *bytes =
            PQunescapeBytea((const unsigned char *)api_col(res, row, "bytes"), &blen);
        json_t *body = bytes != NULL ? json_loadb((const char *)bytes, blen, 0, NULL) : NULL;
        json_t *item = bytes != NULL ? json_pack("{s:I,s:o,s:o,s:n}", "index",
                                                 (json_int_t)api_col_int(res, row, "seq"), "entry",
                                                 b64(bytes, blen), "body",
                                                 body != NULL ? body : json_null(), "proof")
                                     : NULL;
        PQfreemem(bytes);
        if (item == NULL || json_array_append_new(entries, item) < 0) {
            json_decref(entries);
            return NULL;
        }
    }
    return entries;
}

/* The report's entries (seq, bytes) with the latest checkpoint's size, note and key. */
static void on_entries(struct dems_req *req, const PGresult *res, int err)
{
    struct audit *a = dems_req_data(req);
    if (!api_found(req, res, err, a->is_case ? "case_not_found" : "not_found",
                   a->is_case ? "no such case" : "no such evidence"))
        return;
    if (PQntuples(res) > REPORT_MAX_ENTRIES) {
        dems_resp_error(req, 413, "report_too_large",
                        "more than 20000 entries: use the ledger export instead");
        return;
    }
    char vkey[DEMS_NOTE_VKEY_MAX] = "";
    bool has_cp = !api_col_null(res, 0, "checkpoint_size");
    if (has_cp && !api_vkey(api_col(res, 0, "key_name"), api_col(res, 0, "key_hex"), vkey)) {
        dems_resp_err(req, DEMS_EDB);
        return;
    }
    a->size = has_cp ? (uint64_t)api_col_int(res, 0, "checkpoint_size") : 0;
    a->doc = json_pack(
        "{s:i,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "dems_audit_report", 1, "subject",
        a->is_case ? "case" : "evidence", "title", a->title, "generated_at", api_col(res, 0, "now"),
        "checkpoint", has_cp ? json_string(api_col(res, 0, "note")) : json_null(),
        "checkpoint_size", has_cp ? json_integer((json_int_t)a->size) : json_null(), "vkey",
        has_cp ? json_string(vkey) : json_null(), "entries", entries_of(res));
    a->seq = malloc(((size_t)PQntuples(res) + 1) * sizeof(*a->seq));
    if (a->doc == NULL || a->seq == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    json_object_set_new(a->doc, a->is_case ? "case" : "evidence",
                        a->is_case ? json_integer(api_id(a->subject, strlen(a->subject)))
                                   : json_string(a->subject));
    for (int i = 0; i < PQntuples(res); i++) {
        uint64_t s = (uint64_t)api_col_int(res, i, "seq");
        if (!api_col_null(res, i, "seq") && s < a->size)
            a->seq[a->n++] = s;
    }
    if (a->n == 0) {
        answer(req, a);
        return;
    }
    api_prover_fetch(req, a->size, a->seq, a->n, &a->prover, on_subtrees);
}

/* The latest checkpoint and its key, beside each row of the entries CTE e (seq, bytes). */
#define REPORT_TAIL                                                                                \
    " SELECT e.seq, e.bytes, cp.size AS checkpoint_size, cp.note, k.name AS key_name,"             \
    " encode(k.public_key, 'hex') AS key_hex, " API_TS(                                            \
        "now()") " AS now"                                                                         \
                 " FROM subject LEFT JOIN e ON true"                                               \
                 " LEFT JOIN LATERAL (SELECT * FROM ledger_checkpoints ORDER BY size DESC LIMIT "  \
                 "1) cp ON true"                                                                   \
                 " LEFT JOIN ledger_keys k ON k.id = cp.key_id ORDER BY e.seq"

void api_audit_evidence(struct dems_req *req)
{
    struct audit *a = audit_new(req);
    if (a == NULL || !api_evidence_id(req, a->subject))
        return;
    snprintf(a->title, sizeof(a->title), "Custody of evidence %s", a->subject);
    const char *params[] = {a->subject};
    int r = dems_db_req(req,
                        "WITH subject AS (SELECT id FROM artefacts WHERE id = $1),"
                        " e AS (SELECT le.seq, le.bytes FROM ledger_entries le"
                        " WHERE le.artefact = $1 LIMIT " REPORT_LIMIT ")" REPORT_TAIL,
                        1, params, on_entries);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_case(struct dems_req *req, const PGresult *res, int err)
{
    struct audit *a = dems_req_data(req);
    if (!api_found(req, res, err, "case_not_found", "no such case"))
        return;
    snprintf(a->title, sizeof(a->title), "Custody report of case %s", api_col(res, 0, "reference"));
    const char *params[] = {a->subject, api_col(res, 0, "reference")};
    int r = dems_db_req(req,
                        "WITH subject AS (SELECT id FROM cases WHERE id = $1::bigint),"
                        " e AS (SELECT le.seq, le.bytes FROM ledger_entries le WHERE le.seq IN"
                        " (SELECT seq FROM ledger_case_entries WHERE case_ref = $2)"
                        " OR le.artefact IN (SELECT artefact FROM exhibits"
                        " WHERE case_id = $1::bigint) LIMIT " REPORT_LIMIT ")" REPORT_TAIL,
                        2, params, on_entries);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_audit_case(struct dems_req *req)
{
    struct audit *a = audit_new(req);
    if (a == NULL)
        return;
    a->is_case = true;
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "case_not_found", "no such case");
        return;
    }
    snprintf(a->subject, sizeof(a->subject), "%lld", (long long)id);
    const char *params[] = {a->subject};
    int r =
        dems_db_req(req, "SELECT reference FROM cases WHERE id = $1::bigint", 1, params, on_case);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- a user's activity ---- */

static void on_activity(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    static const char *const cols[] = {"seq",      "time",    "type",     "artefact",
                                       "case_ref", "payload", "leaf_hash"};
    static const char *const heads[] = {"index", "time",    "type",     "evidence",
                                        "case",  "details", "leaf_hash"};
    const size_t ncols = sizeof(cols) / sizeof(cols[0]);
    struct dems_buf b;
    dems_buf_init(&b, 256u << 20);
    int r = 0;
    for (size_t c = 0; r == 0 && c < ncols; c++) {
        r = dems_buf_csv_field(&b, heads[c]);
        THEN(dems_buf_append(&b, c + 1 < ncols ? "," : "\r\n", c + 1 < ncols ? 1 : 2));
    }
    for (int i = 0; r == 0 && i < PQntuples(res); i++) {
        for (size_t c = 0; r == 0 && c < ncols; c++) {
            r = dems_buf_csv_field(&b, api_col(res, i, cols[c]));
            THEN(dems_buf_append(&b, c + 1 < ncols ? "," : "\r\n", c + 1 < ncols ? 1 : 2));
        }
    }
    if (r < 0) {
        dems_buf_done(&b);
        dems_resp_err(req, r);
        return;
    }
    dems_resp_header(req, "Content-Disposition", "attachment; filename=\"activity.csv\"");
    dems_resp_bytes(req, 200, "text/csv; charset=utf-8", b.data, b.len);
    dems_buf_done(&b);
}

void api_audit_user(struct dems_req *req)
{
    struct dems_str p = dems_req_param(req, 0);
    char from[24], to[24];
    const char *f = NULL, *t = NULL;
    if (!api_time_param(req, "from", from, &f) || !api_time_param(req, "to", to, &t))
        return;
    if (f == NULL || t == NULL) {
        api_bad_param(req, f == NULL ? "from" : "to", "is required: an RFC 3339 time");
        return;
    }
    int64_t a = (int64_t)strtoull(from, NULL, 10), z = (int64_t)strtoull(to, NULL, 10);
    if (z < a || z - a > 366 * 86400) {
        api_bad_param(req, "to", "must be after \"from\" and at most 366 days later");
        return;
    }
    if (p.len == 0 || p.len > 64) {
        dems_resp_error(req, 404, "user_not_found", "no such user");
        return;
    }
    char user[65];
    memcpy(user, p.ptr, p.len);
    user[p.len] = '\0';
    /* The actor as the entries' canonical bytes spell it (JCS: keys sorted). */
    json_t *actor = json_pack("{s:s,s:s}", "id", user, "kind", "user");
    char *needle = actor != NULL ? json_dumps(actor, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(actor);
    if (needle == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    char *pat = malloc(strlen(needle) + 16);
    if (pat == NULL) {
        free(needle);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    snprintf(pat, strlen(needle) + 16, "\"actor\":%s", needle);
    free(needle);
    const char *params[] = {pat, from, to};
    /* appended_at narrows the scan; the entry's own time decides. */
    int r = dems_db_req(
        req,
        "SELECT seq, b->>'time' AS time, b->>'type' AS type, coalesce(b->>'artefact', '')"
        " AS artefact, coalesce(b->>'case', '') AS case_ref, coalesce(b->'payload', 'null')::text"
        " AS payload, encode(leaf_hash, 'hex') AS leaf_hash"
        " FROM (SELECT seq, leaf_hash, convert_from(bytes, 'UTF8')::jsonb AS b FROM ledger_entries"
        " WHERE position(convert_to($1, 'UTF8') IN bytes) > 0"
        " AND appended_at >= to_timestamp($2::bigint) - interval '1 minute'"
        " AND appended_at < to_timestamp($3::bigint) + interval '1 minute') x"
        " WHERE (b->>'time')::timestamptz >= to_timestamp($2::bigint)"
        " AND (b->>'time')::timestamptz < to_timestamp($3::bigint) ORDER BY seq",
        3, params, on_activity);
    free(pat);
    if (r < 0)
        dems_resp_err(req, r);
}
