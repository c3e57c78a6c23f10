/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl ledger verify: fetches the verifier key, the newest checkpoint and
 * the whole export, verifies the export exactly as `dems-verify ledger` does
 * (dems_ledger_verify_export: every entry's bytes, leaf hash and signature,
 * the sequence, the key chain and the recomputed root against the signed
 * checkpoint), then checks the server's proofs against what was verified:
 * the checkpoint served now is consistent with the export's (RFC 9162
 * consistency proof) and the export's last entry is in its tree (inclusion
 * proof).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ctl.h"

/* GETs a small text answer (the key, the checkpoint); owned, trailing newlines kept. */
static int get_text(struct ctl_http *h, const char *path, size_t max, char **ret, size_t *ret_len)
{
    struct ctl_resp resp;
    int r = ctl_http_do(h, "GET", path, NULL, &resp);
    if (r == CTL_OK)
        r = ctl_check(&resp);
    if (r == CTL_OK && resp.body.len > max)
        r = ctl_fail(CTL_REFUSED, "GET %s: the answer is over %zu bytes", path, max);
    if (r == CTL_OK) {
        *ret = malloc(resp.body.len + 1);
        if (*ret == NULL) {
            r = ctl_fail(CTL_REFUSED, "out of memory");
        } else {
            memcpy(*ret, resp.body.data, resp.body.len);
            (*ret)[resp.body.len] = '\0';
            *ret_len = resp.body.len;
        }
    }
    ctl_resp_done(&resp);
    return r;
}

static bool hex_hash(const json_t *v, uint8_t out[static 32])
{
    const char *s = json_string_value(v);
    return s != NULL && strlen(s) == 64 && dems_hex_decode(s, 64, out, 32) == 0;
}

static bool proof_of(const json_t *arr, struct dems_merkle_proof *p)
{
    size_t i;
    const json_t *v;
    if (!json_is_array(arr) || json_array_size(arr) > DEMS_MERKLE_MAX_PROOF)
        return false;
    p->len = 0;
    json_array_foreach(arr, i, v)
    {
        if (!hex_hash(v, p->hash[p->len]))
            return false;
        p->len++;
    }
    return true;
}

/* One line for a failed check: stderr, and a JSON verdict with --json. */
static int invalid(const char *fault, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int invalid(const char *fault, const char *fmt, ...)
{
    char detail[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (ctl_global.json) {
        json_t *j = json_pack("{s:b,s:s,s:s}", "ok", false, "fault", fault, "detail", detail);
        ctl_print_json(j);
        json_decref(j);
    }
    return ctl_fail(CTL_REFUSED, "ledger INVALID: %s: %s", fault, detail);
}

/*
 * The served checkpoint against the export's (both verified): the same
 * tree when the sizes match, else a consistency proof from the smaller.
 */
static int check_consistency(struct ctl_http *h, const struct dems_checkpoint *exp,
                             const struct dems_checkpoint *live)
{
    if (strcmp(exp->origin, live->origin) != 0)
        return invalid("checkpoint", "the served checkpoint names origin %s, the export %s",
                       live->origin, exp->origin);
    if (exp->size == live->size) {
        if (memcmp(exp->root, live->root, 32) != 0)
            return invalid("checkpoint",
                           "the served checkpoint and the export's have the same size %llu but "
                           "different roots",
                           (unsigned long long)exp->size);
        return CTL_OK;
    }
    const struct dems_checkpoint *o = exp->size < live->size ? exp : live;
    const struct dems_checkpoint *n = exp->size < live->size ? live : exp;
    if (o->size == 0)
        return CTL_OK; /* nothing to prove from the empty tree */
    char path[128];
    snprintf(path, sizeof(path), "/v1/ledger/proof/consistency?old=%llu&new=%llu",
             (unsigned long long)o->size, (unsigned long long)n->size);
    json_t *doc;
    int r = ctl_call(h, "GET", path, NULL, &doc);
    if (r != CTL_OK)
        return r;
    struct dems_merkle_proof *p = malloc(sizeof(*p));
    uint8_t r1[32], r2[32];
    if (p == NULL || !proof_of(json_object_get(doc, "proof"), p) ||
        !hex_hash(json_object_get(doc, "old_root"), r1) ||
        !hex_hash(json_object_get(doc, "new_root"), r2))
        r = invalid("proof", "the consistency proof from %llu to %llu is malformed",
                    (unsigned long long)o->size, (unsigned long long)n->size);
    else if (memcmp(r1, o->root, 32) != 0 || memcmp(r2, n->root, 32) != 0 ||
             dems_merkle_verify_consistency(o->size, n->size, o->root, n->root, p) != 0)
        r = invalid("proof",
                    "the tree of size %llu (%s) is not shown to be a prefix of the tree of size "
                    "%llu (%s): the log was rewritten, or the proof is wrong",
                    (unsigned long long)o->size, o == exp ? "the export's" : "served now",
                    (unsigned long long)n->size, n == exp ? "the export's" : "served now");
    free(p);
    json_decref(doc);
    return r;
}

/* The server's inclusion proof of the export's last entry, against the export's root. */
static int check_inclusion(struct ctl_http *h, const struct dems_checkpoint *exp)
{
    if (exp->size == 0)
        return CTL_OK;
    uint64_t index = exp->size - 1;
    char path[128];
    snprintf(path, sizeof(path), "/v1/ledger/proof/inclusion?index=%llu&size=%llu",
             (unsigned long long)index, (unsigned long long)exp->size);
    json_t *doc;
    int r = ctl_call(h, "GET", path, NULL, &doc);
    if (r != CTL_OK)
        return r;
    struct dems_merkle_proof *p = malloc(sizeof(*p));
    uint8_t leaf[32], root[32];
    if (p == NULL || !proof_of(json_object_get(doc, "proof"), p) ||
        !hex_hash(json_object_get(doc, "leaf_hash"), leaf) ||
        !hex_hash(json_object_get(doc, "root"), root))
        r = invalid("proof", "the inclusion proof of entry %llu is malformed",
                    (unsigned long long)index);
    else if (memcmp(root, exp->root, 32) != 0 ||
             dems_merkle_verify_inclusion(leaf, index, exp->size, p, exp->root) != 0)
        r = invalid("proof",
                    "the inclusion proof of entry %llu does not verify against the export's "
                    "root",
                    (unsigned long long)index);
    free(p);
    json_decref(doc);
    return r;
}

static int verify(struct ctl_http *h, const char *pin, int64_t threads, const struct ctl_opt *opts)
{
    struct dems_note_verifier served;
    const char *save = ctl_opt_get(opts, "save");
    FILE *f = save != NULL ? fopen(save, "w+") : tmpfile();
    if (f == NULL)
        return ctl_fail(CTL_USAGE, "cannot write %s: %s", save != NULL ? save : "a temporary file",
                        strerror(errno));

    char *vkey = NULL, *note = NULL;
    size_t vlen = 0, nlen = 0;
    struct dems_checkpoint live;
    struct ctl_resp resp;
    int r = get_text(h, "/v1/ledger/key", DEMS_NOTE_VKEY_MAX + 16, &vkey, &vlen);
    if (r == CTL_OK) {
        while (vlen > 0 && (vkey[vlen - 1] == '\n' || vkey[vlen - 1] == '\r'))
            vkey[--vlen] = '\0';
        if (dems_note_verifier_parse(vkey, vlen, &served) < 0)
            r = invalid("key", "the server's verifier key (GET /v1/ledger/key) does not parse");
    }
    if (r == CTL_OK)
        r = get_text(h, "/v1/ledger/checkpoint", DEMS_NOTE_MAX_BYTES, &note, &nlen);
    if (r == CTL_OK && dems_checkpoint_open(note, nlen, &served, NULL, &live) != 0)
        r = invalid("checkpoint",
                    "the served checkpoint is not a checkpoint signed by the served key %s",
                    served.name);
    if (r == CTL_OK && (r = ctl_http_download(h, "/v1/ledger/export", f, &resp)) == CTL_OK) {
        r = ctl_check(&resp);
        ctl_resp_done(&resp);
        if (r == CTL_OK && (fflush(f) != 0 || ferror(f) != 0))
            r = ctl_fail(CTL_USAGE, "writing the export failed: %s", strerror(errno));
    }
    struct dems_ledger_report *rep = malloc(sizeof(*rep));
    if (r == CTL_OK && rep == NULL)
        r = ctl_fail(CTL_USAGE, "out of memory");
    struct dems_ledger_verify_opts vo = {.vkey = pin != NULL ? pin : vkey,
                                         .skip_entry_sigs = ctl_opt_get(opts, "fast") != NULL,
                                         .threads = (unsigned)threads};
    if (r == CTL_OK) {
        rewind(f);
        int v = dems_ledger_verify_export(f, &vo, rep);
        if (v == DEMS_ECRYPTO || v == DEMS_ETOOBIG)
            r = invalid(dems_ledger_fault_name(rep->fault), "%s", rep->detail);
        else if (v != 0)
            r = ctl_fail(CTL_USAGE, "reading the export back failed: %s", dems_strerror(v));
    }
    if (r == CTL_OK)
        r = check_consistency(h, &rep->checkpoint, &live);
    if (r == CTL_OK)
        r = check_inclusion(h, &rep->checkpoint);
    if (r == CTL_OK) {
        char root[65];
        dems_hex_encode(rep->checkpoint.root, 32, root);
        if (ctl_global.json) {
            json_t *j = json_pack(
                "{s:b,s:s,s:I,s:s,s:I,s:I,s:I,s:s,s:b,s:b,s:s?}", "ok", true, "origin",
                rep->checkpoint.origin, "size", (json_int_t)rep->checkpoint.size, "root", root,
                "entries", (json_int_t)rep->entries, "rotations", (json_int_t)rep->rotations,
                "served_size", (json_int_t)live.size, "key", vo.vkey, "key_pinned", pin != NULL,
                "fast", vo.skip_entry_sigs, "saved", save);
            ctl_print_json(j);
            json_decref(j);
        } else {
            printf("OK: %s; origin %s, tree size %llu, root %s\n", rep->detail,
                   rep->checkpoint.origin, (unsigned long long)rep->checkpoint.size, root);
            if (rep->checkpoint.size > 0)
                printf("  the checkpoint served before it (size %llu) is consistent with it; the "
                       "inclusion proof of its last entry verifies\n",
                       (unsigned long long)live.size);
            else
                printf("  the log is empty: no proof to check\n");
            printf("  key: %s%s\n", vo.vkey,
                   pin != NULL ? " (pinned)"
                               : " (as served: pin it with --key or ledger_key in the config)");
            if (vo.skip_entry_sigs)
                printf("  fast: entries authenticated through the signed root\n");
        }
    }
    free(rep);
    free(vkey);
    free(note);
    fclose(f);
    return r;
}

static int run_verify(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"key", false, NULL},
                             {"fast", true, NULL},
                             {"threads", false, NULL},
                             {"save", false, NULL},
                             {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    /* Bad input first, before any request. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t threads = cpus > 0 ? (cpus > 64 ? 64 : cpus) : 1;
    if (ctl_opt_get(opts, "threads") != NULL &&
        !ctl_int_arg("--threads", ctl_opt_get(opts, "threads"), 1, 64, &threads))
        return CTL_USAGE;
    const char *pin = ctl_opt_get(opts, "key");
    struct dems_note_verifier pinned;
    if (pin != NULL && dems_note_verifier_parse(pin, strlen(pin), &pinned) < 0)
        return ctl_usage_error("--key: not a note verifier key (name+hash+base64)");
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK)
        return r;
    if (pin == NULL && cfg.ledger_key != NULL) {
        pin = cfg.ledger_key;
        if (dems_note_verifier_parse(pin, strlen(pin), &pinned) < 0)
            r = ctl_fail(CTL_USAGE, "ledger_key in the config file: not a note verifier key "
                                    "(name+hash+base64)");
    }
    if (r == CTL_OK)
        r = verify(&h, pin, threads, opts);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static const struct ctl_cmd cmds[] = {
    {"verify", "[--key VKEY] [--fast] [--threads N] [--save FILE]",
     "Fetches the log's verifier key (GET /v1/ledger/key), its newest checkpoint (GET\n"
     "/v1/ledger/checkpoint) and the whole export (GET /v1/ledger/export), and verifies\n"
     "the export exactly as `dems-verify ledger` does: every entry's canonical bytes,\n"
     "leaf hash and Ed25519 signature, the sequence (no gap, duplicate or reordering),\n"
     "the key chain, and the recomputed Merkle root against the signed checkpoint at\n"
     "its end. Then it checks the server's proofs against what it verified: the\n"
     "checkpoint served now is consistent with the export's (GET\n"
     "/v1/ledger/proof/consistency), and the inclusion proof of the export's last entry\n"
     "verifies (GET /v1/ledger/proof/inclusion).\n\n"
     "--key pins the log's verifier key (or 'ledger_key = VKEY' in the config file);\n"
     "without it the key the server serves is trusted, which proves only that the log\n"
     "is self-consistent. Pin the key you recorded when the server was set up.\n"
     "--fast skips the per-entry signature checks (entries are still authenticated\n"
     "through the signed root; a root mismatch is checked again with signatures to name\n"
     "the entry); --threads sets how many threads check signatures (default: one per\n"
     "CPU); --save keeps the export in FILE.\n\n"
     "Exit status 0 with an OK line when everything verifies; 1 with one line\n"
     "(demsctl: ledger INVALID: <fault>: <what and where>) when anything does not.",
     run_verify},
};

const struct ctl_group ctl_group_ledger = {"ledger", "verify the custody ledger",
                                           "The custody ledger (docs/ledger.md).", cmds,
                                           sizeof(cmds) / sizeof(cmds[0])};
