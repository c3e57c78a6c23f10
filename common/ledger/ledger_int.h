/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared inside common/ledger: one-shot SHA-256 and base64 with
 * the standard alphabet and padding (what signed notes and the export use).
 * Never included from outside the module.
 */
#ifndef DEMS_LEDGER_INT_H
#define DEMS_LEDGER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/ledger.h"

/* An Ed25519 signing key (note.c; cosig.c signs with it too). In sodium_malloc. */
struct dems_ledger_key {
    char name[DEMS_NOTE_MAX_NAME + 1];
    uint8_t keyhash[4]; /* the signed-note key hash (algorithm 0x01) */
    uint8_t pk[32];
    uint8_t sk[64];
    uint8_t seed[32];
};

/* Signed-note key names: non-empty UTF-8, no white space, no '+', no controls. */
bool ledger_note_name_valid(const char *s, size_t len);

/*
 * Opens one signature line of a note ("— <name> <base64>", without its
 * newline) for verifier v: 1 when it names v's key (its decoded bytes, key
 * hash first, in blob, their count in *ret_blen), 0 when it is another
 * key's, DEMS_EINVAL when malformed. Shared by the log's signatures
 * (note.c) and witnesses' cosignatures (cosig.c).
 */
int ledger_sig_line_open(const char *line, size_t len, const struct dems_note_verifier *v,
                         uint8_t blob[static 128], size_t *ret_blen);

/* Note text: non-empty UTF-8 ending in a newline, no control character but newline. */
bool ledger_note_text_valid(const char *t, size_t len);

/*
 * The length of a signed note's text (up to and including the newline
 * before the last blank line), or 0 when the note is malformed (too long,
 * no blank line, no final newline, bad text).
 */
size_t ledger_note_split(const char *note, size_t len);

/* SHA-256(name || 0x0A || alg || pk)[0:4]: the key hash of a key of type alg. */
void ledger_keyhash(const char *name, size_t name_len, uint8_t alg, const uint8_t pk[static 32],
                    uint8_t ret_keyhash[static 4]);

/* "<name>+<8 hex>+<base64(alg || pk)>". */
void ledger_vkey_format(const char *name, uint8_t alg, const uint8_t keyhash[static 4],
                        const uint8_t pk[static 32], char out[static DEMS_NOTE_VKEY_MAX]);

/* Parses a verifier key of type alg and checks its key hash. Returns 0 or DEMS_EINVAL. */
int ledger_vkey_parse(const char *vkey, size_t len, uint8_t alg, struct dems_note_verifier *ret_v);

/* SHA-256 of the concatenation a || b (either may be empty). */
void ledger_sha256_2(const void *a, size_t alen, const void *b, size_t blen,
                     uint8_t out[static 32]);

/* Length of the padded base64 text of n bytes (no NUL). */
static inline size_t ledger_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* Padded standard base64 of n bytes into out (ledger_b64_len(n) + 1 bytes, NUL-terminated). */
void ledger_b64_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decodes padded standard base64 text s[0..len) into out (room for cap
 * bytes). Rejects white space, missing padding and non-canonical trailing
 * bits. Returns 0 and the decoded length in *ret_n, or DEMS_EINVAL.
 */
int ledger_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *ret_n);

/* Decodes exactly 2n lower-case hex digits into out[n]. Returns 0 or DEMS_EINVAL. */
int ledger_hex_decode_lower(const char *s, uint8_t *out, size_t n);

/*
 * True only when bytes are certainly a canonical custody entry (then *ret_seq
 * is its seq); false for bad bytes and for rare forms it leaves to
 * dems_ledger_entry_decode (entrycheck.c).
 */
bool ledger_entry_fast_check(const uint8_t *bytes, size_t len, uint64_t *ret_seq);

#endif
