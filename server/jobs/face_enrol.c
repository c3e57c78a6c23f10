/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face-enrol job ({"subject": <face_subjects.id>}; docs/face-search.md):
 * decodes the subject's image in the media sandbox, requires exactly one
 * face, computes its descriptor and crop, and records FACE_ENROLLED (by the
 * admin who enrolled, naming gallery, reference, image hash and the model
 * hashes) in the transaction that stores the descriptor and marks the
 * subject enrolled. An image without exactly one face marks the subject
 * failed with the reason; nothing is ledgered for it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/face_track.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

#include "face_int.h"

static void failed(PGconn *db, const char *sid, const char *why)
{
    const char *params[] = {sid, why};
    PQclear(face_query(db,
                       "UPDATE face_subjects SET state = 'failed', error = left($2, 1000)"
                       " WHERE id = $1::bigint AND state = 'pending'",
                       2, params));
}

int face_best_face(struct dems_face_ctx *fc, const struct dems_face_image *img,
                   struct dems_face *faces, size_t *ret_n, struct dems_face *best,
                   double *ret_quality)
{
    struct dems_face_opts o;
    face_opts(&o);
    size_t n = 0;
    int rc = dems_face_detect(fc, img, &o, faces, FACE_MAX_PER_FRAME, &n);
    if (rc < 0)
        return rc;
    struct dems_face_track_params tp;
    dems_face_track_params_init(&tp);
    double best_q = -1;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (dems_face_landmarks(fc, img, &faces[i]) < 0 ||
            dems_face_describe(fc, img, &faces[i]) < 0)
            continue;
        kept++;
        double q = dems_face_track_quality(&tp, &faces[i], img->width, img->height);
        if (q > best_q) {
            best_q = q;
            *best = faces[i];
        }
    }
    *ret_n = kept;
    *ret_quality = best_q;
    return 0;
}

enum dems_job_result dems_job_face_enrol(const struct dems_job *job, struct dems_job_ctx *ctx,
                                         char *err, size_t errlen)
{
    json_t *sj = json_object_get(job->payload, "subject");
    if (!json_is_integer(sj) || json_integer_value(sj) <= 0) {
        snprintf(err, errlen, "field \"subject\" must be a subject id");
        return DEMS_JOB_FAIL;
    }
    char sid[24];
    snprintf(sid, sizeof(sid), "%lld", (long long)json_integer_value(sj));
    const char *params[] = {sid};
    PGresult *res =
        face_query(ctx->db,
                   "SELECT s.state, s.image_blob, s.image_sha256, s.reference, s.gallery_id,"
                   " g.name, u.username FROM face_subjects s"
                   " JOIN face_galleries g ON g.id = s.gallery_id"
                   " JOIN users u ON u.id = s.enrolled_by WHERE s.id = $1::bigint",
                   1, params);
    if (res == NULL || PQntuples(res) != 1) {
        snprintf(err, errlen, res == NULL ? "database: cannot look up subject %s" : "no subject %s",
                 sid);
        bool missing = res != NULL;
        PQclear(res);
        return missing ? DEMS_JOB_FAIL : DEMS_JOB_RETRY;
    }
    char state[16], blob[65], image_sha[65], reference[65], gallery[24], gname[101],
        user[DEMS_LEDGER_MAX_ID + 1];
    snprintf(state, sizeof(state), "%s", PQgetvalue(res, 0, 0));
    snprintf(blob, sizeof(blob), "%s", PQgetvalue(res, 0, 1));
    snprintf(image_sha, sizeof(image_sha), "%s", PQgetvalue(res, 0, 2));
    snprintf(reference, sizeof(reference), "%s", PQgetvalue(res, 0, 3));
    snprintf(gallery, sizeof(gallery), "%s", PQgetvalue(res, 0, 4));
    snprintf(gname, sizeof(gname), "%s", PQgetvalue(res, 0, 5));
    snprintf(user, sizeof(user), "%s", PQgetvalue(res, 0, 6));
    PQclear(res);
    if (strcmp(state, "pending") != 0 || blob[0] == '\0')
        return DEMS_JOB_OK; /* enrolled, failed or removed already */
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    struct dems_face_ctx *fc = face_ctx(ctx->cfg, err, errlen);
    if (fc == NULL)
        return DEMS_JOB_RETRY;
    char tag[48];
    snprintf(tag, sizeof(tag), "enrol-%lld", (long long)job->id);
    struct face_frames fr;
    if (face_frames_start(ctx, blob, tag, 1, &fr, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    struct dems_face *faces = malloc(FACE_MAX_PER_FRAME * sizeof(*faces));
    struct dems_face best;
    size_t n = 0;
    char ferr[256] = "";
    int rc = faces == NULL ? DEMS_ENOMEM : face_frames_next(&fr, ctx, ferr, sizeof(ferr));
    uint8_t *jpeg = NULL;
    size_t jlen = 0;
    double quality = 0;
    if (rc == 1) {
        struct dems_face_image img;
        face_image_of(&fr.frame, &img);
        rc = face_best_face(fc, &img, faces, &n, &best, &quality);
        if (rc == 0 && n == 1)
            rc = dems_face_crop_jpeg(&img, &best.box, 0.25, 256, 90, &jpeg, &jlen, ferr,
                                     sizeof(ferr));
    } else if (rc == 0) {
        snprintf(ferr, sizeof(ferr), "the image gave no picture");
        rc = DEMS_EINVAL;
    }
    struct dems_media_error me;
    int mr = face_frames_finish(&fr, ctx, NULL, &me);
    free(faces);
    if (rc == DEMS_EUNAVAIL || mr == DEMS_EUNAVAIL) {
        free(jpeg);
        snprintf(err, errlen, "the worker stopped during enrolment");
        return DEMS_JOB_RELEASE;
    }
    if (mr < 0 || rc < 0 || n != 1) {
        free(jpeg);
        if (mr < 0)
            snprintf(err, errlen, "not a usable image: %s", me.message);
        else if (rc < 0)
            snprintf(err, errlen, "%s", ferr[0] != '\0' ? ferr : dems_strerror(rc));
        else if (n == 0)
            snprintf(err, errlen, "no face found: enrol a clear, frontal image of the subject");
        else
            snprintf(err, errlen, "%zu faces found: enrol an image of the subject alone", n);
        bool transient =
            mr < 0 && (me.code == DEMS_MEDIA_TIMEOUT || me.code == DEMS_MEDIA_CRASHED ||
                       me.code == DEMS_MEDIA_INTERNAL || me.code == DEMS_MEDIA_LIMIT ||
                       me.code == DEMS_MEDIA_OUT_OF_MEMORY);
        if (transient && job->attempt < job->max_attempts)
            return DEMS_JOB_RETRY;
        failed(ctx->db, sid, err);
        return DEMS_JOB_FAIL;
    }
    char crop[65];
    rc = dems_blob_put_mem(ctx->cfg->data_dir, ctx->master_key, jpeg, jlen, crop);
    free(jpeg);
    if (rc < 0) {
        snprintf(err, errlen, "cannot store the crop: %s", dems_strerror(rc));
        return DEMS_JOB_RETRY;
    }
    char vec[1027], size[24], q[32];
    face_vec_text(best.descriptor, vec);
    snprintf(size, sizeof(size), "%zu", jlen);
    snprintf(q, sizeof(q), "%.4f", quality);
    json_t *payload =
        json_pack("{s:I,s:s,s:I,s:s,s:s,s:o}", "gallery_id", (json_int_t)atoll(gallery), "gallery",
                  gname, "subject_id", (json_int_t)atoll(sid), "image_sha256", image_sha,
                  "crop_sha256", crop, "engine", face_engine_json());
    if (payload != NULL)
        dems_ledger_payload_set_text(payload, "reference", reference, strlen(reference), 64);
    const char *pp[] = {sid, vec, crop, size, q};
    struct dems_ledger_item *it =
        face_item(DEMS_LEDGER_FACE_ENROLLED, DEMS_LEDGER_ACTOR_USER, user, payload,
                  "WITH d AS (INSERT INTO face_descriptors (subject_id, vec)"
                  " VALUES ($1::bigint, $2::bytea) RETURNING 1)"
                  " UPDATE face_subjects SET state = 'enrolled', error = NULL, crop_blob = $3,"
                  " crop_size = $4::integer, quality = $5::real, enrolled_seq = $6::bigint"
                  " WHERE id = $1::bigint AND state = 'pending' AND (SELECT count(*) FROM d) = 1",
                  5, pp);
    if (it == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_JOB_RETRY;
    }
    it->has_sha256 = true;
    dems_hex_decode(image_sha, 64, it->sha256, 32);
    it->pre_must_change = true;
    it->pre_seq = true;
    uint64_t seq;
    rc = dems_job_ledger_append(it, &seq);
    if (rc == DEMS_ENOTFOUND)
        return DEMS_JOB_OK; /* removed (or enrolled by another run) meanwhile */
    if (rc < 0) {
        snprintf(err, errlen, "cannot record the enrolment: %s", dems_strerror(rc));
        return DEMS_JOB_RETRY;
    }
    return DEMS_JOB_OK;
}
