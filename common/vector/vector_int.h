/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals shared by the vector core's files: the index layout, the distance
 * kernel table, the per-search scratch and the binary heaps the graph search
 * uses. Never included from outside common/vector/.
 */
#ifndef DEMS_VECTOR_INT_H
#define DEMS_VECTOR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/vector.h"

/* Slot flags. */
#define VF_READY   1u /* vector and links are written; may be returned */
#define VF_DELETED 2u /* tombstone: routes searches, never returned */

/* Entry point "none" (an empty graph). */
#define EP_NONE UINT64_MAX
/* Highest graph level a node may draw (levels are stored in a byte). */
#define MAX_LEVEL 30
/* Node locks are striped: slot s uses node_locks[s % NODE_LOCKS]. */
#define NODE_LOCKS 4096
/* Label hash: empty and removed markers. */
#define H_EMPTY UINT32_MAX
#define H_TOMB  (UINT32_MAX - 1)

/* Distance kernels, picked once at run time for the CPU (distance.c). */
struct vec_kernels {
    const char *name;
    /* Squared L2 between two float vectors. */
    float (*l2)(const float *a, const float *b, size_t dim);
    /* Squared L2 between a query already in code space and 8-bit codes. */
    float (*sq8)(const float *q, const uint8_t *c, size_t dim);
};

const struct vec_kernels *vec_kernels_get(void);

/*
 * CRC-32C (crc32c.c). Each takes the CRC of the bytes before (0 to start) and
 * returns the CRC with n more bytes, so crc(A || B) = f(f(0, A), B). Thread
 * safe. vec_crc32c picks the CRC32 instruction when the CPU has it, else the
 * slicing-by-8 table; the other two are for tests and benchmarks, and
 * vec_crc32c_hw may be called only when vec_crc32c_hw_ok() says so.
 */
uint32_t vec_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t vec_crc32c_sw(uint32_t crc, const void *data, size_t n);
uint32_t vec_crc32c_hw(uint32_t crc, const void *data, size_t n);
bool vec_crc32c_hw_ok(void);

/* A (distance, slot) pair as kept in the search heaps. */
struct vec_cand {
    float d;
    uint32_t id;
};

/* Per-search scratch, pooled by the index (index.c). */
struct vec_ctx {
    struct vec_ctx *next;
    uint32_t *vis;     /* visited slots: open addressing, UINT32_MAX is free */
    unsigned vis_bits; /* log2 of the table size */
    size_t vis_n;
    struct vec_cand *cand; /* candidate min-heap */
    size_t cand_cap;
    struct vec_cand *top; /* result max-heap */
    size_t top_cap;
    float *q;             /* the query as the kernels want it */
    float *tmp;           /* dim floats of scratch */
    uint32_t *nbr;        /* neighbour ids of one node */
    struct vec_cand *sel; /* neighbour selection scratch */
    size_t sel_cap;
};

struct dems_vector_index {
    struct dems_vector_params p;
    uint32_t m0; /* level-0 degree (2m) */
    double level_mult;
    const struct vec_kernels *k;

    /* Per-slot arrays, cap entries each (f32 or codes may be NULL). */
    float *f32;
    uint8_t *codes;
    uint32_t *links0; /* (1 + m0) words per slot: count, then ids */
    uint32_t **upper; /* levels 1..L: L blocks of (1 + m) words, or NULL */
    uint8_t *levels;
    uint8_t *flags;
    uint64_t *labels;
    size_t cap;
    size_t n;    /* slots handed out; under alloc_lock */
    size_t live; /* atomic */
    size_t dead; /* atomic: slots flagged VF_DELETED */

    /* SQ8 quantiser: code = (x - qlo[d]) / qstep, rounded and clamped. */
    float *qlo;
    float qstep;
    bool trained;

    uint64_t ep; /* atomic: (level << 32) | slot, or EP_NONE */

    /* Label -> slot, open addressing over slot numbers; under map_lock. */
    uint32_t *hslots;
    size_t hcap;  /* power of two */
    size_t hused; /* including tombstones */

    pthread_rwlock_t grow_lock; /* shared by every call; exclusive to grow */
    pthread_rwlock_t map_lock;
    pthread_mutex_t alloc_lock;
    pthread_mutex_t ep_lock;
    pthread_mutex_t pool_lock;
    pthread_mutex_t node_locks[NODE_LOCKS];
    struct vec_ctx *pool;

    /* A file mapped by dems_vector_load, or NULL. */
    uint8_t *map;
    size_t map_len;
    bool map_is_heap;   /* read into one heap block rather than mapped */
    size_t upper_bytes; /* heap bytes in upper blocks, for accounting */
};

/* index.c */
bool vec_params_ok(const struct dems_vector_params *p);
void *vec_big_alloc(size_t bytes);
struct vec_ctx *vec_ctx_take(struct dems_vector_index *ix);
void vec_ctx_give(struct dems_vector_index *ix, struct vec_ctx *c);
int vec_ctx_fit(struct vec_ctx *c, size_t top_need, size_t cand_need);
bool vec_is_mapped(const struct dems_vector_index *ix, const void *p);
int vec_prepare_query(const struct dems_vector_index *ix, const float *in, float *out, float *tmp);
int vec_slot_of(struct dems_vector_index *ix, uint64_t label, uint32_t *ret_slot);
int vec_map_rebuild(struct dems_vector_index *ix);
struct dems_vector_index *vec_alloc(const struct dems_vector_params *p);
int vec_grow(struct dems_vector_index *ix, size_t want);
bool vec_filter_pass(const struct dems_vector_filter *f, uint64_t label);
float vec_to_user(const struct dems_vector_index *ix, float d, bool exact);

/* graph.c */
int vec_graph_insert(struct dems_vector_index *ix, struct vec_ctx *c, uint32_t slot,
                     const float *v);
float vec_dist_q(const struct dems_vector_index *ix, const float *q, uint32_t slot);
float vec_dist_exact(const struct dems_vector_index *ix, const float *q, uint32_t slot);
int vec_graph_search(struct dems_vector_index *ix, struct vec_ctx *c, const float *userq, size_t k,
                     size_t ef, const struct dems_vector_filter *f, struct dems_vector_hit *hits,
                     size_t *ret_n);

int vec_graph_repair(struct dems_vector_index *ix);

/* brute.c */
int vec_brute_search(struct dems_vector_index *ix, struct vec_ctx *c, size_t k,
                     const struct dems_vector_filter *f, bool bitmap_walk,
                     struct dems_vector_hit *hits, size_t *ret_n);

/* Heaps of vec_cand: a max-heap keeps the worst on top, a min-heap the best. */
void vec_heap_push_max(struct vec_cand *h, size_t *n, struct vec_cand x);
void vec_heap_pop_max(struct vec_cand *h, size_t *n);
void vec_heap_push_min(struct vec_cand *h, size_t *n, struct vec_cand x);
void vec_heap_pop_min(struct vec_cand *h, size_t *n);
void vec_sort_cands(struct vec_cand *a, size_t n);

/* Atomic accessors for the graph words (readers never lock). */
static inline uint32_t vec_ld(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void vec_st(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline uint32_t *vec_links(const struct dems_vector_index *ix, uint32_t slot, unsigned lvl)
{
    if (lvl == 0)
        return ix->links0 + (size_t)slot * (1 + ix->m0);
    return ix->upper[slot] + (size_t)(lvl - 1) * (1 + ix->p.m);
}

static inline uint8_t vec_flags(const struct dems_vector_index *ix, uint32_t slot)
{
    return __atomic_load_n(&ix->flags[slot], __ATOMIC_ACQUIRE);
}

#endif
