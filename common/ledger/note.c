/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ed25519 log keys, entry signatures, C2SP signed notes
 * (https://c2sp.org/signed-note) and tlog checkpoints
 * (https://c2sp.org/tlog-checkpoint). A note is text ending in a newline,
 * a blank line, then signature lines "— <name> <base64(keyhash || sig)>"
 * (U+2014 EM DASH, a space, the key name, a space). The Ed25519 key hash is
 * SHA-256(name || 0x0A || 0x01 || public key)[0:4], and the verifier key
 * string is "<name>+<hex key hash>+<base64(0x01 || public key)>".
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ledger_int.h"

#define ALG_ED25519 0x01
#define SIG_PREFIX  "\xe2\x80\x94 " /* U+2014 and a space */
#define MAX_SIGS    100

/* Domain separation for entry signatures; see docs/ledger.md. */
static const char entry_context[] = "dems-ledger-entry-v1"; /* + its NUL */

/* Unicode white space a key name may not contain (beyond ASCII). */
static bool is_unicode_space(uint32_t cp)
{
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool ledger_note_name_valid(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;

    if (len == 0 || len > DEMS_NOTE_MAX_NAME || !dems_utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len;) {
        uint32_t cp = p[i];
        size_t n = cp < 0x80 ? 1 : cp < 0xe0 ? 2 : cp < 0xf0 ? 3 : 4;
        if (n == 2)
            cp = ((cp & 0x1fu) << 6) | (p[i + 1] & 0x3fu);
        else if (n == 3)
            cp = ((cp & 0x0fu) << 12) | ((p[i + 1] & 0x3fu) << 6) | (p[i + 2] & 0x3fu);
        if (cp <= 0x20 || cp == 0x7f || cp == '+' || is_unicode_space(cp))
            return false;
        i += n;
    }
    return true;
}

void ledger_keyhash(const char *name, size_t name_len, uint8_t alg, const uint8_t pk[static 32],
                    uint8_t ret_keyhash[static 4])
{
    uint8_t tail[2 + 32], h[32];
    tail[0] = '\n';
    tail[1] = alg;
    memcpy(tail + 2, pk, 32);
    ledger_sha256_2(name, name_len, tail, sizeof(tail), h);
    memcpy(ret_keyhash, h, 4);
}

void dems_note_keyhash(const char *name, size_t name_len, const uint8_t pk[static 32],
                       uint8_t ret_keyhash[static 4])
{
    ledger_keyhash(name, name_len, ALG_ED25519, pk, ret_keyhash);
}

int dems_ledger_key_new(const char *name, const uint8_t *seed, struct dems_ledger_key **ret_key)
{
    size_t len = name != NULL ? strlen(name) : 0;

    if (!ledger_note_name_valid(name != NULL ? name : "", len))
        return DEMS_EINVAL;
    struct dems_ledger_key *k = sodium_malloc(sizeof(*k));
    if (k == NULL)
        return DEMS_ENOMEM;
    memset(k->name, 0, sizeof(k->name));
    memcpy(k->name, name, len);
    if (seed != NULL)
        memcpy(k->seed, seed, sizeof(k->seed));
    else
        randombytes_buf(k->seed, sizeof(k->seed));
    crypto_sign_seed_keypair(k->pk, k->sk, k->seed);
    dems_note_keyhash(k->name, len, k->pk, k->keyhash);
    *ret_key = k;
    return 0;
}

void dems_ledger_key_free(struct dems_ledger_key *k)
{
    if (k != NULL)
        sodium_free(k); /* wipes the whole allocation */
}

void dems_ledger_key_seed(const struct dems_ledger_key *k, uint8_t ret_seed[static 32])
{
    memcpy(ret_seed, k->seed, 32);
}

void dems_ledger_key_public(const struct dems_ledger_key *k, uint8_t ret_pk[static 32])
{
    memcpy(ret_pk, k->pk, 32);
}

void ledger_vkey_format(const char *name, uint8_t alg, const uint8_t keyhash[static 4],
                        const uint8_t pk[static 32], char out[static DEMS_NOTE_VKEY_MAX])
{
    uint8_t typed[33];
    char hex[9], b64[45];
    typed[0] = alg;
    memcpy(typed + 1, pk, 32);
    dems_hex_encode(keyhash, 4, hex);
    ledger_b64_encode(typed, sizeof(typed), b64);
    snprintf(out, DEMS_NOTE_VKEY_MAX, "%s+%s+%s", name, hex, b64);
}

void dems_ledger_key_vkey(const struct dems_ledger_key *k, char out[static DEMS_NOTE_VKEY_MAX])
{
    ledger_vkey_format(k->name, ALG_ED25519, k->keyhash, k->pk, out);
}

void dems_note_verifier_format(const struct dems_note_verifier *v,
                               char out[static DEMS_NOTE_VKEY_MAX])
{
    ledger_vkey_format(v->name, ALG_ED25519, v->keyhash, v->pk, out);
}

void dems_note_verifier_of(const struct dems_ledger_key *k, struct dems_note_verifier *ret_v)
{
    memcpy(ret_v->name, k->name, sizeof(ret_v->name));
    memcpy(ret_v->keyhash, k->keyhash, 4);
    memcpy(ret_v->pk, k->pk, 32);
}

static void entry_message(const uint8_t leaf_hash[static 32], uint8_t msg[static 53])
{
    memcpy(msg, entry_context, sizeof(entry_context)); /* 20 bytes and the NUL */
    memcpy(msg + sizeof(entry_context), leaf_hash, 32);
}

void dems_ledger_entry_sign(const struct dems_ledger_key *k, const uint8_t leaf_hash[static 32],
                            uint8_t ret_sig[static 64])
{
    uint8_t msg[sizeof(entry_context) + 32];
    entry_message(leaf_hash, msg);
    crypto_sign_detached(ret_sig, NULL, msg, sizeof(msg), k->sk);
}

int dems_ledger_entry_verify(const uint8_t pk[static 32], const uint8_t leaf_hash[static 32],
                             const uint8_t sig[static 64])
{
    uint8_t msg[sizeof(entry_context) + 32];
    entry_message(leaf_hash, msg);
    return crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) == 0 ? 0 : DEMS_ECRYPTO;
}

int ledger_vkey_parse(const char *vkey, size_t len, uint8_t alg, struct dems_note_verifier *ret_v)
{
    struct dems_note_verifier v = {.name = {0}};
    const char *p1 = memchr(vkey, '+', len);
    if (p1 == NULL)
        return DEMS_EINVAL;
    size_t nlen = (size_t)(p1 - vkey), rest = len - nlen - 1;
    const char *p2 = memchr(p1 + 1, '+', rest);
    uint8_t typed[64], want[4];
    size_t tlen = 0;

    if (p2 == NULL || p2 - p1 - 1 != 8 || !ledger_note_name_valid(vkey, nlen))
        return DEMS_EINVAL;
    if (dems_hex_decode(p1 + 1, 8, v.keyhash, 4) < 0)
        return DEMS_EINVAL;
    if (ledger_b64_decode(p2 + 1, len - (size_t)(p2 + 1 - vkey), typed, sizeof(typed), &tlen) < 0 ||
        tlen != 33 || typed[0] != alg)
        return DEMS_EINVAL;
    memcpy(v.name, vkey, nlen);
    v.name[nlen] = '\0';
    memcpy(v.pk, typed + 1, 32);
    ledger_keyhash(v.name, nlen, alg, v.pk, want);
    if (memcmp(want, v.keyhash, 4) != 0)
        return DEMS_EINVAL;
    *ret_v = v;
    return 0;
}

int dems_note_verifier_parse(const char *vkey, size_t len, struct dems_note_verifier *ret_v)
{
    return ledger_vkey_parse(vkey, len, ALG_ED25519, ret_v);
}

/* Note text: non-empty UTF-8 ending in a newline, no control character but newline. */
bool ledger_note_text_valid(const char *t, size_t len)
{
    if (len == 0 || t[len - 1] != '\n' || !dems_utf8_valid(t, len))
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)t[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            return false;
    }
    return true;
}

int dems_note_sign(const struct dems_ledger_key *k, const char *text, size_t len,
                   struct dems_buf *out)
{
    uint8_t blob[4 + crypto_sign_BYTES];
    char b64[92 + 1]; /* base64 of 68 bytes */
    size_t mark = out->len;
    int r;

    if (!ledger_note_text_valid(text, len) || len > DEMS_NOTE_MAX_BYTES)
        return DEMS_EINVAL;
    memcpy(blob, k->keyhash, 4);
    crypto_sign_detached(blob + 4, NULL, (const uint8_t *)text, len, k->sk);
    ledger_b64_encode(blob, sizeof(blob), b64);
    if ((r = dems_buf_append(out, text, len)) < 0 || (r = dems_buf_append(out, "\n", 1)) < 0 ||
        (r = dems_buf_append(out, SIG_PREFIX, strlen(SIG_PREFIX))) < 0 ||
        (r = dems_buf_append(out, k->name, strlen(k->name))) < 0 ||
        (r = dems_buf_append(out, " ", 1)) < 0 ||
        (r = dems_buf_append(out, b64, strlen(b64))) < 0 ||
        (r = dems_buf_append(out, "\n", 1)) < 0) {
        out->len = mark;
        return r;
    }
    return 0;
}

/*
 * Checks one signature line (without its newline). Returns 1 when it is a
 * valid signature by v, 0 when it is another key's, DEMS_ECRYPTO when it is
 * v's but does not verify, DEMS_EINVAL when malformed.
 */
int ledger_sig_line_open(const char *line, size_t len, const struct dems_note_verifier *v,
                         uint8_t blob[static 128], size_t *ret_blen)
{
    size_t plen = strlen(SIG_PREFIX);

    if (len < plen || memcmp(line, SIG_PREFIX, plen) != 0)
        return DEMS_EINVAL;
    line += plen;
    len -= plen;
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL)
        return DEMS_EINVAL;
    size_t nlen = (size_t)(sp - line);
    if (!ledger_note_name_valid(line, nlen) ||
        ledger_b64_decode(sp + 1, len - nlen - 1, blob, 128, ret_blen) < 0 || *ret_blen < 5)
        return DEMS_EINVAL;
    if (nlen != strlen(v->name) || memcmp(line, v->name, nlen) != 0 ||
        memcmp(blob, v->keyhash, 4) != 0)
        return 0;
    return 1;
}

static int check_sig_line(const char *line, size_t len, const char *text, size_t text_len,
                          const struct dems_note_verifier *v)
{
    uint8_t blob[128];
    size_t blen = 0;
    int r = ledger_sig_line_open(line, len, v, blob, &blen);
    if (r <= 0)
        return r;
    if (blen != 4 + crypto_sign_BYTES ||
        crypto_sign_verify_detached(blob + 4, (const uint8_t *)text, text_len, v->pk) != 0)
        return DEMS_ECRYPTO;
    return 1;
}

size_t ledger_note_split(const char *note, size_t len)
{
    size_t split = len;

    if (len > DEMS_NOTE_MAX_BYTES || len < 2 || note[len - 1] != '\n')
        return 0;
    /* The signatures follow the last blank line. */
    for (size_t i = len - 1; i-- > 0;) {
        if (note[i] == '\n' && note[i + 1] == '\n') {
            split = i + 1;
            break;
        }
    }
    if (split == len || !ledger_note_text_valid(note, split))
        return 0;
    return split;
}

int dems_note_open(const char *note, size_t len, const struct dems_note_verifier *v,
                   size_t *ret_text_len)
{
    size_t split = ledger_note_split(note, len);

    if (split == 0)
        return DEMS_EINVAL;
    bool good = false;
    unsigned count = 0;
    for (size_t s = split + 1; s < len; count++) {
        const char *nl = memchr(note + s, '\n', len - s);
        size_t l = (size_t)(nl - (note + s));
        if (count >= MAX_SIGS)
            return DEMS_EINVAL;
        int r = check_sig_line(note + s, l, note, split, v);
        if (r < 0)
            return r;
        good = good || r == 1;
        s += l + 1;
    }
    if (count == 0 || !dems_utf8_valid(note + split, len - split))
        return DEMS_EINVAL;
    if (!good)
        return DEMS_ECRYPTO;
    *ret_text_len = split;
    return 0;
}

int dems_checkpoint_format(const struct dems_checkpoint *c, struct dems_buf *out)
{
    char tail[20 + 1 + 44 + 2];
    char b64[45];
    size_t olen = strnlen(c->origin, sizeof(c->origin));
    size_t mark = out->len;
    int r;

    if (olen == 0 || olen > DEMS_NOTE_MAX_NAME || memchr(c->origin, '\n', olen) != NULL ||
        !dems_utf8_valid(c->origin, olen))
        return DEMS_EINVAL;
    for (size_t i = 0; i < olen; i++)
        if ((uint8_t)c->origin[i] < 0x20 || c->origin[i] == 0x7f)
            return DEMS_EINVAL;
    ledger_b64_encode(c->root, 32, b64);
    int n = snprintf(tail, sizeof(tail), "\n%llu\n%s\n", (unsigned long long)c->size, b64);
    if ((r = dems_buf_append(out, c->origin, olen)) < 0 ||
        (r = dems_buf_append(out, tail, (size_t)n)) < 0) {
        out->len = mark;
        return r;
    }
    return 0;
}

int dems_checkpoint_parse(const char *text, size_t len, struct dems_checkpoint *ret_c)
{
    struct dems_checkpoint c;
    const char *line[3];
    size_t llen[3], pos = 0;
    size_t got = 0;

    if (!ledger_note_text_valid(text, len))
        return DEMS_EINVAL;
    for (unsigned i = 0; i < 3; i++) {
        const char *nl = pos < len ? memchr(text + pos, '\n', len - pos) : NULL;
        if (nl == NULL)
            return DEMS_EINVAL;
        line[i] = text + pos;
        llen[i] = (size_t)(nl - line[i]);
        pos += llen[i] + 1;
    }
    /* Extension lines may follow; each must be non-empty. */
    for (size_t i = pos; i < len; i++)
        if (text[i] == '\n' && (i == pos || text[i - 1] == '\n'))
            return DEMS_EINVAL;
    if (llen[0] == 0 || llen[0] > DEMS_NOTE_MAX_NAME)
        return DEMS_EINVAL;
    /* Decimal without leading zeros. */
    if (llen[1] == 0 || (llen[1] > 1 && line[1][0] == '0') ||
        dems_parse_u64(line[1], llen[1], UINT64_MAX, &c.size) < 0)
        return DEMS_EINVAL;
    uint8_t root[48];
    if (ledger_b64_decode(line[2], llen[2], root, sizeof(root), &got) < 0 || got != 32)
        return DEMS_EINVAL;
    memcpy(c.origin, line[0], llen[0]);
    c.origin[llen[0]] = '\0';
    memcpy(c.root, root, 32);
    *ret_c = c;
    return 0;
}

int dems_checkpoint_sign(const struct dems_ledger_key *k, const struct dems_checkpoint *c,
                         struct dems_buf *out)
{
    struct dems_buf body;
    dems_buf_init(&body, DEMS_NOTE_MAX_BYTES);
    int r = dems_checkpoint_format(c, &body);
    if (r == 0)
        r = dems_note_sign(k, (const char *)body.data, body.len, out);
    dems_buf_done(&body);
    return r;
}

int dems_checkpoint_open(const char *note, size_t len, const struct dems_note_verifier *v,
                         const char *origin, struct dems_checkpoint *ret_c)
{
    struct dems_checkpoint c;
    size_t text_len = 0;
    int r = dems_note_open(note, len, v, &text_len);

    if (r < 0)
        return r;
    if (dems_checkpoint_parse(note, text_len, &c) < 0)
        return DEMS_EINVAL;
    if (origin != NULL && strcmp(origin, c.origin) != 0)
        return DEMS_EINVAL;
    *ret_c = c;
    return 0;
}

int dems_ledger_entry_seal(const struct dems_ledger_key *k, struct dems_merkle_frontier *f,
                           const struct dems_ledger_entry *e, struct dems_buf *bytes,
                           struct dems_ledger_sealed *ret_sealed)
{
    size_t mark = bytes->len;
    uint8_t leaf[32];
    int r;

    if (e->seq != f->size)
        return DEMS_ECONFLICT;
    if (f->size >= DEMS_MERKLE_MAX_SIZE)
        return DEMS_ETOOBIG;
    if ((r = dems_ledger_entry_encode(e, bytes)) < 0)
        return r;
    dems_merkle_leaf_hash(bytes->data + mark, bytes->len - mark, leaf);
    memcpy(ret_sealed->leaf, leaf, 32);
    dems_ledger_entry_sign(k, leaf, ret_sealed->sig);
    ret_sealed->ncompleted = dems_merkle_frontier_append(f, leaf, ret_sealed->completed);
    return 0;
}
