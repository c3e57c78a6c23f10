/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/vector: recall against exact search, filters,
 * removal and compaction, save/load round trips, refusal of damaged files,
 * and searches running while other threads insert.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/vector.h"

#define K 10

/* --- data --------------------------------------------------------------- */

static uint64_t rng_state;

static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(rng_state >> 11) + 0.5) * 0x1.0p-53;
}

static float grand(void)
{
    return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()));
}

/* n clustered vectors (40 clusters), each normalised when unit is set. */
static float *make_data(size_t n, uint32_t dim, uint64_t seed, bool unit)
{
    rng_state = seed;
    float *centres = malloc(40 * dim * sizeof(float));
    float *v = malloc(n * dim * sizeof(float));
    assert_non_null(centres);
    assert_non_null(v);
    for (size_t i = 0; i < 40 * (size_t)dim; i++)
        centres[i] = grand();
    for (size_t i = 0; i < n; i++) {
        size_t c = (size_t)(urand() * 40) % 40;
        double norm = 0;
        for (uint32_t d = 0; d < dim; d++) {
            float x = centres[c * dim + d] + 0.6f * grand();
            v[i * dim + d] = x;
            norm += (double)x * x;
        }
        for (uint32_t d = 0; unit && d < dim; d++)
            v[i * dim + d] /= (float)sqrt(norm);
    }
    free(centres);
    return v;
}

static struct dems_vector_index *build(const float *v, size_t n, uint32_t dim,
                                       enum dems_vector_storage st, enum dems_vector_metric mt,
                                       unsigned threads)
{
    struct dems_vector_params p;
    dems_vector_params_init(&p, dim);
    p.storage = st;
    p.metric = mt;
    p.m = 12;
    p.ef_construction = 80;
    struct dems_vector_index *ix = NULL;
    assert_int_equal(dems_vector_new(&p, &ix), 0);
    assert_int_equal(dems_vector_add_batch(ix, v, NULL, 0, n, threads), 0);
    assert_int_equal(dems_vector_count(ix), n);
    return ix;
}

/* Mean share of the exact top K (by label) that the graph search finds. */
static double recall(struct dems_vector_index *ix, const float *q, size_t nq, uint32_t dim,
                     size_t ef, const struct dems_vector_filter *f)
{
    struct dems_vector_hit a[K], e[K];
    size_t found = 0, total = 0;
    for (size_t i = 0; i < nq; i++) {
        size_t na = 0, ne = 0;
        assert_int_equal(dems_vector_search(ix, q + i * dim, K, ef, f, a, &na), 0);
        assert_int_equal(dems_vector_search_exact(ix, q + i * dim, K, f, e, &ne), 0);
        assert_true(na <= ne);
        for (size_t x = 0; x < ne; x++) {
            for (size_t y = 0; y < na; y++) {
                if (a[y].label == e[x].label) {
                    found++;
                    break;
                }
            }
        }
        total += ne;
        for (size_t y = 1; y < na; y++)
            assert_true(a[y - 1].distance <= a[y].distance);
    }
    return total ? (double)found / (double)total : 1.0;
}

/* --- tests -------------------------------------------------------------- */

static void test_params(void **state)
{
    (void)state;
    struct dems_vector_params p;
    struct dems_vector_index *ix = NULL;
    dems_vector_params_init(&p, 0);
    assert_int_equal(dems_vector_new(&p, &ix), DEMS_EINVAL);
    dems_vector_params_init(&p, DEMS_VECTOR_MAX_DIM + 1);
    assert_int_equal(dems_vector_new(&p, &ix), DEMS_EINVAL);
    dems_vector_params_init(&p, 8);
    p.m = 1;
    assert_int_equal(dems_vector_new(&p, &ix), DEMS_EINVAL);
    assert_null(ix);

    dems_vector_params_init(&p, 4);
    assert_int_equal(dems_vector_new(&p, &ix), 0);
    struct dems_vector_hit h[K];
    size_t n = 99;
    float v[4] = {1, 2, 3, 4};
    assert_int_equal(dems_vector_search(ix, v, K, 20, NULL, h, &n), 0);
    assert_int_equal(n, 0); /* empty index */
    assert_int_equal(dems_vector_search(ix, v, 0, 20, NULL, h, &n), DEMS_EINVAL);
    assert_int_equal(dems_vector_add(ix, 7, v), 0);
    assert_int_equal(dems_vector_add(ix, 7, v), DEMS_ECONFLICT);
    float bad[4] = {1, NAN, 0, 0};
    assert_int_equal(dems_vector_add(ix, 8, bad), DEMS_EINVAL);
    assert_int_equal(dems_vector_search(ix, bad, K, 20, NULL, h, &n), DEMS_EINVAL);
    assert_int_equal(dems_vector_search(ix, v, K, 20, NULL, h, &n), 0);
    assert_int_equal(n, 1);
    assert_true(h[0].label == 7);
    assert_true(h[0].distance == 0.0f);
    assert_int_equal(dems_vector_count(ix), 1);
    assert_int_equal(dems_vector_train(ix, v, 1), DEMS_EINVAL); /* not SQ8 */
    dems_vector_free(ix);
    dems_vector_free(NULL);

    dems_vector_params_init(&p, 4);
    p.metric = DEMS_VECTOR_COSINE;
    assert_int_equal(dems_vector_new(&p, &ix), 0);
    float zero[4] = {0, 0, 0, 0};
    assert_int_equal(dems_vector_add(ix, 1, zero), DEMS_EINVAL);
    dems_vector_free(ix);
}

static void test_brute_knn(void **state)
{
    (void)state;
    size_t n = 500;
    uint32_t dim = 19; /* odd, to exercise kernel tails */
    float *v = make_data(n, dim, 3, false);
    struct dems_vector_hit h[K];
    size_t got = 0;
    assert_int_equal(dems_vector_brute_knn(v, n, dim, DEMS_VECTOR_L2, v + 42 * dim, K, h, &got), 0);
    assert_int_equal(got, K);
    assert_true(h[0].label == 42);
    assert_true(h[0].distance == 0.0f);
    /* Check against a double-precision scan. */
    for (size_t i = 1; i < K; i++) {
        double d = 0;
        for (uint32_t x = 0; x < dim; x++) {
            double t = (double)v[42 * dim + x] - v[h[i].label * dim + x];
            d += t * t;
        }
        assert_true(fabs(d - h[i].distance) < 1e-3 * (1 + d));
        assert_true(h[i - 1].distance <= h[i].distance);
    }
    size_t beaten = 0;
    for (size_t r = 0; r < n; r++) {
        double d = 0;
        for (uint32_t x = 0; x < dim; x++) {
            double t = (double)v[42 * dim + x] - v[r * dim + x];
            d += t * t;
        }
        beaten += d < h[K - 1].distance * (1 - 1e-5);
    }
    assert_true(beaten <= K - 1);
    assert_int_equal(dems_vector_brute_knn(v, n, 0, DEMS_VECTOR_L2, v, K, h, &got), DEMS_EINVAL);
    free(v);
}

static void check_recall(enum dems_vector_storage st, enum dems_vector_metric mt, uint32_t dim)
{
    size_t n = 4000, nq = 100;
    float *v = make_data(n + nq, dim, 11 + dim, mt == DEMS_VECTOR_COSINE);
    struct dems_vector_index *ix = build(v, n, dim, st, mt, 2);
    double r = recall(ix, v + n * dim, nq, dim, 64, NULL);
    assert_true(r >= 0.95);
    /* Effort is monotone enough that a wide beam is near exact. */
    assert_true(recall(ix, v + n * dim, nq, dim, 256, NULL) >= 0.99);
    /* A stored vector finds itself first. */
    struct dems_vector_hit h[K];
    size_t got;
    assert_int_equal(dems_vector_search(ix, v + 123 * dim, K, 64, NULL, h, &got), 0);
    assert_true(h[0].label == 123);
    dems_vector_free(ix);
    free(v);
}

static void test_recall_f32_l2(void **state)
{
    (void)state;
    check_recall(DEMS_VECTOR_F32, DEMS_VECTOR_L2, 128);
}

static void test_recall_sq8_l2(void **state)
{
    (void)state;
    check_recall(DEMS_VECTOR_SQ8, DEMS_VECTOR_L2, 128);
}

static void test_recall_cosine(void **state)
{
    (void)state;
    check_recall(DEMS_VECTOR_F32, DEMS_VECTOR_COSINE, 37);
    check_recall(DEMS_VECTOR_SQ8, DEMS_VECTOR_COSINE, 64);
}

static void test_sq8_without_floats(void **state)
{
    (void)state;
    size_t n = 3000, nq = 50;
    uint32_t dim = 32;
    float *v = make_data(n + nq, dim, 5, false);
    struct dems_vector_params p;
    dems_vector_params_init(&p, dim);
    p.storage = DEMS_VECTOR_SQ8;
    p.keep_f32 = false;
    struct dems_vector_index *ix;
    assert_int_equal(dems_vector_new(&p, &ix), 0);
    assert_int_equal(dems_vector_train(ix, v, n), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dems_vector_add(ix, 1000 + i, v + i * dim), 0);
    assert_int_equal(dems_vector_train(ix, v, n), DEMS_ECONFLICT);
    assert_true(recall(ix, v + n * dim, nq, dim, 64, NULL) >= 0.9);
    /* Codes cost dim bytes where floats cost 4 * dim. */
    struct dems_vector_params q = p;
    q.storage = DEMS_VECTOR_F32;
    struct dems_vector_index *fx;
    assert_int_equal(dems_vector_new(&q, &fx), 0);
    assert_int_equal(dems_vector_add_batch(fx, v, NULL, 0, n, 1), 0);
    assert_true(dems_vector_memory(ix) + (size_t)n * dim * 3 / 2 < dems_vector_memory(fx));
    dems_vector_free(fx);
    dems_vector_free(ix);
    free(v);
}

static bool accept_multiple_of_3(uint64_t label, void *arg)
{
    (void)arg;
    return label % 3 == 0;
}

static void test_filters(void **state)
{
    (void)state;
    size_t n = 6000, nq = 60;
    uint32_t dim = 48;
    float *v = make_data(n + nq, dim, 21, true);
    struct dems_vector_index *ix = build(v, n, dim, DEMS_VECTOR_SQ8, DEMS_VECTOR_L2, 2);
    uint64_t *bits = calloc(n / 64 + 1, sizeof(uint64_t));
    assert_non_null(bits);
    /* 1% of labels: the bitmap is selective enough for an exact scan. */
    for (size_t i = 0; i < n; i += 100)
        bits[i / 64] |= 1ULL << (i % 64);
    struct dems_vector_filter f = {.bits = bits, .nbits = n};
    assert_true(recall(ix, v + n * dim, nq, dim, 64, &f) >= 0.999);
    struct dems_vector_hit h[K];
    for (size_t i = 0; i < nq; i++) {
        size_t got = 0;
        assert_int_equal(dems_vector_search(ix, v + (n + i) * dim, K, 64, &f, h, &got), 0);
        assert_int_equal(got, K);
        for (size_t j = 0; j < got; j++)
            assert_true(h[j].label % 100 == 0);
    }
    /* 30%: the graph walk, which must still honour the filter. */
    memset(bits, 0, (n / 64 + 1) * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++)
        if (i % 10 < 3)
            bits[i / 64] |= 1ULL << (i % 64);
    assert_true(recall(ix, v + n * dim, nq, dim, 64, &f) >= 0.9);
    for (size_t i = 0; i < n; i += 7) {
        size_t got = 0;
        assert_int_equal(dems_vector_search(ix, v + i * dim, K, 32, &f, h, &got), 0);
        for (size_t j = 0; j < got; j++)
            assert_true(h[j].label % 10 < 3);
    }
    /* A callback, alone and combined with the bitmap. */
    struct dems_vector_filter cb = {.accept = accept_multiple_of_3};
    assert_true(recall(ix, v + n * dim, nq, dim, 64, &cb) >= 0.9);
    f.accept = accept_multiple_of_3;
    for (size_t i = 0; i < n; i += 11) {
        size_t got = 0;
        assert_int_equal(dems_vector_search(ix, v + i * dim, K, 32, &f, h, &got), 0);
        for (size_t j = 0; j < got; j++)
            assert_true(h[j].label % 10 < 3 && h[j].label % 3 == 0);
    }
    /* Nothing accepted: nothing returned. */
    memset(bits, 0, (n / 64 + 1) * sizeof(uint64_t));
    struct dems_vector_filter none = {.bits = bits, .nbits = n};
    size_t got = 1;
    assert_int_equal(dems_vector_search(ix, v, K, 64, &none, h, &got), 0);
    assert_int_equal(got, 0);
    free(bits);
    dems_vector_free(ix);
    free(v);
}

static void test_remove_and_compact(void **state)
{
    (void)state;
    size_t n = 3000;
    uint32_t dim = 24;
    float *v = make_data(n, dim, 31, false);
    struct dems_vector_index *ix = build(v, n, dim, DEMS_VECTOR_F32, DEMS_VECTOR_L2, 2);
    size_t removed = 0;
    for (size_t i = 0; i < n; i += 4) {
        assert_int_equal(dems_vector_remove(ix, i), 0);
        removed++;
    }
    assert_int_equal(dems_vector_remove(ix, 0), DEMS_ENOTFOUND);
    assert_int_equal(dems_vector_remove(ix, n + 5), DEMS_ENOTFOUND);
    assert_int_equal(dems_vector_count(ix), n - removed);
    struct dems_vector_hit h[K];
    for (int pass = 0; pass < 2; pass++) {
        /* Query with the removed vectors themselves: the worst case. */
        for (size_t i = 0; i < n; i += 4) {
            size_t got = 0;
            assert_int_equal(dems_vector_search(ix, v + i * dim, K, 40, NULL, h, &got), 0);
            assert_int_equal(got, K);
            for (size_t j = 0; j < got; j++)
                assert_true(h[j].label % 4 != 0);
            assert_int_equal(dems_vector_search_exact(ix, v + i * dim, K, NULL, h, &got), 0);
            for (size_t j = 0; j < got; j++)
                assert_true(h[j].label % 4 != 0);
        }
        assert_true(recall(ix, v + 1 * dim, 200, dim, 64, NULL) >= 0.95);
        if (pass == 0)
            assert_int_equal(dems_vector_compact(ix, 2), 0);
        assert_int_equal(dems_vector_count(ix), n - removed);
    }
    /* A removed label can come back, and is then found. */
    assert_int_equal(dems_vector_add(ix, 8, v + 8 * dim), 0);
    size_t got = 0;
    assert_int_equal(dems_vector_search(ix, v + 8 * dim, K, 40, NULL, h, &got), 0);
    assert_true(h[0].label == 8);
    dems_vector_free(ix);
    free(v);
}

static char *temp_path(const char *tag)
{
    char *p = malloc(256);
    assert_non_null(p);
    snprintf(p, 256, "/tmp/dems-vector-test-%d-%s.idx", (int)getpid(), tag);
    return p;
}

static void same_results(struct dems_vector_index *a, struct dems_vector_index *b, const float *q,
                         size_t nq, uint32_t dim)
{
    struct dems_vector_hit ha[K], hb[K];
    for (size_t i = 0; i < nq; i++) {
        size_t na = 0, nb = 0;
        assert_int_equal(dems_vector_search(a, q + i * dim, K, 50, NULL, ha, &na), 0);
        assert_int_equal(dems_vector_search(b, q + i * dim, K, 50, NULL, hb, &nb), 0);
        assert_int_equal(na, nb);
        for (size_t j = 0; j < na; j++) {
            assert_true(ha[j].label == hb[j].label);
            assert_true(ha[j].distance == hb[j].distance);
        }
    }
}

static void test_save_load(void **state)
{
    (void)state;
    size_t n = 2500, nq = 80;
    uint32_t dim = 32;
    float *v = make_data(n + nq + 100, dim, 41, false);
    char *path = temp_path("rt");
    for (int st = 0; st < 2; st++) {
        struct dems_vector_index *ix =
            build(v, n, dim, st ? DEMS_VECTOR_SQ8 : DEMS_VECTOR_F32, DEMS_VECTOR_L2, 2);
        assert_int_equal(dems_vector_remove(ix, 17), 0);
        assert_int_equal(dems_vector_save(ix, path), 0);
        for (unsigned mode = 0; mode < 2; mode++) {
            struct dems_vector_index *lx = NULL;
            const char *why = NULL;
            unsigned fl = mode ? DEMS_VECTOR_LOAD_MMAP : 0;
            assert_int_equal(dems_vector_load(path, fl, &lx, &why), 0);
            assert_int_equal(dems_vector_count(lx), n - 1);
            same_results(ix, lx, v + n * dim, nq, dim);
            /* The loaded index keeps working: removals and growth. */
            assert_int_equal(dems_vector_remove(lx, 17), DEMS_ENOTFOUND);
            assert_int_equal(dems_vector_remove(lx, 18), 0);
            assert_int_equal(dems_vector_add(lx, 17, v + 17 * dim), 0);
            assert_int_equal(dems_vector_add(lx, 19, v + 19 * dim), DEMS_ECONFLICT);
            for (size_t i = 0; i < 100; i++)
                assert_int_equal(dems_vector_add(lx, n + i, v + (n + nq + i) * dim), 0);
            assert_int_equal(dems_vector_count(lx), n + 99);
            struct dems_vector_hit h[K];
            size_t got = 0;
            assert_int_equal(dems_vector_search(lx, v + (n + nq + 5) * dim, K, 50, NULL, h, &got),
                             0);
            assert_true(h[0].label == n + 5);
            dems_vector_free(lx);
        }
        dems_vector_free(ix);
    }
    unlink(path);
    free(path);
    free(v);
}

/* Rewrites one byte of a file. */
static void poke(const char *path, long off, uint8_t x)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    assert_int_equal(fputc((uint8_t)c ^ x, f), (uint8_t)c ^ x);
    fclose(f);
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long s = ftell(f);
    fclose(f);
    return s;
}

static void expect_refused(const char *path)
{
    for (unsigned mode = 0; mode < 2; mode++) {
        struct dems_vector_index *lx = NULL;
        const char *why = NULL;
        int r = dems_vector_load(path, mode ? DEMS_VECTOR_LOAD_MMAP : 0, &lx, &why);
        assert_int_equal(r, DEMS_EINVAL);
        assert_null(lx);
        assert_non_null(why);
        assert_true(strlen(why) > 10);
    }
}

static void test_damaged_files(void **state)
{
    (void)state;
    size_t n = 1500;
    uint32_t dim = 16;
    float *v = make_data(n, dim, 51, false);
    struct dems_vector_index *ix = build(v, n, dim, DEMS_VECTOR_SQ8, DEMS_VECTOR_L2, 1);
    char *path = temp_path("bad");
    assert_int_equal(dems_vector_save(ix, path), 0);
    long size = file_size(path);
    /* Corruption anywhere: header fields, every page of every section. */
    for (long off = 0; off < size; off += 4093) {
        poke(path, off, 0x40);
        expect_refused(path);
        poke(path, off, 0x40);
    }
    poke(path, size - 1 > 4096 ? 4096 + 7 : 3, 1);
    expect_refused(path);
    poke(path, size - 1 > 4096 ? 4096 + 7 : 3, 1);
    /* Truncation at several lengths, including inside the header. */
    long cuts[] = {0, 100, 4095, 4096, 8192, size / 2, size - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        char *tp = temp_path("cut");
        FILE *in = fopen(path, "rb"), *out = fopen(tp, "wb");
        assert_non_null(in);
        assert_non_null(out);
        for (long b = 0; b < cuts[i]; b++)
            fputc(fgetc(in), out);
        fclose(in);
        fclose(out);
        expect_refused(tp);
        unlink(tp);
        free(tp);
    }
    /* The intact file still loads, so the refusals were about the damage. */
    struct dems_vector_index *lx = NULL;
    assert_int_equal(dems_vector_load(path, 0, &lx, NULL), 0);
    dems_vector_free(lx);
    const char *why = NULL;
    assert_int_equal(dems_vector_load("/nonexistent/dems.idx", 0, &lx, &why), DEMS_EIO);
    assert_non_null(why);
    unlink(path);
    free(path);
    dems_vector_free(ix);
    free(v);
}

/* Writers insert rows [n0, n) while readers search; every hit is a real row. */
struct conc {
    struct dems_vector_index *ix;
    const float *v;
    uint32_t dim;
    size_t n0, n, next; /* next: atomic */
    int done;           /* atomic */
    size_t bad;         /* atomic */
};

static void *conc_writer(void *arg)
{
    struct conc *c = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED);
        if (i >= c->n)
            break;
        if (dems_vector_add(c->ix, i, c->v + i * c->dim) != 0)
            __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    struct dems_vector_hit h[K];
    size_t q = 0;
    while (!__atomic_load_n(&c->done, __ATOMIC_ACQUIRE) || q < 50) {
        size_t got = 0, row = (q * 7919) % c->n;
        if (dems_vector_search(c->ix, c->v + row * c->dim, K, 32, NULL, h, &got) != 0)
            __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
        for (size_t j = 0; j < got; j++) {
            if (h[j].label >= c->n)
                __atomic_fetch_add(&c->bad, 1, __ATOMIC_RELAXED);
        }
        q++;
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    size_t n = 4000, n0 = 500;
    uint32_t dim = 32;
    float *v = make_data(n, dim, 61, false);
    struct dems_vector_index *ix = build(v, n0, dim, DEMS_VECTOR_F32, DEMS_VECTOR_L2, 1);
    struct conc c = {.ix = ix, .v = v, .dim = dim, .n0 = n0, .n = n, .next = n0};
    pthread_t w[2], r[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&w[i], NULL, conc_writer, &c), 0);
        assert_int_equal(pthread_create(&r[i], NULL, conc_reader, &c), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    __atomic_store_n(&c.done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    assert_int_equal(c.bad, 0);
    assert_int_equal(dems_vector_count(ix), n);
    /* The graph built under contention is as good as a quiet one. */
    assert_true(recall(ix, v + 3 * dim, 100, dim, 64, NULL) >= 0.95);
    dems_vector_free(ix);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),        cmocka_unit_test(test_brute_knn),
        cmocka_unit_test(test_recall_f32_l2), cmocka_unit_test(test_recall_sq8_l2),
        cmocka_unit_test(test_recall_cosine), cmocka_unit_test(test_sq8_without_floats),
        cmocka_unit_test(test_filters),       cmocka_unit_test(test_remove_and_compact),
        cmocka_unit_test(test_save_load),     cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
