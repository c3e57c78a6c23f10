/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upload staging files and the registry of active uploads (see
 * demsd/store.h). A staging file is a blob file being written: bytes are
 * hashed and encrypted as they arrive, in DEMS_BLOB_CHUNK-byte secretstream
 * chunks under a key of its own (wrapped by the master key in its head), so
 * completing an upload is an fsync and a rename, never a second pass over
 * the data. Plaintext is never written to disk: the partial chunk at the end
 * stays in memory until it fills or the upload completes. Whole chunks are
 * hashed, encrypted and written to the page cache on the work pool while the
 * loop reads on (dems_staging_take and the batch functions; an object-store
 * upload writes on its loop, dems_staging_write); fsync, which can block for
 * long, only happens in dems_staging_finish on the work pool.
 *
 * Between requests an upload is "parked": its file is closed, its write
 * buffer freed and its unfilled last chunk kept in a buffer of exactly its
 * size, so an unfinished upload costs a few hundred bytes and no file
 * descriptor however long it waits (#19.3: a client creating uploads by the
 * thousand must not exhaust descriptors). Acquiring it for a request opens
 * the file again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/sstream.h"
#include "demsd/blobs.h"
#include "demsd/store.h"

#include "staging_int.h"

/*
 * Cipher chunks are 64 KiB + 17 bytes, and ext4 takes writes that end
 * inside a page about 3 times slower than page-aligned ones (measured with
 * dd here: 609 MB/s vs 1.8 GB/s). So chunks collect in a buffer and go out
 * in writes that end on a page boundary. Every FLUSH_AFTER bytes, writeback
 * of what was written is started (sync_file_range), so the fsync at
 * completion finds little left to do.
 */
#define PEND_FLUSH  (3 * DEMS_BLOB_CIPHER_CHUNK)
#define PEND_CAP    (PEND_FLUSH + DEMS_BLOB_CIPHER_CHUNK)
#define PAGE        4096
#define FLUSH_AFTER (8u << 20)
/* An acquired state's tail: room for the backlog and the read that passes it. */
#define TAIL_CAP (DEMS_STAGING_BACKLOG + 2 * DEMS_BLOB_CHUNK)

/* The registry: a hash table of registered uploads, guarded by mu. */
#define NBUCKETS 1024

pthread_mutex_t staging_mu = PTHREAD_MUTEX_INITIALIZER;
#define mu staging_mu
static struct dems_staged *table[NBUCKETS];
static char dir[PATH_MAX];
const uint8_t *staging_master; /* borrowed for the process's life */
#define master staging_master

int dems_staging_init(const char *data_dir, const uint8_t master_key[static 32])
{
    snprintf(dir, sizeof(dir), "%s/staging", data_dir);
    master = master_key;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return DEMS_EIO;
    return 0;
}

void staging_path_of(const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", dir, id);
}

/* DEMS_ENOSPC when the volume (or the quota) is full, else DEMS_EIO. */
static int io_error(int e)
{
    return e == ENOSPC || e == EDQUOT ? DEMS_ENOSPC : DEMS_EIO;
}

static size_t bucket(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = id; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h % NBUCKETS;
}

struct dems_staged *staging_find(const char *id)
{
    for (struct dems_staged *s = table[bucket(id)]; s != NULL; s = s->next) {
        if (strcmp(s->id, id) == 0)
            return s;
    }
    return NULL;
}

void staging_insert(struct dems_staged *s)
{
    size_t b = bucket(s->id);
    s->next = table[b];
    table[b] = s;
}

void staging_unlink(struct dems_staged *s)
{
    for (struct dems_staged **pp = &table[bucket(s->id)]; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

static void free_tail(struct dems_staged *s)
{
    if (s->tail != NULL) {
        sodium_memzero(s->tail, s->tail_cap);
        free(s->tail);
        s->tail = NULL;
    }
    s->tail_cap = 0;
}

/* Frees what only an acquired state has: the batch and the cipher contexts. */
static void free_acquired(struct dems_staged *s)
{
    if (s->batch != NULL) {
        sodium_memzero(s->batch, s->batch_cap);
        free(s->batch);
        s->batch = NULL;
    }
    s->batch_cap = s->batch_len = 0;
    if (s->x != NULL) {
        dems_sstream_done(s->x);
        free(s->x);
        s->x = NULL;
    }
}

void staging_free(struct dems_staged *s)
{
    free(s->pend);
    free_tail(s);
    free_acquired(s);
    if (s->fd >= 0)
        close(s->fd);
    dems_sha256_done(&s->sha);
    sodium_memzero(&s->st, sizeof(s->st));
    free(s);
}

/* A new, unregistered state (no file open, no buffers). */
struct dems_staged *staging_new(const char *id, uint64_t length)
{
    struct dems_staged *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->fd = -1;
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->length = length;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    s->used_at = (int64_t)now.tv_sec; /* idle from now, not from boot */
    if (dems_sha256_init(&s->sha) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* Writes a fresh blob head to fd (at its start); returns the push state. */
int staging_write_head(int fd, stream_state *st)
{
    uint8_t head[DEMS_BLOB_HEADER_LEN];
    dems_blob_stream_new(master, head, st);
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) < 0)
        return io_error(errno);
    return dems_blob_write_all(fd, head, sizeof(head));
}

int dems_staging_create(const char *id, uint64_t length)
{
    char p[PATH_MAX + 40];
    staging_path_of(id, p, sizeof(p));
    struct dems_staged *s = staging_new(id, length);
    if (s == NULL)
        return DEMS_ENOMEM;
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        staging_free(s);
        return io_error(errno);
    }
    int r = staging_write_head(fd, &s->st);
    close(fd);
    if (r < 0) {
        unlink(p);
        staging_free(s);
        return r;
    }
    s->file_len = s->disk_len = s->synced_to = DEMS_BLOB_HEADER_LEN;
    s->part_chunks = staging_part_chunks(length);
    pthread_mutex_lock(&mu);
    staging_insert(s);
    pthread_mutex_unlock(&mu);
    return 0;
}

/*
 * Opens a parked state's file and gives it its write buffer and a whole
 * chunk for its tail. Runs with busy set, so nothing else touches s.
 */
static int unpark(struct dems_staged *s)
{
    char p[PATH_MAX + 40];
    staging_path_of(s->id, p, sizeof(p));
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return DEMS_EIO; /* registered but gone: staging_missing */
    uint8_t *pend = malloc(PEND_CAP), *tail = malloc(TAIL_CAP);
    struct dems_sstream *x = malloc(sizeof(*x));
    bool mem = pend != NULL && tail != NULL && x != NULL;
    if (mem && dems_sstream_init(x) < 0) {
        free(x);
        x = NULL;
        mem = false;
    }
    if (!mem || lseek(fd, (off_t)s->file_len, SEEK_SET) < 0) {
        free(pend);
        free(tail);
        if (x != NULL) {
            dems_sstream_done(x);
            free(x);
        }
        close(fd);
        return !mem ? DEMS_ENOMEM : DEMS_EIO;
    }
    if (s->tail_len > 0)
        memcpy(tail, s->tail, s->tail_len);
    free_tail(s);
    s->tail = tail;
    s->tail_cap = TAIL_CAP;
    s->x = x;
    s->pend = pend;
    s->pend_len = 0;
    s->fd = fd;
    return 0;
}

/*
 * Closes s's file, frees its write buffer and keeps its tail in a buffer
 * of exactly its size. Buffered cipher bytes must have been written.
 */
void staging_park(struct dems_staged *s)
{
    uint8_t *keep = NULL;
    if (s->tail_len > 0) {
        keep = malloc(s->tail_len);
        if (keep == NULL)
            return; /* keep the whole chunk (and the descriptor) rather than lose bytes */
        memcpy(keep, s->tail, s->tail_len);
    }
    free_tail(s);
    s->tail = keep;
    s->tail_cap = s->tail_len;
    free_acquired(s);
    free(s->pend);
    s->pend = NULL;
    s->pend_len = 0;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

int dems_staging_acquire(const char *id, struct dems_staged **ret)
{
    pthread_mutex_lock(&mu);
    struct dems_staged *s = staging_find(id);
    int r = s == NULL ? DEMS_ENOTFOUND : s->busy || s->doomed ? DEMS_ECONFLICT : 0;
    if (r == 0)
        s->busy = true;
    pthread_mutex_unlock(&mu);
    if (r == 0 && s->fd < 0) {
        r = unpark(s);
        if (r < 0) {
            pthread_mutex_lock(&mu);
            s->busy = false;
            pthread_mutex_unlock(&mu);
        }
    }
    if (r == 0)
        *ret = s;
    return r;
}

int dems_staging_acquire_ver(const char *id, uint64_t ver, struct dems_staged **ret)
{
    pthread_mutex_lock(&mu);
    struct dems_staged *s = staging_find(id);
    bool stale = s != NULL && s->ver != ver;
    if (stale && !s->busy && !s->doomed)
        staging_unlink(s);
    else
        stale = false;
    pthread_mutex_unlock(&mu);
    if (stale) {
        staging_free(s); /* another node went on with it: reloaded from the store */
        return DEMS_ENOTFOUND;
    }
    int r = dems_staging_acquire(id, ret);
    if (r == 0 && (*ret)->ver != ver) {
        dems_staging_release(*ret);
        return DEMS_ECONFLICT;
    }
    return r;
}

/*
 * Re-reads a staging file after a restart: every whole chunk that decrypts
 * is kept and hashed, and the stream state after it is where writing
 * resumes. A torn last chunk (the process died mid-write) is cut off. A
 * FINAL chunk (it died between sealing the upload and recording it) is
 * kept: the upload is sealed, with all its bytes.
 */
static int reload(struct dems_staged *s, uint8_t *cipher)
{
    uint8_t head[DEMS_BLOB_HEADER_LEN];
    ssize_t n = dems_blob_read_full(s->fd, head, sizeof(head));
    if (n < 0)
        return DEMS_EIO;
    if (n < (ssize_t)sizeof(head)) { /* died before the head was written */
        s->file_len = 0;             /* dems_staging_load writes a new one */
        return 0;
    }
    int r = dems_blob_stream_open(master, head, &s->st);
    if (r < 0)
        return r;
    s->file_len = sizeof(head);
    for (;;) {
        n = dems_blob_read_full(s->fd, cipher, DEMS_BLOB_CIPHER_CHUNK);
        if (n < 0)
            return DEMS_EIO;
        if (n < (ssize_t)crypto_secretstream_xchacha20poly1305_ABYTES)
            break;
        stream_state before = s->st;
        unsigned long long plen = 0;
        unsigned char tag = 0;
        if (crypto_secretstream_xchacha20poly1305_pull(&s->st, s->tail, &plen, &tag, cipher,
                                                       (unsigned long long)n, NULL, 0) != 0) {
            s->st = before;
            break; /* torn */
        }
        bool final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
        if (!final && plen != DEMS_BLOB_CHUNK) { /* only the FINAL chunk may be short */
            s->st = before;
            return DEMS_ECRYPTO;
        }
        dems_sha256_update(&s->sha, s->tail, (size_t)plen);
        s->offset += plen;
        s->file_len += (uint64_t)n;
        if (final) {
            s->sealed = true;
            break;
        }
    }
    sodium_memzero(s->tail, DEMS_BLOB_CHUNK);
    return 0; /* dems_staging_load cuts the file to file_len */
}

/*
 * Makes the file match the state reload found: a new head, or the torn end
 * cut off. Called under mu, only for a state about to be registered, so it
 * can never cut bytes that a registered state's PATCH has appended since.
 */
static int settle(struct dems_staged *s)
{
    if (s->file_len == 0) {
        s->file_len = DEMS_BLOB_HEADER_LEN;
        return staging_write_head(s->fd, &s->st);
    }
    if (ftruncate(s->fd, (off_t)s->file_len) != 0)
        return DEMS_EIO;
    return 0;
}

int dems_staging_load(const char *id, uint64_t length)
{
    char p[PATH_MAX + 40];
    staging_path_of(id, p, sizeof(p));
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
    struct dems_staged *s = staging_new(id, length);
    uint8_t *cipher = malloc(DEMS_BLOB_CIPHER_CHUNK);
    int r = s == NULL || cipher == NULL ? DEMS_ENOMEM : 0;
    if (r == 0) {
        s->fd = fd;
        s->tail = malloc(DEMS_BLOB_CHUNK);
        s->tail_cap = s->tail != NULL ? DEMS_BLOB_CHUNK : 0;
        r = s->tail == NULL ? DEMS_ENOMEM : reload(s, cipher);
    } else {
        close(fd);
    }
    free(cipher);
    if (r == 0 && (s->offset > length || (s->sealed && s->offset != length)))
        r = DEMS_ECRYPTO; /* not this upload's file */
    if (r < 0) {
        if (s != NULL)
            staging_free(s);
        return r;
    }
    s->tail_len = 0; /* whole chunks only: the tail of a dead process is gone */
    pthread_mutex_lock(&mu);
    if (staging_find(id) != NULL) {
        /* Loaded meanwhile by another request: keep that one. */
        pthread_mutex_unlock(&mu);
        staging_free(s);
        return 0;
    }
    r = settle(s);
    if (r == 0) {
        s->disk_len = s->file_len;
        s->synced_to = s->file_len;
        staging_park(s);
        staging_insert(s);
    }
    pthread_mutex_unlock(&mu);
    if (r < 0)
        staging_free(s);
    return r;
}

/*
 * Writes buffered cipher bytes: all of them (all), or as many as end on a
 * page boundary. On failure the file is cut back to its last good length
 * and the state is marked broken (the caller rolls back to a mark, or the
 * state is reloaded from the file after release).
 */
static int flush_pend(struct dems_staged *s, bool all)
{
    size_t n = s->pend_len;
    if (!all)
        n -= (size_t)((s->disk_len + n) % PAGE);
    if (n == 0)
        return 0;
    int r = dems_blob_write_all(s->fd, s->pend, n);
    if (r < 0) {
        s->broken = true;
        if (ftruncate(s->fd, (off_t)s->disk_len) == 0)
            lseek(s->fd, (off_t)s->disk_len, SEEK_SET);
        return r;
    }
    s->disk_len += n;
    s->pend_len -= n;
    memmove(s->pend, s->pend + n, s->pend_len);
    /* Remote mode: the window is read back from the page cache and punched
     * out once its part is staged; writing it to disk would only compete
     * with the store and the database for the disk. */
    if (staging_store == NULL && s->disk_len - s->synced_to >= FLUSH_AFTER) {
        /* Start writeback now (asynchronous); completion's fsync waits for less. */
        sync_file_range(s->fd, (off_t)s->synced_to, (off_t)(s->disk_len - s->synced_to),
                        SYNC_FILE_RANGE_WRITE);
        s->synced_to = s->disk_len;
    }
    return 0;
}

/* Encrypts len bytes (a whole chunk, or the last) as the next chunk and queues it for the file. */
static int push_chunk(struct dems_staged *s, const uint8_t *m, size_t len, bool final)
{
    uint8_t tag = final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
    uint8_t *out = s->pend + s->pend_len;
    if (s->x != NULL) {
        if (dems_sstream_push(s->x, &s->st, out, m, len, tag) < 0)
            return DEMS_EIO;
    } else {
        crypto_secretstream_xchacha20poly1305_push(&s->st, out, NULL, m, len, NULL, 0, tag);
    }
    size_t clen = len + crypto_secretstream_xchacha20poly1305_ABYTES;
    s->pend_len += clen;
    s->file_len += clen;
    s->sealed = final;
    if (staging_store != NULL && !final)
        staging_after_push(s);
    return s->pend_len >= PEND_FLUSH ? flush_pend(s, false) : 0;
}

/* Encrypts the tail as the next chunk and queues it for the file. */
static int push_tail(struct dems_staged *s, bool final)
{
    int r = push_chunk(s, s->tail, s->tail_len, final);
    sodium_memzero(s->tail, s->tail_len);
    s->tail_len = s->tail_hashed = 0;
    return r;
}

static int drain_tail(struct dems_staged *s);

/* Hashes the tail bytes not yet hashed (taken by a pipelined request). */
static void hash_tail(struct dems_staged *s)
{
    dems_sha256_update(&s->sha, s->tail + s->tail_hashed, s->tail_len - s->tail_hashed);
    s->tail_hashed = s->tail_len;
}

int dems_staging_write(struct dems_staged *s, const uint8_t *data, size_t n)
{
    if (s->broken || s->sealed || n > s->length - s->offset)
        return DEMS_EIO;
    int r = drain_tail(s);
    if (r < 0)
        return r;
    while (n > 0) {
        size_t take = DEMS_BLOB_CHUNK - s->tail_len;
        if (take > n)
            take = n;
        memcpy(s->tail + s->tail_len, data, take);
        dems_sha256_update(&s->sha, data, take);
        s->tail_len += take;
        s->tail_hashed = s->tail_len;
        s->offset += take;
        data += take;
        n -= take;
        /* A full chunk goes to disk; the one that ends the upload is FINAL. */
        if (s->tail_len == DEMS_BLOB_CHUNK) {
            r = push_tail(s, s->offset == s->length);
            if (r < 0) {
                s->broken = true; /* hash and offset are ahead of the file */
                return r;
            }
        }
    }
    return 0;
}

/* ---- the pipeline (see demsd/store.h) ---- */

/*
 * Hashes (but its first `hashed` bytes), encrypts and queues the whole
 * chunks m[0..len), m[0] at plaintext offset at.
 */
static int process(struct dems_staged *s, const uint8_t *m, size_t len, uint64_t at, size_t hashed)
{
    for (size_t i = 0; i < len; i += DEMS_BLOB_CHUNK) {
        size_t skip = i == 0 ? hashed : 0;
        dems_sha256_update(&s->sha, m + i + skip, DEMS_BLOB_CHUNK - skip);
        int r = push_chunk(s, m + i, DEMS_BLOB_CHUNK, at + i + DEMS_BLOB_CHUNK == s->length);
        if (r < 0) {
            s->broken = true; /* hash and offset are ahead of the file */
            return r;
        }
    }
    return 0;
}

/*
 * Processes the whole chunks at the start of the tail here and now, and
 * hashes the rest: the state is then at rest (all it received is hashed).
 */
static int drain_tail(struct dems_staged *s)
{
    size_t rest = s->tail_len % DEMS_BLOB_CHUNK, whole = s->tail_len - rest;
    if (whole > 0) {
        int r = process(s, s->tail, whole, s->offset - s->tail_len, s->tail_hashed);
        if (r < 0)
            return r;
        memmove(s->tail, s->tail + whole, rest);
        sodium_memzero(s->tail + rest, whole);
        s->tail_len = rest;
        s->tail_hashed = 0;
    }
    hash_tail(s);
    return 0;
}

/* A buffer of cap bytes holding the len bytes of *buf (zeroed and freed). */
static int regrow(uint8_t **buf, size_t *cap, size_t len, size_t want)
{
    uint8_t *b = malloc(want);
    if (b == NULL)
        return DEMS_ENOMEM;
    if (len > 0)
        memcpy(b, *buf, len);
    if (*buf != NULL) {
        sodium_memzero(*buf, *cap);
        free(*buf);
    }
    *buf = b;
    *cap = want;
    return 0;
}

int dems_staging_take(struct dems_staged *s, const uint8_t *data, size_t n)
{
    if ((!s->in_flight && (s->broken || s->sealed)) || n > s->length - s->offset)
        return DEMS_EIO;
    if (n > s->tail_cap - s->tail_len) {
        /* More than a backlog in one read: room in whole chunks. */
        size_t want = s->tail_len + n;
        want += DEMS_BLOB_CHUNK - want % DEMS_BLOB_CHUNK;
        int r = regrow(&s->tail, &s->tail_cap, s->tail_len, want);
        if (r < 0)
            return r;
    }
    memcpy(s->tail + s->tail_len, data, n);
    s->tail_len += n;
    s->offset += n;
    return 0;
}

bool dems_staging_batch_ready(const struct dems_staged *s)
{
    return !s->in_flight && s->tail_len >= DEMS_STAGING_BATCH;
}

void dems_staging_batch_begin(struct dems_staged *s)
{
    size_t rest = s->tail_len % DEMS_BLOB_CHUNK, whole = s->tail_len - rest;
    /* The tail's buffer becomes the batch; the batch's (grown to the
     * tail's size if need be) takes the partial chunk and reads on. */
    if (s->batch_cap < s->tail_cap && regrow(&s->batch, &s->batch_cap, 0, s->tail_cap) < 0) {
        /* No memory for a second buffer: process here, as the sync path does. */
        s->batch_err = drain_tail(s);
        s->in_flight = true;
        s->batch_len = 0;
        return;
    }
    memcpy(s->batch, s->tail + whole, rest);
    sodium_memzero(s->tail + whole, rest);
    s->batch_hashed = s->tail_hashed; /* < one chunk: within the batch's first */
    s->tail_hashed = 0;
    uint8_t *b = s->tail;
    size_t cap = s->tail_cap;
    s->tail = s->batch;
    s->tail_cap = s->batch_cap;
    s->tail_len = rest;
    s->batch = b;
    s->batch_cap = cap;
    s->batch_len = whole;
    s->batch_at = s->offset - rest - whole;
    s->batch_err = 0;
    s->in_flight = true;
}

int dems_staging_batch_run(struct dems_staged *s)
{
    if (s->batch_len == 0)
        return s->batch_err;
    int r = s->broken ? DEMS_EIO : process(s, s->batch, s->batch_len, s->batch_at, s->batch_hashed);
    /* The plaintext stays until the buffer takes the next tail; it is
     * zeroed when freed (at release), not after every batch. */
    s->batch_len = 0;
    s->batch_err = r;
    return r;
}

int dems_staging_batch_end(struct dems_staged *s)
{
    s->in_flight = false;
    return s->batch_err;
}

bool dems_staging_backlog(const struct dems_staged *s)
{
    return s->tail_len >= DEMS_STAGING_BACKLOG;
}

int dems_staging_flush(struct dems_staged *s)
{
    if (s->broken)
        return DEMS_EIO;
    int r = drain_tail(s);
    return r < 0 ? r : flush_pend(s, true);
}

int dems_staging_seal(struct dems_staged *s)
{
    if (s->broken || s->offset != s->length)
        return DEMS_EIO;
    int r = drain_tail(s);
    if (r == 0 && !s->sealed)
        r = push_tail(s, true);
    return r < 0 ? r : flush_pend(s, true);
}

int dems_staging_mark(struct dems_staged *s, struct dems_staging_mark *m)
{
    /* The mark is a file length: write what is buffered first. */
    *m = (struct dems_staging_mark){0};
    int r = drain_tail(s);
    if (r == 0)
        r = flush_pend(s, true);
    if (r < 0)
        return r;
    m->offset = s->offset;
    m->file_len = s->file_len;
    m->sealed = s->sealed;
    m->st = s->st;
    m->tail_len = s->tail_len;
    m->tail = malloc(s->tail_len > 0 ? s->tail_len : 1);
    if (m->tail == NULL || dems_sha256_init(&m->sha) < 0 || dems_sha256_copy(&m->sha, &s->sha) < 0)
        return DEMS_ENOMEM;
    memcpy(m->tail, s->tail, s->tail_len);
    m->is_set = true;
    return 0;
}

int dems_staging_rollback(struct dems_staged *s, const struct dems_staging_mark *m)
{
    if (!m->is_set)
        return DEMS_EINVAL;
    if (staging_store != NULL) {
        /* Staged parts cannot be cut back: the state is dropped at release
         * and the next request continues from the committed one. */
        s->broken = true;
        s->offset = s->committed_offset;
        return 0;
    }
    if (ftruncate(s->fd, (off_t)m->file_len) != 0 ||
        lseek(s->fd, (off_t)m->file_len, SEEK_SET) < 0) {
        s->broken = true;
        return DEMS_EIO;
    }
    /* Cipher bytes still buffered belong to the chunks being cut off. */
    s->pend_len = 0;
    s->offset = m->offset;
    s->file_len = s->disk_len = m->file_len;
    if (s->synced_to > s->file_len)
        s->synced_to = s->file_len;
    s->sealed = m->sealed;
    s->st = m->st;
    s->tail_len = s->tail_hashed = m->tail_len;
    memcpy(s->tail, m->tail, m->tail_len);
    if (dems_sha256_copy(&s->sha, &m->sha) < 0) {
        s->broken = true;
        return DEMS_ENOMEM;
    }
    s->broken = false;
    return 0;
}

void dems_staging_mark_done(struct dems_staging_mark *m)
{
    if (m->tail != NULL) {
        sodium_memzero(m->tail, m->tail_len);
        free(m->tail);
        m->tail = NULL;
    }
    sodium_memzero(&m->st, sizeof(m->st));
    dems_sha256_done(&m->sha);
    m->is_set = false;
}

void dems_staging_release(struct dems_staged *s)
{
    /* Still busy here, so nothing else touches s. */
    if (!s->broken)
        dems_staging_flush(s); /* on failure: broken, forgotten below */
    if (!s->broken)
        staging_park(s);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&mu);
    s->busy = false;
    s->used_at = (int64_t)now.tv_sec;
    bool drop = s->broken || s->doomed;
    if (drop)
        staging_unlink(s);
    pthread_mutex_unlock(&mu);
    if (drop) {
        /* Broken: the file is the truth, the next request reloads it (in
         * an object store, the committed state is, and the window goes). */
        if (staging_store != NULL && s->broken && !s->doomed) {
            char p[PATH_MAX + 40];
            staging_path_of(s->id, p, sizeof(p));
            unlink(p);
        }
        staging_free(s);
    }
}

int dems_staging_finish(struct dems_staged *s, uint8_t digest[static 32])
{
    int r = dems_staging_seal(s);
    if (r < 0)
        return r;
    if (fsync(s->fd) != 0)
        return io_error(errno);
    return dems_sha256_final(&s->sha, digest);
}

/* Unregisters id; a busy state goes when its holder releases it. */
void dems_staging_close(const char *id)
{
    pthread_mutex_lock(&mu);
    struct dems_staged *s = staging_find(id);
    if (s != NULL && s->busy) {
        s->doomed = true;
        s = NULL;
    } else if (s != NULL) {
        staging_unlink(s);
    }
    pthread_mutex_unlock(&mu);
    if (s != NULL)
        staging_free(s);
}

void dems_staging_remove(const char *id)
{
    dems_staging_close(id); /* a holder writing meanwhile writes to the unlinked file */
    char p[PATH_MAX + 40];
    staging_path_of(id, p, sizeof(p));
    unlink(p);
}

void dems_staging_path(const char *id, char *out, size_t len)
{
    staging_path_of(id, out, len);
}

bool dems_staging_exists(const char *id)
{
    char p[PATH_MAX + 40];
    staging_path_of(id, p, sizeof(p));
    return access(p, F_OK) == 0;
}

bool dems_staging_loaded(const char *id)
{
    pthread_mutex_lock(&mu);
    bool r = staging_find(id) != NULL;
    pthread_mutex_unlock(&mu);
    return r;
}

bool dems_staging_busy(const char *id)
{
    pthread_mutex_lock(&mu);
    const struct dems_staged *s = staging_find(id);
    bool r = s != NULL && s->busy;
    pthread_mutex_unlock(&mu);
    return r;
}

int64_t dems_staging_size(const char *id)
{
    pthread_mutex_lock(&mu);
    const struct dems_staged *s = staging_find(id);
    int64_t r = s != NULL ? (int64_t)s->offset : -1;
    pthread_mutex_unlock(&mu);
    return r;
}

size_t dems_staging_list_full(char (*ids)[33], size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&mu);
    for (size_t b = 0; b < NBUCKETS && n < max; b++) {
        for (const struct dems_staged *s = table[b]; s != NULL && n < max; s = s->next) {
            if (!s->busy && !s->doomed && !s->broken && s->offset == s->length)
                memcpy(ids[n++], s->id, 33);
        }
    }
    pthread_mutex_unlock(&mu);
    return n;
}

size_t dems_staging_drop_idle(int64_t idle_seconds)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct dems_staged *gone = NULL;
    size_t n = 0;
    pthread_mutex_lock(&mu);
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (struct dems_staged **pp = &table[b]; *pp != NULL;) {
            struct dems_staged *s = *pp;
            if (s->busy || s->doomed || (int64_t)now.tv_sec - s->used_at < idle_seconds) {
                pp = &s->next;
                continue;
            }
            *pp = s->next;
            s->next = gone;
            gone = s;
            n++;
        }
    }
    pthread_mutex_unlock(&mu);
    while (gone != NULL) {
        struct dems_staged *s = gone;
        gone = s->next;
        char p[PATH_MAX + 40];
        staging_path_of(s->id, p, sizeof(p));
        unlink(p);
        staging_free(s);
    }
    return n;
}

void staging_clear_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

uint64_t dems_staging_expected_size(uint64_t length)
{
    uint64_t full = length / DEMS_BLOB_CHUNK, last = length % DEMS_BLOB_CHUNK;
    uint64_t chunks = full + (last > 0 || length == 0 ? 1 : 0);
    return DEMS_BLOB_HEADER_LEN + length + chunks * crypto_secretstream_xchacha20poly1305_ABYTES;
}

int dems_store_free_bytes(const char *data_dir, uint64_t *ret_bytes)
{
    /* staging and blobs may be other volumes (mounts or symlinks): the least free counts. */
    static const char *const subdirs[] = {"", "/staging", "/blobs"};
    uint64_t least = UINT64_MAX;
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char p[PATH_MAX + 16];
        struct statvfs vfs;
        snprintf(p, sizeof(p), "%s%s", data_dir, subdirs[i]);
        if (statvfs(p, &vfs) != 0) {
            if (errno == ENOENT && i > 0)
                continue;
            return DEMS_EIO;
        }
        uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
        if (avail < least)
            least = avail;
    }
    *ret_bytes = least;
    return 0;
}

void dems_staging_done(void)
{
    pthread_mutex_lock(&mu);
    for (size_t b = 0; b < NBUCKETS; b++) {
        while (table[b] != NULL) {
            struct dems_staged *s = table[b];
            table[b] = s->next;
            staging_free(s);
        }
    }
    pthread_mutex_unlock(&mu);
}
