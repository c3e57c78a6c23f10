/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A deterministic generator of face-descriptor-like data. Each identity has a
 * unit-length centre made of a shared "face" direction, one of 64 group
 * directions (the coarse structure real descriptors show: sex, age, ethnicity)
 * and an individual part drawn mostly from a 64-dimensional subspace; each
 * sample is the centre plus per-identity noise, normalised. With the constants
 * below, two samples of one person lie about 0.3-0.5 apart and two people
 * about 0.8-1.3. Identities have 1-8 samples; the base is shuffled. Queries
 * are fresh samples: 85% of people in the base, 15% of strangers. Everything
 * derives from the seed through counter-based hashing, so the output depends
 * only on (seed, n, queries).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dems/vector.h"

#define DIM     128
#define GROUPS  64
#define RANK    64
#define SHARE_A 0.40 /* shared face direction */
#define SHARE_B 0.25 /* group direction */
#define SHARE_C 0.35 /* individual part */

struct rng {
    uint64_t s;
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

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

/* Number of base samples identity i has (1..8). */
static unsigned samples_of(const struct model *m, uint64_t i)
{
    return 1 + (unsigned)(mix(m->seed ^ mix(i + 77)) % 8);
}

/* The centre of identity i and its noise level. */
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

/* Sample j of identity i. */
static void sample(const struct model *m, uint64_t i, uint64_t j, float *out)
{
    double c[DIM];
    double sigma = centre(m, i, c);
    struct rng r = rng_for(m->seed, 3, i, j);
    for (int d = 0; d < DIM; d++)
        c[d] += sigma * gauss(&r);
    normalise(c, DIM);
    for (int d = 0; d < DIM; d++)
        out[d] = (float)c[d];
}

static int write_fvecs(const char *path, const float *v, size_t rows, uint32_t dim)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    int32_t d = (int32_t)dim;
    for (size_t i = 0; i < rows; i++) {
        if (fwrite(&d, 4, 1, f) != 1 || fwrite(v + i * dim, 4, dim, f) != dim) {
            fclose(f);
            return -1;
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

struct gt_job {
    const float *base, *q;
    size_t n, nq, k;
    int32_t *out;
    size_t next;
};

static void *gt_worker(void *arg)
{
    struct gt_job *j = arg;
    struct dems_vector_hit *hits = malloc(j->k * sizeof(*hits));
    if (hits == NULL)
        return NULL;
    for (;;) {
        size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->nq)
            break;
        size_t got = 0;
        dems_vector_brute_knn(j->base, j->n, DIM, DEMS_VECTOR_L2, j->q + i * DIM, j->k, hits, &got);
        for (size_t h = 0; h < j->k; h++)
            j->out[i * j->k + h] = h < got ? (int32_t)hits[h].label : -1;
    }
    free(hits);
    return NULL;
}

static double dist(const float *a, const float *b)
{
    double s = 0;
    for (int d = 0; d < DIM; d++)
        s += ((double)a[d] - b[d]) * ((double)a[d] - b[d]);
    return sqrt(s);
}

/* Prints same-person and different-person distance ranges for a sanity check. */
static void report(const struct model *m)
{
    float a[DIM], b[DIM];
    double same[1000], diff[1000];
    for (int t = 0; t < 1000; t++) {
        sample(m, (uint64_t)t, 0, a);
        sample(m, (uint64_t)t, 1, b);
        same[t] = dist(a, b);
        sample(m, (uint64_t)t + 5000, 0, b);
        diff[t] = dist(a, b);
    }
    double s_lo = 9, s_hi = 0, d_lo = 9, d_hi = 0, s_sum = 0, d_sum = 0;
    for (int t = 0; t < 1000; t++) {
        s_lo = fmin(s_lo, same[t]), s_hi = fmax(s_hi, same[t]), s_sum += same[t];
        d_lo = fmin(d_lo, diff[t]), d_hi = fmax(d_hi, diff[t]), d_sum += diff[t];
    }
    fprintf(stderr, "gen: same person %.3f..%.3f (mean %.3f); different %.3f..%.3f (mean %.3f)\n",
            s_lo, s_hi, s_sum / 1000, d_lo, d_hi, d_sum / 1000);
}

int bench_gen(const char *dir, size_t n, size_t nq, uint64_t seed, size_t gt_k, unsigned threads);

int bench_gen(const char *dir, size_t n, size_t nq, uint64_t seed, size_t gt_k, unsigned threads)
{
    struct model *m = malloc(sizeof(*m));
    float *base = malloc(n * DIM * sizeof(float));
    float *q = malloc(nq * DIM * sizeof(float));
    int32_t *gt = malloc(nq * gt_k * sizeof(int32_t));
    char path[4096];
    int r = -1;
    if (m == NULL || base == NULL || q == NULL || gt == NULL || strlen(dir) > 4000)
        goto out;
    mkdir(dir, 0755);
    model_init(m, seed);
    report(m);
    uint64_t ids = 0;
    for (size_t row = 0; row < n; ids++) {
        unsigned s = samples_of(m, ids);
        for (unsigned j = 0; j < s && row < n; j++, row++)
            sample(m, ids, j, base + row * DIM);
    }
    struct rng r0 = rng_for(seed, 4, 0, 0);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(next(&r0) % i);
        float t[DIM];
        memcpy(t, base + (i - 1) * DIM, sizeof(t));
        memcpy(base + (i - 1) * DIM, base + j * DIM, sizeof(t));
        memcpy(base + j * DIM, t, sizeof(t));
    }
    for (size_t i = 0; i < nq; i++) {
        struct rng rq = rng_for(seed, 5, i, 0);
        if (uniform(&rq) < 0.85) /* a known person, a sample not in the base */
            sample(m, next(&rq) % ids, 100 + i, q + i * DIM);
        else /* a stranger */
            sample(m, ids + 1000 + i, 0, q + i * DIM);
    }
    snprintf(path, sizeof(path), "%s/base.fvecs", dir);
    if (write_fvecs(path, base, n, DIM) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/query.fvecs", dir);
    if (write_fvecs(path, q, nq, DIM) < 0)
        goto out;
    struct gt_job j = {.base = base, .q = q, .n = n, .nq = nq, .k = gt_k, .out = gt};
    pthread_t tid[64];
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    for (unsigned t = 0; t < threads; t++)
        pthread_create(&tid[t], NULL, gt_worker, &j);
    for (unsigned t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    snprintf(path, sizeof(path), "%s/gt.ivecs", dir);
    if (write_fvecs(path, (const float *)(const void *)gt, nq, (uint32_t)gt_k) < 0)
        goto out;
    fprintf(stderr, "gen: %zu base vectors from %llu identities, %zu queries, gt k=%zu\n", n,
            (unsigned long long)ids, nq, gt_k);
    r = 0;
out:
    free(m);
    free(base);
    free(q);
    free(gt);
    return r;
}

int bench_stats(const float *base, size_t n, uint32_t dim);

int bench_stats(const float *base, size_t n, uint32_t dim)
{
    if (dim != DIM || n < 2)
        return -1;
    /* Nearest-neighbour distances of the first 200 rows. */
    struct dems_vector_hit h[2];
    double lo = 9, hi = 0, sum = 0;
    size_t rows = n < 200 ? n : 200;
    for (size_t i = 0; i < rows; i++) {
        size_t got;
        dems_vector_brute_knn(base, n, DIM, DEMS_VECTOR_L2, base + i * DIM, 2, h, &got);
        double d = sqrt(h[1].distance);
        lo = fmin(lo, d), hi = fmax(hi, d), sum += d;
    }
    printf("nearest other row: %.3f..%.3f (mean %.3f)\n", lo, hi, sum / (double)rows);
    return 0;
}
