/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small pure helpers of the object-store client: URL escaping, a scanner
 * for the stores' flat XML answers, HTTP and ISO 8601 times, base64, hex
 * SHA-256. No I/O.
 */
#include <openssl/sha.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/err.h"

#include "obj_int.h"

int obj_escape(const char *src, bool keep_slash, char *dst, size_t dstlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p != '\0'; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
                     (keep_slash && *p == '/');
        size_t need = plain ? 1 : 3;
        if (o + need >= dstlen)
            return DEMS_ETOOBIG;
        if (plain) {
            dst[o++] = (char)*p;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[*p >> 4];
            dst[o++] = hex[*p & 15];
        }
    }
    if (o >= dstlen)
        return DEMS_ETOOBIG;
    dst[o] = '\0';
    return (int)o;
}

const char *obj_xml_find(const char *p, const char *end, const char *tag, const char **val,
                         size_t *vlen)
{
    size_t tl = strlen(tag);
    while (p != NULL && p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        if (lt == NULL)
            return NULL;
        const char *name = lt + 1;
        if ((size_t)(end - name) > tl && memcmp(name, tag, tl) == 0 &&
            (name[tl] == '>' || name[tl] == ' ' || name[tl] == '/')) {
            const char *gt = memchr(name + tl, '>', (size_t)(end - (name + tl)));
            if (gt == NULL)
                return NULL;
            if (gt[-1] == '/') { /* <Tag/>: empty */
                *val = gt + 1;
                *vlen = 0;
                return gt + 1;
            }
            const char *body = gt + 1;
            for (const char *q = body; q < end; q++) {
                q = memchr(q, '<', (size_t)(end - q));
                if (q == NULL)
                    return NULL;
                if ((size_t)(end - q) >= tl + 3 && q[1] == '/' && memcmp(q + 2, tag, tl) == 0 &&
                    q[2 + tl] == '>') {
                    *val = body;
                    *vlen = (size_t)(q - body);
                    return q + 3 + tl;
                }
            }
            return NULL;
        }
        p = lt + 1;
    }
    return NULL;
}

int obj_xml_text(const char *val, size_t vlen, char *dst, size_t dstlen)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t o = 0;
    for (size_t i = 0; i < vlen;) {
        char c = val[i];
        size_t used = 1;
        if (c == '&') {
            for (size_t e = 0; e < sizeof(ents) / sizeof(ents[0]); e++) {
                size_t el = strlen(ents[e].ent);
                if (vlen - i >= el && memcmp(val + i, ents[e].ent, el) == 0) {
                    c = ents[e].c;
                    used = el;
                    break;
                }
            }
        }
        if (o + 1 >= dstlen)
            return DEMS_ETOOBIG;
        dst[o++] = c;
        i += used;
    }
    if (dstlen == 0)
        return DEMS_ETOOBIG;
    dst[o] = '\0';
    return (int)o;
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int64_t obj_parse_time(const char *s, size_t n)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm = {0};
    char buf[64];
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    int y, mo, d, h, mi, se;
    /* ISO 8601: 2024-01-02T03:04:05[.fff]Z */
    if (n >= 20 && buf[4] == '-' && buf[7] == '-' && buf[10] == 'T') {
        if (digits(buf, 4, &y) < 0 || digits(buf + 5, 2, &mo) < 0 || digits(buf + 8, 2, &d) < 0 ||
            digits(buf + 11, 2, &h) < 0 || digits(buf + 14, 2, &mi) < 0 ||
            digits(buf + 17, 2, &se) < 0 || buf[n - 1] != 'Z')
            return -1;
    } else if (n == 29 && buf[3] == ',' && memcmp(buf + 26, "GMT", 3) == 0) {
        /* RFC 1123: Tue, 02 Jan 2024 03:04:05 GMT */
        const char *m = strstr(months, (char[]){buf[8], buf[9], buf[10], '\0'});
        if (m == NULL || (m - months) % 3 != 0 || digits(buf + 5, 2, &d) < 0 ||
            digits(buf + 12, 4, &y) < 0 || digits(buf + 17, 2, &h) < 0 ||
            digits(buf + 20, 2, &mi) < 0 || digits(buf + 23, 2, &se) < 0)
            return -1;
        mo = (int)(m - months) / 3 + 1;
    } else {
        return -1;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    return (int64_t)timegm(&tm);
}

int obj_b64_encode(const uint8_t *src, size_t n, char *dst, size_t dstlen)
{
    if (dstlen < sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL))
        return DEMS_ETOOBIG;
    sodium_bin2base64(dst, dstlen, src, n, sodium_base64_VARIANT_ORIGINAL);
    return (int)strlen(dst);
}

int obj_b64_decode(const char *src, uint8_t *dst, size_t dstlen)
{
    size_t len;
    if (sodium_base642bin(dst, dstlen, src, strlen(src), " \t\r\n", &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return DEMS_EINVAL;
    return (int)len;
}

void obj_sha256_hex(const void *p, size_t n, char out[static 65])
{
    uint8_t md[32];
    SHA256(p, n, md);
    sodium_bin2hex(out, 65, md, sizeof(md));
}

int obj_entries_add(struct obj_entries *l, const char *key, size_t keylen, uint64_t size,
                    int64_t mtime)
{
    char *k = malloc(keylen + 1);
    if (k == NULL)
        return DEMS_ENOMEM;
    if (obj_xml_text(key, keylen, k, keylen + 1) <= 0) {
        free(k);
        return DEMS_EIO;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 256;
        struct dems_objstore_entry *e = reallocarray(l->e, cap, sizeof(*e));
        if (e == NULL) {
            free(k);
            return DEMS_ENOMEM;
        }
        l->e = e;
        l->cap = cap;
    }
    l->e[l->n++] = (struct dems_objstore_entry){.key = k, .size = size, .mtime = mtime};
    return 0;
}

void obj_entries_free(struct obj_entries *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->e[i].key);
    free(l->e);
    l->e = NULL;
    l->n = l->cap = 0;
}
