/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the face jobs (face_index.c, face_enrol.c, face_search.c) share:
 * the networks (loaded once per worker process) and a face context per slot
 * thread, pictures decoded in the media sandbox, descriptors as stored in
 * PostgreSQL, and the vector caches (face_cache.c).
 */
#ifndef DEMSD_FACE_INT_H
#define DEMSD_FACE_INT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dems/face.h"
#include "dems/ledger.h"
#include "dems/media.h"
#include "demsd/jobs.h"

/* Detections kept per frame at most. */
#define FACE_MAX_PER_FRAME 64

/*
 * This slot thread's face context over the process's models (loaded on
 * first use from cfg->face_models or the usual places). NULL with err set
 * when the models cannot be found or loaded (the job is retried: an
 * operator can install them).
 */
struct dems_face_ctx *face_ctx(const struct dems_config *cfg, char *err, size_t errlen);

/* {"file": sha256, ...} of the model files and the engine's identity, for ledger entries. */
json_t *face_engine_json(void);

/* Detector options every job uses (SSD, face-api's defaults). */
void face_opts(struct dems_face_opts *o);

/*
 * Detects the faces of img (faces: room for FACE_MAX_PER_FRAME), computes
 * landmarks and descriptors, and copies the best-quality one to *best with
 * its quality (dems_face_track_quality). *ret_n: the usable faces found.
 * 0 or the engine's error. (face_enrol.c; the search's image probes too.)
 */
int face_best_face(struct dems_face_ctx *fc, const struct dems_face_image *img,
                   struct dems_face *faces, size_t *ret_n, struct dems_face *best,
                   double *ret_quality);

/* ---- pictures from the media sandbox ---- */

/*
 * A running `demsd media-frames` over one decrypted input: frames arrive on
 * fd as the sandboxed child decodes them (server/cli/media.c).
 */
struct face_frames {
    pid_t pid;
    int frames_fd;
    int answer_fd;
    double deadline;
    uint32_t max_side;
    struct dems_media_frame frame;
    char work[4096]; /* the work directory holding the decrypted input */
    char input[4200];
};

/*
 * Decrypts blob id into a private work directory (named after tag) and
 * starts the sandboxed frame sampler on it at fps (0: a still, one frame).
 * Returns 0, or a negative DEMS_E* with one line in err.
 */
int face_frames_start(const struct dems_job_ctx *ctx, const char *id, const char *tag, double fps,
                      struct face_frames *fr, char *err, size_t errlen);

/* The next frame (1), the end (0) or a failure (< 0, err set). */
int face_frames_next(struct face_frames *fr, const struct dems_job_ctx *ctx, char *err,
                     size_t errlen);

/*
 * Ends the sampler (dems_media_runner_finish): reads its answer and reaps
 * it, removes the work directory. Returns 0 and *ret_result (owned, when
 * not NULL) when the sampler finished; DEMS_EUNAVAIL when the worker is
 * stopping; or the failure with me filled (me->code says whether the media
 * was bad).
 */
int face_frames_finish(struct face_frames *fr, const struct dems_job_ctx *ctx, json_t **ret_result,
                       struct dems_media_error *me);

/* An RGB frame as the face engine takes it. */
void face_image_of(const struct dems_media_frame *f, struct dems_face_image *img);

/* Runs one statement on the slot's connection: its result (PQclear it) or NULL on failure. */
PGresult *face_query(PGconn *db, const char *sql, int n, const char *const *params);

/*
 * A ledger item of type by actor with its payload (taken, also on failure)
 * and its pre-statement sql with n parameters (copied; a NULL stays NULL).
 * NULL when out of memory.
 */
struct dems_ledger_item *face_item(enum dems_ledger_type type, enum dems_ledger_actor kind,
                                   const char *actor, json_t *payload, const char *sql, int n,
                                   const char *const *params);

/* ---- descriptors as stored (bytea of 128 little-endian float32) ---- */

/* Writes d as "\\x..." hex bytea text (1027 bytes with the NUL). */
void face_vec_text(const float d[static DEMS_FACE_DESCRIPTOR], char out[static 1027]);

/* Parses a bytea column (hex output) into d; false when it is not 512 bytes. */
bool face_vec_parse(const char *text, float d[static DEMS_FACE_DESCRIPTOR]);

/* Score of a distance: 1 - d, at least 0. */
double face_score(double distance);

/* ---- the vector caches (face_cache.c) ---- */

enum face_cache_kind {
    FACE_CACHE_FOOTAGE, /* track descriptors; owner = face_index.n of the artefact */
    FACE_CACHE_GALLERY, /* subject descriptors; owner = the gallery id */
};

/*
 * Brings this process's cache of kind up to date with PostgreSQL (loading
 * its file under data_dir/face/ first, or rebuilding it when the file is
 * missing, damaged or belongs to another database) and runs fn with the
 * index and the label-to-owner map, under the cache's lock. Returns fn's
 * result, or a negative DEMS_E* with err set.
 */
struct dems_vector_index;
typedef int (*face_cache_fn)(struct dems_vector_index *index, const uint32_t *owner, size_t nowner,
                             void *arg);
int face_cache_use(const struct dems_job_ctx *ctx, enum face_cache_kind kind, face_cache_fn fn,
                   void *arg, char *err, size_t errlen);

/* Drops this process's caches (tests, shutdown). */
void face_cache_reset(void);

#endif
