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

struct dems_sstream;

#define DEMS_STAGING_SNAPS 4

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
    uint8_t *tail;          /* received, not yet encrypted (< DEMS_BLOB_CHUNK when parked, */
    size_t tail_len;        /* more while a request takes bytes ahead of its pipeline) */
    size_t tail_cap;        /* tail's allocation: at least DEMS_BLOB_CHUNK while acquired, */
                            /* exactly tail_len when parked */
    size_t tail_hashed;     /* the tail's first bytes already in sha (all of it, but while */
                            /* a pipelined request reads: see below) */
    struct dems_sstream *x; /* OpenSSL's ChaCha20-Poly1305 while acquired (dems/sstream.h) */
    /*
     * The pipeline (dems_staging_take): whole chunks handed to another
     * thread to hash, encrypt and write while the loop reads on. While
     * in_flight, that thread owns the hash and stream state, the file and
     * the write buffer (and sealed, broken); the loop owns offset and tail.
     */
    uint8_t *batch;
    size_t batch_len, batch_cap;
    uint64_t batch_at;   /* plaintext offset of the batch's first byte */
    size_t batch_hashed; /* its first bytes already in sha */
    bool in_flight;
    int batch_err;
    /*
     * Staged in an object store (dems_staging_set_remote): the local file is
     * a window on the blob file being written. Its first `parts` parts
     * (part_chunks cipher chunks each, the first with the head too) are
     * staged in the store and punched out of the local file; the rest is
     * here until it makes a part. ver names the state committed to the
     * database that this one continues (see staging_remote.c).
     */
    uint64_t ver;              /* 0: nothing committed yet */
    uint64_t committed_offset; /* offset of that committed state */
    uint32_t part_chunks;
    uint32_t parts;
    int64_t used_at; /* monotonic seconds of its last release */
    /* The states where the last parts end (by part % DEMS_STAGING_SNAPS),
     * to commit at those boundaries once the parts are staged. */
    struct dems_staging_snap {
        bool set;
        uint32_t part;
        uint64_t offset;
        crypto_secretstream_xchacha20poly1305_state st;
        uint8_t sha[DEMS_SHA256_STATE_LEN];
    } snap[DEMS_STAGING_SNAPS];
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

/*
 * The pipelined form of dems_staging_write, for a request reading a body on
 * a loop while whole chunks are hashed, encrypted and written on the work
 * pool (server/api/uploads.c drives it; docs/architecture.md, "Intake on
 * two cores"):
 *
 *   take      (loop) copies n bytes into the tail and counts them received;
 *             nothing is hashed or written. 0, DEMS_EIO (past the length,
 *             or broken) or DEMS_ENOMEM.
 *   batch_ready (loop) true when nothing is in flight and the tail holds
 *             DEMS_STAGING_BATCH bytes or more (whole chunks are sent; a
 *             hand-off costs two thread wake-ups, so not one per chunk).
 *   batch_begin (loop) moves the tail's whole chunks into the batch and
 *             marks it in flight.
 *   batch_run (any thread, once per begin) hashes, encrypts and writes the
 *             batch. 0, DEMS_ENOSPC or DEMS_EIO (then broken).
 *   batch_end (loop, after run returned) ends the flight; run's result.
 *   backlog   (loop) true when the tail holds DEMS_STAGING_BACKLOG bytes or
 *             more: stop reading until the batch in flight ends.
 *
 * Everything else (flush, seal, mark, rollback, release, finish) needs no
 * batch in flight, and first processes whole chunks left in the tail.
 */
#define DEMS_STAGING_BATCH   (4u * 64 * 1024)
#define DEMS_STAGING_BACKLOG (2 * DEMS_STAGING_BATCH)
int dems_staging_take(struct dems_staged *s, const uint8_t *data, size_t n);
bool dems_staging_batch_ready(const struct dems_staged *s);
void dems_staging_batch_begin(struct dems_staged *s);
int dems_staging_batch_run(struct dems_staged *s);
int dems_staging_batch_end(struct dems_staged *s);
bool dems_staging_backlog(const struct dems_staged *s);

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

/* ---- Remote mode: staging in an object store (staging_remote.c) ---- */

struct dems_objstore;
struct dems_objstore_stage;

/*
 * Stages uploads in store from now on (after dems_staging_init): the local
 * file of an upload is a window of at most about two parts, and its state
 * is committed to the database by the server after each part and each
 * PATCH (server/api/upload_stage.c), so any node can continue it.
 */
void dems_staging_set_remote(struct dems_objstore *store);
bool dems_staging_is_remote(void);

/* Plaintext bytes of one staged part for an upload of length bytes (0 when local). */
uint64_t dems_staging_part_plain(uint64_t length);

/* The file offset where part k (1-based; 0 for k = 0) ends. */
uint64_t dems_staging_part_end(const struct dems_staged *s, uint32_t k);

/*
 * 1 when part parts + ahead + 1 is whole in the file (written out), 0 if
 * not yet, or an error (ahead: parts on their way to the store).
 */
int dems_staging_part_ready(struct dems_staged *s, uint32_t ahead);

/* True when the state where part k ends is kept (to commit at it). */
bool dems_staging_has_snap(const struct dems_staged *s, uint32_t k);

/* Part parts + 1 is staged: counts it and punches it out of the local file. */
void dems_staging_part_done(struct dems_staged *s);

/* A state was committed as version ver at offset (at_part: where that part ends; 0: now). */
void dems_staging_committed(struct dems_staged *s, uint64_t ver, uint64_t offset, uint32_t at_part);

/*
 * Blocking (work pool). Stages the file bytes [from, to) of upload id as
 * part number (beginning the stage first when st->id is empty); tag gets
 * its tag.
 */
int dems_staging_put_part(const char *id, uint64_t from, uint64_t to,
                          struct dems_objstore_stage *st, unsigned number, char tag[static 128]);

/* Blocking. Stores the file bytes [from, to) of id as its tail object for version ver. */
int dems_staging_put_tail(const char *id, uint64_t from, uint64_t to, uint64_t ver);
void dems_staging_drop_tail(const char *id, uint64_t ver);

/*
 * The sealed state to commit as version ver (owned, free()): s now
 * (at_part 0), or where part at_part ends. *ret_offset is that state's
 * offset. 0, DEMS_EINVAL (no such snapshot) or DEMS_ENOMEM.
 */
int dems_staging_export(const struct dems_staged *s, uint32_t at_part, uint64_t ver, uint8_t **ret,
                        size_t *ret_len, uint64_t *ret_offset);

/*
 * Blocking. Registers (parked) the committed state version ver of upload
 * id (sealed NULL or ver 0: nothing committed, a fresh start), fetching its
 * tail object, in place of any stale state. 0, DEMS_ECONFLICT (a request
 * here holds the upload), DEMS_ECRYPTO (a state that is not this upload's
 * or a tail that does not fit it), DEMS_EIO or an object-store error.
 */
int dems_staging_import(const char *id, uint64_t length, uint64_t ver, const uint8_t *sealed,
                        size_t len);

/* Like dems_staging_acquire, but DEMS_ENOTFOUND unless the state is version ver. */
int dems_staging_acquire_ver(const char *id, uint64_t ver, struct dems_staged **ret);

/*
 * Blocking. Once offset == length: seals, stages the rest as the last part
 * (number), commits the stage with tags (those of the parts already
 * staged, then room for the last) so the whole blob file is the object
 * dems_staging_object_key names, and gives the plaintext's SHA-256.
 */
int dems_staging_finish_remote(struct dems_staged *s, struct dems_objstore_stage *st,
                               unsigned number, char (*tags)[128], uint8_t digest[static 32]);

/* Blocking, best effort: removes an upload's objects (tail ver, stage handle, staged object). */
void dems_staging_remote_drop(const char *id, uint64_t ver, const char *handle);

/*
 * Forgets the states (and deletes the local windows) of uploads no request
 * has used for idle_seconds: another node may have gone on with them, and
 * the committed state is the truth. Returns how many went.
 */
size_t dems_staging_drop_idle(int64_t idle_seconds);

/* The key of upload id's staged (and at completion committed) object. */
void dems_staging_object_key(const char *id, char *out, size_t len);

/* Closes and forgets every registered upload (shutdown). */
void dems_staging_done(void);

#endif
