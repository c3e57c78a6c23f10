/*
 * Upload staging: the bytes of resumable uploads, appended to one file per
 * upload under data_dir/staging, with the running SHA-256 of everything
 * stored so far. A process-wide registry (mutex-protected) holds the open
 * file and hash state of each active upload, so a PATCH on any loop thread
 * continues where the last one stopped. After a restart an upload's state is
 * rebuilt by re-hashing its staged prefix (the file's length is the offset);
 * that runs on the work pool, never on a loop.
 */
#ifndef DEMSD_STORE_H
#define DEMSD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/crypto.h"

struct dems_staged {
    char id[33];
    int fd;
    uint64_t offset;        /* bytes stored (the staging file's length) */
    uint64_t length;        /* declared Upload-Length */
    struct dems_sha256 sha; /* of everything stored so far */
    bool busy;              /* a PATCH is writing */
    struct dems_staged *next;
};

/* Sets the staging directory (created if missing). Call once at start. */
int dems_staging_init(const char *data_dir);

/* Creates an empty staging file for a new upload. */
int dems_staging_create(const char *id);

/*
 * Finds an upload's state and marks it busy. Returns 0, DEMS_ENOTFOUND
 * (not loaded: call dems_staging_load on the work pool first) or
 * DEMS_ECONFLICT (another PATCH is writing it).
 */
int dems_staging_acquire(const char *id, struct dems_staged **ret);

/*
 * Slow (reads the whole staged prefix): opens the staging file, hashes it
 * and registers the state with length. Work pool only. Returns 0,
 * DEMS_ENOTFOUND (no staging file) or DEMS_EIO.
 */
int dems_staging_load(const char *id, uint64_t length);

/* Appends n bytes and updates offset and hash. Returns 0 or DEMS_EIO. */
int dems_staging_write(struct dems_staged *s, const uint8_t *data, size_t n);

/* Cuts the file back to offset (a rejected chunk); hash rebuilt by caller. */
int dems_staging_truncate(struct dems_staged *s, uint64_t offset, const struct dems_sha256 *sha);

/* Clears busy. */
void dems_staging_release(struct dems_staged *s);

/* fsyncs the file (slow: work pool) and returns the final SHA-256. */
int dems_staging_finish(struct dems_staged *s, uint8_t digest[static 32]);

/* Unregisters an upload and closes its file, keeping the file (complete). */
void dems_staging_close(const char *id);

/* Drops an upload: unregisters it and deletes its staging file. */
void dems_staging_remove(const char *id);

/* The staging file's path for upload id. */
void dems_staging_path(const char *id, char *out, size_t len);

/* The staging file's length, or -1 when it does not exist. */
int64_t dems_staging_size(const char *id);

/* Closes and forgets every registered upload (shutdown). */
void dems_staging_done(void);

#endif
