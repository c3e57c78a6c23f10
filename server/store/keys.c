/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The master key: 32 random bytes in a file outside the database (default
 * data_dir/keys/master.key, mode 0600). It seals the ledger's signing seed
 * and wraps per-blob keys, so a copy of the database alone reveals no key.
 * Back it up separately from the database: without it sealed material
 * cannot be opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "demsd/ledger.h"

static int read_exact(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    uint8_t extra;
    return read(fd, &extra, 1) == 0 ? 0 : -1;
}

int dems_master_key_load(const char *path, uint8_t ret_key[static 32], char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
            close(fd);
            snprintf(err, errlen,
                     "master key %s must not be readable by group or others "
                     "(chmod 600)",
                     path);
            return DEMS_EINVAL;
        }
        uint8_t key[32];
        int r = read_exact(fd, key, sizeof(key));
        close(fd);
        if (r < 0) {
            sodium_memzero(key, sizeof(key));
            snprintf(err, errlen, "master key %s must hold exactly 32 bytes", path);
            return DEMS_EINVAL;
        }
        memcpy(ret_key, key, 32);
        sodium_memzero(key, sizeof(key));
        return 0;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "master key %s: %s", path, strerror(errno));
        return DEMS_EIO;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    if (mkdir(dirname(dir), 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the directory of %s: %s", path, strerror(errno));
        return DEMS_EIO;
    }
    uint8_t key[32];
    randombytes_buf(key, sizeof(key));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, key, sizeof(key)) == (ssize_t)sizeof(key) && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok) {
        sodium_memzero(key, sizeof(key));
        unlink(path);
        snprintf(err, errlen, "cannot write master key %s", path);
        return DEMS_EIO;
    }
    memcpy(ret_key, key, 32);
    sodium_memzero(key, sizeof(key));
    return 0;
}
