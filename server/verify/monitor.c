/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dems-verify monitor: follows a dems log through its C2SP tlog-tiles
 * (docs/ledger.md, "Static tiles" and section 7), the one subcommand that
 * uses the network (libcurl). Each run fetches the signed checkpoint and
 * checks its signature, checks it against the last one it saw (kept in the
 * state file): same size, same root; larger, an RFC 9162 consistency proof
 * computed from hash tiles and verified by common/ledger. Then it fetches
 * the new entries from entry bundles, checks each against the level-0 tile
 * and as a canonical entry, folds their leaf hashes onto the old tree's
 * frontier and requires the checkpoint's root, reports the entries of the
 * watched types, and only then replaces the state file (temporary file,
 * fsync, rename). Bundles do not carry entry signatures: the entries are
 * authenticated by the signed checkpoint through the tree. With a witness
 * policy (--witness VKEY ... --quorum N) the checkpoint must also carry
 * enough valid cosignatures (docs/ledger.md, "Witnesses").
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "verify_int.h"

#define TILE_WIDTH   256
#define MAX_WATCHES  32
#define CACHE_TILES  16
#define STATE_MAX    4096
#define HTTP_TIMEOUT 60L
#define STATE_MAGIC  "dems-verify monitor state 1"

struct watch {
    enum dems_ledger_type type;
    bool has_artefact;
    uint8_t artefact[32];
};

struct state {
    char origin[DEMS_NOTE_MAX_NAME + 1];
    char vkey[DEMS_NOTE_VKEY_MAX];
    uint64_t size;
    uint8_t root[32];
};

struct cached_tile {
    unsigned level;
    uint64_t index;
    unsigned width;
    uint8_t *hashes; /* width * 32 bytes */
};

struct monitor {
    const char *base; /* the tlog prefix, without a trailing slash */
    size_t base_len;
    const char *cacert;
    const char *token;
    const struct dems_witness_policy *witnesses; /* NULL: no policy */
    CURL *curl;
    uint64_t size; /* the tree the tiles are read for: the new checkpoint's */
    struct cached_tile cache[CACHE_TILES];
    size_t next_slot;
    /* The first failure: EXIT_VERIFY_INVALID or EXIT_VERIFY_NETWORK, and why. */
    int fail;
    char why[512];
};

static int fail(struct monitor *m, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct monitor *m, int kind, const char *fmt, ...)
{
    if (m->fail == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->why, sizeof(m->why), fmt, ap);
        va_end(ap);
        m->fail = kind;
    }
    return DEMS_EIO;
}

/* ---- HTTP ---- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct dems_buf *out = arg;
    return dems_buf_append(out, data, size * n) == 0 ? size * n : 0;
}

/* The tile path element form of n: x001/x234/067. */
/* Room for the longest, UINT64_MAX: 6 "xNNN/" elements, "NNN" and the NUL. */
#define INDEX_PATH_MAX 34

static void index_path(uint64_t n, char out[static INDEX_PATH_MAX])
{
    unsigned groups[7];
    size_t k = 0;
    do {
        groups[k++] = (unsigned)(n % 1000);
        n /= 1000;
    } while (n > 0);
    size_t len = 0;
    while (k-- > 0)
        len +=
            (size_t)snprintf(out + len, INDEX_PATH_MAX - len, k > 0 ? "x%03u/" : "%03u", groups[k]);
}

/*
 * GETs base + path into out (at most max bytes; the token sent when
 * with_token). 0, or DEMS_EIO with the failure recorded (network kind: no
 * answer, or not 200).
 */
static int get(struct monitor *m, const char *path, bool with_token, size_t max,
               struct dems_buf *out)
{
    char url[2048];
    if ((size_t)snprintf(url, sizeof(url), "%s/%s", m->base, path) >= sizeof(url))
        return fail(m, EXIT_VERIFY_USAGE, "the URL is too long");
    dems_buf_reset(out);
    out->max = max;
    struct curl_slist *headers = NULL;
    char auth[600];
    if (with_token && m->token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", m->token);
        headers = curl_slist_append(NULL, auth);
        sodium_memzero(auth, sizeof(auth));
        if (headers == NULL)
            return fail(m, EXIT_VERIFY_NETWORK, "out of memory");
    }
    curl_easy_setopt(m->curl, CURLOPT_URL, url);
    curl_easy_setopt(m->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(m->curl, CURLOPT_WRITEDATA, out);
    CURLcode rc = curl_easy_perform(m->curl);
    curl_easy_setopt(m->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    long status = 0;
    curl_easy_getinfo(m->curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_WRITE_ERROR)
        return fail(m, EXIT_VERIFY_INVALID, "GET %s: more than %zu bytes", url, max);
    if (rc != CURLE_OK)
        return fail(m, EXIT_VERIFY_NETWORK, "GET %s: %s", url, curl_easy_strerror(rc));
    if (status != 200)
        return fail(m, EXIT_VERIFY_NETWORK, "GET %s: HTTP %ld%s", url, status,
                    status == 401 || status == 403 ? " (entry bundles need --token: a staff token)"
                                                   : "");
    return 0;
}

/* ---- hash tiles as a dems_merkle_reader ---- */

static unsigned tile_width(const struct monitor *m, unsigned level, uint64_t index)
{
    uint64_t at_level = m->size >> (8 * level);
    uint64_t left = at_level - index * TILE_WIDTH;
    return left >= TILE_WIDTH ? TILE_WIDTH : (unsigned)left;
}

/* Tile (level, index) of the tree of m->size leaves, fetched once (borrowed from the cache). */
static const uint8_t *tile(struct monitor *m, unsigned level, uint64_t index, unsigned width)
{
    for (size_t i = 0; i < CACHE_TILES; i++) {
        const struct cached_tile *t = &m->cache[i];
        if (t->hashes != NULL && t->level == level && t->index == index && t->width == width)
            return t->hashes;
    }
    char path[64], idx[INDEX_PATH_MAX];
    index_path(index, idx);
    if (width < TILE_WIDTH)
        snprintf(path, sizeof(path), "tile/%u/%s.p/%u", level, idx, width);
    else
        snprintf(path, sizeof(path), "tile/%u/%s", level, idx);
    struct dems_buf body;
    dems_buf_init(&body, 32 * TILE_WIDTH);
    if (get(m, path, false, 32 * TILE_WIDTH, &body) < 0) {
        dems_buf_done(&body);
        return NULL;
    }
    if (body.len != 32 * (size_t)width) {
        fail(m, EXIT_VERIFY_INVALID, "tile %s has %zu bytes, not %u", path, body.len, 32 * width);
        dems_buf_done(&body);
        return NULL;
    }
    struct cached_tile *slot = &m->cache[m->next_slot];
    m->next_slot = (m->next_slot + 1) % CACHE_TILES;
    free(slot->hashes);
    *slot = (struct cached_tile){level, index, width, body.data}; /* the buffer moves here */
    return slot->hashes;
}

/*
 * The complete subtree [start, start + 2^level): 2^(level mod 8) hashes of
 * one tile of level level / 8, hashed up (the levels a tile leaves out).
 */
static int tile_subtree(void *ctx, uint64_t start, unsigned level, uint8_t ret[static 32])
{
    struct monitor *m = ctx;
    unsigned tl = level / 8, up = level % 8;
    uint64_t first = start >> (8 * tl);
    uint64_t index = first / TILE_WIDTH;
    unsigned off = (unsigned)(first % TILE_WIDTH), count = 1u << up;
    if (tl > 7 || (first + count) > (m->size >> (8 * tl)))
        return DEMS_EINVAL;
    unsigned width = tile_width(m, tl, index);
    const uint8_t *hashes = tile(m, tl, index, width);
    if (hashes == NULL)
        return DEMS_EIO;
    uint8_t work[TILE_WIDTH / 2][32];
    memcpy(work, hashes + 32 * (size_t)off, 32 * (size_t)count);
    for (unsigned n = count; n > 1; n /= 2) {
        for (unsigned i = 0; i < n / 2; i++)
            dems_merkle_node_hash(work[2 * i], work[2 * i + 1], work[i]);
    }
    memcpy(ret, work[0], 32);
    return 0;
}

static void cache_free(struct monitor *m)
{
    for (size_t i = 0; i < CACHE_TILES; i++) {
        free(m->cache[i].hashes);
        m->cache[i].hashes = NULL;
    }
}

/* ---- state ---- */

/*
 * The value of the line "<name> <value>" at *at in text[0..len) (moving *at
 * past it); false when the line is not that.
 */
static bool state_line(const char *text, size_t len, size_t *at, const char *name,
                       struct dems_str *ret)
{
    size_t nl = strlen(name);
    const char *line = text + *at;
    const char *end = memchr(line, '\n', len - *at);
    if (end == NULL || (size_t)(end - line) <= nl + 1 || memcmp(line, name, nl) != 0 ||
        line[nl] != ' ')
        return false;
    *ret = (struct dems_str){line + nl + 1, (size_t)(end - line) - nl - 1};
    *at += (size_t)(end - line) + 1;
    return true;
}

/* Reads the state file: 1 when there is one, 0 when it does not exist, <0 (recorded) when bad. */
static int state_read(struct monitor *m, const char *path, struct state *ret)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        return fail(m, EXIT_VERIFY_USAGE, "%s: %s", path, strerror(errno));
    }
    char text[STATE_MAX + 1];
    size_t n = fread(text, 1, sizeof(text), f);
    fclose(f);
    struct state s = {0};
    struct dems_str origin, key, size, root;
    size_t at = sizeof(STATE_MAGIC);
    bool ok = n <= STATE_MAX && n > at && memcmp(text, STATE_MAGIC "\n", at) == 0 &&
              state_line(text, n, &at, "origin", &origin) && origin.len < sizeof(s.origin) &&
              state_line(text, n, &at, "key", &key) && key.len < sizeof(s.vkey) &&
              state_line(text, n, &at, "size", &size) &&
              dems_parse_u64(size.ptr, size.len, DEMS_MERKLE_MAX_SIZE, &s.size) == 0 &&
              state_line(text, n, &at, "root", &root) && root.len == 64 &&
              dems_hex_decode(root.ptr, 64, s.root, 32) == 0 && at == n;
    if (!ok)
        return fail(m, EXIT_VERIFY_USAGE, "%s is not a monitor state file", path);
    memcpy(s.origin, origin.ptr, origin.len);
    memcpy(s.vkey, key.ptr, key.len);
    *ret = s;
    return 1;
}

/* Replaces the state file: a temporary file beside it, fsync, rename, fsync of the directory. */
static int state_write(struct monitor *m, const char *path, const struct state *s)
{
    char tmp[4096], hex[65], text[STATE_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return fail(m, EXIT_VERIFY_USAGE, "%s: path too long", path);
    dems_hex_encode(s->root, 32, hex);
    int len = snprintf(text, sizeof(text), STATE_MAGIC "\norigin %s\nkey %s\nsize %llu\nroot %s\n",
                       s->origin, s->vkey, (unsigned long long)s->size, hex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(m, EXIT_VERIFY_USAGE, "%s: %s", tmp, strerror(errno));
    bool ok = len > 0 && write(fd, text, (size_t)len) == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return fail(m, EXIT_VERIFY_USAGE, "%s: %s", path, strerror(e));
    }
    /* The rename itself durable: fsync the directory. */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash != NULL ? (int)(slash - path + (slash == path)) : 1,
             slash != NULL ? path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* ---- the checks ---- */

static bool watched(const struct watch *w, size_t nw, const struct dems_ledger_entry *e)
{
    for (size_t i = 0; i < nw; i++) {
        if (w[i].type == e->type &&
            (!w[i].has_artefact ||
             (e->has_artefact && memcmp(w[i].artefact, e->artefact, 32) == 0)))
            return true;
    }
    return false;
}

/*
 * Checks bundle N (width entries) of the new tree: each entry's leaf hash
 * against the level-0 tile, and those from seq from on as canonical entries
 * with their own seq, appended to f; watched ones written to out.
 */
static int check_bundle(struct monitor *m, uint64_t n, uint64_t from,
                        struct dems_merkle_frontier *f, const struct watch *w, size_t nw, FILE *out)
{
    unsigned width = tile_width(m, 0, n);
    char path[64], idx[INDEX_PATH_MAX];
    index_path(n, idx);
    if (width < TILE_WIDTH)
        snprintf(path, sizeof(path), "tile/entries/%s.p/%u", idx, width);
    else
        snprintf(path, sizeof(path), "tile/entries/%s", idx);
    const uint8_t *leaves = tile(m, 0, n, width);
    if (leaves == NULL)
        return DEMS_EIO;
    /* The tile may leave the cache as the bundle is fetched: keep a copy. */
    uint8_t hashes[TILE_WIDTH][32];
    memcpy(hashes, leaves, 32 * (size_t)width);
    struct dems_buf body;
    size_t max = (size_t)width * (2 + DEMS_LEDGER_MAX_ENTRY);
    dems_buf_init(&body, max);
    int r = get(m, path, true, max, &body);
    size_t at = 0;
    for (unsigned i = 0; r == 0 && i < width; i++) {
        uint64_t seq = n * TILE_WIDTH + i;
        if (body.len - at < 2 ||
            body.len - at - 2 < ((size_t)body.data[at] << 8 | body.data[at + 1])) {
            r = fail(m, EXIT_VERIFY_INVALID, "%s ends inside entry %llu", path,
                     (unsigned long long)seq);
            break;
        }
        size_t len = (size_t)body.data[at] << 8 | body.data[at + 1];
        const uint8_t *bytes = body.data + at + 2;
        at += 2 + len;
        uint8_t leaf[32];
        dems_merkle_leaf_hash(bytes, len, leaf);
        if (sodium_memcmp(leaf, hashes[i], 32) != 0) {
            r = fail(m, EXIT_VERIFY_INVALID,
                     "entry %llu of %s does not hash to its leaf in tile 0/%s",
                     (unsigned long long)seq, path, idx);
            break;
        }
        if (seq < from)
            continue;
        json_t *root = NULL;
        struct dems_ledger_entry e;
        if (dems_ledger_entry_decode(bytes, len, &root, &e) < 0 || e.seq != seq) {
            json_decref(root);
            r = fail(m, EXIT_VERIFY_INVALID,
                     "entry %llu is not a canonical custody entry of that seq",
                     (unsigned long long)seq);
            break;
        }
        if (watched(w, nw, &e)) {
            char time[25];
            dems_ledger_time_format(e.time_ms, time);
            fprintf(out, "%llu %s %s %.*s\n", (unsigned long long)seq,
                    dems_ledger_type_name(e.type), time, (int)len, (const char *)bytes);
        }
        json_decref(root);
        if (dems_merkle_frontier_append(f, leaf, NULL) < 0)
            r = fail(m, EXIT_VERIFY_INVALID, "the log is too large");
    }
    if (r == 0 && at != body.len)
        r = fail(m, EXIT_VERIFY_INVALID, "%s has bytes after its %u entries", path, width);
    dems_buf_done(&body);
    return r;
}

/*
 * The tree of the new checkpoint against the state: the root from tiles,
 * the consistency proof from tiles (when the state has a smaller tree), and
 * the frontier of the old tree (whose root must be the state's).
 */
static int check_tree(struct monitor *m, const struct state *old, bool has_old,
                      const struct dems_checkpoint *cp, struct dems_merkle_frontier *ret_f)
{
    struct dems_merkle_reader rd = {.get_subtree = tile_subtree, .ctx = m};
    uint8_t root[32];
    char hex[65];
    if (dems_merkle_root(&rd, cp->size, root) < 0)
        return m->fail ? DEMS_EIO : fail(m, EXIT_VERIFY_INVALID, "the tiles do not make a tree");
    if (sodium_memcmp(root, cp->root, 32) != 0) {
        dems_hex_encode(root, 32, hex);
        return fail(m, EXIT_VERIFY_INVALID,
                    "the tiles' root %s is not the signed checkpoint's at size %llu", hex,
                    (unsigned long long)cp->size);
    }
    if (has_old && old->size > 0 && old->size < cp->size) {
        struct dems_merkle_proof proof;
        if (dems_merkle_prove_consistency(&rd, old->size, cp->size, &proof) < 0)
            return m->fail ? DEMS_EIO : fail(m, EXIT_VERIFY_INVALID, "no consistency proof");
        if (dems_merkle_verify_consistency(old->size, cp->size, old->root, cp->root, &proof) < 0)
            return fail(m, EXIT_VERIFY_INVALID,
                        "fork: the checkpoint of %llu entries is not consistent with the tree "
                        "of %llu entries seen before",
                        (unsigned long long)cp->size, (unsigned long long)old->size);
    }
    struct dems_merkle_frontier f;
    dems_merkle_frontier_init(&f);
    if (has_old && old->size > 0) {
        if (dems_merkle_frontier_load(&rd, old->size, &f) < 0)
            return m->fail ? DEMS_EIO : fail(m, EXIT_VERIFY_INVALID, "no frontier");
        dems_merkle_frontier_root(&f, root);
        if (sodium_memcmp(root, old->root, 32) != 0)
            return fail(m, EXIT_VERIFY_INVALID,
                        "fork: the tiles' tree of %llu entries is not the one seen before",
                        (unsigned long long)old->size);
    }
    *ret_f = f;
    return 0;
}

/* The checkpoint, its signature, and how it relates to the state. */
static int check_checkpoint(struct monitor *m, const struct dems_note_verifier *v,
                            const struct state *old, bool has_old, struct dems_checkpoint *ret)
{
    struct dems_buf note;
    dems_buf_init(&note, DEMS_NOTE_MAX_BYTES);
    int r = get(m, "checkpoint", false, DEMS_NOTE_MAX_BYTES, &note);
    if (r == 0) {
        r = dems_checkpoint_open((const char *)note.data, note.len, v, has_old ? old->origin : NULL,
                                 ret);
        if (r == DEMS_ECRYPTO)
            fail(m, EXIT_VERIFY_INVALID,
                 "the checkpoint is not signed by %s (a forged log, or one whose key was "
                 "rotated: check GET /v1/ledger/keys and pass the new key with --key)",
                 v->name);
        else if (r < 0)
            fail(m, EXIT_VERIFY_INVALID, "the checkpoint is malformed%s",
                 has_old ? " or of another origin" : "");
    }
    size_t held = 0;
    if (r == 0 && m->witnesses != NULL &&
        dems_witness_policy_check(m->witnesses, (const char *)note.data, note.len, &held) < 0) {
        fail(m, EXIT_VERIFY_INVALID,
             "witness_quorum: the checkpoint carries valid cosignatures from %zu of the "
             "policy's %zu witnesses; the quorum is %zu",
             held, m->witnesses->nkeys, m->witnesses->quorum);
        r = DEMS_ECRYPTO;
    }
    dems_buf_done(&note);
    if (r < 0)
        return DEMS_EIO;
    if (has_old && ret->size < old->size)
        return fail(m, EXIT_VERIFY_INVALID,
                    "fork: the checkpoint has %llu entries, fewer than the %llu seen before",
                    (unsigned long long)ret->size, (unsigned long long)old->size);
    if (has_old && ret->size == old->size && sodium_memcmp(ret->root, old->root, 32) != 0)
        return fail(m, EXIT_VERIFY_INVALID,
                    "fork: two signed checkpoints of %llu entries with different roots",
                    (unsigned long long)ret->size);
    return 0;
}

/* Copies the watched lines kept in tmp to stdout. */
static void flush_watched(FILE *tmp)
{
    char line[4096];
    rewind(tmp);
    size_t n;
    while ((n = fread(line, 1, sizeof(line), tmp)) > 0)
        fwrite(line, 1, n, stdout);
}

struct args {
    const char *url, *state, *key, *token, *cacert, *quorum;
    struct watch watch[MAX_WATCHES];
    size_t nwatch;
};

static int parse_watch(const char *s, struct watch *w)
{
    const char *colon = strchr(s, ':');
    size_t tlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
    *w = (struct watch){0};
    if (dems_ledger_type_parse(s, tlen, &w->type) < 0)
        return verify_usage("--watch: '%.*s' is not an entry type (docs/ledger.md)", (int)tlen, s);
    if (colon != NULL) {
        if (strlen(colon + 1) != 64 || dems_hex_decode(colon + 1, 64, w->artefact, 32) < 0)
            return verify_usage("--watch: '%s' is not an evidence id (64 hex digits)", colon + 1);
        w->has_artefact = true;
    }
    return 0;
}

/* True when host (the URL after the scheme) is this machine's loopback. */
static bool is_loopback(const char *host)
{
    static const char *const names[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(host, names[i], n) == 0 &&
            (host[n] == ':' || host[n] == '/' || host[n] == '\0'))
            return true;
    }
    return false;
}

/* Reads the arguments; EXIT_VERIFY_USAGE (printed) when bad, -2 for --help. */
static int parse_args(int argc, char **argv, struct args *a)
{
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0)
            return -2;
        if (strncmp(o, "--", 2) != 0) {
            if (a->url != NULL)
                return verify_usage("unexpected argument '%s'", o);
            a->url = o;
            continue;
        }
        static const char *const names[] = {"state", "key", "token", "cacert", "quorum", "watch"};
        size_t k = 0;
        while (k < 6 && strcmp(o + 2, names[k]) != 0)
            k++;
        if (k == 6)
            return verify_usage("unknown option '%s'", o);
        if (i + 1 >= argc)
            return verify_usage("%s needs a value", o);
        const char *v = argv[++i];
        if (k == 5) {
            if (a->nwatch == MAX_WATCHES)
                return verify_usage("at most %d --watch options", MAX_WATCHES);
            if (parse_watch(v, &a->watch[a->nwatch++]) != 0)
                return EXIT_VERIFY_USAGE;
            continue;
        }
        const char **slot[] = {&a->state, &a->key, &a->token, &a->cacert, &a->quorum};
        *slot[k] = v;
    }
    /* A token on the command line is visible to other users (ps): the
     * environment is the better place for it. */
    if (a->token == NULL)
        a->token = getenv("DEMS_VERIFY_TOKEN");
    if (a->url == NULL || a->state == NULL)
        return verify_usage("a URL and --state FILE are required");
    if (strncmp(a->url, "https://", 8) != 0 && strncmp(a->url, "http://", 7) != 0)
        return verify_usage("URL must be http(s)://HOST[:PORT]/PREFIX (e.g. .../v1/ledger/tlog)");
    /* Signatures make plain HTTP safe for tiles (a mirror), not for a token. */
    if (a->token != NULL && a->token[0] != '\0' && strncmp(a->url, "https://", 8) != 0 &&
        !is_loopback(a->url + 7))
        return verify_usage("a token is sent over https only (or to this machine)");
    return 0;
}

static CURL *curl_new(const struct args *a)
{
    CURL *c = curl_easy_init();
    if (c == NULL)
        return NULL;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, HTTP_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "dems-verify-monitor");
    if (a->cacert != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, a->cacert);
    return c;
}

/* Everything, once the arguments are read; the state is written last. */
static int monitor_run(struct monitor *m, const struct args *a, FILE *out)
{
    struct state old = {0}, now = {0};
    int has = state_read(m, a->state, &old);
    if (has < 0)
        return DEMS_EIO;
    const char *vkey = a->key != NULL ? a->key : has ? old.vkey : NULL;
    struct dems_note_verifier v;
    if (vkey == NULL)
        return fail(m, EXIT_VERIFY_USAGE,
                    "--key VKEY is needed on the first run (GET /v1/ledger/key)");
    if (dems_note_verifier_parse(vkey, strlen(vkey), &v) < 0)
        return fail(m, EXIT_VERIFY_USAGE, "--key: not a note verifier key");
    struct dems_checkpoint cp;
    if (check_checkpoint(m, &v, &old, has == 1, &cp) < 0)
        return DEMS_EIO;
    m->size = cp.size;
    struct dems_merkle_frontier f;
    if (check_tree(m, &old, has == 1, &cp, &f) < 0)
        return DEMS_EIO;
    uint64_t from = has == 1 ? old.size : 0;
    for (uint64_t n = from / TILE_WIDTH; from < cp.size && n <= (cp.size - 1) / TILE_WIDTH; n++) {
        if (check_bundle(m, n, from, &f, a->watch, a->nwatch, out) < 0)
            return DEMS_EIO;
    }
    uint8_t root[32];
    dems_merkle_frontier_root(&f, root);
    if (f.size != cp.size || sodium_memcmp(root, cp.root, 32) != 0)
        return fail(m, EXIT_VERIFY_INVALID,
                    "the entries do not make the signed checkpoint's tree of %llu entries",
                    (unsigned long long)cp.size);
    snprintf(now.origin, sizeof(now.origin), "%s", cp.origin);
    dems_note_verifier_format(&v, now.vkey);
    now.size = cp.size;
    memcpy(now.root, cp.root, 32);
    if (state_write(m, a->state, &now) < 0)
        return DEMS_EIO;
    char hex[65];
    dems_hex_encode(cp.root, 32, hex);
    flush_watched(out);
    printf("OK: %s: %llu entries (%llu new, checked), root %s\n", cp.origin,
           (unsigned long long)cp.size, (unsigned long long)(cp.size - from), hex);
    return 0;
}

int verify_monitor(int argc, char **argv)
{
    struct args a = {0};
    struct verify_policy pol;
    argc = verify_policy_take(argc, argv, &pol);
    if (argc < 0)
        return EXIT_VERIFY_USAGE;
    int r = parse_args(argc, argv, &a);
    if (r != 0)
        return r;
    const struct dems_witness_policy *wp = verify_policy_get(&pol, a.quorum);
    if (wp == &verify_bad_policy)
        return EXIT_VERIFY_USAGE;
    struct monitor m = {.base = a.url,
                        .base_len = strlen(a.url),
                        .cacert = a.cacert,
                        .token = a.token,
                        .witnesses = wp};
    while (m.base_len > 0 && a.url[m.base_len - 1] == '/')
        m.base_len--;
    char base[1024];
    if (m.base_len >= sizeof(base))
        return verify_usage("URL too long");
    memcpy(base, a.url, m.base_len);
    base[m.base_len] = '\0';
    m.base = base;
    FILE *out = tmpfile();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || out == NULL ||
        (m.curl = curl_new(&a)) == NULL) {
        if (out != NULL)
            fclose(out);
        fprintf(stderr, "dems-verify: cannot start libcurl or a temporary file\n");
        return EXIT_VERIFY_USAGE;
    }
    r = monitor_run(&m, &a, out);
    cache_free(&m);
    curl_easy_cleanup(m.curl);
    curl_global_cleanup();
    fclose(out);
    if (r == 0)
        return EXIT_VERIFY_VALID;
    if (m.fail == EXIT_VERIFY_INVALID) {
        printf("INVALID: %s\n", m.why);
        return EXIT_VERIFY_INVALID;
    }
    fprintf(stderr, "dems-verify monitor: %s\n", m.why);
    return m.fail == EXIT_VERIFY_NETWORK ? EXIT_VERIFY_NETWORK : EXIT_VERIFY_USAGE;
}
