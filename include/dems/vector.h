/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vector core: an approximate nearest-neighbour index (HNSW graph) over
 * fixed-dimension float32 vectors, used by face search.
 *
 * Vectors carry a caller-chosen 64-bit label (a database id). The index keeps
 * either the float32 vectors themselves or 8-bit scalar-quantised codes
 * (DEMS_VECTOR_SQ8), optionally with the float32 originals kept for exact
 * re-ranking. Distances are squared L2, or for DEMS_VECTOR_COSINE the cosine
 * distance 1 - cos(a, b) (vectors are normalised on the way in).
 *
 * Threads: searches, inserts and removals may run concurrently from any
 * number of threads. dems_vector_reserve, dems_vector_compact and
 * dems_vector_save take the index exclusively for their duration (they wait
 * for running calls and make new ones wait). dems_vector_free must not race
 * with anything.
 *
 * Filters: a search may be restricted to the labels a caller is allowed to
 * see, either by a bitmap over labels or by a callback. A label the filter
 * rejects is never returned, and neither is a removed one.
 */
#ifndef DEMS_VECTOR_H
#define DEMS_VECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest dimension accepted (a face descriptor has 128). */
#define DEMS_VECTOR_MAX_DIM 4096
/* Largest graph degree parameter m accepted. */
#define DEMS_VECTOR_MAX_M 128
/* Largest search effort (ef) and k accepted. */
#define DEMS_VECTOR_MAX_EF 65536
/* Largest number of vectors one index holds (slots are 32-bit). */
#define DEMS_VECTOR_MAX_COUNT ((size_t)UINT32_MAX - 1)

enum dems_vector_metric {
    DEMS_VECTOR_L2 = 0,     /* squared Euclidean distance */
    DEMS_VECTOR_COSINE = 1, /* 1 - cosine similarity; inputs are normalised */
};

enum dems_vector_storage {
    DEMS_VECTOR_F32 = 0, /* float32 vectors: dim * 4 bytes per vector */
    DEMS_VECTOR_SQ8 = 1, /* 8-bit codes: dim bytes (+ dim * 4 if keep_f32) */
};

struct dems_vector_params {
    uint32_t dim;                     /* 1..DEMS_VECTOR_MAX_DIM */
    enum dems_vector_metric metric;   /* default DEMS_VECTOR_L2 */
    enum dems_vector_storage storage; /* default DEMS_VECTOR_F32 */
    uint32_t m;                       /* graph degree (level 0 uses 2m); default 16 */
    uint32_t ef_construction;         /* build effort; default 200 */
    uint64_t seed;                    /* level generator seed; default fixed */
    bool keep_f32;                    /* SQ8: keep originals to re-rank exactly; default true */
};

struct dems_vector_index;

/* One search result: the label and its distance under the index metric. */
struct dems_vector_hit {
    uint64_t label;
    float distance;
};

/*
 * Restricts a search. With bits set, a label L is accepted when L < nbits and
 * bit (L % 64) of bits[L / 64] is set; labels beyond nbits are rejected. With
 * accept set, it is called (from the searching thread, possibly many times
 * per search) and must be thread-safe and not call back into the index. When
 * both are set, both must accept. Borrowed for the duration of the search.
 */
struct dems_vector_filter {
    const uint64_t *bits;
    uint64_t nbits;
    bool (*accept)(uint64_t label, void *arg);
    void *arg;
};

/* Fills p with defaults for vectors of dimension dim. */
void dems_vector_params_init(struct dems_vector_params *p, uint32_t dim);

/*
 * Creates an empty index. Returns 0 and an owned index in *ret_index (free
 * with dems_vector_free), DEMS_EINVAL for bad parameters or DEMS_ENOMEM.
 */
int dems_vector_new(const struct dems_vector_params *p, struct dems_vector_index **ret_index);

/* Frees the index and everything it owns (unmaps a loaded file). NULL is a no-op. */
void dems_vector_free(struct dems_vector_index *index);

/*
 * SQ8 only: sets the quantiser range from n sample vectors (borrowed). Must
 * come before the first insert; dems_vector_add_batch trains on its own input
 * when this was not called, and a lone dems_vector_add falls back to the
 * range [-1, 1] that fits normalised vectors. Returns 0, DEMS_EINVAL (not SQ8,
 * n == 0, non-finite values) or DEMS_ECONFLICT (vectors already inserted).
 */
int dems_vector_train(struct dems_vector_index *index, const float *vectors, size_t n);

/* Makes room for n vectors in total so that inserts need not grow. 0 or DEMS_ENOMEM/ETOOBIG. */
int dems_vector_reserve(struct dems_vector_index *index, size_t n);

/*
 * Inserts one vector (dim floats, borrowed) under label. Returns 0,
 * DEMS_ECONFLICT if the label is present, DEMS_EINVAL for a non-finite (or,
 * for cosine, zero) vector, DEMS_ETOOBIG or DEMS_ENOMEM.
 */
int dems_vector_add(struct dems_vector_index *index, uint64_t label, const float *vector);

/*
 * Inserts n vectors (n * dim floats, row-major, borrowed) using up to threads
 * threads (0 means 1). labels (borrowed) gives each row's label; NULL means
 * labels first_label, first_label + 1, ... Stops at the first failure and
 * returns its code; rows inserted before it stay.
 */
int dems_vector_add_batch(struct dems_vector_index *index, const float *vectors,
                          const uint64_t *labels, uint64_t first_label, size_t n, unsigned threads);

/* Removes label (a tombstone; the graph keeps routing through it). 0 or DEMS_ENOTFOUND. */
int dems_vector_remove(struct dems_vector_index *index, uint64_t label);

/*
 * Rebuilds the graph from the live vectors only, dropping tombstones, using
 * up to threads threads. On failure the index is unchanged. 0 or DEMS_ENOMEM.
 */
int dems_vector_compact(struct dems_vector_index *index, unsigned threads);

/* Number of live (not removed) vectors. */
size_t dems_vector_count(const struct dems_vector_index *index);

/* Bytes of memory the index holds (heap plus mapped file), for sizing. */
size_t dems_vector_memory(const struct dems_vector_index *index);

/* The index parameters (dim, metric, ...). */
void dems_vector_get_params(const struct dems_vector_index *index, struct dems_vector_params *ret);

/*
 * Approximate k nearest neighbours of query (dim floats, borrowed) among the
 * live vectors the filter (may be NULL) accepts. ef >= k is the effort: larger
 * is slower and finds more of the true neighbours (ef < k is raised to k).
 * Writes up to k hits nearest first into hits (room for k) and their number to
 * *ret_n. Returns 0, DEMS_EINVAL (bad k, ef or query) or DEMS_ENOMEM.
 */
int dems_vector_search(struct dems_vector_index *index, const float *query, size_t k, size_t ef,
                       const struct dems_vector_filter *filter, struct dems_vector_hit *hits,
                       size_t *ret_n);

/*
 * Exact k nearest neighbours by scanning every live vector (float32 distances
 * when the index keeps them, else decoded codes). Same contract as
 * dems_vector_search; for small sets and for checking.
 */
int dems_vector_search_exact(struct dems_vector_index *index, const float *query, size_t k,
                             const struct dems_vector_filter *filter, struct dems_vector_hit *hits,
                             size_t *ret_n);

/*
 * Exact k nearest rows of a plain row-major float32 matrix (n rows of dim,
 * borrowed): hits[i].label is the 0-based row. Squared L2 or cosine distance.
 * Writes up to k hits nearest first and their number to *ret_n. 0 or DEMS_EINVAL.
 */
int dems_vector_brute_knn(const float *base, size_t n, uint32_t dim, enum dems_vector_metric metric,
                          const float *query, size_t k, struct dems_vector_hit *hits,
                          size_t *ret_n);

/*
 * Writes the index to path (replaced atomically through a temporary file and
 * rename). The file is versioned, checksummed per section and laid out so
 * dems_vector_load can map it. Blocks. Returns 0 or DEMS_EIO/DEMS_ENOMEM.
 */
int dems_vector_save(struct dems_vector_index *index, const char *path);

/* Load flag: map the file (private, copy-on-write) instead of reading it into the heap. */
#define DEMS_VECTOR_LOAD_MMAP 1u

/*
 * Opens an index saved by dems_vector_save. Every section checksum and the
 * graph structure are verified; a truncated, corrupted or foreign file is
 * refused. Returns 0 and an owned index (free with dems_vector_free),
 * DEMS_EIO (cannot open or read), DEMS_EINVAL (truncated, corrupt, wrong
 * version) or DEMS_ENOMEM. On failure, if why is not NULL, *why is set to a
 * static English sentence saying what was wrong.
 */
int dems_vector_load(const char *path, unsigned flags, struct dems_vector_index **ret_index,
                     const char **why);

/* Name of the distance kernel in use ("avx512", "avx2", "scalar"), for reports. */
const char *dems_vector_kernel_name(void);

#endif
