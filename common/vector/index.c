/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The index object: parameters, per-slot storage and its growth, the label
 * to slot map, the SQ8 quantiser, the pool of search scratch, and the public
 * insert / remove / compact / search entry points that lock around the graph
 * code in graph.c.
 *
 * Locking. grow_lock is held shared by every call that touches the slot
 * arrays and exclusively by the rare calls that reallocate them (growth,
 * compaction, save), so readers never see an array move. Graph words are read
 * without locks through acquire loads and written under the striped node
 * lock with release stores (graph.c). alloc_lock hands out slots; map_lock
 * guards the label hash.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dems/err.h"

#include "vector_int.h"

#define DEFAULT_M    16
#define DEFAULT_EFC  200
#define DEFAULT_SEED 0x5eed5eed2024ULL
#define FIRST_CAP    1024

void dems_vector_params_init(struct dems_vector_params *p, uint32_t dim)
{
    *p = (struct dems_vector_params){
        .dim = dim,
        .metric = DEMS_VECTOR_L2,
        .storage = DEMS_VECTOR_F32,
        .m = DEFAULT_M,
        .ef_construction = DEFAULT_EFC,
        .seed = DEFAULT_SEED,
        .keep_f32 = true,
    };
}

bool vec_params_ok(const struct dems_vector_params *p)
{
    if (p->dim == 0 || p->dim > DEMS_VECTOR_MAX_DIM)
        return false;
    if (p->metric != DEMS_VECTOR_L2 && p->metric != DEMS_VECTOR_COSINE)
        return false;
    if (p->storage != DEMS_VECTOR_F32 && p->storage != DEMS_VECTOR_SQ8)
        return false;
    if (p->m < 2 || p->m > DEMS_VECTOR_MAX_M)
        return false;
    return p->ef_construction >= 1 && p->ef_construction <= DEMS_VECTOR_MAX_EF;
}

/* Allocates the object and its locks, with no slot storage yet. */
struct dems_vector_index *vec_alloc(const struct dems_vector_params *p)
{
    if (!vec_params_ok(p))
        return NULL;
    struct dems_vector_index *ix = calloc(1, sizeof(*ix));
    if (ix == NULL)
        return NULL;
    ix->p = *p;
    if (p->storage == DEMS_VECTOR_F32)
        ix->p.keep_f32 = true;
    ix->m0 = 2 * p->m;
    ix->level_mult = 1.0 / log((double)p->m);
    ix->k = vec_kernels_get();
    ix->ep = EP_NONE;
    ix->qstep = 1.0f;
    pthread_rwlock_init(&ix->grow_lock, NULL);
    pthread_rwlock_init(&ix->map_lock, NULL);
    pthread_mutex_init(&ix->alloc_lock, NULL);
    pthread_mutex_init(&ix->ep_lock, NULL);
    pthread_mutex_init(&ix->pool_lock, NULL);
    for (size_t i = 0; i < NODE_LOCKS; i++)
        pthread_mutex_init(&ix->node_locks[i], NULL);
    if (p->storage == DEMS_VECTOR_SQ8) {
        ix->qlo = malloc(sizeof(float) * p->dim);
        if (ix->qlo == NULL) {
            dems_vector_free(ix);
            return NULL;
        }
        /* Until trained: the range [-1, 1], which holds normalised vectors. */
        for (uint32_t d = 0; d < p->dim; d++)
            ix->qlo[d] = -1.0f;
        ix->qstep = 2.0f / 255.0f;
    }
    return ix;
}

int dems_vector_new(const struct dems_vector_params *p, struct dems_vector_index **ret_index)
{
    if (p == NULL || !vec_params_ok(p))
        return DEMS_EINVAL;
    struct dems_vector_index *ix = vec_alloc(p);
    if (ix == NULL)
        return DEMS_ENOMEM;
    *ret_index = ix;
    return 0;
}

bool vec_is_mapped(const struct dems_vector_index *ix, const void *p)
{
    const uint8_t *b = p;
    return ix->map != NULL && b >= ix->map && b < ix->map + ix->map_len;
}

static void free_unmapped(const struct dems_vector_index *ix, void *p)
{
    if (!vec_is_mapped(ix, p))
        free(p);
}

void dems_vector_free(struct dems_vector_index *ix)
{
    if (ix == NULL)
        return;
    if (ix->upper != NULL) {
        for (size_t i = 0; i < ix->n; i++)
            free_unmapped(ix, ix->upper[i]);
    }
    free_unmapped(ix, ix->upper);
    free_unmapped(ix, ix->f32);
    free_unmapped(ix, ix->codes);
    free_unmapped(ix, ix->links0);
    free_unmapped(ix, ix->levels);
    free_unmapped(ix, ix->flags);
    free_unmapped(ix, ix->labels);
    free_unmapped(ix, ix->qlo);
    free(ix->hslots);
    while (ix->pool != NULL) {
        struct vec_ctx *c = ix->pool;
        ix->pool = c->next;
        free(c->vis);
        free(c->cand);
        free(c->top);
        free(c->q);
        free(c->tmp);
        free(c->nbr);
        free(c->sel);
        free(c);
    }
    if (ix->map != NULL && ix->map_is_heap)
        free(ix->map);
    else if (ix->map != NULL)
        munmap(ix->map, ix->map_len);
    pthread_rwlock_destroy(&ix->grow_lock);
    pthread_rwlock_destroy(&ix->map_lock);
    pthread_mutex_destroy(&ix->alloc_lock);
    pthread_mutex_destroy(&ix->ep_lock);
    pthread_mutex_destroy(&ix->pool_lock);
    for (size_t i = 0; i < NODE_LOCKS; i++)
        pthread_mutex_destroy(&ix->node_locks[i]);
    free(ix);
}

/*
 * Allocates an array that searches will hit at random. Past a few huge pages
 * it is 2 MiB-aligned and marked for transparent huge pages: a search touches
 * a handful of cache lines on each of hundreds of pages, and with 4 KiB pages
 * nearly every one of those accesses also misses the TLB. Freed with free().
 */
void *vec_big_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge)
        return malloc(bytes ? bytes : 1);
    size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, rounded) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE); /* advisory: failure only costs speed */
#endif
    return p;
}

/* Replaces *pp by a copy of at least new_bytes (zero-filled beyond old_bytes). */
static int regrow(struct dems_vector_index *ix, void **pp, size_t old_bytes, size_t new_bytes)
{
    uint8_t *n = vec_big_alloc(new_bytes);
    if (n == NULL)
        return DEMS_ENOMEM;
    if (*pp != NULL && old_bytes > 0)
        memcpy(n, *pp, old_bytes);
    memset(n + old_bytes, 0, new_bytes - old_bytes);
    free_unmapped(ix, *pp);
    *pp = n;
    return 0;
}

/* Grows the slot arrays to hold want slots. Caller holds grow_lock exclusively. */
static int grow_locked(struct dems_vector_index *ix, size_t want)
{
    if (want <= ix->cap)
        return 0;
    if (want > DEMS_VECTOR_MAX_COUNT)
        return DEMS_ETOOBIG;
    size_t old = ix->cap, dim = ix->p.dim, lw = 1 + (size_t)ix->m0;
    int r = 0;
    if (ix->p.keep_f32)
        r = regrow(ix, (void **)&ix->f32, old * dim * sizeof(float), want * dim * sizeof(float));
    if (r == 0 && ix->p.storage == DEMS_VECTOR_SQ8)
        r = regrow(ix, (void **)&ix->codes, old * dim, want * dim);
    if (r == 0)
        r = regrow(ix, (void **)&ix->links0, old * lw * 4, want * lw * 4);
    if (r == 0)
        r = regrow(ix, (void **)&ix->upper, old * sizeof(uint32_t *), want * sizeof(uint32_t *));
    if (r == 0)
        r = regrow(ix, (void **)&ix->levels, old, want);
    if (r == 0)
        r = regrow(ix, (void **)&ix->flags, old, want);
    if (r == 0)
        r = regrow(ix, (void **)&ix->labels, old * 8, want * 8);
    if (r < 0)
        return r; /* arrays grown so far stay larger; cap still bounds use */
    ix->cap = want;
    return 0;
}

int vec_grow(struct dems_vector_index *ix, size_t want)
{
    pthread_rwlock_wrlock(&ix->grow_lock);
    int r = grow_locked(ix, want);
    pthread_rwlock_unlock(&ix->grow_lock);
    return r;
}

int dems_vector_reserve(struct dems_vector_index *ix, size_t n)
{
    return vec_grow(ix, n);
}

/* --- label map ---------------------------------------------------------- */

static size_t hash_label(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* Finds label's bucket, or the first free one if absent. Under map_lock. */
static size_t map_find(const struct dems_vector_index *ix, uint64_t label, bool *found)
{
    size_t mask = ix->hcap - 1, i = hash_label(label) & mask, free_at = SIZE_MAX;
    for (;;) {
        uint32_t s = ix->hslots[i];
        if (s == H_EMPTY) {
            *found = false;
            return free_at != SIZE_MAX ? free_at : i;
        }
        if (s == H_TOMB) {
            if (free_at == SIZE_MAX)
                free_at = i;
        } else if (ix->labels[s] == label) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* Re-hashes every live slot into a table of cap buckets. Under map_lock. */
static int map_resize(struct dems_vector_index *ix, size_t cap)
{
    uint32_t *t = malloc(cap * sizeof(uint32_t));
    if (t == NULL)
        return DEMS_ENOMEM;
    memset(t, 0xff, cap * sizeof(uint32_t));
    free(ix->hslots);
    ix->hslots = t;
    ix->hcap = cap;
    ix->hused = 0;
    for (size_t s = 0; s < ix->n; s++) {
        if (vec_flags(ix, (uint32_t)s) & VF_DELETED)
            continue;
        bool found;
        size_t b = map_find(ix, ix->labels[s], &found);
        if (!found) {
            t[b] = (uint32_t)s;
            ix->hused++;
        }
    }
    return 0;
}

int vec_map_rebuild(struct dems_vector_index *ix)
{
    size_t cap = 64;
    while (cap < 2 * ix->n + 2)
        cap *= 2;
    return map_resize(ix, cap);
}

/* Claims label for slot, or DEMS_ECONFLICT. Under map_lock (write). */
static int map_put(struct dems_vector_index *ix, uint64_t label, uint32_t slot)
{
    if (4 * (ix->hused + 1) > 3 * ix->hcap) {
        /* Rebuilding also drops tombstones; size for every slot plus this one. */
        size_t cap = 64;
        while (cap < 2 * (ix->n + 1))
            cap *= 2;
        int r = map_resize(ix, cap);
        if (r < 0)
            return r;
    }
    bool found;
    size_t b = map_find(ix, label, &found);
    if (found)
        return DEMS_ECONFLICT;
    if (ix->hslots[b] == H_EMPTY)
        ix->hused++;
    ix->hslots[b] = slot;
    return 0;
}

int vec_slot_of(struct dems_vector_index *ix, uint64_t label, uint32_t *ret_slot)
{
    if (ix->hcap == 0)
        return DEMS_ENOTFOUND;
    bool found;
    size_t b = map_find(ix, label, &found);
    if (!found)
        return DEMS_ENOTFOUND;
    *ret_slot = ix->hslots[b];
    return 0;
}

/* --- search scratch ----------------------------------------------------- */

static int fit(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, c * elem);
    if (n == NULL)
        return DEMS_ENOMEM;
    *p = n;
    *cap = c;
    return 0;
}

int vec_ctx_fit(struct vec_ctx *c, size_t top_need, size_t cand_need)
{
    int r = fit((void **)&c->top, &c->top_cap, top_need, sizeof(struct vec_cand));
    if (r == 0)
        r = fit((void **)&c->cand, &c->cand_cap, cand_need, sizeof(struct vec_cand));
    return r;
}

/* Takes a scratch sized for the current capacity. Caller holds grow_lock. */
struct vec_ctx *vec_ctx_take(struct dems_vector_index *ix)
{
    pthread_mutex_lock(&ix->pool_lock);
    struct vec_ctx *c = ix->pool;
    if (c != NULL)
        ix->pool = c->next;
    pthread_mutex_unlock(&ix->pool_lock);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            return NULL;
        c->q = malloc(sizeof(float) * ix->p.dim);
        c->tmp = malloc(sizeof(float) * ix->p.dim);
        c->nbr = malloc(sizeof(uint32_t) * (ix->m0 + 1));
        if (c->q == NULL || c->tmp == NULL || c->nbr == NULL || vec_ctx_fit(c, 256, 256) < 0)
            goto fail;
    }
    return c;
fail:
    vec_ctx_give(ix, c);
    return NULL;
}

void vec_ctx_give(struct dems_vector_index *ix, struct vec_ctx *c)
{
    pthread_mutex_lock(&ix->pool_lock);
    c->next = ix->pool;
    ix->pool = c;
    pthread_mutex_unlock(&ix->pool_lock);
}

/* --- vectors in and out ------------------------------------------------- */

/*
 * Turns a caller's vector into the form stored and compared: checked finite,
 * normalised for cosine. out gets dim floats. 0 or DEMS_EINVAL.
 */
static int clean_vector(const struct dems_vector_index *ix, const float *in, float *out)
{
    uint32_t dim = ix->p.dim;
    double norm = 0;
    for (uint32_t d = 0; d < dim; d++) {
        if (!isfinite(in[d]))
            return DEMS_EINVAL;
        norm += (double)in[d] * in[d];
    }
    if (ix->p.metric == DEMS_VECTOR_COSINE) {
        if (!(norm > 0))
            return DEMS_EINVAL;
        float inv = (float)(1.0 / sqrt(norm));
        for (uint32_t d = 0; d < dim; d++)
            out[d] = in[d] * inv;
    } else {
        memcpy(out, in, sizeof(float) * dim);
    }
    return 0;
}

/* The query in kernel form (code space for SQ8); tmp is dim floats of scratch. */
int vec_prepare_query(const struct dems_vector_index *ix, const float *in, float *out, float *tmp)
{
    int r = clean_vector(ix, in, tmp);
    if (r < 0)
        return r;
    if (ix->p.storage == DEMS_VECTOR_SQ8) {
        float inv = 1.0f / ix->qstep;
        for (uint32_t d = 0; d < ix->p.dim; d++)
            out[d] = (tmp[d] - ix->qlo[d]) * inv;
    } else {
        memcpy(out, tmp, sizeof(float) * ix->p.dim);
    }
    return 0;
}

/* Converts an internal distance to what callers see. */
float vec_to_user(const struct dems_vector_index *ix, float d, bool exact)
{
    if (!exact && ix->p.storage == DEMS_VECTOR_SQ8)
        d *= ix->qstep * ix->qstep;
    if (ix->p.metric == DEMS_VECTOR_COSINE)
        d *= 0.5f; /* |a - b|^2 = 2 - 2cos for unit vectors */
    return d;
}

bool vec_filter_pass(const struct dems_vector_filter *f, uint64_t label)
{
    if (f->bits != NULL) {
        if (label >= f->nbits || !((f->bits[label / 64] >> (label % 64)) & 1u))
            return false;
    }
    return f->accept == NULL || f->accept(label, f->arg);
}

int dems_vector_train(struct dems_vector_index *ix, const float *v, size_t n)
{
    if (ix->p.storage != DEMS_VECTOR_SQ8 || n == 0)
        return DEMS_EINVAL;
    uint32_t dim = ix->p.dim;
    float *lo = malloc(sizeof(float) * dim * 3);
    if (lo == NULL)
        return DEMS_ENOMEM;
    float *hi = lo + dim, *tmp = hi + dim;
    for (uint32_t d = 0; d < dim; d++) {
        lo[d] = INFINITY;
        hi[d] = -INFINITY;
    }
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        r = clean_vector(ix, v + i * dim, tmp);
        for (uint32_t d = 0; d < dim && r == 0; d++) {
            lo[d] = fminf(lo[d], tmp[d]);
            hi[d] = fmaxf(hi[d], tmp[d]);
        }
    }
    /* One step for all dimensions keeps code distances proportional to L2. */
    float range = 0;
    for (uint32_t d = 0; d < dim && r == 0; d++)
        range = fmaxf(range, hi[d] - lo[d]);
    pthread_rwlock_wrlock(&ix->grow_lock);
    if (r == 0 && ix->n > 0)
        r = DEMS_ECONFLICT;
    if (r == 0) {
        for (uint32_t d = 0; d < dim; d++)
            ix->qlo[d] = lo[d];
        ix->qstep = range > 0 ? range / 255.0f : 1.0f;
        ix->trained = true;
    }
    pthread_rwlock_unlock(&ix->grow_lock);
    free(lo);
    return r;
}

/* --- insert and remove -------------------------------------------------- */

/* Writes the vector into slot s (both forms as configured). */
static void store_vector(struct dems_vector_index *ix, uint32_t s, const float *v)
{
    size_t dim = ix->p.dim;
    if (ix->f32 != NULL)
        memcpy(ix->f32 + (size_t)s * dim, v, sizeof(float) * dim);
    if (ix->codes != NULL) {
        uint8_t *c = ix->codes + (size_t)s * dim;
        float inv = 1.0f / ix->qstep;
        for (size_t d = 0; d < dim; d++) {
            float x = (v[d] - ix->qlo[d]) * inv + 0.5f;
            x = x < 0 ? 0 : (x > 255 ? 255 : x);
            c[d] = (uint8_t)x;
        }
    }
}

/*
 * Hands out a slot for label with grow_lock held shared on return (the caller
 * releases it). Grows the arrays when full.
 */
static int claim_slot(struct dems_vector_index *ix, uint64_t label, uint32_t *ret_slot)
{
    for (;;) {
        pthread_rwlock_rdlock(&ix->grow_lock);
        pthread_mutex_lock(&ix->alloc_lock);
        if (ix->n < ix->cap) {
            uint32_t s = (uint32_t)ix->n;
            pthread_rwlock_wrlock(&ix->map_lock);
            ix->labels[s] = label;
            int r = map_put(ix, label, s);
            pthread_rwlock_unlock(&ix->map_lock);
            if (r == 0)
                __atomic_store_n(&ix->n, ix->n + 1, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&ix->alloc_lock);
            if (r < 0) {
                pthread_rwlock_unlock(&ix->grow_lock);
                return r;
            }
            *ret_slot = s;
            return 0;
        }
        size_t want = ix->cap < FIRST_CAP ? FIRST_CAP : ix->cap + ix->cap / 2;
        pthread_mutex_unlock(&ix->alloc_lock);
        pthread_rwlock_unlock(&ix->grow_lock);
        int r = vec_grow(ix, want);
        if (r < 0)
            return r;
    }
}

/* Inserts one cleaned vector; the caller has scratch c for the graph search. */
static int add_clean(struct dems_vector_index *ix, uint64_t label, const float *v)
{
    uint32_t s;
    int r = claim_slot(ix, label, &s);
    if (r < 0)
        return r;
    struct vec_ctx *c = vec_ctx_take(ix);
    if (c == NULL) {
        r = DEMS_ENOMEM;
    } else {
        store_vector(ix, s, v);
        r = vec_graph_insert(ix, c, s, v);
        vec_ctx_give(ix, c);
    }
    if (r == 0) {
        __atomic_fetch_add(&ix->live, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&ix->flags[s], (uint8_t)VF_READY, __ATOMIC_RELEASE);
    } else {
        /* The slot stays allocated but never becomes visible. */
        __atomic_fetch_add(&ix->dead, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&ix->flags[s], (uint8_t)VF_DELETED, __ATOMIC_RELEASE);
        pthread_rwlock_wrlock(&ix->map_lock);
        bool found;
        size_t b = map_find(ix, label, &found);
        if (found)
            ix->hslots[b] = H_TOMB;
        pthread_rwlock_unlock(&ix->map_lock);
    }
    pthread_rwlock_unlock(&ix->grow_lock);
    return r;
}

int dems_vector_add(struct dems_vector_index *ix, uint64_t label, const float *vector)
{
    float *v = malloc(sizeof(float) * ix->p.dim);
    if (v == NULL)
        return DEMS_ENOMEM;
    int r = clean_vector(ix, vector, v);
    if (r == 0)
        r = add_clean(ix, label, v);
    free(v);
    return r;
}

struct batch {
    struct dems_vector_index *ix;
    const float *v;
    const uint64_t *labels;
    uint64_t first;
    size_t n;
    size_t next; /* atomic */
    int err;     /* atomic; first failure */
};

static void *batch_worker(void *arg)
{
    struct batch *b = arg;
    float *v = malloc(sizeof(float) * b->ix->p.dim);
    if (v == NULL) {
        int zero = 0;
        __atomic_compare_exchange_n(&b->err, &zero, DEMS_ENOMEM, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
        return NULL;
    }
    for (;;) {
        if (__atomic_load_n(&b->err, __ATOMIC_RELAXED) != 0)
            break;
        size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->n)
            break;
        uint64_t label = b->labels ? b->labels[i] : b->first + i;
        int r = clean_vector(b->ix, b->v + i * b->ix->p.dim, v);
        if (r == 0)
            r = add_clean(b->ix, label, v);
        if (r < 0) {
            int zero = 0;
            __atomic_compare_exchange_n(&b->err, &zero, r, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
        }
    }
    free(v);
    return NULL;
}

static int repair(struct dems_vector_index *ix)
{
    pthread_rwlock_wrlock(&ix->grow_lock);
    int r = vec_graph_repair(ix);
    pthread_rwlock_unlock(&ix->grow_lock);
    return r;
}

int dems_vector_add_batch(struct dems_vector_index *ix, const float *vectors,
                          const uint64_t *labels, uint64_t first_label, size_t n, unsigned threads)
{
    if (n == 0)
        return 0;
    if (ix->p.storage == DEMS_VECTOR_SQ8 && !ix->trained &&
        __atomic_load_n(&ix->n, __ATOMIC_RELAXED) == 0) {
        int r = dems_vector_train(ix, vectors, n < 200000 ? n : 200000);
        if (r < 0)
            return r;
    }
    size_t have = __atomic_load_n(&ix->n, __ATOMIC_RELAXED);
    if (n > DEMS_VECTOR_MAX_COUNT - have)
        return DEMS_ETOOBIG;
    int r = vec_grow(ix, have + n);
    if (r < 0)
        return r;
    struct batch b = {.ix = ix, .v = vectors, .labels = labels, .first = first_label, .n = n};
    if (threads <= 1 || n < 64) {
        batch_worker(&b);
        return b.err ? b.err : repair(ix);
    }
    if (threads > 256)
        threads = 256;
    pthread_t tid[256];
    unsigned started = 0;
    for (unsigned t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, batch_worker, &b) != 0)
            break;
        started++;
    }
    if (started == 0)
        batch_worker(&b);
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    return b.err ? b.err : repair(ix);
}

int dems_vector_remove(struct dems_vector_index *ix, uint64_t label)
{
    pthread_rwlock_rdlock(&ix->grow_lock);
    pthread_rwlock_wrlock(&ix->map_lock);
    uint32_t s = 0;
    int r = vec_slot_of(ix, label, &s);
    if (r == 0 && !(vec_flags(ix, s) & VF_READY))
        r = DEMS_ENOTFOUND; /* still being inserted by another thread */
    if (r == 0) {
        bool found;
        size_t b = map_find(ix, label, &found);
        ix->hslots[b] = H_TOMB;
        __atomic_fetch_add(&ix->dead, 1, __ATOMIC_RELAXED);
        __atomic_fetch_or(&ix->flags[s], (uint8_t)VF_DELETED, __ATOMIC_RELEASE);
        __atomic_fetch_sub(&ix->live, 1, __ATOMIC_RELAXED);
    }
    pthread_rwlock_unlock(&ix->map_lock);
    pthread_rwlock_unlock(&ix->grow_lock);
    return r;
}

size_t dems_vector_count(const struct dems_vector_index *ix)
{
    return __atomic_load_n(&ix->live, __ATOMIC_RELAXED);
}

void dems_vector_get_params(const struct dems_vector_index *ix, struct dems_vector_params *ret)
{
    *ret = ix->p;
}

size_t dems_vector_memory(const struct dems_vector_index *ix)
{
    size_t dim = ix->p.dim, per = (1 + (size_t)ix->m0) * 4 + sizeof(uint32_t *) + 1 + 1 + 8;
    if (ix->f32 != NULL)
        per += dim * sizeof(float);
    if (ix->codes != NULL)
        per += dim;
    return sizeof(*ix) + ix->cap * per + __atomic_load_n(&ix->upper_bytes, __ATOMIC_RELAXED) +
           ix->hcap * sizeof(uint32_t);
}

/* --- search entry points ------------------------------------------------ */

static int search_common(struct dems_vector_index *ix, const float *query, size_t k, size_t ef,
                         const struct dems_vector_filter *filter, bool exact,
                         struct dems_vector_hit *hits, size_t *ret_n)
{
    if (k == 0 || k > DEMS_VECTOR_MAX_EF || ef > DEMS_VECTOR_MAX_EF)
        return DEMS_EINVAL;
    if (ef < k)
        ef = k;
    pthread_rwlock_rdlock(&ix->grow_lock);
    struct vec_ctx *c = vec_ctx_take(ix);
    int r = DEMS_ENOMEM;
    if (c != NULL) {
        r = vec_prepare_query(ix, query, c->q, c->tmp);
        if (r == 0 && exact)
            r = vec_brute_search(ix, c, k, filter, false, hits, ret_n);
        else if (r == 0)
            r = vec_graph_search(ix, c, query, k, ef, filter, hits, ret_n);
        vec_ctx_give(ix, c);
    }
    pthread_rwlock_unlock(&ix->grow_lock);
    return r;
}

int dems_vector_search(struct dems_vector_index *ix, const float *query, size_t k, size_t ef,
                       const struct dems_vector_filter *filter, struct dems_vector_hit *hits,
                       size_t *ret_n)
{
    return search_common(ix, query, k, ef, filter, false, hits, ret_n);
}

int dems_vector_search_exact(struct dems_vector_index *ix, const float *query, size_t k,
                             const struct dems_vector_filter *filter, struct dems_vector_hit *hits,
                             size_t *ret_n)
{
    return search_common(ix, query, k, k, filter, true, hits, ret_n);
}

/* --- compaction --------------------------------------------------------- */

/* Swaps everything but the locks and the pool between two indexes. */
static void swap_contents(struct dems_vector_index *a, struct dems_vector_index *b)
{
#define SWAP(f)                                                                                    \
    do {                                                                                           \
        __typeof__(a->f) t_ = a->f;                                                                \
        a->f = b->f;                                                                               \
        b->f = t_;                                                                                 \
    } while (0)
    SWAP(f32);
    SWAP(codes);
    SWAP(links0);
    SWAP(upper);
    SWAP(levels);
    SWAP(flags);
    SWAP(labels);
    SWAP(cap);
    SWAP(n);
    SWAP(live);
    SWAP(dead);
    SWAP(qlo);
    SWAP(ep);
    SWAP(hslots);
    SWAP(hcap);
    SWAP(hused);
    SWAP(map);
    SWAP(map_len);
    SWAP(map_is_heap);
    SWAP(upper_bytes);
#undef SWAP
}

int dems_vector_compact(struct dems_vector_index *ix, unsigned threads)
{
    pthread_rwlock_wrlock(&ix->grow_lock);
    struct dems_vector_index *nx = vec_alloc(&ix->p);
    size_t live = ix->live, dim = ix->p.dim, j = 0;
    float *v = malloc(sizeof(float) * dim * (live ? live : 1));
    uint64_t *labels = malloc(sizeof(uint64_t) * (live ? live : 1));
    int r = DEMS_ENOMEM;
    if (nx == NULL || v == NULL || labels == NULL)
        goto out;
    if (nx->qlo != NULL)
        memcpy(nx->qlo, ix->qlo, sizeof(float) * dim);
    nx->qstep = ix->qstep;
    nx->trained = true;
    for (size_t s = 0; s < ix->n; s++) {
        if (ix->flags[s] != VF_READY)
            continue;
        float *dst = v + j * dim;
        if (ix->f32 != NULL) {
            memcpy(dst, ix->f32 + s * dim, sizeof(float) * dim);
        } else {
            for (size_t d = 0; d < dim; d++)
                dst[d] = ix->qlo[d] + ix->qstep * (float)ix->codes[s * dim + d];
        }
        labels[j++] = ix->labels[s];
    }
    r = dems_vector_add_batch(nx, v, labels, 0, j, threads);
    if (r == 0)
        swap_contents(ix, nx);
out:
    pthread_rwlock_unlock(&ix->grow_lock);
    free(v);
    free(labels);
    dems_vector_free(nx);
    return r;
}
