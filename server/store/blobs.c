/* SPDX-License-Identifier: Apache-2.0 */
/* The encrypted, content-addressed blob store (see demsd/blobs.h). */
#include "demsd/blobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/sstream.h"
#include "demsd/log.h"
#include "demsd/objstore.h"

#define MAGIC        "DEMSBLOB1\n"
#define MAGIC_LEN    10
#define WRAPPED_LEN  (crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 32)
#define HEADER_LEN   DEMS_BLOB_HEADER_LEN
#define CIPHER_CHUNK DEMS_BLOB_CIPHER_CHUNK

_Static_assert(HEADER_LEN ==
                   MAGIC_LEN + WRAPPED_LEN + crypto_secretstream_xchacha20poly1305_HEADERBYTES,
               "blob header layout");

/*
 * Where blobs live when not in data_dir/blobs: an object store (set once at
 * start-up, before any thread uses the blob store; docs/architecture.md,
 * "Blob store"). The same encrypted files, under the key blobs/XX/ID.
 */
static struct dems_objstore *remote;

/* Bytes fetched per ranged GET when reading a blob from the object store. */
#define REMOTE_WINDOW (2u << 20)

void dems_blob_use_store(struct dems_objstore *s)
{
    remote = s;
}

struct dems_objstore *dems_blob_store(void)
{
    return remote;
}

static void blob_key(const char *id, char *out, size_t len)
{
    snprintf(out, len, "blobs/%.2s/%s", id, id);
}

struct dems_blob {
    int fd;             /* a local file, or -1 */
    char key[96];       /* the object's key when fd is -1 */
    uint64_t remote_at; /* the object's offset of the window's end */
    bool remote_eof;    /* a GET came back short: the object ends at remote_at */
    uint8_t *win;       /* REMOTE_WINDOW bytes fetched ahead */
    size_t win_len, win_pos;
    crypto_secretstream_xchacha20poly1305_state st;
    struct dems_sstream x; /* OpenSSL's ChaCha20-Poly1305 (dems/sstream.h) */
    bool done;
    uint8_t buf[CIPHER_CHUNK];
};

static void blob_path(const char *data_dir, const char *id, char *out, size_t len, bool dir_only)
{
    if (dir_only)
        snprintf(out, len, "%s/blobs/%.2s", data_dir, id);
    else
        snprintf(out, len, "%s/blobs/%.2s/%s", data_dir, id, id);
}

int dems_blob_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == ENOSPC || errno == EDQUOT))
            return DEMS_ENOSPC;
        if (w <= 0)
            return DEMS_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads up to n bytes, fewer only at end of file. */
ssize_t dems_blob_read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return DEMS_EIO;
    int r = fsync(fd) == 0 ? 0 : DEMS_EIO;
    close(fd);
    return r;
}

/* Creates data_dir/blobs/xx for id; its path in dir. */
static int make_dirs(const char *data_dir, const char *id, char *dir, size_t len)
{
    snprintf(dir, len, "%s/blobs", data_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return DEMS_EIO;
    blob_path(data_dir, id, dir, len, true);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return DEMS_EIO;
    return 0;
}

void dems_blob_stream_new(const uint8_t master[static 32], uint8_t head[static HEADER_LEN],
                          crypto_secretstream_xchacha20poly1305_state *st)
{
    uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    crypto_secretstream_xchacha20poly1305_keygen(key);
    memcpy(head, MAGIC, MAGIC_LEN);
    uint8_t *wrap = head + MAGIC_LEN;
    randombytes_buf(wrap, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(wrap + crypto_secretbox_NONCEBYTES, key, sizeof(key), wrap, master);
    crypto_secretstream_xchacha20poly1305_init_push(st, head + MAGIC_LEN + WRAPPED_LEN, key);
    sodium_memzero(key, sizeof(key));
}

int dems_blob_stream_open(const uint8_t master[static 32], const uint8_t head[static HEADER_LEN],
                          crypto_secretstream_xchacha20poly1305_state *st)
{
    uint8_t key[32];
    const uint8_t *wrap = head + MAGIC_LEN;
    int r = memcmp(head, MAGIC, MAGIC_LEN) == 0 ? 0 : DEMS_ECRYPTO;
    if (r == 0 && crypto_secretbox_open_easy(key, wrap + crypto_secretbox_NONCEBYTES,
                                             crypto_secretbox_MACBYTES + 32, wrap, master) != 0)
        r = DEMS_ECRYPTO;
    if (r == 0 && crypto_secretstream_xchacha20poly1305_init_pull(
                      st, head + MAGIC_LEN + WRAPPED_LEN, key) != 0)
        r = DEMS_ECRYPTO;
    sodium_memzero(key, sizeof(key));
    return r;
}

/* Streams src through secretstream into fd, hashing the plaintext. */
static int encrypt_into(int out, int in, const uint8_t master[static 32], uint8_t digest[32])
{
    uint8_t head[HEADER_LEN];
    crypto_secretstream_xchacha20poly1305_state st;
    dems_blob_stream_new(master, head, &st);
    int r = dems_blob_write_all(out, head, sizeof(head));
    struct dems_sha256 sha;
    uint8_t *plain = malloc(DEMS_BLOB_CHUNK), *cipher = malloc(CIPHER_CHUNK);
    if (dems_sha256_init(&sha) < 0 || plain == NULL || cipher == NULL)
        r = DEMS_ENOMEM;
    /* Read one chunk ahead so the last one can carry the FINAL tag. */
    ssize_t n = r == 0 ? dems_blob_read_full(in, plain, DEMS_BLOB_CHUNK) : 0;
    while (r == 0) {
        if (n < 0) {
            r = DEMS_EIO;
            break;
        }
        uint8_t *next = malloc(DEMS_BLOB_CHUNK);
        ssize_t m = next != NULL ? dems_blob_read_full(in, next, DEMS_BLOB_CHUNK) : -1;
        bool last = n < DEMS_BLOB_CHUNK || m == 0;
        dems_sha256_update(&sha, plain, (size_t)n);
        unsigned long long clen = 0;
        crypto_secretstream_xchacha20poly1305_push(
            &st, cipher, &clen, plain, (unsigned long long)n, NULL, 0,
            last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
        r = dems_blob_write_all(out, cipher, (size_t)clen);
        free(plain);
        plain = next;
        n = m;
        if (last || plain == NULL)
            break;
    }
    if (plain == NULL && r == 0 && n < 0)
        r = DEMS_ENOMEM;
    free(plain);
    free(cipher);
    if (r == 0)
        r = dems_sha256_final(&sha, digest);
    dems_sha256_done(&sha);
    return r;
}

int dems_blob_put(const char *data_dir, const uint8_t master[static 32], const char *id,
                  const char *src)
{
    char dir[PATH_MAX], path[PATH_MAX + 80], tmp[PATH_MAX + 100];
    if (remote != NULL) {
        if (dems_blob_exists(data_dir, id))
            return 0;
        /* Encrypted beside the uploads being staged, then sent and removed. */
        snprintf(dir, sizeof(dir), "%s/work", data_dir);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return DEMS_EIO;
        snprintf(tmp, sizeof(tmp), "%s/blob-put.XXXXXX", dir);
        int out = mkostemp(tmp, O_CLOEXEC);
        if (out < 0)
            return DEMS_EIO;
        int in = open(src, O_RDONLY | O_CLOEXEC);
        uint8_t digest[32];
        int r = in >= 0 ? encrypt_into(out, in, master, digest) : DEMS_EIO;
        char hex[65];
        if (r == 0) {
            sodium_bin2hex(hex, sizeof(hex), digest, 32);
            if (strcmp(hex, id) != 0)
                r = DEMS_ECRYPTO;
        }
        if (in >= 0)
            close(in);
        close(out);
        if (r == 0)
            r = dems_blob_adopt(data_dir, id, tmp);
        unlink(tmp);
        return r;
    }
    if (make_dirs(data_dir, id, dir, sizeof(dir)) < 0)
        return DEMS_EIO;
    blob_path(data_dir, id, path, sizeof(path), false);
    if (access(path, F_OK) == 0)
        return 0; /* identical content is stored once */
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = in >= 0 && out >= 0 ? 0 : DEMS_EIO;
    uint8_t digest[32];
    if (r == 0)
        r = encrypt_into(out, in, master, digest);
    if (r == 0) {
        char hex[65];
        sodium_bin2hex(hex, sizeof(hex), digest, 32);
        if (strcmp(hex, id) != 0)
            r = DEMS_ECRYPTO; /* the staged bytes changed under us */
    }
    if (r == 0 && fsync(out) != 0)
        r = DEMS_EIO;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (r == 0 && rename(tmp, path) != 0)
        r = DEMS_EIO;
    if (r == 0)
        r = fsync_dir(dir);
    if (r < 0)
        unlink(tmp);
    return r;
}

/*
 * Sends src to the object store as blob id, unless the store holds it
 * already: an object of the same size (a blob's size follows from its
 * plaintext's, and its plaintext is what its name hashes). One of another
 * size is not that blob: it is replaced. The local file goes only once the
 * store answers for the object, with the right size.
 */
static int adopt_remote(const char *id, const char *src)
{
    char key[96];
    blob_key(id, key, sizeof(key));
    struct stat st;
    if (stat(src, &st) != 0)
        return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
    uint64_t want = (uint64_t)st.st_size, size = 0;
    int r = dems_objstore_head(remote, key, &size);
    if (r == 0 && size != want) {
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s,s:I,s:I}", "event", "blob_size_mismatch", "blob", id, "stored",
                           (json_int_t)size, "expected", (json_int_t)want),
                 "the object store holds blob %s with %llu bytes, not %llu: replacing it", id,
                 (unsigned long long)size, (unsigned long long)want);
        r = dems_objstore_delete(remote, key);
        if (r == 0)
            r = DEMS_ENOTFOUND;
    }
    if (r == DEMS_ENOTFOUND) {
        r = dems_objstore_put_file(remote, key, src);
        if (r == 0)
            r = dems_objstore_head(remote, key, &size);
        if (r == 0 && size != want)
            r = DEMS_EIO; /* logged above on the next attempt */
    }
    if (r == 0)
        unlink(src);
    return r;
}

int dems_blob_adopt(const char *data_dir, const char *id, const char *src)
{
    char dir[PATH_MAX], path[PATH_MAX + 80];
    if (remote != NULL)
        return adopt_remote(id, src);
    if (make_dirs(data_dir, id, dir, sizeof(dir)) < 0)
        return DEMS_EIO;
    blob_path(data_dir, id, path, sizeof(path), false);
    if (access(path, F_OK) == 0) {
        unlink(src); /* identical content is stored once */
        return 0;
    }
    if (rename(src, path) != 0)
        return DEMS_EIO;
    return fsync_dir(dir);
}

int dems_blob_adopt_object(const char *id, const char *src_key, uint64_t size)
{
    if (remote == NULL)
        return DEMS_EINVAL;
    char key[96];
    blob_key(id, key, sizeof(key));
    uint64_t have = 0, stored = 0;
    int r = dems_objstore_head(remote, key, &stored);
    if (r == 0 && stored == size) {
        /* Stored already (identical content, or a copy whose answer was lost). */
        return dems_objstore_delete(remote, src_key);
    }
    if (r < 0 && r != DEMS_ENOTFOUND)
        return r;
    r = dems_objstore_head(remote, src_key, &have);
    if (r == 0 && have != size) {
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s,s:I,s:I}", "event", "staged_size_mismatch", "blob", id,
                           "stored", (json_int_t)have, "expected", (json_int_t)size),
                 "the staged object %s holds %llu bytes, not %llu", src_key,
                 (unsigned long long)have, (unsigned long long)size);
        return DEMS_EIO;
    }
    if (r == 0)
        r = dems_objstore_copy(remote, src_key, key, size);
    if (r == 0)
        r = dems_objstore_head(remote, key, &stored);
    if (r == 0 && stored != size)
        r = DEMS_EIO;
    if (r == 0)
        r = dems_objstore_delete(remote, src_key);
    return r;
}

int dems_blob_erase(const char *data_dir, const char *id)
{
    char dir[PATH_MAX], path[PATH_MAX + 80];
    if (remote != NULL) {
        /* An object cannot be overwritten in place: its deletion is the erasure
         * (versioned or locked containers keep copies: docs/operations.md). */
        char key[96];
        blob_key(id, key, sizeof(key));
        return dems_objstore_delete(remote, key);
    }
    blob_path(data_dir, id, path, sizeof(path), false);
    blob_path(data_dir, id, dir, sizeof(dir), true);
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : DEMS_EIO;
    /* The wrapped key and the stream header: random bytes in their place. */
    uint8_t noise[HEADER_LEN - MAGIC_LEN];
    randombytes_buf(noise, sizeof(noise));
    bool ok =
        pwrite(fd, noise, sizeof(noise), MAGIC_LEN) == (ssize_t)sizeof(noise) && fdatasync(fd) == 0;
    sodium_memzero(noise, sizeof(noise));
    if (close(fd) != 0)
        ok = false;
    if (!ok)
        return DEMS_EIO;
    if (unlink(path) != 0 && errno != ENOENT)
        return DEMS_EIO;
    return fsync_dir(dir);
}

int dems_blob_find(const char *data_dir, const char *id)
{
    char path[PATH_MAX + 80];
    if (remote != NULL) {
        uint64_t size;
        blob_key(id, path, sizeof(path));
        return dems_objstore_head(remote, path, &size);
    }
    blob_path(data_dir, id, path, sizeof(path), false);
    if (access(path, F_OK) == 0)
        return 0;
    return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
}

bool dems_blob_exists(const char *data_dir, const char *id)
{
    return dems_blob_find(data_dir, id) == 0;
}

/*
 * Reads up to n bytes of the blob's file, fewer only at its end: from the
 * local file, or from the object store through a window of ranged GETs.
 * Returns the count or a DEMS_E* code.
 */
static ssize_t src_read(struct dems_blob *b, uint8_t *p, size_t n)
{
    if (b->fd >= 0) {
        ssize_t got = dems_blob_read_full(b->fd, p, n);
        return got < 0 ? DEMS_EIO : got;
    }
    size_t got = 0;
    while (got < n) {
        if (b->win_pos == b->win_len) {
            size_t len;
            if (b->remote_eof)
                break;
            int r = dems_objstore_get(remote, b->key, b->remote_at, b->win, REMOTE_WINDOW, &len);
            if (r < 0)
                return r;
            b->remote_eof = len < REMOTE_WINDOW;
            if (len == 0)
                break;
            b->remote_at += len;
            b->win_len = len;
            b->win_pos = 0;
        }
        size_t take = b->win_len - b->win_pos < n - got ? b->win_len - b->win_pos : n - got;
        memcpy(p + got, b->win + b->win_pos, take);
        b->win_pos += take;
        got += take;
    }
    return (ssize_t)got;
}

/* Opens a blob whose file is fd (>= 0) or, with fd -1, the object key. */
static int open_blob(int fd, const char *key, const uint8_t master[static 32],
                     struct dems_blob **ret)
{
    struct dems_blob *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        if (fd >= 0)
            close(fd);
        return DEMS_ENOMEM;
    }
    b->fd = fd;
    int r = 0;
    if (fd < 0) {
        snprintf(b->key, sizeof(b->key), "%s", key);
        b->win = malloc(REMOTE_WINDOW);
        if (b->win == NULL)
            r = DEMS_ENOMEM;
    }
    uint8_t head[HEADER_LEN];
    ssize_t n = r == 0 ? src_read(b, head, sizeof(head)) : r;
    r = n == (ssize_t)sizeof(head) ? 0 : n < 0 ? (int)n : DEMS_ECRYPTO;
    if (r == 0)
        r = dems_blob_stream_open(master, head, &b->st);
    if (r == 0)
        r = dems_sstream_init(&b->x);
    if (r < 0) {
        sodium_memzero(&b->st, sizeof(b->st));
        if (fd >= 0)
            close(fd);
        free(b->win);
        free(b);
        return r;
    }
    if (fd >= 0)
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    b->done = false;
    *ret = b;
    return 0;
}

int dems_blob_open(const char *data_dir, const uint8_t master[static 32], const char *id,
                   struct dems_blob **ret)
{
    char path[PATH_MAX + 80];
    if (remote != NULL) {
        blob_key(id, path, sizeof(path));
        return open_blob(-1, path, master, ret);
    }
    blob_path(data_dir, id, path, sizeof(path), false);
    return dems_blob_open_file(path, master, ret);
}

int dems_blob_open_file(const char *path, const uint8_t master[static 32], struct dems_blob **ret)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
    return open_blob(fd, NULL, master, ret);
}

long dems_blob_read(struct dems_blob *b, uint8_t out[static DEMS_BLOB_CHUNK])
{
    if (b->done)
        return 0;
    ssize_t n = src_read(b, b->buf, CIPHER_CHUNK);
    if (n < 0)
        return (long)n;
    if (n < (ssize_t)crypto_secretstream_xchacha20poly1305_ABYTES)
        return DEMS_ECRYPTO; /* truncated: the FINAL chunk never came */
    size_t plen = 0;
    uint8_t tag = 0;
    if (dems_sstream_pull(&b->x, &b->st, out, &plen, &tag, b->buf, (size_t)n) < 0)
        return DEMS_ECRYPTO;
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        uint8_t extra;
        ssize_t x = src_read(b, &extra, 1);
        if (x < 0)
            return (long)x; /* the store failed: not evidence of tampering */
        if (x != 0)
            return DEMS_ECRYPTO; /* bytes after the end */
        b->done = true;
    } else if (n < (ssize_t)CIPHER_CHUNK) {
        return DEMS_ECRYPTO;
    }
    return (long)plen;
}

void dems_blob_close(struct dems_blob *b)
{
    if (b == NULL)
        return;
    if (b->fd >= 0)
        close(b->fd);
    free(b->win);
    dems_sstream_done(&b->x);
    sodium_memzero(&b->st, sizeof(b->st));
    free(b);
}

int dems_blob_verify(const char *data_dir, const uint8_t master[static 32], const char *id)
{
    struct dems_blob *b;
    int r = dems_blob_open(data_dir, master, id, &b);
    if (r < 0)
        return r;
    uint8_t *chunk = malloc(DEMS_BLOB_CHUNK);
    if (chunk == NULL) {
        dems_blob_close(b);
        return DEMS_ENOMEM;
    }
    struct dems_sha256 sha;
    if (dems_sha256_init(&sha) < 0) {
        free(chunk);
        dems_blob_close(b);
        return DEMS_ENOMEM;
    }
    long n;
    while ((n = dems_blob_read(b, chunk)) > 0)
        dems_sha256_update(&sha, chunk, (size_t)n);
    free(chunk);
    dems_blob_close(b);
    uint8_t digest[32];
    char hex[65];
    int fr = n < 0 ? (int)n : dems_sha256_final(&sha, digest);
    dems_sha256_done(&sha);
    if (fr < 0)
        return fr;
    sodium_bin2hex(hex, sizeof(hex), digest, 32);
    return strcmp(hex, id) == 0 ? 0 : DEMS_ECRYPTO;
}

/* Appends name to a growing array of strings. */
static int names_add(char ***names, size_t *n, size_t *cap, const char *name)
{
    if (*n == *cap) {
        size_t ncap = *cap > 0 ? *cap * 2 : 256;
        char **grown = realloc(*names, ncap * sizeof(*grown));
        if (grown == NULL)
            return DEMS_ENOMEM;
        *names = grown;
        *cap = ncap;
    }
    (*names)[*n] = strdup(name);
    if ((*names)[*n] == NULL)
        return DEMS_ENOMEM;
    (*n)++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the files of one shard directory (blobs/XX) last modified before `before`. */
static int list_shard(const char *path, int64_t before, char ***names, size_t *n, size_t *cap)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return DEMS_EIO;
    int r = 0;
    struct dirent *e;
    while (r == 0 && (e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            S_ISDIR(st.st_mode) || (int64_t)st.st_mtime >= before)
            continue;
        r = names_add(names, n, cap, e->d_name);
    }
    closedir(d);
    return r;
}

/* The object store's keys under blobs/ (a blob's name is its last segment). */
static int list_remote(int64_t before, char ***ret_names, size_t *ret_n)
{
    struct dems_objstore_entry *e;
    size_t ne;
    int r = dems_objstore_list(remote, "blobs/", &e, &ne);
    if (r < 0)
        return r;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; r == 0 && i < ne; i++) {
        if (e[i].mtime >= before)
            continue;
        const char *slash = strrchr(e[i].key, '/');
        r = names_add(&names, &n, &cap, slash != NULL ? slash + 1 : e[i].key);
    }
    dems_objstore_list_free(e, ne);
    if (r < 0) {
        dems_blob_list_free(names, n);
        return r;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), by_name);
    *ret_names = names;
    *ret_n = n;
    return 0;
}

int dems_blob_list(const char *data_dir, int64_t before, char ***ret_names, size_t *ret_n)
{
    char top[PATH_MAX];
    *ret_names = NULL;
    *ret_n = 0;
    if (remote != NULL)
        return list_remote(before, ret_names, ret_n);
    snprintf(top, sizeof(top), "%s/blobs", data_dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    DIR *d = opendir(top);
    if (d == NULL && errno != ENOENT)
        return DEMS_EIO;
    struct dirent *e;
    while (d != NULL && r == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char shard[PATH_MAX + 300];
        struct stat st;
        snprintf(shard, sizeof(shard), "%s/%s", top, e->d_name);
        if (lstat(shard, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            r = list_shard(shard, before, &names, &n, &cap);
        else if ((int64_t)st.st_mtime < before) /* not where a blob belongs: report it too */
            r = names_add(&names, &n, &cap, e->d_name);
    }
    if (d != NULL)
        closedir(d);
    if (r < 0) {
        dems_blob_list_free(names, n);
        return r;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), by_name);
    *ret_names = names;
    *ret_n = n;
    return 0;
}

void dems_blob_list_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

size_t dems_blob_orphans(char **names, size_t n, char **referenced, size_t nref)
{
    if (nref > 1)
        qsort(referenced, nref, sizeof(*referenced), by_name);
    size_t kept = 0, j = 0;
    for (size_t i = 0; i < n; i++) {
        int c = 1;
        while (j < nref && (c = strcmp(referenced[j], names[i])) < 0)
            j++;
        if (j < nref && c == 0)
            free(names[i]); /* referenced */
        else
            names[kept++] = names[i];
    }
    return kept;
}
