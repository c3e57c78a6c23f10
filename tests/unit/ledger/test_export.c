/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the export and whole-log verification
 * (common/ledger/export.c): a consistent in-memory log verifies, and each
 * kind of tampering is detected and named by sequence number: a changed
 * payload (with and without a recomputed leaf hash), a deleted entry, two
 * entries swapped, a duplicated entry, a flipped signature bit, a wrong or
 * unsigned checkpoint root, a short checkpoint, a foreign key, trailing data;
 * and key rotation: the chain is followed, and a rotation, later entries or
 * the checkpoint signed by the wrong key are named.
 */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"

#define ORIGIN "dems.test/ledger"
#define N      40
#define BIG    300 /* enough for several signature-checking threads */

struct log {
    char *line[BIG + 4];
    size_t count;
};

static struct dems_ledger_key *key;

static char *take_line(struct dems_buf *b)
{
    char *s = malloc(b->len + 1);
    assert_non_null(s);
    memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    if (b->len > 0 && s[b->len - 1] == '\n')
        s[b->len - 1] = '\0';
    dems_buf_reset(b);
    return s;
}

/* Canonical bytes of test entry seq, with a payload note. */
static void entry_bytes(uint64_t seq, const char *note, struct dems_buf *out)
{
    json_t *payload = json_pack("{s:s,s:I}", "note", note, "n", (json_int_t)seq);
    struct dems_ledger_entry e = {
        .seq = seq,
        .time_ms = 1764023456789 + (int64_t)seq * 1000,
        .type = seq % 2 ? DEMS_LEDGER_VIEWED : DEMS_LEDGER_INGESTED,
        .actor_kind = DEMS_LEDGER_ACTOR_USER,
        .actor_id = "u-7",
        .case_id = "C-1",
        .payload = payload,
    };
    assert_int_equal(dems_ledger_entry_encode(&e, out), 0);
    json_decref(payload);
}

/* An entry line for bytes, signed by k. */
static char *entry_line(uint64_t seq, struct dems_buf *bytes, const struct dems_ledger_key *k)
{
    uint8_t leaf[32], sig[64];
    struct dems_buf b;
    dems_buf_init(&b, 1 << 16);
    dems_merkle_leaf_hash(bytes->data, bytes->len, leaf);
    dems_ledger_entry_sign(k, leaf, sig);
    assert_int_equal(dems_ledger_export_entry(seq, bytes->data, bytes->len, leaf, sig, &b), 0);
    char *s = take_line(&b);
    dems_buf_done(&b);
    return s;
}

static char *checkpoint_line(uint64_t size, const uint8_t root[static 32],
                             const struct dems_ledger_key *k)
{
    struct dems_checkpoint c = {.origin = ORIGIN, .size = size};
    struct dems_buf note, b;
    memcpy(c.root, root, 32);
    dems_buf_init(&note, 4096);
    dems_buf_init(&b, 8192);
    assert_int_equal(dems_checkpoint_sign(k, &c, &note), 0);
    assert_int_equal(dems_ledger_export_checkpoint((const char *)note.data, note.len, &b), 0);
    char *s = take_line(&b);
    dems_buf_done(&note);
    dems_buf_done(&b);
    return s;
}

/* A consistent export of n entries (header, entries, checkpoint). */
static void build(struct log *lg, size_t n, uint8_t (*roots)[32])
{
    struct dems_buf b, bytes;
    struct dems_merkle_frontier f;
    char vkey[DEMS_NOTE_VKEY_MAX];
    uint8_t root[32];

    dems_buf_init(&b, 8192);
    dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);
    dems_ledger_key_vkey(key, vkey);
    assert_int_equal(dems_ledger_export_header(ORIGIN, vkey, &b), 0);
    lg->count = 0;
    lg->line[lg->count++] = take_line(&b);
    dems_merkle_frontier_init(&f);
    for (uint64_t i = 0; i < n; i++) {
        uint8_t leaf[32];
        dems_buf_reset(&bytes);
        entry_bytes(i, "viewed in court room 2", &bytes);
        dems_merkle_leaf_hash(bytes.data, bytes.len, leaf);
        dems_merkle_frontier_append(&f, leaf, NULL);
        if (roots != NULL)
            dems_merkle_frontier_root(&f, roots[i + 1]);
        lg->line[lg->count++] = entry_line(i, &bytes, key);
    }
    dems_merkle_frontier_root(&f, root);
    lg->line[lg->count++] = checkpoint_line(n, root, key);
    dems_buf_done(&b);
    dems_buf_done(&bytes);
}

static void release(struct log *lg)
{
    for (size_t i = 0; i < lg->count; i++)
        free(lg->line[i]);
    lg->count = 0;
}

static int verify(const struct log *lg, const struct dems_ledger_verify_opts *opts,
                  struct dems_ledger_report *rep)
{
    struct dems_ledger_verifier *v = dems_ledger_verifier_new(opts);
    assert_non_null(v);
    for (size_t i = 0; i < lg->count; i++)
        assert_int_equal(dems_ledger_verifier_line(v, lg->line[i], strlen(lg->line[i])), 0);
    int r = dems_ledger_verifier_finish(v, rep);
    dems_ledger_verifier_free(v);
    return r;
}

/*
 * Asserts the verdict: fault f naming entry seq (or no entry when seq < 0),
 * with signatures checked on the calling thread and by three threads.
 */
static void expect(const struct log *lg, enum dems_ledger_fault f, int64_t seq)
{
    for (unsigned threads = 1; threads <= 3; threads += 2) {
        struct dems_ledger_verify_opts opts = {.threads = threads};
        struct dems_ledger_report rep;
        int r = verify(lg, &opts, &rep);
        if (rep.fault != f || (seq >= 0) != rep.has_seq || (seq >= 0 && rep.seq != (uint64_t)seq))
            fail_msg("want %s at %lld, got %s (has_seq %d, seq %llu, %u threads): %s",
                     dems_ledger_fault_name(f), (long long)seq, dems_ledger_fault_name(rep.fault),
                     rep.has_seq, (unsigned long long)rep.seq, threads, rep.detail);
        assert_int_equal(r, f == DEMS_LEDGER_FAULT_NONE ? 0 : DEMS_ECRYPTO);
    }
}

static void test_valid_logs(void **state)
{
    (void)state;
    struct log lg;
    struct dems_ledger_report rep;
    for (size_t n = 0; n <= 9; n++) {
        build(&lg, n, NULL);
        expect(&lg, DEMS_LEDGER_FAULT_NONE, -1);
        release(&lg);
    }
    build(&lg, N, NULL);
    assert_int_equal(verify(&lg, NULL, &rep), 0);
    assert_true(rep.entries == N && rep.checkpoint.size == N);
    assert_string_equal(rep.checkpoint.origin, ORIGIN);

    /* The same through a FILE, and with the key pinned. */
    char *text = NULL;
    size_t tlen = 0;
    FILE *w = open_memstream(&text, &tlen);
    for (size_t i = 0; i < lg.count; i++)
        fprintf(w, "%s\n", lg.line[i]);
    fclose(w);
    char vkey[DEMS_NOTE_VKEY_MAX];
    dems_ledger_key_vkey(key, vkey);
    struct dems_ledger_verify_opts pin = {.vkey = vkey};
    FILE *in = fmemopen(text, tlen, "r");
    assert_int_equal(dems_ledger_verify_file(in, &pin, &rep), 0);
    assert_true(rep.entries == N);
    fclose(in);
    /* The same without the final newline; and a line too long to hold. */
    in = fmemopen(text, tlen - 1, "r");
    assert_int_equal(dems_ledger_verify_file(in, &pin, &rep), 0);
    fclose(in);
    size_t big = (size_t)DEMS_LEDGER_MAX_LINE + 10;
    char *huge = malloc(tlen + big);
    assert_non_null(huge);
    memcpy(huge, text, tlen);
    memset(huge + tlen, 'x', big);
    in = fmemopen(huge, tlen + big, "r");
    assert_int_equal(dems_ledger_verify_file(in, &pin, &rep), DEMS_ETOOBIG);
    assert_int_equal(rep.fault, DEMS_LEDGER_FAULT_FORMAT);
    assert_non_null(strstr(rep.detail, "longer than"));
    fclose(in);
    free(huge);
    free(text);
    release(&lg);
}

static void test_changed_payload(void **state)
{
    (void)state;
    struct log lg;
    struct dems_buf bytes;
    dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);

    /* New bytes, old leaf hash and signature: the hash no longer matches. */
    build(&lg, N, NULL);
    entry_bytes(17, "viewed in court room 3", &bytes);
    char *forged = entry_line(17, &bytes, key);
    char *old = lg.line[1 + 17];
    char *p = strstr(old, "\",\"leaf\""), *q = strstr(forged, "\",\"leaf\"");
    char *mixed = malloc(strlen(forged) + strlen(old));
    snprintf(mixed, strlen(forged) + strlen(old), "%.*s%s", (int)(q - forged), forged, p);
    lg.line[1 + 17] = mixed;
    expect(&lg, DEMS_LEDGER_FAULT_HASH, 17);
    /* New bytes and a recomputed leaf hash, signed by someone else: bad signature. */
    struct dems_ledger_key *evil = NULL;
    assert_int_equal(dems_ledger_key_new(ORIGIN, NULL, &evil), 0);
    free(forged);
    forged = entry_line(17, &bytes, evil);
    lg.line[1 + 17] = forged;
    expect(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 17);
    /* Even signed by the real key (a stolen key), the old checkpoint no longer matches. */
    free(forged);
    forged = entry_line(17, &bytes, key);
    lg.line[1 + 17] = forged;
    expect(&lg, DEMS_LEDGER_FAULT_ROOT, -1);
    lg.line[1 + 17] = old;
    expect(&lg, DEMS_LEDGER_FAULT_NONE, -1);
    free(mixed);
    free(forged);
    dems_ledger_key_free(evil);
    dems_buf_done(&bytes);
    release(&lg);
}

static void test_sequence_faults(void **state)
{
    (void)state;
    struct log lg;
    build(&lg, N, NULL);

    /* Delete entry 9. */
    char *gone = lg.line[1 + 9];
    memmove(&lg.line[1 + 9], &lg.line[1 + 10], (lg.count - 11) * sizeof(char *));
    lg.count--;
    expect(&lg, DEMS_LEDGER_FAULT_GAP, 9);
    /* Still a gap when a malformed line or a bad checkpoint follows it. */
    char *e20 = lg.line[1 + 19], *cpl = lg.line[lg.count - 1];
    char broken[] = "{\"entry\":\"broken", badcp[] = "{\"checkpoint\":5}";
    lg.line[1 + 19] = broken;
    expect(&lg, DEMS_LEDGER_FAULT_GAP, 9);
    lg.line[1 + 19] = e20;
    lg.line[lg.count - 1] = badcp;
    expect(&lg, DEMS_LEDGER_FAULT_GAP, 9);
    lg.line[lg.count - 1] = cpl;
    /* Delete the last entry: the checkpoint covers one more than the export holds. */
    lg.count++;
    memmove(&lg.line[1 + 10], &lg.line[1 + 9], (lg.count - 11) * sizeof(char *));
    lg.line[1 + 9] = gone;
    expect(&lg, DEMS_LEDGER_FAULT_NONE, -1);
    char *last = lg.line[N], *cp = lg.line[N + 1];
    lg.line[N] = cp;
    lg.count--;
    expect(&lg, DEMS_LEDGER_FAULT_SIZE, N - 1);
    lg.line[N] = last;
    lg.line[N + 1] = cp;
    lg.count++;

    /* Swap entries 21 and 22. */
    char *t = lg.line[1 + 21];
    lg.line[1 + 21] = lg.line[1 + 22];
    lg.line[1 + 22] = t;
    expect(&lg, DEMS_LEDGER_FAULT_REORDER, 21);
    /* Move entry 3 to just before the checkpoint. */
    lg.line[1 + 22] = lg.line[1 + 21];
    lg.line[1 + 21] = t;
    char *three = lg.line[1 + 3];
    memmove(&lg.line[1 + 3], &lg.line[1 + 4], (N - 4) * sizeof(char *));
    lg.line[N] = three;
    expect(&lg, DEMS_LEDGER_FAULT_REORDER, 3);
    memmove(&lg.line[1 + 4], &lg.line[1 + 3], (N - 4) * sizeof(char *));
    lg.line[1 + 3] = three;
    expect(&lg, DEMS_LEDGER_FAULT_NONE, -1);

    /* Entry 30 twice. */
    char *dup = strdup(lg.line[1 + 30]);
    memmove(&lg.line[1 + 31], &lg.line[1 + 30], (lg.count - 31) * sizeof(char *));
    lg.line[1 + 30] = dup;
    lg.count++;
    expect(&lg, DEMS_LEDGER_FAULT_DUPLICATE, 30);
    release(&lg);
}

static void test_signature_and_checkpoint_faults(void **state)
{
    (void)state;
    struct log lg;
    uint8_t roots[N + 1][32];
    build(&lg, N, roots);

    /* Flip one bit of entry 12's signature (inside its base64 text). */
    char *sig = strstr(lg.line[1 + 12], "\"sig\":\"") + 7;
    char saved = sig[5];
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    expect(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 12);
    /* A later fault of another kind does not hide it (signatures are checked in batches). */
    char *e30 = lg.line[1 + 30];
    lg.line[1 + 30] = strdup(e30);
    char *hex = strstr(lg.line[1 + 30], "\"leaf\":\"") + 8;
    hex[0] = hex[0] == '0' ? '1' : '0';
    expect(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 12);
    sig[5] = saved;
    expect(&lg, DEMS_LEDGER_FAULT_HASH, 30);
    free(lg.line[1 + 30]);
    lg.line[1 + 30] = e30;

    /* A checkpoint for a wrong root, properly signed. */
    char *cp = lg.line[lg.count - 1];
    uint8_t wrong[32];
    memcpy(wrong, roots[N], 32);
    wrong[0] ^= 1;
    lg.line[lg.count - 1] = checkpoint_line(N, wrong, key);
    expect(&lg, DEMS_LEDGER_FAULT_ROOT, -1);
    free(lg.line[lg.count - 1]);
    /* The root of an older size: the size is checked first. */
    lg.line[lg.count - 1] = checkpoint_line(N - 1, roots[N - 1], key);
    expect(&lg, DEMS_LEDGER_FAULT_SIZE, N - 1);
    free(lg.line[lg.count - 1]);
    /* The right root signed by another key. */
    struct dems_ledger_key *evil = NULL;
    assert_int_equal(dems_ledger_key_new(ORIGIN, NULL, &evil), 0);
    lg.line[lg.count - 1] = checkpoint_line(N, roots[N], evil);
    expect(&lg, DEMS_LEDGER_FAULT_CHECKPOINT, -1);
    free(lg.line[lg.count - 1]);
    /* The root line edited in place: the note signature breaks. */
    lg.line[lg.count - 1] = cp;
    char *rootp = strstr(cp, "\\n40\\n") + 6;
    saved = rootp[0];
    rootp[0] = rootp[0] == 'A' ? 'B' : 'A';
    expect(&lg, DEMS_LEDGER_FAULT_CHECKPOINT, -1);
    rootp[0] = saved;
    expect(&lg, DEMS_LEDGER_FAULT_NONE, -1);

    /* No checkpoint; a line after it; a malformed entry line. */
    lg.count--;
    expect(&lg, DEMS_LEDGER_FAULT_CHECKPOINT, -1);
    lg.count++;
    lg.line[lg.count++] = strdup("{}");
    expect(&lg, DEMS_LEDGER_FAULT_FORMAT, -1);
    free(lg.line[--lg.count]);
    char *e5 = lg.line[1 + 5];
    lg.line[1 + 5] = strdup("{\"entry\":\"AAAA\"}");
    expect(&lg, DEMS_LEDGER_FAULT_FORMAT, -1);
    free(lg.line[1 + 5]);
    lg.line[1 + 5] = e5;

    /* A whole log rewritten under another key verifies only when not pinned. */
    struct dems_ledger_report rep;
    char vkey[DEMS_NOTE_VKEY_MAX];
    struct dems_ledger_key *real = key;
    release(&lg);
    key = evil;
    build(&lg, 5, NULL);
    key = real;
    assert_int_equal(verify(&lg, NULL, &rep), 0);
    dems_ledger_key_vkey(real, vkey);
    struct dems_ledger_verify_opts pin = {.vkey = vkey};
    assert_int_equal(verify(&lg, &pin, &rep), DEMS_ECRYPTO);
    assert_int_equal(rep.fault, DEMS_LEDGER_FAULT_HEADER);
    assert_non_null(strstr(rep.detail, "not the expected"));
    dems_ledger_key_free(evil);
    release(&lg);
}

/* Signers for a log with one key rotation (build_rotated). */
struct rotation {
    uint64_t at;                          /* the KEY_ROTATED entry's seq */
    const struct dems_ledger_key *to;     /* the key named in its payload */
    const char *payload_vkey;             /* overrides to's verifier key when set */
    const struct dems_ledger_key *rot_by; /* signs the rotation entry */
    const struct dems_ledger_key *after;  /* signs the entries after it */
    const struct dems_ledger_key *cp_by;  /* signs the checkpoint */
};

/* Like build, with entry rot->at a KEY_ROTATED entry. */
static void build_rotated(struct log *lg, size_t n, const struct rotation *rot)
{
    struct dems_buf b, bytes;
    struct dems_merkle_frontier f;
    char vkey[DEMS_NOTE_VKEY_MAX], newkey[DEMS_NOTE_VKEY_MAX];
    uint8_t root[32];

    dems_buf_init(&b, 8192);
    dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);
    dems_ledger_key_vkey(key, vkey);
    dems_ledger_key_vkey(rot->to, newkey);
    assert_int_equal(dems_ledger_export_header(ORIGIN, vkey, &b), 0);
    lg->count = 0;
    lg->line[lg->count++] = take_line(&b);
    dems_merkle_frontier_init(&f);
    for (uint64_t i = 0; i < n; i++) {
        uint8_t leaf[32];
        const struct dems_ledger_key *signer = i < rot->at ? key : rot->after;
        dems_buf_reset(&bytes);
        if (i == rot->at) {
            json_t *payload =
                json_pack("{s:s}", "vkey", rot->payload_vkey != NULL ? rot->payload_vkey : newkey);
            struct dems_ledger_entry e = {
                .seq = i,
                .time_ms = 1764023456789 + (int64_t)i * 1000,
                .type = DEMS_LEDGER_KEY_ROTATED,
                .actor_kind = DEMS_LEDGER_ACTOR_USER,
                .actor_id = "u-1",
                .payload = payload,
            };
            assert_int_equal(dems_ledger_entry_encode(&e, &bytes), 0);
            json_decref(payload);
            signer = rot->rot_by;
        } else {
            entry_bytes(i, "viewed in court room 2", &bytes);
        }
        dems_merkle_leaf_hash(bytes.data, bytes.len, leaf);
        dems_merkle_frontier_append(&f, leaf, NULL);
        lg->line[lg->count++] = entry_line(i, &bytes, signer);
    }
    dems_merkle_frontier_root(&f, root);
    lg->line[lg->count++] = checkpoint_line(n, root, rot->cp_by);
    dems_buf_done(&b);
    dems_buf_done(&bytes);
}

/* Both with and without entry signatures, and pinned to pin when given. */
static void expect_rotated(const struct log *lg, enum dems_ledger_fault f, int64_t seq,
                           const char *pin)
{
    for (int fast = 0; fast <= 1; fast++) {
        struct dems_ledger_verify_opts opts = {.vkey = pin, .skip_entry_sigs = fast, .threads = 2};
        struct dems_ledger_report rep;
        int r = verify(lg, &opts, &rep);
        if (rep.fault != f || (seq >= 0) != rep.has_seq || (seq >= 0 && rep.seq != (uint64_t)seq))
            fail_msg("want %s at %lld, got %s (seq %llu, fast %d): %s", dems_ledger_fault_name(f),
                     (long long)seq, dems_ledger_fault_name(rep.fault), (unsigned long long)rep.seq,
                     fast, rep.detail);
        assert_int_equal(r, f == DEMS_LEDGER_FAULT_NONE ? 0 : DEMS_ECRYPTO);
        if (f == DEMS_LEDGER_FAULT_NONE)
            assert_int_equal(rep.rotations, 1);
    }
}

static void test_key_rotation(void **state)
{
    (void)state;
    struct dems_ledger_key *next = NULL, *evil = NULL;
    char vkey_old[DEMS_NOTE_VKEY_MAX], vkey_new[DEMS_NOTE_VKEY_MAX], vkey_evil[DEMS_NOTE_VKEY_MAX];
    struct log lg;
    assert_int_equal(dems_ledger_key_new(ORIGIN, NULL, &next), 0);
    assert_int_equal(dems_ledger_key_new(ORIGIN, NULL, &evil), 0);
    dems_ledger_key_vkey(key, vkey_old);
    dems_ledger_key_vkey(next, vkey_new);
    dems_ledger_key_vkey(evil, vkey_evil);

    /* The good chain verifies pinned to either key, not to a third. */
    struct rotation rot = {.at = 17, .to = next, .rot_by = key, .after = next, .cp_by = next};
    build_rotated(&lg, N, &rot);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_NONE, -1, NULL);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_NONE, -1, vkey_old);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_NONE, -1, vkey_new);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_HEADER, -1, vkey_evil);
    release(&lg);
    /* The last entry may be the rotation: the checkpoint is the new key's. */
    rot.at = N - 1;
    build_rotated(&lg, N, &rot);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_NONE, -1, vkey_old);
    release(&lg);
    rot.at = 17;

    /* A rotation signed by the key it names (not the retiring one): even --fast sees it. */
    rot.rot_by = next;
    build_rotated(&lg, N, &rot);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 17, vkey_old);
    release(&lg);
    rot.rot_by = key;

    /* An entry after the rotation still signed by the old key. */
    rot.after = key;
    build_rotated(&lg, N, &rot);
    expect(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 18);
    release(&lg);
    rot.after = next;

    /* The checkpoint signed by the retired key. */
    rot.cp_by = key;
    build_rotated(&lg, N, &rot);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_CHECKPOINT, -1, vkey_old);
    release(&lg);
    rot.cp_by = next;

    /* Rotating to a key under another name, or to no key at all. */
    struct dems_ledger_key *other = NULL;
    char vkey_other[DEMS_NOTE_VKEY_MAX];
    assert_int_equal(dems_ledger_key_new("other.example/log", NULL, &other), 0);
    dems_ledger_key_vkey(other, vkey_other);
    rot.payload_vkey = vkey_other;
    build_rotated(&lg, N, &rot);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_ENTRY, 17, NULL);
    release(&lg);
    rot.payload_vkey = "not a key";
    build_rotated(&lg, N, &rot);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_ENTRY, 17, NULL);
    release(&lg);

    /* An attacker who swaps in a rotation to their own key is refused when pinned. */
    rot.payload_vkey = NULL;
    rot.to = evil;
    rot.rot_by = evil;
    rot.after = evil;
    rot.cp_by = evil;
    build_rotated(&lg, N, &rot);
    expect_rotated(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 17, vkey_old);
    release(&lg);

    dems_ledger_key_free(other);
    dems_ledger_key_free(next);
    dems_ledger_key_free(evil);
}

/* dems_ledger_entry_seal: what the server's append does, checked by the verifier. */
static void test_seal(void **state)
{
    (void)state;
    struct dems_merkle_frontier f, copy;
    struct dems_merkle_mem *m = dems_merkle_mem_new();
    struct dems_merkle_reader rd = dems_merkle_mem_reader(m);
    struct dems_buf bytes, out;
    struct dems_ledger_sealed sealed;
    uint8_t pk[32], root[32];
    char vkey[DEMS_NOTE_VKEY_MAX];

    dems_merkle_frontier_init(&f);
    dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);
    dems_buf_init(&out, 1 << 20);
    dems_ledger_key_public(key, pk);
    dems_ledger_key_vkey(key, vkey);
    assert_int_equal(dems_ledger_export_header(ORIGIN, vkey, &out), 0);
    for (uint64_t i = 0; i < 70; i++) {
        struct dems_ledger_entry e = {.seq = i,
                                      .time_ms = 1000 * (int64_t)i,
                                      .type = DEMS_LEDGER_HOLD_PLACED,
                                      .actor_kind = DEMS_LEDGER_ACTOR_SYSTEM,
                                      .actor_id = "retention"};
        dems_buf_reset(&bytes);
        copy = f;
        e.seq = i + 1;
        assert_int_equal(dems_ledger_entry_seal(key, &f, &e, &bytes, &sealed), DEMS_ECONFLICT);
        assert_int_equal(bytes.len, 0);
        assert_memory_equal(&copy, &f, sizeof(f));
        e.seq = i;
        assert_int_equal(dems_ledger_entry_seal(key, &f, &e, &bytes, &sealed), 0);
        assert_int_equal(dems_ledger_entry_verify(pk, sealed.leaf, sealed.sig), 0);
        assert_int_equal(dems_merkle_mem_append(m, sealed.leaf), 0);
        for (int l = 0; l < sealed.ncompleted; l++) {
            uint8_t want[32];
            uint64_t start = f.size - (UINT64_C(1) << l);
            assert_int_equal(rd.get_subtree(rd.ctx, start, (unsigned)l, want), 0);
            assert_memory_equal(sealed.completed[l], want, 32);
        }
        assert_int_equal(
            dems_ledger_export_entry(i, bytes.data, bytes.len, sealed.leaf, sealed.sig, &out), 0);
    }
    dems_merkle_frontier_root(&f, root);
    struct dems_checkpoint c = {.origin = ORIGIN, .size = f.size};
    struct dems_buf note;
    memcpy(c.root, root, 32);
    dems_buf_init(&note, 4096);
    assert_int_equal(dems_checkpoint_sign(key, &c, &note), 0);
    assert_int_equal(dems_ledger_export_checkpoint((const char *)note.data, note.len, &out), 0);
    FILE *in = fmemopen(out.data, out.len, "r");
    struct dems_ledger_report rep;
    struct dems_ledger_verify_opts pin = {.vkey = vkey};
    assert_int_equal(dems_ledger_verify_file(in, &pin, &rep), 0);
    assert_true(rep.entries == 70);
    fclose(in);
    dems_buf_done(&note);
    dems_buf_done(&bytes);
    dems_buf_done(&out);
    dems_merkle_mem_free(m);
}

/* Threads share the signature checks of a long log; the first bad one still wins. */
static void test_threads(void **state)
{
    (void)state;
    struct log lg;
    build(&lg, BIG, NULL);
    expect(&lg, DEMS_LEDGER_FAULT_NONE, -1);
    char *a = strstr(lg.line[1 + 250], "\"sig\":\"") + 7,
         *b = strstr(lg.line[1 + 170], "\"sig\":\"") + 7;
    a[3] = a[3] == 'A' ? 'B' : 'A';
    expect(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 250);
    b[0] = b[0] == 'A' ? 'B' : 'A';
    expect(&lg, DEMS_LEDGER_FAULT_SIGNATURE, 170);
    release(&lg);
}

/* Any single changed byte anywhere in an export is refused. */
static void test_every_byte_matters(void **state)
{
    (void)state;
    struct log lg;
    char *text = NULL;
    size_t tlen = 0;
    build(&lg, 2, NULL);
    FILE *w = open_memstream(&text, &tlen);
    for (size_t i = 0; i < lg.count; i++)
        fprintf(w, "%s\n", lg.line[i]);
    fclose(w);
    static const uint8_t set[] = {'0', '"'};
    unsigned tried = 0;
    for (size_t pos = 0; pos < tlen; pos++) {
        uint8_t orig = (uint8_t)text[pos];
        uint8_t vals[2 + sizeof(set)] = {(uint8_t)(orig ^ 0x01), (uint8_t)(orig ^ 0x20)};
        memcpy(vals + 2, set, sizeof(set));
        for (size_t k = 0; k < sizeof(vals); k++) {
            if (vals[k] == orig)
                continue;
            text[pos] = (char)vals[k];
            FILE *in = fmemopen(text, tlen, "r");
            struct dems_ledger_report rep;
            int r = dems_ledger_verify_file(in, NULL, &rep);
            fclose(in);
            if (r == 0)
                fail_msg("byte %zu changed from 0x%02x to 0x%02x and the export still verifies",
                         pos, orig, vals[k]);
            tried++;
        }
        text[pos] = (char)orig;
    }
    assert_true(tried > 3 * tlen);
    free(text);
    release(&lg);
}

/* Entry bytes that are not canonical, or that carry another seq, are refused. */
static void test_entry_faults(void **state)
{
    (void)state;
    struct log lg;
    struct dems_buf bytes;
    build(&lg, 8, NULL);
    dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);
    entry_bytes(4, "x", &bytes);
    free(lg.line[1 + 5]);
    lg.line[1 + 5] = entry_line(5, &bytes, key); /* line says 5, bytes say 4 */
    expect(&lg, DEMS_LEDGER_FAULT_ENTRY, 5);
    dems_buf_reset(&bytes);
    assert_int_equal(dems_buf_append(&bytes, "{\"seq\":5}", 9), 0);
    free(lg.line[1 + 5]);
    lg.line[1 + 5] = entry_line(5, &bytes, key);
    expect(&lg, DEMS_LEDGER_FAULT_ENTRY, 5);
    dems_buf_done(&bytes);
    release(&lg);
}

static int setup(void **state)
{
    (void)state;
    return dems_ledger_key_new(ORIGIN, NULL, &key);
}

static int teardown(void **state)
{
    (void)state;
    dems_ledger_key_free(key);
    return 0;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_logs),
        cmocka_unit_test(test_changed_payload),
        cmocka_unit_test(test_sequence_faults),
        cmocka_unit_test(test_signature_and_checkpoint_faults),
        cmocka_unit_test(test_entry_faults),
        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_seal),
        cmocka_unit_test(test_every_byte_matters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
