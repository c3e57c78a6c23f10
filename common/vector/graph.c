/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HNSW graph (Malkov and Yashunin, 2016): layered proximity graphs where
 * level 0 holds every node with up to 2m links and each higher level holds an
 * exponentially thinning subset with up to m. Insert searches down from the
 * entry point and links the node to neighbours chosen by the diversity
 * heuristic; search descends greedily and runs a best-first beam of width ef
 * on level 0.
 *
 * Concurrency: link words are read with acquire loads and no lock, and are
 * written under the owner's striped node lock with release stores, so a
 * reader sees either the old or the new neighbour list word by word, and any
 * node id it reads was fully written (vector, level, upper links) before the
 * id was published. Readers tolerate half-updated lists: every id in them is
 * a valid node.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

#include "vector_int.h"

/* --- heaps -------------------------------------------------------------- */

void vec_heap_push_max(struct vec_cand *h, size_t *n, struct vec_cand x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].d >= x.d)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

void vec_heap_pop_max(struct vec_cand *h, size_t *n)
{
    struct vec_cand x = h[--(*n)];
    size_t i = 0, len = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= len)
            break;
        if (l + 1 < len && h[l + 1].d > h[l].d)
            l++;
        if (h[l].d <= x.d)
            break;
        h[i] = h[l];
        i = l;
    }
    if (len > 0)
        h[i] = x;
}

void vec_heap_push_min(struct vec_cand *h, size_t *n, struct vec_cand x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].d <= x.d)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

void vec_heap_pop_min(struct vec_cand *h, size_t *n)
{
    struct vec_cand x = h[--(*n)];
    size_t i = 0, len = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= len)
            break;
        if (l + 1 < len && h[l + 1].d < h[l].d)
            l++;
        if (h[l].d >= x.d)
            break;
        h[i] = h[l];
        i = l;
    }
    if (len > 0)
        h[i] = x;
}

static int cmp_cand(const void *a, const void *b)
{
    const struct vec_cand *x = a, *y = b;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

void vec_sort_cands(struct vec_cand *a, size_t n)
{
    qsort(a, n, sizeof(*a), cmp_cand);
}

/* --- distances ---------------------------------------------------------- */

/* Distance from a query in kernel form to a stored node. */
float vec_dist_q(const struct dems_vector_index *ix, const float *q, uint32_t slot)
{
    size_t dim = ix->p.dim;
    if (ix->codes != NULL)
        return ix->k->sq8(q, ix->codes + (size_t)slot * dim, dim);
    return ix->k->l2(q, ix->f32 + (size_t)slot * dim, dim);
}

/* Exact squared L2 from a cleaned float query (needs f32 storage). */
float vec_dist_exact(const struct dems_vector_index *ix, const float *q, uint32_t slot)
{
    size_t dim = ix->p.dim;
    return ix->k->l2(q, ix->f32 + (size_t)slot * dim, dim);
}

/* A stored node in kernel (query) form: its row, or its codes decoded into tmp. */
static const float *node_as_query(const struct dems_vector_index *ix, uint32_t slot, float *tmp)
{
    size_t dim = ix->p.dim;
    if (ix->codes == NULL)
        return ix->f32 + (size_t)slot * dim;
    const uint8_t *c = ix->codes + (size_t)slot * dim;
    for (size_t d = 0; d < dim; d++)
        tmp[d] = (float)c[d];
    return tmp;
}

static void prefetch_node(const struct dems_vector_index *ix, uint32_t slot)
{
    size_t dim = ix->p.dim;
    const char *p;
    size_t bytes;
    if (ix->codes != NULL) {
        p = (const char *)(ix->codes + (size_t)slot * dim);
        bytes = dim;
    } else {
        p = (const char *)(ix->f32 + (size_t)slot * dim);
        bytes = dim * sizeof(float);
    }
    if (bytes > 512)
        bytes = 512;
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(p + off, 0, 3);
}

/* --- search on one level ------------------------------------------------ */

/*
 * The visited set. A beam visits a few thousand nodes, so a small hash table
 * of slot ids stays in L1/L2, where an array of per-slot marks (hnswlib's
 * way) is megabytes of random accesses that miss the cache as often as the
 * vectors do.
 */
#define VIS_START_BITS 14
#define VIS_KEEP_BITS  16

static int vis_reset(struct vec_ctx *c)
{
    if (c->vis == NULL || c->vis_bits > VIS_KEEP_BITS) {
        free(c->vis);
        c->vis_bits = VIS_START_BITS;
        c->vis = malloc(sizeof(uint32_t) << c->vis_bits);
        if (c->vis == NULL)
            return DEMS_ENOMEM;
    }
    memset(c->vis, 0xff, sizeof(uint32_t) << c->vis_bits);
    c->vis_n = 0;
    return 0;
}

static size_t vis_slot(const uint32_t *t, unsigned bits, uint32_t id)
{
    size_t mask = ((size_t)1 << bits) - 1, h = (uint32_t)(id * 2654435761u) >> (32 - bits);
    while (t[h] != id && t[h] != UINT32_MAX)
        h = (h + 1) & mask;
    return h;
}

static int vis_grow(struct vec_ctx *c)
{
    unsigned bits = c->vis_bits + 1;
    uint32_t *t = malloc(sizeof(uint32_t) << bits);
    if (t == NULL)
        return DEMS_ENOMEM;
    memset(t, 0xff, sizeof(uint32_t) << bits);
    for (size_t i = 0; i < ((size_t)1 << c->vis_bits); i++) {
        if (c->vis[i] != UINT32_MAX)
            t[vis_slot(t, bits, c->vis[i])] = c->vis[i];
    }
    free(c->vis);
    c->vis = t;
    c->vis_bits = bits;
    return 0;
}

/* Marks id visited: 1 if it was new, 0 if already seen, or DEMS_ENOMEM. */
static inline int vis_add(struct vec_ctx *c, uint32_t id)
{
    size_t h = vis_slot(c->vis, c->vis_bits, id);
    if (c->vis[h] == id)
        return 0;
    c->vis[h] = id;
    if (++c->vis_n * 2 > ((size_t)1 << c->vis_bits) && vis_grow(c) < 0)
        return DEMS_ENOMEM;
    return 1;
}

/* May node s appear in results: ready, not removed, accepted by f. */
static bool returnable(const struct dems_vector_index *ix, const struct dems_vector_filter *f,
                       uint32_t s)
{
    if (vec_flags(ix, s) != VF_READY)
        return false;
    return f == NULL || vec_filter_pass(f, ix->labels[s]);
}

/* Greedy walk on level lvl from *cur towards q. */
static void greedy(const struct dems_vector_index *ix, struct vec_ctx *c, const float *q,
                   unsigned lvl, uint32_t *cur, float *cur_d)
{
    bool changed = true;
    while (changed) {
        changed = false;
        const uint32_t *ln = vec_links(ix, *cur, lvl);
        uint32_t cnt = vec_ld(ln);
        if (cnt > ix->p.m)
            cnt = ix->p.m;
        for (uint32_t j = 0; j < cnt; j++) {
            c->nbr[j] = vec_ld(ln + 1 + j);
            prefetch_node(ix, c->nbr[j]);
        }
        for (uint32_t j = 0; j < cnt; j++) {
            float d = vec_dist_q(ix, q, c->nbr[j]);
            if (d < *cur_d) {
                *cur_d = d;
                *cur = c->nbr[j];
                changed = true;
            }
        }
    }
}

/*
 * Best-first beam search of width ef on level lvl from ep. With check set
 * (queries), only returnable nodes enter the result heap c->top, but every
 * node routes. Returns the number of results, or DEMS_ENOMEM as a negative.
 */
static long search_level(const struct dems_vector_index *ix, struct vec_ctx *c, const float *q,
                         uint32_t ep, float ep_d, size_t ef, unsigned lvl, bool check,
                         const struct dems_vector_filter *f)
{
    size_t nc = 0, nt = 0;
    uint32_t maxm = lvl == 0 ? ix->m0 : ix->p.m;
    if (vec_ctx_fit(c, ef + 1, 64) < 0 || vis_reset(c) < 0 || vis_add(c, ep) < 0)
        return DEMS_ENOMEM;
    vec_heap_push_min(c->cand, &nc, (struct vec_cand){ep_d, ep});
    if (!check || returnable(ix, f, ep))
        vec_heap_push_max(c->top, &nt, (struct vec_cand){ep_d, ep});
    while (nc > 0) {
        struct vec_cand cur = c->cand[0];
        if (nt == ef && cur.d > c->top[0].d)
            break;
        vec_heap_pop_min(c->cand, &nc);
        if (nc > 0)
            __builtin_prefetch(vec_links(ix, c->cand[0].id, lvl), 0, 3);
        const uint32_t *ln = vec_links(ix, cur.id, lvl);
        uint32_t cnt = vec_ld(ln), m = 0;
        if (cnt > maxm)
            cnt = maxm;
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t id = vec_ld(ln + 1 + j);
            int seen = vis_add(c, id);
            if (seen < 0)
                return DEMS_ENOMEM;
            if (seen == 0)
                continue;
            c->nbr[m++] = id;
            prefetch_node(ix, id);
        }
        if (nc + m > c->cand_cap && vec_ctx_fit(c, ef + 1, nc + m) < 0)
            return DEMS_ENOMEM;
        for (uint32_t j = 0; j < m; j++) {
            uint32_t id = c->nbr[j];
            float d = vec_dist_q(ix, q, id);
            if (nt == ef && d >= c->top[0].d)
                continue;
            vec_heap_push_min(c->cand, &nc, (struct vec_cand){d, id});
            if (check && !returnable(ix, f, id))
                continue;
            vec_heap_push_max(c->top, &nt, (struct vec_cand){d, id});
            if (nt > ef)
                vec_heap_pop_max(c->top, &nt);
        }
    }
    return (long)nt;
}

/* --- insert ------------------------------------------------------------- */

static unsigned draw_level(const struct dems_vector_index *ix, uint32_t slot)
{
    /* A hash of (seed, slot) rather than a shared generator: the same input
     * order gives the same levels whatever the thread count. */
    uint64_t x = ix->p.seed + 0x9e3779b97f4a7c15ULL * ((uint64_t)slot + 1);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    double u = ((double)(x >> 11) + 1.0) * 0x1.0p-53;
    double l = -log(u) * ix->level_mult;
    return l >= MAX_LEVEL ? MAX_LEVEL : (unsigned)l;
}

/*
 * The diversity heuristic: walking candidates nearest first, keep one only
 * if it is nearer to the base than to every neighbour kept so far. a[0..n)
 * holds distances to the base; the kept ones are moved to the front. Returns
 * how many were kept (at most maxm).
 */
static size_t select_neighbours(const struct dems_vector_index *ix, struct vec_ctx *c,
                                struct vec_cand *a, size_t n, size_t maxm)
{
    vec_sort_cands(a, n);
    if (n <= maxm)
        return n;
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < maxm; i++) {
        const float *qa = node_as_query(ix, a[i].id, c->tmp);
        bool good = true;
        for (size_t j = 0; j < kept; j++) {
            if (vec_dist_q(ix, qa, a[j].id) < a[i].d) {
                good = false;
                break;
            }
        }
        if (good)
            a[kept++] = a[i];
    }
    return kept;
}

static pthread_mutex_t *node_lock(struct dems_vector_index *ix, uint32_t slot)
{
    return &ix->node_locks[slot % NODE_LOCKS];
}

/* Writes a whole link list under the caller's node lock. */
static void write_links(uint32_t *ln, const struct vec_cand *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vec_st(ln + 1 + i, a[i].id);
    vec_st(ln, (uint32_t)n);
}

/* Adds a back link from node e to the new node s on level lvl, pruning when full. */
static int link_back(struct dems_vector_index *ix, struct vec_ctx *c, uint32_t e, uint32_t s,
                     float d_es, unsigned lvl)
{
    size_t maxm = lvl == 0 ? ix->m0 : ix->p.m;
    pthread_mutex_lock(node_lock(ix, e));
    uint32_t *ln = vec_links(ix, e, lvl);
    uint32_t cnt = vec_ld(ln);
    for (uint32_t j = 0; j < cnt; j++) {
        if (vec_ld(ln + 1 + j) == s) {
            pthread_mutex_unlock(node_lock(ix, e));
            return 0;
        }
    }
    if (cnt < maxm) {
        vec_st(ln + 1 + cnt, s);
        vec_st(ln, cnt + 1);
        pthread_mutex_unlock(node_lock(ix, e));
        return 0;
    }
    /* Full: choose the best maxm among the old list and s, by the heuristic. */
    struct vec_cand *a = c->sel + ix->p.ef_construction + 1;
    const float *qe = node_as_query(ix, e, c->tmp);
    for (uint32_t j = 0; j < cnt; j++) {
        uint32_t id = vec_ld(ln + 1 + j);
        a[j] = (struct vec_cand){vec_dist_q(ix, qe, id), id};
    }
    a[cnt] = (struct vec_cand){d_es, s};
    size_t kept = select_neighbours(ix, c, a, cnt + 1, maxm);
    write_links(ln, a, kept);
    pthread_mutex_unlock(node_lock(ix, e));
    return 0;
}

/* Links s on level lvl to the nearest of the nt results in c->top. */
static int connect(struct dems_vector_index *ix, struct vec_ctx *c, uint32_t s, size_t nt,
                   unsigned lvl)
{
    struct vec_cand *a = c->sel;
    memcpy(a, c->top, nt * sizeof(*a));
    size_t kept = select_neighbours(ix, c, a, nt, ix->p.m);
    pthread_mutex_lock(node_lock(ix, s));
    write_links(vec_links(ix, s, lvl), a, kept);
    pthread_mutex_unlock(node_lock(ix, s));
    for (size_t i = 0; i < kept; i++) {
        int r = link_back(ix, c, a[i].id, s, a[i].d, lvl);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Fills c->q with the stored vector v in kernel form. */
static void insert_query(const struct dems_vector_index *ix, struct vec_ctx *c, const float *v)
{
    if (ix->codes == NULL) {
        memcpy(c->q, v, sizeof(float) * ix->p.dim);
        return;
    }
    float inv = 1.0f / ix->qstep;
    for (uint32_t d = 0; d < ix->p.dim; d++)
        c->q[d] = (v[d] - ix->qlo[d]) * inv;
}

static int insert_levels(struct dems_vector_index *ix, struct vec_ctx *c, uint32_t s,
                         unsigned level, uint64_t ep)
{
    uint32_t cur = (uint32_t)ep;
    unsigned top = (unsigned)(ep >> 32);
    float cur_d = vec_dist_q(ix, c->q, cur);
    for (unsigned l = top; l > level; l--)
        greedy(ix, c, c->q, l, &cur, &cur_d);
    size_t efc = ix->p.ef_construction;
    for (unsigned l = level < top ? level : top;; l--) {
        long nt = search_level(ix, c, c->q, cur, cur_d, efc, l, false, NULL);
        if (nt < 0)
            return (int)nt;
        /* The nearest result seeds the next level down. */
        for (long i = 0; i < nt; i++) {
            if (c->top[i].d < cur_d) {
                cur_d = c->top[i].d;
                cur = c->top[i].id;
            }
        }
        int r = connect(ix, c, s, (size_t)nt, l);
        if (r < 0)
            return r;
        if (l == 0)
            break;
    }
    return 0;
}

int vec_graph_insert(struct dems_vector_index *ix, struct vec_ctx *c, uint32_t s, const float *v)
{
    unsigned level = draw_level(ix, s);
    size_t need = ix->p.ef_construction + 1 + ix->m0 + 2;
    if (c->sel_cap < need) {
        struct vec_cand *n = realloc(c->sel, need * sizeof(*n));
        if (n == NULL)
            return DEMS_ENOMEM;
        c->sel = n;
        c->sel_cap = need;
    }
    if (level > 0) {
        size_t bytes = (size_t)level * (1 + ix->p.m) * sizeof(uint32_t);
        ix->upper[s] = calloc(1, bytes);
        if (ix->upper[s] == NULL)
            return DEMS_ENOMEM;
        __atomic_fetch_add(&ix->upper_bytes, bytes, __ATOMIC_RELAXED);
    }
    ix->levels[s] = (uint8_t)level;
    insert_query(ix, c, v);

    uint64_t ep = __atomic_load_n(&ix->ep, __ATOMIC_ACQUIRE);
    bool raise = ep == EP_NONE || level > (unsigned)(ep >> 32);
    if (raise) {
        /* A new top level: hold the entry lock so only one node takes over. */
        pthread_mutex_lock(&ix->ep_lock);
        ep = __atomic_load_n(&ix->ep, __ATOMIC_ACQUIRE);
        raise = ep == EP_NONE || level > (unsigned)(ep >> 32);
        if (!raise)
            pthread_mutex_unlock(&ix->ep_lock);
    }
    int r = 0;
    if (ep != EP_NONE)
        r = insert_levels(ix, c, s, level, ep);
    if (raise) {
        if (r == 0)
            __atomic_store_n(&ix->ep, ((uint64_t)level << 32) | s, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&ix->ep_lock);
    }
    return r;
}

/* --- orphan repair ------------------------------------------------------ */

/* Gives node o an in-link from one of its own neighbours; indeg is updated. */
static void adopt(struct dems_vector_index *ix, uint32_t o, uint32_t *indeg)
{
    const uint32_t *mine = vec_links(ix, o, 0);
    for (uint32_t j = 0; j < mine[0]; j++) {
        uint32_t e = mine[1 + j];
        uint32_t *ln = vec_links(ix, e, 0);
        if (e == o)
            continue;
        if (ln[0] < ix->m0) {
            ln[1 + ln[0]] = o;
            ln[0]++;
            indeg[o]++;
            return;
        }
        /* Full: give up the link whose target is best connected otherwise. */
        uint32_t best = 0;
        for (uint32_t x = 1; x < ln[0]; x++)
            if (indeg[ln[1 + x]] > indeg[ln[1 + best]])
                best = x;
        if (indeg[ln[1 + best]] >= 2) {
            indeg[ln[1 + best]]--;
            ln[1 + best] = o;
            indeg[o]++;
            return;
        }
    }
}

/*
 * Pruning can leave a node that no other node links to on level 0; a search
 * can then never reach it however wide its beam. After a batch build, give
 * each such node a link from one of its neighbours. Runs with grow_lock held
 * exclusively, so plain loads and stores are safe.
 */
int vec_graph_repair(struct dems_vector_index *ix)
{
    size_t n = ix->n;
    uint32_t *indeg = calloc(n ? n : 1, sizeof(uint32_t));
    if (indeg == NULL)
        return DEMS_ENOMEM;
    for (size_t s = 0; s < n; s++) {
        const uint32_t *ln = vec_links(ix, (uint32_t)s, 0);
        for (uint32_t j = 0; j < ln[0]; j++)
            indeg[ln[1 + j]]++;
    }
    uint32_t ep = ix->ep == EP_NONE ? UINT32_MAX : (uint32_t)ix->ep;
    for (size_t s = 0; s < n; s++) {
        if (indeg[s] == 0 && s != ep && (ix->flags[s] & VF_READY))
            adopt(ix, (uint32_t)s, indeg);
    }
    free(indeg);
    return 0;
}

/* --- search ------------------------------------------------------------- */

/* SQ8 re-ranking: the head of the beam re-scored with floats (see below). */
#ifndef RERANK_FACTOR
#define RERANK_FACTOR 4
#endif
#define RERANK_MIN 32

static size_t popcount_bits(const struct dems_vector_filter *f)
{
    size_t n = 0, words = (size_t)(f->nbits / 64);
    for (size_t i = 0; i < words; i++)
        n += (size_t)__builtin_popcountll(f->bits[i]);
    if (f->nbits % 64)
        n += (size_t)__builtin_popcountll(f->bits[words] & ((1ULL << (f->nbits % 64)) - 1));
    return n;
}

/*
 * A selective filter makes the beam wade through many rejected nodes; past
 * the point where that costs more than scoring every accepted vector, scan
 * the accepted ones exactly instead. With a uniformly spread filter the beam
 * visits about ef / s nodes (s the accepted share) and the scan s * n, so the
 * scan wins below s = sqrt(ef / n); the factor 4 leans towards the scan,
 * whose answers are exact.
 */
static bool prefer_scan(const struct dems_vector_index *ix, const struct dems_vector_filter *f,
                        size_t ef)
{
    if (f == NULL || f->bits == NULL)
        return false;
    double acc = (double)popcount_bits(f);
    double live = (double)__atomic_load_n(&ix->live, __ATOMIC_RELAXED);
    return acc * acc <= 4.0 * (double)ef * live;
}

int vec_graph_search(struct dems_vector_index *ix, struct vec_ctx *c, const float *userq, size_t k,
                     size_t ef, const struct dems_vector_filter *f, struct dems_vector_hit *hits,
                     size_t *ret_n)
{
    (void)userq;
    if (prefer_scan(ix, f, ef))
        return vec_brute_search(ix, c, k, f, true, hits, ret_n);
    uint64_t ep = __atomic_load_n(&ix->ep, __ATOMIC_ACQUIRE);
    if (ep == EP_NONE) {
        *ret_n = 0;
        return 0;
    }
    uint32_t cur = (uint32_t)ep;
    float cur_d = vec_dist_q(ix, c->q, cur);
    for (unsigned l = (unsigned)(ep >> 32); l > 0; l--)
        greedy(ix, c, c->q, l, &cur, &cur_d);
    /* Without a filter or tombstones every node may be returned, so the beam
     * skips the per-node flag check; the few nodes still being inserted by
     * other threads are dropped from the final list instead. */
    bool check = f != NULL || __atomic_load_n(&ix->dead, __ATOMIC_RELAXED) > 0;
    long nt = search_level(ix, c, c->q, cur, cur_d, ef, 0, check, f);
    if (nt < 0)
        return (int)nt;
    bool exact = ix->codes != NULL && ix->f32 != NULL;
    vec_sort_cands(c->top, (size_t)nt);
    if (exact) {
        /*
         * Re-rank with the float vectors (c->tmp is the clean query). Code
         * distances are off by far less than the gap between the k-th and the
         * RERANK_FACTOR*k-th neighbour, so only the head of the beam is worth
         * the memory traffic of fetching float rows.
         */
        size_t head = k * RERANK_FACTOR < RERANK_MIN ? RERANK_MIN : k * RERANK_FACTOR;
        if (head > (size_t)nt)
            head = (size_t)nt;
        for (size_t i = 0; i < head; i++) {
            __builtin_prefetch(ix->f32 + (size_t)c->top[i].id * ix->p.dim, 0, 3);
            __builtin_prefetch(ix->f32 + (size_t)c->top[i].id * ix->p.dim + 16, 0, 3);
        }
        for (size_t i = 0; i < head; i++)
            c->top[i].d = vec_dist_exact(ix, c->tmp, c->top[i].id);
        vec_sort_cands(c->top, head);
        nt = (long)head;
    }
    size_t n = 0;
    for (long i = 0; i < nt && n < k; i++) {
        uint32_t id = c->top[i].id;
        if (!check && !returnable(ix, NULL, id))
            continue;
        hits[n].label = ix->labels[id];
        hits[n].distance = vec_to_user(ix, c->top[i].d, exact || ix->codes == NULL);
        n++;
    }
    *ret_n = n;
    return 0;
}
