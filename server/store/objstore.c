/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The object-store client's front: settings common to both stores (the
 * endpoint, container, trust store, retries, timeouts, block size), the
 * dispatch to the backend's operations, and whole-file puts in staged
 * blocks. The backends are obj_azure.c and obj_s3.c; HTTP is obj_http.c.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/blobs.h"

#include "obj_int.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int copy_setting(char *dst, size_t cap, const char *v, const char *key, char *err,
                        size_t errlen)
{
    size_t n = strlen(v);
    if (n >= cap) {
        snprintf(err, errlen, "config: %s: too long (%zu bytes at most)", key, cap - 1);
        return DEMS_EINVAL;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

int obj_read_secret(const char *value, const char *key, char *out, size_t cap, char *err,
                    size_t errlen)
{
    if (value[0] != '@')
        return copy_setting(out, cap, value, key, err, errlen);
    FILE *f = fopen(value + 1, "re");
    if (f == NULL) {
        snprintf(err, errlen, "config: %s: cannot read %.200s: %s", key, value + 1,
                 strerror(errno));
        return DEMS_EINVAL;
    }
    char line[2048];
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    if (!got) {
        snprintf(err, errlen, "config: %s: %.200s is empty", key, value + 1);
        return DEMS_EINVAL;
    }
    char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    int r = copy_setting(out, cap, s, key, err, errlen);
    sodium_memzero(line, sizeof(line));
    return r;
}

/* scheme://host[:port][/path] → s->scheme, s->host, s->path_prefix. */
static int parse_endpoint(struct dems_objstore *s, const char *url, char *err, size_t errlen)
{
    const char *p = strstr(url, "://");
    size_t sl = p != NULL ? (size_t)(p - url) : 0;
    if (p == NULL ||
        !((sl == 4 && memcmp(url, "http", 4) == 0) || (sl == 5 && memcmp(url, "https", 5) == 0))) {
        snprintf(err, errlen,
                 "config: store_endpoint: must start with https:// or http:// "
                 "(got \"%.64s\")",
                 url);
        return DEMS_EINVAL;
    }
    memcpy(s->scheme, url, sl);
    s->scheme[sl] = '\0';
    const char *h = p + 3;
    size_t hl = strcspn(h, "/?#");
    if (hl == 0 || hl >= sizeof(s->host) || memchr(h, '@', hl) != NULL || h[hl] == '?' ||
        h[hl] == '#') {
        snprintf(err, errlen,
                 "config: store_endpoint: no host, or a user, query or fragment "
                 "in it (got \"%.64s\")",
                 url);
        return DEMS_EINVAL;
    }
    memcpy(s->host, h, hl);
    s->host[hl] = '\0';
    /* libcurl leaves a default port out of Host, and the signatures cover Host. */
    size_t hn = strlen(s->host);
    const char *dflt = strcmp(s->scheme, "https") == 0 ? ":443" : ":80";
    if (hn > strlen(dflt) && strcmp(s->host + hn - strlen(dflt), dflt) == 0)
        s->host[hn - strlen(dflt)] = '\0';
    const char *path = h + hl;
    size_t pl = strcspn(path, "?#");
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    if (path[strcspn(path, "?#")] != '\0' || pl >= sizeof(s->path_prefix)) {
        snprintf(err, errlen,
                 "config: store_endpoint: a query or fragment, or a path too long "
                 "(got \"%.64s\")",
                 url);
        return DEMS_EINVAL;
    }
    memcpy(s->path_prefix, path, pl);
    s->path_prefix[pl] = '\0';
    return 0;
}

int dems_objstore_new(const struct dems_config *cfg, struct dems_objstore **ret, char *err,
                      size_t errlen)
{
    *ret = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        snprintf(err, errlen, "store: libcurl failed to start: %s",
                 curl_easy_strerror(curl_init_rc));
        return DEMS_EINTERNAL;
    }
    struct dems_objstore *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return DEMS_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    int r;
    if (strcmp(cfg->store, "azure") == 0) {
        s->kind = DEMS_OBJSTORE_AZURE;
        s->ops = &obj_azure_ops;
    } else if (strcmp(cfg->store, "s3") == 0) {
        s->kind = DEMS_OBJSTORE_S3;
        s->ops = &obj_s3_ops;
    } else {
        snprintf(err, errlen, "config: store: %.32s is not an object store (azure or s3)",
                 cfg->store);
        r = DEMS_EINVAL;
        goto fail;
    }
    if ((r = parse_endpoint(s, cfg->store_endpoint, err, errlen)) < 0 ||
        (r = copy_setting(s->container, sizeof(s->container), cfg->store_container,
                          "store_container", err, errlen)) < 0 ||
        (r = copy_setting(s->ca_file, sizeof(s->ca_file), cfg->store_ca_file, "store_ca_file", err,
                          errlen)) < 0)
        goto fail;
    if (s->container[0] == '\0' || strcspn(s->container, "/?#%& ") != strlen(s->container)) {
        snprintf(err, errlen, "config: store_container: must be a plain name (got \"%.64s\")",
                 s->container);
        r = DEMS_EINVAL;
        goto fail;
    }
    s->retries = (unsigned)cfg->store_retries;
    s->timeout = (long)cfg->store_timeout;
    s->block_size = (size_t)cfg->store_block_size;
    if (s->block_size < s->ops->part_min)
        s->block_size = s->ops->part_min;
    r = s->kind == DEMS_OBJSTORE_AZURE ? obj_azure_init(s, cfg, err, errlen)
                                       : obj_s3_init(s, cfg, err, errlen);
    if (r < 0)
        goto fail;
    snprintf(s->where, sizeof(s->where), "%s %s://%s%s/%s",
             s->kind == DEMS_OBJSTORE_AZURE ? "azure" : "s3", s->scheme, s->host, s->path_prefix,
             s->container);
    *ret = s;
    return 0;
fail:
    dems_objstore_free(s);
    return r;
}

void dems_objstore_free(struct dems_objstore *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->nidle; i++)
        curl_easy_cleanup(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    sodium_memzero(s, sizeof(*s));
    free(s);
}

enum dems_objstore_kind dems_objstore_kind(const struct dems_objstore *s)
{
    return s->kind;
}

const char *dems_objstore_where(const struct dems_objstore *s)
{
    return s->where;
}

int dems_objstore_prepare(struct dems_objstore *s, char *err, size_t errlen)
{
    return s->ops->prepare(s, err, errlen);
}

int dems_objstore_put_mem(struct dems_objstore *s, const char *key, const void *data, size_t len)
{
    return s->ops->put(s, key, data, len);
}

int dems_objstore_get(struct dems_objstore *s, const char *key, uint64_t offset, void *buf,
                      size_t len, size_t *ret_n)
{
    *ret_n = 0;
    if (len == 0)
        return 0;
    return s->ops->get(s, key, offset, buf, len, ret_n);
}

int dems_objstore_head(struct dems_objstore *s, const char *key, uint64_t *ret_size)
{
    return s->ops->head(s, key, ret_size);
}

int dems_objstore_delete(struct dems_objstore *s, const char *key)
{
    return s->ops->del(s, key);
}

int dems_objstore_list(struct dems_objstore *s, const char *prefix,
                       struct dems_objstore_entry **ret, size_t *ret_n)
{
    *ret = NULL;
    *ret_n = 0;
    return s->ops->list(s, prefix, ret, ret_n);
}

void dems_objstore_list_free(struct dems_objstore_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].key);
    free(e);
}

size_t dems_objstore_part_min(const struct dems_objstore *s)
{
    return s->ops->part_min;
}

int dems_objstore_stage_begin(struct dems_objstore *s, const char *key,
                              struct dems_objstore_stage *st)
{
    memset(st, 0, sizeof(*st));
    size_t n = strlen(key);
    if (n >= sizeof(st->key))
        return DEMS_EINVAL;
    memcpy(st->key, key, n + 1);
    return s->ops->stage_begin(s, key, st);
}

int dems_objstore_stage_put(struct dems_objstore *s, const struct dems_objstore_stage *st,
                            unsigned part, const void *data, size_t len,
                            char tag[static DEMS_OBJSTORE_TAG_MAX])
{
    tag[0] = '\0';
    if (part == 0 || part > 10000)
        return DEMS_EINVAL;
    return s->ops->stage_put(s, st, part, data, len, tag);
}

int dems_objstore_stage_commit(struct dems_objstore *s, const struct dems_objstore_stage *st,
                               unsigned nparts, char (*tags)[DEMS_OBJSTORE_TAG_MAX])
{
    if (nparts == 0 || nparts > 10000)
        return DEMS_EINVAL;
    for (unsigned i = 0; i < nparts; i++) {
        if (tags[i][0] == '\0')
            return DEMS_EINVAL;
    }
    return s->ops->stage_commit(s, st, nparts, tags);
}

int dems_objstore_stage_abort(struct dems_objstore *s, const struct dems_objstore_stage *st)
{
    return s->ops->stage_abort(s, st);
}

int dems_objstore_put_file(struct dems_objstore *s, const char *key, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
    struct stat sb;
    int r = DEMS_EIO;
    uint8_t *buf = NULL;
    if (fstat(fd, &sb) != 0)
        goto out;
    uint64_t size = (uint64_t)sb.st_size;
    size_t block = s->block_size;
    /* Parts are numbered up to 10,000 (both stores' limit): grow them for huge files. */
    while (size / block >= 10000)
        block *= 2;
    buf = malloc(size < block ? (size_t)size + 1 : block);
    r = DEMS_ENOMEM;
    if (buf == NULL)
        goto out;
    if (size <= block) {
        ssize_t n = dems_blob_read_full(fd, buf, (size_t)size);
        r = n == (ssize_t)size ? s->ops->put(s, key, buf, (size_t)size) : DEMS_EIO;
        goto out;
    }
    struct dems_objstore_stage st;
    char(*tags)[DEMS_OBJSTORE_TAG_MAX] = calloc((size_t)(size / block) + 1, sizeof(*tags));
    r = tags == NULL ? DEMS_ENOMEM : dems_objstore_stage_begin(s, key, &st);
    if (r < 0) {
        free(tags);
        goto out;
    }
    unsigned part = 0;
    for (uint64_t done = 0; done < size;) {
        size_t want = size - done < block ? (size_t)(size - done) : block;
        ssize_t n = dems_blob_read_full(fd, buf, want);
        if (n != (ssize_t)want) {
            r = DEMS_EIO;
            break;
        }
        r = s->ops->stage_put(s, &st, part + 1, buf, want, tags[part]);
        part++;
        if (r < 0)
            break;
        done += want;
    }
    if (r == 0)
        r = s->ops->stage_commit(s, &st, part, tags);
    if (r < 0)
        (void)s->ops->stage_abort(s, &st);
    free(tags);
out:
    free(buf);
    close(fd);
    return r;
}

/* A copy through this process: ranged reads staged into dst, then committed. */
static int copy_through(struct dems_objstore *s, const char *src, const char *dst, uint64_t size)
{
    size_t block = s->block_size;
    while (size / block >= 10000)
        block *= 2;
    uint8_t *buf = malloc(block);
    char(*tags)[DEMS_OBJSTORE_TAG_MAX] = calloc((size_t)(size / block) + 1, sizeof(*tags));
    struct dems_objstore_stage st;
    int r = buf == NULL || tags == NULL ? DEMS_ENOMEM : dems_objstore_stage_begin(s, dst, &st);
    if (r < 0)
        goto out;
    unsigned part = 0;
    for (uint64_t done = 0; done < size && r == 0; part++) {
        size_t want = size - done < block ? (size_t)(size - done) : block, got = 0;
        r = s->ops->get(s, src, done, buf, want, &got);
        if (r == 0 && got != want)
            r = DEMS_EIO; /* the source is shorter than its size */
        if (r == 0)
            r = s->ops->stage_put(s, &st, part + 1, buf, want, tags[part]);
        done += want;
    }
    if (r == 0)
        r = s->ops->stage_commit(s, &st, part, tags);
    if (r < 0)
        (void)s->ops->stage_abort(s, &st);
out:
    free(buf);
    free(tags);
    return r;
}

int dems_objstore_copy(struct dems_objstore *s, const char *src, const char *dst, uint64_t size)
{
    if (size <= s->ops->copy_max)
        return s->ops->copy(s, src, dst);
    return copy_through(s, src, dst, size);
}

size_t dems_objstore_block_size(const struct dems_objstore *s)
{
    return s->block_size;
}
