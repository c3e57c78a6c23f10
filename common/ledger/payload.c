/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Untrusted text in entry payloads. A payload is at most
 * DEMS_LEDGER_MAX_PAYLOAD canonical bytes, so every string that comes from
 * outside (a request path, a method, a filename, a reason) is bounded
 * before it goes in: an over-long value would make the entry impossible to
 * append. The bound is on the canonical form, escapes included, because a
 * control character costs six bytes there. What is cut is marked, and the
 * SHA-256 of the original is kept, so the recorded value still identifies
 * the full one.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ledger_int.h"

/* U+FFFD REPLACEMENT CHARACTER, for bytes that are not UTF-8 (and NUL). */
static const char replacement[] = "\xef\xbf\xbd";

/* Bytes the canonical form spends on the character c starts (RFC 8785 3.2.2.2). */
static size_t canonical_cost(uint8_t c, size_t n)
{
    if (c == '"' || c == '\\' || c == '\b' || c == '\t' || c == '\n' || c == '\f' || c == '\r')
        return 2;
    if (c < 0x20)
        return 6;
    return n;
}

/*
 * Copies s[0..len) into out (room for 3 * len bytes) as valid UTF-8 without
 * NUL, stopping before the character that would take the canonical form
 * past max. Sets *ret_cut when it stopped early and *ret_altered when a byte
 * was replaced. Returns the bytes written.
 */
static size_t bound_text(const char *s, size_t len, size_t max, char *out, bool *ret_cut,
                         bool *ret_altered)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, o = 0, cost = 0;

    *ret_cut = *ret_altered = false;
    while (i < len) {
        uint32_t cp;
        size_t n = p[i] == 0 ? 0 : dems_utf8_next(p + i, len - i, &cp);
        const char *src = n == 0 ? replacement : s + i;
        size_t w = n == 0 ? 3 : n;
        size_t c = canonical_cost((uint8_t)src[0], w);
        if (c > max - cost) {
            *ret_cut = true;
            break;
        }
        memcpy(out + o, src, w);
        o += w;
        cost += c;
        *ret_altered |= n == 0;
        i += n == 0 ? 1 : n;
    }
    return o;
}

/* Sets payload[key + suffix] = v (taking v). */
static int set_suffixed(json_t *payload, const char *key, const char *suffix, json_t *v)
{
    char name[DEMS_LEDGER_MAX_KEY + 16];
    snprintf(name, sizeof(name), "%s%s", key, suffix);
    return v != NULL && json_object_set_new(payload, name, v) == 0 ? 0 : DEMS_ENOMEM;
}

int dems_ledger_payload_set_text(json_t *payload, const char *key, const char *s, size_t len,
                                 size_t max)
{
    if (strlen(key) > DEMS_LEDGER_MAX_KEY || !json_is_object(payload) ||
        max > DEMS_LEDGER_MAX_PAYLOAD)
        return DEMS_EINVAL;
    /*
     * Only what can fit is examined: every input byte costs at least one
     * canonical byte, so the first max + 1 bytes decide where a cut falls.
     */
    size_t scan = len < max + 1 ? len : max + 1;
    char small[512], *out = scan * 3 <= sizeof(small) ? small : malloc(scan * 3 + 1);
    if (out == NULL)
        return DEMS_ENOMEM;
    bool cut = false, altered = false;
    size_t n = bound_text(s, scan, max, out, &cut, &altered);
    cut = cut || scan < len; /* the unexamined rest was dropped */
    int r = json_object_set_new(payload, key, json_stringn(out, n)) == 0 ? 0 : DEMS_ENOMEM;
    if (out != small)
        free(out);
    if (r == 0 && cut)
        r = set_suffixed(payload, key, "_truncated", json_true());
    if (r == 0 && (cut || altered)) {
        uint8_t h[32];
        char hex[65];
        ledger_sha256_2(s, len, NULL, 0, h);
        dems_hex_encode(h, 32, hex);
        r = set_suffixed(payload, key, "_length", json_integer((json_int_t)len));
        if (r == 0)
            r = set_suffixed(payload, key, "_sha256", json_stringn(hex, 64));
    }
    return r;
}
