/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dems-verify: the verifier. It needs no database and links only common/
 * libraries; every subcommand but one is offline. The exception is monitor
 * (monitor.c), which follows a running log over the network through its
 * tlog tiles, with libcurl. Each subcommand checks one thing and
 * prints one line: "OK: ..." and exit 0 when it holds, "INVALID: ..." (what
 * and where) and exit 1 when it does not; usage errors print to stderr and
 * exit 2; monitor exits 3 when the server cannot be reached or refuses.
 *
 *   dems-verify ledger EXPORT [--key VKEY] [--fast] [--threads N]
 *   dems-verify inclusion (--leaf-hash HEX | --entry FILE) --index N --size N
 *                         --root HEX [--proof HEX,HEX,...]
 *   dems-verify consistency --old N --new N --old-root HEX --new-root HEX
 *                           [--proof HEX,HEX,...]
 *   dems-verify checkpoint NOTE --key VKEY [--origin ORIGIN] [POLICY]
 *   dems-verify fork NOTE1 NOTE2 --key VKEY
 *   dems-verify file FILE --sha256 HEX
 *   dems-verify bundle FILE.zip [--key VKEY] [POLICY]
 *   dems-verify monitor URL --state FILE [--key VKEY] [--token T] [--cacert FILE]
 *                       [--watch TYPE[:ARTEFACT]]... [POLICY]
 *   dems-verify timestamp TOKEN --checkpoint NOTE --ca FILE [--key VKEY]
 *
 * POLICY (checkpoint, bundle, ledger, monitor): --witness VKEY (repeatable) --quorum N,
 * a witness policy the checkpoint's cosignatures must meet.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/bundle.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/receipt.h"
#include "dems/str.h"
#include "dems/tsa.h"
#include "dems/version.h"

#include "verify_int.h"

#define EXIT_VALID   EXIT_VERIFY_VALID
#define EXIT_INVALID EXIT_VERIFY_INVALID
#define EXIT_USAGE   EXIT_VERIFY_USAGE

struct cmd {
    const char *name;
    const char *usage;
    const char *help;
    int (*run)(int argc, char **argv);
};

static const struct cmd *current;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void usage_vprint(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

int verify_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usage_vprint(fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usage_vprint(fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

static void usage_vprint(const char *fmt, va_list ap)
{
    fprintf(stderr, "dems-verify: ");
    vfprintf(stderr, fmt, ap);
    /* One line: what was wrong, and where the help is. */
    if (current != NULL)
        fprintf(stderr, " (try dems-verify %s --help)\n", current->name);
    else
        fprintf(stderr, " (try dems-verify --help)\n");
}

static int invalid(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int invalid(const char *fmt, ...)
{
    va_list ap;
    printf("INVALID: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return EXIT_INVALID;
}

/* Options: "--name VALUE" or "--name=VALUE"; flags take no value. */
struct opt {
    const char *name;
    bool is_flag;
    const char *value; /* set when seen (flags: "1") */
};

/*
 * Fills opts from argv; positional arguments go to pos (at most npos).
 * Returns the number of positionals, -1 after printing a usage error, or -2
 * when --help was asked for.
 */
static int parse_opts(int argc, char **argv, struct opt *opts, const char **pos, int npos)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return -2;
        if (strncmp(a, "--", 2) != 0) {
            if (n >= npos) {
                usage_error("unexpected argument '%s'", a);
                return -1;
            }
            pos[n++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq != NULL ? (size_t)(eq - a - 2) : strlen(a + 2);
        struct opt *o = NULL;
        for (struct opt *p = opts; p->name != NULL; p++)
            if (strlen(p->name) == len && strncmp(p->name, a + 2, len) == 0)
                o = p;
        if (o == NULL) {
            usage_error("unknown option '%s'", a);
            return -1;
        }
        if (o->is_flag) {
            if (eq != NULL) {
                usage_error("--%s takes no value", o->name);
                return -1;
            }
            o->value = "1";
        } else if (eq != NULL) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            usage_error("--%s needs a value", o->name);
            return -1;
        }
    }
    return n;
}

static bool get_u64(const char *what, const char *s, uint64_t *ret)
{
    if (s == NULL) {
        usage_error("--%s is required", what);
        return false;
    }
    if (dems_parse_u64(s, strlen(s), UINT64_MAX, ret) < 0) {
        usage_error("--%s: '%s' is not a decimal number", what, s);
        return false;
    }
    return true;
}

static bool get_hash(const char *what, const char *s, uint8_t out[static 32])
{
    if (s == NULL) {
        usage_error("--%s is required", what);
        return false;
    }
    if (strlen(s) != 64 || dems_hex_decode(s, 64, out, 32) < 0) {
        usage_error("--%s: expected 64 hex digits (a SHA-256), got '%s'", what, s);
        return false;
    }
    return true;
}

/* "HEX,HEX,..." (empty or absent: the empty proof). */
static bool get_proof(const char *s, struct dems_merkle_proof *p)
{
    p->len = 0;
    if (s == NULL || *s == '\0')
        return true;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        if (p->len >= DEMS_MERKLE_MAX_PROOF) {
            usage_error("--proof: more than %d hashes", DEMS_MERKLE_MAX_PROOF);
            return false;
        }
        if (len != 64 || dems_hex_decode(s, 64, p->hash[p->len], 32) < 0) {
            usage_error("--proof: element %zu is not 64 hex digits", p->len + 1);
            return false;
        }
        p->len++;
        if (comma == NULL)
            return true;
        s = comma + 1;
    }
}

/* Reads a whole small file (at most max bytes). Returns owned or NULL (message printed). */
static char *slurp(const char *path, size_t max, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        usage_error("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf != NULL ? fread(buf, 1, max + 1, f) : 0;
    bool err = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || err || n > max) {
        free(buf);
        usage_error("cannot read %s (unreadable, or larger than %zu bytes)", path, max);
        return NULL;
    }
    buf[n] = '\0';
    *ret_len = n;
    return buf;
}

static void hex32(const uint8_t h[static 32], char out[static 65])
{
    dems_hex_encode(h, 32, out);
}

static int cmd_ledger(int argc, char **argv)
{
    struct verify_policy pol;
    struct opt opts[] = {{"key", false, NULL},
                         {"fast", true, NULL},
                         {"threads", false, NULL},
                         {"quorum", false, NULL},
                         {0}};
    const char *pos[1];
    argc = verify_policy_take(argc, argv, &pol);
    int n = argc < 0 ? -1 : parse_opts(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (n != 1)
        return usage_error("the export file is required");
    const struct dems_witness_policy *wp = verify_policy_get(&pol, opts[3].value);
    if (wp == &verify_bad_policy)
        return EXIT_USAGE;
    struct dems_ledger_verify_opts vo = {
        .vkey = opts[0].value, .skip_entry_sigs = opts[1].value != NULL, .witnesses = wp};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t threads = cpus > 0 ? (uint64_t)cpus : 1;
    if (opts[2].value != NULL) {
        if (!get_u64("threads", opts[2].value, &threads))
            return EXIT_USAGE;
        if (threads == 0 || threads > 64)
            return usage_error("--threads: give 1 to 64");
    }
    if (threads > 64)
        threads = 64;
    vo.threads = (unsigned)threads;
    struct dems_note_verifier pin;
    if (vo.vkey != NULL && dems_note_verifier_parse(vo.vkey, strlen(vo.vkey), &pin) < 0)
        return usage_error("--key: not a note verifier key (name+hash+base64)");
    /*
     * --fast that finds the root wrong but no entry to blame reads the file
     * again with the entry signatures to name it (a file can be read twice;
     * stdin is read once).
     */
    bool is_stdin = strcmp(pos[0], "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(pos[0], "r");
    if (f == NULL)
        return usage_error("cannot open %s: %s", pos[0], strerror(errno));
    struct dems_ledger_report rep;
    int r =
        is_stdin ? dems_ledger_verify_file(f, &vo, &rep) : dems_ledger_verify_export(f, &vo, &rep);
    if (f != stdin)
        fclose(f);
    if (r == DEMS_EIO)
        return usage_error("reading %s failed", pos[0]);
    if (r == DEMS_ENOMEM) {
        fprintf(stderr, "dems-verify: out of memory\n");
        return EXIT_USAGE;
    }
    if (r != 0) /* the detail says which entry or line */
        return invalid("%s: %s", dems_ledger_fault_name(rep.fault), rep.detail);
    char root[65];
    hex32(rep.checkpoint.root, root);
    printf("OK: %s; origin %s, tree size %llu, root %s%s%s%s\n", rep.detail, rep.checkpoint.origin,
           (unsigned long long)rep.checkpoint.size, root,
           vo.vkey == NULL ? " (key taken from the export; pin it with --key)" : "",
           vo.skip_entry_sigs ? " (fast: entries authenticated through the signed root)" : "",
           wp != NULL ? " (the witness policy's quorum is met)" : "");
    return EXIT_VALID;
}

static int cmd_inclusion(int argc, char **argv)
{
    struct opt opts[] = {{"leaf-hash", false, NULL},
                         {"entry", false, NULL},
                         {"index", false, NULL},
                         {"size", false, NULL},
                         {"root", false, NULL},
                         {"proof", false, NULL},
                         {0}};
    const char *pos[1];
    int n = parse_opts(argc, argv, opts, pos, 0);
    uint8_t leaf[32], root[32];
    uint64_t index, size;
    struct dems_merkle_proof proof;

    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if ((opts[0].value == NULL) == (opts[1].value == NULL))
        return usage_error("give exactly one of --leaf-hash and --entry");
    if (opts[0].value != NULL && !get_hash("leaf-hash", opts[0].value, leaf))
        return EXIT_USAGE;
    if (opts[1].value != NULL) {
        size_t len = 0;
        char *bytes = slurp(opts[1].value, DEMS_LEDGER_MAX_ENTRY, &len);
        if (bytes == NULL)
            return EXIT_USAGE;
        dems_merkle_leaf_hash((const uint8_t *)bytes, len, leaf);
        free(bytes);
    }
    if (!get_u64("index", opts[2].value, &index) || !get_u64("size", opts[3].value, &size) ||
        !get_hash("root", opts[4].value, root) || !get_proof(opts[5].value, &proof))
        return EXIT_USAGE;
    char lh[65];
    hex32(leaf, lh);
    int r = dems_merkle_verify_inclusion(leaf, index, size, &proof, root);
    if (r == DEMS_EINVAL)
        return invalid("index %llu is not below tree size %llu", (unsigned long long)index,
                       (unsigned long long)size);
    if (r != 0)
        return invalid("the proof does not show leaf %s at index %llu in the tree of size %llu "
                       "with that root",
                       lh, (unsigned long long)index, (unsigned long long)size);
    printf("OK: leaf %s is entry %llu of the tree of size %llu\n", lh, (unsigned long long)index,
           (unsigned long long)size);
    return EXIT_VALID;
}

static int cmd_consistency(int argc, char **argv)
{
    struct opt opts[] = {{"old", false, NULL},      {"new", false, NULL},
                         {"old-root", false, NULL}, {"new-root", false, NULL},
                         {"proof", false, NULL},    {0}};
    const char *pos[1];
    int n = parse_opts(argc, argv, opts, pos, 0);
    uint64_t m, k;
    uint8_t r1[32], r2[32];
    struct dems_merkle_proof proof;

    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (!get_u64("old", opts[0].value, &m) || !get_u64("new", opts[1].value, &k) ||
        !get_hash("old-root", opts[2].value, r1) || !get_hash("new-root", opts[3].value, r2) ||
        !get_proof(opts[4].value, &proof))
        return EXIT_USAGE;
    int r = dems_merkle_verify_consistency(m, k, r1, r2, &proof);
    if (r == DEMS_EINVAL)
        return invalid("no consistency can be proven from size %llu to size %llu (the old size "
                       "must be at least 1 and at most the new one)",
                       (unsigned long long)m, (unsigned long long)k);
    if (r != 0)
        return invalid("the proof does not show the tree of size %llu with the old root to be a "
                       "prefix of the tree of size %llu with the new root",
                       (unsigned long long)m, (unsigned long long)k);
    printf("OK: the tree of size %llu is a prefix of the tree of size %llu\n",
           (unsigned long long)m, (unsigned long long)k);
    return EXIT_VALID;
}

static int cmd_checkpoint(int argc, char **argv)
{
    struct verify_policy pol;
    struct opt opts[] = {
        {"key", false, NULL}, {"origin", false, NULL}, {"quorum", false, NULL}, {0}};
    const char *pos[1];
    argc = verify_policy_take(argc, argv, &pol);
    int n = argc < 0 ? -1 : parse_opts(argc, argv, opts, pos, 1);
    struct dems_note_verifier v;
    struct dems_checkpoint c;
    size_t len = 0, held = 0;

    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (n != 1)
        return usage_error("the checkpoint file is required");
    if (opts[0].value == NULL ||
        dems_note_verifier_parse(opts[0].value, strlen(opts[0].value), &v) < 0)
        return usage_error("--key VKEY (a note verifier key) is required");
    const struct dems_witness_policy *wp = verify_policy_get(&pol, opts[2].value);
    if (wp == &verify_bad_policy)
        return EXIT_USAGE;
    char *note = slurp(pos[0], DEMS_NOTE_MAX_BYTES, &len);
    if (note == NULL)
        return EXIT_USAGE;
    int r = dems_checkpoint_open(note, len, &v, opts[1].value, &c);
    int w = r == 0 && wp != NULL ? dems_witness_policy_check(wp, note, len, &held) : 0;
    free(note);
    if (r == DEMS_ECRYPTO)
        return invalid("%s: no valid signature by %s", pos[0], v.name);
    if (r != 0)
        return invalid("%s: not a well-formed checkpoint%s", pos[0],
                       opts[1].value != NULL ? " for that origin" : "");
    if (w < 0)
        return invalid("witness_quorum: %s: valid cosignatures from %zu of the policy's %zu "
                       "witnesses; the quorum is %zu",
                       pos[0], held, wp->nkeys, wp->quorum);
    char root[65];
    hex32(c.root, root);
    printf("OK: checkpoint signed by %s: origin %s, tree size %llu, root %s", v.name, c.origin,
           (unsigned long long)c.size, root);
    if (wp != NULL)
        printf("; cosigned by %zu of the policy's %zu witnesses (quorum %zu)", held, wp->nkeys,
               wp->quorum);
    printf("\n");
    return EXIT_VALID;
}

/*
 * Two checkpoints of one log, both validly signed by its key, of one size
 * and with different roots: the log showed two histories. (Of different
 * sizes, a consistency proof decides: dems-verify consistency.)
 */
static int cmd_fork(int argc, char **argv)
{
    struct opt opts[] = {{"key", false, NULL}, {0}};
    const char *pos[2];
    int n = parse_opts(argc, argv, opts, pos, 2);
    struct dems_note_verifier v;
    struct dems_checkpoint c[2];

    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (n != 2)
        return usage_error("two checkpoint files are required");
    if (opts[0].value == NULL ||
        dems_note_verifier_parse(opts[0].value, strlen(opts[0].value), &v) < 0)
        return usage_error("--key VKEY (the log's note verifier key) is required");
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        char *note = slurp(pos[i], DEMS_NOTE_MAX_BYTES, &len);
        if (note == NULL)
            return EXIT_USAGE;
        int r = dems_checkpoint_open(note, len, &v, NULL, &c[i]);
        free(note);
        if (r == DEMS_ECRYPTO)
            return invalid("no_fork: %s: no valid signature by %s, so it proves nothing", pos[i],
                           v.name);
        if (r != 0)
            return invalid("no_fork: %s: not a well-formed checkpoint", pos[i]);
    }
    if (strcmp(c[0].origin, c[1].origin) != 0)
        return invalid("no_fork: the checkpoints name different origins (%s, %s)", c[0].origin,
                       c[1].origin);
    if (c[0].size != c[1].size)
        return invalid("no_fork: the checkpoints have different sizes (%llu, %llu); check them "
                       "with a consistency proof (dems-verify consistency)",
                       (unsigned long long)c[0].size, (unsigned long long)c[1].size);
    if (memcmp(c[0].root, c[1].root, 32) == 0)
        return invalid("no_fork: the checkpoints agree (size %llu, one root)",
                       (unsigned long long)c[0].size);
    char r0[65], r1[65];
    hex32(c[0].root, r0);
    hex32(c[1].root, r1);
    printf("OK: fork proven: %s signed two checkpoints of %s at tree size %llu with different "
           "roots %s and %s\n",
           v.name, c[0].origin, (unsigned long long)c[0].size, r0, r1);
    return EXIT_VALID;
}

static int cmd_file(int argc, char **argv)
{
    struct opt opts[] = {{"sha256", false, NULL}, {0}};
    const char *pos[1];
    int n = parse_opts(argc, argv, opts, pos, 1);
    uint8_t want[32], got[32];
    static uint8_t chunk[1 << 16];

    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (n != 1)
        return usage_error("the file is required");
    if (!get_hash("sha256", opts[0].value, want))
        return EXIT_USAGE;
    FILE *f = fopen(pos[0], "rb");
    if (f == NULL)
        return usage_error("cannot open %s: %s", pos[0], strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        fclose(f);
        EVP_MD_CTX_free(ctx);
        fprintf(stderr, "dems-verify: cannot start SHA-256\n");
        return EXIT_USAGE;
    }
    uint64_t total = 0;
    size_t got_n;
    while ((got_n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        EVP_DigestUpdate(ctx, chunk, got_n);
        total += got_n;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    EVP_DigestFinal_ex(ctx, got, NULL);
    EVP_MD_CTX_free(ctx);
    if (err)
        return usage_error("reading %s failed", pos[0]);
    char hw[65], hg[65];
    hex32(want, hw);
    hex32(got, hg);
    if (memcmp(want, got, 32) != 0)
        return invalid("%s: SHA-256 is %s, expected %s (%llu bytes read)", pos[0], hg, hw,
                       (unsigned long long)total);
    printf("OK: %s: SHA-256 %s (%llu bytes)\n", pos[0], hg, (unsigned long long)total);
    return EXIT_VALID;
}

static int cmd_bundle(int argc, char **argv)
{
    struct verify_policy pol;
    struct opt opts[] = {{"key", false, NULL}, {"quorum", false, NULL}, {0}};
    const char *pos[1];
    argc = verify_policy_take(argc, argv, &pol);
    int n = argc < 0 ? -1 : parse_opts(argc, argv, opts, pos, 1);
    struct dems_bundle_report rep;
    char root[65];

    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (n != 1)
        return usage_error("the bundle (a .zip file) is required");
    const struct dems_witness_policy *wp = verify_policy_get(&pol, opts[1].value);
    if (wp == &verify_bad_policy)
        return EXIT_USAGE;
    struct dems_bundle_verify_opts vo = {.vkey = opts[0].value, .witnesses = wp};
    printf("Bundle %s\n", pos[0]);
    fflush(stdout);
    int r = dems_bundle_verify_file(pos[0], &vo, stdout, &rep);
    if (r == DEMS_EIO)
        return usage_error("cannot open %s: %s", pos[0], strerror(errno));
    if (r == DEMS_ECRYPTO)
        return invalid("%s: %s", rep.code, rep.detail);
    if (r < 0)
        return usage_error("verifying %s failed: %s", pos[0], dems_strerror(r));
    hex32(rep.checkpoint.root, root);
    printf("  case %s: %llu exhibits, %llu files (%llu bytes) match the manifest\n", rep.case_ref,
           (unsigned long long)rep.exhibits, (unsigned long long)rep.files,
           (unsigned long long)rep.bytes);
    printf("  %llu custody entries with valid signatures; %llu inclusion proofs verify against\n"
           "  checkpoint %s size %llu root %s\n"
           "  signed by the key chain (%llu keys)%s\n",
           (unsigned long long)rep.entries, (unsigned long long)rep.proofs, rep.checkpoint.origin,
           (unsigned long long)rep.checkpoint.size, root, (unsigned long long)rep.keys,
           vo.vkey != NULL ? ", which holds the pinned key"
                           : "; no --key given, so this proves only self-consistency");
    if (wp != NULL)
        printf("  cosigned by at least %zu of the policy's %zu witnesses\n", wp->quorum, wp->nkeys);
    printf("OK: bundle %s verifies\n", pos[0]);
    return EXIT_VALID;
}

static int cmd_receipt(int argc, char **argv)
{
    struct opt opts[] = {
        {"key", false, NULL}, {"checkpoint", false, NULL}, {"consistency", false, NULL}, {0}};
    const char *pos[1];
    int n = parse_opts(argc, argv, opts, pos, 1);
    struct dems_receipt_report rep;
    char root[65];

    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (n != 1)
        return usage_error("the receipt (a .json file) is required");
    if ((opts[1].value == NULL) != (opts[2].value == NULL))
        return usage_error("--checkpoint and --consistency go together");
    size_t len = 0, later_len = 0, cons_len = 0;
    char *text = slurp(pos[0], DEMS_RECEIPT_MAX_BYTES, &len);
    if (text == NULL)
        return EXIT_USAGE;
    char *later = NULL, *cons = NULL;
    if (opts[1].value != NULL) {
        later = slurp(opts[1].value, DEMS_NOTE_MAX_BYTES, &later_len);
        cons = later != NULL ? slurp(opts[2].value, 1 << 20, &cons_len) : NULL;
        if (cons == NULL) {
            free(text);
            free(later);
            return EXIT_USAGE;
        }
    }
    struct dems_receipt_opts ro = {.vkey = opts[0].value,
                                   .later_note = later,
                                   .later_len = later_len,
                                   .consistency = cons,
                                   .consistency_len = cons_len};
    int r = dems_receipt_verify(text, len, &ro, &rep);
    free(text);
    free(later);
    free(cons);
    if (r == DEMS_EINVAL)
        return invalid("%s: %s", pos[0], rep.detail);
    if (r == DEMS_ECRYPTO)
        return invalid("%s: %s", rep.code, rep.detail);
    if (r < 0)
        return usage_error("verifying %s failed: %s", pos[0], dems_strerror(r));
    hex32(rep.checkpoint.root, root);
    printf("Receipt %s: submission %s\n", pos[0], rep.reference);
    printf("  %llu files (%llu bytes), each recorded by an INGESTED entry, and the SUBMITTED\n"
           "  entry: all in checkpoint %s size %llu root %s\n"
           "  signed by %s\n",
           (unsigned long long)rep.files, (unsigned long long)rep.bytes, rep.checkpoint.origin,
           (unsigned long long)rep.checkpoint.size, root,
           opts[0].value != NULL ? "the pinned key"
                                 : "the receipt's own key (no --key given: compare it with the "
                                   "force's published key)");
    if (rep.later.size > 0)
        printf("  and still in the later checkpoint of size %llu (consistency proof checked)\n",
               (unsigned long long)rep.later.size);
    printf("OK: receipt %s verifies\n", rep.reference);
    return EXIT_VALID;
}

/*
 * A token file: DER (it starts with a SEQUENCE, 0x30), or its base64 as
 * GET /v1/ledger/timestamps gives it (white space ignored). Returns owned or
 * NULL (message printed).
 */
static uint8_t *read_token(const char *path, size_t *ret_len)
{
    size_t len = 0;
    char *text = slurp(path, 2 * DEMS_TSA_MAX_RESPONSE, &len);
    if (text == NULL)
        return NULL;
    if (len > 0 && (uint8_t)text[0] == 0x30) {
        *ret_len = len;
        return (uint8_t *)text;
    }
    uint8_t *der = malloc(len / 4 * 3 + 3);
    size_t n = 0;
    if (der == NULL || sodium_base642bin(der, len / 4 * 3 + 3, text, len, " \t\r\n", &n, NULL,
                                         sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(der);
        free(text);
        usage_error("%s is neither a DER TimeStampToken nor its base64", path);
        return NULL;
    }
    free(text);
    *ret_len = n;
    return der;
}

static int cmd_timestamp(int argc, char **argv)
{
    struct opt opts[] = {
        {"checkpoint", false, NULL}, {"ca", false, NULL}, {"key", false, NULL}, {0}};
    const char *pos[1];
    int n = parse_opts(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == -2 ? -2 : EXIT_USAGE;
    if (n != 1)
        return usage_error("the token file is required");
    if (opts[0].value == NULL || opts[1].value == NULL)
        return usage_error("--checkpoint NOTE and --ca FILE are required");
    struct dems_note_verifier v;
    if (opts[2].value != NULL &&
        dems_note_verifier_parse(opts[2].value, strlen(opts[2].value), &v) < 0)
        return usage_error("--key: not a note verifier key (name+hash+base64)");
    char err[512];
    struct dems_tsa_trust *trust = dems_tsa_trust_load(opts[1].value, err, sizeof(err));
    if (trust == NULL)
        return usage_error("--ca: %s", err);
    size_t tlen = 0, nlen = 0;
    uint8_t *token = read_token(pos[0], &tlen);
    char *note = token != NULL ? slurp(opts[0].value, DEMS_NOTE_MAX_BYTES, &nlen) : NULL;
    int rc = EXIT_USAGE;
    struct dems_checkpoint c = {.size = 0};
    if (note != NULL && opts[2].value != NULL &&
        dems_checkpoint_open(note, nlen, &v, NULL, &c) < 0) {
        rc = invalid("%s: not a checkpoint signed by %s", opts[0].value, v.name);
    } else if (note != NULL) {
        uint8_t imprint[32];
        struct dems_tsa_info info;
        char why[400], hex[65];
        crypto_hash_sha256(imprint, (const uint8_t *)note, nlen);
        hex32(imprint, hex);
        if (dems_tsa_token_check(token, tlen, imprint, trust, &info, why, sizeof(why)) < 0) {
            rc = invalid("%s: %s (imprint SHA-256 %s of %s)", pos[0], why, hex, opts[0].value);
        } else {
            char root[65];
            hex32(c.root, root);
            if (opts[2].value != NULL)
                printf("  checkpoint %s: signed by %s, tree size %llu, root %s\n", opts[0].value,
                       v.name, (unsigned long long)c.size, root);
            printf("  token serial %s, policy %s, chains to %s\n", info.serial, info.policy,
                   opts[1].value);
            printf("OK: %s existed by %s (SHA-256 %s)%s\n", opts[0].value, info.gen_time, hex,
                   opts[2].value != NULL ? "" : "; no --key given, so its signature is unchecked");
            rc = EXIT_VALID;
        }
    }
    free(note);
    free(token);
    dems_tsa_trust_free(trust);
    return rc;
}

static const struct cmd cmds[] = {
    {"ledger", "ledger EXPORT [--key VKEY] [--fast] [--threads N] [--witness VKEY ... --quorum N]",
     "Verifies a ledger export (GET /v1/ledger/export; '-' reads stdin): every entry's\n"
     "canonical bytes, leaf hash and Ed25519 signature, the sequence (no gap, duplicate or\n"
     "reordering), and the recomputed Merkle root against the signed checkpoint at the end.\n"
     "Reports the first bad entry by sequence number. --key pins the log's note verifier\n"
     "key (name+hash+base64, GET /v1/ledger/key); without it the key in the export's header\n"
     "is used, which proves only that the export is self-consistent.\n"
     "--fast skips the per-entry Ed25519 checks (the slow part): every entry is still\n"
     "authenticated, through its leaf hash and the root the signed checkpoint commits to.\n"
     "When the root does not match, a second pass checks the entry signatures to name the\n"
     "first rewritten entry. --threads sets how many threads check entry signatures\n"
     "(default: one per online CPU). --witness (repeatable) and --quorum set a witness\n"
     "policy: the export's checkpoint must carry valid cosignatures (C2SP tlog-cosignature)\n"
     "from at least N distinct --witness keys (GET /v1/ledger/witness/key on each witness).",
     cmd_ledger},
    {"inclusion",
     "inclusion (--leaf-hash HEX | --entry FILE) --index N --size N --root HEX "
     "[--proof HEX,HEX,...]",
     "Verifies an RFC 9162 inclusion proof (GET /v1/ledger/proof/inclusion): that the entry\n"
     "with that leaf hash (or whose canonical bytes are in FILE) is entry N of the tree of\n"
     "the given size and root. --proof lists the proof's hashes in order, comma-separated\n"
     "(omit it, or give \"\", for the empty proof of a one-entry tree).",
     cmd_inclusion},
    {"consistency",
     "consistency --old N --new N --old-root HEX --new-root HEX [--proof HEX,HEX,...]",
     "Verifies an RFC 9162 consistency proof (GET /v1/ledger/proof/consistency): that the\n"
     "tree of size --old with --old-root is a prefix of the tree of size --new with\n"
     "--new-root, i.e. the log only grew. --proof is empty when the sizes are equal.",
     cmd_consistency},
    {"checkpoint", "checkpoint NOTE --key VKEY [--origin ORIGIN] [--witness VKEY ... --quorum N]",
     "Verifies a signed checkpoint note (GET /v1/ledger/checkpoint) against the log's note\n"
     "verifier key and prints its origin, tree size and root. --witness (repeatable) and\n"
     "--quorum N set a witness policy: the note must also carry valid cosignatures (C2SP\n"
     "tlog-cosignature) from at least N distinct --witness keys (default N: 1); fewer is\n"
     "INVALID: witness_quorum.",
     cmd_checkpoint},
    {"fork", "fork NOTE1 NOTE2 --key VKEY",
     "Proves a fork: two checkpoint notes, both validly signed by the log's key, of one\n"
     "origin and tree size, with different roots. Exit 0 and \"OK: fork proven\" when they\n"
     "are; exit 1 and \"INVALID: no_fork: ...\" when they prove nothing (a bad signature,\n"
     "another origin, different sizes, or one root).",
     cmd_fork},
    {"file", "file FILE --sha256 HEX",
     "Checks that FILE's SHA-256 is HEX (an evidence id, or a hash from a manifest).", cmd_file},
    {"bundle", "bundle FILE.zip [--key VKEY] [--witness VKEY ... --quorum N]",
     "Verifies a court bundle (docs/bundle.md; GET /v1/cases/{id}/bundles/{bid}/content):\n"
     "every file against the SHA-256 in manifest.json (streamed), every custody entry's\n"
     "canonical bytes, leaf hash and signature, every tlog-proof against the checkpoint,\n"
     "the checkpoint's signature along the key chain in keys.jsonl (--key pins the log's\n"
     "verifier key, which must be in that chain), and that each exhibit's INGESTED entry\n"
     "records its SHA-256 and size. Prints one line per exhibit; the first fault is one\n"
     "INVALID: <code>: <what and where> line. --witness (repeatable) and --quorum set a\n"
     "witness policy for checkpoint.txt, as for checkpoint.",
     cmd_bundle},
    {"receipt", "receipt FILE.json [--key VKEY] [--checkpoint LATER --consistency PROOF.json]",
     "Verifies a public submission's receipt (GET /v1/portal/receipt): the checkpoint's\n"
     "signature (--key pins the log's verifier key; without it the receipt's own key is\n"
     "used), every entry's inclusion proof against it, that each file's entry is the\n"
     "INGESTED entry of its SHA-256 and size, and the SUBMITTED entry. With --checkpoint\n"
     "(GET /v1/ledger/checkpoint, fetched later) and --consistency (the JSON of GET\n"
     "/v1/ledger/proof/consistency?old=<receipt's size>&new=<its size>) it also shows the\n"
     "entries are still in the log as it is now.",
     cmd_receipt},
    {"monitor",
     "monitor URL --state FILE [--key VKEY] [--token T] [--cacert FILE] "
     "[--watch TYPE[:ARTEFACT]]... [--witness VKEY ... --quorum N]",
     "Follows a running dems log through its C2SP tlog tiles (docs/ledger.md, Static tiles),\n"
     "the one subcommand that uses the network. URL is the tiles' prefix, e.g.\n"
     "https://dems.example/v1/ledger/tlog. Fetches the checkpoint and checks its signature\n"
     "(--key, the log's verifier key from GET /v1/ledger/key: needed on the first run, then\n"
     "kept in the state file; give it again after a key rotation); checks it against the\n"
     "checkpoint in FILE (same size: same root; larger: a consistency proof computed from the\n"
     "hash tiles); fetches the new entries from entry bundles (--token, or the environment's\n"
     "DEMS_VERIFY_TOKEN: a staff API token, sent over https only or to loopback),\n"
     "checks each against its leaf hash in the tiles and as a canonical entry, and their\n"
     "tree against the checkpoint's root. Prints each new entry of a watched type (--watch\n"
     "TYPE, or TYPE:EVIDENCE-ID for that evidence only; repeatable), one line each: seq,\n"
     "type, time, the entry's canonical JSON; then one OK line. The state file is replaced\n"
     "(written aside, fsynced, renamed) only when everything checked. --cacert trusts the\n"
     "server's own certificate (e.g. DATA/tls/cert.pem). Entry bundles carry no entry\n"
     "signatures: entries are authenticated by the signed checkpoint through the tree.\n"
     "With a witness policy (--witness VKEY, repeatable; --quorum N, default 1) the\n"
     "checkpoint must also carry valid cosignatures from N of those witnesses.\n"
     "Exit status: 0 checked, 1 invalid (a fork, a rollback, a bad signature or tile: one\n"
     "INVALID line), 2 usage or state-file error, 3 the server unreachable or refusing.",
     verify_monitor},
    {"timestamp", "timestamp TOKEN --checkpoint NOTE --ca FILE [--key VKEY]",
     "Verifies an RFC 3161 timestamp token over a checkpoint (GET /v1/ledger/timestamps:\n"
     "TOKEN is the token, DER or its base64; NOTE the checkpoint note it covers, byte for\n"
     "byte): that its message imprint is SHA-256 of NOTE, its signature, and its signer's\n"
     "certificate chain to the CA certificates in FILE (PEM) with the timestamping key\n"
     "usage. Prints the time the TSA vouches the checkpoint existed by. --key also checks\n"
     "the checkpoint's own signature (GET /v1/ledger/key).",
     cmd_timestamp},
};

static void version(void)
{
    struct dems_version_lib libs[5];
    dems_version_glibc(&libs[0]);
    dems_version_openssl(&libs[1]);
    dems_version_sodium(&libs[2]);
    dems_version_jansson(&libs[3]);
    dems_version_libarchive(&libs[4]);
    dems_version_print(stdout, "dems-verify", libs, 5);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: dems-verify COMMAND ... (no database; offline but for monitor)\n"
               "       dems-verify --version | --help\n\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(f, "  dems-verify %s\n", cmds[i].usage);
    fprintf(f, "\n'dems-verify COMMAND --help' explains one. Exit status: 0 valid, 1 invalid "
               "(one line says what\nand where), 2 usage or I/O error, 3 (monitor) the server "
               "unreachable or refusing.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_VALID;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        version();
        return EXIT_VALID;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "dems-verify: libsodium failed to initialise\n");
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(argv[1], cmds[i].name) != 0)
            continue;
        current = &cmds[i];
        int r = cmds[i].run(argc - 2, argv + 2);
        if (r == -2) {
            printf("usage: dems-verify %s\n\n%s\n", cmds[i].usage, cmds[i].help);
            return EXIT_VALID;
        }
        return r;
    }
    return usage_error("unknown command '%s'", argv[1]);
}
