/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inclusion proofs of many leaves against one tree size, with one database
 * round trip (api_int.h, "Proofs"). A dry run of the prover over every leaf
 * records the subtrees it would read (a hash set of (level, start)); the
 * caller fetches those rows of ledger_subtrees in one query and feeds them
 * back; a second run over the fed hashes gives the proofs and the root.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/db.h"

#include "api_int.h"

struct slot {
    uint64_t start;
    unsigned level; /* level + 1; 0 = empty slot */
    bool have;
    uint8_t hash[32];
};

struct api_prover {
    uint64_t size;
    size_t n;
    uint64_t *index;
    size_t cap, used; /* slots: a power of two, at most half full */
    struct slot *slots;
    bool recording;
};

static size_t slot_of(const struct api_prover *p, uint64_t start, unsigned level)
{
    uint64_t h = (start * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)level * 0xc2b2ae3d27d4eb4full);
    size_t i = (size_t)(h >> 17) & (p->cap - 1);
    while (p->slots[i].level != 0 && (p->slots[i].start != start || p->slots[i].level != level + 1))
        i = (i + 1) & (p->cap - 1);
    return i;
}

static int grow(struct api_prover *p)
{
    size_t old_cap = p->cap;
    struct slot *old = p->slots;
    size_t cap = old_cap ? old_cap * 2 : 1024;
    struct slot *s = calloc(cap, sizeof(*s));
    if (s == NULL)
        return DEMS_ENOMEM;
    p->slots = s;
    p->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].level != 0)
            p->slots[slot_of(p, old[i].start, old[i].level - 1)] = old[i];
    }
    free(old);
    return 0;
}

static int get(void *ctx, uint64_t start, unsigned level, uint8_t ret[static 32])
{
    struct api_prover *p = ctx;
    if (p->recording) {
        memset(ret, 0, 32);
        if ((p->used + 1) * 2 > p->cap && grow(p) < 0)
            return DEMS_ENOMEM;
        size_t i = slot_of(p, start, level);
        if (p->slots[i].level == 0) {
            p->slots[i] = (struct slot){.start = start, .level = level + 1};
            p->used++;
        }
        return 0;
    }
    size_t i = slot_of(p, start, level);
    if (p->slots[i].level == 0 || !p->slots[i].have)
        return DEMS_ENOTFOUND;
    memcpy(ret, p->slots[i].hash, 32);
    return 0;
}

static int run_all(struct api_prover *p, struct dems_merkle_proof *proof)
{
    struct dems_merkle_reader rd = {.get_subtree = get, .ctx = p};
    uint8_t root[32];
    int r = dems_merkle_root(&rd, p->size, root);
    for (size_t i = 0; r == 0 && i < p->n; i++) {
        uint8_t leaf[32];
        r = dems_merkle_prove_inclusion(&rd, p->index[i], p->size, proof);
        if (r == 0)
            r = get(p, p->index[i], 0, leaf);
    }
    return r;
}

int api_prover_new(uint64_t size, const uint64_t *index, size_t n, struct api_prover **ret)
{
    *ret = NULL;
    struct api_prover *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return DEMS_ENOMEM;
    p->size = size;
    p->n = n;
    p->index = malloc((n ? n : 1) * sizeof(*p->index));
    struct dems_merkle_proof *proof = malloc(sizeof(*proof));
    int r = p->index == NULL || proof == NULL ? DEMS_ENOMEM : grow(p);
    if (r == 0) {
        memcpy(p->index, index, n * sizeof(*index));
        p->recording = true;
        r = run_all(p, proof); /* DEMS_EINVAL: an index at or past size */
        p->recording = false;
    }
    free(proof);
    if (r < 0) {
        api_prover_free(p);
        return r;
    }
    *ret = p;
    return 0;
}

void api_prover_free(struct api_prover *p)
{
    if (p == NULL)
        return;
    free(p->index);
    free(p->slots);
    free(p);
}

int api_prover_wanted(const struct api_prover *p, char **ret_levels, char **ret_starts)
{
    struct dems_buf lv, st;
    dems_buf_init(&lv, 16 * 1024 * 1024);
    dems_buf_init(&st, 64 * 1024 * 1024);
    int r =
        dems_buf_append(&lv, "{", 1) == 0 && dems_buf_append(&st, "{", 1) == 0 ? 0 : DEMS_ENOMEM;
    bool first = true;
    for (size_t i = 0; r == 0 && i < p->cap; i++) {
        if (p->slots[i].level == 0)
            continue;
        char a[8], b[24];
        int na = snprintf(a, sizeof(a), "%s%u", first ? "" : ",", p->slots[i].level - 1);
        int nb = snprintf(b, sizeof(b), "%s%llu", first ? "" : ",",
                          (unsigned long long)p->slots[i].start);
        first = false;
        if (dems_buf_append(&lv, a, (size_t)na) < 0 || dems_buf_append(&st, b, (size_t)nb) < 0)
            r = DEMS_ENOMEM;
    }
    if (r == 0 && (dems_buf_append(&lv, "}", 2) < 0 || dems_buf_append(&st, "}", 2) < 0))
        r = DEMS_ENOMEM;
    if (r < 0) {
        dems_buf_done(&lv);
        dems_buf_done(&st);
        return r;
    }
    *ret_levels = (char *)lv.data;
    *ret_starts = (char *)st.data;
    return 0;
}

void api_prover_feed(struct api_prover *p, const PGresult *res)
{
    for (int row = 0; row < PQntuples(res); row++) {
        const char *lv = api_col(res, row, "level"), *st = api_col(res, row, "start");
        uint64_t level = 0, start = 0;
        if (dems_parse_u64(lv, strlen(lv), 62, &level) < 0 ||
            dems_parse_u64(st, strlen(st), UINT64_MAX, &start) < 0)
            continue;
        size_t i = slot_of(p, start, (unsigned)level);
        if (p->slots[i].level != 0 &&
            dems_hex_decode(api_col(res, row, "hash"), 64, p->slots[i].hash, 32) == 0)
            p->slots[i].have = true;
    }
}

int api_prover_prove(struct api_prover *p, size_t i, struct dems_merkle_proof *ret)
{
    struct dems_merkle_reader rd = {.get_subtree = get, .ctx = p};
    return i < p->n ? dems_merkle_prove_inclusion(&rd, p->index[i], p->size, ret) : DEMS_EINVAL;
}

int api_prover_root(struct api_prover *p, uint8_t ret[static 32])
{
    struct dems_merkle_reader rd = {.get_subtree = get, .ctx = p};
    return dems_merkle_root(&rd, p->size, ret);
}

bool api_prover_fetch(struct dems_req *req, uint64_t size, const uint64_t *index, size_t n,
                      struct api_prover **ret,
                      void (*cb)(struct dems_req *req, const PGresult *res, int err))
{
    int e = api_prover_new(size, index, n, ret);
    char *lv = NULL, *st = NULL;
    if (e == 0)
        e = api_prover_wanted(*ret, &lv, &st);
    if (e == 0) {
        const char *params[] = {lv, st};
        e = dems_db_req(req,
                        "SELECT level, start, encode(hash, 'hex') AS hash FROM ledger_subtrees"
                        " WHERE (level, start) IN"
                        " (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
                        2, params, cb);
    }
    free(lv);
    free(st);
    if (e < 0)
        dems_resp_err(req, e);
    return e == 0;
}
