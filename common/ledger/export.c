/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ledger export (docs/ledger.md, "Export"): JSON lines, a header naming
 * the origin and the log's verifier key, one line per entry in sequence
 * order, and the signed checkpoint covering exactly those entries. The
 * verifier streams it in O(log N) memory: each entry's bytes must be
 * canonical and carry the line's sequence number, hash to the line's leaf
 * hash and bear a valid signature; the recomputed root must equal the
 * checkpoint's, whose note signature must verify. It reports the first
 * fault, by sequence number; after a sequence anomaly it reads on only to
 * tell a missing entry from a misplaced one.
 *
 * Entry lines have one fixed layout (the canonical JSON of the line), which
 * the verifier parses by hand: whole-log verification is bound by
 * hashing, and a general JSON parser would dominate it.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ledger_int.h"

#define EXPORT_VERSION 1

static int append_canonical(json_t *j, struct dems_buf *out)
{
    size_t mark = out->len;
    int r = j != NULL ? dems_jcs_encode(j, out) : DEMS_ENOMEM;
    if (r == 0 && (r = dems_buf_append(out, "\n", 1)) < 0)
        out->len = mark;
    json_decref(j);
    return r;
}

int dems_ledger_export_header(const char *origin, const char *vkey, struct dems_buf *out)
{
    struct dems_note_verifier v;

    if (origin == NULL || vkey == NULL || origin[0] == '\0' ||
        strlen(origin) > DEMS_NOTE_MAX_NAME || dems_note_verifier_parse(vkey, strlen(vkey), &v) < 0)
        return DEMS_EINVAL;
    return append_canonical(json_pack("{s:i,s:s,s:s}", "dems_ledger_export", EXPORT_VERSION,
                                      "origin", origin, "vkey", vkey),
                            out);
}

int dems_ledger_export_entry(uint64_t seq, const uint8_t *bytes, size_t len,
                             const uint8_t leaf_hash[static 32], const uint8_t sig[static 64],
                             struct dems_buf *out)
{
    char *text, hex[65], sigb[89], tail[256];
    size_t mark = out->len;
    int r;

    if (len == 0 || len > DEMS_LEDGER_MAX_ENTRY || seq > (uint64_t)DEMS_JCS_MAX_INT)
        return DEMS_EINVAL;
    /* A heap copy keeps the function reentrant (the server streams from several threads). */
    text = malloc(ledger_b64_len(len) + 1);
    if (text == NULL)
        return DEMS_ENOMEM;
    ledger_b64_encode(bytes, len, text);
    dems_hex_encode(leaf_hash, 32, hex);
    ledger_b64_encode(sig, 64, sigb);
    int n = snprintf(tail, sizeof(tail), "\",\"leaf\":\"%s\",\"seq\":%llu,\"sig\":\"%s\"}\n", hex,
                     (unsigned long long)seq, sigb);
    if (n < 0 || (size_t)n >= sizeof(tail)) {
        free(text);
        return DEMS_EINTERNAL;
    }
    if ((r = dems_buf_append(out, "{\"entry\":\"", 10)) < 0 ||
        (r = dems_buf_append(out, text, strlen(text))) < 0 ||
        (r = dems_buf_append(out, tail, (size_t)n)) < 0)
        out->len = mark;
    free(text);
    return r;
}

int dems_ledger_export_checkpoint(const char *note, size_t len, struct dems_buf *out)
{
    if (len == 0 || len > DEMS_NOTE_MAX_BYTES)
        return DEMS_EINVAL;
    return append_canonical(json_pack("{s:s%}", "checkpoint", note, len), out);
}

const char *dems_ledger_fault_name(enum dems_ledger_fault fault)
{
    static const char *const names[] = {
        [DEMS_LEDGER_FAULT_NONE] = "ok",
        [DEMS_LEDGER_FAULT_FORMAT] = "format",
        [DEMS_LEDGER_FAULT_HEADER] = "header",
        [DEMS_LEDGER_FAULT_ENTRY] = "bad_entry",
        [DEMS_LEDGER_FAULT_HASH] = "hash_mismatch",
        [DEMS_LEDGER_FAULT_SIGNATURE] = "bad_signature",
        [DEMS_LEDGER_FAULT_GAP] = "sequence_gap",
        [DEMS_LEDGER_FAULT_DUPLICATE] = "sequence_duplicate",
        [DEMS_LEDGER_FAULT_REORDER] = "sequence_reorder",
        [DEMS_LEDGER_FAULT_CHECKPOINT] = "bad_checkpoint",
        [DEMS_LEDGER_FAULT_SIZE] = "size_mismatch",
        [DEMS_LEDGER_FAULT_ROOT] = "root_mismatch",
        [DEMS_LEDGER_FAULT_WITNESS] = "witness_quorum",
    };
    if ((unsigned)fault >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[fault];
}

enum stage { STAGE_HEADER, STAGE_ENTRIES, STAGE_DONE };

/*
 * Entry signatures are the slow part (an Ed25519 verification costs about
 * 100 us, hashing an entry about 1 us), so they are checked in batches that
 * threads share. A fault found later in the stream is recorded only after
 * the batch before it is checked, so the first bad entry still wins.
 */
#define SIG_BATCH   4096
#define MAX_THREADS 64

struct sig_job {
    uint8_t leaf[32];
    uint8_t sig[64];
    uint64_t seq, line;
    uint32_t key; /* index into the verifier's key chain */
    bool bad;
};

/* Most keys one export may rotate through (each rotation is an entry). */
#define MAX_KEYS 4096

struct dems_ledger_verifier {
    bool pinned;
    bool skip_sigs;
    const struct dems_witness_policy *witnesses; /* borrowed from the options; NULL: none */
    bool pin_seen;                               /* the pinned key is one of the chain's */
    struct dems_note_verifier pin;
    struct dems_note_verifier key; /* the key in force: the chain's last */
    /* The key chain: the header's key, then one per KEY_ROTATED entry. */
    struct dems_note_verifier *keys;
    uint32_t nkeys;
    char origin[DEMS_NOTE_MAX_NAME + 1];
    enum stage stage;
    uint64_t line;
    uint64_t next_seq; /* entries accepted so far */
    struct dems_merkle_frontier tree;
    char *note; /* the checkpoint note, owned */
    size_t note_len;
    /* After a sequence anomaly: which seq is missing, and where it went wrong. */
    bool pending;
    uint64_t missing, found, found_line;
    bool faulted;
    struct dems_ledger_report rep;
    unsigned threads;
    struct sig_job *jobs; /* SIG_BATCH of them unless skip_sigs */
    size_t njobs;
    uint8_t bytes[DEMS_LEDGER_MAX_ENTRY];
};

struct dems_ledger_verifier *dems_ledger_verifier_new(const struct dems_ledger_verify_opts *opts)
{
    struct dems_ledger_verifier *v = calloc(1, sizeof(*v));

    if (v == NULL)
        return NULL;
    dems_merkle_frontier_init(&v->tree);
    v->threads = 1;
    if (opts != NULL) {
        v->skip_sigs = opts->skip_entry_sigs;
        v->witnesses = opts->witnesses;
        if (opts->threads > 1)
            v->threads = opts->threads < MAX_THREADS ? opts->threads : MAX_THREADS;
        if (opts->vkey != NULL) {
            v->pinned = true;
            if (dems_note_verifier_parse(opts->vkey, strlen(opts->vkey), &v->pin) < 0) {
                v->faulted = true;
                v->rep.fault = DEMS_LEDGER_FAULT_HEADER;
                snprintf(v->rep.detail, sizeof(v->rep.detail),
                         "the pinned verifier key is malformed");
            }
        }
    }
    if (!v->skip_sigs && (v->jobs = calloc(SIG_BATCH, sizeof(*v->jobs))) == NULL) {
        free(v);
        return NULL;
    }
    return v;
}

void dems_ledger_verifier_free(struct dems_ledger_verifier *v)
{
    if (v == NULL)
        return;
    free(v->note);
    free(v->jobs);
    free(v->keys);
    free(v);
}

struct sig_work {
    struct sig_job *jobs;
    size_t from, to;
    const struct dems_note_verifier *keys;
};

static void *sig_worker(void *arg)
{
    struct sig_work *w = arg;
    for (size_t i = w->from; i < w->to; i++) {
        struct sig_job *j = &w->jobs[i];
        j->bad = dems_ledger_entry_verify(w->keys[j->key].pk, j->leaf, j->sig) != 0;
    }
    return NULL;
}

static void fault_at_sig(struct dems_ledger_verifier *v, const struct sig_job *j);

/* Checks the pending signatures (threads share them) and records the first bad one. */
static void flush_sigs(struct dems_ledger_verifier *v)
{
    size_t n = v->njobs;
    pthread_t tid[MAX_THREADS];
    struct sig_work w[MAX_THREADS];
    bool started[MAX_THREADS] = {false};

    if (n == 0)
        return;
    v->njobs = 0;
    size_t t = v->threads;
    if (t > n / 64 + 1)
        t = n / 64 + 1; /* small batches are not worth a thread */
    size_t per = (n + t - 1) / t;
    for (size_t k = 0; k < t; k++) {
        w[k] = (struct sig_work){.jobs = v->jobs,
                                 .from = k * per < n ? k * per : n,
                                 .to = (k + 1) * per < n ? (k + 1) * per : n,
                                 .keys = v->keys};
        if (k > 0)
            started[k] = pthread_create(&tid[k], NULL, sig_worker, &w[k]) == 0;
    }
    sig_worker(&w[0]);
    for (size_t k = 1; k < t; k++) {
        if (started[k])
            pthread_join(tid[k], NULL);
        else
            sig_worker(&w[k]); /* no thread: do its share here */
    }
    for (size_t i = 0; i < n; i++) {
        if (v->jobs[i].bad) {
            fault_at_sig(v, &v->jobs[i]);
            break;
        }
    }
}

static void gap_fault(struct dems_ledger_verifier *v);

/* Records the first fault; later ones are ignored. */
__attribute__((format(printf, 4, 5))) static void fault(struct dems_ledger_verifier *v,
                                                        enum dems_ledger_fault f,
                                                        const uint64_t *seq, const char *fmt, ...)
{
    va_list ap;

    if (v->faulted)
        return;
    /* Entries before this one may still have unchecked signatures: they come first. */
    flush_sigs(v);
    if (v->faulted)
        return;
    /* So does a pending sequence anomaly: the missing entry never turned up. */
    if (v->pending && f != DEMS_LEDGER_FAULT_REORDER && f != DEMS_LEDGER_FAULT_GAP) {
        gap_fault(v);
        return;
    }
    v->faulted = true;
    v->rep.fault = f;
    v->rep.has_seq = seq != NULL;
    v->rep.seq = seq != NULL ? *seq : 0;
    v->rep.line = v->line;
    va_start(ap, fmt);
    vsnprintf(v->rep.detail, sizeof(v->rep.detail), fmt, ap);
    va_end(ap);
}

static void fault_at_sig(struct dems_ledger_verifier *v, const struct sig_job *j)
{
    uint64_t line = v->line;
    v->line = j->line;
    fault(v, DEMS_LEDGER_FAULT_SIGNATURE, &j->seq,
          "entry %llu (line %llu): signature does not verify with key %s+%02x%02x%02x%02x",
          (unsigned long long)j->seq, (unsigned long long)j->line, v->keys[j->key].name,
          v->keys[j->key].keyhash[0], v->keys[j->key].keyhash[1], v->keys[j->key].keyhash[2],
          v->keys[j->key].keyhash[3]);
    v->line = line;
}

/* True when line is exactly the canonical encoding of j (header and checkpoint lines are). */
static bool is_canonical(const json_t *j, const char *line, size_t len)
{
    struct dems_buf b;
    dems_buf_init(&b, len + 1);
    bool same = dems_jcs_encode(j, &b) == 0 && b.len == len && memcmp(b.data, line, len) == 0;
    dems_buf_done(&b);
    return same;
}

/* Adds k to the key chain; it signs what follows. */
static int push_key(struct dems_ledger_verifier *v, const struct dems_note_verifier *k)
{
    if (v->nkeys == MAX_KEYS)
        return DEMS_ETOOBIG;
    if ((v->nkeys & (v->nkeys - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
        size_t cap = v->nkeys == 0 ? 1 : 2 * (size_t)v->nkeys;
        struct dems_note_verifier *n = realloc(v->keys, cap * sizeof(*n));
        if (n == NULL)
            return DEMS_ENOMEM;
        v->keys = n;
    }
    v->keys[v->nkeys++] = *k;
    v->key = *k;
    if (v->pinned && memcmp(k, &v->pin, sizeof(*k)) == 0)
        v->pin_seen = true;
    return 0;
}

static void on_header(struct dems_ledger_verifier *v, const char *line, size_t len)
{
    json_t *j = NULL;
    json_int_t ver;
    const char *origin = NULL, *vkey = NULL;
    char canon_vkey[DEMS_NOTE_VKEY_MAX];

    if (dems_jcs_parse(line, len, &j) < 0 || !is_canonical(j, line, len) ||
        json_unpack(j, "{s:I,s:s,s:s!}", "dems_ledger_export", &ver, "origin", &origin, "vkey",
                    &vkey) < 0 ||
        ver != EXPORT_VERSION) {
        fault(v, DEMS_LEDGER_FAULT_HEADER, NULL, "line 1 is not a version %d export header",
              EXPORT_VERSION);
    } else if (strlen(origin) == 0 || strlen(origin) > DEMS_NOTE_MAX_NAME) {
        fault(v, DEMS_LEDGER_FAULT_HEADER, NULL, "the header's origin is empty or too long");
    } else if (dems_note_verifier_parse(vkey, strlen(vkey), &v->key) < 0 ||
               (dems_note_verifier_format(&v->key, canon_vkey), strcmp(canon_vkey, vkey) != 0)) {
        fault(v, DEMS_LEDGER_FAULT_HEADER, NULL, "the header's verifier key is malformed");
    } else if (push_key(v, &v->key) < 0) {
        fault(v, DEMS_LEDGER_FAULT_FORMAT, NULL, "out of memory");
    } else {
        memcpy(v->origin, origin, strlen(origin) + 1);
    }
    json_decref(j);
    v->stage = STAGE_ENTRIES;
}

struct entry_line {
    const char *b64;
    size_t b64_len;
    const char *leaf_hex;
    const char *sig_b64;
    uint64_t seq;
};

static bool eat(const char **p, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

#define EAT(p, end, lit) eat(p, end, lit, sizeof(lit) - 1)

/* {"entry":"<b64>","leaf":"<64 hex>","seq":<n>,"sig":"<88 b64>"} and nothing else. */
static bool parse_entry_line(const char *line, size_t len, struct entry_line *e)
{
    const char *p = line, *end = line + len;

    if (!EAT(&p, end, "{\"entry\":\""))
        return false;
    e->b64 = p;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (q == NULL)
        return false;
    e->b64_len = (size_t)(q - p);
    p = q;
    if (!EAT(&p, end, "\",\"leaf\":\"") || end - p < 64)
        return false;
    e->leaf_hex = p;
    p += 64;
    if (!EAT(&p, end, "\",\"seq\":"))
        return false;
    size_t nd = 0;
    while (p + nd < end && p[nd] >= '0' && p[nd] <= '9')
        nd++;
    if (nd == 0 || (nd > 1 && p[0] == '0') ||
        dems_parse_u64(p, nd, (uint64_t)DEMS_JCS_MAX_INT, &e->seq) < 0)
        return false;
    p += nd;
    if (!EAT(&p, end, ",\"sig\":\"") || end - p < 88)
        return false;
    e->sig_b64 = p;
    p += 88;
    return EAT(&p, end, "\"}") && p == end;
}

/*
 * Sequence rules. Returns true when e is the next entry. An entry ahead of
 * the expected one opens a "pending" anomaly: later lines are then read
 * only to see whether the missing entry turns up (a reorder) or not (a gap,
 * decided at the end).
 */
static bool sequence_ok(struct dems_ledger_verifier *v, const struct entry_line *e)
{
    uint64_t seq = v->next_seq;

    if (v->pending) {
        if (e->seq == v->missing) {
            uint64_t s = v->missing, at = v->line;
            v->pending = false;
            v->line = v->found_line;
            fault(v, DEMS_LEDGER_FAULT_REORDER, &s,
                  "entry %llu is out of order: line %llu holds entry %llu where entry %llu "
                  "belongs, and entry %llu comes later, at line %llu",
                  (unsigned long long)s, (unsigned long long)v->found_line,
                  (unsigned long long)v->found, (unsigned long long)s, (unsigned long long)s,
                  (unsigned long long)at);
        }
        return false;
    }
    if (v->faulted)
        return false;
    if (e->seq < seq) {
        fault(v, DEMS_LEDGER_FAULT_DUPLICATE, &e->seq,
              "entry %llu appears again at line %llu (expected entry %llu there)",
              (unsigned long long)e->seq, (unsigned long long)v->line, (unsigned long long)seq);
        return false;
    }
    if (e->seq > seq) {
        v->pending = true;
        v->missing = seq;
        v->found = e->seq;
        v->found_line = v->line;
        return false;
    }
    return true;
}

/*
 * Decodes entry seq's fields and checks its bytes (canonical, carrying seq)
 * and its leaf hash. Returns true with the leaf hash and signature.
 */
static bool entry_ok(struct dems_ledger_verifier *v, uint64_t seq, const struct entry_line *e,
                     uint8_t leaf[static 32], uint8_t sig[static 64],
                     struct dems_note_verifier **ret_rotated)
{
    uint8_t want[32];
    size_t n = 0, slen = 0;
    uint64_t inner = 0;
    static const char rot[] = "\"type\":\"KEY_ROTATED\"";

    if (ledger_b64_decode(e->b64, e->b64_len, v->bytes, sizeof(v->bytes), &n) < 0 || n == 0 ||
        ledger_hex_decode_lower(e->leaf_hex, want, 32) < 0 ||
        ledger_b64_decode(e->sig_b64, 88, sig, 64, &slen) < 0 || slen != 64) {
        fault(v, DEMS_LEDGER_FAULT_FORMAT, &seq, "entry %llu (line %llu) has a malformed field",
              (unsigned long long)seq, (unsigned long long)v->line);
        return false;
    }
    /*
     * The fast check decides nearly every entry; the full decoder settles
     * the rest, and reads key rotations (whose bytes must hold the type
     * string, so others skip the decoder).
     */
    bool maybe_rot = memmem(v->bytes, n, rot, sizeof(rot) - 1) != NULL;
    if (maybe_rot || !ledger_entry_fast_check(v->bytes, n, &inner)) {
        json_t *root = NULL;
        struct dems_ledger_entry ent;
        if (dems_ledger_entry_decode(v->bytes, n, &root, &ent) < 0) {
            fault(v, DEMS_LEDGER_FAULT_ENTRY, &seq,
                  "entry %llu (line %llu): its bytes are not a canonical custody entry",
                  (unsigned long long)seq, (unsigned long long)v->line);
            return false;
        }
        inner = ent.seq;
        bool bad_rot = false;
        if (ent.type == DEMS_LEDGER_KEY_ROTATED) {
            const char *nk = json_string_value(json_object_get(ent.payload, "vkey"));
            char canon[DEMS_NOTE_VKEY_MAX];
            *ret_rotated = malloc(sizeof(**ret_rotated));
            bad_rot = *ret_rotated == NULL || nk == NULL ||
                      dems_note_verifier_parse(nk, strlen(nk), *ret_rotated) < 0 ||
                      (dems_note_verifier_format(*ret_rotated, canon), strcmp(canon, nk) != 0) ||
                      strcmp((*ret_rotated)->name, v->key.name) != 0;
        }
        json_decref(root);
        if (bad_rot) {
            free(*ret_rotated);
            *ret_rotated = NULL;
            fault(v, DEMS_LEDGER_FAULT_ENTRY, &seq,
                  "entry %llu (line %llu): KEY_ROTATED without a valid payload \"vkey\" "
                  "named %s",
                  (unsigned long long)seq, (unsigned long long)v->line, v->key.name);
            return false;
        }
    }
    if (inner != seq) {
        free(*ret_rotated);
        *ret_rotated = NULL;
        fault(v, DEMS_LEDGER_FAULT_ENTRY, &seq,
              "entry %llu (line %llu): its bytes say it is entry %llu", (unsigned long long)seq,
              (unsigned long long)v->line, (unsigned long long)inner);
        return false;
    }
    dems_merkle_leaf_hash(v->bytes, n, leaf);
    if (memcmp(leaf, want, 32) != 0) {
        free(*ret_rotated);
        *ret_rotated = NULL;
        fault(v, DEMS_LEDGER_FAULT_HASH, &seq,
              "entry %llu (line %llu): leaf hash does not match the entry bytes",
              (unsigned long long)seq, (unsigned long long)v->line);
        return false;
    }
    return true;
}

static void on_entry(struct dems_ledger_verifier *v, const char *line, size_t len)
{
    struct entry_line e;
    uint8_t leaf[32], sig[64];
    uint64_t seq = v->next_seq;

    if (!parse_entry_line(line, len, &e)) {
        /* While an anomaly is pending, only sequence numbers matter. */
        if (!v->pending)
            fault(v, DEMS_LEDGER_FAULT_FORMAT, NULL, "line %llu is not an export entry line",
                  (unsigned long long)v->line);
        return;
    }
    struct dems_note_verifier *rotated = NULL;
    if (!sequence_ok(v, &e) || !entry_ok(v, seq, &e, leaf, sig, &rotated))
        return;
    if (rotated != NULL) {
        /*
         * A key rotation is signed by the key it retires, and the new key
         * is trusted only through that signature: it is checked now, even
         * when entry signatures are skipped (--fast).
         */
        int r = dems_ledger_entry_verify(v->key.pk, leaf, sig);
        if (r < 0) {
            struct sig_job j = {.seq = seq, .line = v->line, .key = v->nkeys - 1};
            fault_at_sig(v, &j);
        } else if ((r = push_key(v, rotated)) < 0) {
            fault(v, DEMS_LEDGER_FAULT_FORMAT, &seq, "entry %llu: more than %d key rotations",
                  (unsigned long long)seq, MAX_KEYS - 1);
        }
        free(rotated);
        if (r < 0)
            return;
        v->rep.rotations++;
    } else if (!v->skip_sigs) {
        struct sig_job *j = &v->jobs[v->njobs++];
        memcpy(j->leaf, leaf, 32);
        memcpy(j->sig, sig, 64);
        j->seq = seq;
        j->line = v->line;
        j->key = v->nkeys - 1;
        if (v->njobs == SIG_BATCH)
            flush_sigs(v);
    }
    if (dems_merkle_frontier_append(&v->tree, leaf, NULL) < 0) {
        fault(v, DEMS_LEDGER_FAULT_FORMAT, &seq, "too many entries");
        return;
    }
    v->next_seq++;
}

static void on_checkpoint(struct dems_ledger_verifier *v, const char *line, size_t len)
{
    json_t *j = NULL;
    const char *note = NULL;
    size_t nlen = 0;

    v->stage = STAGE_DONE;
    if (dems_jcs_parse(line, len, &j) < 0 || !is_canonical(j, line, len) ||
        json_unpack(j, "{s:s%!}", "checkpoint", &note, &nlen) < 0 ||
        (v->note = malloc(nlen + 1)) == NULL) {
        fault(v, DEMS_LEDGER_FAULT_CHECKPOINT, NULL, "line %llu is not a checkpoint line",
              (unsigned long long)v->line);
    } else {
        memcpy(v->note, note, nlen);
        v->note[nlen] = '\0';
        v->note_len = nlen;
    }
    json_decref(j);
}

int dems_ledger_verifier_line(struct dems_ledger_verifier *v, const char *line, size_t len)
{
    v->line++;
    if (v->faulted && !v->pending)
        return 0;
    switch (v->stage) {
    case STAGE_HEADER:
        on_header(v, line, len);
        break;
    case STAGE_ENTRIES:
        if (len >= 14 && memcmp(line, "{\"checkpoint\":", 14) == 0) {
            if (!v->faulted)
                on_checkpoint(v, line, len);
            v->stage = STAGE_DONE;
        } else {
            on_entry(v, line, len);
        }
        break;
    case STAGE_DONE:
        fault(v, DEMS_LEDGER_FAULT_FORMAT, NULL, "line %llu follows the checkpoint",
              (unsigned long long)v->line);
        break;
    }
    return 0;
}

/* Ends a pending anomaly as a gap: the missing entry never turned up. */
static void gap_fault(struct dems_ledger_verifier *v)
{
    uint64_t s = v->missing, line = v->line;
    v->pending = false;
    v->line = v->found_line;
    fault(v, DEMS_LEDGER_FAULT_GAP, &s,
          "entry %llu is missing: line %llu holds entry %llu where entry %llu belongs",
          (unsigned long long)s, (unsigned long long)v->found_line, (unsigned long long)v->found,
          (unsigned long long)s);
    v->line = line;
}

static void finish_checks(struct dems_ledger_verifier *v)
{
    struct dems_checkpoint c;
    uint8_t root[32];

    flush_sigs(v);
    if (v->pending) {
        gap_fault(v);
        return;
    }
    if (v->faulted)
        return;
    if (v->stage == STAGE_HEADER) {
        fault(v, DEMS_LEDGER_FAULT_HEADER, NULL, "the export is empty");
        return;
    }
    if (v->note == NULL) {
        fault(v, DEMS_LEDGER_FAULT_CHECKPOINT, NULL, "the export ends without a checkpoint");
        return;
    }
    if (v->pinned && !v->pin_seen) {
        fault(v, DEMS_LEDGER_FAULT_HEADER, NULL,
              "the export is signed by key %s+%02x%02x%02x%02x%s, not the expected "
              "%s+%02x%02x%02x%02x",
              v->keys[0].name, v->keys[0].keyhash[0], v->keys[0].keyhash[1], v->keys[0].keyhash[2],
              v->keys[0].keyhash[3], v->nkeys > 1 ? " and the keys it rotated to" : "", v->pin.name,
              v->pin.keyhash[0], v->pin.keyhash[1], v->pin.keyhash[2], v->pin.keyhash[3]);
        return;
    }
    int r = dems_checkpoint_open(v->note, v->note_len, &v->key, v->origin, &c);
    if (r < 0) {
        fault(v, DEMS_LEDGER_FAULT_CHECKPOINT, NULL,
              r == DEMS_ECRYPTO
                  ? "the checkpoint's signature by %s+%02x%02x%02x%02x (the key in force) does "
                    "not verify"
                  : "the checkpoint is malformed or names another origin (key %s+%02x%02x%02x%02x)",
              v->key.name, v->key.keyhash[0], v->key.keyhash[1], v->key.keyhash[2],
              v->key.keyhash[3]);
        return;
    }
    if (c.size != v->next_seq) {
        uint64_t s = c.size > v->next_seq ? v->next_seq : c.size;
        fault(v, DEMS_LEDGER_FAULT_SIZE, &s,
              "the checkpoint covers %llu entries but the export holds %llu",
              (unsigned long long)c.size, (unsigned long long)v->next_seq);
        return;
    }
    dems_merkle_frontier_root(&v->tree, root);
    if (memcmp(root, c.root, 32) != 0) {
        fault(v, DEMS_LEDGER_FAULT_ROOT, NULL,
              "the root of the %llu entries differs from the signed checkpoint's root",
              (unsigned long long)v->next_seq);
        return;
    }
    size_t held = 0;
    const struct dems_witness_policy *wp = v->witnesses;
    if (wp != NULL && dems_witness_policy_check(wp, v->note, v->note_len, &held) < 0) {
        fault(v, DEMS_LEDGER_FAULT_WITNESS, NULL,
              "the checkpoint carries valid cosignatures from %zu of the policy's witnesses; "
              "the quorum is %zu",
              held, wp->quorum);
        return;
    }
    v->rep.checkpoint = c;
}

int dems_ledger_verifier_finish(struct dems_ledger_verifier *v,
                                struct dems_ledger_report *ret_report)
{
    finish_checks(v);
    v->rep.entries = v->next_seq;
    if (!v->faulted) {
        v->rep.fault = DEMS_LEDGER_FAULT_NONE;
        v->rep.line = v->line;
        snprintf(
            v->rep.detail, sizeof(v->rep.detail),
            "%llu entries verified; root matches the checkpoint signed by %s+%02x%02x%02x%02x%s",
            (unsigned long long)v->next_seq, v->key.name, v->key.keyhash[0], v->key.keyhash[1],
            v->key.keyhash[2], v->key.keyhash[3],
            v->rep.rotations > 0 ? " (after key rotation)" : "");
    }
    *ret_report = v->rep;
    return v->faulted ? DEMS_ECRYPTO : 0;
}

/*
 * Lines from in, each at most DEMS_LEDGER_MAX_LINE bytes: memory stays
 * bounded whatever the file holds (getline would swallow a 10 GB "line").
 * NUL bytes stay in the line, for the parsers to reject.
 */
struct line_reader {
    FILE *in;
    char block[1 << 16];
    size_t pos, end;
    bool eof;
    char *line; /* DEMS_LEDGER_MAX_LINE bytes */
};

/* 1 and a line (without its newline), 0 at the end, DEMS_ETOOBIG or DEMS_EIO. */
static int next_line(struct line_reader *lr, size_t *ret_len)
{
    size_t len = 0;

    for (;;) {
        if (lr->pos == lr->end) {
            if (lr->eof)
                break;
            lr->end = fread(lr->block, 1, sizeof(lr->block), lr->in);
            lr->pos = 0;
            if (lr->end < sizeof(lr->block)) {
                if (ferror(lr->in))
                    return DEMS_EIO;
                lr->eof = true;
            }
            if (lr->end == 0)
                break;
        }
        const char *p = lr->block + lr->pos;
        size_t avail = lr->end - lr->pos;
        const char *nl = memchr(p, '\n', avail);
        size_t take = nl != NULL ? (size_t)(nl - p) : avail;
        if (take > DEMS_LEDGER_MAX_LINE - len)
            return DEMS_ETOOBIG;
        memcpy(lr->line + len, p, take);
        len += take;
        lr->pos += take + (nl != NULL ? 1 : 0);
        if (nl != NULL) {
            *ret_len = len;
            return 1;
        }
    }
    if (len == 0)
        return 0;
    *ret_len = len; /* a last line without a newline */
    return 1;
}

int dems_ledger_verify_file(FILE *in, const struct dems_ledger_verify_opts *opts,
                            struct dems_ledger_report *ret_report)
{
    struct dems_ledger_verifier *v = dems_ledger_verifier_new(opts);
    struct line_reader *lr = calloc(1, sizeof(*lr));
    size_t len = 0;
    int r = 0, got;

    if (v == NULL || lr == NULL || (lr->line = malloc(DEMS_LEDGER_MAX_LINE)) == NULL) {
        if (lr != NULL)
            free(lr->line);
        free(lr);
        dems_ledger_verifier_free(v);
        return DEMS_ENOMEM;
    }
    lr->in = in;
    while ((got = next_line(lr, &len)) == 1)
        if ((r = dems_ledger_verifier_line(v, lr->line, len)) < 0)
            break;
    if (got == DEMS_ETOOBIG) {
        v->line++;
        fault(v, DEMS_LEDGER_FAULT_FORMAT, NULL, "line %llu is longer than %d bytes",
              (unsigned long long)v->line, DEMS_LEDGER_MAX_LINE);
        r = DEMS_ETOOBIG;
    } else if (got < 0) {
        r = got;
    }
    free(lr->line);
    free(lr);
    if (r == 0 || r == DEMS_ETOOBIG) {
        int f = dems_ledger_verifier_finish(v, ret_report);
        r = r == 0 ? f : r;
    }
    dems_ledger_verifier_free(v);
    return r;
}

int dems_ledger_verify_export(FILE *in, const struct dems_ledger_verify_opts *opts,
                              struct dems_ledger_report *ret_report)
{
    off_t start = ftello(in);
    int r = dems_ledger_verify_file(in, opts, ret_report);
    if (r != DEMS_ECRYPTO || !opts->skip_entry_sigs ||
        ret_report->fault != DEMS_LEDGER_FAULT_ROOT || start < 0 ||
        fseeko(in, start, SEEK_SET) != 0)
        return r;
    clearerr(in);
    struct dems_ledger_verify_opts full = *opts;
    full.skip_entry_sigs = false;
    struct dems_ledger_report *again = malloc(sizeof(*again));
    if (again == NULL)
        return r; /* the first verdict stands, without the entry's name */
    int r2 = dems_ledger_verify_file(in, &full, again);
    if (r2 == DEMS_ECRYPTO)
        *ret_report = *again;
    free(again);
    return r2 == DEMS_ECRYPTO || r2 == 0 ? r : r2;
}
