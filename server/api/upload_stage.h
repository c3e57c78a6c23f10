/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tus uploads staged in an object store, across nodes (upload_stage.c):
 * the claim a request takes on an upload, the parts it stages as bytes
 * arrive, and the state it commits to the database so that the next
 * request may be served by any node.
 */
#ifndef DEMSD_UPLOAD_STAGE_H
#define DEMSD_UPLOAD_STAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "demsd/http.h"
#include "demsd/store.h"

typedef void (*upload_stage_cb)(struct dems_req *req, int err);

/* A part on its way to the store. */
struct upload_part {
    uint32_t part;
    uint64_t from, to; /* its bytes in the file */
    unsigned number;
    int err;
    bool done;        /* staged, waiting for the parts before it */
    char handle[512]; /* the stage it goes to ("": its job begins it) */
    char tag[128];
};

/* Per request (inside the uploads handler's own state). */
struct upload_stage {
    char id[33];
    uint64_t length;
    uint64_t gen;                /* this request's claim */
    uint64_t loaded_ver;         /* the committed version it started from */
    char handle[512];            /* the store's stage (S3 UploadId, Azure nonce); "" none yet */
    bool checksummed;            /* Upload-Checksum: nothing is committed before the end */
    bool ending;                 /* the request's end waits for its last part */
    unsigned uploading;          /* parts on their way to the store (at most 2) */
    bool recording;              /* a staged part's record is on its way to the database */
    bool paused;                 /* reading waits for them */
    bool failed;                 /* answered with an error: nothing more is done */
    bool rec_commit;             /* that record commits the state where the part ends */
    uint32_t rec_part;           /* the part being recorded */
    uint32_t staged_upto;        /* parts staged in the store, in order (recorded: state's parts) */
    uint32_t launched_upto;      /* parts sent on their way */
    struct dems_staged **staged; /* the request's acquired state (borrowed) */
    upload_stage_cb cb;
    unsigned res_next, res_end; /* part numbers the claim reserved: [next, end] */
    struct upload_part slot[2]; /* the parts launched and not yet recorded, by part % 2 */
    /* Work-pool results. */
    int err;
    uint8_t *sealed;
    size_t sealed_len;
};

/*
 * Claims upload us->id (length bytes) for req and acquires its state into
 * *staged, loading the committed one from the store when this node does not
 * hold it: then cb(req, 0). offset and body (0: unknown) are the request's
 * Upload-Offset and body length: the part numbers for the parts it will
 * fill are reserved with the claim, so no part waits for one. Failures are answered here (409
 * upload_busy, 404, 503 store_unavailable, ...) and reported as cb(req, error).
 */
void upload_stage_claim(struct dems_req *req, struct upload_stage *us, uint64_t offset,
                        uint64_t body, struct dems_staged **staged, upload_stage_cb cb);

/*
 * After bytes were written to the state: 0 to read on, DEMS_EAGAIN when
 * whole parts are being staged (reading pauses and resumes by itself; a
 * failure is answered), or a write error.
 */
int upload_stage_after_write(struct dems_req *req, struct upload_stage *us);

/*
 * At the end of a request: stores what is past the last part and commits
 * the state, then cb(req, 0); or cb(req, error) unanswered: DEMS_ECONFLICT
 * (another request took the upload over), a store or database error.
 */
void upload_stage_commit(struct dems_req *req, struct upload_stage *us, upload_stage_cb cb);

/* Answers a failed claim, part or commit: upload_taken_over, store_unavailable, ... */
void upload_stage_answer(struct dems_req *req, int err);

/* Removes an upload's staged objects (terminated, expired, rejected): work pool, best effort. */
void upload_stage_drop(struct dems_loop *loop, const char *id, uint64_t ver, const char *handle);

/* Removes just the tail object of version ver (the stage was committed). */
void upload_stage_drop_tail(struct dems_loop *loop, const char *id, uint64_t ver);

/* Decodes a bytea in hex output format ("\\x...") into a new buffer. */
int upload_stage_unhex(const char *s, uint8_t **ret, size_t *ret_len);

#endif
