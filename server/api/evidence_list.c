/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/evidence: the evidence the caller may see, newest (or oldest)
 * first, a page at a time (the list convention of api_int.h: ?limit=,
 * ?cursor= and "next_cursor" with a Link rel="next"), filtered by text
 * (filename, description), uploader, device, content type, preview state,
 * ingest time and recording start.
 *
 * The order is (created_at, id) descending, so an id is a stable cursor even
 * when many artefacts share a timestamp; ?before= (an RFC 3339 time) keeps
 * only items created before it, to the second. Officers see what they or
 * their assigned docks uploaded (API_VISIBLE_SQL); administrators see all.
 * Each item says whether its preview job ran and whether a playable preview
 * exists, for the staff page.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"
#include "demsd/db.h"

#include "api_int.h"
#include "upload_meta.h"

/*
 * One statement: the first column says whether the cursor names evidence
 * the caller may see (so a stale or foreign cursor is a 400, not an empty
 * page, and positions of others' evidence are not revealed); the lateral
 * page is one row longer than asked so the answer knows whether more follow.
 * The preview job is found the way GET /v1/evidence/{id} finds it.
 * $1 cursor id, $2 before (epoch seconds), $3 limit, $4 user id, $5 sees all,
 * $6 text, $7 uploader, $8 device serial, $9 content type (a prefix), $10
 * preview state, $11/$12 ingested from/before, $13/$14 recording start
 * from/before (epoch seconds). Two statements, newest and oldest first, so
 * each page is a range scan of the artefacts_newest index either way.
 */
/* clang-format off */
#define PREVIEW_STATE_SQL API_PREVIEW_STATE_SQL("a.id")
#define LIST_SQL(cmp, dir)                                                                                   \
    "SELECT c.ok, p.id, p.filename, p.content_type, p.size, p.created_at, p.uploaded_by,"          \
    " p.preview_job, p.has_preview, p.preview, p.metadata"                                         \
    " FROM (SELECT $1::text IS NULL OR EXISTS (SELECT 1 FROM artefacts a WHERE a.id = $1"          \
    " AND " API_VISIBLE_SQL("a.id", "$4", "$5") ") AS ok) c"                                       \
    " LEFT JOIN LATERAL (SELECT a.id, a.filename, a.content_type, a.size,"                         \
    " " API_TS("a.created_at") " AS created_at, a.metadata::text AS metadata,"                     \
    " coalesce(u.username, 'device:' || d.serial, 'public') AS uploaded_by,"                               \
    " (SELECT j.state FROM jobs j WHERE j.kind = 'preview'"                                        \
    " AND j.dedupe_key = 'preview-' || a.id) AS preview_job,"                                      \
    " EXISTS (SELECT 1 FROM derivatives x WHERE x.artefact = a.id"                                 \
    " AND x.kind = 'proxy') AS has_preview, " PREVIEW_STATE_SQL " AS preview"                      \
    " FROM artefacts a LEFT JOIN users u ON u.id = a.uploaded_by"                                  \
    " LEFT JOIN devices d ON d.id = a.uploaded_by_device"                                          \
    " WHERE c.ok AND " API_VISIBLE_SQL("a.id", "$4", "$5")                                         \
    " AND ($1::text IS NULL OR (a.created_at, a.id) " cmp                                          \
    " (SELECT b.created_at, b.id FROM artefacts b WHERE b.id = $1))"                               \
    " AND ($2::bigint IS NULL OR a.created_at < to_timestamp($2))"                                 \
    " AND ($6::text IS NULL OR strpos(lower(coalesce(a.filename, '') || ' '"                       \
    "  || coalesce(a.metadata->>'description', '')), lower($6)) > 0)"                              \
    " AND ($7::text IS NULL OR u.username = lower($7) OR 'device:' || d.serial = $7)"              \
    " AND ($8::text IS NULL OR d.serial = $8 OR a.metadata->>'device_serial' = $8)"                \
    " AND ($9::text IS NULL OR left(lower(a.content_type), length($9)) = lower($9))"               \
    " AND ($10::text IS NULL OR " PREVIEW_STATE_SQL " = $10)"                                      \
    " AND ($11::bigint IS NULL OR a.created_at >= to_timestamp($11))"                              \
    " AND ($12::bigint IS NULL OR a.created_at < to_timestamp($12))"                               \
    " AND ($13::bigint IS NULL OR (a.metadata->>'recording_start')::timestamptz"                   \
    "  >= to_timestamp($13))"                                                                      \
    " AND ($14::bigint IS NULL OR (a.metadata->>'recording_start')::timestamptz"                   \
    "  < to_timestamp($14))"                                                                       \
    " ORDER BY a.created_at " dir ", a.id " dir " LIMIT $3::integer) p ON true"
/* clang-format on */

static json_t *item_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_t *o =
        json_pack("{s:s,s:I,s:s,s:s,s:b}", "id", api_col(res, row, "id"), "size",
                  (json_int_t)api_col_int(res, row, "size"), "created_at",
                  api_col(res, row, "created_at"), "uploaded_by", api_col(res, row, "uploaded_by"),
                  "has_preview", api_col_bool(res, row, "has_preview"));
    if (o != NULL) {
        json_object_set_new(o, "filename", api_col_json_str(res, row, "filename"));
        json_object_set_new(o, "content_type", api_col_json_str(res, row, "content_type"));
        json_object_set_new(o, "preview_job", api_col_json_str(res, row, "preview_job"));
        json_object_set_new(o, "preview", api_col_json_str(res, row, "preview"));
        json_error_t jerr;
        json_t *meta = json_loads(api_col(res, row, "metadata"), 0, &jerr);
        json_object_set_new(o, "metadata", meta != NULL ? meta : json_object());
    }
    return o;
}

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) < 1 || !api_col_bool(res, 0, "ok")) {
        api_bad_param(req, "cursor", "names no evidence you can see (use a \"next_cursor\")");
        return;
    }
    if (api_col_null(res, 0, "id")) { /* the lateral page is empty */
        api_page_send(req, "evidence", json_array(), NULL);
        return;
    }
    api_page_answer(req, res, "evidence", "id", item_json);
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

/* The filters of the list (docs/api.md, "Evidence"); false when one was bad (400 answered). */
struct filters {
    char q[201], uploader[80], device[65], type[128], preview[16];
    char from[24], to[24], rec_from[24], rec_to[24];
    const char *p[9];
    bool oldest;
};

static bool read_filters(struct dems_req *req, struct filters *f)
{
    static const char *const previews[] = {"ready", "pending", "failed", "none"};
    const char *sort = NULL;
    char sortbuf[16];
    if (!api_text_param(req, "q", 200, f->q, &f->p[0]) ||
        !api_text_param(req, "uploader", 79, f->uploader, &f->p[1]) ||
        !api_text_param(req, "device", 64, f->device, &f->p[2]) ||
        !api_text_param(req, "content_type", 127, f->type, &f->p[3]) ||
        !api_text_param(req, "preview", 15, f->preview, &f->p[4]) ||
        !api_time_param(req, "from", f->from, &f->p[5]) ||
        !api_time_param(req, "to", f->to, &f->p[6]) ||
        !api_time_param(req, "recorded_from", f->rec_from, &f->p[7]) ||
        !api_time_param(req, "recorded_to", f->rec_to, &f->p[8]) ||
        !api_text_param(req, "sort", 15, sortbuf, &sort))
        return false;
    bool ok = f->p[4] == NULL;
    for (size_t i = 0; !ok && i < sizeof(previews) / sizeof(previews[0]); i++)
        ok = strcmp(f->preview, previews[i]) == 0;
    if (!ok) {
        api_bad_param(req, "preview", "must be ready, pending, failed or none");
        return false;
    }
    if (sort != NULL && strcmp(sort, "newest") != 0 && strcmp(sort, "oldest") != 0) {
        api_bad_param(req, "sort", "must be newest or oldest");
        return false;
    }
    f->oldest = sort != NULL && strcmp(sort, "oldest") == 0;
    return true;
}

void api_evidence_list(struct dems_req *req)
{
    struct api_page page;
    if (!api_page_parse(req, &page))
        return;
    char id[65], ts[24], limit[24];
    if (page.has_cursor && !cursor_id(dems_str_from(page.cursor), id)) {
        api_bad_param(req, "cursor", "is not a cursor this list gave");
        return;
    }
    struct dems_str v;
    bool by_time = false;
    if (dems_req_query(req, "before", &v)) {
        int64_t t = 0;
        by_time = upload_parse_rfc3339(v.ptr, v.len, &t);
        if (!by_time) {
            api_bad_param(req, "before", "must be an RFC 3339 time");
            return;
        }
        snprintf(ts, sizeof(ts), "%lld", (long long)t);
    }
    struct filters f;
    if (!read_filters(req, &f))
        return;
    api_page_sql_limit(&page, limit);
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {page.has_cursor ? id : NULL,
                            by_time ? ts : NULL,
                            limit,
                            who.user_id,
                            who.sees_all,
                            f.p[0],
                            f.p[1],
                            f.p[2],
                            f.p[3],
                            f.p[4],
                            f.p[5],
                            f.p[6],
                            f.p[7],
                            f.p[8]};
    int r = dems_db_req(req, f.oldest ? LIST_SQL(">", "ASC") : LIST_SQL("<", "DESC"), 14, params,
                        on_list);
    if (r < 0)
        dems_resp_err(req, r);
}
