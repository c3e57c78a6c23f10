/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Gallery imports (docs/face-search.md, "Importing a gallery"): an admin
 * uploads a ZIP of images with a manifest.json by tus (POST /v1/uploads, as
 * any file: its INGESTED entry proves what was imported), then
 *   POST /v1/admin/face/galleries/{id}/imports        {"evidence": "<sha256 of the ZIP>"}
 *                                                     202: a face-import job reads it
 *   GET  /v1/admin/face/galleries/{id}/imports        the gallery's imports, a page at a time
 *   GET  /v1/admin/face/galleries/{id}/imports/{iid}  one, with the lines it refused
 * The job (server/jobs/face_import.c) ledgers FACE_GALLERY_IMPORTED and
 * queues one face-enrol job per accepted line; each enrolment is then
 * ledgered as FACE_ENROLLED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"

#include "api_int.h"

struct imp {
    char gallery[24];
    char id[24];
};

static struct imp *imp_new(struct dems_req *req, bool with_import)
{
    struct imp *im = calloc(1, sizeof(*im));
    if (im == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, im, free);
    struct dems_str p = dems_req_param(req, 0);
    int64_t g = api_id(p.ptr, p.len);
    if (g <= 0) {
        dems_resp_error(req, 404, "gallery_not_found", "no such gallery");
        return NULL;
    }
    snprintf(im->gallery, sizeof(im->gallery), "%lld", (long long)g);
    if (with_import) {
        p = dems_req_param(req, 1);
        int64_t i = api_id(p.ptr, p.len);
        if (i <= 0) {
            dems_resp_error(req, 404, "import_not_found", "no such import in this gallery");
            return NULL;
        }
        snprintf(im->id, sizeof(im->id), "%lld", (long long)i);
    }
    return im;
}

/* The columns import_json reads, from face_imports i. */
#define IMPORT_COLS                                                                                \
    "i.id, i.gallery_id, i.archive, i.state, i.error, i.entries, i.accepted, i.rejected,"          \
    " (SELECT username FROM users WHERE id = i.created_by) AS created_by,"                         \
    " " API_TS("i.created_at") " AS created_at, " API_TS(                                          \
        "i.finished_at") " AS finished_at,"                                                        \
                         " i.ledger_seq, (SELECT json_build_object("                               \
                         "'pending', count(*) FILTER (WHERE s.state = 'pending'),"                 \
                         " 'enrolled', count(*) FILTER (WHERE s.state = 'enrolled'),"              \
                         " 'failed', count(*) FILTER (WHERE s.state = 'failed'),"                  \
                         " 'removed', count(*) FILTER (WHERE s.state = 'removed'))"                \
                         " FROM face_subjects s WHERE s.import_id = i.id) AS subjects"

static json_t *count_or_null(const PGresult *res, int row, const char *name)
{
    return api_col_null(res, row, name) ? json_null() : json_integer(api_col_int(res, row, name));
}

static json_t *import_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_t *subjects = json_loads(api_col(res, row, "subjects"), 0, NULL);
    return json_pack(
        "{s:I,s:I,s:s,s:s,s:o,s:o,s:o,s:o,s:s,s:s,s:o,s:o,s:o}", "id",
        (json_int_t)api_col_int(res, row, "id"), "gallery",
        (json_int_t)api_col_int(res, row, "gallery_id"), "archive", api_col(res, row, "archive"),
        "state", api_col(res, row, "state"), "error", api_col_json_str(res, row, "error"),
        "entries", count_or_null(res, row, "entries"), "accepted",
        count_or_null(res, row, "accepted"), "rejected", count_or_null(res, row, "rejected"),
        "created_by", api_col(res, row, "created_by"), "created_at",
        api_col(res, row, "created_at"), "finished_at", api_col_json_str(res, row, "finished_at"),
        "ledger_seq", count_or_null(res, row, "ledger_seq"), "subjects",
        subjects != NULL ? subjects : json_null());
}

/* ---- POST: an import ---- */

static void on_created(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "gallery_not_found", "no such gallery"))
        return;
    if (api_col_int(res, 0, "galleries") == 0) {
        dems_resp_error(req, 404, "gallery_not_found", "no such gallery");
    } else if (api_col_null(res, 0, "format")) {
        dems_resp_error(req, 404, "evidence_not_found", "no evidence with that id");
    } else if (api_col_null(res, 0, "id")) {
        char detail[160];
        snprintf(detail, sizeof(detail),
                 "field \"evidence\" must be a ZIP archive with a manifest.json (it is %.40s)",
                 api_col(res, 0, "format"));
        dems_resp_error(req, 400, "invalid_field", detail);
    } else {
        dems_resp_json(req, 202,
                       json_pack("{s:I,s:I,s:s,s:s,s:I}", "id",
                                 (json_int_t)api_col_int(res, 0, "id"), "gallery",
                                 (json_int_t)api_col_int(res, 0, "gallery_id"), "archive",
                                 api_col(res, 0, "archive"), "state", "queued", "job",
                                 (json_int_t)api_col_int(res, 0, "job")));
    }
}

static bool sha_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

void api_face_imports_create(struct dems_req *req)
{
    struct imp *im = imp_new(req, false);
    const char *ev;
    if (im == NULL || !api_get_str(req, "evidence", 64, true, &ev))
        return;
    if (!sha_ok(ev)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"evidence\" must be an evidence id (64 lower-case hex digits)");
        return;
    }
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {im->gallery, ev, uid};
    int r = dems_db_req(
        req,
        "WITH g AS (SELECT id FROM face_galleries WHERE id = $1::bigint),"
        " a AS (SELECT id, coalesce(format, 'unknown') AS format FROM artefacts WHERE id = $2),"
        " i AS (INSERT INTO face_imports (gallery_id, archive, created_by)"
        " SELECT g.id, a.id, $3::bigint FROM g, a WHERE a.format = 'zip'"
        " RETURNING id, gallery_id, archive)"
        " SELECT (SELECT count(*) FROM g) AS galleries, (SELECT format FROM a) AS format,"
        " i.id, i.gallery_id, i.archive, CASE WHEN i.id IS NOT NULL THEN"
        " dems_enqueue_job('face-import', jsonb_build_object('import', i.id),"
        " 'face-import-' || i.id) END AS job FROM (SELECT 1) AS one LEFT JOIN i ON true",
        3, params, on_created);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- GET: the gallery's imports ---- */

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "gallery_not_found", "no such gallery"))
        return;
    if (api_col_null(res, 0, "id")) /* the gallery, with no (more) imports */
        api_page_send(req, "imports", json_array(), NULL);
    else
        api_page_answer(req, res, "imports", "id", import_json);
}

void api_face_imports_list(struct dems_req *req)
{
    struct imp *im = imp_new(req, false);
    struct api_page page;
    char after[24], limit[24];
    if (im == NULL || !api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {im->gallery, after, limit};
    int r = dems_db_req(req,
                        "SELECT " IMPORT_COLS " FROM face_galleries g LEFT JOIN face_imports i"
                        " ON i.gallery_id = g.id AND i.id > $2::bigint WHERE g.id = $1::bigint"
                        " ORDER BY i.id LIMIT $3::integer",
                        3, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- GET: one import ---- */

static void on_one(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "import_not_found", "no such import in this gallery"))
        return;
    json_t *doc = import_json(req, res, 0);
    json_t *rej = api_col_null(res, 0, "rejections")
                      ? json_array()
                      : json_loads(api_col(res, 0, "rejections"), 0, NULL);
    if (doc == NULL || rej == NULL) {
        json_decref(doc);
        json_decref(rej);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    json_object_set_new(doc, "rejections", rej);
    dems_resp_json(req, 200, doc);
}

void api_face_imports_get(struct dems_req *req)
{
    struct imp *im = imp_new(req, true);
    if (im == NULL)
        return;
    const char *params[] = {im->gallery, im->id};
    int r = dems_db_req(req,
                        "SELECT " IMPORT_COLS ", i.rejections FROM face_imports i"
                        " WHERE i.id = $2::bigint AND i.gallery_id = $1::bigint",
                        2, params, on_one);
    if (r < 0)
        dems_resp_err(req, r);
}
