/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RFC 9162 (RFC 6962) Merkle tree: leaf and node hashes, roots and
 * proofs built from caller-stored complete-subtree hashes, proof
 * verification exactly as RFC 9162 sections 2.1.3.2 and 2.1.4.2 describe,
 * a streaming frontier for appends and roots, and an in-memory tree.
 *
 * Every node of the tree of size n covers a range of leaves [lo, hi) that is
 * either a complete, aligned subtree (2^l leaves starting at a multiple of
 * 2^l) or lies on the right edge; a right-edge node is the fold of the
 * complete subtrees its size decomposes into. So any node costs at most
 * popcount(hi - lo) reads, and a proof O(log n) reads.
 */
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"

#include "ledger_int.h"

void dems_merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t ret_hash[static 32])
{
    static const uint8_t prefix = 0x00;
    ledger_sha256_2(&prefix, 1, data, len, ret_hash);
}

void dems_merkle_node_hash(const uint8_t left[static 32], const uint8_t right[static 32],
                           uint8_t ret_hash[static 32])
{
    uint8_t in[65];
    in[0] = 0x01;
    memcpy(in + 1, left, 32);
    memcpy(in + 33, right, 32);
    ledger_sha256_2(in, sizeof(in), NULL, 0, ret_hash);
}

void dems_merkle_empty_root(uint8_t ret_hash[static 32])
{
    ledger_sha256_2(NULL, 0, NULL, 0, ret_hash);
}

/* floor(log2(n)) for n > 0. */
static unsigned log2_floor(uint64_t n)
{
    return 63u - (unsigned)__builtin_clzll(n);
}

/* The largest power of two strictly below n, for n > 1 (RFC 9162 "k"). */
static uint64_t split_point(uint64_t n)
{
    return UINT64_C(1) << log2_floor(n - 1);
}

/*
 * Hash of the node covering leaves [lo, hi): the complete subtrees of the
 * range, largest first, folded from the right (MTH's recursion unrolled).
 */
static int range_hash(const struct dems_merkle_reader *rd, uint64_t lo, uint64_t hi,
                      uint8_t ret_hash[static 32])
{
    uint8_t parts[DEMS_MERKLE_MAX_LEVELS][32];
    unsigned n = 0;

    if (hi <= lo)
        return DEMS_EINVAL;
    for (uint64_t s = lo; s < hi; n++) {
        unsigned level = log2_floor(hi - s);
        if ((s & ((UINT64_C(1) << level) - 1)) != 0 || n >= DEMS_MERKLE_MAX_LEVELS)
            return DEMS_EINVAL; /* not a node of any tree: a caller bug */
        int r = rd->get_subtree(rd->ctx, s, level, parts[n]);
        if (r < 0)
            return r;
        s += UINT64_C(1) << level;
    }
    uint8_t acc[32];
    memcpy(acc, parts[n - 1], 32);
    for (unsigned i = n - 1; i-- > 0;)
        dems_merkle_node_hash(parts[i], acc, acc);
    memcpy(ret_hash, acc, 32);
    return 0;
}

int dems_merkle_root(const struct dems_merkle_reader *rd, uint64_t size,
                     uint8_t ret_root[static 32])
{
    if (size > DEMS_MERKLE_MAX_SIZE)
        return DEMS_EINVAL;
    if (size == 0) {
        dems_merkle_empty_root(ret_root);
        return 0;
    }
    return range_hash(rd, 0, size, ret_root);
}

/* Reverses the proof in place: we collect top-down, RFC order is bottom-up. */
static void proof_reverse(struct dems_merkle_proof *p)
{
    for (size_t i = 0, j = p->len; i + 1 < j; i++, j--) {
        uint8_t t[32];
        memcpy(t, p->hash[i], 32);
        memcpy(p->hash[i], p->hash[j - 1], 32);
        memcpy(p->hash[j - 1], t, 32);
    }
}

static int proof_push(const struct dems_merkle_reader *rd, struct dems_merkle_proof *p, uint64_t lo,
                      uint64_t hi)
{
    if (p->len >= DEMS_MERKLE_MAX_PROOF)
        return DEMS_EINVAL;
    int r = range_hash(rd, lo, hi, p->hash[p->len]);
    if (r < 0)
        return r;
    p->len++;
    return 0;
}

int dems_merkle_prove_inclusion(const struct dems_merkle_reader *rd, uint64_t index, uint64_t size,
                                struct dems_merkle_proof *ret_proof)
{
    struct dems_merkle_proof p = {.len = 0};
    uint64_t lo = 0, hi = size, m = index;

    if (index >= size || size > DEMS_MERKLE_MAX_SIZE)
        return DEMS_EINVAL;
    /* RFC 9162 2.1.3.1: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) or the mirror. */
    while (hi - lo > 1) {
        uint64_t k = split_point(hi - lo);
        int r;
        if (m < k) {
            r = proof_push(rd, &p, lo + k, hi);
            hi = lo + k;
        } else {
            r = proof_push(rd, &p, lo, lo + k);
            m -= k;
            lo += k;
        }
        if (r < 0)
            return r;
    }
    proof_reverse(&p);
    *ret_proof = p;
    return 0;
}

int dems_merkle_prove_consistency(const struct dems_merkle_reader *rd, uint64_t size1,
                                  uint64_t size2, struct dems_merkle_proof *ret_proof)
{
    struct dems_merkle_proof p = {.len = 0};
    uint64_t lo = 0, hi = size2, m = size1;
    bool b = true;

    if (size1 == 0 || size1 > size2 || size2 > DEMS_MERKLE_MAX_SIZE)
        return DEMS_EINVAL;
    /* RFC 9162 2.1.4.1: SUBPROOF(m, D[n], b), unrolled. */
    for (;;) {
        int r = 0;
        if (m == hi - lo) {
            if (!b)
                r = proof_push(rd, &p, lo, hi);
            if (r < 0)
                return r;
            break;
        }
        uint64_t k = split_point(hi - lo);
        if (m <= k) {
            r = proof_push(rd, &p, lo + k, hi);
            hi = lo + k;
        } else {
            r = proof_push(rd, &p, lo, lo + k);
            m -= k;
            lo += k;
            b = false;
        }
        if (r < 0)
            return r;
    }
    proof_reverse(&p);
    *ret_proof = p;
    return 0;
}

static bool hash_eq(const uint8_t a[static 32], const uint8_t b[static 32])
{
    return memcmp(a, b, 32) == 0;
}

int dems_merkle_verify_inclusion(const uint8_t leaf_hash[static 32], uint64_t index, uint64_t size,
                                 const struct dems_merkle_proof *proof,
                                 const uint8_t root[static 32])
{
    /* 1. leaf_index must be below tree_size. */
    if (index >= size)
        return DEMS_EINVAL;
    if (proof->len > DEMS_MERKLE_MAX_PROOF)
        return DEMS_ECRYPTO;
    /* 2, 3. */
    uint64_t fn = index, sn = size - 1;
    uint8_t r[32];
    memcpy(r, leaf_hash, 32);
    /* 4. */
    for (size_t i = 0; i < proof->len; i++) {
        const uint8_t *p = proof->hash[i];
        if (sn == 0)
            return DEMS_ECRYPTO; /* 4a */
        if ((fn & 1) != 0 || fn == sn) {
            dems_merkle_node_hash(p, r, r); /* 4b i */
            if ((fn & 1) == 0) {
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            dems_merkle_node_hash(r, p, r);
        }
        fn >>= 1; /* 4c */
        sn >>= 1;
    }
    /* 5. */
    return sn == 0 && hash_eq(r, root) ? 0 : DEMS_ECRYPTO;
}

int dems_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[static 32],
                                   const uint8_t root2[static 32],
                                   const struct dems_merkle_proof *proof)
{
    if (size1 == 0 || size1 > size2)
        return DEMS_EINVAL;
    if (proof->len > DEMS_MERKLE_MAX_PROOF)
        return DEMS_ECRYPTO;
    if (size1 == size2)
        return proof->len == 0 && hash_eq(root1, root2) ? 0 : DEMS_ECRYPTO;

    /* 1. An empty path proves nothing between different sizes. */
    if (proof->len == 0)
        return DEMS_ECRYPTO;
    /* 2. When size1 is a power of two, root1 is the implied first element. */
    bool prepend = (size1 & (size1 - 1)) == 0;
    size_t total = proof->len + (prepend ? 1 : 0);
    /* 3, 4. */
    uint64_t fn = size1 - 1, sn = size2 - 1;
    while ((fn & 1) != 0) {
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. */
    uint8_t fr[32], sr[32];
    memcpy(fr, prepend ? root1 : proof->hash[0], 32);
    memcpy(sr, fr, 32);
    /* 6. */
    for (size_t i = 1; i < total; i++) {
        const uint8_t *c = proof->hash[prepend ? i - 1 : i];
        if (sn == 0)
            return DEMS_ECRYPTO; /* 6a */
        if ((fn & 1) != 0 || fn == sn) {
            dems_merkle_node_hash(c, fr, fr);
            dems_merkle_node_hash(c, sr, sr);
            if ((fn & 1) == 0) {
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            dems_merkle_node_hash(sr, c, sr);
        }
        fn >>= 1; /* 6c */
        sn >>= 1;
    }
    /* 7. */
    return hash_eq(fr, root1) && hash_eq(sr, root2) && sn == 0 ? 0 : DEMS_ECRYPTO;
}

void dems_merkle_frontier_init(struct dems_merkle_frontier *f)
{
    f->size = 0;
}

int dems_merkle_frontier_append(struct dems_merkle_frontier *f, const uint8_t leaf_hash[static 32],
                                uint8_t (*ret_completed)[32])
{
    uint8_t cur[32];
    unsigned l = 0;

    if (f->size >= DEMS_MERKLE_MAX_SIZE)
        return DEMS_ETOOBIG;
    memcpy(cur, leaf_hash, 32);
    if (ret_completed != NULL)
        memcpy(ret_completed[0], cur, 32);
    /* Each set low bit is a complete subtree that the new leaf now pairs with. */
    while ((f->size >> l) & 1) {
        dems_merkle_node_hash(f->hash[l], cur, cur);
        l++;
        if (ret_completed != NULL)
            memcpy(ret_completed[l], cur, 32);
    }
    memcpy(f->hash[l], cur, 32);
    f->size++;
    return (int)l + 1;
}

void dems_merkle_frontier_root(const struct dems_merkle_frontier *f, uint8_t ret_root[static 32])
{
    uint8_t acc[32];
    bool have = false;

    for (unsigned l = 0; l < DEMS_MERKLE_MAX_LEVELS; l++) {
        if (((f->size >> l) & 1) == 0)
            continue;
        if (have) {
            dems_merkle_node_hash(f->hash[l], acc, acc);
        } else {
            memcpy(acc, f->hash[l], 32);
            have = true;
        }
    }
    if (have)
        memcpy(ret_root, acc, 32);
    else
        dems_merkle_empty_root(ret_root);
}

int dems_merkle_frontier_load(const struct dems_merkle_reader *rd, uint64_t size,
                              struct dems_merkle_frontier *ret_f)
{
    struct dems_merkle_frontier f;
    uint64_t start = 0;

    if (size > DEMS_MERKLE_MAX_SIZE)
        return DEMS_EINVAL;
    f.size = size;
    for (unsigned l = DEMS_MERKLE_MAX_LEVELS; l-- > 0;) {
        if (((size >> l) & 1) == 0)
            continue;
        int r = rd->get_subtree(rd->ctx, start, l, f.hash[l]);
        if (r < 0)
            return r;
        start += UINT64_C(1) << l;
    }
    memcpy(ret_f, &f, sizeof(f));
    return 0;
}

/* In-memory tree: level l holds the hashes of the size >> l complete subtrees of 2^l leaves. */
struct merkle_level {
    uint8_t (*hash)[32];
    uint64_t len;
    uint64_t cap;
};

struct dems_merkle_mem {
    struct merkle_level level[DEMS_MERKLE_MAX_LEVELS];
};

struct dems_merkle_mem *dems_merkle_mem_new(void)
{
    return calloc(1, sizeof(struct dems_merkle_mem));
}

void dems_merkle_mem_free(struct dems_merkle_mem *m)
{
    if (m == NULL)
        return;
    for (unsigned l = 0; l < DEMS_MERKLE_MAX_LEVELS; l++)
        free(m->level[l].hash);
    free(m);
}

static int level_push(struct merkle_level *lv, const uint8_t h[static 32])
{
    if (lv->len == lv->cap) {
        uint64_t cap = lv->cap > 0 ? lv->cap * 2 : 64;
        if (cap > SIZE_MAX / 32)
            return DEMS_ENOMEM;
        uint8_t(*p)[32] = realloc(lv->hash, (size_t)cap * 32);
        if (p == NULL)
            return DEMS_ENOMEM;
        lv->hash = p;
        lv->cap = cap;
    }
    memcpy(lv->hash[lv->len++], h, 32);
    return 0;
}

int dems_merkle_mem_append(struct dems_merkle_mem *m, const uint8_t leaf_hash[static 32])
{
    if (m->level[0].len >= DEMS_MERKLE_MAX_SIZE)
        return DEMS_ETOOBIG;
    /* Reserve first so a failed append leaves the tree unchanged. */
    for (unsigned l = 0; l < DEMS_MERKLE_MAX_LEVELS; l++) {
        struct merkle_level *lv = &m->level[l];
        if (lv->len == lv->cap) {
            uint8_t dummy[32] = {0};
            int r = level_push(lv, dummy);
            if (r < 0)
                return r;
            lv->len--;
        }
        if ((m->level[0].len + 1) % (UINT64_C(1) << l) != 0)
            break;
    }
    level_push(&m->level[0], leaf_hash);
    for (unsigned l = 0; m->level[l].len % 2 == 0; l++) {
        struct merkle_level *lv = &m->level[l];
        uint8_t h[32];
        dems_merkle_node_hash(lv->hash[lv->len - 2], lv->hash[lv->len - 1], h);
        level_push(&m->level[l + 1], h);
    }
    return 0;
}

uint64_t dems_merkle_mem_size(const struct dems_merkle_mem *m)
{
    return m->level[0].len;
}

static int mem_get_subtree(void *ctx, uint64_t start, unsigned level, uint8_t ret_hash[static 32])
{
    const struct dems_merkle_mem *m = ctx;

    if (level >= DEMS_MERKLE_MAX_LEVELS || (start & ((UINT64_C(1) << level) - 1)) != 0)
        return DEMS_EINVAL;
    uint64_t i = start >> level;
    if (i >= m->level[level].len)
        return DEMS_ENOTFOUND;
    memcpy(ret_hash, m->level[level].hash[i], 32);
    return 0;
}

struct dems_merkle_reader dems_merkle_mem_reader(struct dems_merkle_mem *m)
{
    return (struct dems_merkle_reader){.get_subtree = mem_get_subtree, .ctx = m};
}

/* Planning: a reader that records what it is asked for and answers zeros. */
static int plan_get(void *ctx, uint64_t start, unsigned level, uint8_t ret_hash[static 32])
{
    struct dems_merkle_prefetch *p = ctx;

    memset(ret_hash, 0, 32);
    for (size_t i = 0; i < p->n; i++)
        if (p->pos[i].start == start && p->pos[i].level == level)
            return 0;
    if (p->n >= DEMS_MERKLE_MAX_READS)
        return DEMS_EINTERNAL; /* cannot happen: proofs need at most 2 * 62 reads */
    p->pos[p->n++] = (struct dems_merkle_pos){.start = start, .level = level};
    return 0;
}

enum plan_kind { PLAN_ROOT, PLAN_INCLUSION, PLAN_CONSISTENCY };

static int plan(enum plan_kind kind, uint64_t a, uint64_t b, struct dems_merkle_prefetch *ret_p)
{
    /* Large (6 KiB): planned in place, so ret_p is written even on failure; n says what is valid.
     */
    struct dems_merkle_reader rd = {.get_subtree = plan_get, .ctx = ret_p};
    struct dems_merkle_proof proof;
    uint8_t root[32];
    int r;

    ret_p->n = 0;
    if (kind == PLAN_ROOT)
        r = dems_merkle_root(&rd, a, root);
    else if (kind == PLAN_INCLUSION)
        r = dems_merkle_prove_inclusion(&rd, a, b, &proof);
    else
        r = dems_merkle_prove_consistency(&rd, a, b, &proof);
    if (r < 0)
        ret_p->n = 0;
    return r;
}

int dems_merkle_plan_root(uint64_t size, struct dems_merkle_prefetch *p)
{
    return plan(PLAN_ROOT, size, 0, p);
}

int dems_merkle_plan_inclusion(uint64_t index, uint64_t size, struct dems_merkle_prefetch *p)
{
    return plan(PLAN_INCLUSION, index, size, p);
}

int dems_merkle_plan_consistency(uint64_t size1, uint64_t size2, struct dems_merkle_prefetch *p)
{
    return plan(PLAN_CONSISTENCY, size1, size2, p);
}

static int prefetch_get(void *ctx, uint64_t start, unsigned level, uint8_t ret_hash[static 32])
{
    const struct dems_merkle_prefetch *p = ctx;

    for (size_t i = 0; i < p->n; i++) {
        if (p->pos[i].start == start && p->pos[i].level == level) {
            memcpy(ret_hash, p->hash[i], 32);
            return 0;
        }
    }
    return DEMS_ENOTFOUND;
}

struct dems_merkle_reader dems_merkle_prefetch_reader(struct dems_merkle_prefetch *p)
{
    return (struct dems_merkle_reader){.get_subtree = prefetch_get, .ctx = p};
}
