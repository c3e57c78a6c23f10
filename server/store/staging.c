/*
 * Upload staging files and the registry of active uploads (see
 * demsd/store.h). Writes go to the page cache from the loop thread (like
 * any socket buffer copy); fsync, which can block for long, only happens in
 * dems_staging_finish on the work pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "demsd/store.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct dems_staged *active;
static char dir[PATH_MAX];

int dems_staging_init(const char *data_dir)
{
    snprintf(dir, sizeof(dir), "%s/staging", data_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return DEMS_EIO;
    return 0;
}

static void path_of(const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", dir, id);
}

int dems_staging_create(const char *id)
{
    char p[PATH_MAX + 40];
    path_of(id, p, sizeof(p));
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return DEMS_EIO;
    close(fd);
    return 0;
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
    if (dems_sha256_init(&s->sha) < 0) {
        close(fd);
        free(s);
        return DEMS_ENOMEM;
    }
    static __thread uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            dems_sha256_done(&s->sha);
            close(fd);
            free(s);
            return DEMS_EIO;
        }
        if (n == 0)
            break;
        dems_sha256_update(&s->sha, buf, (size_t)n);
        s->offset += (uint64_t)n;
    }
    pthread_mutex_lock(&mu);
    if (find(id) != NULL) {
        /* Loaded meanwhile by another request: keep that one. */
        pthread_mutex_unlock(&mu);
        dems_sha256_done(&s->sha);
        close(fd);
        free(s);
        return 0;
    }
    s->next = active;
    active = s;
    pthread_mutex_unlock(&mu);
    return 0;
}

int dems_staging_write(struct dems_staged *s, const uint8_t *data, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(s->fd, data + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* Keep file and state consistent: drop the partial write. */
            if (ftruncate(s->fd, (off_t)s->offset) != 0 ||
                lseek(s->fd, (off_t)s->offset, SEEK_SET) < 0)
                return DEMS_EIO;
            return DEMS_EIO;
        }
        done += (size_t)w;
    }
    dems_sha256_update(&s->sha, data, n);
    s->offset += n;
    return 0;
}

int dems_staging_truncate(struct dems_staged *s, uint64_t offset, const struct dems_sha256 *sha)
{
    if (ftruncate(s->fd, (off_t)offset) != 0 || lseek(s->fd, (off_t)offset, SEEK_SET) < 0)
        return DEMS_EIO;
    s->offset = offset;
    return dems_sha256_copy(&s->sha, sha);
}

void dems_staging_release(struct dems_staged *s)
{
    pthread_mutex_lock(&mu);
    s->busy = false;
    pthread_mutex_unlock(&mu);
}

int dems_staging_finish(struct dems_staged *s, uint8_t digest[static 32])
{
    if (fsync(s->fd) != 0)
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
            close(s->fd);
            dems_sha256_done(&s->sha);
            free(s);
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

int64_t dems_staging_size(const char *id)
{
    char p[PATH_MAX + 40];
    path_of(id, p, sizeof(p));
    struct stat st;
    if (stat(p, &st) != 0)
        return -1;
    return (int64_t)st.st_size;
}

void dems_staging_done(void)
{
    pthread_mutex_lock(&mu);
    while (active != NULL) {
        struct dems_staged *s = active;
        active = s->next;
        close(s->fd);
        dems_sha256_done(&s->sha);
        free(s);
    }
    pthread_mutex_unlock(&mu);
}
