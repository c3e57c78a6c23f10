/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session cookie: finding dems_session in a request's Cookie headers
 * (RFC 6265 §4.2.1, read leniently as browsers write it) and formatting the
 * Set-Cookie lines that login and logout send. The cookie carries the same
 * session token as the bearer header; dems_auth_begin decides when it may
 * be used (GET and HEAD only).
 */
#include <stdio.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/auth.h"

/* A token's text: the prefix and base64url, as dems_token_new writes it. */
static bool token_chars_ok(struct dems_str v)
{
    if (v.len == 0 || v.len >= DEMS_TOKEN_TEXT_MAX)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Scans one Cookie header value; counts and keeps our cookie's value. */
static void scan(struct dems_str s, const char *cookie, struct dems_str *found, size_t *count)
{
    size_t name_len = strlen(cookie);
    while (s.len > 0) {
        const char *semi = memchr(s.ptr, ';', s.len);
        size_t plen = semi != NULL ? (size_t)(semi - s.ptr) : s.len;
        struct dems_str pair = dems_str_trim((struct dems_str){s.ptr, plen});
        const char *eq = memchr(pair.ptr, '=', pair.len);
        if (eq != NULL) {
            struct dems_str name =
                dems_str_trim((struct dems_str){pair.ptr, (size_t)(eq - pair.ptr)});
            if (name.len == name_len && memcmp(name.ptr, cookie, name_len) == 0) {
                const char *v = eq + 1;
                *found = dems_str_trim((struct dems_str){v, (size_t)(pair.ptr + pair.len - v)});
                (*count)++;
            }
        }
        if (semi == NULL)
            break;
        s.ptr += plen + 1;
        s.len -= plen + 1;
    }
}

int dems_auth_cookie_token(const struct dems_http_head *h, struct dems_str *ret_token)
{
    return dems_auth_cookie_named(h, DEMS_SESSION_COOKIE, ret_token);
}

int dems_auth_cookie_named(const struct dems_http_head *h, const char *name,
                           struct dems_str *ret_token)
{
    struct dems_str found = {"", 0};
    size_t count = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        if (dems_str_eq_ci(h->headers[i].name, "cookie"))
            scan(h->headers[i].value, name, &found, &count);
    }
    if (count == 0)
        return DEMS_ENOTFOUND;
    /* Two of ours (one planted by a sibling host, say) cannot be told apart:
     * refuse rather than guess. */
    if (count > 1 || !token_chars_ok(found))
        return DEMS_EAUTH;
    *ret_token = found;
    return 0;
}

int dems_auth_cookie_format(const char *token, uint64_t max_age, char *out, size_t outlen)
{
    int n =
        snprintf(out, outlen, "%s=%s; Path=/v1/; Secure; HttpOnly; SameSite=Strict; Max-Age=%llu",
                 DEMS_SESSION_COOKIE, token, (unsigned long long)max_age);
    return n < 0 || (size_t)n >= outlen ? DEMS_ETOOBIG : 0;
}

void dems_auth_csrf(const char *token, size_t len, char out[static 65])
{
    static const char label[] = "dems-csrf";
    struct dems_sha256 h;
    uint8_t d[32];
    if (dems_sha256_init(&h) < 0) {
        out[0] = '\0';
        return;
    }
    dems_sha256_update(&h, label, sizeof(label)); /* the NUL too */
    dems_sha256_update(&h, token, len);
    dems_sha256_final(&h, d);
    dems_sha256_done(&h);
    dems_hex_encode(d, sizeof(d), out);
}

int dems_auth_disclosure_cookie_format(const char *token, uint64_t max_age, char *out,
                                       size_t outlen)
{
    int n = snprintf(out, outlen,
                     "%s=%s; Path=/v1/disclosure; Secure; HttpOnly; SameSite=Strict; Max-Age=%llu",
                     DEMS_DISCLOSURE_COOKIE, token, (unsigned long long)max_age);
    return n < 0 || (size_t)n >= outlen ? DEMS_ETOOBIG : 0;
}
