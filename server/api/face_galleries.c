/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Galleries of reference images (e.g. custody images) for identification
 * searches (docs/face-search.md):
 *   GET    /v1/face/galleries                         galleries the caller may search
 *                                                     (admins: all)
 *   POST   /v1/admin/face/galleries                   {"name", "description"}
 *   PUT    /v1/admin/face/galleries/{id}/users/{username}   may search it
 *   DELETE /v1/admin/face/galleries/{id}/users/{username}
 *   GET    /v1/admin/face/galleries/{id}/subjects     enrolled subjects, a page at a time
 *   POST   /v1/admin/face/galleries/{id}/subjects     {"reference", "image": base64 JPEG/PNG}
 *                                                     202: a face-enrol job computes the
 *                                                     descriptor (exactly one face) and
 *                                                     ledgers FACE_ENROLLED
 *   DELETE /v1/admin/face/galleries/{id}/subjects/{sid}  {"reason"}: descriptors, image
 *                                                     and crop deleted (FACE_SUBJECT_REMOVED)
 *   GET    /v1/face/subjects/{id}/crop                the enrolled face (gallery users)
 * Every change is a ledger entry in the transaction of the change.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "dems/sniff.h"
#include "demsd/auth.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

/* Largest enrolment (or probe) image, decoded. */
#define IMAGE_MAX (10u << 20)

struct gal {
    int64_t gallery;
    char gallery_s[24];
    int64_t subject;
    char subject_s[24];
    char name[101];
    char username[DEMS_MAX_USERNAME + 1];
    char reference[65];
    char reason[501];
    bool grant;
    char sha[65]; /* the enrolment image */
    int err;
    /* removal: blobs to delete once the change is durable */
    char blobs[2][65];
    size_t nblobs;
    struct dems_req *req;
};

static struct gal *gal_new(struct dems_req *req, bool with_gallery)
{
    struct gal *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, g, free);
    g->req = req;
    if (with_gallery) {
        struct dems_str p = dems_req_param(req, 0);
        g->gallery = api_id(p.ptr, p.len);
        if (g->gallery <= 0) {
            dems_resp_error(req, 404, "gallery_not_found", "no such gallery");
            return NULL;
        }
        snprintf(g->gallery_s, sizeof(g->gallery_s), "%lld", (long long)g->gallery);
    }
    return g;
}

static void on_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct gal *g = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ECONFLICT)
            dems_resp_error(req, 409, "gallery_exists", "a gallery with that name already exists");
        else if (item->err < 0)
            api_case_changed(req, item, "the gallery");
        else if (item->type == DEMS_LEDGER_FACE_GALLERY_CREATED)
            dems_resp_json(req, 201,
                           json_pack("{s:s,s:I}", "name", g->name, "seq", (json_int_t)item->seq));
        else
            dems_resp_json(req, 200,
                           json_pack("{s:I,s:s,s:b,s:I}", "gallery", (json_int_t)g->gallery,
                                     "username", g->username, "may_search", g->grant, "seq",
                                     (json_int_t)item->seq));
    }
    dems_req_unref(req);
}

/* ---- galleries ---- */

void api_face_galleries_create(struct dems_req *req)
{
    struct gal *g = gal_new(req, false);
    const char *name, *desc;
    if (g == NULL || !api_get_str(req, "name", 100, true, &name) ||
        !api_get_str(req, "description", 2000, false, &desc))
        return;
    if (!api_label_ok(name) || (desc != NULL && desc[0] == '\0')) {
        dems_resp_error(req, 400, "invalid_field",
                        desc != NULL && desc[0] == '\0'
                            ? "field \"description\" must not be empty"
                            : "field \"name\" must be 1-100 printable characters");
        return;
    }
    snprintf(g->name, sizeof(g->name), "%s", name);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {name, desc, uid};
    json_t *payload = json_object();
    if (payload != NULL) {
        dems_ledger_payload_set_text(payload, "name", name, strlen(name), 100);
        if (desc != NULL)
            dems_ledger_payload_set_text(payload, "description", desc, strlen(desc), 500);
    }
    struct dems_ledger_item *it =
        api_change_new(req, DEMS_LEDGER_FACE_GALLERY_CREATED, NULL, payload,
                       "INSERT INTO face_galleries (name, description, created_by)"
                       " VALUES ($1, $2, $3::bigint)",
                       3, params);
    if (it != NULL)
        api_ledger_submit(req, it, on_changed);
}

static json_t *gallery_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack("{s:I,s:s,s:o,s:I,s:s,s:s,s:b}", "id", (json_int_t)api_col_int(res, row, "id"),
                     "name", api_col(res, row, "name"), "description",
                     api_col_json_str(res, row, "description"), "subjects",
                     (json_int_t)api_col_int(res, row, "subjects"), "created_by",
                     api_col(res, row, "created_by"), "created_at", api_col(res, row, "created_at"),
                     "may_search", api_col_bool(res, row, "may_search"));
}

static void on_galleries(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "galleries", "id", gallery_json);
}

void api_face_galleries_list(struct dems_req *req)
{
    const struct dems_principal *who = dems_req_principal(req);
    bool admin = who->role == DEMS_ROLE_ADMIN;
    if (!admin && !api_face_permitted(req))
        return;
    struct api_page page;
    char after[24], limit[24], uid[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    const char *params[] = {after, limit, uid, admin ? "true" : "false",
                            who->face_search ? "true" : "false"};
    int r = dems_db_req(
        req,
        "SELECT g.id, g.name, g.description, u.username AS created_by,"
        " " API_TS(
            "g.created_at") " AS created_at,"
                            " (SELECT count(*) FROM face_subjects s WHERE s.gallery_id = g.id"
                            "  AND s.state = 'enrolled') AS subjects,"
                            " ($5::boolean AND EXISTS (SELECT 1 FROM face_gallery_users gu WHERE "
                            "gu.gallery_id = g.id"
                            "  AND gu.user_id = $3::bigint)) AS may_search"
                            " FROM face_galleries g JOIN users u ON u.id = g.created_by WHERE g.id "
                            "> $1::bigint"
                            " AND ($4::boolean OR EXISTS (SELECT 1 FROM face_gallery_users gu"
                            "  WHERE gu.gallery_id = g.id AND gu.user_id = $3::bigint))"
                            " ORDER BY g.id LIMIT $2::integer",
        5, params, on_galleries);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- who may search a gallery ---- */

static void on_grantee(struct dems_req *req, const PGresult *res, int err)
{
    struct gal *g = dems_req_data(req);
    if (!api_found(req, res, err, "gallery_not_found", "no such gallery"))
        return;
    if (api_col_null(res, 0, "user_id")) {
        dems_resp_error(req, 404, "user_not_found", "no such enabled officer or admin");
        return;
    }
    bool has = api_col_bool(res, 0, "granted");
    if (has == g->grant) {
        dems_resp_json(req, 200,
                       json_pack("{s:I,s:s,s:b,s:n}", "gallery", (json_int_t)g->gallery, "username",
                                 g->username, "may_search", has, "seq"));
        return;
    }
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {g->gallery_s, api_col(res, 0, "user_id"), uid};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_FACE_GALLERY_ACCESS, NULL,
        json_pack("{s:I,s:s,s:s,s:b}", "gallery_id", (json_int_t)g->gallery, "gallery",
                  api_col(res, 0, "name"), "user", g->username, "may_search", g->grant),
        g->grant ? "INSERT INTO face_gallery_users (gallery_id, user_id, granted_by)"
                   " VALUES ($1::bigint, $2::bigint, $3::bigint) ON CONFLICT DO NOTHING"
                 : "DELETE FROM face_gallery_users WHERE gallery_id = $1::bigint"
                   " AND user_id = $2::bigint AND $3::bigint IS NOT NULL",
        3, params);
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_changed);
}

void api_face_gallery_users_set(struct dems_req *req)
{
    struct gal *g = gal_new(req, true);
    if (g == NULL)
        return;
    struct dems_str u = dems_req_param(req, 1);
    if (u.len == 0 || u.len > DEMS_MAX_USERNAME) {
        dems_resp_error(req, 404, "user_not_found", "no such user");
        return;
    }
    memcpy(g->username, u.ptr, u.len);
    g->username[u.len] = '\0';
    dems_auth_username_fold(g->username);
    g->grant = dems_req_head(req)->method != DEMS_HTTP_DELETE;
    const char *params[] = {g->gallery_s, g->username};
    int r = dems_db_req(req,
                        "SELECT g.name, u.id AS user_id, EXISTS (SELECT 1 FROM face_gallery_users"
                        " gu WHERE gu.gallery_id = g.id AND gu.user_id = u.id) AS granted"
                        " FROM face_galleries g LEFT JOIN users u ON u.username = $2"
                        "  AND NOT u.disabled AND u.role IN ('admin', 'officer')"
                        " WHERE g.id = $1::bigint",
                        2, params, on_grantee);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- subjects: list ---- */

static json_t *subject_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    char crop[80];
    snprintf(crop, sizeof(crop), "/v1/face/subjects/%lld/crop",
             (long long)api_col_int(res, row, "id"));
    return json_pack(
        "{s:I,s:s,s:s,s:o,s:s,s:s,s:o,s:o}", "id", (json_int_t)api_col_int(res, row, "id"),
        "reference", api_col(res, row, "reference"), "state", api_col(res, row, "state"), "error",
        api_col_json_str(res, row, "error"), "image_sha256", api_col(res, row, "image_sha256"),
        "enrolled_at", api_col(res, row, "enrolled_at"), "removed_at",
        api_col_json_str(res, row, "removed_at"), "crop",
        api_col_null(res, row, "crop_blob") ? json_null() : json_string(crop));
}

static void on_subjects(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "gallery_not_found", "no such gallery"))
        return;
    if (api_col_null(res, 0, "id")) /* the gallery, with no (more) subjects */
        api_page_send(req, "subjects", json_array(), NULL);
    else
        api_page_answer(req, res, "subjects", "id", subject_json);
}

void api_face_subjects_list(struct dems_req *req)
{
    struct gal *g = gal_new(req, true);
    struct api_page page;
    char after[24], limit[24];
    if (g == NULL || !api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {g->gallery_s, after, limit};
    /* clang-format off */
    int r = dems_db_req(req,
                        "SELECT s.id, s.reference, s.state, s.error, s.image_sha256, s.crop_blob,"
                        " " API_TS("s.enrolled_at") " AS enrolled_at,"
                        " " API_TS("s.removed_at") " AS removed_at"
                        " FROM face_galleries g LEFT JOIN face_subjects s ON s.gallery_id = g.id"
                        " AND s.id > $2::bigint WHERE g.id = $1::bigint"
                        " ORDER BY s.id LIMIT $3::integer",
                        3, params, on_subjects);
    /* clang-format on */
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- subjects: enrolment ---- */

static void on_enrol_queued(struct dems_req *req, const PGresult *res, int err)
{
    struct gal *g = dems_req_data(req);
    if (err < 0 && dems_db_is_unique_violation(res)) {
        dems_resp_error(req, 409, "subject_exists",
                        "the gallery already holds a subject with that reference");
        return;
    }
    if (!api_found(req, res, err, "gallery_not_found", "no such gallery"))
        return;
    dems_resp_json(
        req, 202,
        json_pack("{s:I,s:I,s:s,s:s,s:s,s:I}", "id", (json_int_t)api_col_int(res, 0, "id"),
                  "gallery", (json_int_t)g->gallery, "reference", g->reference, "state", "pending",
                  "image_sha256", g->sha, "job", (json_int_t)api_col_int(res, 0, "job")));
}

/* ---- an image sent in base64 (enrolments here, probes in face_searches.c) ---- */

struct face_image {
    struct dems_req *req;
    char *b64;
    int err;
    char sha[65];
    api_face_image_cb next;
};

static void image_work(void *arg)
{
    struct face_image *fi = arg;
    size_t n = strlen(fi->b64), cap = n / 4 * 3 + 3, len = 0;
    uint8_t *image = cap <= IMAGE_MAX + 3 ? malloc(cap) : NULL;
    if (image == NULL) {
        fi->err = cap > IMAGE_MAX + 3 ? DEMS_ETOOBIG : DEMS_ENOMEM;
        return;
    }
    if (sodium_base642bin(image, cap, fi->b64, n, "\r\n", &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len == 0)
        fi->err = DEMS_EINVAL;
    else if (len > IMAGE_MAX)
        fi->err = DEMS_ETOOBIG;
    if (fi->err == 0) {
        struct dems_sniffed what = dems_sniff(image, len);
        if (strcmp(what.format, "jpeg") != 0 && strcmp(what.format, "png") != 0)
            fi->err = DEMS_EINVAL;
    }
    if (fi->err == 0) {
        const struct dems_server *srv = dems_req_loop(fi->req)->srv;
        fi->err = dems_blob_put_mem(srv->cfg->data_dir, srv->master_key, image, len, fi->sha);
    }
    free(image);
}

static void image_done(void *arg)
{
    struct face_image *fi = arg;
    struct dems_req *req = fi->req;
    if (!dems_req_is_aborted(req)) {
        if (fi->err == DEMS_EINVAL)
            dems_resp_error(req, 400, "invalid_field",
                            "field \"image\" must be a JPEG or PNG image in base64");
        else if (fi->err == DEMS_ETOOBIG)
            dems_resp_error(req, 413, "image_too_large", "the image is over 10 MiB");
        else if (fi->err < 0)
            dems_resp_err(req, fi->err);
        else
            fi->next(req, fi->sha);
    }
    free(fi->b64);
    free(fi);
    dems_req_unref(req);
}

void api_face_image_put(struct dems_req *req, const char *b64, api_face_image_cb next)
{
    struct face_image *fi = calloc(1, sizeof(*fi));
    if (fi != NULL && (fi->b64 = strdup(b64)) == NULL) {
        free(fi);
        fi = NULL;
    }
    if (fi == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    fi->req = req;
    fi->next = next;
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), image_work, image_done, fi) < 0) {
        free(fi->b64);
        free(fi);
        dems_req_unref(req);
        dems_resp_err(req, DEMS_ENOMEM);
    }
}

static void image_stored(struct dems_req *req, const char *sha)
{
    struct gal *g = dems_req_data(req);
    snprintf(g->sha, sizeof(g->sha), "%s", sha);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {g->gallery_s, g->reference, g->sha, uid};
    int r = dems_db_req(req,
                        "WITH s AS (INSERT INTO face_subjects (gallery_id, reference, image_sha256,"
                        " image_blob, enrolled_by) SELECT g.id, $2, $3, $3, $4::bigint"
                        " FROM face_galleries g WHERE g.id = $1::bigint RETURNING id)"
                        " SELECT s.id, dems_enqueue_job('face-enrol', jsonb_build_object('subject',"
                        " s.id), s.id::text) AS job FROM s",
                        4, params, on_enrol_queued);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_face_subjects_create(struct dems_req *req)
{
    struct gal *g = gal_new(req, true);
    const char *ref, *image;
    if (g == NULL || !api_get_str(req, "reference", 64, true, &ref) ||
        !api_get_str(req, "image", (size_t)IMAGE_MAX / 3 * 4 + 8, true, &image))
        return;
    if (!api_label_ok(ref)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"reference\" must be 1-64 printable characters");
        return;
    }
    snprintf(g->reference, sizeof(g->reference), "%s", ref);
    api_face_image_put(req, image, image_stored);
}

/* ---- subjects: removal ---- */

static void unlink_work(void *arg)
{
    struct gal *g = arg;
    const struct dems_config *cfg = dems_req_loop(g->req)->srv->cfg;
    for (size_t i = 0; i < g->nblobs; i++)
        if (dems_blob_erase(cfg->data_dir, g->blobs[i]) < 0)
            g->err = DEMS_EIO;
}

static void unlink_done(void *arg)
{
    struct gal *g = arg;
    struct dems_req *req = g->req;
    if (!dems_req_is_aborted(req))
        dems_resp_json(req, 200,
                       json_pack("{s:I,s:s,s:b,s:b}", "id", (json_int_t)g->subject, "reference",
                                 g->reference, "removed", 1, "images_deleted", g->err == 0));
    dems_req_unref(req);
}

/* The removed subject's blobs nothing else still refers to. */
static void on_orphans(struct dems_req *req, const PGresult *res, int err)
{
    struct gal *g = dems_req_data(req);
    for (int i = 0; err == 0 && i < PQntuples(res) && g->nblobs < 2; i++)
        snprintf(g->blobs[g->nblobs++], 65, "%s", api_col(res, i, "blob"));
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), unlink_work, unlink_done, g) < 0) {
        g->err = DEMS_ENOMEM;
        unlink_done(g);
    }
}

static void on_removed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct gal *g = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0) {
            api_case_changed(req, item, "the subject");
        } else {
            const char *params[] = {g->blobs[0][0] != '\0' ? g->blobs[0] : NULL,
                                    g->blobs[1][0] != '\0' ? g->blobs[1] : NULL};
            g->nblobs = 0;
            g->blobs[0][0] = g->blobs[1][0] = '\0';
            int r = dems_db_req(
                req,
                "SELECT b AS blob FROM unnest(ARRAY[$1::text, $2::text]) AS b WHERE b IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM artefacts a WHERE a.id = b)"
                " AND NOT EXISTS (SELECT 1 FROM derivatives d WHERE d.blob = b)"
                " AND NOT EXISTS (SELECT 1 FROM face_subjects s WHERE s.image_blob = b"
                "  OR s.crop_blob = b)"
                " AND NOT EXISTS (SELECT 1 FROM face_tracks t WHERE t.crop_blob = b)"
                " AND NOT EXISTS (SELECT 1 FROM face_searches f WHERE f.probe_blob = b)",
                2, params, on_orphans);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

static void on_subject(struct dems_req *req, const PGresult *res, int err)
{
    struct gal *g = dems_req_data(req);
    if (!api_found(req, res, err, "subject_not_found", "no such subject in this gallery"))
        return;
    snprintf(g->reference, sizeof(g->reference), "%s", api_col(res, 0, "reference"));
    if (strcmp(api_col(res, 0, "state"), "removed") == 0) {
        dems_resp_error(req, 409, "subject_removed", "the subject was removed already");
        return;
    }
    if (!api_col_null(res, 0, "image_blob"))
        snprintf(g->blobs[0], 65, "%s", api_col(res, 0, "image_blob"));
    if (!api_col_null(res, 0, "crop_blob"))
        snprintf(g->blobs[1], 65, "%s", api_col(res, 0, "crop_blob"));
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {g->gallery_s, g->subject_s, uid, g->reason};
    json_t *payload =
        json_pack("{s:I,s:I,s:s,s:I}", "gallery_id", (json_int_t)g->gallery, "subject_id",
                  (json_int_t)g->subject, "image_sha256", api_col(res, 0, "image_sha256"),
                  "descriptors", (json_int_t)api_col_int(res, 0, "descriptors"));
    if (payload != NULL) {
        dems_ledger_payload_set_text(payload, "reference", g->reference, strlen(g->reference), 64);
        dems_ledger_payload_set_text(payload, "reason", g->reason, strlen(g->reason), 500);
    }
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_FACE_SUBJECT_REMOVED, NULL, payload,
        "WITH d AS (DELETE FROM face_descriptors WHERE subject_id = $2::bigint RETURNING 1)"
        " UPDATE face_subjects SET state = 'removed', removed_at = now(),"
        " removed_by = $3::bigint, removed_reason = $4, image_blob = NULL, crop_blob = NULL"
        " WHERE id = $2::bigint AND gallery_id = $1::bigint AND state <> 'removed'"
        " AND (SELECT count(*) FROM d) >= 0",
        4, params);
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_removed);
}

void api_face_subjects_remove(struct dems_req *req)
{
    struct gal *g = gal_new(req, true);
    if (g == NULL)
        return;
    struct dems_str p = dems_req_param(req, 1);
    g->subject = api_id(p.ptr, p.len);
    if (g->subject <= 0) {
        dems_resp_error(req, 404, "subject_not_found", "no such subject in this gallery");
        return;
    }
    snprintf(g->subject_s, sizeof(g->subject_s), "%lld", (long long)g->subject);
    const char *reason = NULL;
    if (dems_req_json(req) != NULL && !api_get_str(req, "reason", 500, false, &reason))
        return;
    snprintf(g->reason, sizeof(g->reason), "%s",
             reason != NULL && reason[0] != '\0' ? reason : "removed by an administrator");
    const char *params[] = {g->gallery_s, g->subject_s};
    int r = dems_db_req(req,
                        "SELECT s.reference, s.state, s.image_sha256, s.image_blob, s.crop_blob,"
                        " (SELECT count(*) FROM face_descriptors d WHERE d.subject_id = s.id)"
                        " AS descriptors FROM face_subjects s"
                        " WHERE s.id = $2::bigint AND s.gallery_id = $1::bigint",
                        2, params, on_subject);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- a subject's crop ---- */

static void on_subject_crop(struct dems_req *req, const PGresult *res, int err)
{
    struct api_download *d = dems_req_data(req);
    if (!api_found(req, res, err, "subject_not_found", "no such subject"))
        return;
    if (!api_col_bool(res, 0, "allowed")) {
        dems_auth_denied(req, "gallery not permitted", NULL);
        dems_resp_error(req, 404, "subject_not_found", "no such subject");
        return;
    }
    if (api_col_null(res, 0, "crop_blob")) {
        dems_resp_error(req, 404, "subject_not_found", "the subject has no crop");
        return;
    }
    snprintf(d->blob_id, sizeof(d->blob_id), "%s", api_col(res, 0, "crop_blob"));
    snprintf(d->id, sizeof(d->id), "%s", d->blob_id);
    d->size = (uint64_t)api_col_int(res, 0, "size");
    snprintf(d->content_type, sizeof(d->content_type), "image/jpeg");
    d->inline_ = true;
    if (api_download_prepare(req, d))
        api_download_start(req, d);
}

void api_face_subject_crop(struct dems_req *req)
{
    struct api_download *d = api_download_new(req);
    if (d == NULL)
        return;
    const struct dems_principal *who = dems_req_principal(req);
    bool admin = who->role == DEMS_ROLE_ADMIN;
    if (!admin && !api_face_permitted(req))
        return;
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "subject_not_found", "no such subject");
        return;
    }
    char ids[24], uid[24];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    const char *params[] = {ids, uid, admin ? "true" : "false"};
    int r = dems_db_req(req,
                        "SELECT s.crop_blob, s.crop_size AS size, ($3::boolean OR EXISTS"
                        " (SELECT 1 FROM face_gallery_users gu WHERE gu.gallery_id = s.gallery_id"
                        "  AND gu.user_id = $2::bigint)) AS allowed"
                        " FROM face_subjects s WHERE s.id = $1::bigint",
                        3, params, on_subject_crop);
    if (r < 0)
        dems_resp_err(req, r);
}
