/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A blob written as a stream of plaintext (demsd/blobs.h, dems_blob_out_*):
 * the producer's thread hashes and encrypts (dems/sstream.h) into large
 * 4 KiB-aligned buffers, and a writer thread of its own writes them with
 * O_DIRECT while the next ones fill. Direct I/O skips the page cache: no
 * copy of every byte into it (on the development VM that copy cost as much
 * CPU as the encryption) and no gigabytes of dirty pages left for the final
 * fsync, which then has only the unaligned tail and the metadata to write.
 * Where the file system refuses O_DIRECT (tmpfs, some FUSE), the same
 * writes go through the page cache, with writeback started as they go
 * (sync_file_range), as staging does.
 *
 * Memory: OUT_NBUF buffers of OUT_BUFSZ bytes, plus one cipher chunk.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/sstream.h"
#include "dems/str.h"
#include "demsd/blobs.h"

#define OUT_NBUF  4
#define OUT_BUFSZ (2u << 20) /* a multiple of OUT_ALIGN */
#define OUT_ALIGN 4096u

_Static_assert(OUT_BUFSZ % OUT_ALIGN == 0, "whole aligned blocks");

struct dems_blob_out {
    int fd;
    bool direct; /* the file is open with O_DIRECT */
    crypto_secretstream_xchacha20poly1305_state st;
    struct dems_sstream x;
    struct dems_sha256 h;
    bool hashing;
    uint8_t *plain, *cipher; /* one chunk each */
    size_t plain_len;
    uint64_t size; /* plaintext bytes */
    /* the writer */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[OUT_NBUF];
    size_t len[OUT_NBUF];
    uint64_t head, tail; /* buffers filled / written */
    bool closing;
    int err;         /* the writer's first error */
    uint64_t off;    /* where the writer's next buffer goes (its own) */
    uint64_t synced; /* buffered fallback: writeback started up to here */
};

/* Without O_DIRECT from now on (the file system refused it, or the unaligned tail). */
static int drop_direct(struct dems_blob_out *o)
{
    int fl = fcntl(o->fd, F_GETFL);
    if (fl < 0 || fcntl(o->fd, F_SETFL, fl & ~O_DIRECT) < 0)
        return DEMS_EIO;
    o->direct = false;
    return 0;
}

static int pwrite_all(struct dems_blob_out *o, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(o->fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL && o->direct) {
            if (drop_direct(o) < 0)
                return DEMS_EIO;
            continue; /* O_DIRECT accepted at open but not for writes */
        }
        if (w < 0 && (errno == ENOSPC || errno == EDQUOT))
            return DEMS_ENOSPC;
        if (w <= 0)
            return DEMS_EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Writes one buffer at the writer's offset (the last may be short: its tail goes buffered). */
static int write_buf(struct dems_blob_out *o, const uint8_t *p, size_t n)
{
    size_t whole = o->direct ? n - n % OUT_ALIGN : n;
    int r = whole > 0 ? pwrite_all(o, p, whole, o->off) : 0;
    if (r == 0 && whole < n)
        r = drop_direct(o);
    if (r == 0 && whole < n)
        r = pwrite_all(o, p + whole, n - whole, o->off + whole);
    o->off += n;
    if (r == 0 && !o->direct && o->off - o->synced >= OUT_BUFSZ) {
        sync_file_range(o->fd, (off_t)o->synced, (off_t)(o->off - o->synced),
                        SYNC_FILE_RANGE_WRITE);
        o->synced = o->off;
    }
    return r;
}

static void *writer_main(void *arg)
{
    struct dems_blob_out *o = arg;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (o->tail == o->head && !o->closing)
            pthread_cond_wait(&o->cv, &o->mu);
        if (o->tail == o->head)
            break;
        size_t i = (size_t)(o->tail % OUT_NBUF);
        bool failed = o->err < 0;
        pthread_mutex_unlock(&o->mu);
        int r = failed ? 0 : write_buf(o, o->buf[i], o->len[i]);
        pthread_mutex_lock(&o->mu);
        if (r < 0 && o->err == 0)
            o->err = r;
        o->tail++;
        pthread_cond_broadcast(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

/* Hands the filling buffer to the writer; waits while every buffer is taken. */
static int hand_over(struct dems_blob_out *o)
{
    pthread_mutex_lock(&o->mu);
    o->head++;
    pthread_cond_broadcast(&o->cv);
    while (o->head - o->tail == OUT_NBUF && o->err == 0)
        pthread_cond_wait(&o->cv, &o->mu);
    int r = o->err;
    pthread_mutex_unlock(&o->mu);
    if (r == 0)
        o->len[o->head % OUT_NBUF] = 0;
    return r;
}

/* Appends cipher bytes to the filling buffer. */
static int queue(struct dems_blob_out *o, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t i = (size_t)(o->head % OUT_NBUF);
        size_t k = OUT_BUFSZ - o->len[i] < n ? OUT_BUFSZ - o->len[i] : n;
        memcpy(o->buf[i] + o->len[i], p, k);
        o->len[i] += k;
        p += k;
        n -= k;
        if (o->len[i] == OUT_BUFSZ) {
            int r = hand_over(o);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

static int seal(struct dems_blob_out *o, bool final)
{
    uint8_t tag = final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
    int r = dems_sstream_push(&o->x, &o->st, o->cipher, o->plain, o->plain_len, tag);
    size_t n = o->plain_len + crypto_secretstream_xchacha20poly1305_ABYTES;
    o->plain_len = 0;
    return r < 0 ? r : queue(o, o->cipher, n);
}

static int start(struct dems_blob_out *o, const uint8_t master[static 32])
{
    uint8_t head[DEMS_BLOB_HEADER_LEN];
    for (size_t i = 0; i < OUT_NBUF; i++)
        if (posix_memalign((void **)&o->buf[i], OUT_ALIGN, OUT_BUFSZ) != 0)
            return DEMS_ENOMEM;
    o->plain = malloc(DEMS_BLOB_CHUNK);
    o->cipher = malloc(DEMS_BLOB_CIPHER_CHUNK);
    if (o->plain == NULL || o->cipher == NULL || dems_sstream_init(&o->x) < 0)
        return DEMS_ENOMEM;
    if (dems_sha256_init(&o->h) < 0)
        return DEMS_ENOMEM;
    o->hashing = true;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    if (pthread_create(&o->thread, NULL, writer_main, o) != 0) {
        pthread_mutex_destroy(&o->mu);
        pthread_cond_destroy(&o->cv);
        return DEMS_ENOMEM;
    }
    o->started = true;
    dems_blob_stream_new(master, head, &o->st);
    return queue(o, head, sizeof head);
}

int dems_blob_out_open(const char *path, const uint8_t master[static 32],
                       struct dems_blob_out **ret)
{
    struct dems_blob_out *o = calloc(1, sizeof *o);
    if (o == NULL)
        return DEMS_ENOMEM;
    o->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
    o->direct = o->fd >= 0;
    if (o->fd < 0 && errno == EINVAL) /* no O_DIRECT here */
        o->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (o->fd < 0) {
        int r = errno == ENOSPC || errno == EDQUOT ? DEMS_ENOSPC : DEMS_EIO;
        free(o);
        return r;
    }
    int r = start(o, master);
    if (r < 0) {
        dems_blob_out_free(o);
        return r;
    }
    *ret = o;
    return 0;
}

int dems_blob_out_write(struct dems_blob_out *o, const uint8_t *p, size_t n)
{
    dems_sha256_update(&o->h, p, n);
    o->size += n;
    while (n > 0) {
        /* A full chunk is sealed only when more bytes follow, so the last one is FINAL. */
        if (o->plain_len == DEMS_BLOB_CHUNK) {
            int r = seal(o, false);
            if (r < 0)
                return r;
        }
        size_t k = DEMS_BLOB_CHUNK - o->plain_len < n ? DEMS_BLOB_CHUNK - o->plain_len : n;
        memcpy(o->plain + o->plain_len, p, k);
        o->plain_len += k;
        p += k;
        n -= k;
    }
    return 0;
}

/* Stops the writer after what is queued (nothing more when !ok); its first error. */
static int stop(struct dems_blob_out *o, bool ok)
{
    if (!o->started)
        return 0;
    pthread_mutex_lock(&o->mu);
    if (ok && o->len[o->head % OUT_NBUF] > 0)
        o->head++;
    if (!ok && o->err == 0)
        o->err = DEMS_EIO; /* abandoned: write nothing more */
    o->closing = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    pthread_join(o->thread, NULL);
    o->started = false;
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    return ok ? o->err : 0;
}

int dems_blob_out_close(struct dems_blob_out *o, uint8_t sha256[static 32], uint64_t *ret_size)
{
    int r = seal(o, true);
    int sr = stop(o, r == 0);
    if (r == 0)
        r = sr;
    if (r == 0 && fsync(o->fd) != 0)
        r = DEMS_EIO;
    if (r == 0)
        r = dems_sha256_final(&o->h, sha256);
    if (r == 0 && ret_size != NULL)
        *ret_size = o->size;
    return r;
}

void dems_blob_out_free(struct dems_blob_out *o)
{
    if (o == NULL)
        return;
    stop(o, false);
    if (o->fd >= 0)
        close(o->fd);
    if (o->hashing)
        dems_sha256_done(&o->h);
    dems_sstream_done(&o->x);
    sodium_memzero(&o->st, sizeof o->st);
    for (size_t i = 0; i < OUT_NBUF; i++)
        free(o->buf[i]);
    if (o->plain != NULL)
        sodium_memzero(o->plain, DEMS_BLOB_CHUNK);
    free(o->plain);
    free(o->cipher);
    free(o);
}

int dems_blob_put_mem(const char *data_dir, const uint8_t master[static 32], const uint8_t *data,
                      size_t len, char ret_id[static 65])
{
    static atomic_uint_fast64_t serial;
    char dir[PATH_MAX], tmp[PATH_MAX + 64];
    int n = snprintf(dir, sizeof(dir), "%s/work", data_dir);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return DEMS_EIO;
    mkdir(dir, 0700);
    snprintf(tmp, sizeof(tmp), "%s/mem-%ld-%llu.blob", dir, (long)getpid(),
             (unsigned long long)atomic_fetch_add(&serial, 1));
    unlink(tmp);
    struct dems_blob_out *o = NULL;
    int r = dems_blob_out_open(tmp, master, &o);
    for (size_t off = 0; r == 0 && off < len;) {
        size_t k = len - off < DEMS_BLOB_CHUNK ? len - off : DEMS_BLOB_CHUNK;
        r = dems_blob_out_write(o, data + off, k);
        off += k;
    }
    uint8_t digest[32];
    uint64_t size = 0;
    if (r == 0)
        r = dems_blob_out_close(o, digest, &size);
    dems_blob_out_free(o);
    if (r == 0) {
        dems_hex_encode(digest, 32, ret_id);
        r = dems_blob_adopt(data_dir, ret_id, tmp);
    }
    if (r < 0)
        unlink(tmp);
    return r;
}
