/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure parts of unpacking archives (include/dems/unpack.h): the checks
 * a member's path must pass before its bytes are kept, the printable form
 * of any name, names from code page 437, skip reasons and the frame heads.
 * Both the sandboxed reader and the worker that stores members use them,
 * the worker to check again what the reader sent. No I/O.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/unpack.h"

static const char *const reasons[] = {
    [DEMS_UNPACK_SYMLINK] = "symlink",       [DEMS_UNPACK_HARDLINK] = "hardlink",
    [DEMS_UNPACK_DEVICE] = "device",         [DEMS_UNPACK_ENCRYPTED] = "encrypted",
    [DEMS_UNPACK_NESTED] = "nested_archive", [DEMS_UNPACK_UNSAFE_NAME] = "unsafe_name",
    [DEMS_UNPACK_TOO_LARGE] = "too_large",   [DEMS_UNPACK_UNREADABLE] = "unreadable",
};
#define NREASONS (sizeof(reasons) / sizeof(reasons[0]))

const char *dems_unpack_reason_str(enum dems_unpack_reason reason)
{
    size_t i = (size_t)reason;
    return i > 0 && i < NREASONS ? reasons[i] : NULL;
}

enum dems_unpack_reason dems_unpack_reason_parse(const char *name, size_t len)
{
    for (size_t i = 1; i < NREASONS; i++) {
        if (strlen(reasons[i]) == len && memcmp(reasons[i], name, len) == 0)
            return (enum dems_unpack_reason)i;
    }
    return 0;
}

const char *dems_unpack_name_fault_str(enum dems_unpack_name_fault fault)
{
    switch (fault) {
    case DEMS_UNPACK_NAME_OK:
        return "safe";
    case DEMS_UNPACK_NAME_EMPTY:
        return "empty name";
    case DEMS_UNPACK_NAME_TOO_LONG:
        return "name too long";
    case DEMS_UNPACK_NAME_COMPONENT_LONG:
        return "path component too long";
    case DEMS_UNPACK_NAME_ENCODING:
        return "not UTF-8";
    case DEMS_UNPACK_NAME_CONTROL:
        return "control character";
    case DEMS_UNPACK_NAME_BIDI:
        return "bidirectional override";
    case DEMS_UNPACK_NAME_ABSOLUTE:
        return "absolute path";
    case DEMS_UNPACK_NAME_DRIVE:
        return "drive or device prefix";
    case DEMS_UNPACK_NAME_BACKSLASH:
        return "backslash";
    case DEMS_UNPACK_NAME_DOTDOT:
        return "parent directory (..)";
    case DEMS_UNPACK_NAME_DOT:
        return "empty or '.' component";
    }
    return "unsafe";
}

/*
 * Decodes one UTF-8 code point at p (n > 0 bytes left): its length, or 0
 * when the bytes there are not UTF-8 (overlong forms, surrogates and code
 * points past U+10FFFF included).
 */
static size_t utf8_next(const uint8_t *p, size_t n, uint32_t *ret_cp)
{
    uint8_t b = p[0];
    size_t len;
    uint32_t cp, min;
    if (b < 0x80) {
        *ret_cp = b;
        return 1;
    } else if ((b & 0xe0) == 0xc0) {
        len = 2, cp = b & 0x1fu, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        len = 3, cp = b & 0x0fu, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        len = 4, cp = b & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *ret_cp = cp;
    return len;
}

static bool is_control(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

/* Marks, embeddings, overrides and isolates that reorder how a name reads. */
static bool is_bidi(uint32_t cp)
{
    return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Checks the characters: encoding, controls, bidirectional controls, backslash. */
static enum dems_unpack_name_fault check_chars(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_next(p + i, len - i, &cp);
        if (k == 0)
            return DEMS_UNPACK_NAME_ENCODING;
        if (is_control(cp))
            return DEMS_UNPACK_NAME_CONTROL;
        if (is_bidi(cp))
            return DEMS_UNPACK_NAME_BIDI;
        if (cp == '\\')
            return DEMS_UNPACK_NAME_BACKSLASH;
        i += k;
    }
    return DEMS_UNPACK_NAME_OK;
}

enum dems_unpack_name_fault dems_unpack_name_check(const char *name, size_t len)
{
    if (len == 0)
        return DEMS_UNPACK_NAME_EMPTY;
    if (len > DEMS_UNPACK_NAME_MAX)
        return DEMS_UNPACK_NAME_TOO_LONG;
    enum dems_unpack_name_fault f = check_chars((const uint8_t *)name, len);
    if (f != DEMS_UNPACK_NAME_OK)
        return f;
    if (name[0] == '/')
        return DEMS_UNPACK_NAME_ABSOLUTE;
    if (len >= 2 && is_letter(name[0]) && name[1] == ':')
        return DEMS_UNPACK_NAME_DRIVE;
    /* Each component: not empty, not "." or "..", not too long. */
    size_t start = 0;
    while (start <= len) {
        const char *slash = memchr(name + start, '/', len - start);
        size_t end = slash != NULL ? (size_t)(slash - name) : len;
        size_t n = end - start;
        if (n == 2 && name[start] == '.' && name[start + 1] == '.')
            return DEMS_UNPACK_NAME_DOTDOT;
        if (n == 0 || (n == 1 && name[start] == '.'))
            return DEMS_UNPACK_NAME_DOT;
        if (n > DEMS_UNPACK_COMPONENT_MAX)
            return DEMS_UNPACK_NAME_COMPONENT_LONG;
        start = end + 1;
    }
    return DEMS_UNPACK_NAME_OK;
}

/* Code page 437's upper half, as Unicode code points. */
static const uint16_t cp437[128] = {
    0x00c7, 0x00fc, 0x00e9, 0x00e2, 0x00e4, 0x00e0, 0x00e5, 0x00e7, 0x00ea, 0x00eb, 0x00e8, 0x00ef,
    0x00ee, 0x00ec, 0x00c4, 0x00c5, 0x00c9, 0x00e6, 0x00c6, 0x00f4, 0x00f6, 0x00f2, 0x00fb, 0x00f9,
    0x00ff, 0x00d6, 0x00dc, 0x00a2, 0x00a3, 0x00a5, 0x20a7, 0x0192, 0x00e1, 0x00ed, 0x00f3, 0x00fa,
    0x00f1, 0x00d1, 0x00aa, 0x00ba, 0x00bf, 0x2310, 0x00ac, 0x00bd, 0x00bc, 0x00a1, 0x00ab, 0x00bb,
    0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556, 0x2555, 0x2563, 0x2551, 0x2557,
    0x255d, 0x255c, 0x255b, 0x2510, 0x2514, 0x2534, 0x252c, 0x251c, 0x2500, 0x253c, 0x255e, 0x255f,
    0x255a, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256c, 0x2567, 0x2568, 0x2564, 0x2565, 0x2559,
    0x2558, 0x2552, 0x2553, 0x256b, 0x256a, 0x2518, 0x250c, 0x2588, 0x2584, 0x258c, 0x2590, 0x2580,
    0x03b1, 0x00df, 0x0393, 0x03c0, 0x03a3, 0x03c3, 0x00b5, 0x03c4, 0x03a6, 0x0398, 0x03a9, 0x03b4,
    0x221e, 0x03c6, 0x03b5, 0x2229, 0x2261, 0x00b1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00f7, 0x2248,
    0x00b0, 0x2219, 0x00b7, 0x221a, 0x207f, 0x00b2, 0x25a0, 0x00a0,
};

/* Encodes cp (< 0x10000) as UTF-8 into out; returns its length. */
static size_t utf8_put(uint32_t cp, char out[static 3])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

size_t dems_unpack_name_utf8(const uint8_t *raw, size_t len, char *out, size_t cap)
{
    if (cap == 0)
        return 0;
    bool valid = true;
    for (size_t i = 0; i < len && valid;) {
        uint32_t cp;
        size_t k = utf8_next(raw + i, len - i, &cp);
        valid = k > 0;
        i += k;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char enc[3];
        size_t k = 1;
        if (valid || raw[i] < 0x80)
            enc[0] = (char)raw[i];
        else
            k = utf8_put(cp437[raw[i] - 0x80], enc);
        if (k > cap - 1 - n) {
            out[n] = '\0';
            return cap;
        }
        memcpy(out + n, enc, k);
        n += k;
    }
    out[n] = '\0';
    return n;
}

/* The printable form of the character at raw[i] in piece: its length; *ret_k bytes read. */
static size_t piece_at(const uint8_t *raw, size_t len, size_t i, char piece[static 16],
                       size_t *ret_k)
{
    uint32_t cp;
    size_t k = utf8_next(raw + i, len - i, &cp), m;
    if (k == 0) {
        m = (size_t)snprintf(piece, 16, "\\x%02X", raw[i]);
        k = 1;
    } else if (cp == '\\') {
        m = 2, memcpy(piece, "\\\\", 2);
    } else if (cp < 0x80 && is_control(cp)) {
        m = (size_t)snprintf(piece, 16, "\\x%02X", (unsigned)cp);
    } else if (is_control(cp) || is_bidi(cp)) {
        m = (size_t)snprintf(piece, 16, "\\u{%04X}", (unsigned)cp);
    } else {
        m = k, memcpy(piece, raw + i, k);
    }
    *ret_k = k;
    return m;
}

/* The printable form of raw in out (room for max > 3 bytes and the NUL). */
static size_t display(const uint8_t *raw, size_t len, char *out, size_t max)
{
    char piece[16];
    size_t total = 0, n = 0, k;
    for (size_t i = 0; i < len && total <= max; i += k)
        total += piece_at(raw, len, i, piece, &k);
    const size_t room = total <= max ? max : max - 3; /* then "..." */
    for (size_t i = 0; i < len; i += k) {
        size_t m = piece_at(raw, len, i, piece, &k);
        if (m > room - n)
            break;
        memcpy(out + n, piece, m);
        n += m;
    }
    if (total > max) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return n;
}

size_t dems_unpack_name_display(const uint8_t *raw, size_t len,
                                char out[static DEMS_UNPACK_DISPLAY_MAX + 1])
{
    if (len == 0) {
        memcpy(out, "(no name)", 10);
        return 9;
    }
    return display(raw, len, out, DEMS_UNPACK_DISPLAY_MAX);
}

size_t dems_unpack_detail_display(const uint8_t *raw, size_t len,
                                  char out[static DEMS_UNPACK_DETAIL_MAX + 1])
{
    return display(raw, len, out, DEMS_UNPACK_DETAIL_MAX);
}

void dems_unpack_frame_head(uint8_t out[static DEMS_UNPACK_FRAME_HEAD], enum dems_unpack_frame type,
                            uint32_t len)
{
    out[0] = (uint8_t)type;
    out[1] = out[2] = out[3] = 0;
    for (int i = 0; i < 4; i++)
        out[4 + i] = (uint8_t)(len >> (8 * i));
}

int dems_unpack_frame_parse(const uint8_t head[static DEMS_UNPACK_FRAME_HEAD],
                            enum dems_unpack_frame *ret_type, uint32_t *ret_len)
{
    uint32_t len = 0;
    for (int i = 0; i < 4; i++)
        len |= (uint32_t)head[4 + i] << (8 * i);
    if (head[1] != 0 || head[2] != 0 || head[3] != 0 || len > DEMS_UNPACK_FRAME_MAX)
        return DEMS_EINVAL;
    bool ok;
    switch (head[0]) {
    case DEMS_UNPACK_BEGIN:
        ok = len > 4 && len <= 4 + DEMS_UNPACK_NAME_MAX;
        break;
    case DEMS_UNPACK_DATA:
        ok = len >= 1 && len <= DEMS_UNPACK_DATA_MAX;
        break;
    case DEMS_UNPACK_END:
        ok = len == 8;
        break;
    case DEMS_UNPACK_ABANDON:
        ok = len >= 1 && len <= 32 + 1 + DEMS_UNPACK_DETAIL_MAX;
        break;
    case DEMS_UNPACK_SKIP:
        ok = len > 4 && len <= 4 + 32 + 1 + DEMS_UNPACK_DETAIL_MAX + 1 + DEMS_UNPACK_DISPLAY_MAX;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok)
        return DEMS_EINVAL;
    *ret_type = (enum dems_unpack_frame)head[0];
    *ret_len = len;
    return 0;
}
