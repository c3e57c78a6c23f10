/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dems-objstore-driver: the object-store client (server/store/obj*.c) from
 * the command line, for test_objstore.py against Azurite and s3rver. The
 * store is configured as demsd's is, by DEMS_STORE* environment variables.
 *
 *   prepare                     check the store, create the container
 *   put KEY FILE                store FILE (staged blocks when large)
 *   get KEY [OFFSET [LENGTH]]   bytes to standard output
 *   head KEY                    the size
 *   delete KEY
 *   list PREFIX                 "KEY SIZE MTIME" lines
 *   stage KEY FILE PARTSIZE     staged parts of PARTSIZE bytes, committed
 *   stage-abort KEY FILE        begin, one part, abort
 *   copy SRC DST                copy an object (server-side)
 *
 * Exit status: 0 done, 3 not found, 4 credentials refused, 1 any other
 * failure (one line on standard error), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/log.h"
#include "demsd/objstore.h"

extern char **environ;

static int usage(void)
{
    fprintf(stderr, "usage: dems-objstore-driver prepare | put KEY FILE | get KEY [OFFSET "
                    "[LENGTH]] | head KEY | delete KEY | list PREFIX | stage KEY FILE PARTSIZE | "
                    "stage-abort KEY FILE | copy SRC DST\n");
    return 2;
}

static int status_of(int r)
{
    return r == 0 ? 0 : r == DEMS_ENOTFOUND ? 3 : r == DEMS_EAUTH ? 4 : 1;
}

static int fail(const char *what, int r)
{
    fprintf(stderr, "dems-objstore-driver: %s: %s (%s)\n", what, dems_strerror(r),
            dems_err_code(r));
    return status_of(r);
}

static bool number(const char *s, uint64_t max, uint64_t *out)
{
    return dems_parse_u64(s, strlen(s), max, out) == 0;
}

static int do_get(struct dems_objstore *s, const char *key, uint64_t off, uint64_t len)
{
    size_t bufsz = 4u << 20;
    uint8_t *buf = malloc(bufsz);
    if (buf == NULL)
        return fail("get", DEMS_ENOMEM);
    int r = 0;
    while (len > 0) {
        size_t want = len < bufsz ? (size_t)len : bufsz;
        size_t n;
        r = dems_objstore_get(s, key, off, buf, want, &n);
        if (r < 0 || n == 0)
            break;
        if (fwrite(buf, 1, n, stdout) != n) {
            r = DEMS_EIO;
            break;
        }
        off += n;
        len -= n;
        if (n < want)
            break;
    }
    free(buf);
    return r < 0 ? fail("get", r) : 0;
}

static int do_stage(struct dems_objstore *s, const char *key, const char *path, uint64_t part,
                    bool abort_it)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "dems-objstore-driver: %s: %s\n", path, strerror(errno));
        return 1;
    }
    uint8_t *buf = malloc((size_t)part);
    struct stat sb;
    size_t maxparts = fstat(fd, &sb) == 0 ? (size_t)((uint64_t)sb.st_size / part) + 1 : 1;
    char(*tags)[DEMS_OBJSTORE_TAG_MAX] = calloc(maxparts, sizeof(*tags));
    struct dems_objstore_stage st;
    int r = buf == NULL || tags == NULL ? DEMS_ENOMEM : dems_objstore_stage_begin(s, key, &st);
    unsigned n = 0;
    while (r == 0) {
        ssize_t got = dems_blob_read_full(fd, buf, (size_t)part);
        if (got < 0)
            r = DEMS_EIO;
        if (got <= 0 && n > 0)
            break;
        if (r == 0 && n >= maxparts)
            r = DEMS_EIO; /* the file grew */
        /* Part numbers 2, 4, 6, ...: gaps, and for the first part a
         * superseded one (number 1, other bytes) that the commit leaves out,
         * as when another node took an upload over. */
        if (r == 0 && n == 0 && !abort_it) {
            char decoy[DEMS_OBJSTORE_TAG_MAX];
            r = dems_objstore_stage_put(s, &st, 1, "superseded", 10, decoy);
        }
        if (r == 0)
            r = dems_objstore_stage_put(s, &st, 2 * n + 2, buf, (size_t)got, tags[n]);
        n++;
        if (abort_it || (size_t)got < part)
            break;
    }
    close(fd);
    free(buf);
    if (r == 0)
        r = abort_it ? dems_objstore_stage_abort(s, &st)
                     : dems_objstore_stage_commit(s, &st, n, tags);
    free(tags);
    return r < 0 ? fail(abort_it ? "stage-abort" : "stage", r) : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    struct dems_config cfg;
    char err[512];
    if (dems_config_init(&cfg) < 0)
        return 1;
    dems_log_set_level("warn");
    if (dems_config_load_env(&cfg, environ, err, sizeof(err)) < 0) {
        fprintf(stderr, "dems-objstore-driver: %s\n", err);
        return 2;
    }
    struct dems_objstore *s;
    int r = dems_objstore_new(&cfg, &s, err, sizeof(err));
    dems_config_done(&cfg);
    if (r < 0) {
        fprintf(stderr, "dems-objstore-driver: %s\n", err);
        return 2;
    }
    const char *cmd = argv[1];
    int rc;
    uint64_t a = 0, b = UINT64_MAX;
    if (strcmp(cmd, "prepare") == 0 && argc == 2) {
        r = dems_objstore_prepare(s, err, sizeof(err));
        if (r < 0)
            fprintf(stderr, "dems-objstore-driver: %s\n", err);
        rc = status_of(r);
    } else if (strcmp(cmd, "put") == 0 && argc == 4) {
        r = dems_objstore_put_file(s, argv[2], argv[3]);
        rc = r < 0 ? fail("put", r) : 0;
    } else if (strcmp(cmd, "get") == 0 && argc >= 3 && argc <= 5 &&
               (argc < 4 || number(argv[3], UINT64_MAX - 1, &a)) &&
               (argc < 5 || number(argv[4], UINT64_MAX - 1, &b))) {
        if (b > UINT64_MAX - a)
            b = UINT64_MAX - a;
        rc = do_get(s, argv[2], a, b);
    } else if (strcmp(cmd, "head") == 0 && argc == 3) {
        r = dems_objstore_head(s, argv[2], &a);
        rc = r < 0 ? fail("head", r) : 0;
        if (r == 0)
            printf("%llu\n", (unsigned long long)a);
    } else if (strcmp(cmd, "delete") == 0 && argc == 3) {
        r = dems_objstore_delete(s, argv[2]);
        rc = r < 0 ? fail("delete", r) : 0;
    } else if (strcmp(cmd, "list") == 0 && argc == 3) {
        struct dems_objstore_entry *e;
        size_t n;
        r = dems_objstore_list(s, argv[2], &e, &n);
        rc = r < 0 ? fail("list", r) : 0;
        for (size_t i = 0; r == 0 && i < n; i++)
            printf("%s %llu %lld\n", e[i].key, (unsigned long long)e[i].size,
                   (long long)e[i].mtime);
        if (r == 0)
            dems_objstore_list_free(e, n);
    } else if (strcmp(cmd, "stage") == 0 && argc == 5 && number(argv[4], 1ULL << 30, &a) && a > 0) {
        rc = do_stage(s, argv[2], argv[3], a, false);
    } else if (strcmp(cmd, "copy") == 0 && argc == 4) {
        r = dems_objstore_head(s, argv[2], &a);
        if (r == 0)
            r = dems_objstore_copy(s, argv[2], argv[3], a);
        rc = r < 0 ? fail("copy", r) : 0;
    } else if (strcmp(cmd, "stage-abort") == 0 && argc == 4) {
        rc = do_stage(s, argv[2], argv[3], 1u << 20, true);
    } else {
        rc = usage();
    }
    dems_objstore_free(s);
    return rc;
}
