/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vector caches of a worker process (docs/face-search.md, "The vector
 * cache"): one HNSW index (common/vector) of the footage's track
 * descriptors and one of the galleries' subject descriptors, labelled by
 * face_descriptors.id, with a label-to-owner map (the artefact's
 * face_index.n, or the gallery id) that search filters read.
 *
 * PostgreSQL is the source of truth. On a process's first use a cache is
 * loaded from data_dir/face/<kind>.vec, .owners and .json (the ids it has
 * read up to and the database's epoch); a file that is missing, fails its
 * checksums or belongs to another database is dropped and the cache is
 * rebuilt from PostgreSQL. Every use first catches up: descriptors with
 * larger ids are added, and descriptors deleted since (face_descriptor_
 * removals) are removed, the graph compacted and the files rewritten at
 * once, so that a removed subject's vector does not stay on disk. Ids
 * become visible in order (writers serialise on a lock, migration 0022), so
 * reading "id > last" misses nothing.
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

#include "dems/config.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"
#include "dems/vector.h"
#include "demsd/log.h"

#include "face_int.h"

/* Rows read per catch-up query. */
#define BATCH 20000
/* Files are rewritten after this many additions since the last save. */
#define SAVE_EVERY 10000

struct cache {
    pthread_mutex_t mu;
    struct dems_vector_index *index;
    uint32_t *owner; /* by label; 0 = none */
    size_t nowner;   /* labels covered */
    long long last_id, last_removal;
    size_t unsaved;
    char epoch[64];
};

static struct cache caches[2] = {
    {.mu = PTHREAD_MUTEX_INITIALIZER},
    {.mu = PTHREAD_MUTEX_INITIALIZER},
};

static const char *const names[2] = {"footage", "gallery"};

/* Adds rows: id, owner, vec. */
static const char *const add_sql[2] = {
    "SELECT d.id, fi.n AS owner, d.vec FROM face_descriptors d"
    " JOIN face_tracks t ON t.id = d.track_id JOIN face_index fi ON fi.artefact = t.artefact"
    " WHERE d.id > $1::bigint ORDER BY d.id LIMIT $2::integer",
    "SELECT d.id, s.gallery_id AS owner, d.vec FROM face_descriptors d"
    " JOIN face_subjects s ON s.id = d.subject_id"
    " WHERE d.id > $1::bigint ORDER BY d.id LIMIT $2::integer",
};

static void cache_drop(struct cache *c)
{
    dems_vector_free(c->index);
    free(c->owner);
    c->index = NULL;
    c->owner = NULL;
    c->nowner = 0;
    c->last_id = c->last_removal = 0;
    c->unsaved = 0;
}

void face_cache_reset(void)
{
    for (int k = 0; k < 2; k++) {
        pthread_mutex_lock(&caches[k].mu);
        cache_drop(&caches[k]);
        caches[k].epoch[0] = '\0';
        pthread_mutex_unlock(&caches[k].mu);
    }
}

static void paths(const struct dems_config *cfg, int k, char vec[PATH_MAX], char own[PATH_MAX],
                  char meta[PATH_MAX])
{
    snprintf(vec, PATH_MAX, "%s/face/%s.vec", cfg->data_dir, names[k]);
    snprintf(own, PATH_MAX, "%s/face/%s.owners", cfg->data_dir, names[k]);
    snprintf(meta, PATH_MAX, "%s/face/%s.json", cfg->data_dir, names[k]);
}

static void sha_hex(const void *p, size_t n, char out[65])
{
    struct dems_sha256 h;
    uint8_t d[32];
    if (dems_sha256_init(&h) == 0) {
        dems_sha256_update(&h, p, n);
        dems_sha256_final(&h, d);
        dems_sha256_done(&h);
        dems_hex_encode(d, 32, out);
    } else {
        out[0] = '\0';
    }
}

static int write_file(const char *path, const void *p, size_t n)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return DEMS_EIO;
    const uint8_t *b = p;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, b + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    bool ok = off == n && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return DEMS_EIO;
    }
    return 0;
}

/* Writes the index, the owners and (last, so it names complete files) the meta. */
static void cache_save(const struct dems_config *cfg, int k, struct cache *c)
{
    char vec[PATH_MAX], own[PATH_MAX], meta[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/face", cfg->data_dir);
    mkdir(dir, 0700);
    paths(cfg, k, vec, own, meta);
    unlink(meta); /* a crash below leaves no meta: the next load rebuilds */
    char osha[65];
    sha_hex(c->owner, c->nowner * sizeof(uint32_t), osha);
    json_t *m = json_pack("{s:i,s:s,s:I,s:I,s:I,s:s}", "version", 1, "epoch", c->epoch, "last_id",
                          (json_int_t)c->last_id, "last_removal", (json_int_t)c->last_removal,
                          "owners", (json_int_t)c->nowner, "owners_sha256", osha);
    char *text = m != NULL ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    int r = text == NULL ? DEMS_ENOMEM : dems_vector_save(c->index, vec);
    if (r == 0)
        r = write_file(own, c->owner, c->nowner * sizeof(uint32_t));
    if (r == 0)
        r = write_file(meta, text, strlen(text));
    free(text);
    if (r < 0)
        dems_log(DEMS_LOG_WARN, NULL,
                 json_pack("{s:s,s:s}", "event", "face_cache_save_failed", "cache", names[k]),
                 "cannot write the %s face cache: %s (it is rebuilt from the database)", names[k],
                 dems_strerror(r));
    else
        c->unsaved = 0;
}

/* Loads the files; false (and nothing loaded) when any is missing or damaged. */
static bool cache_load(const struct dems_config *cfg, int k, struct cache *c, const char *epoch,
                       const char **why)
{
    char vec[PATH_MAX], own[PATH_MAX], meta[PATH_MAX];
    paths(cfg, k, vec, own, meta);
    json_t *m = json_load_file(meta, 0, NULL);
    const char *e = json_string_value(json_object_get(m, "epoch"));
    const char *osha = json_string_value(json_object_get(m, "owners_sha256"));
    json_int_t nown = json_integer_value(json_object_get(m, "owners"));
    bool ok = m != NULL && e != NULL && osha != NULL && nown >= 0 && nown < (1LL << 34);
    *why = m == NULL ? "no cache file" : "its description is damaged";
    if (ok && strcmp(e, epoch) != 0) {
        ok = false;
        *why = "it was made from another database";
    }
    uint32_t *owner = NULL;
    if (ok) {
        owner = calloc((size_t)nown + 1, sizeof(uint32_t));
        int fd = open(own, O_RDONLY | O_CLOEXEC);
        size_t want = (size_t)nown * sizeof(uint32_t), got = 0;
        while (owner != NULL && fd >= 0 && got < want) {
            ssize_t n = read(fd, (uint8_t *)owner + got, want - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (fd >= 0)
            close(fd);
        char sha[65];
        sha_hex(owner, want, sha);
        ok = owner != NULL && got == want && strcmp(sha, osha) == 0;
        if (!ok)
            *why = "its owner map is damaged";
    }
    struct dems_vector_index *index = NULL;
    if (ok) {
        const char *vwhy = NULL;
        ok = dems_vector_load(vec, 0, &index, &vwhy) == 0;
        if (!ok)
            *why = vwhy != NULL ? vwhy : "its index file cannot be read";
    }
    if (ok) {
        c->index = index;
        c->owner = owner;
        c->nowner = (size_t)nown;
        c->last_id = (long long)json_integer_value(json_object_get(m, "last_id"));
        c->last_removal = (long long)json_integer_value(json_object_get(m, "last_removal"));
        owner = NULL;
    }
    free(owner);
    json_decref(m);
    return ok;
}

static int new_index(struct cache *c)
{
    struct dems_vector_params p;
    dems_vector_params_init(&p, DEMS_FACE_DESCRIPTOR);
    return dems_vector_new(&p, &c->index);
}

static int set_owner(struct cache *c, long long label, uint32_t owner)
{
    if ((size_t)label >= c->nowner) {
        size_t n = c->nowner ? c->nowner : 1024;
        while (n <= (size_t)label)
            n *= 2;
        uint32_t *o = realloc(c->owner, n * sizeof(*o));
        if (o == NULL)
            return DEMS_ENOMEM;
        memset(o + c->nowner, 0, (n - c->nowner) * sizeof(*o));
        c->owner = o;
        c->nowner = n;
    }
    c->owner[label] = owner;
    return 0;
}

/* Adds descriptors with ids above last_id. Returns how many, or < 0. */
static long catch_up_adds(PGconn *db, int k, struct cache *c, char *err, size_t errlen)
{
    long added = 0;
    float *vecs = malloc((size_t)BATCH * DEMS_FACE_DESCRIPTOR * sizeof(float));
    uint64_t *labels = malloc((size_t)BATCH * sizeof(uint64_t));
    if (vecs == NULL || labels == NULL) {
        free(vecs);
        free(labels);
        return DEMS_ENOMEM;
    }
    for (;;) {
        char last[24], lim[24];
        snprintf(last, sizeof(last), "%lld", c->last_id);
        snprintf(lim, sizeof(lim), "%d", BATCH);
        const char *params[] = {last, lim};
        PGresult *res = PQexecParams(db, add_sql[k], 2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(err, errlen, "database: %s", PQerrorMessage(db));
            PQclear(res);
            added = DEMS_EDB;
            break;
        }
        int n = PQntuples(res), m = 0;
        int ci = PQfnumber(res, "id"), co = PQfnumber(res, "owner"), cv = PQfnumber(res, "vec");
        int rc = 0;
        for (int i = 0; i < n && rc == 0; i++) {
            long long id = atoll(PQgetvalue(res, i, ci));
            c->last_id = id;
            if (!face_vec_parse(PQgetvalue(res, i, cv), vecs + (size_t)m * DEMS_FACE_DESCRIPTOR))
                continue; /* never written so by us; skip rather than stop searching */
            labels[m++] = (uint64_t)id;
            rc = set_owner(c, id, (uint32_t)atoll(PQgetvalue(res, i, co)));
        }
        PQclear(res);
        if (rc == 0 && m > 0)
            rc = dems_vector_add_batch(c->index, vecs, labels, 0, (size_t)m, 1);
        if (rc < 0 && rc != DEMS_ECONFLICT) {
            snprintf(err, errlen, "vector index: %s", dems_strerror(rc));
            added = rc;
            break;
        }
        added += m;
        if (n < BATCH)
            break;
    }
    free(vecs);
    free(labels);
    return added;
}

/* Removes descriptors deleted since last_removal. Returns how many, or < 0. */
static long catch_up_removals(PGconn *db, struct cache *c, char *err, size_t errlen)
{
    char last[24];
    snprintf(last, sizeof(last), "%lld", c->last_removal);
    const char *params[] = {last};
    PGresult *res = PQexecParams(db,
                                 "SELECT id, descriptor_id FROM face_descriptor_removals"
                                 " WHERE id > $1::bigint ORDER BY id",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "database: %s", PQerrorMessage(db));
        PQclear(res);
        return DEMS_EDB;
    }
    long removed = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        c->last_removal = atoll(PQgetvalue(res, i, 0));
        long long label = atoll(PQgetvalue(res, i, 1));
        if (dems_vector_remove(c->index, (uint64_t)label) == 0)
            removed++;
        if (label >= 0 && (size_t)label < c->nowner)
            c->owner[label] = 0;
    }
    PQclear(res);
    return removed;
}

int face_cache_use(const struct dems_job_ctx *ctx, enum face_cache_kind kind, face_cache_fn fn,
                   void *arg, char *err, size_t errlen)
{
    int k = kind == FACE_CACHE_GALLERY ? 1 : 0;
    struct cache *c = &caches[k];
    PGresult *res = PQexec(ctx->db, "SELECT epoch FROM face_cache_epoch LIMIT 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(err, errlen, "database: cannot read the face cache epoch");
        PQclear(res);
        return DEMS_EDB;
    }
    char epoch[64];
    snprintf(epoch, sizeof(epoch), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    pthread_mutex_lock(&c->mu);
    if (c->index != NULL && strcmp(c->epoch, epoch) != 0)
        cache_drop(c);
    int rc = 0;
    if (c->index == NULL) {
        const char *why = NULL;
        snprintf(c->epoch, sizeof(c->epoch), "%s", epoch);
        if (!cache_load(ctx->cfg, k, c, epoch, &why)) {
            dems_log(DEMS_LOG_INFO, NULL,
                     json_pack("{s:s,s:s,s:s}", "event", "face_cache_rebuild", "cache", names[k],
                               "why", why),
                     "rebuilding the %s face cache from the database: %s", names[k], why);
            rc = new_index(c);
            c->unsaved = SAVE_EVERY; /* save once built */
            /* Removals before now are already absent from the table. */
            PGresult *lr = PQexec(ctx->db, "SELECT COALESCE(max(id), 0) FROM"
                                           " face_descriptor_removals");
            if (PQresultStatus(lr) == PGRES_TUPLES_OK && PQntuples(lr) == 1)
                c->last_removal = atoll(PQgetvalue(lr, 0, 0));
            else
                rc = DEMS_EDB;
            PQclear(lr);
        }
    }
    long added = rc == 0 ? catch_up_adds(ctx->db, k, c, err, errlen) : rc;
    long removed = added >= 0 ? catch_up_removals(ctx->db, c, err, errlen) : added;
    if (added < 0 || removed < 0) {
        rc = added < 0 ? (int)added : (int)removed;
        cache_drop(c); /* rebuilt next time */
    } else {
        c->unsaved += (size_t)added;
        if (removed > 0) {
            /* Deleted descriptors leave the graph and the file now. */
            if (dems_vector_compact(c->index, 1) == 0)
                cache_save(ctx->cfg, k, c);
            else
                cache_drop(c);
        } else if (c->unsaved >= SAVE_EVERY) {
            cache_save(ctx->cfg, k, c);
        }
        rc = c->index != NULL ? fn(c->index, c->owner, c->nowner, arg) : DEMS_ENOMEM;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}
