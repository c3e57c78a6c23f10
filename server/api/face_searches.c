/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Face searches (docs/face-search.md), investigative leads, never
 * identifications:
 *   POST /v1/cases/{id}/face/searches       queue a search (202); needs the
 *        face-search permission, a case role that may investigate, and
 *        {"scope": "footage" | "gallery", "gallery": id (gallery scope),
 *         "probe": {"track": id} | {"image": base64 JPEG/PNG},
 *         "purpose", "legal_basis" (one of face_legal_bases),
 *         "authorisation", "threshold" (>= face_threshold), "max_results"}
 *        Anything missing or wrong is 400 naming the field, and ledgered as
 *        a refusal.
 *   GET  /v1/cases/{id}/face/searches       the case's searches
 *   GET  /v1/cases/{id}/face/searches/{sid} one search with its ranked results
 *   GET  /v1/admin/face/searches            every search, for oversight
 *                                           (?format=csv for a spreadsheet)
 * A face-search job runs the search and ledgers FACE_SEARCH with who, case,
 * purpose, legal basis, authorisation, probe hash, scope, threshold and the
 * number of results (server/jobs/face_search.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/config.h"
#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/runtime.h"

#include "api_int.h"

#define NOTICE "investigative lead — not an identification"

struct search {
    struct api_case c; /* first: api_case_load fills it */
    bool gallery_scope;
    int64_t gallery;
    int64_t track;
    char gallery_s[24], track_s[24], threshold_s[32], max_s[24];
    char purpose[501], basis[201], authorisation[201];
    char probe_sha[65];
    bool probe_image;
    int64_t sid;
};

/* Refuses the search for a bad or missing field: ledgered, then 400. */
static void refuse_field(struct dems_req *req, const char *field, const char *why)
{
    char reason[160], detail[300];
    snprintf(reason, sizeof(reason), "face search refused: field %s %s", field, why);
    snprintf(detail, sizeof(detail), "field \"%s\" %s", field, why);
    dems_auth_denied(req, reason, NULL);
    dems_resp_error(req, 400, "invalid_field", detail);
}

/* A required text field of 1..max bytes without control characters. */
static bool text_field(struct dems_req *req, const char *key, size_t max, char *out, size_t n)
{
    json_t *v = json_object_get(dems_req_json(req), key);
    const char *s = json_string_value(v);
    char why[80];
    if (s == NULL || s[0] == '\0' || strlen(s) > max) {
        snprintf(why, sizeof(why), "is required: a text of 1 to %zu bytes", max);
        refuse_field(req, key, why);
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            refuse_field(req, key, "must not hold control characters");
            return false;
        }
    }
    snprintf(out, n, "%s", s);
    return true;
}

/* True when basis is one of the legal bases in force ("|"-separated). */
static bool basis_known(const char *bases, const char *basis)
{
    const char *p = bases;
    size_t n = strlen(basis);
    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t len = bar != NULL ? (size_t)(bar - p) : strlen(p);
        if (len == n && memcmp(p, basis, n) == 0)
            return true;
        p = bar != NULL ? bar + 1 : NULL;
    }
    return false;
}

static void on_queued(struct dems_req *req, const PGresult *res, int err)
{
    struct search *s = dems_req_data(req);
    if (!api_found(req, res, err, "case_not_found", "no such case"))
        return;
    dems_resp_json(req, 202,
                   json_pack("{s:I,s:I,s:s,s:s,s:s,s:I,s:s}", "id",
                             (json_int_t)api_col_int(res, 0, "id"), "case", (json_int_t)s->c.id,
                             "state", "queued", "scope", s->gallery_scope ? "gallery" : "footage",
                             "probe_sha256", s->probe_sha, "job",
                             (json_int_t)api_col_int(res, 0, "job"), "notice", NOTICE));
}

static void insert_search(struct dems_req *req)
{
    struct search *s = dems_req_data(req);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {s->c.id_s,
                            uid,
                            s->gallery_scope ? "gallery" : "footage",
                            s->gallery_scope ? s->gallery_s : NULL,
                            s->track > 0 ? s->track_s : NULL,
                            s->probe_sha,
                            s->probe_image ? s->probe_sha : NULL,
                            s->purpose,
                            s->basis,
                            s->authorisation,
                            s->threshold_s,
                            s->max_s};
    int r = dems_db_req(req,
                        "WITH s AS (INSERT INTO face_searches (case_id, user_id, scope, gallery_id,"
                        " probe_track, probe_sha256, probe_blob, purpose, legal_basis,"
                        " authorisation, threshold, max_results) VALUES ($1::bigint, $2::bigint,"
                        " $3, $4::bigint, $5::bigint, $6, $7, $8, $9, $10, $11::real,"
                        " $12::integer) RETURNING id)"
                        " SELECT s.id, dems_enqueue_job('face-search', jsonb_build_object('search',"
                        " s.id), s.id::text, 10) AS job FROM s",
                        12, params, on_queued);
    if (r < 0)
        dems_resp_err(req, r);
}

static void probe_stored(struct dems_req *req, const char *sha)
{
    struct search *s = dems_req_data(req);
    snprintf(s->probe_sha, sizeof(s->probe_sha), "%s", sha);
    insert_search(req);
}

static void on_checked(struct dems_req *req, const PGresult *res, int err)
{
    struct search *s = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (s->gallery_scope && !api_col_bool(res, 0, "gallery_exists")) {
        refuse_field(req, "gallery", "names no gallery");
        return;
    }
    if (s->gallery_scope && !api_col_bool(res, 0, "gallery_ok")) {
        dems_auth_refuse(req, "face search of a gallery not permitted", 403,
                         "gallery_not_permitted",
                         "you may not search this gallery: an administrator grants that");
        return;
    }
    if (s->track > 0) {
        if (api_col_null(res, 0, "track_blob")) {
            refuse_field(req, "probe", "names no face track you may see");
            return;
        }
        snprintf(s->probe_sha, sizeof(s->probe_sha), "%s", api_col(res, 0, "track_blob"));
        insert_search(req);
        return;
    }
    const char *image =
        json_string_value(json_object_get(json_object_get(dems_req_json(req), "probe"), "image"));
    api_face_image_put(req, image, probe_stored);
}

static void create_checked(struct dems_req *req, struct search *s, const struct dems_runtime *rt);

static void create_loaded(struct dems_req *req, struct api_case *c)
{
    struct search *s = (struct search *)c;
    struct dems_runtime *rt = malloc(sizeof(*rt)); /* the settings in force */
    if (rt == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_runtime_get(rt);
    create_checked(req, s, rt);
    free(rt);
}

static void create_checked(struct dems_req *req, struct search *s, const struct dems_runtime *rt)
{
    json_t *body = dems_req_json(req);
    /* The purpose fields first: they are what oversight reads. */
    if (!text_field(req, "purpose", 500, s->purpose, sizeof(s->purpose)) ||
        !text_field(req, "legal_basis", 200, s->basis, sizeof(s->basis)) ||
        !text_field(req, "authorisation", 200, s->authorisation, sizeof(s->authorisation)))
        return;
    if (!basis_known(rt->face_legal_bases, s->basis)) {
        refuse_field(req, "legal_basis", "is not one of the configured legal bases");
        return;
    }
    const char *scope = json_string_value(json_object_get(body, "scope"));
    if (scope == NULL || (strcmp(scope, "footage") != 0 && strcmp(scope, "gallery") != 0)) {
        refuse_field(req, "scope", "must be \"footage\" or \"gallery\"");
        return;
    }
    s->gallery_scope = strcmp(scope, "gallery") == 0;
    if (s->gallery_scope) {
        json_t *g = json_object_get(body, "gallery");
        s->gallery = json_is_integer(g) ? json_integer_value(g) : 0;
        if (s->gallery <= 0) {
            refuse_field(req, "gallery", "is required for a gallery search: a gallery id");
            return;
        }
    }
    json_t *probe = json_object_get(body, "probe");
    json_t *track = json_object_get(probe, "track");
    json_t *image = json_object_get(probe, "image");
    if (!json_is_object(probe) || (track != NULL) == (image != NULL) ||
        (track != NULL && (!json_is_integer(track) || json_integer_value(track) <= 0)) ||
        (image != NULL && !json_is_string(image))) {
        refuse_field(req, "probe", "must be {\"track\": id} or {\"image\": base64 JPEG or PNG}");
        return;
    }
    s->track = track != NULL ? json_integer_value(track) : 0;
    s->probe_image = image != NULL;
    if (s->probe_image && json_string_length(image) > (10u << 20) / 3 * 4 + 8) {
        dems_resp_error(req, 413, "image_too_large", "the image is over 10 MiB");
        return;
    }
    json_t *t = json_object_get(body, "threshold");
    double threshold = rt->face_threshold;
    if (t != NULL) {
        threshold = json_is_number(t) ? json_number_value(t) : -1;
        if (threshold < rt->face_threshold || threshold > 1) {
            char why[120];
            snprintf(why, sizeof(why),
                     "must be a number from %.3g (the default) to 1: it may only"
                     " be raised",
                     rt->face_threshold);
            refuse_field(req, "threshold", why);
            return;
        }
    }
    int64_t max;
    if (!api_get_int(req, "max_results", 1, 200, 50, &max))
        return;
    snprintf(s->threshold_s, sizeof(s->threshold_s), "%.6f", threshold);
    snprintf(s->max_s, sizeof(s->max_s), "%lld", (long long)max);
    snprintf(s->gallery_s, sizeof(s->gallery_s), "%lld", (long long)s->gallery);
    snprintf(s->track_s, sizeof(s->track_s), "%lld", (long long)s->track);
    const char *params[] = {s->track_s, s->c.who.user_id, s->c.who.sees_all, s->gallery_s};
    int r = dems_db_req(
        req,
        "SELECT (SELECT t.crop_blob FROM face_tracks t WHERE t.id = $1::bigint"
        "  AND " API_VISIBLE_SQL(
            "t.artefact", "$2",
            "$3") ") AS track_blob,"
                  " EXISTS (SELECT 1 FROM face_galleries g WHERE g.id = $4::bigint) AS "
                  "gallery_exists,"
                  " EXISTS (SELECT 1 FROM face_gallery_users gu WHERE gu.gallery_id = $4::bigint"
                  "  AND gu.user_id = $2::bigint) AS gallery_ok",
        4, params, on_checked);
    if (r < 0)
        dems_resp_err(req, r);
}

static struct search *search_new(struct dems_req *req)
{
    struct search *s = calloc(1, sizeof(*s));
    if (s == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_req_set_data(req, s, free);
    return s;
}

void api_face_searches_create(struct dems_req *req)
{
    if (search_new(req) == NULL || !api_face_permitted(req))
        return;
    api_case_load(req, API_CASE_EDITORS, create_loaded);
}

/* ---- reading searches ---- */

/* clang-format off */
#define SEARCH_COLS                                                                                \
    "f.id, f.case_id, c.reference AS case_reference, u.username, f.scope, f.gallery_id,"           \
    " g.name AS gallery, f.probe_track, f.probe_sha256, f.purpose, f.legal_basis,"                 \
    " f.authorisation, f.threshold, f.max_results, f.state, f.error, f.results,"                   \
    " f.ledger_seq, " API_TS("f.created_at") " AS created_at,"                                     \
    " " API_TS("f.finished_at") " AS finished_at"
/* clang-format on */
#define SEARCH_FROM                                                                                \
    " FROM face_searches f JOIN cases c ON c.id = f.case_id JOIN users u ON u.id = f.user_id"      \
    " LEFT JOIN face_galleries g ON g.id = f.gallery_id"

static json_t *search_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_t *o = json_pack(
        "{s:I,s:I,s:s,s:s,s:s,s:o,s:o,s:o,s:s,s:s,s:s,s:s,s:f,s:I,s:s,s:o,s:o,s:o,s:s,s:o,s:s}",
        "id", (json_int_t)api_col_int(res, row, "id"), "case",
        (json_int_t)api_col_int(res, row, "case_id"), "case_reference",
        api_col(res, row, "case_reference"), "user", api_col(res, row, "username"), "scope",
        api_col(res, row, "scope"), "gallery",
        api_col_null(res, row, "gallery_id") ? json_null()
                                             : json_integer(api_col_int(res, row, "gallery_id")),
        "gallery_name", api_col_json_str(res, row, "gallery"), "probe_track",
        api_col_null(res, row, "probe_track") ? json_null()
                                              : json_integer(api_col_int(res, row, "probe_track")),
        "probe_sha256", api_col(res, row, "probe_sha256"), "purpose", api_col(res, row, "purpose"),
        "legal_basis", api_col(res, row, "legal_basis"), "authorisation",
        api_col(res, row, "authorisation"), "threshold", atof(api_col(res, row, "threshold")),
        "max_results", (json_int_t)api_col_int(res, row, "max_results"), "state",
        api_col(res, row, "state"), "error", api_col_json_str(res, row, "error"), "results",
        api_col_null(res, row, "results") ? json_null()
                                          : json_integer(api_col_int(res, row, "results")),
        "ledger_seq",
        api_col_null(res, row, "ledger_seq") ? json_null()
                                             : json_integer(api_col_int(res, row, "ledger_seq")),
        "created_at", api_col(res, row, "created_at"), "finished_at",
        api_col_json_str(res, row, "finished_at"), "notice", NOTICE);
    return o;
}

static void on_searches(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "searches", "id", search_json);
}

static void list_loaded(struct dems_req *req, struct api_case *c)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {c->id_s, after, limit};
    int r = dems_db_req(req,
                        "SELECT " SEARCH_COLS SEARCH_FROM " WHERE f.case_id = $1::bigint"
                        " AND f.id > $2::bigint ORDER BY f.id LIMIT $3::integer",
                        3, params, on_searches);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_face_searches_list(struct dems_req *req)
{
    if (search_new(req) == NULL || !api_face_permitted(req))
        return;
    api_case_load(req, API_CASE_EDITORS, list_loaded);
}

/* ---- one search with its results ---- */

static void on_results(struct dems_req *req, const PGresult *res, int err)
{
    struct search *s = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) < 1) {
        dems_resp_error(req, 404, "search_not_found", "no such search in this case");
        return;
    }
    json_t *o = search_json(req, res, 0);
    json_t *results = json_array();
    int withheld = 0;
    for (int i = 0; o != NULL && results != NULL && i < PQntuples(res); i++) {
        if (api_col_null(res, i, "rank"))
            continue;
        if (!api_col_bool(res, i, "visible")) {
            withheld++; /* footage the caller may no longer see */
            continue;
        }
        json_t *r = json_pack("{s:I,s:f}", "rank", (json_int_t)api_col_int(res, i, "rank"), "score",
                              atof(api_col(res, i, "rscore")));
        if (!api_col_null(res, i, "track_id")) {
            char preview[160];
            json_object_set_new(r, "track", api_face_track_json(res, i));
            snprintf(preview, sizeof(preview), "/v1/evidence/%s/preview#t=%.2f",
                     api_col(res, i, "artefact"), atof(api_col(res, i, "best_t")));
            json_object_set_new(r, "artefact", json_string(api_col(res, i, "artefact")));
            json_object_set_new(r, "t", json_real(atof(api_col(res, i, "best_t"))));
            json_object_set_new(r, "preview", json_string(preview));
            json_object_set_new(r, "crop",
                                json_string(json_string_value(
                                    json_object_get(json_object_get(r, "track"), "crop"))));
        } else {
            char crop[80];
            snprintf(crop, sizeof(crop), "/v1/face/subjects/%lld/crop",
                     (long long)api_col_int(res, i, "subject_id"));
            json_object_set_new(r, "subject",
                                json_pack("{s:I,s:s}", "id",
                                          (json_int_t)api_col_int(res, i, "subject_id"),
                                          "reference", api_col(res, i, "subject_reference")));
            json_object_set_new(r, "crop", json_string(crop));
        }
        json_array_append_new(results, r);
    }
    json_object_set_new(o, "candidates", results);
    json_object_set_new(o, "withheld", json_integer(withheld));
    (void)s;
    dems_resp_json(req, 200, o);
}

static void get_loaded(struct dems_req *req, struct api_case *c)
{
    struct search *s = (struct search *)c;
    char sid[24];
    snprintf(sid, sizeof(sid), "%lld", (long long)s->sid);
    const char *params[] = {c->id_s, sid, c->who.user_id, c->who.sees_all};
    /* Removed subjects and hidden footage never show, whatever was stored. */
    int r = dems_db_req(
        req,
        "SELECT " SEARCH_COLS
        ", r.rank, r.score AS rscore, r.subject_id, s.reference AS subject_reference,"
        " t.id AS track_id, t.artefact, t.t_first, t.t_last, t.best_t, t.detections,"
        " t.score, t.quality, t.best_box::text AS best_box,"
        " (t.id IS NULL OR " API_VISIBLE_SQL(
            "t.artefact", "$3",
            "$4") ") AS visible" SEARCH_FROM
                  " LEFT JOIN face_search_results r ON r.search_id = f.id AND (r.subject_id IS NULL"
                  "  OR EXISTS (SELECT 1 FROM face_subjects e WHERE e.id = r.subject_id"
                  "  AND e.state = 'enrolled'))"
                  " LEFT JOIN face_tracks t ON t.id = r.track_id"
                  " LEFT JOIN face_subjects s ON s.id = r.subject_id"
                  " WHERE f.case_id = $1::bigint AND f.id = $2::bigint ORDER BY r.rank",
        4, params, on_results);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_face_searches_get(struct dems_req *req)
{
    struct search *s = search_new(req);
    if (s == NULL || !api_face_permitted(req))
        return;
    struct dems_str p = dems_req_param(req, 1);
    s->sid = api_id(p.ptr, p.len);
    if (s->sid <= 0) {
        dems_resp_error(req, 404, "search_not_found", "no such search in this case");
        return;
    }
    api_case_load(req, API_CASE_EDITORS, get_loaded);
}

/* ---- oversight ---- */

static void on_oversight(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    char fmt[8];
    const char *f = NULL;
    if (!api_text_param(req, "format", 4, fmt, &f))
        return;
    if (f == NULL || strcmp(f, "json") == 0) {
        api_page_answer(req, res, "searches", "id", search_json);
        return;
    }
    static const char *const cols[] = {
        "id",        "created_at",   "finished_at",   "username", "case_reference",
        "purpose",   "legal_basis",  "authorisation", "scope",    "gallery",
        "threshold", "probe_sha256", "state",         "results",  "ledger_seq"};
    const size_t ncols = sizeof(cols) / sizeof(cols[0]);
    struct dems_buf b;
    dems_buf_init(&b, 64u << 20);
    for (size_t c = 0; c < ncols; c++) {
        dems_buf_csv_field(&b, cols[c]);
        dems_buf_append(&b, c + 1 < ncols ? "," : "\r\n", c + 1 < ncols ? 1 : 2);
    }
    for (int i = 0; i < PQntuples(res); i++) {
        for (size_t c = 0; c < ncols; c++) {
            dems_buf_csv_field(&b, api_col(res, i, cols[c]));
            dems_buf_append(&b, c + 1 < ncols ? "," : "\r\n", c + 1 < ncols ? 1 : 2);
        }
    }
    dems_resp_header(req, "Content-Disposition", "attachment; filename=\"face-searches.csv\"");
    dems_resp_bytes(req, 200, "text/csv; charset=utf-8", b.data, b.len);
    dems_buf_done(&b);
}

void api_face_searches_oversight(struct dems_req *req)
{
    char fmt[8], after[24], limit[24];
    const char *f = NULL;
    if (!api_text_param(req, "format", 4, fmt, &f))
        return;
    if (f != NULL && strcmp(f, "csv") != 0 && strcmp(f, "json") != 0) {
        api_bad_param(req, "format", "must be json or csv");
        return;
    }
    bool csv = f != NULL && strcmp(f, "csv") == 0;
    struct api_page page;
    if (csv) {
        /* The whole record in one file (at most 100,000 searches). */
        snprintf(after, sizeof(after), "0");
        snprintf(limit, sizeof(limit), "100000");
    } else if (!api_page_by_id(req, &page, after, limit)) {
        return;
    }
    const char *params[] = {after, limit};
    int r = dems_db_req(req,
                        "SELECT " SEARCH_COLS SEARCH_FROM " WHERE f.id > $1::bigint"
                        " ORDER BY f.id LIMIT $2::integer",
                        2, params, on_oversight);
    if (r < 0)
        dems_resp_err(req, r);
}
