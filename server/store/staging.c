/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upload staging files and the registry of active uploads (see
 * demsd/store.h). A staging file is a blob file being written: bytes are
 * hashed and encrypted as they arrive, in DEMS_BLOB_CHUNK-byte secretstream
 * chunks under a key of its own (wrapped by the master key in its head), so
 * completing an upload is an fsync and a rename, never a second pass over
 * the data. Plaintext is never written to disk: the partial chunk at the end
 * stays in memory until it fills or the upload completes. Writes go to the
 * page cache from the loop thread (like any socket buffer copy); fsync, which
 * can block for long, only happens in dems_staging_finish on the work pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "demsd/blobs.h"
#include "demsd/store.h"

typedef crypto_secretstream_xchacha20poly1305_state stream_state;

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

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct dems_staged *active;
static char dir[PATH_MAX];
static const uint8_t *master; /* borrowed for the process's life */

int dems_staging_init(const char *data_dir, const uint8_t master_key[static 32])
{
    snprintf(dir, sizeof(dir), "%s/staging", data_dir);
    master = master_key;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return DEMS_EIO;
    return 0;
}

static void path_of(const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", dir, id);
}

/* Writes a fresh blob head to fd (at its start); returns the push state. */
static int write_head(int fd, stream_state *st)
{
    uint8_t head[DEMS_BLOB_HEADER_LEN];
    dems_blob_stream_new(master, head, st);
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) < 0)
        return DEMS_EIO;
    return dems_blob_write_all(fd, head, sizeof(head));
}

int dems_staging_create(const char *id)
{
    char p[PATH_MAX + 40];
    path_of(id, p, sizeof(p));
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return DEMS_EIO;
    stream_state st;
    int r = write_head(fd, &st);
    sodium_memzero(&st, sizeof(st));
    close(fd);
    if (r < 0)
        unlink(p);
    return r;
}

static struct dems_staged *find(const char *id)
{
    for (struct dems_staged *s = active; s != NULL; s = s->next) {
        if (strcmp(s->id, id) == 0)
            return s;
    }
    return NULL;
}

int dems_staging_acquire(const char *id, struct dems_staged **ret)
{
    pthread_mutex_lock(&mu);
    struct dems_staged *s = find(id);
    int r = s == NULL ? DEMS_ENOTFOUND : s->busy ? DEMS_ECONFLICT : 0;
    if (r == 0) {
        s->busy = true;
        *ret = s;
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static void free_staged(struct dems_staged *s)
{
    free(s->pend);
    if (s->fd >= 0)
        close(s->fd);
    dems_sha256_done(&s->sha);
    if (s->tail != NULL) {
        sodium_memzero(s->tail, DEMS_BLOB_CHUNK);
        free(s->tail);
    }
    sodium_memzero(&s->st, sizeof(s->st));
    free(s);
}

/*
 * Re-reads a staging file after a restart: every whole chunk that decrypts
 * is kept and hashed, and the stream state after it is where writing
 * resumes. A torn last chunk (the process died mid-write) is cut off; a
 * FINAL chunk (it died between completing and storing the blob) is opened
 * again as the in-memory tail, so completion re-seals it.
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
        dems_sha256_update(&s->sha, s->tail, (size_t)plen);
        s->offset += plen;
        if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
            s->st = before;
            s->tail_len = (size_t)plen;
            break;
        }
        if (plen != DEMS_BLOB_CHUNK) { /* only the FINAL chunk may be short */
            s->offset -= plen;
            s->st = before;
            return DEMS_ECRYPTO;
        }
        s->file_len += (uint64_t)n;
    }
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
        return write_head(s->fd, &s->st);
    }
    if (ftruncate(s->fd, (off_t)s->file_len) != 0 || lseek(s->fd, (off_t)s->file_len, SEEK_SET) < 0)
        return DEMS_EIO;
    return 0;
}

int dems_staging_load(const char *id, uint64_t length)
{
    char p[PATH_MAX + 40];
    path_of(id, p, sizeof(p));
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
    struct dems_staged *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        return DEMS_ENOMEM;
    }
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->fd = fd;
    s->length = length;
    uint8_t *cipher = malloc(DEMS_BLOB_CIPHER_CHUNK);
    s->tail = malloc(DEMS_BLOB_CHUNK);
    s->pend = malloc(PEND_CAP);
    int r = cipher == NULL || s->tail == NULL || s->pend == NULL || dems_sha256_init(&s->sha) < 0
                ? DEMS_ENOMEM
                : 0;
    if (r == 0)
        r = reload(s, cipher);
    free(cipher);
    if (r == 0 && s->offset > length)
        r = DEMS_ECRYPTO; /* not this upload's file */
    if (r < 0) {
        free_staged(s);
        return r;
    }
    pthread_mutex_lock(&mu);
    if (find(id) != NULL) {
        /* Loaded meanwhile by another request: keep that one. */
        pthread_mutex_unlock(&mu);
        free_staged(s);
        return 0;
    }
    r = settle(s);
    if (r == 0) {
        s->disk_len = s->file_len;
        s->synced_to = s->file_len;
        s->next = active;
        active = s;
    }
    pthread_mutex_unlock(&mu);
    if (r < 0)
        free_staged(s);
    return r;
}

/*
 * Writes buffered cipher bytes: all of them (all), or as many as end on a
 * page boundary. On failure the file is cut back to its last good length
 * and the state is marked broken (reloaded from the file after release).
 */
static int flush_pend(struct dems_staged *s, bool all)
{
    size_t n = s->pend_len;
    if (!all)
        n -= (size_t)((s->disk_len + n) % PAGE);
    if (n == 0)
        return 0;
    if (dems_blob_write_all(s->fd, s->pend, n) < 0) {
        s->broken = true;
        if (ftruncate(s->fd, (off_t)s->disk_len) == 0)
            lseek(s->fd, (off_t)s->disk_len, SEEK_SET);
        return DEMS_EIO;
    }
    s->disk_len += n;
    s->pend_len -= n;
    memmove(s->pend, s->pend + n, s->pend_len);
    if (s->disk_len - s->synced_to >= FLUSH_AFTER) {
        /* Start writeback now (asynchronous); completion's fsync waits for less. */
        sync_file_range(s->fd, (off_t)s->synced_to, (off_t)(s->disk_len - s->synced_to),
                        SYNC_FILE_RANGE_WRITE);
        s->synced_to = s->disk_len;
    }
    return 0;
}

/* Encrypts the tail as the next chunk and queues it for the file. */
static int push_tail(struct dems_staged *s, bool final)
{
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(
        &s->st, s->pend + s->pend_len, &clen, s->tail, s->tail_len, NULL, 0,
        final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
    s->pend_len += (size_t)clen;
    s->file_len += clen;
    s->tail_len = 0;
    s->sealed = final;
    return s->pend_len >= PEND_FLUSH ? flush_pend(s, false) : 0;
}

int dems_staging_write(struct dems_staged *s, const uint8_t *data, size_t n)
{
    if (s->broken || s->sealed || n > s->length - s->offset)
        return DEMS_EIO;
    dems_sha256_update(&s->sha, data, n);
    while (n > 0) {
        size_t take = DEMS_BLOB_CHUNK - s->tail_len;
        if (take > n)
            take = n;
        memcpy(s->tail + s->tail_len, data, take);
        s->tail_len += take;
        s->offset += take;
        data += take;
        n -= take;
        /* A full chunk goes to disk; the one that ends the upload is FINAL. */
        if (s->tail_len == DEMS_BLOB_CHUNK && push_tail(s, s->offset == s->length) < 0) {
            s->broken = true; /* hash and offset are ahead of the file: reload */
            return DEMS_EIO;
        }
    }
    return 0;
}

int dems_staging_mark(struct dems_staged *s, struct dems_staging_mark *m)
{
    /* The mark is a file length: write what is buffered first. */
    memset(m, 0, sizeof(*m));
    if (flush_pend(s, true) < 0)
        return DEMS_EIO;
    m->offset = s->offset;
    m->file_len = s->file_len;
    m->sealed = s->sealed;
    m->st = s->st;
    m->tail_len = s->tail_len;
    m->tail = malloc(DEMS_BLOB_CHUNK);
    if (m->tail == NULL || dems_sha256_init(&m->sha) < 0 || dems_sha256_copy(&m->sha, &s->sha) < 0)
        return DEMS_ENOMEM;
    memcpy(m->tail, s->tail, s->tail_len);
    return 0;
}

int dems_staging_rollback(struct dems_staged *s, const struct dems_staging_mark *m)
{
    if (ftruncate(s->fd, (off_t)m->file_len) != 0 ||
        lseek(s->fd, (off_t)m->file_len, SEEK_SET) < 0) {
        s->broken = true;
        return DEMS_EIO;
    }
    s->offset = m->offset;
    s->file_len = m->file_len;
    s->sealed = m->sealed;
    s->st = m->st;
    s->tail_len = m->tail_len;
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
        sodium_memzero(m->tail, DEMS_BLOB_CHUNK);
        free(m->tail);
        m->tail = NULL;
    }
    sodium_memzero(&m->st, sizeof(m->st));
    dems_sha256_done(&m->sha);
}

void dems_staging_release(struct dems_staged *s)
{
    pthread_mutex_lock(&mu);
    s->busy = false;
    if (s->broken) {
        /* The file is the truth: forget this state; the next request reloads it. */
        for (struct dems_staged **pp = &active; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == s) {
                *pp = s->next;
                free_staged(s);
                break;
            }
        }
    }
    pthread_mutex_unlock(&mu);
}

int dems_staging_finish(struct dems_staged *s, uint8_t digest[static 32])
{
    if (s->broken || s->offset != s->length)
        return DEMS_EIO;
    if (!s->sealed && push_tail(s, true) < 0)
        return DEMS_EIO;
    if (flush_pend(s, true) < 0 || fsync(s->fd) != 0)
        return DEMS_EIO;
    return dems_sha256_final(&s->sha, digest);
}

void dems_staging_close(const char *id)
{
    pthread_mutex_lock(&mu);
    for (struct dems_staged **pp = &active; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            struct dems_staged *s = *pp;
            *pp = s->next;
            free_staged(s);
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}

void dems_staging_remove(const char *id)
{
    dems_staging_close(id);
    char p[PATH_MAX + 40];
    path_of(id, p, sizeof(p));
    unlink(p);
}

void dems_staging_path(const char *id, char *out, size_t len)
{
    path_of(id, out, len);
}

bool dems_staging_loaded(const char *id)
{
    pthread_mutex_lock(&mu);
    bool r = find(id) != NULL;
    pthread_mutex_unlock(&mu);
    return r;
}

int64_t dems_staging_size(const char *id)
{
    pthread_mutex_lock(&mu);
    const struct dems_staged *s = find(id);
    int64_t r = s != NULL ? (int64_t)s->offset : -1;
    pthread_mutex_unlock(&mu);
    return r;
}

void dems_staging_done(void)
{
    pthread_mutex_lock(&mu);
    while (active != NULL) {
        struct dems_staged *s = active;
        active = s->next;
        free_staged(s);
    }
    pthread_mutex_unlock(&mu);
}
