/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Verifying a court bundle (docs/bundle.md, "Verification") in one pass
 * over the ZIP: the metadata members come first in a fixed order
 * (manifest, checkpoint, key chain, custody), then proofs, the report and
 * the files in any order. Files are hashed in 64 KiB blocks as they are
 * read; what stays in memory is the manifest and 80 bytes or so per
 * custody entry. The first fault ends the run with a stable code and one
 * line saying what and where.
 *
 * ZIP CRC-32 checks are switched off: every byte that matters is covered
 * by a SHA-256 (files) or by canonical-form, signature and proof checks
 * (metadata), which name the fault better than a CRC error would.
 */
#include <archive.h>
#include <archive_entry.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/bundle.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"

#include "bundle_int.h"

#define MAX_KEYS 4096

struct vfile {
    const char *path; /* borrowed from the manifest */
    uint64_t size;
    uint8_t sha256[32];
    size_t exhibit;
    bool seen;
};

struct ventry {
    uint64_t seq;
    uint8_t leaf[32];
    bool proven;
    enum dems_ledger_type type;
    bool has_artefact, has_sha256, has_size;
    uint8_t artefact[32], sha256[32];
    uint64_t size;
};

struct ventries {
    struct ventry *v;
    size_t n, cap;
};

struct vctx {
    const struct dems_bundle_verify_opts *opts;
    struct dems_bundle_report *rep;
    FILE *out;
    struct archive *a;
    int stage; /* metadata members read so far, in order */
    json_t *manifest;
    struct vfile *files;
    size_t nfiles;
    char *note;
    size_t note_len;
    char origin[DEMS_NOTE_MAX_NAME + 1];
    struct dems_note_verifier keys[MAX_KEYS];
    uint64_t key_from[MAX_KEYS]; /* key i signs entries with seq > key_from[i] (i > 0) */
    size_t nkeys;
    bool pinned_seen;
    struct ventries kents, cents;
    uint8_t *buf;
};

static int bad(struct vctx *v, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct vctx *v, const char *code, const char *fmt, ...)
{
    va_list ap;
    snprintf(v->rep->code, sizeof v->rep->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(v->rep->detail, sizeof v->rep->detail, fmt, ap);
    va_end(ap);
    return DEMS_ECRYPTO;
}

/* ---- reading members ---- */

static int read_member(struct vctx *v, const char *name, size_t max, struct dems_buf *b)
{
    dems_buf_init(b, max);
    for (;;) {
        la_ssize_t n = archive_read_data(v->a, v->buf, BUNDLE_IO_CHUNK);
        if (n < 0)
            return bad(v, "format", "%s: unreadable (%s)", name, archive_error_string(v->a));
        if (n == 0)
            return 0;
        if (dems_buf_append(b, v->buf, (size_t)n) < 0)
            return bad(v, "format", "%s: larger than %zu bytes", name, max);
    }
}

/* ---- the manifest ---- */

static int hex32(const json_t *j, uint8_t out[static 32])
{
    const char *s = json_string_value(j);
    return s != NULL && strlen(s) == 64 && dems_hex_decode(s, 64, out, 32) == 0 ? 0 : DEMS_EINVAL;
}

static int add_file(struct vctx *v, const json_t *f, size_t x)
{
    const char *path = json_string_value(json_object_get(f, "path"));
    const json_t *size = json_object_get(f, "size");
    struct vfile *vf = &v->files[v->nfiles];

    if (path == NULL || !dems_bundle_name_safe(path) ||
        strncmp(path, BUNDLE_FILES, strlen(BUNDLE_FILES)) != 0 || !json_is_integer(size) ||
        json_integer_value(size) < 0 || hex32(json_object_get(f, "sha256"), vf->sha256) < 0)
        return bad(v, "manifest", "exhibit %zu: a file entry lacks a safe path, size or sha256",
                   x + 1);
    for (size_t i = 0; i < v->nfiles; i++)
        if (strcmp(v->files[i].path, path) == 0)
            return bad(v, "manifest", "%s is listed twice", path);
    vf->path = path;
    vf->size = (uint64_t)json_integer_value(size);
    vf->exhibit = x;
    v->nfiles++;
    return 0;
}

static int on_manifest(struct vctx *v, const struct dems_buf *b)
{
    json_error_t je;
    size_t nf = 0, i, j;
    const json_t *x, *f;

    v->manifest = json_loadb((const char *)b->data, b->len, JSON_REJECT_DUPLICATES, &je);
    const json_t *ex = json_object_get(v->manifest, "exhibits");
    if (v->manifest == NULL ||
        json_integer_value(json_object_get(v->manifest, "dems_bundle")) != DEMS_BUNDLE_FORMAT ||
        !json_is_array(ex) || json_array_size(ex) == 0 ||
        json_array_size(ex) > DEMS_BUNDLE_MAX_ITEMS)
        return bad(v, "manifest", "manifest.json is not a dems bundle manifest (format %d)",
                   DEMS_BUNDLE_FORMAT);
    json_array_foreach(ex, i, x)
    {
        uint8_t h[32];
        if (!json_is_string(json_object_get(x, "reference")) ||
            hex32(json_object_get(x, "sha256"), h) < 0 ||
            !json_is_integer(json_object_get(x, "ingested_seq")) ||
            !json_is_integer(json_object_get(x, "size")) ||
            !json_is_array(json_object_get(x, "files")) ||
            !json_is_array(json_object_get(x, "custody")))
            return bad(v, "manifest",
                       "exhibit %zu lacks reference, sha256, size, ingested_seq, "
                       "files or custody",
                       i + 1);
        nf += json_array_size(json_object_get(x, "files"));
    }
    const char *ref =
        json_string_value(json_object_get(json_object_get(v->manifest, "case"), "reference"));
    snprintf(v->rep->case_ref, sizeof v->rep->case_ref, "%s", ref != NULL ? ref : "");
    v->files = calloc(nf > 0 ? nf : 1, sizeof *v->files);
    if (v->files == NULL || nf > DEMS_BUNDLE_MAX_ITEMS)
        return DEMS_ENOMEM;
    json_array_foreach(ex, i, x)
    {
        json_array_foreach(json_object_get(x, "files"), j, f)
        {
            int r = add_file(v, f, i);
            if (r < 0)
                return r;
        }
    }
    v->rep->exhibits = json_array_size(ex);
    return 0;
}

/* ---- entry lines (the export's layout) ---- */

struct line {
    uint64_t seq;
    uint8_t bytes[DEMS_LEDGER_MAX_ENTRY];
    size_t len;
    uint8_t leaf[32];
    uint8_t sig[64];
};

/* Parses an export entry line and insists it is exactly the canonical line. */
static bool parse_line(const char *s, size_t n, struct line *l)
{
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
    const char *entry = json_string_value(json_object_get(j, "entry"));
    const char *sig = json_string_value(json_object_get(j, "sig"));
    const json_t *seq = json_object_get(j, "seq");
    size_t got = 0;
    bool ok = entry != NULL && sig != NULL && json_is_integer(seq) &&
              json_integer_value(seq) >= 0 && hex32(json_object_get(j, "leaf"), l->leaf) == 0 &&
              sodium_base642bin(l->bytes, sizeof l->bytes, entry, strlen(entry), NULL, &l->len,
                                NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
              sodium_base642bin(l->sig, 64, sig, strlen(sig), NULL, &got, NULL,
                                sodium_base64_VARIANT_ORIGINAL) == 0 &&
              got == 64;
    if (ok) {
        struct dems_buf again;
        l->seq = (uint64_t)json_integer_value(seq);
        dems_buf_init(&again, DEMS_LEDGER_MAX_LINE);
        ok = dems_ledger_export_entry(l->seq, l->bytes, l->len, l->leaf, l->sig, &again) == 0 &&
             again.len == n + 1 && memcmp(again.data, s, n) == 0;
        dems_buf_done(&again);
    }
    json_decref(j);
    return ok;
}

/* The key that signed entry seq: the newest whose rotation came before it. */
static const struct dems_note_verifier *key_for(const struct vctx *v, uint64_t seq)
{
    size_t i = v->nkeys - 1;
    while (i > 0 && v->key_from[i] >= seq)
        i--;
    return &v->keys[i];
}

static int push_entry(struct vctx *v, struct ventries *es, const struct line *l,
                      const struct dems_ledger_entry *e)
{
    if (es->n == es->cap) {
        size_t cap = es->cap > 0 ? es->cap * 2 : 64;
        struct ventry *nv = cap <= DEMS_BUNDLE_MAX_ITEMS ? realloc(es->v, cap * sizeof *nv) : NULL;
        if (nv == NULL)
            return cap > DEMS_BUNDLE_MAX_ITEMS
                       ? bad(v, "format", "more than %u entries", DEMS_BUNDLE_MAX_ITEMS)
                       : DEMS_ENOMEM;
        es->v = nv;
        es->cap = cap;
    }
    struct ventry *ve = &es->v[es->n++];
    *ve = (struct ventry){.seq = l->seq,
                          .type = e->type,
                          .has_artefact = e->has_artefact,
                          .has_sha256 = e->has_sha256,
                          .has_size = e->has_size,
                          .size = e->size};
    memcpy(ve->leaf, l->leaf, 32);
    memcpy(ve->artefact, e->artefact, 32);
    memcpy(ve->sha256, e->sha256, 32);
    return 0;
}

/*
 * Checks one entry line of member name (line number ln): layout, order,
 * leaf hash, canonical bytes, signature. *ret_root owns the decoded entry.
 */
static int check_line(struct vctx *v, const char *name, uint64_t ln, const char *s, size_t n,
                      const struct ventries *es, struct line *l, json_t **ret_root,
                      struct dems_ledger_entry *e)
{
    uint8_t leaf[32];
    if (!parse_line(s, n, l))
        return bad(v, "format", "%s line %" PRIu64 ": not an entry line in the export's layout",
                   name, ln);
    if (es->n > 0 && l->seq <= es->v[es->n - 1].seq)
        return bad(v, "custody_order",
                   "%s line %" PRIu64 ": entry %" PRIu64 " comes after entry %" PRIu64
                   " (lines must ascend by seq; a line was moved or repeated)",
                   name, ln, l->seq, es->v[es->n - 1].seq);
    dems_merkle_leaf_hash(l->bytes, l->len, leaf);
    if (memcmp(leaf, l->leaf, 32) != 0)
        return bad(v, "hash_mismatch",
                   "%s line %" PRIu64 ": entry %" PRIu64 "'s bytes do not hash to its leaf hash",
                   name, ln, l->seq);
    if (dems_ledger_entry_decode(l->bytes, l->len, ret_root, e) < 0 || e->seq != l->seq)
        return bad(v, "bad_entry",
                   "%s line %" PRIu64 ": entry %" PRIu64 " is not a canonical entry with that seq",
                   name, ln, l->seq);
    if (dems_ledger_entry_verify(key_for(v, l->seq)->pk, l->leaf, l->sig) < 0)
        return bad(v, "bad_signature",
                   "%s line %" PRIu64 ": entry %" PRIu64
                   "'s signature does not verify with the key in force",
                   name, ln, l->seq);
    return 0;
}

/* Splits b into lines and calls fn on each (1-based number); the last must end in \n. */
static int each_line(struct vctx *v, const char *name, const struct dems_buf *b,
                     int (*fn)(struct vctx *, uint64_t, const char *, size_t))
{
    size_t pos = 0;
    uint64_t ln = 0;
    while (pos < b->len) {
        const char *s = (const char *)b->data + pos;
        const char *nl = memchr(s, '\n', b->len - pos);
        if (nl == NULL)
            return bad(v, "format", "%s: the last line has no newline", name);
        int r = fn(v, ++ln, s, (size_t)(nl - s));
        if (r < 0)
            return r;
        pos += (size_t)(nl - s) + 1;
    }
    return 0;
}

/* ---- keys.jsonl ---- */

static int pin_check(struct vctx *v, const struct dems_note_verifier *k)
{
    char a[DEMS_NOTE_VKEY_MAX], b[DEMS_NOTE_VKEY_MAX];
    struct dems_note_verifier pin;
    if (v->opts == NULL || v->opts->vkey == NULL)
        return 0;
    if (dems_note_verifier_parse(v->opts->vkey, strlen(v->opts->vkey), &pin) < 0)
        return bad(v, "untrusted_key", "--key is not a verifier key");
    dems_note_verifier_format(&pin, a);
    dems_note_verifier_format(k, b);
    if (strcmp(a, b) == 0)
        v->pinned_seen = true;
    return 0;
}

static int on_key_header(struct vctx *v, const char *s, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
    const char *origin = json_string_value(json_object_get(j, "origin"));
    const char *vkey = json_string_value(json_object_get(j, "vkey"));
    struct dems_buf again;
    int r = 0;

    dems_buf_init(&again, DEMS_LEDGER_MAX_LINE);
    if (origin == NULL || vkey == NULL || strlen(origin) > DEMS_NOTE_MAX_NAME ||
        dems_ledger_export_header(origin, vkey, &again) < 0 || again.len != n + 1 ||
        memcmp(again.data, s, n) != 0 ||
        dems_note_verifier_parse(vkey, strlen(vkey), &v->keys[0]) < 0)
        r = bad(v, "format", "keys.jsonl line 1: not the export's header line");
    else {
        snprintf(v->origin, sizeof v->origin, "%s", origin);
        v->nkeys = 1;
        r = pin_check(v, &v->keys[0]);
    }
    dems_buf_done(&again);
    json_decref(j);
    return r;
}

static int on_key_line(struct vctx *v, uint64_t ln, const char *s, size_t n)
{
    if (ln == 1)
        return on_key_header(v, s, n);
    struct line *l = malloc(sizeof *l);
    json_t *root = NULL;
    struct dems_ledger_entry e;
    if (l == NULL)
        return DEMS_ENOMEM;
    int r = check_line(v, BUNDLE_KEYS, ln, s, n, &v->kents, l, &root, &e);
    const char *vkey = r == 0 ? json_string_value(json_object_get(e.payload, "vkey")) : NULL;
    if (r == 0 && (e.type != DEMS_LEDGER_KEY_ROTATED || vkey == NULL || v->nkeys >= MAX_KEYS ||
                   dems_note_verifier_parse(vkey, strlen(vkey), &v->keys[v->nkeys]) < 0 ||
                   strcmp(v->keys[v->nkeys].name, v->keys[0].name) != 0))
        r = bad(v, "bad_entry",
                "keys.jsonl line %" PRIu64 ": entry %" PRIu64
                " is not a KEY_ROTATED entry naming a key of this log",
                ln, l->seq);
    if (r == 0) {
        v->key_from[v->nkeys++] = l->seq;
        r = pin_check(v, &v->keys[v->nkeys - 1]);
    }
    if (r == 0)
        r = push_entry(v, &v->kents, l, &e);
    json_decref(root);
    free(l);
    return r;
}

static int on_keys(struct vctx *v, const struct dems_buf *b)
{
    int r = each_line(v, BUNDLE_KEYS, b, on_key_line);
    if (r < 0)
        return r;
    if (v->nkeys == 0)
        return bad(v, "format", "keys.jsonl is empty");
    if (v->opts != NULL && v->opts->vkey != NULL && !v->pinned_seen)
        return bad(v, "untrusted_key",
                   "the pinned key is not in the bundle's key chain (another log's bundle, or "
                   "a forged key chain)");
    v->rep->keys = v->nkeys;
    /* The checkpoint is signed by the newest key and names the log's origin. */
    struct dems_checkpoint *cp = &v->rep->checkpoint;
    if (dems_checkpoint_open(v->note, v->note_len, &v->keys[v->nkeys - 1], v->origin, cp) < 0)
        return bad(v, "bad_checkpoint",
                   "checkpoint.txt is not a checkpoint of %s signed by its "
                   "current key",
                   v->origin);
    if (v->nkeys > 1 && v->key_from[v->nkeys - 1] >= cp->size)
        return bad(v, "bad_checkpoint", "checkpoint.txt is older than the key chain");
    size_t held = 0;
    const struct dems_witness_policy *wp = v->opts != NULL ? v->opts->witnesses : NULL;
    if (wp != NULL && dems_witness_policy_check(wp, v->note, v->note_len, &held) < 0)
        return bad(v, "witness_quorum",
                   "checkpoint.txt carries valid cosignatures from %zu of the policy's "
                   "witnesses; the quorum is %zu",
                   held, wp->quorum);
    const json_t *mc = json_object_get(v->manifest, "checkpoint");
    uint8_t root[32];
    if (json_integer_value(json_object_get(mc, "size")) != (json_int_t)cp->size ||
        hex32(json_object_get(mc, "root"), root) < 0 || memcmp(root, cp->root, 32) != 0)
        return bad(v, "manifest_mismatch",
                   "manifest.json names another checkpoint than "
                   "checkpoint.txt");
    return 0;
}

/* ---- custody.jsonl ---- */

static int on_custody_line(struct vctx *v, uint64_t ln, const char *s, size_t n)
{
    struct line *l = malloc(sizeof *l);
    json_t *root = NULL;
    struct dems_ledger_entry e;
    if (l == NULL)
        return DEMS_ENOMEM;
    int r = check_line(v, BUNDLE_CUSTODY, ln, s, n, &v->cents, l, &root, &e);
    if (r == 0 && l->seq >= v->rep->checkpoint.size)
        r = bad(v, "bad_entry",
                "custody.jsonl line %" PRIu64 ": entry %" PRIu64 " is past the checkpoint", ln,
                l->seq);
    if (r == 0)
        r = push_entry(v, &v->cents, l, &e);
    json_decref(root);
    free(l);
    return r;
}

/* ---- proofs ---- */

static struct ventry *find(struct ventries *es, uint64_t seq)
{
    size_t lo = 0, hi = es->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (es->v[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < es->n && es->v[lo].seq == seq ? &es->v[lo] : NULL;
}

static int on_proof(struct vctx *v, const char *name, const struct dems_buf *b)
{
    const char *num = name + strlen(BUNDLE_PROOFS);
    const char *dot = strchr(num, '.');
    uint64_t seq, index;
    size_t off;
    struct dems_merkle_proof p;

    if (dot == NULL || strcmp(dot, ".tlog-proof") != 0 || dot == num ||
        (num[0] == '0' && dot - num > 1) ||
        dems_parse_u64(num, (size_t)(dot - num), UINT64_MAX, &seq) < 0)
        return bad(v, "unexpected_member", "%s: not a proofs/<seq>.tlog-proof name", name);
    if (dems_bundle_proof_parse((const char *)b->data, b->len, &index, &p, &off) < 0 ||
        index != seq)
        return bad(v, "bad_proof", "%s: not a tlog-proof@v1 for entry %" PRIu64, name, seq);
    if (b->len - off != v->note_len || memcmp(b->data + off, v->note, v->note_len) != 0)
        return bad(v, "bad_proof", "%s: its checkpoint is not the bundle's checkpoint.txt", name);
    struct ventry *c = find(&v->cents, seq), *k = find(&v->kents, seq);
    if (c == NULL && k == NULL)
        return bad(v, "missing_entry",
                   "entry %" PRIu64 " has a proof (%s) but no line in "
                   "custody.jsonl or keys.jsonl (a line was removed)",
                   seq, name);
    struct ventry *e = c != NULL ? c : k;
    if (e->proven)
        return bad(v, "format", "%s: a second proof of entry %" PRIu64, name, seq);
    if (dems_merkle_verify_inclusion(e->leaf, seq, v->rep->checkpoint.size, &p,
                                     v->rep->checkpoint.root) < 0)
        return bad(v, "bad_proof",
                   "%s: entry %" PRIu64 " is not included in the checkpoint's "
                   "tree (the proof or the entry was changed)",
                   name, seq);
    if (c != NULL)
        c->proven = true;
    if (k != NULL)
        k->proven = true;
    v->rep->proofs++;
    return 0;
}

/* ---- files ---- */

static int on_file(struct vctx *v, const char *name)
{
    struct vfile *f = NULL;
    struct dems_sha256 h;
    uint64_t n = 0;
    uint8_t got[32];

    for (size_t i = 0; i < v->nfiles && f == NULL; i++)
        if (strcmp(v->files[i].path, name) == 0)
            f = &v->files[i];
    if (f == NULL)
        return bad(v, "unexpected_member", "%s is not in the manifest", name);
    if (f->seen)
        return bad(v, "format", "%s appears twice", name);
    f->seen = true;
    if (dems_sha256_init(&h) < 0)
        return DEMS_ENOMEM;
    for (;;) {
        la_ssize_t k = archive_read_data(v->a, v->buf, BUNDLE_IO_CHUNK);
        if (k < 0) {
            dems_sha256_done(&h);
            return bad(v, "file_mismatch", "%s: unreadable (%s)", name, archive_error_string(v->a));
        }
        if (k == 0)
            break;
        dems_sha256_update(&h, v->buf, (size_t)k);
        n += (uint64_t)k;
    }
    int r = dems_sha256_final(&h, got);
    dems_sha256_done(&h);
    if (r < 0)
        return DEMS_ENOMEM;
    if (n != f->size || memcmp(got, f->sha256, 32) != 0)
        return bad(v, "file_mismatch", "%s: %s differs from the manifest's", name,
                   n != f->size ? "its size" : "its SHA-256");
    v->rep->files++;
    v->rep->bytes += n;
    return 0;
}

/* ---- the members in order ---- */

static const char *const meta_order[] = {BUNDLE_MANIFEST, BUNDLE_CHECKPOINT, BUNDLE_KEYS,
                                         BUNDLE_CUSTODY};

static int on_meta(struct vctx *v, int which, const struct dems_buf *b)
{
    switch (which) {
    case 0:
        return on_manifest(v, b);
    case 1:
        v->note = malloc(b->len + 1);
        if (v->note == NULL)
            return DEMS_ENOMEM;
        memcpy(v->note, b->data, b->len);
        v->note_len = b->len;
        return 0;
    case 2:
        return on_keys(v, b);
    default:
        return each_line(v, BUNDLE_CUSTODY, b, on_custody_line);
    }
}

static int on_member(struct vctx *v, const char *name)
{
    struct dems_buf b;
    int r;

    if (!dems_bundle_name_safe(name))
        return bad(v, "unsafe_name",
                   "member '%.200s' has an unsafe name (absolute, \"..\", "
                   "or odd characters)",
                   name);
    if (v->stage < 4) {
        if (strcmp(name, meta_order[v->stage]) != 0)
            return bad(v, "format", "member %.200s where %s belongs", name, meta_order[v->stage]);
        size_t max = v->stage == 1 ? DEMS_NOTE_MAX_BYTES : DEMS_BUNDLE_MAX_META;
        r = read_member(v, name, max, &b);
        if (r == 0)
            r = on_meta(v, v->stage++, &b);
        dems_buf_done(&b);
        return r;
    }
    if (strncmp(name, BUNDLE_PROOFS, strlen(BUNDLE_PROOFS)) == 0) {
        r = read_member(v, name, DEMS_BUNDLE_MAX_PROOF, &b);
        if (r == 0)
            r = on_proof(v, name, &b);
        dems_buf_done(&b);
        return r;
    }
    if (strcmp(name, BUNDLE_HTML) == 0) {
        r = read_member(v, name, DEMS_BUNDLE_MAX_META, &b);
        dems_buf_done(&b);
        return r;
    }
    return on_file(v, name);
}

/* ---- the end: everything listed was there, every exhibit is ingested ---- */

static int check_exhibit(struct vctx *v, size_t i, const json_t *x)
{
    const char *ref = json_string_value(json_object_get(x, "reference"));
    uint8_t sha[32];
    size_t j;
    const json_t *s;

    hex32(json_object_get(x, "sha256"), sha);
    json_array_foreach(json_object_get(x, "custody"), j, s)
    {
        if (!json_is_integer(s) || json_integer_value(s) < 0 ||
            find(&v->cents, (uint64_t)json_integer_value(s)) == NULL)
            return bad(v, "missing_entry",
                       "exhibit %s: custody entry %" JSON_INTEGER_FORMAT
                       " is not in custody.jsonl (a line was removed)",
                       ref, json_integer_value(s));
    }
    json_int_t seq = json_integer_value(json_object_get(x, "ingested_seq"));
    json_int_t size = json_integer_value(json_object_get(x, "size"));
    const struct ventry *e = seq >= 0 ? find(&v->cents, (uint64_t)seq) : NULL;
    if (e == NULL || e->type != DEMS_LEDGER_INGESTED || !e->has_artefact ||
        memcmp(e->artefact, sha, 32) != 0 || (e->has_sha256 && memcmp(e->sha256, sha, 32) != 0) ||
        (e->has_size && e->size != (uint64_t)size))
        return bad(v, "not_ingested",
                   "exhibit %s: entry %" JSON_INTEGER_FORMAT " is not the "
                   "INGESTED entry of its SHA-256 and size",
                   ref, seq);
    for (size_t k = 0; k < v->nfiles; k++)
        if (v->files[k].exhibit == i && memcmp(v->files[k].sha256, sha, 32) == 0 &&
            v->files[k].size == (uint64_t)size) {
            if (v->out != NULL)
                fprintf(v->out,
                        "  exhibit %s: %s, %" JSON_INTEGER_FORMAT " bytes, SHA-256 "
                        "matches, ingested at entry %" JSON_INTEGER_FORMAT ", %zu custody "
                        "entries proven\n",
                        ref, v->files[k].path, size, seq,
                        json_array_size(json_object_get(x, "custody")));
            return 0;
        }
    return bad(v, "manifest_mismatch", "exhibit %s: no file with its SHA-256 and size", ref);
}

static int finish(struct vctx *v)
{
    size_t i;
    const json_t *x;

    if (v->stage < 4)
        return bad(v, "format", "%s is missing", meta_order[v->stage]);
    for (i = 0; i < v->nfiles; i++)
        if (!v->files[i].seen)
            return bad(v, "missing_file", "%s is in the manifest but not in the bundle",
                       v->files[i].path);
    for (i = 0; i < v->cents.n + v->kents.n; i++) {
        const struct ventry *e = i < v->cents.n ? &v->cents.v[i] : &v->kents.v[i - v->cents.n];
        if (!e->proven)
            return bad(v, "missing_proof", "entry %" PRIu64 " has no proofs/%" PRIu64 ".tlog-proof",
                       e->seq, e->seq);
    }
    v->rep->entries = v->cents.n;
    json_array_foreach(json_object_get(v->manifest, "exhibits"), i, x)
    {
        int r = check_exhibit(v, i, x);
        if (r < 0)
            return r;
    }
    return 0;
}

static int run(struct vctx *v, const char *path)
{
    struct archive_entry *ae;
    v->a = archive_read_new();
    v->buf = malloc(BUNDLE_IO_CHUNK);
    if (v->a == NULL || v->buf == NULL)
        return DEMS_ENOMEM;
    if (archive_read_support_format_zip_seekable(v->a) != ARCHIVE_OK ||
        archive_read_set_format_option(v->a, "zip", "ignorecrc32", "1") != ARCHIVE_OK)
        return DEMS_EINTERNAL;
    FILE *probe = fopen(path, "rb");
    if (probe == NULL)
        return DEMS_EIO;
    fclose(probe);
    if (archive_read_open_filename(v->a, path, BUNDLE_IO_CHUNK) != ARCHIVE_OK)
        return bad(v, "format", "not a readable ZIP (%s)", archive_error_string(v->a));
    for (;;) {
        int r = archive_read_next_header(v->a, &ae);
        if (r == ARCHIVE_EOF)
            return finish(v);
        if (r != ARCHIVE_OK)
            return bad(v, "format", "not a readable ZIP (%s)", archive_error_string(v->a));
        const char *name = archive_entry_pathname(ae);
        if (name == NULL || archive_entry_filetype(ae) != AE_IFREG)
            return bad(v, "unsafe_name", "member '%.200s' is not a regular file",
                       name != NULL ? name : "?");
        if ((r = on_member(v, name)) < 0)
            return r;
    }
}

int dems_bundle_verify_file(const char *path, const struct dems_bundle_verify_opts *opts, FILE *out,
                            struct dems_bundle_report *ret_report)
{
    struct vctx *v = calloc(1, sizeof *v);
    if (v == NULL)
        return DEMS_ENOMEM;
    *ret_report = (struct dems_bundle_report){0};
    v->opts = opts;
    v->rep = ret_report;
    v->out = out;
    int r = run(v, path);
    if (v->a != NULL)
        archive_read_free(v->a);
    json_decref(v->manifest);
    free(v->files);
    free(v->note);
    free(v->kents.v);
    free(v->cents.v);
    free(v->buf);
    free(v);
    return r;
}
