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
