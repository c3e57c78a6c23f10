/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exact search: scoring every candidate and keeping the k best in a bounded
 * max-heap. Used for small sets, for checking the graph's recall, for
 * computing benchmark ground truth, and for filters so selective that a scan
 * of the accepted vectors is cheaper than a graph walk.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

#include "vector_int.h"

/* Offers (d, id) to a bounded max-heap of at most k entries. */
static void offer(struct vec_cand *h, size_t *n, size_t k, float d, uint32_t id)
{
    if (*n < k) {
        vec_heap_push_max(h, n, (struct vec_cand){d, id});
    } else if (d < h[0].d) {
        vec_heap_pop_max(h, n);
        vec_heap_push_max(h, n, (struct vec_cand){d, id});
    }
}

/* Exact distance for a scan: float vectors when kept, else the codes. */
static float scan_dist(const struct dems_vector_index *ix, const struct vec_ctx *c, uint32_t s)
{
    if (ix->f32 != NULL)
        return vec_dist_exact(ix, c->tmp, s);
    return vec_dist_q(ix, c->q, s);
}

static void scan_all(struct dems_vector_index *ix, struct vec_ctx *c, size_t k,
                     const struct dems_vector_filter *f, size_t *nt)
{
    size_t n = __atomic_load_n(&ix->n, __ATOMIC_ACQUIRE);
    for (size_t s = 0; s < n; s++) {
        if (vec_flags(ix, (uint32_t)s) != VF_READY)
            continue;
        if (f != NULL && !vec_filter_pass(f, ix->labels[s]))
            continue;
        offer(c->top, nt, k, scan_dist(ix, c, (uint32_t)s), (uint32_t)s);
    }
}

/* Visits only the labels set in f's bitmap, looking each up in the label map. */
static void scan_bits(struct dems_vector_index *ix, struct vec_ctx *c, size_t k,
                      const struct dems_vector_filter *f, size_t *nt)
{
    size_t words = (size_t)((f->nbits + 63) / 64);
    pthread_rwlock_rdlock(&ix->map_lock);
    for (size_t w = 0; w < words; w++) {
        uint64_t bits = f->bits[w];
        while (bits != 0) {
            uint64_t label = (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            uint32_t s;
            if (label >= f->nbits || vec_slot_of(ix, label, &s) < 0)
                continue;
            if (vec_flags(ix, s) != VF_READY)
                continue;
            if (f->accept != NULL && !f->accept(label, f->arg))
                continue;
            offer(c->top, nt, k, scan_dist(ix, c, s), s);
        }
    }
    pthread_rwlock_unlock(&ix->map_lock);
}

int vec_brute_search(struct dems_vector_index *ix, struct vec_ctx *c, size_t k,
                     const struct dems_vector_filter *f, bool bitmap_walk,
                     struct dems_vector_hit *hits, size_t *ret_n)
{
    if (vec_ctx_fit(c, k + 1, 64) < 0)
        return DEMS_ENOMEM;
    size_t nt = 0;
    if (bitmap_walk)
        scan_bits(ix, c, k, f, &nt);
    else
        scan_all(ix, c, k, f, &nt);
    vec_sort_cands(c->top, nt);
    bool exact = ix->f32 != NULL;
    for (size_t i = 0; i < nt; i++) {
        hits[i].label = ix->labels[c->top[i].id];
        hits[i].distance = vec_to_user(ix, c->top[i].d, exact);
    }
    *ret_n = nt;
    return 0;
}

int dems_vector_brute_knn(const float *base, size_t n, uint32_t dim, enum dems_vector_metric metric,
                          const float *query, size_t k, struct dems_vector_hit *hits, size_t *ret_n)
{
    if (dim == 0 || dim > DEMS_VECTOR_MAX_DIM || k == 0 || k > DEMS_VECTOR_MAX_EF ||
        n > DEMS_VECTOR_MAX_COUNT)
        return DEMS_EINVAL;
    if (metric != DEMS_VECTOR_L2 && metric != DEMS_VECTOR_COSINE)
        return DEMS_EINVAL;
    const struct vec_kernels *kern = vec_kernels_get();
    struct vec_cand *h = malloc((k + 1) * sizeof(*h));
    float *q = malloc(sizeof(float) * dim);
    float *row = malloc(sizeof(float) * dim);
    if (h == NULL || q == NULL || row == NULL) {
        free(h);
        free(q);
        free(row);
        return DEMS_ENOMEM;
    }
    double qn = 0;
    for (uint32_t d = 0; d < dim; d++)
        qn += (double)query[d] * query[d];
    float qinv = metric == DEMS_VECTOR_COSINE && qn > 0 ? (float)(1.0 / sqrt(qn)) : 1.0f;
    for (uint32_t d = 0; d < dim; d++)
        q[d] = query[d] * qinv;
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        const float *b = base + i * dim;
        if (metric == DEMS_VECTOR_COSINE) {
            /* Rows are normalised on the fly; cosine scans are for checking. */
            double bn = 0;
            for (uint32_t d = 0; d < dim; d++)
                bn += (double)b[d] * b[d];
            float inv = bn > 0 ? (float)(1.0 / sqrt(bn)) : 0.0f;
            for (uint32_t d = 0; d < dim; d++)
                row[d] = b[d] * inv;
            b = row;
        }
        offer(h, &nt, k, kern->l2(q, b, dim), (uint32_t)i);
    }
    vec_sort_cands(h, nt);
    for (size_t i = 0; i < nt; i++) {
        hits[i].label = h[i].id;
        hits[i].distance = metric == DEMS_VECTOR_COSINE ? h[i].d * 0.5f : h[i].d;
    }
    *ret_n = nt;
    free(h);
    free(q);
    free(row);
    return 0;
}
