/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Headers for serving stored files back: the Content-Disposition of a
 * download (RFC 6266, with RFC 8187's filename* for names that are not
 * plain ASCII) and the Content-Type it is served as (an allow-list of
 * evidence formats; anything else is application/octet-stream). Both take
 * what an uploader once declared, so both treat it as hostile: a name can
 * carry quotes, control characters, invalid UTF-8 or bidirectional
 * overrides ("invoice\u202Efdp.exe" shows as "invoiceexe.pdf"); a type can
 * be text/html.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dems/err.h"
#include "dems/http.h"
#include "dems/str.h"

/* Characters a file name may not hold: C0/C1 controls, DEL and the
 * bidirectional embeddings, overrides and isolates, which make a name
 * display as another. */
static bool is_refused(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* What a download's header drops: the refused ones, and the directional
 * marks (legitimate in a right-to-left name, but no use in a header). */
static bool is_hidden_control(uint32_t cp)
{
    return is_refused(cp) || cp == 0x200E || cp == 0x200F || cp == 0x061C;
}

bool dems_http_filename_ok(const char *name, size_t len)
{
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = dems_utf8_next(s + i, len - i, &cp);
        if (k == 0 || is_refused(cp))
            return false;
        i += k;
    }
    return true;
}

/* RFC 8187 attr-char: sent as is in filename*; everything else is %XX. */
static bool attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL);
}

struct out {
    char *p;
    size_t left;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || n >= o->left) {
        o->full = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
    o->left -= n;
    *o->p = '\0';
}

int dems_http_content_disposition(const char *type, const char *name, const char *fallback,
                                  char *out, size_t outlen)
{
    if (outlen == 0)
        return DEMS_ETOOBIG;
    struct out o = {.p = out, .left = outlen};
    *out = '\0';
    const unsigned char *s = (const unsigned char *)name;
    size_t n = strlen(name);
    /* Pass 1: the ASCII fallback; notes whether filename* is needed. */
    bool ascii = true, any = false;
    put(&o, type, strlen(type));
    put(&o, "; filename=\"", 12);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = dems_utf8_next(s + i, n - i, &cp);
        if (k == 0) { /* invalid byte: skipped, as in the filename* below */
            i++;
            ascii = false;
            continue;
        }
        i += k;
        if (is_hidden_control(cp)) {
            ascii = false;
            continue;
        }
        char c = cp < 0x80 && cp != '"' && cp != '\\' ? (char)cp : '_';
        ascii = ascii && cp < 0x80 && cp != '"' && cp != '\\';
        put(&o, &c, 1);
        any = true;
    }
    if (!any)
        put(&o, fallback, strlen(fallback));
    put(&o, "\"", 1);
    /* Pass 2: the exact name, when the fallback could not carry it. */
    if (!ascii && any) {
        put(&o, "; filename*=UTF-8''", 19);
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t k = dems_utf8_next(s + i, n - i, &cp);
            if (k == 0 || is_hidden_control(cp)) {
                i += k == 0 ? 1 : k;
                continue;
            }
            for (size_t j = 0; j < k; j++) {
                char enc[4];
                if (attr_char(s[i + j])) {
                    put(&o, (const char *)s + i + j, 1);
                } else {
                    snprintf(enc, sizeof(enc), "%%%02X", s[i + j]);
                    put(&o, enc, 3);
                }
            }
            i += k;
        }
    }
    return o.full ? DEMS_ETOOBIG : 0;
}

/*
 * Formats evidence arrives in (and court bundles: ZIP) that a browser or
 * player may handle. A type outside the list is never echoed: text/html or
 * image/svg+xml from an uploader must not reach a browser as such, even as
 * an attachment.
 */
static const char *const allowed_types[] = {
    "video/mp4",       "video/quicktime", "video/x-msvideo", "video/x-matroska", "video/webm",
    "video/mp2t",      "video/mpeg",      "video/3gpp",      "video/x-ms-asf",   "video/x-flv",
    "image/jpeg",      "image/png",       "image/gif",       "image/webp",       "image/heic",
    "image/tiff",      "image/bmp",       "audio/mpeg",      "audio/mp4",        "audio/aac",
    "audio/wav",       "audio/x-wav",     "audio/ogg",       "audio/flac",       "audio/webm",
    "application/pdf", "text/plain",      "application/zip",
};

const char *dems_http_served_type(const char *declared)
{
    size_t n = strcspn(declared, ";");
    while (n > 0 && (declared[n - 1] == ' ' || declared[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < sizeof(allowed_types) / sizeof(allowed_types[0]); i++) {
        if (strlen(allowed_types[i]) == n && strncasecmp(declared, allowed_types[i], n) == 0)
            return allowed_types[i];
    }
    return "application/octet-stream";
}
