/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ledger benchmark (tests/bench/ledger/run): writes an export of N signed
 * entries to a file, then times whole-log verification of it (with and
 * without the per-entry signature checks), and inclusion-proof generation
 * and verification over an in-memory tree of N leaves.
 *
 *   dems-ledger-bench [-n ENTRIES] [-o EXPORT] [-s] (-s: skip the signed pass)
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU time of the whole process (all threads). */
static double cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Writes the export; fills the in-memory tree as it goes. */
static int write_export(const char *path, uint64_t n, struct dems_ledger_key *k,
                        struct dems_merkle_mem *m)
{
    FILE *f = fopen(path, "w");
    struct dems_buf line, bytes;
    struct dems_merkle_frontier fr;
    char vkey[DEMS_NOTE_VKEY_MAX];
    uint8_t root[32];

    if (f == NULL)
        return DEMS_EIO;
    dems_buf_init(&line, 1 << 20);
    dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);
    dems_merkle_frontier_init(&fr);
    dems_ledger_key_vkey(k, vkey);
    dems_ledger_export_header("dems.bench/ledger", vkey, &line);
    json_t *payload = json_pack("{s:s,s:s}", "purpose", "court preparation", "ip", "10.1.2.3");
    for (uint64_t i = 0; i < n; i++) {
        uint8_t leaf[32], sig[64];
        /* Every type but KEY_ROTATED, whose payload must name a new key. */
        enum dems_ledger_type type = (enum dems_ledger_type)(i % DEMS_LEDGER_TYPE_COUNT);
        if (type == DEMS_LEDGER_KEY_ROTATED)
            type = DEMS_LEDGER_VIEWED;
        struct dems_ledger_entry e = {
            .seq = i,
            .time_ms = 1764023456789 + (int64_t)i * 7,
            .type = type,
            .actor_kind = DEMS_LEDGER_ACTOR_USER,
            .actor_id = "user:4711",
            .has_artefact = true,
            .case_id = "2025-000123",
            .has_sha256 = true,
            .has_size = true,
            .size = 1u << 30,
            .payload = payload,
        };
        memset(e.artefact, (int)(i & 0xff), 32);
        memcpy(e.sha256, e.artefact, 32);
        dems_buf_reset(&bytes);
        if (dems_ledger_entry_encode(&e, &bytes) < 0)
            return DEMS_EINTERNAL;
        dems_merkle_leaf_hash(bytes.data, bytes.len, leaf);
        dems_ledger_entry_sign(k, leaf, sig);
        dems_merkle_frontier_append(&fr, leaf, NULL);
        if (dems_merkle_mem_append(m, leaf) < 0)
            return DEMS_ENOMEM;
        dems_ledger_export_entry(i, bytes.data, bytes.len, leaf, sig, &line);
        if (line.len > (1 << 19)) {
            fwrite(line.data, 1, line.len, f);
            dems_buf_reset(&line);
        }
    }
    json_decref(payload);
    struct dems_checkpoint c = {.origin = "dems.bench/ledger", .size = n};
    struct dems_buf note;
    dems_buf_init(&note, 4096);
    dems_merkle_frontier_root(&fr, root);
    memcpy(c.root, root, 32);
    dems_checkpoint_sign(k, &c, &note);
    dems_ledger_export_checkpoint((const char *)note.data, note.len, &line);
    fwrite(line.data, 1, line.len, f);
    dems_buf_done(&note);
    dems_buf_done(&line);
    dems_buf_done(&bytes);
    return fclose(f) == 0 ? 0 : DEMS_EIO;
}

static int verify_pass(const char *path, bool skip, unsigned threads, uint64_t n)
{
    struct dems_ledger_verify_opts o = {.skip_entry_sigs = skip, .threads = threads};
    struct dems_ledger_report rep;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 1;
    double t = now(), c = cpu();
    int r = dems_ledger_verify_file(f, &o, &rep);
    t = now() - t;
    c = cpu() - c;
    fclose(f);
    if (r != 0 || rep.entries != n) {
        fprintf(stderr, "verification failed: %s\n", rep.detail);
        return 1;
    }
    char what[64];
    snprintf(what, sizeof(what), "(%s, %u thread%s)",
             skip ? "fast: hashes+root+checkpoint" : "full", threads, threads == 1 ? "" : "s");
    printf("verify %-40s %8llu entries  wall %7.3f s  %9.0f entries/s  (cpu %7.3f s: %9.0f "
           "entries/cpu-s)\n",
           what, (unsigned long long)n, t, (double)n / t, c, (double)n / c);
    return 0;
}

static int proofs(struct dems_merkle_mem *m, uint64_t n)
{
    enum { P = 20000 };
    static double lat[P];
    struct dems_merkle_reader rd = dems_merkle_mem_reader(m);
    uint8_t root[32];
    if (n == 0 || dems_merkle_root(&rd, n, root) < 0)
        return 1;
    for (int i = 0; i < P; i++) {
        uint64_t idx = (uint64_t)randombytes_uniform(UINT32_MAX) % n;
        struct dems_merkle_proof p;
        uint8_t leaf[32];
        double t = now();
        if (dems_merkle_prove_inclusion(&rd, idx, n, &p) < 0)
            return 1;
        lat[i] = now() - t;
        rd.get_subtree(rd.ctx, idx, 0, leaf);
        if (dems_merkle_verify_inclusion(leaf, idx, n, &p, root) != 0)
            return 1;
    }
    qsort(lat, P, sizeof(lat[0]), cmp_double);
    printf("inclusion proof at %llu entries (in-memory reader): p50 %.1f us, p99 %.1f us\n",
           (unsigned long long)n, lat[P / 2] * 1e6, lat[P * 99 / 100] * 1e6);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t n = 200000;
    const char *path = "ledger-bench.export";
    bool skip_signed = false;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            if (dems_parse_u64(argv[i + 1], strlen(argv[i + 1]), 100000000, &n) < 0)
                return 2;
            i++;
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-s") == 0) {
            skip_signed = true;
        } else {
            fprintf(stderr, "usage: dems-ledger-bench [-n ENTRIES] [-o EXPORT] [-s]\n");
            return 2;
        }
    }
    if (sodium_init() < 0)
        return 1;
    struct dems_ledger_key *k = NULL;
    struct dems_merkle_mem *m = dems_merkle_mem_new();
    if (m == NULL || dems_ledger_key_new("dems.bench/ledger", NULL, &k) < 0)
        return 1;
    double t = now();
    if (write_export(path, n, k, m) < 0)
        return 1;
    printf("wrote %s: %llu entries in %.2f s\n", path, (unsigned long long)n, now() - t);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int bad = verify_pass(path, true, 1, n);
    if (!skip_signed) {
        bad |= verify_pass(path, false, 1, n);
        if (cpus > 1)
            bad |= verify_pass(path, false, (unsigned)cpus, n);
    }
    bad |= proofs(m, n);
    dems_merkle_mem_free(m);
    dems_ledger_key_free(k);
    return bad;
}
