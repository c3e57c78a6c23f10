/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Witness cosignatures, C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature),
 * the Ed25519 "cosignature/v1" type: a signed-note signature line whose
 * key hash uses the algorithm byte 0x04 and whose signature blob is
 * key hash (4) || timestamp (8, big-endian) || Ed25519 signature (64) over
 * "cosignature/v1\ntime <timestamp>\n" and the checkpoint's note text.
 * Used by demsd as a witness (signing), by demsd as a log (checking what
 * witnesses return) and by dems-verify (a witness policy).
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"

#include "ledger_int.h"

#define ALG_COSIG_V1 0x04
#define SIG_PREFIX   "\xe2\x80\x94 " /* U+2014 and a space */
#define BLOB_LEN     (4 + 8 + 64)
#define MAX_LINES    100

void dems_cosig_verifier_of(const struct dems_ledger_key *k, struct dems_note_verifier *ret_v)
{
    memcpy(ret_v->name, k->name, sizeof(ret_v->name));
    memcpy(ret_v->pk, k->pk, 32);
    ledger_keyhash(k->name, strlen(k->name), ALG_COSIG_V1, k->pk, ret_v->keyhash);
}

void dems_cosig_verifier_format(const struct dems_note_verifier *v,
                                char out[static DEMS_NOTE_VKEY_MAX])
{
    ledger_vkey_format(v->name, ALG_COSIG_V1, v->keyhash, v->pk, out);
}

int dems_cosig_verifier_parse(const char *vkey, size_t len, struct dems_note_verifier *ret_v)
{
    return ledger_vkey_parse(vkey, len, ALG_COSIG_V1, ret_v);
}

/*
 * The signed message: the two header lines and the text, in a buffer of
 * its own. Returns 0, DEMS_EINVAL (bad text) or DEMS_ENOMEM/ETOOBIG.
 */
static int message(const char *text, size_t len, uint64_t timestamp, struct dems_buf *msg)
{
    char head[64];
    if (!ledger_note_text_valid(text, len) || len > DEMS_NOTE_MAX_BYTES ||
        timestamp > (uint64_t)INT64_MAX)
        return DEMS_EINVAL;
    int n =
        snprintf(head, sizeof(head), "cosignature/v1\ntime %llu\n", (unsigned long long)timestamp);
    int r = dems_buf_append(msg, head, (size_t)n);
    if (r == 0)
        r = dems_buf_append(msg, text, len);
    return r;
}

int dems_cosig_sign(const struct dems_ledger_key *k, const char *text, size_t len,
                    uint64_t timestamp, struct dems_buf *out)
{
    struct dems_buf msg;
    dems_buf_init(&msg, DEMS_NOTE_MAX_BYTES + 64);
    int r = message(text, len, timestamp, &msg);
    if (r < 0) {
        dems_buf_done(&msg);
        return r;
    }
    uint8_t blob[BLOB_LEN];
    ledger_keyhash(k->name, strlen(k->name), ALG_COSIG_V1, k->pk, blob);
    for (int i = 0; i < 8; i++)
        blob[4 + i] = (uint8_t)(timestamp >> (56 - 8 * i));
    crypto_sign_detached(blob + 12, NULL, msg.data, msg.len, k->sk);
    dems_buf_done(&msg);

    char b64[(BLOB_LEN + 2) / 3 * 4 + 1];
    ledger_b64_encode(blob, sizeof(blob), b64);
    size_t mark = out->len;
    if ((r = dems_buf_append(out, SIG_PREFIX, strlen(SIG_PREFIX))) < 0 ||
        (r = dems_buf_append(out, k->name, strlen(k->name))) < 0 ||
        (r = dems_buf_append(out, " ", 1)) < 0 ||
        (r = dems_buf_append(out, b64, strlen(b64))) < 0 || (r = dems_buf_append(out, "\n", 1)) < 0)
        out->len = mark;
    return r;
}

int dems_cosig_check_line(const char *line, size_t len, const char *text, size_t text_len,
                          const struct dems_note_verifier *v, uint64_t *ret_timestamp)
{
    uint8_t blob[128];
    size_t blen = 0;
    int r = ledger_sig_line_open(line, len, v, blob, &blen);
    if (r <= 0)
        return r;
    if (blen != BLOB_LEN)
        return DEMS_ECRYPTO;
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
        ts = ts << 8 | blob[4 + i];
    struct dems_buf msg;
    dems_buf_init(&msg, DEMS_NOTE_MAX_BYTES + 64);
    r = message(text, text_len, ts, &msg);
    if (r == 0)
        r = crypto_sign_verify_detached(blob + 12, msg.data, msg.len, v->pk) == 0 ? 1
                                                                                  : DEMS_ECRYPTO;
    else if (r == DEMS_EINVAL)
        r = DEMS_ECRYPTO; /* a timestamp over 2^63 - 1 is no valid cosignature */
    dems_buf_done(&msg);
    if (r == 1 && ret_timestamp != NULL)
        *ret_timestamp = ts;
    return r;
}

int dems_cosig_count(const char *note, size_t len, const struct dems_note_verifier *vs, size_t n,
                     size_t *ret_count)
{
    size_t split = ledger_note_split(note, len);
    if (split == 0)
        return DEMS_EINVAL;
    bool seen[DEMS_COSIG_MAX_POLICY] = {false};
    if (n > DEMS_COSIG_MAX_POLICY)
        return DEMS_EINVAL;
    unsigned lines = 0;
    for (size_t s = split + 1; s < len; lines++) {
        const char *nl = memchr(note + s, '\n', len - s);
        size_t l = (size_t)(nl - (note + s));
        if (lines >= MAX_LINES)
            return DEMS_EINVAL;
        for (size_t i = 0; i < n; i++) {
            if (!seen[i] && dems_cosig_check_line(note + s, l, note, split, &vs[i], NULL) == 1)
                seen[i] = true;
        }
        s += l + 1;
    }
    /* A key listed twice in the policy is one witness. */
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = seen[j] && sodium_memcmp(vs[i].pk, vs[j].pk, 32) == 0;
        if (seen[i] && !dup)
            count++;
    }
    *ret_count = count;
    return 0;
}

int dems_witness_policy_check(const struct dems_witness_policy *p, const char *note, size_t len,
                              size_t *ret_count)
{
    size_t count = 0;
    int r = dems_cosig_count(note, len, p->keys, p->nkeys, &count);
    if (r < 0)
        return r;
    *ret_count = count;
    return count >= p->quorum ? 0 : DEMS_ECRYPTO;
}
