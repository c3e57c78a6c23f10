/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/evidence: the evidence the caller may see, newest first, a page at
 * a time (the list convention of api_int.h: ?limit=, ?cursor= and
 * "next_cursor" with a Link rel="next").
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
 * $1 cursor id, $2 before (epoch seconds), $3 limit, $4 user id, $5 sees all.
 */
#define LIST_SQL                                                                                   \
    "SELECT c.ok, p.id, p.filename, p.content_type, p.size, p.created_at, p.uploaded_by,"          \
    " p.preview_job, p.has_preview"                                                                \
    " FROM (SELECT $1::text IS NULL OR EXISTS (SELECT 1 FROM artefacts a WHERE a.id = $1"          \
    " AND " API_VISIBLE_SQL(                                                                       \
        "a.id", "$4",                                                                              \
        "$5") ") AS ok) c"                                                                         \
              " LEFT JOIN LATERAL (SELECT a.id, a.filename, a.content_type, a.size,"               \
              " " API_TS(                                                                          \
                  "a.created_at") " AS created_at,"                                                \
                                  " coalesce(u.username, 'device:' || d.serial) AS uploaded_by,"   \
                                  " (SELECT j.state FROM jobs j WHERE j.kind = 'preview'"          \
                                  " AND j.dedupe_key = 'preview-' || a.id) AS preview_job,"        \
                                  " EXISTS (SELECT 1 FROM derivatives x WHERE x.artefact = a.id"   \
                                  " AND x.kind = 'proxy') AS has_preview"                          \
                                  " FROM artefacts a LEFT JOIN users u ON u.id = a.uploaded_by"    \
                                  " LEFT JOIN devices d ON d.id = a.uploaded_by_device"            \
                                  " WHERE c.ok AND " API_VISIBLE_SQL(                              \
                                      "a.id", "$4",                                                \
                                      "$5") " AND ($1::text IS NULL OR (a.created_at, a.id) <"     \
                                            " (SELECT b.created_at, b.id FROM artefacts b WHERE "  \
                                            "b.id = $1))"                                          \
                                            " AND ($2::bigint IS NULL OR a.created_at < "          \
                                            "to_timestamp($2))"                                    \
                                            " ORDER BY a.created_at DESC, a.id DESC LIMIT "        \
                                            "$3::integer) p ON true"

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
    api_page_sql_limit(&page, limit);
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {page.has_cursor ? id : NULL, by_time ? ts : NULL, limit, who.user_id,
                            who.sees_all};
    int r = dems_db_req(req, LIST_SQL, 5, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}
