/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Face indexing of a case's footage (docs/face-search.md):
 *   GET  /v1/cases/{id}/face           whether indexing is on, per-artefact progress,
 *                                      and what a search form offers (the configured
 *                                      legal bases, the default and lowest threshold)
 *   POST /v1/cases/{id}/face/indexing  {"enabled": true|false} (ledgered
 *                                      FACE_INDEXING_CHANGED; enabling queues a
 *                                      face-index job per exhibit, and new exhibits
 *                                      are queued by a trigger as they join)
 *   GET  /v1/cases/{id}/face/tracks    the case's face tracks (?artefact= narrows)
 *   GET  /v1/face/tracks/{id}/crop     a track's best crop (JPEG)
 * Everything but the progress needs the face-search permission an admin
 * grants (PATCH /v1/admin/users/{id}); a caller without it is refused 403
 * face_search_not_permitted, and the refusal is ledgered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/runtime.h"

#include "api_int.h"

bool api_face_permitted(struct dems_req *req)
{
    if (dems_req_principal(req)->face_search)
        return true;
    dems_auth_refuse(req, "face-search permission required", 403, "face_search_not_permitted",
                     "face search needs the face-search permission, which an administrator "
                     "grants");
    return false;
}

struct face_case {
    struct api_case c; /* first: api_case_load fills it */
    bool enabled;
};

static struct face_case *face_case_new(struct dems_req *req)
{
    struct face_case *f = calloc(1, sizeof(*f));
    if (f == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_req_set_data(req, f, free);
    return f;
}

/* ---- progress ---- */

/* What a search form offers: the legal bases in force (face_legal_bases,
 * "|"-separated; demsd/runtime.h) as a list, in their order. */
static json_t *legal_bases(const char *bases)
{
    json_t *a = json_array();
    const char *p = bases;
    while (a != NULL && p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t len = bar != NULL ? (size_t)(bar - p) : strlen(p);
        if (len > 0)
            json_array_append_new(a, json_stringn(p, len));
        p = bar != NULL ? bar + 1 : NULL;
    }
    return a;
}

static void on_status(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    json_t *arts = json_array();
    json_t *counts = json_pack("{s:i,s:i,s:i,s:i,s:i}", "queued", 0, "done", 0, "skipped", 0,
                               "failed", 0, "not_indexed", 0);
    int64_t tracks = 0;
    for (int i = 0; arts != NULL && counts != NULL && i < PQntuples(res); i++) {
        /* A case without exhibits is one row with no artefact: it only carries the case's own
         * columns (since, enabled_by), not an artefact to list or count. */
        if (api_col_null(res, i, "artefact"))
            continue;
        const char *state =
            api_col_null(res, i, "state") ? "not_indexed" : api_col(res, i, "state");
        json_object_set_new(counts, state,
                            json_integer(json_integer_value(json_object_get(counts, state)) + 1));
        tracks += api_col_int(res, i, "tracks");
        json_array_append_new(arts, json_pack("{s:s,s:s,s:s,s:o,s:I,s:I}", "artefact",
                                              api_col(res, i, "artefact"), "exhibit",
                                              api_col(res, i, "exhibit"), "state", state, "error",
                                              api_col_json_str(res, i, "error"), "frames",
                                              (json_int_t)api_col_int(res, i, "frames"), "tracks",
                                              (json_int_t)api_col_int(res, i, "tracks")));
    }
    bool on = PQntuples(res) > 0 ? !api_col_null(res, 0, "since") : false;
    struct dems_runtime *rt = malloc(sizeof(*rt));
    if (rt == NULL) {
        json_decref(counts);
        json_decref(arts);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_runtime_get(rt);
    json_t *o = json_pack(
        "{s:b,s:o,s:o,s:I,s:o,s:o,s:o,s:f}", "enabled", on, "since",
        PQntuples(res) > 0 ? api_col_json_str(res, 0, "since") : json_null(), "enabled_by",
        PQntuples(res) > 0 ? api_col_json_str(res, 0, "enabled_by") : json_null(), "tracks",
        (json_int_t)tracks, "counts", counts, "artefacts", arts, "legal_bases",
        legal_bases(rt->face_legal_bases), "threshold", rt->face_threshold);
    free(rt);
    dems_resp_json(req, 200, o);
}

static void status_loaded(struct dems_req *req, struct api_case *c)
{
    const char *params[] = {c->id_s};
    /* One row per live exhibit (the case's own row when it has none). */
    int r = dems_db_req(
        req,
        "SELECT " API_TS(
            "c.face_indexing_since") " AS since, u.username AS enabled_by,"
                                     " x.artefact, x.reference AS exhibit, fi.state, fi.error, "
                                     "fi.frames, fi.tracks"
                                     " FROM cases c LEFT JOIN users u ON u.id = c.face_indexing_by"
                                     " LEFT JOIN exhibits x ON x.case_id = c.id AND x.removed_at "
                                     "IS NULL"
                                     " LEFT JOIN face_index fi ON fi.artefact = x.artefact"
                                     " WHERE c.id = $1::bigint AND (x.id IS NOT NULL OR NOT EXISTS "
                                     "(SELECT 1 FROM exhibits"
                                     "  x2 WHERE x2.case_id = c.id AND x2.removed_at IS NULL)) "
                                     "ORDER BY x.id",
        1, params, on_status);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_face_case_status(struct dems_req *req)
{
    if (face_case_new(req) != NULL)
        api_case_load(req, API_CASE_READERS & ~API_CASE_PROSECUTOR, status_loaded);
}

/* ---- switching indexing on and off ---- */

static void on_switched(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct face_case *f = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            api_case_changed(req, item, "the case's face indexing");
        else
            dems_resp_json(
                req, 200,
                json_pack("{s:b,s:I}", "enabled", f->enabled, "seq", (json_int_t)item->seq));
    }
    dems_req_unref(req);
}

static void on_indexing_state(struct dems_req *req, const PGresult *res, int err)
{
    struct face_case *f = dems_req_data(req);
    if (!api_found(req, res, err, "case_not_found", "no such case"))
        return;
    bool on = api_col_bool(res, 0, "enabled");
    if (on == f->enabled) {
        dems_resp_json(req, 200, json_pack("{s:b,s:n}", "enabled", on, "seq"));
        return;
    }
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {f->c.id_s, uid};
    /* Enabling queues every live exhibit (dems_face_index_queue skips one
     * already indexed or queued); the guard fails the item if another
     * request switched it meanwhile. */
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_FACE_INDEXING_CHANGED, f->c.reference,
        json_pack("{s:I,s:b,s:I}", "case_id", (json_int_t)f->c.id, "enabled", f->enabled,
                  "exhibits", (json_int_t)api_col_int(res, 0, "exhibits")),
        f->enabled ? "WITH c AS (UPDATE cases SET face_indexing_since = now(),"
                     " face_indexing_by = $2::bigint WHERE id = $1::bigint"
                     " AND face_indexing_since IS NULL RETURNING id)"
                     " SELECT dems_face_index_queue(x.artefact) FROM c JOIN exhibits x"
                     " ON x.case_id = c.id AND x.removed_at IS NULL UNION ALL SELECT NULL FROM c"
                   : "UPDATE cases SET face_indexing_since = NULL, face_indexing_by = NULL"
                     " WHERE id = $1::bigint AND face_indexing_since IS NOT NULL"
                     " AND $2::bigint IS NOT NULL",
        2, params);
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_switched);
}

static void switch_loaded(struct dems_req *req, struct api_case *c)
{
    if (!api_case_open(req, c))
        return;
    const char *params[] = {c->id_s};
    int r = dems_db_req(req,
                        "SELECT c.face_indexing_since IS NOT NULL AS enabled,"
                        " (SELECT count(*) FROM exhibits x WHERE x.case_id = c.id"
                        "  AND x.removed_at IS NULL) AS exhibits"
                        " FROM cases c WHERE c.id = $1::bigint",
                        1, params, on_indexing_state);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_face_case_indexing(struct dems_req *req)
{
    struct face_case *f = face_case_new(req);
    if (f == NULL)
        return;
    if (json_object_get(dems_req_json(req), "enabled") == NULL) {
        dems_resp_error(req, 400, "invalid_field", "field \"enabled\" is required");
        return;
    }
    if (!api_get_bool(req, "enabled", false, &f->enabled) || !api_face_permitted(req))
        return;
    api_case_load(req, API_CASE_EDITORS, switch_loaded);
}

/* ---- tracks ---- */

json_t *api_face_track_json(const PGresult *res, int row)
{
    char crop[80];
    snprintf(crop, sizeof(crop), "/v1/face/tracks/%lld/crop",
             (long long)api_col_int(res, row, "track_id"));
    json_t *box = json_loads(api_col(res, row, "best_box"), 0, NULL);
    return json_pack(
        "{s:I,s:s,s:f,s:f,s:f,s:I,s:f,s:f,s:o,s:s}", "id",
        (json_int_t)api_col_int(res, row, "track_id"), "artefact", api_col(res, row, "artefact"),
        "t_first", atof(api_col(res, row, "t_first")), "t_last", atof(api_col(res, row, "t_last")),
        "best_t", atof(api_col(res, row, "best_t")), "detections",
        (json_int_t)api_col_int(res, row, "detections"), "score", atof(api_col(res, row, "score")),
        "quality", atof(api_col(res, row, "quality")), "box", box != NULL ? box : json_null(),
        "crop", crop);
}

static json_t *track_row(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return api_face_track_json(res, row);
}

static void on_tracks(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "tracks", "track_id", track_row);
}

static void tracks_loaded(struct dems_req *req, struct api_case *c)
{
    struct api_page page;
    char after[24], limit[24], art[65];
    const char *artefact = NULL;
    if (!api_text_param(req, "artefact", 64, art, &artefact) ||
        !api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {c->id_s, after, limit, artefact};
    int r = dems_db_req(req,
                        "SELECT t.id AS track_id, t.artefact, t.t_first, t.t_last, t.best_t,"
                        " t.detections, t.score, t.quality, t.best_box::text AS best_box"
                        " FROM face_tracks t WHERE t.id > $2::bigint"
                        " AND t.artefact IN (SELECT x.artefact FROM exhibits x"
                        "  WHERE x.case_id = $1::bigint AND x.removed_at IS NULL)"
                        " AND ($4::text IS NULL OR t.artefact = lower($4))"
                        " ORDER BY t.id LIMIT $3::integer",
                        4, params, on_tracks);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_face_case_tracks(struct dems_req *req)
{
    if (face_case_new(req) == NULL || !api_face_permitted(req))
        return;
    api_case_load(req, API_CASE_EDITORS | API_CASE_VIEWER, tracks_loaded);
}

/* ---- a track's crop ---- */

static void on_crop(struct dems_req *req, const PGresult *res, int err)
{
    struct api_download *d = dems_req_data(req);
    if (!api_found(req, res, err, "track_not_found", "no such track"))
        return;
    if (!api_col_bool(res, 0, "visible")) {
        dems_auth_denied(req, "face track of evidence not visible", NULL);
        dems_resp_error(req, 404, "track_not_found", "no such track");
        return;
    }
    if (api_col_null(res, 0, "crop_blob")) {
        dems_resp_error(req, 404, "track_not_found", "the track has no crop");
        return;
    }
    snprintf(d->blob_id, sizeof(d->blob_id), "%s", api_col(res, 0, "crop_blob"));
    snprintf(d->id, sizeof(d->id), "%s", api_col(res, 0, "crop_blob"));
    d->size = (uint64_t)api_col_int(res, 0, "crop_size");
    snprintf(d->content_type, sizeof(d->content_type), "image/jpeg");
    d->inline_ = true;
    if (api_download_prepare(req, d))
        api_download_start(req, d);
}

void api_face_track_crop(struct dems_req *req)
{
    struct api_download *d = api_download_new(req);
    if (d == NULL || !api_face_permitted(req))
        return;
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "track_not_found", "no such track");
        return;
    }
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {ids, who.user_id, who.sees_all};
    /* clang-format off */
    int r = dems_db_req(req,
                        "SELECT t.crop_blob, t.crop_size, "
                        API_VISIBLE_SQL("t.artefact", "$2", "$3") " AS visible"
                        " FROM face_tracks t WHERE t.id = $1::bigint",
                        3, params, on_crop);
    /* clang-format on */
    if (r < 0)
        dems_resp_err(req, r);
}
