/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face-index job ({"evidence": "<sha256>"}, queued when an artefact
 * joins a case whose face indexing is on; docs/face-search.md): the media
 * sandbox samples the video at face_sample_fps (a still gives one frame) and
 * streams RGB frames to this slot, which detects faces, computes their
 * landmarks and descriptors (common/face), links them into tracks
 * (dems/face_track.h), keeps each track's best crop as an encrypted blob,
 * stores tracks and descriptors in PostgreSQL and records FACE_INDEXED
 * (artefact, engine, model hashes, parameters, counts) in the transaction
 * that marks the artefact indexed. Decoding runs in the child and the
 * networks here, so the two cores work at once.
 *
 * Idempotent: an artefact already indexed ends the job; rows an interrupted
 * attempt left are deleted first. Media the decoder refuses fails the job
 * for good with the reason on face_index (no video: "skipped").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/face_track.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#include "face_int.h"

/* Crops: the box and a quarter of it on each side, at most 256 px, JPEG quality 90. */
#define CROP_MARGIN  0.25
#define CROP_SIDE    256
#define CROP_QUALITY 90

/* A crop held for a track until it closes. */
struct held {
    uint32_t track;
    uint8_t *jpeg;
    size_t len;
};

/* A closed track (in one of the batches taken from the tracker) with its crop. */
struct done_track {
    const struct dems_face_track *t;
    uint8_t *jpeg;
    size_t len;
    int frame_w, frame_h;
};

struct batch {
    struct dems_face_track *ts;
    size_t n;
};

struct run {
    struct dems_face_tracker *tr;
    struct held *held;
    size_t nheld, held_cap;
    struct done_track *done;
    size_t ndone, done_cap;
    struct batch *batches;
    size_t nbatches, batches_cap;
    int frame_w, frame_h;
    uint64_t frames, detections, descriptors;
    /* Monotonic seconds per stage, for the completion log (docs/face-search.md). */
    double t_read, t_detect, t_landmarks, t_describe, t_track, t_crop, t_store;
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process's reaped children. */
static double children_cpu(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_CHILDREN, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static bool run_sql(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = face_query(db, sql, n, params);
    PQclear(res);
    return res != NULL;
}

static struct held *held_find(struct run *r, uint32_t track)
{
    for (size_t i = 0; i < r->nheld; i++)
        if (r->held[i].track == track)
            return &r->held[i];
    return NULL;
}

/* Keeps jpeg (owned) as track's crop, replacing an earlier one. */
static int held_put(struct run *r, uint32_t track, uint8_t *jpeg, size_t len)
{
    struct held *h = held_find(r, track);
    if (h == NULL) {
        if (r->nheld == r->held_cap) {
            size_t cap = r->held_cap ? 2 * r->held_cap : 16;
            struct held *n = realloc(r->held, cap * sizeof(*n));
            if (n == NULL) {
                free(jpeg);
                return DEMS_ENOMEM;
            }
            r->held = n;
            r->held_cap = cap;
        }
        h = &r->held[r->nheld++];
        *h = (struct held){.track = track};
    }
    free(h->jpeg);
    h->jpeg = jpeg;
    h->len = len;
    return 0;
}

/* Moves the tracker's closed tracks (with their crops) to r->done. */
static int collect(struct run *r)
{
    struct dems_face_track *ts = NULL;
    size_t n = 0;
    dems_face_tracker_take_closed(r->tr, &ts, &n);
    if (n == 0)
        return 0;
    if (r->nbatches == r->batches_cap) {
        size_t cap = r->batches_cap ? 2 * r->batches_cap : 64;
        struct batch *b = realloc(r->batches, cap * sizeof(*b));
        if (b == NULL) {
            dems_face_tracks_free(ts, n);
            return DEMS_ENOMEM;
        }
        r->batches = b;
        r->batches_cap = cap;
    }
    r->batches[r->nbatches++] = (struct batch){ts, n};
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (r->ndone == r->done_cap) {
            size_t cap = r->done_cap ? 2 * r->done_cap : 64;
            struct done_track *d = realloc(r->done, cap * sizeof(*d));
            if (d == NULL) {
                rc = DEMS_ENOMEM;
                break;
            }
            r->done = d;
            r->done_cap = cap;
        }
        struct done_track *d = &r->done[r->ndone++];
        d->t = &ts[i];
        d->frame_w = r->frame_w;
        d->frame_h = r->frame_h;
        struct held *h = held_find(r, d->t->id);
        d->jpeg = h != NULL ? h->jpeg : NULL;
        d->len = h != NULL ? h->len : 0;
        if (h != NULL)
            *h = r->held[--r->nheld];
    }
    /* Crops of tracks that closed without being reported (too short). */
    for (size_t i = 0; i < r->nheld;) {
        if (!dems_face_tracker_is_open(r->tr, r->held[i].track)) {
            free(r->held[i].jpeg);
            r->held[i] = r->held[--r->nheld];
        } else {
            i++;
        }
    }
    return rc;
}

static void run_free(struct run *r)
{
    dems_face_tracker_free(r->tr);
    for (size_t i = 0; i < r->nheld; i++)
        free(r->held[i].jpeg);
    free(r->held);
    for (size_t i = 0; i < r->ndone; i++)
        free(r->done[i].jpeg);
    free(r->done);
    for (size_t i = 0; i < r->nbatches; i++)
        dems_face_tracks_free(r->batches[i].ts, r->batches[i].n);
    free(r->batches);
}

/* One frame: detect, landmarks, descriptors, track, crop the new bests. */
static int frame(struct run *r, struct dems_face_ctx *fc, const struct dems_media_frame *f,
                 struct dems_face *faces, char *err, size_t errlen)
{
    struct dems_face_image img;
    face_image_of(f, &img);
    struct dems_face_opts o;
    face_opts(&o);
    size_t n = 0;
    double t0 = mono();
    int rc = dems_face_detect(fc, &img, &o, faces, FACE_MAX_PER_FRAME, &n);
    double t1 = mono();
    r->t_detect += t1 - t0;
    if (rc < 0) {
        snprintf(err, errlen, "face detection failed: %s", dems_strerror(rc));
        return rc;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok = dems_face_landmarks(fc, &img, &faces[i]) >= 0;
        double t2 = mono();
        r->t_landmarks += t2 - t1;
        ok = ok && dems_face_describe(fc, &img, &faces[i]) >= 0;
        t1 = mono();
        r->t_describe += t1 - t2;
        if (!ok)
            continue; /* a box at the very edge: not a usable face */
        if (k != i)
            faces[k] = faces[i];
        k++;
    }
    r->frames++;
    r->detections += k;
    r->frame_w = img.width;
    r->frame_h = img.height;
    struct dems_face_track_assign assign[FACE_MAX_PER_FRAME];
    rc = dems_face_tracker_add(r->tr, (double)f->t_us / 1e6, faces, k, img.width, img.height,
                               assign);
    double t2 = mono();
    r->t_track += t2 - t1;
    if (rc < 0) {
        snprintf(err, errlen, "face tracking failed: %s", dems_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < k; i++) {
        if (!assign[i].best)
            continue;
        uint8_t *jpeg = NULL;
        size_t len = 0;
        char why[160];
        if (dems_face_crop_jpeg(&img, &faces[i].box, CROP_MARGIN, CROP_SIDE, CROP_QUALITY, &jpeg,
                                &len, why, sizeof(why)) < 0)
            continue; /* the track keeps its earlier crop */
        rc = held_put(r, assign[i].track, jpeg, len);
        if (rc < 0)
            return rc;
    }
    double t3 = mono();
    r->t_crop += t3 - t2;
    rc = collect(r);
    r->t_track += mono() - t3;
    return rc;
}

static void set_state(PGconn *db, const char *id, const char *state, const char *why)
{
    const char *params[] = {id, state, why};
    run_sql(db,
            "UPDATE face_index SET state = $2, error = left($3, 1000), finished_at = now()"
            " WHERE artefact = $1",
            3, params);
}

/* Stores the tracks, their crops and descriptors in one transaction. */
static int store(const struct dems_job_ctx *ctx, const char *id, struct run *r, char *err,
                 size_t errlen)
{
    PGconn *db = ctx->db;
    for (size_t i = 0; i < r->ndone; i++) {
        struct done_track *d = &r->done[i];
        if (d->jpeg == NULL)
            continue;
        char sha[65];
        int rc = dems_blob_put_mem(ctx->cfg->data_dir, ctx->master_key, d->jpeg, d->len, sha);
        if (rc < 0) {
            snprintf(err, errlen, "cannot store a face crop: %s", dems_strerror(rc));
            return rc;
        }
        /* The blob id replaces the pixels: only the id is needed from here. */
        free(d->jpeg);
        d->jpeg = (uint8_t *)strdup(sha);
        if (d->jpeg == NULL)
            return DEMS_ENOMEM;
    }
    if (!run_sql(db, "BEGIN", 0, NULL)) {
        snprintf(err, errlen, "database: %s", PQerrorMessage(db));
        return DEMS_EDB;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < r->ndone; i++) {
        struct done_track *d = &r->done[i];
        char t0[32], t1[32], nd[24], bt[32], sc[32], q[32], size[24], box[256];
        snprintf(t0, sizeof(t0), "%.3f", d->t->t_first);
        snprintf(t1, sizeof(t1), "%.3f", d->t->t_last);
        snprintf(nd, sizeof(nd), "%zu", d->t->detections);
        snprintf(bt, sizeof(bt), "%.3f", d->t->best.t);
        snprintf(sc, sizeof(sc), "%.4f", (double)d->t->best.score);
        snprintf(q, sizeof(q), "%.4f", d->t->best.quality);
        snprintf(size, sizeof(size), "%zu", d->len);
        snprintf(box, sizeof(box),
                 "{\"x\":%.1f,\"y\":%.1f,\"width\":%.1f,\"height\":%.1f,\"frame_width\":%d,"
                 "\"frame_height\":%d}",
                 d->t->best.box.x, d->t->best.box.y, d->t->best.box.width, d->t->best.box.height,
                 d->frame_w, d->frame_h);
        /* Descriptors: {"t": [...], "v": ["\\x...", ...]} */
        json_t *ts = json_array(), *vs = json_array();
        for (size_t j = 0; ts != NULL && vs != NULL && j < d->t->n_descriptors; j++) {
            char hex[1027];
            face_vec_text(d->t->descriptors[j], hex);
            json_array_append_new(ts, json_real(d->t->descriptor_t[j]));
            json_array_append_new(vs, json_string(hex));
        }
        char *tj = ts != NULL ? json_dumps(ts, JSON_COMPACT) : NULL;
        char *vj = vs != NULL ? json_dumps(vs, JSON_COMPACT) : NULL;
        json_decref(ts);
        json_decref(vs);
        const char *params[] = {
            id, t0, t1, nd, bt, box, sc, q, (const char *)d->jpeg, d->jpeg != NULL ? size : NULL,
            tj, vj};
        PGresult *res =
            tj != NULL && vj != NULL
                ? face_query(
                      db,
                      "WITH t AS (INSERT INTO face_tracks (artefact, t_first, t_last,"
                      " detections, best_t, best_box, score, quality, crop_blob, crop_size)"
                      " VALUES ($1, $2::float8, $3::float8, $4::integer, $5::float8,"
                      " $6::jsonb, $7::real, $8::real, $9, $10::integer) RETURNING id)"
                      " INSERT INTO face_descriptors (track_id, t, vec)"
                      " SELECT t.id, d.t, d.v::bytea FROM t,"
                      " unnest(ARRAY(SELECT jsonb_array_elements_text($11::jsonb))::float8[],"
                      "        ARRAY(SELECT jsonb_array_elements_text($12::jsonb))) AS d(t, v)",
                      12, params)
                : NULL;
        ok = res != NULL;
        PQclear(res);
        free(tj);
        free(vj);
        r->descriptors += d->t->n_descriptors;
    }
    if (!ok || !run_sql(db, "COMMIT", 0, NULL)) {
        snprintf(err, errlen, "database: cannot store the tracks: %s", PQerrorMessage(db));
        run_sql(db, "ROLLBACK", 0, NULL);
        return DEMS_EDB;
    }
    return 0;
}

/* The FACE_INDEXED entry, in the transaction that marks the artefact done. */
static int record(const struct dems_job_ctx *ctx, const char *id, const struct run *r,
                  const json_t *result, char *err, size_t errlen)
{
    char fps[32], dur[32];
    snprintf(fps, sizeof(fps), "%.6g", ctx->cfg->face_sample_fps);
    snprintf(dur, sizeof(dur), "%.3f", json_number_value(json_object_get(result, "duration")));
    struct dems_face_track_params tp;
    dems_face_track_params_init(&tp);
    char iou[16], dist[16], jump[16], gap[16];
    snprintf(iou, sizeof(iou), "%.3g", tp.iou_min);
    snprintf(dist, sizeof(dist), "%.3g", tp.max_distance);
    snprintf(jump, sizeof(jump), "%.3g", tp.jump_distance);
    snprintf(gap, sizeof(gap), "%.3g", tp.max_gap);
    json_t *params = json_pack(
        "{s:s,s:I,s:s,s:s,s:{s:s,s:s,s:s,s:s,s:I},s:{s:s,s:I,s:I}}", "fps", fps, "max_side",
        (json_int_t)ctx->cfg->face_max_side, "detector", "ssd_mobilenetv1", "min_score", "0.5",
        "tracks", "iou_min", iou, "max_distance", dist, "jump_distance", jump, "max_gap", gap,
        "max_descriptors", (json_int_t)tp.max_descriptors, "crops", "margin", "0.25", "max_side",
        (json_int_t)CROP_SIDE, "quality", (json_int_t)CROP_QUALITY);
    json_t *payload = json_pack(
        "{s:o,s:O,s:{s:I,s:I,s:I,s:I},s:s}", "engine", face_engine_json(), "params", params,
        "counts", "frames", (json_int_t)r->frames, "detections", (json_int_t)r->detections,
        "tracks", (json_int_t)r->ndone, "descriptors", (json_int_t)r->descriptors, "duration", dur);
    char *params_text = params != NULL ? json_dumps(params, JSON_COMPACT) : NULL;
    json_decref(params);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_FACE_INDEXED, DEMS_LEDGER_ACTOR_SYSTEM, "face-index");
    char frames[24], dets[24], tracks[24];
    snprintf(frames, sizeof(frames), "%llu", (unsigned long long)r->frames);
    snprintf(dets, sizeof(dets), "%llu", (unsigned long long)r->detections);
    snprintf(tracks, sizeof(tracks), "%zu", r->ndone);
    bool ok = it != NULL && payload != NULL && params_text != NULL;
    if (ok) {
        it->has_artefact = true;
        dems_hex_decode(id, 64, it->artefact, 32);
        it->payload = payload;
        payload = NULL;
        it->pre_sql = strdup("UPDATE face_index SET state = 'done', error = NULL,"
                             " frames = $2::integer, detections = $3::integer,"
                             " tracks = $4::integer, duration = $5::float8, params = $6::jsonb,"
                             " ledger_seq = $7::bigint, finished_at = now()"
                             " WHERE artefact = $1 AND state = 'queued'");
        it->pre_nparams = 6;
        const char *pp[] = {id, frames, dets, tracks, dur, params_text};
        for (int i = 0; i < 6; i++)
            ok = ok && (it->pre_params[i] = strdup(pp[i])) != NULL;
        it->pre_must_change = true;
        it->pre_seq = true;
        ok = ok && it->pre_sql != NULL;
    }
    free(params_text);
    json_decref(payload);
    if (!ok) {
        dems_ledger_item_free(it);
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    uint64_t seq;
    int rc = dems_job_ledger_append(it, &seq);
    if (rc == DEMS_ENOTFOUND)
        return 0; /* another run recorded it first */
    if (rc < 0)
        snprintf(err, errlen, "cannot record the indexing in the ledger: %s", dems_strerror(rc));
    return rc;
}

/*
 * One line with the counts and where the time went (seconds; docs/face-search.md):
 * read = waiting for frames (decryption, the sampler's start and decoding
 * beyond what overlapped with the networks), sampler_cpu = CPU of the
 * reaped media children (the sampler and its sandbox: decode and scale).
 */
static void log_done(const char *id, const struct run *r, const json_t *result, double wall,
                     double sampler_cpu)
{
    double dur = json_number_value(json_object_get(result, "duration"));
    json_t *f = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}",
                          "event", "face_indexed", "artefact", id, "frames", (json_int_t)r->frames,
                          "detections", (json_int_t)r->detections, "tracks", (json_int_t)r->ndone,
                          "descriptors", (json_int_t)r->descriptors, "duration", dur, "wall_s",
                          wall, "read_s", r->t_read, "detect_s", r->t_detect, "landmarks_s",
                          r->t_landmarks, "describe_s", r->t_describe, "track_s", r->t_track,
                          "crop_s", r->t_crop, "store_s", r->t_store, "sampler_cpu_s", sampler_cpu);
    dems_log(DEMS_LOG_INFO, NULL, f,
             "face indexing of %s: %llu frames, %zu tracks in %.1f s (%.1fx real time)", id,
             (unsigned long long)r->frames, r->ndone, wall, wall > 0 ? dur / wall : 0.0);
}

enum dems_job_result dems_job_face_index(const struct dems_job *job, struct dems_job_ctx *ctx,
                                         char *err, size_t errlen)
{
    if (dems_job_verify_blob_check(job->payload, err, errlen) < 0)
        return DEMS_JOB_FAIL;
    const char *id = json_string_value(json_object_get(job->payload, "evidence"));
    const char *params[] = {id};
    PGresult *res =
        face_query(ctx->db,
                   "SELECT fi.state, a.disposed_at IS NOT NULL AS disposed FROM face_index"
                   " fi JOIN artefacts a ON a.id = fi.artefact WHERE fi.artefact = $1",
                   1, params);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot look up %s", id);
        return DEMS_JOB_RETRY;
    }
    bool found = PQntuples(res) == 1;
    char state[16] = "";
    bool disposed = found && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    if (found)
        snprintf(state, sizeof(state), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!found) {
        snprintf(err, errlen, "evidence %s is not queued for face indexing", id);
        return DEMS_JOB_FAIL;
    }
    if (strcmp(state, "queued") != 0)
        return DEMS_JOB_OK; /* done (or refused) by an earlier run */
    if (disposed) {
        set_state(ctx->db, id, "skipped", "the evidence was disposed of");
        return DEMS_JOB_OK;
    }
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    struct dems_face_ctx *fc = face_ctx(ctx->cfg, err, errlen);
    if (fc == NULL)
        return DEMS_JOB_RETRY;
    /* What an interrupted earlier attempt stored. */
    if (!run_sql(ctx->db, "DELETE FROM face_tracks WHERE artefact = $1", 1, params)) {
        snprintf(err, errlen, "database: %s", PQerrorMessage(ctx->db));
        return DEMS_JOB_RETRY;
    }
    struct run r = {0};
    struct dems_face *faces = malloc(FACE_MAX_PER_FRAME * sizeof(*faces));
    if (faces == NULL || dems_face_tracker_new(NULL, &r.tr) < 0) {
        free(faces);
        snprintf(err, errlen, "out of memory");
        return DEMS_JOB_RETRY;
    }
    char tag[48];
    snprintf(tag, sizeof(tag), "face-%lld", (long long)job->id);
    double started = mono(), cpu0 = children_cpu();
    struct face_frames fr;
    int rc = face_frames_start(ctx, id, tag, ctx->cfg->face_sample_fps, &fr, err, errlen);
    if (rc < 0) {
        free(faces);
        run_free(&r);
        return DEMS_JOB_RETRY;
    }
    char ferr[256] = "";
    double t0 = mono();
    r.t_read = t0 - started; /* decrypting the input and starting the sampler */
    while ((rc = face_frames_next(&fr, ctx, ferr, sizeof(ferr))) == 1) {
        double t1 = mono();
        r.t_read += t1 - t0;
        rc = frame(&r, fc, &fr.frame, faces, ferr, sizeof(ferr));
        if (rc < 0)
            break;
        t0 = mono();
    }
    json_t *result = NULL;
    struct dems_media_error me;
    int mr = face_frames_finish(&fr, ctx, &result, &me);
    double sampler_cpu = children_cpu() - cpu0;
    bool stopping = rc == DEMS_EUNAVAIL || mr == DEMS_EUNAVAIL;
    free(faces);
    enum dems_job_result out = DEMS_JOB_RETRY;
    if (stopping) {
        snprintf(err, errlen, "the worker stopped during face indexing");
        out = DEMS_JOB_RELEASE;
    } else if (mr < 0) {
        snprintf(err, errlen, "%s: %s", dems_media_code_str(me.code), me.message);
        if (me.code == DEMS_MEDIA_INVALID || me.code == DEMS_MEDIA_UNSUPPORTED ||
            me.code == DEMS_MEDIA_TOO_LARGE || me.code == DEMS_MEDIA_SECCOMP) {
            /* The same bytes would fail the same way. */
            set_state(ctx->db, id, me.code == DEMS_MEDIA_UNSUPPORTED ? "skipped" : "failed", err);
            out = DEMS_JOB_FAIL;
        }
    } else if (rc < 0) {
        /* The sampler finished but its stream was bad, or tracking failed. */
        snprintf(err, errlen, "%s", ferr);
        set_state(ctx->db, id, "failed", err);
        out = DEMS_JOB_FAIL;
    } else if (dems_face_tracker_finish(r.tr) < 0 || collect(&r) < 0) {
        snprintf(err, errlen, "out of memory");
    } else {
        double t1 = mono();
        if (store(ctx, id, &r, err, errlen) == 0 && record(ctx, id, &r, result, err, errlen) == 0)
            out = DEMS_JOB_OK;
        r.t_store = mono() - t1;
    }
    if (out == DEMS_JOB_OK)
        log_done(id, &r, result, mono() - started, sampler_cpu);
    json_decref(result);
    run_free(&r);
    return out;
}
