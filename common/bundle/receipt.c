/* SPDX-License-Identifier: Apache-2.0 */
/* Verifying a public submission's receipt (include/dems/receipt.h). */
#include "dems/receipt.h"

#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"

static int fail(struct dems_receipt_report *rep, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct dems_receipt_report *rep, const char *code, const char *fmt, ...)
{
    snprintf(rep->code, sizeof(rep->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->detail, sizeof(rep->detail), fmt, ap);
    va_end(ap);
    return DEMS_ECRYPTO;
}

/* Base64 (standard alphabet) of at most cap bytes into out; -1 when malformed. */
static long unb64(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (s == NULL || sodium_base642bin(out, cap, s, strlen(s), NULL, &n, NULL,
                                       sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    return (long)n;
}

/* One of the receipt's entries, checked against the checkpoint. */
struct checked {
    uint64_t index;
    json_t *root; /* the decoded entry (owned) */
    struct dems_ledger_entry e;
};

static int check_entry(const json_t *o, const struct dems_checkpoint *cp, struct checked *out,
                       struct dems_receipt_report *rep)
{
    const json_t *idx = json_object_get(o, "index"), *proof = json_object_get(o, "proof");
    const char *b = json_string_value(json_object_get(o, "entry"));
    if (!json_is_integer(idx) || json_integer_value(idx) < 0 || !json_is_array(proof) ||
        b == NULL || json_array_size(proof) > DEMS_MERKLE_MAX_PROOF)
        return fail(rep, "malformed", "an entry lacks its index, entry bytes or proof");
    out->index = (uint64_t)json_integer_value(idx);
    uint8_t *bytes = malloc(DEMS_LEDGER_MAX_ENTRY);
    struct dems_merkle_proof *p = malloc(sizeof(*p));
    int r = bytes == NULL || p == NULL ? DEMS_ENOMEM : 0;
    long n = r == 0 ? unb64(b, bytes, DEMS_LEDGER_MAX_ENTRY) : -1;
    if (r == 0 && n <= 0)
        r = fail(rep, "malformed", "entry %llu: its bytes are not base64 of an entry",
                 (unsigned long long)out->index);
    if (r == 0) {
        p->len = json_array_size(proof);
        for (size_t i = 0; r == 0 && i < p->len; i++) {
            if (unb64(json_string_value(json_array_get(proof, i)), p->hash[i], 32) != 32)
                r = fail(rep, "malformed", "entry %llu: proof hash %zu is not 32 bytes of base64",
                         (unsigned long long)out->index, i);
        }
    }
    uint8_t leaf[32];
    if (r == 0) {
        dems_merkle_leaf_hash(bytes, (size_t)n, leaf);
        if (dems_merkle_verify_inclusion(leaf, out->index, cp->size, p, cp->root) != 0)
            r = fail(rep, "proof_invalid",
                     "entry %llu: its inclusion proof does not lead to the checkpoint's root",
                     (unsigned long long)out->index);
    }
    if (r == 0 && dems_ledger_entry_decode(bytes, (size_t)n, &out->root, &out->e) != 0)
        r = fail(rep, "entry_malformed", "entry %llu: not a canonical custody entry",
                 (unsigned long long)out->index);
    if (r == 0 && out->e.seq != out->index)
        r = fail(rep, "entry_mismatch", "entry %llu: its seq is %llu",
                 (unsigned long long)out->index, (unsigned long long)out->e.seq);
    free(bytes);
    free(p);
    return r;
}

static const struct checked *find(const struct checked *all, size_t n, uint64_t index)
{
    for (size_t i = 0; i < n; i++) {
        if (all[i].index == index)
            return &all[i];
    }
    return NULL;
}

static int check_files(const json_t *files, const struct checked *all, size_t n,
                       struct dems_receipt_report *rep)
{
    for (size_t i = 0; i < json_array_size(files); i++) {
        const json_t *f = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        const json_t *size = json_object_get(f, "size"), *idx = json_object_get(f, "ledger_index");
        uint8_t want[32];
        if (name == NULL || sha == NULL || strlen(sha) != 64 ||
            dems_hex_decode(sha, 64, want, 32) < 0 || !json_is_integer(size) ||
            json_integer_value(size) < 0 || !json_is_integer(idx))
            return fail(rep, "malformed", "file %zu lacks its name, sha256, size or ledger_index",
                        i + 1);
        const struct checked *c = find(all, n, (uint64_t)json_integer_value(idx));
        if (c == NULL)
            return fail(rep, "entry_missing", "file %s: its entry %lld is not in the receipt", name,
                        (long long)json_integer_value(idx));
        const char *upload = json_string_value(json_object_get(c->e.payload, "upload"));
        if (c->e.type != DEMS_LEDGER_INGESTED || !c->e.has_artefact || !c->e.has_size ||
            memcmp(c->e.artefact, want, 32) != 0 ||
            c->e.size != (uint64_t)json_integer_value(size) || upload == NULL)
            return fail(rep, "file_mismatch",
                        "file %s: entry %llu is not the INGESTED entry of SHA-256 %s and %lld "
                        "bytes",
                        name, (unsigned long long)c->index, sha,
                        (long long)json_integer_value(size));
        rep->files++;
        rep->bytes += c->e.size;
    }
    return 0;
}

static int check_later(const struct dems_receipt_opts *o, const struct dems_note_verifier *v,
                       struct dems_receipt_report *rep)
{
    if (o->later_note == NULL)
        return 0;
    if (dems_checkpoint_open(o->later_note, o->later_len, v, rep->checkpoint.origin, &rep->later) !=
        0)
        return fail(rep, "later_checkpoint_invalid",
                    "the later checkpoint is not one of this log signed by %s", v->name);
    json_error_t jerr;
    json_t *c =
        o->consistency != NULL ? json_loadb(o->consistency, o->consistency_len, 0, &jerr) : NULL;
    const json_t *proof = json_object_get(c, "proof");
    const char *r1 = json_string_value(json_object_get(c, "old_root"));
    const char *r2 = json_string_value(json_object_get(c, "new_root"));
    struct dems_merkle_proof *p = malloc(sizeof(*p));
    uint8_t root1[32], root2[32];
    int r = 0;
    if (p == NULL)
        r = DEMS_ENOMEM;
    else if (!json_is_array(proof) || json_array_size(proof) > DEMS_MERKLE_MAX_PROOF ||
             r1 == NULL || r2 == NULL || strlen(r1) != 64 || strlen(r2) != 64 ||
             dems_hex_decode(r1, 64, root1, 32) < 0 || dems_hex_decode(r2, 64, root2, 32) < 0 ||
             json_integer_value(json_object_get(c, "old")) != (json_int_t)rep->checkpoint.size ||
             json_integer_value(json_object_get(c, "new")) != (json_int_t)rep->later.size)
        r = fail(rep, "consistency_malformed",
                 "a consistency proof from size %llu to size %llu is needed (GET "
                 "/v1/ledger/proof/consistency?old=%llu&new=%llu)",
                 (unsigned long long)rep->checkpoint.size, (unsigned long long)rep->later.size,
                 (unsigned long long)rep->checkpoint.size, (unsigned long long)rep->later.size);
    if (r == 0) {
        p->len = json_array_size(proof);
        for (size_t i = 0; r == 0 && i < p->len; i++) {
            const char *h = json_string_value(json_array_get(proof, i));
            if (h == NULL || strlen(h) != 64 || dems_hex_decode(h, 64, p->hash[i], 32) < 0)
                r = fail(rep, "consistency_malformed", "consistency proof hash %zu is not hex", i);
        }
    }
    if (r == 0 &&
        (memcmp(root1, rep->checkpoint.root, 32) != 0 || memcmp(root2, rep->later.root, 32) != 0 ||
         dems_merkle_verify_consistency(rep->checkpoint.size, rep->later.size, root1, root2, p) !=
             0))
        r = fail(rep, "consistency_invalid",
                 "the later checkpoint (size %llu) is not an extension of the receipt's "
                 "(size %llu): the log was rewritten",
                 (unsigned long long)rep->later.size, (unsigned long long)rep->checkpoint.size);
    free(p);
    json_decref(c);
    return r;
}

int dems_receipt_verify(const char *text, size_t len, const struct dems_receipt_opts *o,
                        struct dems_receipt_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    const char *ref = json_string_value(json_object_get(doc, "reference"));
    const char *note = json_string_value(json_object_get(doc, "checkpoint"));
    const char *own_key = json_string_value(json_object_get(doc, "vkey"));
    const json_t *files = json_object_get(doc, "files"), *entries = json_object_get(doc, "entries");
    const json_t *sub = json_object_get(doc, "submitted_index");
    if (!json_is_object(doc) ||
        json_integer_value(json_object_get(doc, "dems_receipt")) != DEMS_RECEIPT_FORMAT ||
        ref == NULL || note == NULL || !json_is_array(files) || !json_is_array(entries) ||
        !json_is_integer(sub) || json_array_size(entries) > json_array_size(files) + 1) {
        json_decref(doc);
        fail(rep, "malformed", "not a dems receipt (format %d)", DEMS_RECEIPT_FORMAT);
        return DEMS_EINVAL;
    }
    snprintf(rep->reference, sizeof(rep->reference), "%s", ref);
    const char *vkey = o->vkey != NULL ? o->vkey : own_key;
    struct dems_note_verifier v;
    int r = 0;
    if (vkey == NULL || dems_note_verifier_parse(vkey, strlen(vkey), &v) < 0)
        r = fail(rep, "key_malformed", "no usable verifier key (give --key VKEY)");
    else if (dems_checkpoint_open(note, strlen(note), &v, NULL, &rep->checkpoint) != 0)
        r = fail(rep, "checkpoint_invalid", "the checkpoint has no valid signature by %s", v.name);
    size_t n = json_array_size(entries);
    struct checked *all = calloc(n ? n : 1, sizeof(*all));
    if (r == 0 && all == NULL)
        r = DEMS_ENOMEM;
    for (size_t i = 0; r == 0 && i < n; i++)
        r = check_entry(json_array_get(entries, i), &rep->checkpoint, &all[i], rep);
    if (r == 0)
        r = check_files(files, all, n, rep);
    if (r == 0) {
        const struct checked *s = find(all, n, (uint64_t)json_integer_value(sub));
        const char *sref =
            s != NULL ? json_string_value(json_object_get(s->e.payload, "reference")) : NULL;
        json_int_t nf = s != NULL ? json_integer_value(json_object_get(s->e.payload, "files")) : -1;
        if (s == NULL || s->e.type != DEMS_LEDGER_SUBMITTED || sref == NULL ||
            strcmp(sref, ref) != 0 || nf != (json_int_t)json_array_size(files))
            r = fail(rep, "submitted_mismatch",
                     "entry %lld is not the SUBMITTED entry of %s with %zu files",
                     (long long)json_integer_value(sub), ref, json_array_size(files));
    }
    if (r == 0)
        r = check_later(o, &v, rep);
    for (size_t i = 0; all != NULL && i < n; i++)
        json_decref(all[i].root);
    free(all);
    json_decref(doc);
    return r;
}
