/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helper of tests/bench/face-jobs/run (not part of tests/run):
 *
 *   dems-face-jobs-bench gen DIR N SEED ARTEFACTS
 *       N synthetic descriptors (128 float32, unit length, clustered like
 *       faces: tests/bench/vector/gen.c's model) grouped into tracks of one
 *       identity each (1-8 descriptors, as the indexer keeps at most 8), an
 *       identity seen in 1-3 tracks spread over ARTEFACTS videos. Writes
 *       DIR/vecs.f32 (row-major) and DIR/tracks.tsv (artefact index,
 *       descriptors, identity; one track a line, in descriptor order).
 *   dems-face-jobs-bench descs DIR FIRST_TRACK_ID
 *       COPY text (track_id, t, vec) for face_descriptors on stdout, track ids
 *       counted from FIRST_TRACK_ID in tracks.tsv's order.
 *   dems-face-jobs-bench brute DIR PROBES K
 *       The peer of a footage search: for each probe (a line "first count" of
 *       descriptor rows), an exact scan of all N vectors for each of its
 *       descriptors (k = K, one thread). Prints per-probe ms as JSON.
 *   dems-face-jobs-bench hnsw DIR INDEX PROBES K EF
 *       The same probes through a worker's saved footage cache (INDEX, the
 *       HNSW file) in this process: the search alone, no SQL, no ledger.
 *   dems-face-jobs-bench enrol CONNINFO MASTER_KEY ORIGIN DATA_DIR DIR FIRST_SUBJECT N CONC
 *       The store part of face-enrol for N pending subjects (ids from
 *       FIRST_SUBJECT), CONC at a time as worker slots run them: the crop as
 *       an encrypted blob (13 KB), then FACE_ENROLLED through the ledger
 *       appender with the job's own statement (descriptor row, subject
 *       enrolled) in the entry's transaction, waiting until durable. Prints
 *       the rate per 10,000, then adds the same descriptors to an HNSW index
 *       one thread as the gallery cache does, rate per 10,000.
 *   dems-face-jobs-bench insert CONNINFO DIR FIRST_SUBJECT N CONC
 *       Peer: the same rows (descriptor insert + subject update) in one
 *       durable transaction per image, CONC connections; no blob, no ledger.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/face.h"
#include "dems/str.h"
#include "dems/vector.h"
#include "dems/version.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#define DIM 128

/* ---- what append.c and blobs.c need from the rest of demsd ---- */

void dems_log(enum dems_log_level level, const char *request_id, json_t *fields, const char *fmt,
              ...)
{
    (void)level;
    (void)request_id;
    json_decref(fields);
    va_list ap;
    va_start(ap, fmt);
    fputs("bench log: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int dems_loop_post(struct dems_loop *loop, void (*fn)(void *arg), void *arg)
{
    (void)loop;
    (void)fn;
    (void)arg;
    return DEMS_EUNAVAIL; /* the appender then delivers on its own thread */
}

bool dems_db_is_unique_violation(const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && strcmp(state, "23505") == 0;
}

PGconn *dems_db_connect_sync(const char *conninfo, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(conninfo);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect: %s", c != NULL ? PQerrorMessage(c) : "no memory");
        PQfinish(c);
        return NULL;
    }
    return c;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static uint64_t num(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s) {
        fprintf(stderr, "not a number: %s\n", s);
        exit(2);
    }
    return v;
}

/* ---- the generator (the model of tests/bench/vector/gen.c) ---- */

#define GROUPS  64
#define RANK    64
#define SHARE_A 0.40
#define SHARE_B 0.25
#define SHARE_C 0.35

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct rng {
    uint64_t s;
};

static struct rng rng_for(uint64_t seed, uint64_t kind, uint64_t a, uint64_t b)
{
    return (struct rng){mix(mix(mix(seed ^ kind) ^ a) ^ b)};
}

static uint64_t next(struct rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix(r->s);
}

static double uniform(struct rng *r)
{
    return ((double)(next(r) >> 11) + 0.5) * 0x1.0p-53;
}

static double gauss(struct rng *r)
{
    double u = uniform(r), v = uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void normalise(double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    s = 1.0 / sqrt(s);
    for (size_t i = 0; i < n; i++)
        v[i] *= s;
}

struct model {
    uint64_t seed;
    double mu[DIM];
    double groups[GROUPS][DIM];
    double basis[DIM][RANK];
};

static void model_init(struct model *m, uint64_t seed)
{
    m->seed = seed;
    struct rng r = rng_for(seed, 1, 0, 0);
    for (int d = 0; d < DIM; d++)
        m->mu[d] = gauss(&r);
    normalise(m->mu, DIM);
    for (int g = 0; g < GROUPS; g++) {
        for (int d = 0; d < DIM; d++)
            m->groups[g][d] = gauss(&r);
        normalise(m->groups[g], DIM);
    }
    for (int d = 0; d < DIM; d++)
        for (int k = 0; k < RANK; k++)
            m->basis[d][k] = gauss(&r);
}

static double centre(const struct model *m, uint64_t i, double *c)
{
    struct rng r = rng_for(m->seed, 2, i, 0);
    int g = (int)(next(&r) % GROUPS);
    double z[RANK], ind[DIM], iso[DIM];
    for (int k = 0; k < RANK; k++)
        z[k] = gauss(&r);
    for (int d = 0; d < DIM; d++) {
        double s = 0;
        for (int k = 0; k < RANK; k++)
            s += m->basis[d][k] * z[k];
        ind[d] = s;
        iso[d] = gauss(&r);
    }
    normalise(ind, DIM);
    normalise(iso, DIM);
    double scale = 0.85 + 0.35 * uniform(&r), u[DIM];
    for (int d = 0; d < DIM; d++)
        u[d] = 0.9 * ind[d] + 0.45 * iso[d];
    normalise(u, DIM);
    for (int d = 0; d < DIM; d++)
        c[d] = sqrt(SHARE_A) * m->mu[d] + sqrt(SHARE_B) * m->groups[g][d] +
               sqrt(SHARE_C) * scale * u[d];
    normalise(c, DIM);
    return 0.020 + 0.010 * uniform(&r);
}

static int cmd_gen(const char *dir, uint64_t n, uint64_t seed, uint64_t artefacts)
{
    static struct model m;
    model_init(&m, seed);
    mkdir(dir, 0755);
    char p[4096];
    snprintf(p, sizeof(p), "%s/vecs.f32", dir);
    FILE *fv = fopen(p, "wb");
    snprintf(p, sizeof(p), "%s/tracks.tsv", dir);
    FILE *ft = fopen(p, "w");
    if (fv == NULL || ft == NULL)
        return die("cannot write in %s", dir);
    uint64_t done = 0;
    for (uint64_t id = 0; done < n; id++) {
        double c[DIM];
        double sigma = centre(&m, id, c);
        unsigned tracks = 1 + (unsigned)(mix(seed ^ mix(id + 991)) % 3);
        for (unsigned t = 0; t < tracks && done < n; t++) {
            unsigned k = 1 + (unsigned)(mix(seed ^ mix(id * 4 + t + 77)) % 8);
            if (k > n - done)
                k = (unsigned)(n - done);
            uint64_t art = mix(seed ^ mix(id * 4 + t + 5)) % artefacts;
            fprintf(ft, "%llu\t%u\t%llu\n", (unsigned long long)art, k, (unsigned long long)id);
            for (unsigned j = 0; j < k; j++) {
                struct rng r = rng_for(seed, 3, id, t * 8 + j);
                double v[DIM];
                for (int d = 0; d < DIM; d++)
                    v[d] = c[d] + sigma * gauss(&r);
                normalise(v, DIM);
                float f[DIM];
                for (int d = 0; d < DIM; d++)
                    f[d] = (float)v[d];
                if (fwrite(f, sizeof(f), 1, fv) != 1)
                    return die("write failed");
            }
            done += k;
        }
    }
    if (fclose(fv) != 0 || fclose(ft) != 0)
        return die("write failed");
    return 0;
}

/* ---- data files ---- */

static float *load_vecs(const char *dir, size_t *ret_n)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/vecs.f32", dir);
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t n = (size_t)bytes / (DIM * sizeof(float));
    float *v = malloc(n * DIM * sizeof(float) + 1);
    if (v == NULL || fread(v, DIM * sizeof(float), n, f) != n) {
        free(v);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *ret_n = n;
    return v;
}

static int cmd_descs(const char *dir, uint64_t first_track)
{
    size_t n = 0;
    float *v = load_vecs(dir, &n);
    char p[4096];
    snprintf(p, sizeof(p), "%s/tracks.tsv", dir);
    FILE *ft = fopen(p, "r");
    if (v == NULL || ft == NULL)
        return die("cannot read %s", dir);
    unsigned long long art, id;
    unsigned k;
    size_t row = 0;
    uint64_t track = first_track;
    char hex[DIM * 8 + 1];
    while (fscanf(ft, "%llu %u %llu", &art, &k, &id) == 3) {
        for (unsigned j = 0; j < k && row < n; j++, row++) {
            /* bytea as COPY text: the backslash of \x doubled. */
            dems_hex_encode((const uint8_t *)(v + row * DIM), DIM * 4, hex);
            printf("%llu\t%.1f\t\\\\x%s\n", (unsigned long long)track, 0.5 * j, hex);
        }
        track++;
    }
    fclose(ft);
    free(v);
    return fflush(stdout) == 0 ? 0 : 1;
}

struct probe {
    size_t first, count;
};

static struct probe *load_probes(const char *path, size_t *ret_n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 256, n = 0;
    struct probe *p = malloc(cap * sizeof(*p));
    unsigned long long a, b;
    while (p != NULL && fscanf(f, "%llu %llu", &a, &b) == 2) {
        if (n == cap) {
            cap *= 2;
            struct probe *q = realloc(p, cap * sizeof(*p));
            if (q == NULL) {
                free(p);
                p = NULL;
                break;
            }
            p = q;
        }
        p[n++] = (struct probe){(size_t)a, (size_t)b};
    }
    fclose(f);
    *ret_n = n;
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)ceil(q * (double)n) - 1;
    return sorted[i < n ? i : n - 1];
}

static void print_times(const char *what, double *ms, size_t n, double extra_ms_total)
{
    qsort(ms, n, sizeof(*ms), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ms[i];
    printf("{\"what\":\"%s\",\"probes\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"mean_ms\":%.3f,"
           "\"max_ms\":%.3f,\"setup_ms\":%.1f,\"kernel\":\"%s\"}\n",
           what, n, pct(ms, n, 0.5), pct(ms, n, 0.99), n ? sum / (double)n : 0, n ? ms[n - 1] : 0,
           extra_ms_total, dems_vector_kernel_name());
}

static int cmd_brute(const char *dir, const char *probes, uint64_t k)
{
    double t0 = now();
    size_t n = 0, np = 0;
    float *v = load_vecs(dir, &n);
    struct probe *p = load_probes(probes, &np);
    if (v == NULL || p == NULL)
        return die("cannot read %s or %s", dir, probes);
    double setup = (now() - t0) * 1000;
    struct dems_vector_hit *hits = malloc(k * sizeof(*hits));
    double *ms = calloc(np + 1, sizeof(double));
    for (size_t i = 0; i < np; i++) {
        double t = now();
        for (size_t j = 0; j < p[i].count; j++) {
            size_t got = 0;
            if (dems_vector_brute_knn(v, n, DIM, DEMS_VECTOR_L2, v + (p[i].first + j) * DIM, k,
                                      hits, &got) < 0)
                return die("brute force failed");
        }
        ms[i] = (now() - t) * 1000;
    }
    print_times("brute", ms, np, setup);
    return 0;
}

static bool accept_all(uint64_t label, void *arg)
{
    (void)label;
    (void)arg;
    return true;
}

static int cmd_hnsw(const char *dir, const char *index, const char *probes, uint64_t k, uint64_t ef)
{
    size_t n = 0, np = 0;
    float *v = load_vecs(dir, &n);
    struct probe *p = load_probes(probes, &np);
    if (v == NULL || p == NULL)
        return die("cannot read %s or %s", dir, probes);
    double t0 = now();
    struct dems_vector_index *ix = NULL;
    const char *why = NULL;
    if (dems_vector_load(index, 0, &ix, &why) < 0)
        return die("cannot load %s: %s", index, why != NULL ? why : "?");
    double setup = (now() - t0) * 1000;
    struct dems_vector_hit *hits = malloc(k * sizeof(*hits));
    double *ms = calloc(np + 1, sizeof(double));
    struct dems_vector_filter f = {.accept = accept_all};
    for (size_t i = 0; i < np; i++) {
        double t = now();
        for (size_t j = 0; j < p[i].count; j++) {
            size_t got = 0;
            if (dems_vector_search(ix, v + (p[i].first + j) * DIM, k, ef, &f, hits, &got) < 0)
                return die("search failed");
        }
        ms[i] = (now() - t) * 1000;
    }
    print_times("hnsw", ms, np, setup);
    dems_vector_free(ix);
    return 0;
}

/* ---- enrolment: the store part ---- */

struct enrol {
    struct dems_server *srv;
    const char *data_dir;
    uint8_t master[32];
    const float *v;
    size_t nv;
    uint64_t first, n, next;
    char engine[2048];
    pthread_mutex_t mu;
    double *done_at; /* per subject, seconds since start */
    double t0;
    int failed;
};

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
};

static void appended(struct dems_ledger_item *it, void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->err = it->err;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void vec_text(const float *d, char out[1027])
{
    out[0] = '\\';
    out[1] = 'x';
    dems_hex_encode((const uint8_t *)d, DIM * 4, out + 2); /* little-endian host */
}

static void *enrol_slot(void *arg)
{
    struct enrol *e = arg;
    uint8_t crop[13000];
    for (;;) {
        pthread_mutex_lock(&e->mu);
        uint64_t i = e->next++;
        pthread_mutex_unlock(&e->mu);
        if (i >= e->n)
            break;
        /* A distinct crop of a real crop's size (12-14 KB at quality 90). */
        randombytes_buf(crop, sizeof(crop));
        char sha[65];
        int rc = dems_blob_put_mem(e->data_dir, e->master, crop, sizeof(crop), sha);
        if (rc < 0) {
            fprintf(stderr, "blob: %s\n", dems_strerror(rc));
            e->failed++;
            continue;
        }
        char sid[24], vec[1027], image_sha[65];
        snprintf(sid, sizeof(sid), "%llu", (unsigned long long)(e->first + i));
        vec_text(e->v + (i % e->nv) * DIM, vec);
        uint8_t ih[32];
        randombytes_buf(ih, sizeof(ih));
        dems_hex_encode(ih, 32, image_sha);
        json_t *engine = json_loads(e->engine, 0, NULL);
        json_t *payload =
            json_pack("{s:I,s:s,s:I,s:s,s:s,s:o,s:s}", "gallery_id", (json_int_t)1, "gallery",
                      "bench gallery", "subject_id", (json_int_t)(e->first + i), "image_sha256",
                      image_sha, "crop_sha256", sha, "engine", engine, "reference", sid);
        struct dems_ledger_item *it =
            dems_ledger_item_new(DEMS_LEDGER_FACE_ENROLLED, DEMS_LEDGER_ACTOR_USER, "admin");
        if (it == NULL || payload == NULL)
            abort();
        it->has_sha256 = true;
        memcpy(it->sha256, ih, 32);
        it->payload = payload;
        /* The job's statement (server/jobs/face_enrol.c). */
        it->pre_sql =
            strdup("WITH d AS (INSERT INTO face_descriptors (subject_id, vec)"
                   " VALUES ($1::bigint, $2::bytea) RETURNING 1)"
                   " UPDATE face_subjects SET state = 'enrolled', error = NULL, crop_blob = $3,"
                   " crop_size = $4::integer, quality = $5::real, enrolled_seq = $6::bigint"
                   " WHERE id = $1::bigint AND state = 'pending' AND (SELECT count(*) FROM d) = 1");
        const char *pp[] = {sid, vec, sha, "13000", "0.9"};
        it->pre_nparams = 5;
        for (int j = 0; j < 5; j++)
            it->pre_params[j] = strdup(pp[j]);
        it->pre_must_change = true;
        it->pre_seq = true;
        struct waiter w = {.done = false};
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cv, NULL);
        it->done = appended;
        it->arg = &w;
        rc = dems_ledger_append(e->srv, NULL, it);
        if (rc == 0) {
            pthread_mutex_lock(&w.mu);
            while (!w.done)
                pthread_cond_wait(&w.cv, &w.mu);
            pthread_mutex_unlock(&w.mu);
            rc = w.err;
        }
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cv);
        if (rc < 0) {
            fprintf(stderr, "append %s: %s\n", sid, dems_strerror(rc));
            e->failed++;
        }
        e->done_at[i] = now() - e->t0;
    }
    return NULL;
}

static void engine_json(char *out, size_t len)
{
    json_t *files = json_object();
    const char *file, *sha;
    for (size_t i = 0; dems_face_model_file(i, &file, &sha); i++)
        if (strstr(file, ".bin") != NULL)
            json_object_set_new(files, file, json_string(sha));
    json_t *e =
        json_pack("{s:s,s:s,s:o}", "engine", "dems-face", "version", dems_version, "models", files);
    char *t = json_dumps(e, JSON_COMPACT);
    snprintf(out, len, "%s", t != NULL ? t : "{}");
    free(t);
    json_decref(e);
}

/* Rate per 10,000 (or per tenth when fewer) from completion times. */
static void print_rates(const char *what, double *at, uint64_t n, double total)
{
    qsort(at, n, sizeof(*at), cmp_double);
    uint64_t step = n >= 100000 ? 10000 : (n >= 10 ? n / 10 : n);
    printf("{\"what\":\"%s\",\"n\":%llu,\"seconds\":%.2f,\"per_s\":%.1f,\"steps\":[", what,
           (unsigned long long)n, total, total > 0 ? (double)n / total : 0);
    double prev = 0;
    for (uint64_t i = step; i <= n && step > 0; i += step) {
        double t = at[i - 1];
        printf("%s[%llu,%.1f]", i == step ? "" : ",", (unsigned long long)i,
               t > prev ? (double)step / (t - prev) : 0);
        prev = t;
    }
    printf("]}\n");
    fflush(stdout);
}

static int cmd_enrol(char **a)
{
    const char *conninfo = a[0], *keyfile = a[1], *dir = a[4];
    char *origin = a[2], *data_dir = a[3];
    uint64_t first = num(a[5]), n = num(a[6]), conc = num(a[7]);
    if (sodium_init() < 0 || conc == 0 || conc > 64)
        return 2;
    static struct enrol e;
    e.first = first;
    e.n = n;
    e.data_dir = data_dir;
    pthread_mutex_init(&e.mu, NULL);
    char err[1024];
    if (dems_master_key_load(keyfile, e.master, err, sizeof(err)) < 0)
        return die("%s", err);
    e.v = load_vecs(dir, &e.nv);
    if (e.v == NULL || e.nv == 0)
        return die("cannot read %s", dir);
    engine_json(e.engine, sizeof(e.engine));
    struct dems_config cfg = {.ledger_origin = origin, .data_dir = data_dir};
    struct dems_server srv = {.cfg = &cfg};
    e.srv = &srv;
    if (dems_ledger_start(&srv, conninfo, e.master, err, sizeof(err)) < 0)
        return die("%s", err);
    e.done_at = calloc(n + 1, sizeof(double));
    pthread_t th[64];
    e.t0 = now();
    for (uint64_t i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, enrol_slot, &e);
    for (uint64_t i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    double total = now() - e.t0;
    dems_ledger_stop(&srv);
    if (e.failed)
        return die("%d enrolments failed", e.failed);
    print_rates("enrol_store", e.done_at, n, total);

    /* The gallery cache's part: adding the descriptors one thread. */
    struct dems_vector_params p;
    dems_vector_params_init(&p, DIM);
    struct dems_vector_index *ix = NULL;
    if (dems_vector_new(&p, &ix) < 0)
        return die("vector index");
    /* Batches of the reporting step (the cache reads 20,000 rows a query). */
    uint64_t step = n >= 100000 ? 10000 : (n >= 10 ? n / 10 : n);
    uint64_t *labels = malloc(step * sizeof(uint64_t));
    float *batch = malloc(step * DIM * sizeof(float));
    double t0 = now();
    for (uint64_t i = 0; i < n; i += step) {
        size_t m = n - i < step ? (size_t)(n - i) : (size_t)step;
        for (size_t j = 0; j < m; j++) {
            labels[j] = first + i + j;
            memcpy(batch + j * DIM, e.v + ((i + j) % e.nv) * DIM, DIM * sizeof(float));
        }
        if (dems_vector_add_batch(ix, batch, labels, 0, m, 1) < 0)
            return die("add failed");
        for (size_t j = 0; j < m; j++)
            e.done_at[i + j] = now() - t0;
    }
    print_rates("cache_add", e.done_at, n, now() - t0);
    dems_vector_free(ix);
    sodium_memzero(e.master, sizeof(e.master));
    return 0;
}

/* ---- peer: the same rows, one durable transaction per image ---- */

struct ins {
    const char *conninfo;
    const float *v;
    size_t nv;
    uint64_t first, n, next;
    pthread_mutex_t mu;
    double *done_at;
    double t0;
    int failed;
};

static void *ins_slot(void *arg)
{
    struct ins *s = arg;
    PGconn *db = PQconnectdb(s->conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        s->failed++;
        PQfinish(db);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&s->mu);
        uint64_t i = s->next++;
        pthread_mutex_unlock(&s->mu);
        if (i >= s->n)
            break;
        char sid[24], vec[1027], crop[65];
        snprintf(sid, sizeof(sid), "%llu", (unsigned long long)(s->first + i));
        vec_text(s->v + (i % s->nv) * DIM, vec);
        uint8_t h[32];
        randombytes_buf(h, sizeof(h));
        dems_hex_encode(h, 32, crop);
        const char *pp[] = {sid, vec, crop, "13000", "0.9"};
        PGresult *r = PQexecParams(
            db,
            "WITH d AS (INSERT INTO face_descriptors (subject_id, vec)"
            " VALUES ($1::bigint, $2::bytea) RETURNING 1)"
            " UPDATE face_subjects SET state = 'enrolled', error = NULL, crop_blob = $3,"
            " crop_size = $4::integer, quality = $5::real, enrolled_seq = 0"
            " WHERE id = $1::bigint AND state = 'pending' AND (SELECT count(*) FROM d) = 1",
            5, NULL, pp, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(r), "1") != 0) {
            fprintf(stderr, "insert %s: %s\n", sid, PQerrorMessage(db));
            s->failed++;
        }
        PQclear(r);
        s->done_at[i] = now() - s->t0;
    }
    PQfinish(db);
    return NULL;
}

static int cmd_insert(char **a)
{
    static struct ins s;
    s.conninfo = a[0];
    s.v = load_vecs(a[1], &s.nv);
    s.first = num(a[2]);
    s.n = num(a[3]);
    uint64_t conc = num(a[4]);
    if (s.v == NULL || conc == 0 || conc > 64 || sodium_init() < 0)
        return die("bad arguments");
    pthread_mutex_init(&s.mu, NULL);
    s.done_at = calloc(s.n + 1, sizeof(double));
    pthread_t th[64];
    s.t0 = now();
    for (uint64_t i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, ins_slot, &s);
    for (uint64_t i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    double total = now() - s.t0;
    if (s.failed)
        return die("%d inserts failed", s.failed);
    print_rates("insert_peer", s.done_at, s.n, total);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    if (strcmp(cmd, "gen") == 0 && argc == 6)
        return cmd_gen(argv[2], num(argv[3]), num(argv[4]), num(argv[5]));
    if (strcmp(cmd, "descs") == 0 && argc == 4)
        return cmd_descs(argv[2], num(argv[3]));
    if (strcmp(cmd, "brute") == 0 && argc == 5)
        return cmd_brute(argv[2], argv[3], num(argv[4]));
    if (strcmp(cmd, "hnsw") == 0 && argc == 7)
        return cmd_hnsw(argv[2], argv[3], argv[4], num(argv[5]), num(argv[6]));
    if (strcmp(cmd, "enrol") == 0 && argc == 10)
        return cmd_enrol(argv + 2);
    if (strcmp(cmd, "insert") == 0 && argc == 7)
        return cmd_insert(argv + 2);
    fprintf(stderr, "usage: see the comment at the top of tests/bench/face-jobs/facebench.c\n");
    return 2;
}
