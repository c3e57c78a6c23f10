/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local blob store: content-addressed files under data_dir/blobs/XX/ID
 * (ID = SHA-256 of the plaintext, XX its first two hex digits), encrypted
 * with libsodium's secretstream (XChaCha20-Poly1305) under a fresh key per
 * blob. The blob key is wrapped (XSalsa20-Poly1305 secretbox) by the master
 * key and kept in the file's header, so the database holds no key material
 * and a stolen disk without the master key reveals nothing.
 *
 * File layout: "DEMSBLOB1\n" (10 bytes) | nonce (24) | wrapped key (32 + 16)
 * | secretstream header (24) | chunks of up to 64 KiB plaintext, each
 * + 17 bytes, the last tagged FINAL.
 *
 * All functions block (file I/O, fsync, crypto): work pool only.
 */
#ifndef DEMSD_BLOBS_H
#define DEMSD_BLOBS_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DEMS_BLOB_CHUNK (64 * 1024)

struct dems_objstore;

/*
 * Keeps blobs in an object store (include/demsd/objstore.h) rather than
 * under data_dir/blobs: the same encrypted files, under the key
 * "blobs/XX/ID". Called once at start-up, before any other thread uses the
 * blob store; NULL returns to the local files. Adopt and put then send the
 * file (staged blocks when large) and remove the local one; open and verify
 * read by ranged GETs; erase deletes the object; list lists the keys.
 * Errors from the store (DEMS_EUNAVAIL, DEMS_EAUTH, ...) pass through.
 */
void dems_blob_use_store(struct dems_objstore *s);
struct dems_objstore *dems_blob_store(void);
/* A blob file: magic, wrapped key, secretstream header, then cipher chunks. */
#define DEMS_BLOB_HEADER_LEN                                                                       \
    (10 + crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 32 +                           \
     crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define DEMS_BLOB_CIPHER_CHUNK (DEMS_BLOB_CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES)

/*
 * Starts a blob written as a stream (upload staging encrypts as bytes
 * arrive): a fresh key wrapped by master goes in head, which is written
 * first, and st is ready to push DEMS_BLOB_CHUNK-byte chunks, the last one
 * (possibly shorter, possibly empty) tagged FINAL.
 */
void dems_blob_stream_new(const uint8_t master[static 32],
                          uint8_t head[static DEMS_BLOB_HEADER_LEN],
                          crypto_secretstream_xchacha20poly1305_state *st);

/*
 * Opens a blob head for reading: st is ready to pull the first chunk.
 * (libsodium's pull state after a chunk equals the push state after it, so
 * staging resumes writing after re-reading the chunks.) Returns 0 or
 * DEMS_ECRYPTO (not a blob head, or another master key).
 */
int dems_blob_stream_open(const uint8_t master[static 32],
                          const uint8_t head[static DEMS_BLOB_HEADER_LEN],
                          crypto_secretstream_xchacha20poly1305_state *st);

/*
 * Writes all n bytes (retrying short writes and EINTR): 0, DEMS_ENOSPC (the
 * volume or the quota is full) or DEMS_EIO.
 */
int dems_blob_write_all(int fd, const uint8_t *p, size_t n);

/* Reads up to n bytes, fewer only at end of file; -1 on a read error. */
ssize_t dems_blob_read_full(int fd, uint8_t *p, size_t n);

/*
 * Moves src, a complete blob file already fsynced whose plaintext SHA-256
 * is id, into the store (or deletes it when id is already stored), then
 * fsyncs the directory. Returns 0 or DEMS_EIO.
 */
int dems_blob_adopt(const char *data_dir, const char *id, const char *src);

/*
 * Object store only: makes the object src_key (a complete blob file of
 * size bytes whose plaintext SHA-256 is id, staged in the store) blob id by
 * a server-side copy checked by size, then deletes src_key; when id is
 * stored already, only deletes src_key. Returns 0, DEMS_ENOTFOUND (no
 * src_key: see dems_blob_find), DEMS_EINVAL (no object store) or an
 * object-store error.
 */
int dems_blob_adopt_object(const char *id, const char *src_key, uint64_t size);

/*
 * Encrypts the plaintext file src into the store as id (hex SHA-256),
 * checking while it reads that the plaintext really hashes to id. Already
 * stored: nothing is written (dedupe). Writes via a temporary file, fsync and
 * rename. Returns 0, DEMS_ECRYPTO (src does not hash to id), DEMS_EIO.
 */
int dems_blob_put(const char *data_dir, const uint8_t master[static 32], const char *id,
                  const char *src);

/*
 * A blob written from a stream of plaintext whose hash is not known before
 * the end (server/store/blob_out.c): open creates path (O_EXCL; a temporary
 * name, adopted into the store once closed), write hashes and encrypts and
 * queues for a writer thread (direct I/O where the file system allows it),
 * close seals the last chunk, waits for the writes, fsyncs and gives the
 * plaintext's SHA-256 and size. One producer thread; free always (it stops
 * the writer, closes the file and leaves it for the caller to unlink on
 * failure). Returns 0, DEMS_ENOSPC, DEMS_EIO, DEMS_ECRYPTO or DEMS_ENOMEM.
 */
struct dems_blob_out;
int dems_blob_out_open(const char *path, const uint8_t master[static 32],
                       struct dems_blob_out **ret);
int dems_blob_out_write(struct dems_blob_out *o, const uint8_t *p, size_t n);
int dems_blob_out_close(struct dems_blob_out *o, uint8_t sha256[static 32], uint64_t *ret_size);
void dems_blob_out_free(struct dems_blob_out *o);

/*
 * Stores len bytes of plaintext from memory as a blob (through a temporary
 * file under data_dir/work, fsynced and adopted) and writes its id (hex
 * SHA-256) to ret_id. Blocking: a work-pool thread or a worker. Returns 0 or
 * a dems_blob_out / dems_blob_adopt error.
 */
int dems_blob_put_mem(const char *data_dir, const uint8_t master[static 32], const uint8_t *data,
                      size_t len, char ret_id[static 65]);

/*
 * Crypto-erasure of blob id (disposal): its wrapped key and stream header
 * are overwritten in place with random bytes and synced, then the file is
 * removed and its directory synced. Any other name of the same file (a hard
 * link, a descriptor still open) is then unreadable even with the master
 * key; copies made elsewhere (backups) are not reached (docs/operations.md).
 * 0 (also when it was gone already) or DEMS_EIO.
 */
int dems_blob_erase(const char *data_dir, const char *id);

/* True when blob id is in the store (its file exists). */
bool dems_blob_exists(const char *data_dir, const char *id);

/*
 * The same, telling a store that cannot answer from a missing blob: 0 (it
 * is there), DEMS_ENOTFOUND, or another DEMS_E* code (the store failed).
 */
int dems_blob_find(const char *data_dir, const char *id);

/* Opened blob for sequential decryption. */
struct dems_blob;

/* Opens blob id; returns 0, DEMS_ENOTFOUND, DEMS_ECRYPTO (bad header/key) or DEMS_EIO. */
int dems_blob_open(const char *data_dir, const uint8_t master[static 32], const char *id,
                   struct dems_blob **ret);
/* The same for a blob file outside the store (e.g. one dems_blob_out sealed, not yet adopted). */
int dems_blob_open_file(const char *path, const uint8_t master[static 32], struct dems_blob **ret);

/*
 * Decrypts the next chunk into out (DEMS_BLOB_CHUNK bytes). Returns the
 * number of bytes (0 at the end), or DEMS_ECRYPTO when the file was altered
 * or truncated, DEMS_EIO.
 */
long dems_blob_read(struct dems_blob *b, uint8_t out[static DEMS_BLOB_CHUNK]);

void dems_blob_close(struct dems_blob *b);

/*
 * Re-reads blob id end to end: authenticated decryption of every chunk and
 * the SHA-256 of the plaintext against id. Returns 0, DEMS_ENOTFOUND (the
 * file is gone), DEMS_ECRYPTO (altered, truncated or re-keyed), DEMS_EIO.
 */
int dems_blob_verify(const char *data_dir, const uint8_t master[static 32], const char *id);

/*
 * The names of the files in the blob store (data_dir/blobs/XX/NAME, and any
 * stray file directly under data_dir/blobs) last modified before `before`
 * (Unix seconds), sorted. Returns 0 with an owned array (free with
 * dems_blob_list_free), DEMS_EIO or DEMS_ENOMEM.
 */
int dems_blob_list(const char *data_dir, int64_t before, char ***ret_names, size_t *ret_n);
void dems_blob_list_free(char **names, size_t n);

/*
 * Orphans: keeps in names (sorted, from dems_blob_list) only those not in
 * referenced (any order; sorted in place, borrowed), freeing the others,
 * and returns how many are left.
 */
size_t dems_blob_orphans(char **names, size_t n, char **referenced, size_t nref);

#endif
