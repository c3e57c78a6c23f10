/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dems-vector-bench: builds and queries a dems vector index over the standard
 * .fvecs/.ivecs files, generates face-descriptor-like data with exact ground
 * truth, and scores results. The build and search subcommands follow the
 * interface every harness expects:
 *
 *   dems-vector-bench build --base B.fvecs --out IDX --threads T [--M m]
 *                     [--ef-construction n] [--storage f32|sq8] [--no-f32]
 *   dems-vector-bench search --index IDX --queries Q.fvecs --k K --ef EF
 *                     --threads T --out RES.ivecs [--mmap]
 *   dems-vector-bench gen --out DIR --n N [--queries Q] [--seed S] [--gt-k K]
 *                     [--threads T]
 *   dems-vector-bench recall --results RES.ivecs --gt GT.ivecs --k K
 *   dems-vector-bench stats --base B.fvecs     (distance histogram)
 *   dems-vector-bench crc [--mib 256] [--reps 5]   (CRC-32C throughput, crc.c)
 *
 *   dems-vector-bench --version | --help | COMMAND --help
 *
 * build prints build_seconds=, search prints search_seconds= (the query loop
 * only) and memory lines to stderr. A usage error exits 2 after one line on
 * stderr; any other failure exits 1.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/str.h"
#include "dems/vector.h"
#include "dems/version.h"

#define DIM 128

struct opts {
    const char *base, *out, *index, *queries, *results, *gt, *storage;
    uint64_t threads, m, efc, k, ef, n, nq, seed, gt_k, filter_permille, mib, reps;
    bool mmap, no_f32;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds used by the whole process (all threads): robust to a busy machine. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int die(const char *what)
{
    fprintf(stderr, "dems-vector-bench: %s\n", what);
    return 1;
}

static const char usage_text[] =
    "Usage: dems-vector-bench COMMAND [options]\n"
    "       dems-vector-bench --version | --help\n"
    "\n"
    "Commands:\n"
    "  build   --base B.fvecs --out IDX --threads T [--M 16] [--ef-construction 200]\n"
    "          [--storage f32|sq8] [--no-f32]\n"
    "  search  --index IDX --queries Q.fvecs --k K --ef EF --threads T --out RES.ivecs\n"
    "          [--mmap] [--filter-permille P]\n"
    "  gen     --out DIR --n N [--nq 10000] [--seed 42] [--gt-k 100] [--threads 2]\n"
    "  recall  --results RES.ivecs --gt GT.ivecs --k 10\n"
    "  stats   --base B.fvecs           (distance histogram)\n"
    "  crc     [--mib 256] [--reps 5]   (CRC-32C MB/s: bitwise, table, SSE4.2)\n"
    "\n"
    "Exit status: 0 done, 1 failure, 2 usage error. docs/vector.md has the details.\n";

/* One line on stderr for a usage error; exit status 2. */
static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "dems-vector-bench: %s%s%s (try dems-vector-bench --help)\n", what,
            arg != NULL ? " " : "", arg != NULL ? arg : "");
    return 2;
}

static int parse_num(const char *s, uint64_t max, uint64_t *out)
{
    return dems_parse_u64(s, strlen(s), max, out);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.threads = 1,
                       .m = 16,
                       .efc = 200,
                       .k = 10,
                       .ef = 64,
                       .n = 100000,
                       .nq = 10000,
                       .seed = 42,
                       .gt_k = 100,
                       .mib = 256,
                       .reps = 5,
                       .storage = "f32"};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--mmap") == 0) {
            o->mmap = true;
            continue;
        }
        if (strcmp(a, "--no-f32") == 0) {
            o->no_f32 = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return usage_error("unexpected argument", a);
        if (i + 1 >= argc)
            return usage_error("missing value for", a);
        const char *v = argv[++i];
        int r = 0;
        if (strcmp(a, "--base") == 0)
            o->base = v;
        else if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--index") == 0)
            o->index = v;
        else if (strcmp(a, "--queries") == 0)
            o->queries = v;
        else if (strcmp(a, "--results") == 0)
            o->results = v;
        else if (strcmp(a, "--gt") == 0)
            o->gt = v;
        else if (strcmp(a, "--storage") == 0)
            o->storage = v;
        else if (strcmp(a, "--threads") == 0)
            r = parse_num(v, 256, &o->threads);
        else if (strcmp(a, "--M") == 0)
            r = parse_num(v, DEMS_VECTOR_MAX_M, &o->m);
        else if (strcmp(a, "--ef-construction") == 0)
            r = parse_num(v, DEMS_VECTOR_MAX_EF, &o->efc);
        else if (strcmp(a, "--k") == 0)
            r = parse_num(v, 1000, &o->k);
        else if (strcmp(a, "--ef") == 0)
            r = parse_num(v, DEMS_VECTOR_MAX_EF, &o->ef);
        else if (strcmp(a, "--n") == 0)
            r = parse_num(v, 100000000, &o->n);
        else if (strcmp(a, "--queries-n") == 0 || strcmp(a, "--nq") == 0)
            r = parse_num(v, 10000000, &o->nq);
        else if (strcmp(a, "--seed") == 0)
            r = parse_num(v, UINT64_MAX, &o->seed);
        else if (strcmp(a, "--gt-k") == 0)
            r = parse_num(v, 1000, &o->gt_k);
        else if (strcmp(a, "--filter-permille") == 0)
            r = parse_num(v, 1000, &o->filter_permille);
        else if (strcmp(a, "--mib") == 0)
            r = parse_num(v, 4096, &o->mib);
        else if (strcmp(a, "--reps") == 0)
            r = parse_num(v, 1000, &o->reps);
        else
            return usage_error("unknown option", a);
        if (r < 0)
            return usage_error("bad value for", a);
    }
    if (o->threads == 0)
        o->threads = 1;
    return 0;
}

/* --- fvecs / ivecs ------------------------------------------------------ */

/* Reads an .fvecs file: returns rows * dim floats (owned) or NULL. */
static float *read_fvecs(const char *path, size_t *ret_rows, uint32_t *ret_dim)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct stat st;
    int32_t d = 0;
    float *v = NULL;
    if (fstat(fileno(f), &st) != 0 || fread(&d, 4, 1, f) != 1 || d <= 0 || d > 65536)
        goto fail;
    size_t rec = 4 + (size_t)d * 4, rows = (size_t)st.st_size / rec;
    if ((size_t)st.st_size % rec != 0 || rows == 0)
        goto fail;
    v = malloc(rows * (size_t)d * sizeof(float));
    if (v == NULL)
        goto fail;
    rewind(f);
    for (size_t i = 0; i < rows; i++) {
        int32_t di;
        if (fread(&di, 4, 1, f) != 1 || di != d ||
            fread(v + i * (size_t)d, sizeof(float), (size_t)d, f) != (size_t)d)
            goto fail;
    }
    fclose(f);
    *ret_rows = rows;
    *ret_dim = (uint32_t)d;
    return v;
fail:
    free(v);
    fclose(f);
    return NULL;
}

static int32_t *read_ivecs(const char *path, size_t *ret_rows, uint32_t *ret_dim)
{
    /* Same layout as fvecs, 4-byte elements. */
    return (int32_t *)(void *)read_fvecs(path, ret_rows, ret_dim);
}

static int write_vecs(const char *path, const void *data, size_t rows, uint32_t dim)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    const uint8_t *p = data;
    int32_t d = (int32_t)dim;
    for (size_t i = 0; i < rows; i++) {
        if (fwrite(&d, 4, 1, f) != 1 || fwrite(p + i * dim * 4, 4, dim, f) != dim) {
            fclose(f);
            return -1;
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
        res = 0;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

/* --- build and search --------------------------------------------------- */

static int cmd_build(const struct opts *o)
{
    if (o->base == NULL || o->out == NULL)
        return die("build needs --base and --out");
    size_t n;
    uint32_t dim;
    float *base = read_fvecs(o->base, &n, &dim);
    if (base == NULL)
        return die("cannot read --base");
    struct dems_vector_params p;
    dems_vector_params_init(&p, dim);
    p.m = (uint32_t)o->m;
    p.ef_construction = (uint32_t)o->efc;
    p.storage = strcmp(o->storage, "sq8") == 0 ? DEMS_VECTOR_SQ8 : DEMS_VECTOR_F32;
    p.keep_f32 = !o->no_f32;
    struct dems_vector_index *ix;
    int r = dems_vector_new(&p, &ix);
    if (r < 0) {
        free(base);
        return die(dems_strerror(r));
    }
    double t0 = now(), c0 = cpu_now();
    r = dems_vector_add_batch(ix, base, NULL, 0, n, (unsigned)o->threads);
    double t1 = now(), c1 = cpu_now();
    if (r == 0)
        r = dems_vector_save(ix, o->out);
    if (r == 0) {
        fprintf(stderr, "build_seconds=%.3f\n", t1 - t0);
        fprintf(stderr, "build_cpu_seconds=%.3f\n", c1 - c0);
        fprintf(stderr, "index_bytes=%zu bytes_per_vector=%.1f kernel=%s\n", dems_vector_memory(ix),
                (double)dems_vector_memory(ix) / (double)n, dems_vector_kernel_name());
    }
    dems_vector_free(ix);
    free(base);
    return r == 0 ? 0 : die(dems_strerror(r));
}

struct search_job {
    struct dems_vector_index *ix;
    const float *q;
    size_t nq, k, ef;
    uint32_t dim;
    int32_t *out; /* nq * k */
    size_t next;  /* atomic */
    int err;
    const struct dems_vector_filter *filter;
};

static void *search_worker(void *arg)
{
    struct search_job *j = arg;
    struct dems_vector_hit *hits = malloc(j->k * sizeof(*hits));
    if (hits == NULL) {
        j->err = DEMS_ENOMEM;
        return NULL;
    }
    for (;;) {
        size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->nq)
            break;
        size_t got = 0;
        int r = dems_vector_search(j->ix, j->q + i * j->dim, j->k, j->ef, j->filter, hits, &got);
        if (r < 0) {
            __atomic_store_n(&j->err, r, __ATOMIC_RELAXED);
            break;
        }
        int32_t *row = j->out + i * j->k;
        for (size_t h = 0; h < j->k; h++)
            row[h] = h < got ? (int32_t)hits[h].label : -1;
    }
    free(hits);
    return NULL;
}

static bool filter_accepts(uint64_t label, uint64_t permille)
{
    uint64_t x = (label + 1) * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 32;
    return x % 1000 < permille;
}

/* Filtered runs: every hit must pass the filter; recall against exact search. */
static void check_filtered(struct dems_vector_index *ix, const struct search_job *j,
                           uint64_t permille)
{
    size_t bad = 0, found = 0, total = 0, nq = j->nq < 200 ? j->nq : 200;
    struct dems_vector_hit *e = malloc(j->k * sizeof(*e));
    for (size_t i = 0; e != NULL && i < j->nq; i++) {
        const int32_t *row = j->out + i * j->k;
        for (size_t h = 0; h < j->k; h++)
            bad += row[h] >= 0 && !filter_accepts((uint64_t)row[h], permille);
        size_t ne = 0;
        if (i >= nq || dems_vector_search_exact(ix, j->q + i * j->dim, j->k, j->filter, e, &ne) < 0)
            continue;
        for (size_t x = 0; x < ne; x++) {
            for (size_t h = 0; h < j->k; h++)
                found += row[h] == (int32_t)e[x].label;
        }
        total += ne;
    }
    free(e);
    fprintf(stderr, "filter_permille=%llu filter_violations=%zu filtered_recall=%.4f\n",
            (unsigned long long)permille, bad, total ? (double)found / (double)total : 1.0);
}

static int cmd_search(const struct opts *o)
{
    if (o->index == NULL || o->queries == NULL || o->out == NULL)
        return die("search needs --index, --queries and --out");
    size_t nq;
    uint32_t dim;
    float *q = read_fvecs(o->queries, &nq, &dim);
    if (q == NULL)
        return die("cannot read --queries");
    long rss0 = rss_bytes();
    struct dems_vector_index *ix;
    const char *why = NULL;
    int r = dems_vector_load(o->index, o->mmap ? DEMS_VECTOR_LOAD_MMAP : 0, &ix, &why);
    if (r < 0) {
        free(q);
        fprintf(stderr, "dems-vector-bench: %s: %s\n", o->index, why ? why : dems_strerror(r));
        return 1;
    }
    long rss1 = rss_bytes();
    struct dems_vector_params p;
    dems_vector_get_params(ix, &p);
    size_t live = dems_vector_count(ix);
    int32_t *out = malloc(nq * o->k * sizeof(int32_t));
    if (p.dim != dim || out == NULL) {
        free(q);
        free(out);
        dems_vector_free(ix);
        return die(out == NULL ? "out of memory" : "query dimension differs from the index");
    }
    struct search_job j = {
        .ix = ix, .q = q, .nq = nq, .k = o->k, .ef = o->ef, .dim = dim, .out = out};
    /* --filter-permille P: a bitmap accepting a pseudo-random P/1000 of the rows. */
    struct dems_vector_filter filter = {0};
    uint64_t nbits = o->filter_permille ? (uint64_t)live + 1000 : 0;
    uint64_t *bits = nbits ? calloc(nbits / 64 + 1, 8) : NULL;
    if (bits != NULL) {
        for (uint64_t l = 0; l < nbits; l++)
            if (filter_accepts(l, o->filter_permille))
                bits[l / 64] |= 1ULL << (l % 64);
        filter = (struct dems_vector_filter){.bits = bits, .nbits = nbits};
        j.filter = &filter;
    }
    pthread_t tid[256];
    double c0 = cpu_now(), t0 = now();
    if (o->threads <= 1) {
        search_worker(&j);
    } else {
        for (uint64_t t = 0; t < o->threads; t++)
            pthread_create(&tid[t], NULL, search_worker, &j);
        for (uint64_t t = 0; t < o->threads; t++)
            pthread_join(tid[t], NULL);
    }
    double t1 = now(), c1 = cpu_now();
    if (j.err == 0) {
        fprintf(stderr, "search_seconds=%.4f\n", t1 - t0);
        fprintf(stderr, "search_cpu_seconds=%.4f\n", c1 - c0);
        fprintf(stderr, "memory_bytes=%ld bytes_per_vector=%.1f index_bytes=%zu\n", rss1 - rss0,
                (double)(rss1 - rss0) / (double)(live ? live : 1), dems_vector_memory(ix));
    }
    if (j.err == 0 && j.filter != NULL)
        check_filtered(ix, &j, o->filter_permille);
    free(bits);
    dems_vector_free(ix);
    r = j.err == 0 ? write_vecs(o->out, out, nq, (uint32_t)o->k) : -1;
    free(out);
    free(q);
    return r == 0 ? 0 : die(j.err ? dems_strerror(j.err) : "cannot write --out");
}

/* --- scoring ------------------------------------------------------------ */

static int cmd_recall(const struct opts *o)
{
    size_t nr, ng;
    uint32_t kr, kg;
    int32_t *res = o->results ? read_ivecs(o->results, &nr, &kr) : NULL;
    int32_t *gt = o->gt ? read_ivecs(o->gt, &ng, &kg) : NULL;
    if (res == NULL || gt == NULL || nr != ng || o->k > kr || o->k > kg) {
        free(res);
        free(gt);
        return die("recall needs matching --results and --gt with at least --k columns");
    }
    size_t found = 0;
    for (size_t i = 0; i < nr; i++) {
        for (size_t a = 0; a < o->k; a++) {
            for (size_t b = 0; b < o->k; b++) {
                if (res[i * kr + a] == gt[i * kg + b] && res[i * kr + a] >= 0) {
                    found++;
                    break;
                }
            }
        }
    }
    printf("recall@%llu=%.4f\n", (unsigned long long)o->k, (double)found / (double)(nr * o->k));
    free(res);
    free(gt);
    return 0;
}

/* The generator lives in gen.c. */
int bench_gen(const char *dir, size_t n, size_t nq, uint64_t seed, size_t gt_k, unsigned threads);
int bench_stats(const float *base, size_t n, uint32_t dim);
/* The checksum microbenchmark lives in crc.c. */
int bench_crc(size_t mib, unsigned reps);

int main(int argc, char **argv)
{
    struct opts o;
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
    }
    if (strcmp(argv[1], "--version") == 0) {
        struct dems_version_lib libc;
        dems_version_glibc(&libc);
        dems_version_print(stdout, "dems-vector-bench", &libc, 1);
        return 0;
    }
    static const char *const cmds[] = {"build", "search", "gen", "recall", "stats", "crc"};
    bool known = false;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        known = known || strcmp(argv[1], cmds[i]) == 0;
    if (!known)
        return usage_error("unknown command", argv[1]);
    int pr = parse_opts(argc, argv, &o);
    if (pr != 0)
        return pr;
    const char *cmd = argv[1];
    if (strcmp(cmd, "build") == 0)
        return cmd_build(&o);
    if (strcmp(cmd, "search") == 0)
        return cmd_search(&o);
    if (strcmp(cmd, "recall") == 0)
        return cmd_recall(&o);
    if (strcmp(cmd, "gen") == 0) {
        if (o.out == NULL)
            return die("gen needs --out DIR");
        return bench_gen(o.out, (size_t)o.n, (size_t)o.nq, o.seed, (size_t)o.gt_k,
                         (unsigned)o.threads) == 0
                   ? 0
                   : die("gen failed");
    }
    if (strcmp(cmd, "stats") == 0) {
        size_t n;
        uint32_t dim;
        float *b = o.base ? read_fvecs(o.base, &n, &dim) : NULL;
        if (b == NULL)
            return die("stats needs --base");
        bench_stats(b, n, dim);
        free(b);
        return 0;
    }
    if (strcmp(cmd, "crc") == 0) {
        if (o.mib == 0 || o.reps == 0)
            return die("crc needs --mib and --reps of at least 1");
        return bench_crc((size_t)o.mib, (unsigned)o.reps) == 0 ? 0 : die("crc failed");
    }
    return usage_error("unknown command", cmd);
}
