/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Court bundles (common/bundle): one self-verifying ZIP holding a case's
 * exhibits, their custody entries with an inclusion proof each, the signed
 * checkpoint those proofs lead to, the key chain, a manifest and a printable
 * report. The format is in docs/bundle.md.
 *
 * Writing is deterministic: the same spec gives the same bytes (fixed member
 * order, fixed timestamps, no compression, no randomness), streamed through
 * a sink callback in bounded memory whatever the size. Verification streams
 * the ZIP once, hashing every file in 64 KiB blocks.
 *
 * Pure library: no database, no sockets, no clock, no logging. Everything
 * blocks on the caller's I/O callbacks or files. Call dems_crypto_init()
 * once first.
 */
#ifndef DEMS_BUNDLE_H
#define DEMS_BUNDLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dems/ledger.h"

/* The manifest's "dems_bundle" format number. */
#define DEMS_BUNDLE_FORMAT 1
/* Largest manifest.json, keys.jsonl or custody.jsonl a verifier reads. */
#define DEMS_BUNDLE_MAX_META (64u * 1024 * 1024)
/* Largest tlog-proof file. */
#define DEMS_BUNDLE_MAX_PROOF (DEMS_NOTE_MAX_BYTES + 8192)
/* Most exhibits / files / custody entries in one bundle. */
#define DEMS_BUNDLE_MAX_ITEMS 1000000
/* Longest ZIP member name written or accepted. */
#define DEMS_BUNDLE_MAX_NAME 512

/* A ledger entry carried by a bundle, with its proof against the checkpoint. */
struct dems_bundle_entry {
    uint64_t seq;
    const uint8_t *bytes; /* canonical entry bytes (borrowed) */
    size_t len;
    uint8_t leaf[32];
    uint8_t sig[64];
    struct dems_merkle_proof proof; /* inclusion of seq in the checkpoint's tree */
};

/* A file carried by a bundle: an exhibit's original or one of its previews. */
struct dems_bundle_file {
    size_t exhibit;   /* index into spec.exhibits */
    const char *kind; /* "original", or the derivative's kind ("proxy", "poster", ...) */
    const char *name; /* file name inside the exhibit's folder (sanitised on write) */
    uint64_t size;
    uint8_t sha256[32];
};

/*
 * What a bundle holds. All borrowed for the call.
 *
 * exhibits: an array of objects, one per exhibit, written to the manifest as
 * given plus "files" and "custody" (added by the writer). Each must have
 * "reference" (string), "sha256" (64 hex), "size" (integer) and
 * "ingested_seq" (integer: the seq of its INGESTED entry, which must be in
 * custody). custody: the entries touching the exhibits (and the case), in
 * ascending seq order; keys: the KEY_ROTATED entries below the checkpoint's
 * size, ascending. files: the originals and previews, in the order written.
 */
struct dems_bundle_spec {
    const json_t *case_info; /* {"reference", "title", "offence"} */
    const json_t *exhibits;
    const char *origin;     /* the log's origin */
    const char *first_vkey; /* the verifier key of the log's first signing key */
    const char *checkpoint; /* the signed checkpoint note */
    size_t checkpoint_len;
    const struct dems_bundle_entry *keys;
    size_t nkeys;
    const struct dems_bundle_entry *custody;
    size_t ncustody;
    const struct dems_bundle_file *files;
    size_t nfiles;
    int64_t time_ms;       /* every member's timestamp (ms since the epoch, UTC) */
    const char *generator; /* e.g. "dems 0.1.0" */
};

/* Where the files' bytes come from (the server: the blob store). */
struct dems_bundle_source {
    /* Opens files[i]: 0 or a negative DEMS_E*. */
    int (*open)(void *ctx, size_t i);
    /* Reads the open file: bytes read (<= cap), 0 at its end, or a negative DEMS_E*. */
    long (*read)(void *ctx, uint8_t *buf, size_t cap);
    /* Closes the open file (also after an error). */
    void (*close)(void *ctx);
    void *ctx;
};

/* Takes n bytes of the ZIP: 0, or a negative DEMS_E* that stops the write. */
typedef int (*dems_bundle_sink_fn)(void *ctx, const uint8_t *p, size_t n);

/*
 * Writes the bundle described by spec as one ZIP through sink, reading the
 * files from src. A file whose bytes differ in size or SHA-256 from its
 * spec entry fails the write. Returns 0; DEMS_EINVAL (a bad spec),
 * DEMS_ECRYPTO (a file's hash differs), the source's or sink's error, or
 * DEMS_EIO / DEMS_ENOMEM; err (errlen bytes) then says what, in one line.
 */
int dems_bundle_write(const struct dems_bundle_spec *spec, const struct dems_bundle_source *src,
                      dems_bundle_sink_fn sink, void *sink_ctx, char *err, size_t errlen);

/*
 * The C2SP tlog-proof@v1 text for entry index of the tree the signed
 * checkpoint note describes: "c2sp.org/tlog-proof@v1", "index N", the proof
 * hashes in base64, a blank line, the note. Appends to out. Returns 0,
 * DEMS_ETOOBIG or DEMS_ENOMEM.
 */
int dems_bundle_proof_format(uint64_t index, const struct dems_merkle_proof *proof,
                             const char *note, size_t note_len, struct dems_buf *out);

/*
 * Parses tlog-proof@v1 text (an "extra" line is accepted and ignored).
 * *ret_note_off is where the checkpoint note starts in text. Returns 0 or
 * DEMS_EINVAL.
 */
int dems_bundle_proof_parse(const char *text, size_t len, uint64_t *ret_index,
                            struct dems_merkle_proof *ret_proof, size_t *ret_note_off);

/* True when name is a safe relative ZIP member name (no "..", no absolute path, ...). */
bool dems_bundle_name_safe(const char *name);

struct dems_bundle_verify_opts {
    /* A pinned verifier key: must be one of the bundle's key chain; NULL trusts the chain's. */
    const char *vkey;
    /* A witness policy checkpoint.txt must meet (dems_witness_policy_check); NULL: none. */
    const struct dems_witness_policy *witnesses;
};

/* The verdict: code is "" when valid, else a stable name ("file_mismatch", ...). */
struct dems_bundle_report {
    char code[32];
    char detail[1024]; /* one line: what and where */
    char case_ref[72];
    uint64_t exhibits;
    uint64_t files;
    uint64_t bytes;   /* bytes of files hashed */
    uint64_t entries; /* custody entries checked */
    uint64_t keys;    /* signing keys in the chain */
    uint64_t proofs;
    struct dems_checkpoint checkpoint;
};

/*
 * Verifies the bundle at path (docs/bundle.md, "Verification"). When out is
 * not NULL one line per verified exhibit is written to it. Returns 0 when
 * valid, DEMS_ECRYPTO when not (ret_report says why), DEMS_EIO when path
 * cannot be opened, DEMS_ENOMEM.
 */
int dems_bundle_verify_file(const char *path, const struct dems_bundle_verify_opts *opts, FILE *out,
                            struct dems_bundle_report *ret_report);

#endif
