/* SPDX-License-Identifier: Apache-2.0 */
/*
 * C2SP tlog-proof@v1 (https://c2sp.org/tlog-proof): the header line, an
 * optional "extra" line, "index N", one base64 hash per line from the
 * leaf's sibling up, a blank line, and the checkpoint note verbatim.
 * Base64 is standard and padded (RFC 4648 section 4) and decoded strictly:
 * a hash must re-encode to exactly its line.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dems/bundle.h"
#include "dems/err.h"
#include "dems/str.h"

#define PROOF_HEADER "c2sp.org/tlog-proof@v1\n"
#define HASH_B64_LEN 44

int dems_bundle_proof_format(uint64_t index, const struct dems_merkle_proof *proof,
                             const char *note, size_t note_len, struct dems_buf *out)
{
    size_t mark = out->len;
    char line[64];
    int r = dems_buf_append(out, PROOF_HEADER, strlen(PROOF_HEADER));

    snprintf(line, sizeof line, "index %" PRIu64 "\n", index);
    if (r == 0)
        r = dems_buf_append(out, line, strlen(line));
    for (size_t i = 0; r == 0 && i < proof->len; i++) {
        sodium_bin2base64(line, sizeof line, proof->hash[i], 32, sodium_base64_VARIANT_ORIGINAL);
        memcpy(line + HASH_B64_LEN, "\n", 2);
        r = dems_buf_append(out, line, HASH_B64_LEN + 1);
    }
    if (r == 0)
        r = dems_buf_append(out, "\n", 1);
    if (r == 0)
        r = dems_buf_append(out, note, note_len);
    if (r < 0)
        out->len = mark;
    return r;
}

/* The next line of text[*pos..len) without its newline; false at the end or without one. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **ret, size_t *ret_n)
{
    const char *nl = *pos < len ? memchr(text + *pos, '\n', len - *pos) : NULL;
    if (nl == NULL)
        return false;
    *ret = text + *pos;
    *ret_n = (size_t)(nl - *ret);
    *pos = (size_t)(nl - text) + 1;
    return true;
}

static bool decode_hash(const char *s, size_t n, uint8_t out[static 32])
{
    char again[HASH_B64_LEN + 1];
    size_t got = 0;
    if (n != HASH_B64_LEN ||
        sodium_base642bin(out, 32, s, n, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        got != 32)
        return false;
    sodium_bin2base64(again, sizeof again, out, 32, sodium_base64_VARIANT_ORIGINAL);
    return memcmp(again, s, HASH_B64_LEN) == 0;
}

int dems_bundle_proof_parse(const char *text, size_t len, uint64_t *ret_index,
                            struct dems_merkle_proof *ret_proof, size_t *ret_note_off)
{
    size_t pos = 0, n;
    const char *l;
    uint64_t index;

    if (!next_line(text, len, &pos, &l, &n) || n + 1 != strlen(PROOF_HEADER) ||
        memcmp(l, PROOF_HEADER, n) != 0 || !next_line(text, len, &pos, &l, &n))
        return DEMS_EINVAL;
    if (n >= 6 && memcmp(l, "extra ", 6) == 0 && !next_line(text, len, &pos, &l, &n))
        return DEMS_EINVAL;
    if (n < 7 || memcmp(l, "index ", 6) != 0 || (l[6] == '0' && n > 7) ||
        dems_parse_u64(l + 6, n - 6, DEMS_MERKLE_MAX_SIZE - 1, &index) < 0)
        return DEMS_EINVAL;
    ret_proof->len = 0;
    for (;;) {
        if (!next_line(text, len, &pos, &l, &n))
            return DEMS_EINVAL;
        if (n == 0)
            break;
        if (ret_proof->len >= DEMS_MERKLE_MAX_PROOF ||
            !decode_hash(l, n, ret_proof->hash[ret_proof->len]))
            return DEMS_EINVAL;
        ret_proof->len++;
    }
    *ret_index = index;
    *ret_note_off = pos;
    return 0;
}
