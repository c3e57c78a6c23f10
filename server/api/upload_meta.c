/* SPDX-License-Identifier: Apache-2.0 */
/* Upload-Metadata decoding and validation (see upload_meta.h). */
#include "upload_meta.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dems/http.h"
#include "dems/str.h"

#define META_VALUE_MAX 2048 /* a decoded value: descriptions are up to 2000 bytes */

bool upload_id_ok(struct dems_str id)
{
    if (id.len != 32)
        return false;
    for (size_t i = 0; i < 32; i++) {
        char c = id.ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

static bool digits(const char *s, size_t n, int *ret)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *ret = v;
    return true;
}

bool upload_parse_rfc3339(const char *s, size_t len, int64_t *ret_unix)
{
    int y, mo, d, h, mi, sec;
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    size_t i = 19;
    if (i < len && s[i] == '.') {
        i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start || i - start > 9)
            return false;
    }
    int offset = 0;
    bool zoned = false; /* a time without its zone (Z or an offset) is refused */
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
        zoned = true;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        offset = (oh * 60 + om) * 60 * (s[i] == '+' ? 1 : -1);
        i += 6;
        zoned = true;
    }
    if (!zoned || i != len)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) /* e.g. 31 February normalised to March */
        return false;
    *ret_unix = (int64_t)t - offset;
    return true;
}

/*
 * Checks a filename; on failure returns why (for the error message). Names
 * are shown to people, so beside valid UTF-8 they may hold no control
 * characters and none of the bidirectional marks that make a name display
 * as another ("invoice\u202Egpj.exe" shows as "invoiceexe.jpg").
 */
static const char *filename_problem(const char *v, size_t n)
{
    if (n == 0 || n > 255 || memchr(v, '/', n) != NULL)
        return "must be 1-255 bytes without '/'";
    if (!dems_utf8_valid(v, n))
        return "is not valid UTF-8";
    if (!dems_http_filename_ok(v, n))
        return "contains a control or bidirectional-override character";
    return NULL;
}

/* A free-text description: 1-2000 bytes of UTF-8 text, no control or
 * bidirectional-override characters (it is shown to people). */
static const char *description_problem(const char *v, size_t n)
{
    if (n == 0 || n > 2000)
        return "must be 1-2000 bytes";
    if (!dems_utf8_valid(v, n))
        return "is not valid UTF-8";
    if (!dems_http_filename_ok(v, n))
        return "contains a control or bidirectional-override character";
    return NULL;
}

static bool ident(const char *v, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool mime(const char *v, size_t n)
{
    const char *slash = memchr(v, '/', n);
    if (n == 0 || n > 127 || slash == NULL || slash == v || slash == v + n - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("/.+-_", c) != NULL))
            return false;
    }
    return true;
}

static bool bad(char *err, size_t errlen, const char *field, const char *why)
{
    snprintf(err, errlen, "Upload-Metadata: %s %s", field, why);
    return false;
}

/* Validates one decoded value; stores it in meta under its canonical key. */
static bool accept(json_t *meta, const char *key, const char *v, size_t n, int64_t now,
                   char declared[static 65], char *err, size_t errlen)
{
    if (strcmp(key, "filename") == 0) {
        const char *why = filename_problem(v, n);
        if (why != NULL)
            return bad(err, errlen, key, why);
    } else if (strcmp(key, "description") == 0) {
        const char *why = description_problem(v, n);
        if (why != NULL)
            return bad(err, errlen, key, why);
    } else if (strcmp(key, "filetype") == 0 || strcmp(key, "content_type") == 0) {
        if (!mime(v, n))
            return bad(err, errlen, key, "must be a media type such as video/mp4");
        key = "content_type";
    } else if (strcmp(key, "officer_id") == 0 || strcmp(key, "device_serial") == 0) {
        if (!ident(v, n))
            return bad(err, errlen, key, "must be 1-64 of A-Z a-z 0-9 . _ -");
    } else if (strcmp(key, "recording_start") == 0 || strcmp(key, "recording_end") == 0) {
        int64_t t;
        if (!upload_parse_rfc3339(v, n, &t))
            return bad(err, errlen, key, "must be an RFC 3339 time");
        if (t < 946684800 || t > now + 86400) /* 2000-01-01 .. tomorrow */
            return bad(err, errlen, key, "is not a plausible recording time");
    } else if (strcmp(key, "sha256") == 0) {
        uint8_t tmp[32];
        if (n != 64 || dems_hex_decode(v, n, tmp, 32) < 0)
            return bad(err, errlen, key, "must be 64 hex digits");
        for (size_t i = 0; i < 64; i++)
            declared[i] = (char)((v[i] >= 'A' && v[i] <= 'F') ? v[i] - 'A' + 'a' : v[i]);
        declared[64] = '\0';
    } else {
        char why[96];
        snprintf(why, sizeof(why), "is not a known key (\"%.32s\")", key);
        return bad(err, errlen, "key", why);
    }
    if (json_object_get(meta, key) != NULL)
        return bad(err, errlen, key, "appears twice");
    /* Never drop a value silently: one jansson refuses is an error too. */
    if (json_object_set_new(meta, key, json_stringn(v, n)) != 0)
        return bad(err, errlen, key, "cannot be stored (not UTF-8 text?)");
    return true;
}

static bool check_times(json_t *meta, char *err, size_t errlen)
{
    const char *s = json_string_value(json_object_get(meta, "recording_start"));
    const char *e = json_string_value(json_object_get(meta, "recording_end"));
    int64_t ts, te;
    if (s == NULL || e == NULL)
        return true;
    upload_parse_rfc3339(s, strlen(s), &ts);
    upload_parse_rfc3339(e, strlen(e), &te);
    if (te < ts)
        return bad(err, errlen, "recording_end", "is before recording_start");
    if (te - ts > 7 * 86400)
        return bad(err, errlen, "recording_end", "is more than 7 days after recording_start");
    return true;
}

json_t *upload_meta_parse(struct dems_str header, int64_t now, char declared_sha256[static 65],
                          char *err, size_t errlen)
{
    declared_sha256[0] = '\0';
    json_t *meta = json_object();
    if (meta == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct dems_str rest = header;
    while (rest.len > 0) {
        const char *comma = memchr(rest.ptr, ',', rest.len);
        struct dems_str pair = {rest.ptr, comma != NULL ? (size_t)(comma - rest.ptr) : rest.len};
        rest.ptr += pair.len + (comma != NULL);
        rest.len -= pair.len + (comma != NULL);
        pair = dems_str_trim(pair);
        const char *sp = memchr(pair.ptr, ' ', pair.len);
        size_t klen = sp != NULL ? (size_t)(sp - pair.ptr) : pair.len;
        char key[33];
        if (klen == 0 || klen >= sizeof(key)) {
            bad(err, errlen, "key", "is empty or too long");
            goto fail;
        }
        memcpy(key, pair.ptr, klen);
        key[klen] = '\0';
        char value[META_VALUE_MAX];
        size_t vlen = 0;
        if (sp != NULL) {
            const char *b64 = sp + 1;
            size_t blen = pair.len - klen - 1;
            if (sodium_base642bin((unsigned char *)value, sizeof(value), b64, blen, NULL, &vlen,
                                  NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
                bad(err, errlen, key, "is not valid base64 (or longer than 1 KiB)");
                goto fail;
            }
        }
        if (!accept(meta, key, value, vlen, now, declared_sha256, err, errlen))
            goto fail;
    }
    if (!check_times(meta, err, errlen))
        goto fail;
    return meta;
fail:
    json_decref(meta);
    return NULL;
}
