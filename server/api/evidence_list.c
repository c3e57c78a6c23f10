/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/evidence: the evidence list, newest first, a page at a time.
 *
 * ?limit= (1..200, default 50) and ?before= — either an evidence id (the
 * previous page's "next_before": items after it in the list's order) or an
 * RFC 3339 time (items created before it, to the second). The order is
 * (created_at, id) descending, so ids are a stable cursor even when many
 * artefacts share a timestamp. Each item says whether its preview job ran
 * and whether a playable preview exists, for the staff page.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"
#include "demsd/db.h"

#include "api_int.h"
#include "upload_meta.h"

#define LIST_DEFAULT 50
#define LIST_MAX     200

/*
 * One statement: the first column says whether the cursor id exists (so an
 * unknown cursor is a 400, not an empty page); the lateral page is one row
 * longer than asked so the answer knows whether more follow. The preview
 * job is found the way GET /v1/evidence/{id} finds it (kind and dedupe key).
 */
#define LIST_SQL                                                                                   \
    "SELECT c.ok, p.id, p.filename, p.content_type, p.size,"                                       \
    " to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')," /* API_TS */    \
    " p.uploaded_by, p.preview_job, p.has_preview"                                                 \
    " FROM (SELECT $1::text IS NULL OR EXISTS (SELECT 1 FROM artefacts WHERE id = $1) AS ok) c"    \
    " LEFT JOIN LATERAL (SELECT a.id, a.filename, a.content_type, a.size, a.created_at,"           \
    " coalesce(u.username, 'device:' || d.serial) AS uploaded_by,"                                 \
    " (SELECT j.state FROM jobs j WHERE j.kind = 'preview'"                                        \
    " AND j.dedupe_key = 'preview-' || a.id) AS preview_job,"                                      \
    " EXISTS (SELECT 1 FROM derivatives x WHERE x.artefact = a.id"                                 \
    " AND x.kind = 'proxy') AS has_preview"                                                        \
    " FROM artefacts a LEFT JOIN users u ON u.id = a.uploaded_by"                                  \
    " LEFT JOIN devices d ON d.id = a.uploaded_by_device"                                          \
    " WHERE c.ok AND ($1::text IS NULL OR (a.created_at, a.id) <"                                  \
    " (SELECT b.created_at, b.id FROM artefacts b WHERE b.id = $1))"                               \
    " AND ($2::bigint IS NULL OR a.created_at < to_timestamp($2))"                                 \
    " ORDER BY a.created_at DESC, a.id DESC LIMIT $3::integer) p ON true"

static void bad_param(struct dems_req *req, const char *name, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "query parameter \"%s\" %s", name, why);
    dems_resp_error(req, 400, "invalid_parameter", msg);
}

/* The page size asked for; validated before the query ran. */
static uint64_t page_limit(const struct dems_req *req)
{
    struct dems_str v;
    uint64_t n = LIST_DEFAULT;
    if (dems_req_query(req, "limit", &v) && dems_parse_u64(v.ptr, v.len, LIST_MAX, &n) < 0)
        n = LIST_DEFAULT;
    return n;
}

static void set_text(json_t *o, const char *key, const PGresult *res, int row, int col)
{
    json_object_set_new(
        o, key, PQgetisnull(res, row, col) ? json_null() : json_string(PQgetvalue(res, row, col)));
}

static json_t *item_json(const PGresult *res, int row)
{
    const char *size = PQgetvalue(res, row, 4);
    json_t *o = json_pack("{s:s,s:I,s:s,s:s,s:b}", "id", PQgetvalue(res, row, 1), "size",
                          (json_int_t)api_id(size, strlen(size)), "created_at",
                          PQgetvalue(res, row, 5), "uploaded_by", PQgetvalue(res, row, 6),
                          "has_preview", PQgetvalue(res, row, 8)[0] == 't');
    if (o == NULL)
        return NULL;
    set_text(o, "filename", res, row, 2);
    set_text(o, "content_type", res, row, 3);
    set_text(o, "preview_job", res, row, 7);
    return o;
}

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) < 1 || PQgetvalue(res, 0, 0)[0] != 't') {
        bad_param(req, "before",
                  "names no evidence (use a \"next_before\" id or an RFC 3339 time)");
        return;
    }
    uint64_t limit = page_limit(req);
    int n = PQgetisnull(res, 0, 1) ? 0 : PQntuples(res);
    bool more = (uint64_t)n > limit;
    if (more)
        n = (int)limit;
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < n; i++) {
        json_t *o = item_json(res, i);
        if (o == NULL || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    json_t *next = more ? json_string(PQgetvalue(res, n - 1, 1)) : json_null();
    dems_resp_json(req, 200, json_pack("{s:o,s:o}", "evidence", arr, "next_before", next));
}

/* A cursor id: 64 hex digits, lower-cased into out. */
static bool cursor_id(struct dems_str v, char out[static 65])
{
    if (v.len != 64)
        return false;
    for (size_t i = 0; i < 64; i++) {
        char c = v.ptr[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        out[i] = c;
    }
    out[64] = '\0';
    return true;
}

void api_evidence_list(struct dems_req *req)
{
    struct dems_str v;
    uint64_t n = LIST_DEFAULT;
    if (dems_req_query(req, "limit", &v) &&
        (dems_parse_u64(v.ptr, v.len, LIST_MAX, &n) < 0 || n == 0)) {
        bad_param(req, "limit", "must be a whole number from 1 to 200");
        return;
    }
    char id[65], ts[24], limit[24];
    bool by_id = false, by_time = false;
    if (dems_req_query(req, "before", &v)) {
        int64_t t = 0;
        by_id = cursor_id(v, id);
        by_time = !by_id && upload_parse_rfc3339(v.ptr, v.len, &t);
        if (!by_id && !by_time) {
            bad_param(req, "before", "must be an evidence id (64 hex digits) or an RFC 3339 time");
            return;
        }
        if (by_time)
            snprintf(ts, sizeof(ts), "%lld", (long long)t);
    }
    /* One more than asked: tells whether another page follows. */
    snprintf(limit, sizeof(limit), "%llu", (unsigned long long)n + 1);
    const char *params[] = {by_id ? id : NULL, by_time ? ts : NULL, limit};
    int r = dems_db_req(req, LIST_SQL, 3, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}
