/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upload staging: the bytes of resumable uploads, encrypted as they arrive
 * into one blob-format file per upload under data_dir/staging (64 KiB
 * secretstream chunks under a per-upload key wrapped by the master key),
 * with the running SHA-256 of everything received. The last partial chunk
 * (under 64 KiB) is held in memory until it fills or the upload completes;
 * completing seals it, fsyncs, and the file becomes the evidence blob by a
 * rename (dems_blob_adopt). A process-wide registry (mutex-protected) holds
 * the open file, hash and stream state of each active upload, so a PATCH on
 * any loop thread continues where the last one stopped. After a restart an
 * upload's state is rebuilt by decrypting and re-hashing its whole chunks
 * (the in-memory tail of a crashed process is lost, so the offset may step
 * back by less than 64 KiB, which tus allows: clients HEAD and resend); that
 * runs on the work pool, never on a loop.
 */
#ifndef DEMSD_STORE_H
#define DEMSD_STORE_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/crypto.h"

struct dems_staged {
    char id[33];
    int fd;
    uint64_t offset;        /* plaintext bytes received (file chunks + tail) */
    uint64_t length;        /* declared Upload-Length */
    struct dems_sha256 sha; /* of everything received */
    bool busy;              /* a PATCH is writing */
    bool broken;            /* a write failed: forgotten on release, reloaded from disk */
    bool sealed;            /* the FINAL chunk is written */
    crypto_secretstream_xchacha20poly1305_state st; /* push state after the file's chunks */
    uint64_t file_len;  /* bytes of the file: written (disk_len) and buffered (pend) */
    uint64_t disk_len;  /* bytes written to the file */
    uint64_t synced_to; /* writeback started up to here */
    uint8_t *pend;      /* cipher bytes not yet written (page-aligned writes) */
    size_t pend_len;
    uint8_t *tail;   /* DEMS_BLOB_CHUNK bytes: received, not yet encrypted */
    size_t tail_len; /* < DEMS_BLOB_CHUNK */
    struct dems_staged *next;
};

/* A saved position, to cut a rejected chunk (Upload-Checksum) back off. */
struct dems_staging_mark {
    uint64_t offset, file_len;
    bool sealed;
    crypto_secretstream_xchacha20poly1305_state st;
    uint8_t *tail;
    size_t tail_len;
    struct dems_sha256 sha;
};

/*
 * Sets the staging directory (created if missing) and the master key that
 * wraps each upload's key (borrowed; must outlive staging). Call once.
 */
int dems_staging_init(const char *data_dir, const uint8_t master_key[static 32]);

/* Creates a staging file (a blob head, no chunks) for a new upload. */
int dems_staging_create(const char *id);

/*
 * Finds an upload's state and marks it busy. Returns 0, DEMS_ENOTFOUND
 * (not loaded: call dems_staging_load on the work pool first) or
 * DEMS_ECONFLICT (another PATCH is writing it).
 */
int dems_staging_acquire(const char *id, struct dems_staged **ret);

/*
 * Slow (reads the whole staged prefix): opens the staging file, decrypts
 * and hashes its whole chunks and registers the state with length. Work
 * pool only. Returns 0, DEMS_ENOTFOUND (no staging file), DEMS_ECRYPTO (a
 * file that does not open with the master key) or DEMS_EIO.
 */
int dems_staging_load(const char *id, uint64_t length);

/*
 * Takes n more bytes (n ≤ length − offset): hashed, and encrypted to the
 * file a whole chunk at a time. Returns 0 or DEMS_EIO (then the state is
 * marked broken and is reloaded from the file after release).
 */
int dems_staging_write(struct dems_staged *s, const uint8_t *data, size_t n);

/*
 * Saves s's position in m (free with dems_staging_mark_done), writing
 * buffered chunks first. 0, DEMS_EIO or DEMS_ENOMEM.
 */
int dems_staging_mark(struct dems_staged *s, struct dems_staging_mark *m);

/* Goes back to m: cuts the file and restores hash, stream and tail. */
int dems_staging_rollback(struct dems_staged *s, const struct dems_staging_mark *m);
void dems_staging_mark_done(struct dems_staging_mark *m);

/* Clears busy (and forgets a broken state). */
void dems_staging_release(struct dems_staged *s);

/*
 * Once offset == length: seals the last chunk (FINAL), fsyncs the file
 * (slow: work pool) and returns the SHA-256 of the plaintext. The file is
 * then a complete blob, for dems_blob_adopt.
 */
int dems_staging_finish(struct dems_staged *s, uint8_t digest[static 32]);

/* Unregisters an upload and closes its file, keeping the file (complete). */
void dems_staging_close(const char *id);

/* Drops an upload: unregisters it and deletes its staging file. */
void dems_staging_remove(const char *id);

/* The staging file's path for upload id. */
void dems_staging_path(const char *id, char *out, size_t len);

/* True when upload id's state is registered (loaded). */
bool dems_staging_loaded(const char *id);

/* Bytes received for a loaded upload, or -1 when it is not loaded. */
int64_t dems_staging_size(const char *id);

/* Closes and forgets every registered upload (shutdown). */
void dems_staging_done(void);

#endif
