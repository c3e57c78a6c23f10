/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An object-store client: Azure Blob Storage (block blobs, SharedKey or SAS)
 * or S3 (Signature Version 4, multipart upload, path- or virtual-host-style
 * addressing), chosen by configuration (store = azure | s3; docs/
 * configuration.md, "Object stores"). All HTTP goes through libcurl with the
 * retry rules of server/store/obj_http.c: transient failures (connection
 * errors, 408, 429, 5xx) are retried with exponential backoff and jitter,
 * honouring Retry-After; everything else fails at once.
 *
 * The store holds only what the blob store writes: encrypted blob files
 * under keys "blobs/XX/ID". It never sees plaintext or keys.
 *
 * Every call blocks (network I/O): a work-pool thread, a worker, a CLI. One
 * client may be shared by several threads (it keeps a small pool of curl
 * handles under a lock).
 *
 * Errors: DEMS_ENOTFOUND (no such key), DEMS_EAUTH (the store refused the
 * credentials: 401/403), DEMS_EUNAVAIL (retries exhausted on transient
 * failures), DEMS_EIO (any other refusal or a malformed answer),
 * DEMS_EINVAL (bad configuration), DEMS_ENOMEM. Each failure logs one JSON
 * line (event "objstore_failed") naming the operation, key, HTTP status and
 * the store's own error code.
 */
#ifndef DEMSD_OBJSTORE_H
#define DEMSD_OBJSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct dems_config;
struct dems_objstore;

enum dems_objstore_kind { DEMS_OBJSTORE_AZURE = 1, DEMS_OBJSTORE_S3 = 2 };

/*
 * A client for the store the configuration names (store = azure | s3).
 * Checks the settings (endpoint, container, credentials) but does not
 * contact the store. Returns 0, DEMS_EINVAL (err: one line naming the key)
 * or DEMS_ENOMEM.
 */
int dems_objstore_new(const struct dems_config *cfg, struct dems_objstore **ret, char *err,
                      size_t errlen);
void dems_objstore_free(struct dems_objstore *s);

enum dems_objstore_kind dems_objstore_kind(const struct dems_objstore *s);

/* the kind and URL of the container or bucket: for logs and errors. */
const char *dems_objstore_where(const struct dems_objstore *s);

/*
 * Checks that the store answers and the credentials work, creating the
 * container or bucket when it does not exist (a credential without that
 * right must find it existing). err as above.
 */
int dems_objstore_prepare(struct dems_objstore *s, char *err, size_t errlen);

/*
 * Stores the whole file path as key: one request up to the block size,
 * otherwise staged blocks (Azure) or parts (S3) committed at the end, so
 * a failure never leaves a partial object under key. Overwrites.
 */
int dems_objstore_put_file(struct dems_objstore *s, const char *key, const char *path);

/* Stores len bytes from memory as key (one request). */
int dems_objstore_put_mem(struct dems_objstore *s, const char *key, const void *data, size_t len);

/*
 * Reads up to len bytes of key from offset into buf; *ret_n is how many
 * were read (fewer only at the end of the object, 0 at or past it).
 */
int dems_objstore_get(struct dems_objstore *s, const char *key, uint64_t offset, void *buf,
                      size_t len, size_t *ret_n);

/* Size of key: 0 or DEMS_ENOTFOUND. */
int dems_objstore_head(struct dems_objstore *s, const char *key, uint64_t *ret_size);

/*
 * Copies src (size bytes) to dst, replacing it: server-side (Azure Copy
 * Blob, polled while pending; S3 CopyObject up to 5 GiB), or for a larger
 * S3 object through this process in block-size ranges staged into dst.
 */
int dems_objstore_copy(struct dems_objstore *s, const char *src, const char *dst, uint64_t size);

/* Deletes key: 0 (also when it was not there). */
int dems_objstore_delete(struct dems_objstore *s, const char *key);

/*
 * One listed object: key, size and last modification (Unix seconds).
 */
struct dems_objstore_entry {
    char *key;
    uint64_t size;
    int64_t mtime;
};

/*
 * Lists every key starting with prefix, in the store's (lexicographic)
 * order, following continuation tokens. Free with dems_objstore_list_free.
 */
int dems_objstore_list(struct dems_objstore *s, const char *prefix,
                       struct dems_objstore_entry **ret, size_t *ret_n);
void dems_objstore_list_free(struct dems_objstore_entry *e, size_t n);

/* The configured block (part) size, at least dems_objstore_part_min. */
size_t dems_objstore_block_size(const struct dems_objstore *s);

/* Smallest size of a staged part but the last (S3: 5 MiB; Azure: 1 byte). */
size_t dems_objstore_part_min(const struct dems_objstore *s);

/*
 * Staged writing: begin, put parts numbered from 1 up to 10,000 (each at
 * least dems_objstore_part_min bytes except the last; a part may be put
 * again), then commit with the tags of the parts that make the object, in
 * order and with ascending numbers (gaps allowed: a part put and then
 * superseded by one with a higher number is left out), which makes the
 * object appear whole under key; abort discards the staged parts.
 *
 * A stage's state is small and plain so another process may continue it
 * (a tus upload whose next PATCH reaches another node): st->id (S3's
 * UploadId; for Azure a random nonce in the block ids, so that two stages
 * of one key at once never mix their blocks) and each part's tag (S3: its
 * number, ETag and SHA-256; Azure: its block id, which encodes the number),
 * at most DEMS_OBJSTORE_TAG_MAX
 * bytes with the NUL. An Azure commit never replaces an existing blob (the
 * keys name their content); S3's does.
 */
#define DEMS_OBJSTORE_TAG_MAX 128
struct dems_objstore_stage {
    char key[256];
    char id[512];
};
int dems_objstore_stage_begin(struct dems_objstore *s, const char *key,
                              struct dems_objstore_stage *st);
int dems_objstore_stage_put(struct dems_objstore *s, const struct dems_objstore_stage *st,
                            unsigned part, const void *data, size_t len,
                            char tag[static DEMS_OBJSTORE_TAG_MAX]);
int dems_objstore_stage_commit(struct dems_objstore *s, const struct dems_objstore_stage *st,
                               unsigned nparts, char (*tags)[DEMS_OBJSTORE_TAG_MAX]);
int dems_objstore_stage_abort(struct dems_objstore *s, const struct dems_objstore_stage *st);

#endif
