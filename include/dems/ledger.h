/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The custody ledger's pure half (common/ledger): canonical JSON (RFC 8785
 * subset) and custody entries, the RFC 9162 Merkle tree with proof
 * generation and verification, Ed25519 entry signatures, C2SP signed notes
 * and tlog checkpoints, and the ledger export format with whole-log
 * verification. Nothing here touches a database, a socket or a clock; the
 * server supplies storage through struct dems_merkle_reader. The exact byte
 * formats are in docs/ledger.md.
 *
 * Call sodium_init() (or dems_crypto_init()) once before using keys or
 * signatures. Everything here is reentrant and never blocks; a struct
 * dems_ledger_key may be shared by threads once made.
 */
#ifndef DEMS_LEDGER_H
#define DEMS_LEDGER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dems/buf.h"

/* ---------------------------------------------------------------------- */
/* Canonical JSON (RFC 8785 subset)                                        */
/* ---------------------------------------------------------------------- */

/* Deepest nesting of arrays and objects that canonical JSON accepts. */
#define DEMS_JCS_MAX_DEPTH 16
/* Largest integer magnitude (2^53 - 1, the I-JSON safe range). */
#define DEMS_JCS_MAX_INT 9007199254740991LL

/*
 * Appends the RFC 8785 canonical form of json to out: object members sorted
 * by the UTF-16 code units of their names, no white space, strings escaped
 * per RFC 8785 section 3.2.2.2, integers in plain decimal. Reals, integers
 * beyond +-DEMS_JCS_MAX_INT and nesting deeper than DEMS_JCS_MAX_DEPTH are
 * rejected. Borrows json. Returns 0, DEMS_EINVAL, DEMS_ETOOBIG (out's cap)
 * or DEMS_ENOMEM; on failure out keeps its previous length.
 */
int dems_jcs_encode(const json_t *json, struct dems_buf *out);

/*
 * Parses len bytes of JSON text strictly for canonical use: duplicate
 * member names, reals, NUL in strings and trailing data are rejected.
 * Returns 0 and an owned value in *ret_json (free with json_decref), or
 * DEMS_EINVAL.
 */
int dems_jcs_parse(const char *text, size_t len, json_t **ret_json);

/* ---------------------------------------------------------------------- */
/* Custody entries                                                          */
/* ---------------------------------------------------------------------- */

enum dems_ledger_type {
    DEMS_LEDGER_INGESTED,
    DEMS_LEDGER_VIEWED,
    DEMS_LEDGER_DOWNLOADED,
    DEMS_LEDGER_PREVIEW_MADE,
    DEMS_LEDGER_SHARED,
    DEMS_LEDGER_UNSHARED,
    DEMS_LEDGER_EXPORTED,
    DEMS_LEDGER_FACE_INDEXED,
    DEMS_LEDGER_FACE_SEARCH,
    DEMS_LEDGER_HOLD_PLACED,
    DEMS_LEDGER_DISPOSED,
    DEMS_LEDGER_ACCESS_DENIED,
    DEMS_LEDGER_KEY_ROTATED,
    DEMS_LEDGER_DEVICE_ENROLLED,
    DEMS_LEDGER_DEVICE_REVOKED,
    DEMS_LEDGER_LOCKOUT_LIFTED,        /* an admin lifted a login lockout */
    DEMS_LEDGER_ACCESS_DENIED_SUMMARY, /* refusals over the rate bound, counted */
    DEMS_LEDGER_DEVICE_ASSIGNED,       /* a dock assigned to (or taken from) an officer */
    DEMS_LEDGER_BUNDLE_MADE,           /* a court bundle was written (docs/bundle.md) */
    DEMS_LEDGER_CASE_CREATED,          /* cases: "case" is the case reference */
    DEMS_LEDGER_CASE_UPDATED,          /* edited, closed or reopened */
    DEMS_LEDGER_EXHIBIT_ADDED,         /* an artefact joined a case as an exhibit */
    DEMS_LEDGER_EXHIBIT_UPDATED,       /* its description or tags changed */
    DEMS_LEDGER_EXHIBIT_REMOVED,
    DEMS_LEDGER_MEMBER_ADDED, /* a user joined a case, or their case role changed */
    DEMS_LEDGER_MEMBER_REMOVED,
    DEMS_LEDGER_SHARE_REVOKED, /* a share with a prosecutor ended early */
    DEMS_LEDGER_DISCLOSED,     /* a prosecutor issued a disclosure link to the defence */
    DEMS_LEDGER_DISCLOSURE_REVOKED,
    DEMS_LEDGER_DISCLOSURE_OPENED,    /* a link holder opened the link (a session began) */
    DEMS_LEDGER_DISCLOSURE_VIEWED,    /* a link holder read the exhibit list */
    DEMS_LEDGER_SUBMISSION_REQUESTED, /* an officer made a public submission link */
    DEMS_LEDGER_SUBMISSION_LINK_REVOKED,
    DEMS_LEDGER_SUBMITTED,           /* a member of the public finished a submission */
    DEMS_LEDGER_SUBMISSION_ACCEPTED, /* triage: its material became exhibits */
    DEMS_LEDGER_SUBMISSION_REJECTED,
    DEMS_LEDGER_USER_UPDATED,          /* an admin changed an account (e.g. face_search) */
    DEMS_LEDGER_FACE_INDEXING_CHANGED, /* face indexing of a case switched on or off */
    DEMS_LEDGER_FACE_GALLERY_CREATED,  /* a gallery of reference images (e.g. custody) */
    DEMS_LEDGER_FACE_GALLERY_ACCESS,   /* a user may (no longer) search a gallery */
    DEMS_LEDGER_FACE_ENROLLED,         /* a subject's descriptor joined a gallery */
    DEMS_LEDGER_FACE_SUBJECT_REMOVED,  /* a subject's descriptors and images were deleted */
    DEMS_LEDGER_FACE_GALLERY_IMPORTED, /* a ZIP of images became pending subjects */
    DEMS_LEDGER_RETENTION_POLICY_CREATED,
    DEMS_LEDGER_RETENTION_SET,      /* a case's or an artefact's retention policy */
    DEMS_LEDGER_HOLD_RELEASED,      /* a legal hold lifted (HOLD_PLACED put it on) */
    DEMS_LEDGER_DISPOSAL_APPROVED,  /* an artefact soft-deleted by an approved batch */
    DEMS_LEDGER_DISPOSAL_RECOVERED, /* brought back within its recovery window */
    DEMS_LEDGER_DEVICE_UPDATED,     /* a device renamed */
    DEMS_LEDGER_SETTING_CHANGED,    /* a setting that changes at run time */
    DEMS_LEDGER_USER_CREATED,       /* an admin created an account */
    DEMS_LEDGER_TIMESTAMPED,        /* an RFC 3161 token over a checkpoint was stored */
    DEMS_LEDGER_TYPE_COUNT,
};

enum dems_ledger_actor {
    DEMS_LEDGER_ACTOR_USER,
    DEMS_LEDGER_ACTOR_DEVICE,
    DEMS_LEDGER_ACTOR_SYSTEM,
    /* The holder of a link: a disclosure ("disclosure/<id>") or a public
     * submitter ("submission/<id>"). */
    DEMS_LEDGER_ACTOR_LINK,
    DEMS_LEDGER_ACTOR_COUNT,
};

/* Longest actor id and case id, in bytes. */
#define DEMS_LEDGER_MAX_ID 128
/* Largest canonical payload, in bytes. */
#define DEMS_LEDGER_MAX_PAYLOAD 4096
/* Largest canonical entry, in bytes. */
#define DEMS_LEDGER_MAX_ENTRY 8192
/* Longest payload member name dems_ledger_payload_set_text takes, in bytes. */
#define DEMS_LEDGER_MAX_KEY 64

/*
 * One custody event. Strings and payload are borrowed (from the caller when
 * encoding; from the parsed JSON root when decoding). seq is the entry's
 * leaf index in the Merkle tree (0-based, gapless). time_ms is milliseconds
 * since the Unix epoch, UTC, encoded as "YYYY-MM-DDTHH:MM:SS.mmmZ".
 */
struct dems_ledger_entry {
    uint64_t seq;
    int64_t time_ms;
    enum dems_ledger_type type;
    enum dems_ledger_actor actor_kind;
    const char *actor_id; /* 1..DEMS_LEDGER_MAX_ID bytes of UTF-8 */
    bool has_artefact;
    uint8_t artefact[32]; /* evidence id: SHA-256 of the plaintext */
    const char *case_id;  /* NULL when absent */
    bool has_sha256;
    uint8_t sha256[32];
    bool has_size;
    uint64_t size;
    const json_t *payload; /* an object, or NULL for {} */
};

/* "INGESTED", ...; NULL when type is out of range. */
const char *dems_ledger_type_name(enum dems_ledger_type type);

/* The type named by name[0..len); DEMS_EINVAL when unknown. */
int dems_ledger_type_parse(const char *name, size_t len, enum dems_ledger_type *ret_type);

/*
 * Appends the canonical bytes of e to out (docs/ledger.md, "Entry bytes").
 * Returns 0, DEMS_EINVAL (a field out of range, a payload that is not an
 * object or not canonicalisable, or bigger than DEMS_LEDGER_MAX_PAYLOAD),
 * DEMS_ETOOBIG or DEMS_ENOMEM; on failure out keeps its previous length.
 */
int dems_ledger_entry_encode(const struct dems_ledger_entry *e, struct dems_buf *out);

/*
 * Checks bytes as a verifier will: 0 when they are a canonical custody entry
 * (dems_ledger_entry_decode would accept them), DEMS_EINVAL otherwise. The
 * server runs it on every entry before sealing, so it never signs bytes
 * that dems-verify would reject. Allocation-free for the usual forms.
 */
int dems_ledger_entry_check(const uint8_t *bytes, size_t len);

/*
 * Sets payload[key] (an object) to the untrusted text s[0..len), bounded so
 * that an entry can always hold it: bytes that are not UTF-8, and NUL,
 * become U+FFFD, and the text is cut at a character boundary so that its
 * canonical form (escapes counted, quotes not) is at most max bytes
 * (max <= DEMS_LEDGER_MAX_PAYLOAD). When it was cut, "<key>_truncated": true
 * is set as well; when it was cut or altered, "<key>_length" (the original
 * length in bytes) and "<key>_sha256" (hex SHA-256 of the original bytes).
 * The members added take at most max + 3 * strlen(key) + 140 canonical
 * bytes. key is at most DEMS_LEDGER_MAX_KEY bytes. Borrows s. Returns 0,
 * DEMS_EINVAL (bad key, payload or max) or DEMS_ENOMEM.
 */
int dems_ledger_payload_set_text(json_t *payload, const char *key, const char *s, size_t len,
                                 size_t max);

/*
 * Parses canonical entry bytes. The bytes must be exactly what
 * dems_ledger_entry_encode would produce for the entry they describe (no
 * unknown fields, canonical order and escapes). On success *ret_root owns
 * the parsed JSON (free with json_decref) and ret_entry's strings and
 * payload borrow from it. Returns 0 or DEMS_EINVAL.
 */
int dems_ledger_entry_decode(const uint8_t *bytes, size_t len, json_t **ret_root,
                             struct dems_ledger_entry *ret_entry);

/* Formats time_ms as RFC 3339 "YYYY-MM-DDTHH:MM:SS.mmmZ" (years 1970..9999). */
int dems_ledger_time_format(int64_t time_ms, char out[static 25]);

/* Parses exactly that form; DEMS_EINVAL for anything else. */
int dems_ledger_time_parse(const char *s, size_t len, int64_t *ret_time_ms);

/* ---------------------------------------------------------------------- */
/* RFC 9162 Merkle tree                                                     */
/* ---------------------------------------------------------------------- */

#define DEMS_MERKLE_HASH 32
/* Largest tree the library handles (2^62 leaves) and longest proof. */
#define DEMS_MERKLE_MAX_SIZE   (UINT64_C(1) << 62)
#define DEMS_MERKLE_MAX_PROOF  64
#define DEMS_MERKLE_MAX_LEVELS 63

/* SHA-256(0x00 || data). */
void dems_merkle_leaf_hash(const uint8_t *data, size_t len, uint8_t ret_hash[static 32]);

/* SHA-256(0x01 || left || right). */
void dems_merkle_node_hash(const uint8_t left[static 32], const uint8_t right[static 32],
                           uint8_t ret_hash[static 32]);

/* The root of the empty tree, SHA-256(""). */
void dems_merkle_empty_root(uint8_t ret_hash[static 32]);

/*
 * Storage of complete-subtree hashes, supplied by the caller. get_subtree
 * writes the hash of the complete subtree of leaves [start, start + 2^level)
 * (level 0 is a leaf hash). The library only asks for aligned subtrees (start
 * is a multiple of 2^level) that lie inside the tree it is working on. It
 * returns 0 or a negative DEMS_E*, which the library passes back unchanged.
 * A root costs at most 63 calls; a proof at most 2 * 63.
 */
struct dems_merkle_reader {
    int (*get_subtree)(void *ctx, uint64_t start, unsigned level, uint8_t ret_hash[static 32]);
    void *ctx;
};

/* An inclusion or consistency proof: len hashes, in RFC 9162 order. */
struct dems_merkle_proof {
    size_t len;
    uint8_t hash[DEMS_MERKLE_MAX_PROOF][32];
};

/*
 * Root hash of the first size leaves (MTH(D[0:size]), the empty root when
 * size is 0). Returns 0, DEMS_EINVAL (size beyond DEMS_MERKLE_MAX_SIZE) or
 * the reader's error.
 */
int dems_merkle_root(const struct dems_merkle_reader *rd, uint64_t size,
                     uint8_t ret_root[static 32]);

/*
 * Builds the RFC 9162 section 2.1.3.1 inclusion proof of leaf index in the
 * tree of size leaves. Returns 0, DEMS_EINVAL (index >= size) or the
 * reader's error.
 */
int dems_merkle_prove_inclusion(const struct dems_merkle_reader *rd, uint64_t index, uint64_t size,
                                struct dems_merkle_proof *ret_proof);

/*
 * Builds the RFC 9162 section 2.1.4.1 consistency proof between trees of
 * size1 and size2 leaves (empty when size1 == size2). Returns 0, DEMS_EINVAL
 * (size1 == 0 or size1 > size2) or the reader's error.
 */
int dems_merkle_prove_consistency(const struct dems_merkle_reader *rd, uint64_t size1,
                                  uint64_t size2, struct dems_merkle_proof *ret_proof);

/*
 * Verifies an inclusion proof exactly per RFC 9162 section 2.1.3.2.
 * Returns 0 when leaf_hash is leaf index of the tree of size leaves whose
 * root is root, DEMS_ECRYPTO when the proof does not verify, DEMS_EINVAL
 * when index >= size.
 */
int dems_merkle_verify_inclusion(const uint8_t leaf_hash[static 32], uint64_t index, uint64_t size,
                                 const struct dems_merkle_proof *proof,
                                 const uint8_t root[static 32]);

/*
 * Verifies a consistency proof per RFC 9162 section 2.1.4.2. When size1 ==
 * size2 the proof must be empty and the roots equal. size1 == 0 and size1 >
 * size2 give DEMS_EINVAL (nothing can be proven); a proof that does not
 * verify gives DEMS_ECRYPTO.
 */
int dems_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[static 32],
                                   const uint8_t root2[static 32],
                                   const struct dems_merkle_proof *proof);

/*
 * The right edge of a growing tree: the hashes of the complete subtrees
 * that make up size leaves (hash[l] is valid when bit l of size is set).
 * Enough to append and to compute the root in O(log N) memory. Caller-owned.
 */
struct dems_merkle_frontier {
    uint64_t size;
    uint8_t hash[DEMS_MERKLE_MAX_LEVELS][32];
};

void dems_merkle_frontier_init(struct dems_merkle_frontier *f);

/*
 * Appends one leaf hash. When ret_completed is not NULL (room for
 * DEMS_MERKLE_MAX_LEVELS hashes) it receives the subtrees this append
 * completed: ret_completed[l] is the hash of leaves [size - 2^l, size) for l
 * in 0..n-1, where size is the new size and n is the return value (1 + the
 * number of trailing zero bits of size). A server stores these so proofs
 * need O(log N) reads. Returns n, or DEMS_ETOOBIG at DEMS_MERKLE_MAX_SIZE.
 */
int dems_merkle_frontier_append(struct dems_merkle_frontier *f, const uint8_t leaf_hash[static 32],
                                uint8_t (*ret_completed)[32]);

/* The root of the frontier's tree (the empty root at size 0). */
void dems_merkle_frontier_root(const struct dems_merkle_frontier *f, uint8_t ret_root[static 32]);

/*
 * Loads the frontier of a tree of size leaves from stored subtree hashes
 * (popcount(size) reads), e.g. when a server restarts. Returns 0,
 * DEMS_EINVAL or the reader's error; *ret_f is written only on success.
 */
int dems_merkle_frontier_load(const struct dems_merkle_reader *rd, uint64_t size,
                              struct dems_merkle_frontier *ret_f);

/*
 * An in-memory tree keeping every complete-subtree hash (about 2 hashes per
 * leaf), for tests and offline tools.
 */
struct dems_merkle_mem;

/* Returns owned; free with dems_merkle_mem_free. NULL means out of memory. */
struct dems_merkle_mem *dems_merkle_mem_new(void);
void dems_merkle_mem_free(struct dems_merkle_mem *m);

/* Appends a leaf hash. Returns 0, DEMS_ENOMEM or DEMS_ETOOBIG. */
int dems_merkle_mem_append(struct dems_merkle_mem *m, const uint8_t leaf_hash[static 32]);
uint64_t dems_merkle_mem_size(const struct dems_merkle_mem *m);

/* A reader over m (borrowed; valid while m lives and is not appended to). */
struct dems_merkle_reader dems_merkle_mem_reader(struct dems_merkle_mem *m);

/*
 * Prefetching, so a server fetches all the subtree hashes a root or proof
 * needs in one query instead of one round trip per read: plan (which
 * subtrees, deduplicated), fetch hash[i] for each pos[i] (complete subtree
 * [start, start + 2^level)), then run dems_merkle_root / _prove_* with
 * dems_merkle_prefetch_reader. The positions depend only on the sizes and
 * the index.
 */
#define DEMS_MERKLE_MAX_READS 128

struct dems_merkle_pos {
    uint64_t start;
    unsigned level;
};

struct dems_merkle_prefetch {
    size_t n;
    struct dems_merkle_pos pos[DEMS_MERKLE_MAX_READS];
    uint8_t hash[DEMS_MERKLE_MAX_READS][32];
};

/*
 * Plans the reads of dems_merkle_root(size), _prove_inclusion(index, size)
 * or _prove_consistency(size1, size2) into p; hash[] is left for the
 * caller to fill. Errors as the corresponding function (DEMS_EINVAL for bad
 * sizes); p->n is 0 then.
 */
int dems_merkle_plan_root(uint64_t size, struct dems_merkle_prefetch *p);
int dems_merkle_plan_inclusion(uint64_t index, uint64_t size, struct dems_merkle_prefetch *p);
int dems_merkle_plan_consistency(uint64_t size1, uint64_t size2, struct dems_merkle_prefetch *p);

/* A reader over p's filled hashes (borrowed); DEMS_ENOTFOUND for an unplanned read. */
struct dems_merkle_reader dems_merkle_prefetch_reader(struct dems_merkle_prefetch *p);

/* ---------------------------------------------------------------------- */
/* Keys, entry signatures, C2SP signed notes and checkpoints               */
/* ---------------------------------------------------------------------- */

/* Longest key name / checkpoint origin, in bytes. */
#define DEMS_NOTE_MAX_NAME 255
/* Room for a verifier key string "<name>+<8 hex>+<base64 of 33 bytes>", NUL included. */
#define DEMS_NOTE_VKEY_MAX (DEMS_NOTE_MAX_NAME + 1 + 8 + 1 + 44 + 1)
/* Largest signed note accepted. */
#define DEMS_NOTE_MAX_BYTES 65536

/* An Ed25519 signing key with its note name. Opaque; secrets in sodium_malloc. */
struct dems_ledger_key;

/*
 * Makes a key named name (a valid note key name: non-empty, no white space,
 * no '+', at most DEMS_NOTE_MAX_NAME bytes) from a 32-byte seed (stored
 * encrypted by the server), or from fresh randomness when seed is NULL.
 * Returns 0 and an owned key in *ret_key (free with dems_ledger_key_free),
 * DEMS_EINVAL for a bad name, or DEMS_ENOMEM.
 */
int dems_ledger_key_new(const char *name, const uint8_t *seed, struct dems_ledger_key **ret_key);
void dems_ledger_key_free(struct dems_ledger_key *k);

/* The 32-byte seed (secret; wipe it after storing). */
void dems_ledger_key_seed(const struct dems_ledger_key *k, uint8_t ret_seed[static 32]);
void dems_ledger_key_public(const struct dems_ledger_key *k, uint8_t ret_pk[static 32]);

/* The C2SP verifier key "<name>+<hex keyhash>+<base64(0x01 || pk)>". */
void dems_ledger_key_vkey(const struct dems_ledger_key *k, char out[static DEMS_NOTE_VKEY_MAX]);

/*
 * Entry signatures: Ed25519 over "dems-ledger-entry-v1" 0x00 || leaf hash
 * (docs/ledger.md). Verification returns 0 or DEMS_ECRYPTO.
 */
void dems_ledger_entry_sign(const struct dems_ledger_key *k, const uint8_t leaf_hash[static 32],
                            uint8_t ret_sig[static 64]);
int dems_ledger_entry_verify(const uint8_t pk[static 32], const uint8_t leaf_hash[static 32],
                             const uint8_t sig[static 64]);

/* What one append produces (dems_ledger_entry_seal). */
struct dems_ledger_sealed {
    uint8_t leaf[32];
    uint8_t sig[64];
    int ncompleted; /* complete subtrees this append finished, levels 0..n-1 */
    uint8_t completed[DEMS_MERKLE_MAX_LEVELS + 1][32];
};

/*
 * The pure part of an append, for the server's serialised append path:
 * checks that e->seq == f->size, appends e's canonical bytes to bytes,
 * computes the leaf hash, signs it, and advances f. The caller then stores
 * the bytes, leaf, signature and the completed subtree hashes (subtree l is
 * [f->size - 2^l, f->size) after the call) in one transaction; if that
 * fails it restores its copy of f. Returns 0, DEMS_ECONFLICT (seq is not
 * the next one), or dems_ledger_entry_encode's and
 * dems_merkle_frontier_append's errors; on failure bytes and f are unchanged.
 */
int dems_ledger_entry_seal(const struct dems_ledger_key *k, struct dems_merkle_frontier *f,
                           const struct dems_ledger_entry *e, struct dems_buf *bytes,
                           struct dems_ledger_sealed *ret_sealed);

/* A parsed note verifier key (Ed25519 only). */
struct dems_note_verifier {
    char name[DEMS_NOTE_MAX_NAME + 1];
    uint8_t keyhash[4];
    uint8_t pk[32];
};

/*
 * Parses a verifier key "<name>+<hex keyhash>+<base64(0x01 || pk)>" and
 * checks that the key hash matches. Returns 0 or DEMS_EINVAL.
 */
int dems_note_verifier_parse(const char *vkey, size_t len, struct dems_note_verifier *ret_v);

/* The canonical string of v (lower-case hex key hash). */
void dems_note_verifier_format(const struct dems_note_verifier *v,
                               char out[static DEMS_NOTE_VKEY_MAX]);

/* The verifier of k. */
void dems_note_verifier_of(const struct dems_ledger_key *k, struct dems_note_verifier *ret_v);

/* key hash = SHA-256(name || 0x0A || 0x01 || pk)[0:4]. */
void dems_note_keyhash(const char *name, size_t name_len, const uint8_t pk[static 32],
                       uint8_t ret_keyhash[static 4]);

/*
 * Signs note text (valid UTF-8, no control characters but newline, ending
 * in a newline, not empty) and appends the signed note to out: text, a
 * blank line, "— <name> <base64(keyhash || sig)>" and a newline. Returns 0,
 * DEMS_EINVAL (bad text), DEMS_ETOOBIG or DEMS_ENOMEM.
 */
int dems_note_sign(const struct dems_ledger_key *k, const char *text, size_t len,
                   struct dems_buf *out);

/*
 * Opens a signed note: splits text from signatures, ignores signatures of
 * other keys, and requires a valid signature by v. Returns 0 and the text
 * length in *ret_text_len (the text is note[0..*ret_text_len)), DEMS_EINVAL
 * for a malformed note, or DEMS_ECRYPTO when v did not sign it (no line of
 * v's, or a line of v's that does not verify).
 */
int dems_note_open(const char *note, size_t len, const struct dems_note_verifier *v,
                   size_t *ret_text_len);

/* A tlog checkpoint (C2SP tlog-checkpoint); extension lines are ignored. */
struct dems_checkpoint {
    char origin[DEMS_NOTE_MAX_NAME + 1];
    uint64_t size;
    uint8_t root[32];
};

/*
 * Appends the checkpoint body "<origin>\n<size>\n<base64 root>\n" to out.
 * Returns 0, DEMS_EINVAL (empty origin or one with control characters),
 * DEMS_ETOOBIG or DEMS_ENOMEM.
 */
int dems_checkpoint_format(const struct dems_checkpoint *c, struct dems_buf *out);

/* Parses a checkpoint body (note text). Returns 0 or DEMS_EINVAL. */
int dems_checkpoint_parse(const char *text, size_t len, struct dems_checkpoint *ret_c);

/* Formats and signs c; appends the signed note to out. Errors as dems_note_sign. */
int dems_checkpoint_sign(const struct dems_ledger_key *k, const struct dems_checkpoint *c,
                         struct dems_buf *out);

/*
 * Verifies a signed checkpoint note with v and parses it. When origin is
 * not NULL the checkpoint's origin must equal it. Returns 0, DEMS_EINVAL or
 * DEMS_ECRYPTO.
 */
int dems_checkpoint_open(const char *note, size_t len, const struct dems_note_verifier *v,
                         const char *origin, struct dems_checkpoint *ret_c);

/* ---------------------------------------------------------------------- */
/* Witness cosignatures (C2SP tlog-cosignature, cosignature/v1, Ed25519)    */
/* ---------------------------------------------------------------------- */

/*
 * A cosignature is a note signature line "— <witness name> base64(key hash
 * || timestamp || signature)": the key hash is SHA-256(name || 0x0A || 0x04
 * || pk)[0:4], the timestamp 8 bytes big-endian (POSIX seconds), and the
 * Ed25519 signature covers "cosignature/v1\ntime <timestamp>\n" followed by
 * the checkpoint's note text. A witness's verifier key is
 * "<name>+<hex key hash>+<base64(0x04 || pk)>". Verifiers for cosignatures
 * are struct dems_note_verifier values holding the 0x04 key hash.
 */

/* Most keys a witness policy (dems_cosig_count) may list. */
#define DEMS_COSIG_MAX_POLICY 64

/* The cosignature verifier of k (its name, the 0x04 key hash, its public key). */
void dems_cosig_verifier_of(const struct dems_ledger_key *k, struct dems_note_verifier *ret_v);

/* The witness verifier key string of v (as made by dems_cosig_verifier_of/parse). */
void dems_cosig_verifier_format(const struct dems_note_verifier *v,
                                char out[static DEMS_NOTE_VKEY_MAX]);

/* Parses a witness verifier key (type 0x04) and checks its key hash. Returns 0 or DEMS_EINVAL. */
int dems_cosig_verifier_parse(const char *vkey, size_t len, struct dems_note_verifier *ret_v);

/*
 * Cosigns checkpoint note text (text[0..len), the note up to and including
 * the newline before its blank line) at timestamp (POSIX seconds, at most
 * 2^63 - 1) and appends one signature line, newline included, to out.
 * Returns 0, DEMS_EINVAL (bad text or timestamp) or DEMS_ENOMEM/ETOOBIG.
 */
int dems_cosig_sign(const struct dems_ledger_key *k, const char *text, size_t len,
                    uint64_t timestamp, struct dems_buf *out);

/*
 * Checks one signature line (without its newline) as a cosignature by v
 * over text. Returns 1 (valid; its timestamp in *ret_timestamp when not
 * NULL), 0 (another key's line), DEMS_ECRYPTO (v's name and key hash but
 * the signature does not verify) or DEMS_EINVAL (not a signature line).
 */
int dems_cosig_check_line(const char *line, size_t len, const char *text, size_t text_len,
                          const struct dems_note_verifier *v, uint64_t *ret_timestamp);

/*
 * A witness policy: a checkpoint must carry valid cosignatures from at least
 * quorum distinct keys among keys[0..nkeys).
 */
struct dems_witness_policy {
    const struct dems_note_verifier *keys;
    size_t nkeys;
    size_t quorum;
};

/*
 * Checks note (a signed checkpoint note, its log signature checked by the
 * caller) against p. Returns 0 (met; the count in *ret_count), DEMS_ECRYPTO
 * (not met; the count in *ret_count) or DEMS_EINVAL (a malformed note).
 */
int dems_witness_policy_check(const struct dems_witness_policy *p, const char *note, size_t len,
                              size_t *ret_count);

/*
 * Counts the distinct keys among vs[0..n) (duplicates counted once) with a
 * valid cosignature line in note (a signed note, its signatures after the
 * last blank line). A line of a policy key that does not verify counts for
 * nothing. Returns 0 and the count, or DEMS_EINVAL for a malformed note.
 */
int dems_cosig_count(const char *note, size_t len, const struct dems_note_verifier *vs, size_t n,
                     size_t *ret_count);

/* ---------------------------------------------------------------------- */
/* Export and whole-log verification                                        */
/* ---------------------------------------------------------------------- */

/* Longest export line accepted, newline excluded. */
#define DEMS_LEDGER_MAX_LINE (2 * DEMS_LEDGER_MAX_ENTRY + DEMS_NOTE_MAX_BYTES)

/*
 * Writers for the export (docs/ledger.md, "Export"): one header line, one
 * line per entry in sequence order from 0, then one checkpoint line whose
 * tree size equals the number of entries. Each appends a complete line with
 * its newline to out. Return 0, DEMS_EINVAL, DEMS_ETOOBIG or DEMS_ENOMEM.
 */
int dems_ledger_export_header(const char *origin, const char *vkey, struct dems_buf *out);
int dems_ledger_export_entry(uint64_t seq, const uint8_t *bytes, size_t len,
                             const uint8_t leaf_hash[static 32], const uint8_t sig[static 64],
                             struct dems_buf *out);
int dems_ledger_export_checkpoint(const char *note, size_t len, struct dems_buf *out);

/* What was wrong with an export; the first fault found wins. */
enum dems_ledger_fault {
    DEMS_LEDGER_FAULT_NONE,
    DEMS_LEDGER_FAULT_FORMAT,     /* a line is not valid export JSON */
    DEMS_LEDGER_FAULT_HEADER,     /* missing or bad header / wrong key */
    DEMS_LEDGER_FAULT_ENTRY,      /* entry bytes not canonical, or seq inside differs */
    DEMS_LEDGER_FAULT_HASH,       /* leaf hash does not match the entry bytes */
    DEMS_LEDGER_FAULT_SIGNATURE,  /* entry signature does not verify */
    DEMS_LEDGER_FAULT_GAP,        /* an entry is missing */
    DEMS_LEDGER_FAULT_DUPLICATE,  /* an entry appears twice */
    DEMS_LEDGER_FAULT_REORDER,    /* entries out of order */
    DEMS_LEDGER_FAULT_CHECKPOINT, /* checkpoint missing, malformed or badly signed */
    DEMS_LEDGER_FAULT_SIZE,       /* checkpoint size differs from the entry count */
    DEMS_LEDGER_FAULT_ROOT,       /* recomputed root differs from the checkpoint's */
    DEMS_LEDGER_FAULT_WITNESS,    /* fewer valid cosignatures than the witness policy's quorum */
};

/* A short stable name for fault ("hash_mismatch", ...). */
const char *dems_ledger_fault_name(enum dems_ledger_fault fault);

struct dems_ledger_verify_opts {
    /*
     * Pinned verifier key: the header's key or one the log rotated to;
     * NULL trusts the header's.
     */
    const char *vkey;
    bool skip_entry_sigs; /* check hashes, sequence, root and checkpoint only */
    unsigned threads;     /* threads checking entry signatures (0, 1: the caller's only) */
    /* A witness policy the checkpoint must meet (dems_witness_policy_check); NULL: none. */
    const struct dems_witness_policy *witnesses;
};

struct dems_ledger_report {
    enum dems_ledger_fault fault;
    bool has_seq;                      /* fault names an entry */
    uint64_t seq;                      /* that entry's sequence number */
    uint64_t line;                     /* 1-based line of the export where it was found */
    uint64_t entries;                  /* entries checked */
    uint64_t rotations;                /* KEY_ROTATED entries followed */
    struct dems_checkpoint checkpoint; /* when fault is NONE */
    char detail[1024];                 /* one line saying what and where */
};

/* A streaming verifier: feed lines, then finish. */
struct dems_ledger_verifier;

/* Returns owned (free with dems_ledger_verifier_free); NULL means out of memory. */
struct dems_ledger_verifier *dems_ledger_verifier_new(const struct dems_ledger_verify_opts *opts);
void dems_ledger_verifier_free(struct dems_ledger_verifier *v);

/*
 * Feeds one line (without its newline). Returns 0 while the export still
 * looks good or the first fault is already recorded (later lines are only
 * used to tell a gap from a reorder), DEMS_ENOMEM.
 */
int dems_ledger_verifier_line(struct dems_ledger_verifier *v, const char *line, size_t len);

/*
 * Ends the export and writes the verdict to *ret_report. Returns 0 when the
 * export verified, DEMS_ECRYPTO when a fault was found (described in
 * *ret_report), DEMS_ENOMEM.
 */
int dems_ledger_verifier_finish(struct dems_ledger_verifier *v,
                                struct dems_ledger_report *ret_report);

/*
 * Verifies a whole export read from in (blocking reads). Returns as
 * dems_ledger_verifier_finish, or DEMS_EIO on a read error, DEMS_ETOOBIG for
 * a line longer than DEMS_LEDGER_MAX_LINE (reported as a format fault).
 */
int dems_ledger_verify_file(FILE *in, const struct dems_ledger_verify_opts *opts,
                            struct dems_ledger_report *ret_report);

/*
 * Whole-export verification as dems-verify and demsctl do it:
 * dems_ledger_verify_file on in, and when opts->skip_entry_sigs found the
 * root wrong with no entry to blame (something was rewritten together with
 * its hash), a second pass over the same bytes with the entry signatures,
 * so that the report names the first rewritten entry. The second pass needs
 * in to be seekable (a file; a pipe gets the first verdict only). Returns
 * as dems_ledger_verify_file.
 */
int dems_ledger_verify_export(FILE *in, const struct dems_ledger_verify_opts *opts,
                              struct dems_ledger_report *ret_report);

#endif
