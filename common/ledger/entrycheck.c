/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A single-pass, allocation-free check that bytes are a canonical custody
 * entry, for whole-log verification (jansson parsing plus re-encoding costs
 * more than hashing and would dominate it). It is deliberately
 * conservative: it returns true only when the bytes are certainly what
 * dems_ledger_entry_encode produces, and false both for bad bytes and for
 * rare forms it does not handle (keys that need escapes or are not ASCII,
 * \u escapes, very deep payloads). Callers then fall back to
 * dems_ledger_entry_decode, which decides; the unit tests hold the two to
 * agreement.
 */
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ledger_int.h"

struct cur {
    const char *p, *end;
    int depth;
};

static bool lit(struct cur *c, const char *s, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

#define LIT(c, s) lit(c, s, sizeof(s) - 1)

/*
 * A canonical string: no escapes but \" \\ \b \f \n \r \t, no raw control
 * characters, valid UTF-8. The text between the quotes goes to *ret_raw and
 * *ret_len; *ret_plain tells whether it holds no escape at all.
 */
static bool str(struct cur *c, const char **ret_raw, size_t *ret_len, bool *ret_plain)
{
    bool plain = true;

    if (!LIT(c, "\""))
        return false;
    const char *start = c->p;
    for (;;) {
        if (c->p >= c->end)
            return false;
        uint8_t ch = (uint8_t)*c->p;
        if (ch == '"')
            break;
        if (ch < 0x20)
            return false;
        if (ch == '\\') {
            if (c->end - c->p < 2 || strchr("\"\\bfnrt", c->p[1]) == NULL || c->p[1] == '\0')
                return false;
            plain = false;
            c->p += 2;
            continue;
        }
        c->p++;
    }
    if (!dems_utf8_valid(start, (size_t)(c->p - start)))
        return false;
    *ret_raw = start;
    *ret_len = (size_t)(c->p - start);
    *ret_plain = plain;
    c->p++;
    return true;
}

/* A canonical integer: -?(0|[1-9][0-9]*), not -0, within +-(2^53 - 1). */
static bool integer(struct cur *c, bool *ret_neg, uint64_t *ret_v)
{
    bool neg = c->p < c->end && *c->p == '-';
    const char *d = c->p + (neg ? 1 : 0);
    size_t n = 0;

    while (d + n < c->end && d[n] >= '0' && d[n] <= '9')
        n++;
    if (n == 0 || (n > 1 && d[0] == '0') || (neg && n == 1 && d[0] == '0'))
        return false;
    if (dems_parse_u64(d, n, (uint64_t)DEMS_JCS_MAX_INT, ret_v) < 0)
        return false;
    *ret_neg = neg;
    c->p = d + n;
    return true;
}

static bool value(struct cur *c);

/* Object member names must be plain ASCII and strictly increasing. */
static bool object(struct cur *c)
{
    const char *prev = NULL;
    size_t prev_len = 0;

    if (c->depth >= DEMS_JCS_MAX_DEPTH || !LIT(c, "{"))
        return false;
    c->depth++;
    if (LIT(c, "}")) {
        c->depth--;
        return true;
    }
    for (;;) {
        const char *k;
        size_t klen;
        bool plain;
        if (!str(c, &k, &klen, &plain) || !plain)
            return false;
        for (size_t i = 0; i < klen; i++)
            if ((uint8_t)k[i] >= 0x80)
                return false;
        if (prev != NULL) {
            int r = memcmp(prev, k, prev_len < klen ? prev_len : klen);
            if (r > 0 || (r == 0 && prev_len >= klen))
                return false;
        }
        prev = k;
        prev_len = klen;
        if (!LIT(c, ":") || !value(c))
            return false;
        if (LIT(c, "}"))
            break;
        if (!LIT(c, ","))
            return false;
    }
    c->depth--;
    return true;
}

static bool value(struct cur *c)
{
    if (c->p >= c->end)
        return false;
    switch (*c->p) {
    case '{':
        return object(c);
    case '[':
        if (c->depth >= DEMS_JCS_MAX_DEPTH)
            return false;
        c->p++;
        c->depth++;
        if (!LIT(c, "]")) {
            do {
                if (!value(c))
                    return false;
            } while (LIT(c, ","));
            if (!LIT(c, "]"))
                return false;
        }
        c->depth--;
        return true;
    case '"': {
        const char *s;
        size_t n;
        bool plain;
        return str(c, &s, &n, &plain);
    }
    case 't':
        return LIT(c, "true");
    case 'f':
        return LIT(c, "false");
    case 'n':
        return LIT(c, "null");
    default: {
        bool neg;
        uint64_t v;
        return integer(c, &neg, &v);
    }
    }
}

/* An id as entry.c accepts it: 1..DEMS_LEDGER_MAX_ID bytes, no escapes, no DEL. */
static bool id(struct cur *c)
{
    const char *s;
    size_t n;
    bool plain;
    return str(c, &s, &n, &plain) && plain && n >= 1 && n <= DEMS_LEDGER_MAX_ID &&
           memchr(s, 0x7f, n) == NULL;
}

static bool hex64(struct cur *c)
{
    if (!LIT(c, "\"") || c->end - c->p < 65 || c->p[64] != '"')
        return false;
    for (int i = 0; i < 64; i++)
        if (!((c->p[i] >= '0' && c->p[i] <= '9') || (c->p[i] >= 'a' && c->p[i] <= 'f')))
            return false;
    c->p += 65;
    return true;
}

static bool u64(struct cur *c, uint64_t *ret)
{
    bool neg;
    return integer(c, &neg, ret) && !neg;
}

bool ledger_entry_fast_check(const uint8_t *bytes, size_t len, uint64_t *ret_seq)
{
    struct cur c = {(const char *)bytes, (const char *)bytes + len, 1};
    const char *s;
    size_t n;
    bool plain;
    uint64_t seq, x;
    int64_t t;
    enum dems_ledger_type type;

    if (len > DEMS_LEDGER_MAX_ENTRY || !LIT(&c, "{\"actor\":{\"id\":") || !id(&c) ||
        !LIT(&c, ",\"kind\":"))
        return false;
    if (!LIT(&c, "\"user\"}") && !LIT(&c, "\"device\"}") && !LIT(&c, "\"system\"}"))
        return false;
    if (LIT(&c, ",\"artefact\":") && !hex64(&c))
        return false;
    if (LIT(&c, ",\"case\":") && !id(&c))
        return false;
    if (!LIT(&c, ",\"payload\":"))
        return false;
    const char *payload = c.p;
    if (*c.p != '{' || !object(&c) || (size_t)(c.p - payload) > DEMS_LEDGER_MAX_PAYLOAD)
        return false;
    if (!LIT(&c, ",\"seq\":") || !u64(&c, &seq))
        return false;
    if (LIT(&c, ",\"sha256\":") && !hex64(&c))
        return false;
    if (LIT(&c, ",\"size\":") && !u64(&c, &x))
        return false;
    if (!LIT(&c, ",\"time\":") || !str(&c, &s, &n, &plain) || !plain ||
        dems_ledger_time_parse(s, n, &t) < 0)
        return false;
    if (!LIT(&c, ",\"type\":") || !str(&c, &s, &n, &plain) || !plain ||
        dems_ledger_type_parse(s, n, &type) < 0)
        return false;
    if (!LIT(&c, ",\"v\":1}") || c.p != c.end)
        return false;
    *ret_seq = seq;
    return true;
}

int dems_ledger_entry_check(const uint8_t *bytes, size_t len)
{
    uint64_t seq;
    if (ledger_entry_fast_check(bytes, len, &seq))
        return 0;
    /* A form the fast check leaves to the full decoder (or bad bytes). */
    json_t *root = NULL;
    struct dems_ledger_entry e;
    int r = dems_ledger_entry_decode(bytes, len, &root, &e);
    json_decref(root);
    return r == DEMS_ENOMEM ? r : r < 0 ? DEMS_EINVAL : 0;
}
