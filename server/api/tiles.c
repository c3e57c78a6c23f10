/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ledger in the C2SP tlog-tiles layout (https://c2sp.org/tlog-tiles;
 * docs/ledger.md, "Static tiles"), so standard tooling and mirrors can follow
 * the log without the JSON API:
 *
 *   GET /v1/ledger/tlog/checkpoint               the newest signed checkpoint
 *   GET /v1/ledger/tlog/tile/<L>/<N>[.p/<W>]     hash tiles (public)
 *   GET /v1/ledger/tlog/tile/entries/<N>[.p/<W>] entry bundles (staff, as
 *                                                GET /v1/ledger/entries)
 *
 * Everything is read from what the appender stored: a hash tile of level L
 * is the run of ledger_subtrees rows of level 8L, an entry bundle the run of
 * ledger_entries rows; one prepared statement per resource, and a resource
 * exists exactly when all its rows do. Full tiles and bundles never change
 * (immutable caching); partial ones and the checkpoint are cached briefly.
 * Bundles, being staff-only, are cacheable by the client only (private).
 * The ETag of a tile or bundle is a hash of the leaf or subtree hashes it
 * holds, which commit to its bytes.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/http.h"

#include "api_int.h"

#define TILE_WIDTH 256
#define TILE_BYTES (TILE_WIDTH * 32)
/* Levels whose hashes can be stored: ledger_subtrees levels are 0..62. */
#define TILE_MAX_LEVEL 7
/* Index path elements: 7 groups of 3 digits cover every uint64. */
#define TILE_MAX_ELEMENTS 7

#define CACHE_FULL    "public, max-age=31536000, immutable"
#define CACHE_PARTIAL "public, max-age=60"
#define CACHE_HEAD    "public, max-age=5"
/* Entry bundles are for staff: no shared cache may keep them. */
#define CACHE_FULL_PRIVATE    "private, max-age=31536000, immutable"
#define CACHE_PARTIAL_PRIVATE "private, max-age=60"

/* A parsed tile path: level (hash tiles only), index, width (1..256). */
struct tile {
    unsigned level;
    uint64_t index;
    unsigned width;
};

/* Exactly the decimal digits of s[0..len), no leading zero (but "0"), at most max. */
static bool canonical_number(const char *s, size_t len, uint64_t max, uint64_t *ret)
{
    if (len == 0 || (len > 1 && s[0] == '0'))
        return false;
    return dems_parse_u64(s, len, max, ret) == 0;
}

/*
 * Parses "<N>[.p/<W>]" (N in x001/x234/067 elements) from s[0..len). Only
 * the canonical encoding is accepted: three digits per element, an x on all
 * but the last, no leading x000, W in 1..255 with no leading zero.
 */
static bool parse_index(const char *s, size_t len, struct tile *t)
{
    t->width = TILE_WIDTH;
    const char *dot = memchr(s, '.', len);
    size_t nlen = len;
    if (dot != NULL) {
        size_t at = (size_t)(dot - s);
        uint64_t w;
        if (len - at < 4 || memcmp(dot, ".p/", 3) != 0 ||
            !canonical_number(dot + 3, len - at - 3, TILE_WIDTH - 1, &w) || w == 0)
            return false;
        t->width = (unsigned)w;
        nlen = at;
    }
    uint64_t n = 0;
    size_t elements = 0, i = 0;
    for (;;) {
        bool last = nlen - i == 3;
        /* "NNN" last, "xNNN/" before it. */
        if (elements == TILE_MAX_ELEMENTS || (!last && (nlen - i < 5 || s[i] != 'x')))
            return false;
        const char *d = s + i + (last ? 0 : 1);
        uint64_t group;
        if (dems_parse_u64(d, 3, 999, &group) < 0)
            return false;
        if (elements == 0 && !last && group == 0)
            return false; /* x000 first: not the canonical form */
        if (n > (UINT64_MAX - group) / 1000)
            return false;
        n = n * 1000 + group;
        elements++;
        if (last)
            break;
        if (s[i + 4] != '/')
            return false;
        i += 5;
    }
    t->index = n;
    return true;
}

/* Parses "<L>/<N>[.p/<W>]"; false when it is not a canonical tile path. */
static bool parse_tile(struct dems_str p, struct tile *t)
{
    const char *slash = memchr(p.ptr, '/', p.len);
    uint64_t level;
    if (slash == NULL || !canonical_number(p.ptr, (size_t)(slash - p.ptr), 63, &level))
        return false;
    t->level = (unsigned)level;
    size_t at = (size_t)(slash - p.ptr) + 1;
    return parse_index(p.ptr + at, p.len - at, t);
}

/*
 * The first position the tile covers at its tree level (index * 256) and
 * the rows wanted, as the start values of that level's subtrees: [*from,
 * *to). False when that lies beyond any log (no such tile can exist).
 */
static bool tile_range(const struct tile *t, uint64_t *from, uint64_t *to)
{
    if (t->level > TILE_MAX_LEVEL || t->index > (DEMS_MERKLE_MAX_SIZE >> 8))
        return false;
    unsigned shift = 8 * t->level;
    uint64_t first = t->index * TILE_WIDTH, end = first + t->width;
    if (end > (DEMS_MERKLE_MAX_SIZE >> shift))
        return false;
    *from = first << shift;
    *to = end << shift;
    return true;
}

static void not_found(struct dems_req *req)
{
    dems_resp_error(req, 404, "tile_not_found",
                    "no such tile: the log is not that big (or the width is not one it has)");
}

static void bad_path(struct dems_req *req)
{
    dems_resp_error(req, 400, "invalid_tile_path",
                    "not a tlog-tiles path: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>], N"
                    " as x001/x234/067, L 0..63, W 1..255, without leading zeros");
}

/* ETag: "<kind>-<first 16 bytes of SHA-256 of the hashes>", quoted; true when If-None-Match has it.
 */
static bool set_etag(struct dems_req *req, char kind, const uint8_t *hashes, size_t n)
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, hashes, n);
    char etag[2 + 2 + 32 + 1 + 1] = {'"', kind, '-'};
    dems_hex_encode(h, 16, etag + 3);
    etag[35] = '"';
    etag[36] = '\0';
    dems_resp_header(req, "ETag", etag);
    const struct dems_str *inm = dems_http_head_get(dems_req_head(req), "if-none-match");
    if (inm == NULL)
        return false;
    /* Our tags contain no comma: a plain search of the list suffices. */
    for (size_t i = 0; inm->len >= 36 && i <= inm->len - 36; i++) {
        if (memcmp(inm->ptr + i, etag, 36) == 0)
            return true;
    }
    return false;
}

/* ---- hash tiles ---- */

static struct dems_db_stmt tile_stmt =
    DEMS_DB_STMT("SELECT encode(hash, 'hex') AS hash FROM ledger_subtrees"
                 " WHERE level = $1::smallint AND start >= $2::bigint AND start < $3::bigint"
                 " ORDER BY start",
                 3);

static void on_tile(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    const struct tile *t = dems_req_data(req);
    int col = PQfnumber(res, "hash");
    if (col < 0 || PQntuples(res) != (int)t->width) {
        not_found(req);
        return;
    }
    uint8_t *out = malloc(TILE_BYTES);
    if (out == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    for (unsigned i = 0; i < t->width; i++) {
        if (dems_hex_decode(PQgetvalue(res, (int)i, col), 64, out + 32 * i, 32) < 0) {
            free(out);
            api_db_error(req, res, DEMS_EDB);
            return;
        }
    }
    size_t n = 32 * (size_t)t->width;
    dems_resp_header(req, "Cache-Control", t->width == TILE_WIDTH ? CACHE_FULL : CACHE_PARTIAL);
    if (set_etag(req, 't', out, n))
        dems_resp_json(req, 304, NULL);
    else
        dems_resp_bytes(req, 200, "application/octet-stream", out, n);
    free(out);
}

/* GET /v1/ledger/tlog/tile/<L>/<N>[.p/<W>]: W (or 256) hashes of level 8L. */
void api_tiles_tile(struct dems_req *req)
{
    struct tile *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, t, free);
    uint64_t from, to;
    if (!parse_tile(dems_req_param(req, 0), t)) {
        bad_path(req);
        return;
    }
    if (!tile_range(t, &from, &to)) {
        not_found(req);
        return;
    }
    char level[8], s_from[24], s_to[24];
    snprintf(level, sizeof(level), "%u", 8 * t->level);
    snprintf(s_from, sizeof(s_from), "%llu", (unsigned long long)from);
    snprintf(s_to, sizeof(s_to), "%llu", (unsigned long long)to);
    const char *params[] = {level, s_from, s_to};
    int r = dems_db_req_stmt(req, &tile_stmt, params, on_tile);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- entry bundles ---- */

static struct dems_db_stmt bundle_stmt =
    DEMS_DB_STMT("SELECT encode(bytes, 'hex') AS bytes, encode(leaf_hash, 'hex') AS leaf_hash"
                 " FROM ledger_entries WHERE seq >= $1::bigint AND seq < $2::bigint ORDER BY seq",
                 2);

/* Writes the bundle (uint16 big-endian length + bytes per entry) into out; false when a row is bad.
 */
static bool bundle_fill(const PGresult *res, unsigned width, uint8_t *out, size_t *ret_len,
                        uint8_t *leaves)
{
    int cb = PQfnumber(res, "bytes"), cl = PQfnumber(res, "leaf_hash");
    if (cb < 0 || cl < 0)
        return false;
    size_t len = 0;
    for (unsigned i = 0; i < width; i++) {
        const char *hex = PQgetvalue(res, (int)i, cb);
        size_t n = strlen(hex) / 2;
        if (n == 0 || n > DEMS_LEDGER_MAX_ENTRY ||
            dems_hex_decode(hex, 2 * n, out + len + 2, n) < 0 ||
            dems_hex_decode(PQgetvalue(res, (int)i, cl), 64, leaves + 32 * i, 32) < 0)
            return false;
        out[len] = (uint8_t)(n >> 8);
        out[len + 1] = (uint8_t)n;
        len += 2 + n;
    }
    *ret_len = len;
    return true;
}

static void on_bundle(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    const struct tile *t = dems_req_data(req);
    if (PQntuples(res) != (int)t->width) {
        not_found(req);
        return;
    }
    uint8_t *out = malloc((size_t)t->width * (2 + DEMS_LEDGER_MAX_ENTRY));
    uint8_t *leaves = malloc(TILE_BYTES);
    size_t len = 0;
    if (out == NULL || leaves == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
    } else if (!bundle_fill(res, t->width, out, &len, leaves)) {
        api_db_error(req, res, DEMS_EDB);
    } else {
        dems_resp_header(req, "Cache-Control",
                         t->width == TILE_WIDTH ? CACHE_FULL_PRIVATE : CACHE_PARTIAL_PRIVATE);
        if (set_etag(req, 'e', leaves, 32 * (size_t)t->width))
            dems_resp_json(req, 304, NULL);
        else
            dems_resp_bytes(req, 200, "application/octet-stream", out, len);
    }
    free(out);
    free(leaves);
}

/* GET /v1/ledger/tlog/tile/entries/<N>[.p/<W>]: entries [256 N, 256 N + W). */
void api_tiles_entries(struct dems_req *req)
{
    struct tile *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, t, free);
    struct dems_str p = dems_req_param(req, 0);
    uint64_t from, to;
    if (!parse_index(p.ptr, p.len, t)) {
        bad_path(req);
        return;
    }
    if (!tile_range(t, &from, &to)) {
        not_found(req);
        return;
    }
    char s_from[24], s_to[24];
    snprintf(s_from, sizeof(s_from), "%llu", (unsigned long long)from);
    snprintf(s_to, sizeof(s_to), "%llu", (unsigned long long)to);
    const char *params[] = {s_from, s_to};
    int r = dems_db_req_stmt(req, &bundle_stmt, params, on_bundle);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- the checkpoint ---- */

static struct dems_db_stmt checkpoint_stmt =
    DEMS_DB_STMT("SELECT note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1", 0);
/* With witnesses: the newest checkpoint a quorum cosigned, with their lines (ledger.md 12). */
static struct dems_db_stmt published_stmt = DEMS_DB_STMT(
    "SELECT note FROM ledger_checkpoint_notes WHERE published ORDER BY size DESC LIMIT 1", 0);

static void on_checkpoint(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "no_checkpoint", "the log has no signed checkpoint yet"))
        return;
    const char *note = api_col(res, 0, "note");
    size_t n = strlen(note);
    dems_resp_header(req, "Cache-Control", CACHE_HEAD);
    if (set_etag(req, 'c', (const uint8_t *)note, n))
        dems_resp_json(req, 304, NULL);
    else
        dems_resp_bytes(req, 200, "text/plain; charset=utf-8", note, n);
}

/* GET /v1/ledger/tlog/checkpoint: as GET /v1/ledger/checkpoint, cacheable for seconds. */
void api_tiles_checkpoint(struct dems_req *req)
{
    bool witnessed = dems_req_loop(req)->srv->cfg->witnesses[0] != '\0';
    int r =
        dems_db_req_stmt(req, witnessed ? &published_stmt : &checkpoint_stmt, NULL, on_checkpoint);
    if (r < 0)
        dems_resp_err(req, r);
}
