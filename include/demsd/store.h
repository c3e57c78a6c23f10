/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upload staging: the bytes of resumable uploads, encrypted as they arrive
 * into one blob-format file per upload under data_dir/staging (64 KiB
 * secretstream chunks under a per-upload key wrapped by the master key),
 * with the running SHA-256 of everything received. The last partial chunk
 * (under 64 KiB) is held in memory until it fills or the upload completes;
 * completing seals it, fsyncs, and the file becomes the evidence blob by a
 * rename (dems_blob_adopt). A process-wide registry (mutex-protected hash
 * table) holds the hash and stream state and the unfilled last chunk of
 * each active upload, so a PATCH on any loop thread continues where the last
 * one stopped; its file is open only while a request holds it (acquire ..
 * release), so unfinished uploads hold no file descriptors. After a restart an
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
    int fd;                 /* open only while acquired (parked: -1) */
    uint64_t offset;        /* plaintext bytes received (file chunks + tail) */
    uint64_t length;        /* declared Upload-Length */
    struct dems_sha256 sha; /* of everything received */
    bool busy;              /* acquired by a request (or the recorder) */
    bool broken;            /* a write failed: forgotten on release, reloaded from disk */
    bool doomed;            /* closed or removed while busy: freed on release */
    bool sealed;            /* the FINAL chunk is written (or buffered in pend) */
    crypto_secretstream_xchacha20poly1305_state st; /* push state after the file's chunks */
    uint64_t file_len;  /* bytes of the file: written (disk_len) and buffered (pend) */
    uint64_t disk_len;  /* bytes written to the file */
    uint64_t synced_to; /* writeback started up to here */
    uint8_t *pend;      /* cipher bytes not yet written (page-aligned writes); NULL when parked */
    size_t pend_len;
    uint8_t *tail;   /* received, not yet encrypted: DEMS_BLOB_CHUNK bytes while acquired, */
    size_t tail_len; /* exactly tail_len (or NULL) when parked; < DEMS_BLOB_CHUNK */
    struct dems_staged *next;
};

/* A saved position, to cut a chunk back off (Upload-Checksum, a full disk). */
struct dems_staging_mark {
    uint64_t offset, file_len;
    bool sealed;
    bool is_set;
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

/*
 * Creates a staging file (a blob head, no chunks) for a new upload of
 * length bytes and registers its (parked) state. Returns 0, DEMS_ENOSPC,
 * DEMS_EIO or DEMS_ENOMEM.
 */
int dems_staging_create(const char *id, uint64_t length);

/*
 * Finds an upload's state, marks it busy and opens its file (held until
 * dems_staging_release). Returns 0, DEMS_ENOTFOUND (not loaded: call
 * dems_staging_load on the work pool first), DEMS_ECONFLICT (another
 * request holds it, or it is going), DEMS_EIO (its file is gone) or
 * DEMS_ENOMEM.
 */
int dems_staging_acquire(const char *id, struct dems_staged **ret);

/*
 * Slow (reads the whole staged prefix): opens the staging file, decrypts
 * and hashes its whole chunks and registers the (parked) state with
 * length. A file that ends with the FINAL chunk is loaded sealed, with all
 * length bytes. Work pool only. Returns 0, DEMS_ENOTFOUND (no staging
 * file), DEMS_ECRYPTO (a file that does not open with the master key, or
 * not this upload's) or DEMS_EIO.
 */
int dems_staging_load(const char *id, uint64_t length);

/*
 * Takes n more bytes (n ≤ length − offset): hashed, and encrypted to the
 * file a whole chunk at a time. Returns 0, DEMS_ENOSPC (the volume is full)
 * or DEMS_EIO; then the state is marked broken: roll back to a mark (or it
 * is reloaded from the file after release).
 */
int dems_staging_write(struct dems_staged *s, const uint8_t *data, size_t n);

/* Writes every buffered cipher byte to the file: 0, DEMS_ENOSPC or DEMS_EIO. */
int dems_staging_flush(struct dems_staged *s);

/*
 * Once offset == length: encrypts the last chunk as FINAL (if not yet) and
 * writes everything buffered. 0, DEMS_ENOSPC or DEMS_EIO.
 */
int dems_staging_seal(struct dems_staged *s);

/*
 * Saves s's position in m (free with dems_staging_mark_done), writing
 * buffered chunks first. 0, DEMS_ENOSPC, DEMS_EIO or DEMS_ENOMEM.
 */
int dems_staging_mark(struct dems_staged *s, struct dems_staging_mark *m);

/*
 * Goes back to m: cuts the file and restores hash, stream and tail, and
 * clears broken. 0, or DEMS_EIO (then s stays broken).
 */
int dems_staging_rollback(struct dems_staged *s, const struct dems_staging_mark *m);
void dems_staging_mark_done(struct dems_staging_mark *m);

/*
 * Writes what is buffered, closes the file and clears busy (parks the
 * state); a broken state is forgotten (reloaded from the file next time),
 * and one closed or removed meanwhile is freed.
 */
void dems_staging_release(struct dems_staged *s);

/*
 * Once offset == length: seals the last chunk (FINAL) if not yet, fsyncs
 * the file (slow: work pool) and returns the SHA-256 of the plaintext
 * (again on a second call). The file is then a complete blob, for
 * dems_blob_adopt. 0, DEMS_ENOSPC or DEMS_EIO.
 */
int dems_staging_finish(struct dems_staged *s, uint8_t digest[static 32]);

/* Unregisters an upload, keeping its file (complete). Deferred while busy. */
void dems_staging_close(const char *id);

/* Drops an upload: unregisters it and deletes its staging file. */
void dems_staging_remove(const char *id);

/* The staging file's path for upload id. */
void dems_staging_path(const char *id, char *out, size_t len);

/* True when upload id's staging file exists. */
bool dems_staging_exists(const char *id);

/* True when upload id's state is registered (loaded). */
bool dems_staging_loaded(const char *id);

/* True when a request (or a completion) holds upload id. */
bool dems_staging_busy(const char *id);

/* Bytes received for a loaded upload, or -1 when it is not loaded. */
int64_t dems_staging_size(const char *id);

/*
 * Up to max registered uploads that hold all their bytes and no request is
 * writing (their completion did not finish: the recorder retries them).
 */
size_t dems_staging_list_full(char (*ids)[33], size_t max);

/* The size of a staging file holding all length bytes, sealed. */
uint64_t dems_staging_expected_size(uint64_t length);

/*
 * Bytes an unprivileged writer may still use on the data volume: the least
 * of data_dir, data_dir/staging and data_dir/blobs (which may be other
 * volumes). Blocking (statvfs), but cheap. 0 or DEMS_EIO. For /readyz's
 * free-space floor.
 */
int dems_store_free_bytes(const char *data_dir, uint64_t *ret_bytes);

/* Closes and forgets every registered upload (shutdown). */
void dems_staging_done(void);

#endif
