/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading a stored ZIP archive in the sandbox, for the jobs that take its
 * members (server/jobs/unpack_read.c): the unpack job (members become
 * evidence) and the face-import job (members become gallery subjects).
 *
 *   struct unpack_run u;
 *   unpack_open(&u, ctx, sha256, size, "unpack", err, errlen);  work dir + decrypted copy
 *   unpack_read(&u, &summary, &me, &released);                   the sandboxed reader
 *   ... u.members[0..n): extracted ones sealed in unpack_member_path() ...
 *   unpack_close(&u);                                            removes the work dir
 *
 * Members arrive checked (order, names, sizes, the configured bounds); each
 * extracted one is hashed and sealed (dems_blob_out) into the work directory,
 * ready for dems_blob_adopt. Nothing is recorded here.
 */
#ifndef DEMSD_UNPACK_INT_H
#define DEMSD_UNPACK_INT_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/media.h"
#include "dems/sniff.h"
#include "dems/unpack.h"
#include "demsd/jobs.h"

/* One member as the frames gave it. */
struct unpack_member {
    uint32_t index;
    char *path;                      /* extracted: its checked name; skipped: printable */
    enum dems_unpack_reason skipped; /* 0: extracted */
    char *detail;                    /* skipped: printable */
    char sha[65];
    uint64_t size;
    struct dems_sniffed what; /* extracted: its first bytes */
};

struct dems_blob_out;

struct unpack_run {
    const struct dems_job_ctx *ctx;
    const char *id; /* the archive */
    char dir[PATH_MAX - 64];
    char archive[PATH_MAX];
    uint64_t archive_size;
    struct dems_unpack_limits lim;
    uint64_t budget; /* bytes the members may take: min(total, ratio x size) */
    /* The frames. */
    uint8_t *frame; /* DEMS_UNPACK_FRAME_HEAD + DEMS_UNPACK_FRAME_MAX */
    size_t have;
    enum dems_unpack_frame type;
    uint32_t len;
    bool broken; /* a frame broke the rules: the reader is not to be trusted */
    bool local;  /* or storing a member failed here (a full disk): try again later */
    bool cut;    /* the frames ended inside a frame or a member */
    char why[256];
    /* The member being received. */
    struct dems_blob_out *out;
    struct unpack_member cur;
    uint8_t head[DEMS_SNIFF_HEAD];
    size_t head_len;
    /* Every member so far. */
    struct unpack_member *members;
    size_t n, cap;
    uint64_t bytes; /* received, all members */
    bool seen_any;
    uint32_t last_index;
};

/*
 * Sets the bounds from the configuration, creates the work directory
 * DATA/work/<tag>-<id> (0700; what a crashed earlier run left is removed)
 * and decrypts the archive into it. 0, or an error with err set; call
 * unpack_close in either case.
 */
int unpack_open(struct unpack_run *u, const struct dems_job_ctx *ctx, const char *id,
                uint64_t archive_size, const char *tag, char *err, size_t errlen);

/*
 * Runs the sandboxed reader and takes its frames as they come: 0 with its
 * summary, or a media error (me) from the runner, or DEMS_EINTERNAL with me
 * filled when it could not run or answer. *ret_released when the worker is
 * stopping; u->broken when a frame broke the rules (the reader was killed),
 * u->local when the failure was this machine's (retry later).
 */
int unpack_read(struct unpack_run *u, json_t **ret, struct dems_media_error *me,
                bool *ret_released);

/* Where an extracted member's sealed blob is. */
void unpack_member_path(const struct unpack_run *u, uint32_t index, char out[static PATH_MAX + 32]);

/* Frees the members and removes the work directory. */
void unpack_close(struct unpack_run *u);

#endif
