/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ledger's read API: the latest signed checkpoint and the verifier key
 * (public: anyone may check the log), entries, and inclusion and consistency
 * proofs (staff). Proofs never block the loop: a dry run of the prover over
 * a recording reader lists the complete-subtree hashes it needs (O(log N)),
 * one prepared statement fetches them, and the real run reads from that set.
 * For an inclusion proof by a staff token that statement is the token's
 * lookup too (api_ledger_inclusion_fold): one statement per proof.
 */
#include "demsd/ledger.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"

#include "api_int.h"

#define MAX_NEEDED 256

/* The verifier key string for a ledger_keys row (name, hex public key). */
bool api_vkey(const char *name, const char *pk_hex, char out[static DEMS_NOTE_VKEY_MAX])
{
    struct dems_note_verifier v;
    if (strlen(name) >= sizeof(v.name) || strlen(pk_hex) != 64 ||
        dems_hex_decode(pk_hex, 64, v.pk, 32) < 0)
        return false;
    memcpy(v.name, name, strlen(name) + 1);
    dems_note_keyhash(v.name, strlen(v.name), v.pk, v.keyhash);
    dems_note_verifier_format(&v, out);
    return true;
}

static bool row_vkey(const PGresult *res, int row, char out[static DEMS_NOTE_VKEY_MAX])
{
    return api_vkey(PQgetvalue(res, row, 0), PQgetvalue(res, row, 1), out);
}

static void on_key(struct dems_req *req, const PGresult *res, int err)
{
    char text[DEMS_NOTE_VKEY_MAX + 1];
    if (err < 0 || PQntuples(res) != 1 || !row_vkey(res, 0, text)) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    size_t n = strlen(text);
    text[n++] = '\n';
    dems_resp_bytes(req, 200, "text/plain; charset=utf-8", text, n);
}

/* The key in force (it signs new entries and checkpoints). */
void api_ledger_key(struct dems_req *req)
{
    int r = dems_db_req(req,
                        "SELECT name, encode(public_key, 'hex') FROM ledger_keys"
                        " ORDER BY id DESC LIMIT 1",
                        0, NULL, on_key);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_keys(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
        char vkey[DEMS_NOTE_VKEY_MAX];
        if (!row_vkey(res, i, vkey)) {
            json_decref(arr);
            api_db_error(req, res, DEMS_EDB);
            return;
        }
        const char *since = PQgetvalue(res, i, 3);
        json_array_append_new(
            arr, json_pack("{s:I,s:s,s:o,s:s}", "id",
                           (json_int_t)api_id(PQgetvalue(res, i, 2), strlen(PQgetvalue(res, i, 2))),
                           "vkey", vkey, "rotated_at_seq",
                           PQgetisnull(res, i, 3) ? json_null()
                                                  : json_integer(api_id(since, strlen(since))),
                           "created_at", PQgetvalue(res, i, 4)));
    }
    if (arr == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_json(req, 200, json_pack("{s:o}", "keys", arr));
}

/*
 * Every signing key, oldest first, with the KEY_ROTATED entry that brought
 * it in (the k-th rotation introduced key k + 1).
 */
void api_ledger_keys(struct dems_req *req)
{
    int r = dems_db_req(req,
                        "WITH rot AS (SELECT seq, row_number() OVER (ORDER BY seq) + 1 AS id"
                        " FROM ledger_entries WHERE type = 'KEY_ROTATED')"
                        " SELECT k.name, encode(k.public_key, 'hex'), k.id, rot.seq, " API_TS(
                            "k.created_at") " FROM ledger_keys k LEFT JOIN rot ON rot.id = k.id"
                                            " ORDER BY k.id",
                        0, NULL, on_keys);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_rotated(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    if (!dems_req_is_aborted(req)) {
        const char *vkey = json_string_value(json_object_get(item->payload, "vkey"));
        if (item->err < 0 || vkey == NULL)
            dems_resp_error(req, 503, "ledger_unavailable",
                            "the key was not rotated: the ledger could not record it");
        else
            dems_resp_json(req, 201,
                           json_pack("{s:I,s:s}", "seq", (json_int_t)item->seq, "vkey", vkey));
    }
    dems_req_unref(req);
}

/*
 * POST /v1/admin/ledger/rotate-key {"reason": optional}: the appender makes
 * a new signing key; the KEY_ROTATED entry naming it is signed by the old.
 */
void api_ledger_rotate_key(struct dems_req *req)
{
    const char *reason = NULL;
    if (!api_get_str(req, "reason", 500, false, &reason))
        return;
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_KEY_ROTATED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it == NULL || (it->payload = reason != NULL ? json_pack("{s:s}", "reason", reason)
                                                    : json_object()) == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    it->done = on_rotated;
    it->arg = req;
    dems_req_ref(req);
    struct dems_loop *loop = dems_req_loop(req);
    if (dems_ledger_append(loop->srv, loop, it) < 0) {
        dems_req_unref(req);
        dems_resp_err(req, DEMS_EUNAVAIL);
    }
}

static void on_checkpoint(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0 || PQntuples(res) > 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    if (PQntuples(res) == 0) {
        dems_resp_header(req, "Retry-After", "1");
        dems_resp_error(req, 503, "checkpoint_unpublished",
                        "no checkpoint has been cosigned by a quorum of this log's witnesses yet");
        return;
    }
    const char *note = api_col(res, 0, "note");
    dems_resp_bytes(req, 200, "text/plain; charset=utf-8", note, strlen(note));
}

/*
 * The newest checkpoint; with witnesses configured, the newest one a quorum
 * of them cosigned, with their cosignature lines (docs/ledger.md, "Witnesses").
 */
void api_ledger_checkpoint(struct dems_req *req)
{
    bool witnessed = dems_req_loop(req)->srv->cfg->witnesses[0] != '\0';
    int r =
        dems_db_req(req,
                    witnessed ? "SELECT note FROM ledger_checkpoint_notes WHERE published"
                                " ORDER BY size DESC LIMIT 1"
                              : "SELECT note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
                    0, NULL, on_checkpoint);
    if (r < 0)
        dems_resp_err(req, r);
}

/* Reads a decimal query parameter; answers 400 naming it when bad. */
static bool query_u64(struct dems_req *req, const char *name, uint64_t max, uint64_t *ret)
{
    struct dems_str v;
    if (dems_req_query(req, name, &v) && dems_parse_u64(v.ptr, v.len, max, ret) == 0)
        return true;
    char msg[96];
    snprintf(msg, sizeof(msg), "query parameter \"%s\" must be a whole number", name);
    dems_resp_error(req, 400, "invalid_parameter", msg);
    return false;
}

/* ---- entries ---- */

static json_t *entry_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    const char *hex = api_col(res, row, "bytes");
    size_t n = strlen(hex) / 2;
    uint8_t *bytes = malloc(n + 1);
    char *b64 = malloc(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL));
    json_t *o = NULL;
    if (bytes != NULL && b64 != NULL && dems_hex_decode(hex, 2 * n, bytes, n) == 0) {
        sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL), bytes,
                          n, sodium_base64_VARIANT_ORIGINAL);
        o = json_pack("{s:I,s:s,s:s,s:s}", "seq", (json_int_t)api_col_int(res, row, "seq"), "bytes",
                      b64, "leaf_hash", api_col(res, row, "leaf_hash"), "signature",
                      api_col(res, row, "signature"));
    }
    free(bytes);
    free(b64);
    return o;
}

static void on_entries(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "entries", "seq", entry_json);
}

/*
 * GET /v1/ledger/entries: entries in sequence order from ?start= (default
 * 0), a page at a time (the list convention: ?limit=, ?cursor=). The cursor
 * is the last sequence number of the previous page.
 */
void api_ledger_entries(struct dems_req *req)
{
    struct api_page page;
    if (!api_page_parse(req, &page))
        return;
    uint64_t start = 0, after = 0;
    struct dems_str v;
    if (dems_req_query(req, "start", &v) &&
        dems_parse_u64(v.ptr, v.len, DEMS_MERKLE_MAX_SIZE, &start) < 0) {
        api_bad_param(req, "start", "must be a whole number (a sequence number)");
        return;
    }
    if (page.has_cursor &&
        dems_parse_u64(page.cursor, strlen(page.cursor), DEMS_MERKLE_MAX_SIZE, &after) < 0) {
        api_bad_param(req, "cursor", "is not a cursor this list gave");
        return;
    }
    /* Continuing: the entry after the cursor; starting: the entry at start. */
    char from[24], limit[24];
    snprintf(from, sizeof(from), "%llu", (unsigned long long)(page.has_cursor ? after + 1 : start));
    api_page_sql_limit(&page, limit);
    const char *params[] = {from, limit};
    int r = dems_db_req(req,
                        "SELECT seq, encode(bytes, 'hex') AS bytes,"
                        " encode(leaf_hash, 'hex') AS leaf_hash,"
                        " encode(signature, 'hex') AS signature FROM ledger_entries"
                        " WHERE seq >= $1::bigint ORDER BY seq LIMIT $2::integer",
                        2, params, on_entries);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- proofs ---- */

struct need {
    size_t n;
    uint64_t start[MAX_NEEDED];
    unsigned level[MAX_NEEDED];
    uint8_t hash[MAX_NEEDED][32];
    bool have[MAX_NEEDED];
    bool overflow;
};

struct proof_req {
    bool consistency;
    uint64_t a, b; /* index/size, or old/new */
    struct need need;
    /* The positions needed as array literals of plain numbers (no quoting). */
    char levels[MAX_NEEDED * 4 + 3];
    char starts[MAX_NEEDED * 21 + 3];
};

static int recording(void *ctx, uint64_t start, unsigned level, uint8_t ret[static 32])
{
    struct need *nd = ctx;
    memset(ret, 0, 32);
    for (size_t i = 0; i < nd->n; i++) {
        if (nd->start[i] == start && nd->level[i] == level)
            return 0;
    }
    if (nd->n == MAX_NEEDED) {
        nd->overflow = true;
        return DEMS_ETOOBIG;
    }
    nd->start[nd->n] = start;
    nd->level[nd->n] = level;
    nd->n++;
    return 0;
}

static int replaying(void *ctx, uint64_t start, unsigned level, uint8_t ret[static 32])
{
    struct need *nd = ctx;
    for (size_t i = 0; i < nd->n; i++) {
        if (nd->start[i] == start && nd->level[i] == level && nd->have[i]) {
            memcpy(ret, nd->hash[i], 32);
            return 0;
        }
    }
    return DEMS_ENOTFOUND;
}

/* Runs the prover (and the roots) over reader; fills proof and roots. */
static int run(struct proof_req *p, int (*get)(void *, uint64_t, unsigned, uint8_t[static 32]),
               struct dems_merkle_proof *proof, uint8_t root_a[static 32],
               uint8_t root_b[static 32])
{
    struct dems_merkle_reader rd = {.get_subtree = get, .ctx = &p->need};
    if (p->consistency) {
        int r = dems_merkle_prove_consistency(&rd, p->a, p->b, proof);
        if (r == 0)
            r = dems_merkle_root(&rd, p->a, root_a);
        if (r == 0)
            r = dems_merkle_root(&rd, p->b, root_b);
        return r;
    }
    uint8_t leaf[32];
    int r = dems_merkle_prove_inclusion(&rd, p->a, p->b, proof);
    if (r == 0)
        r = dems_merkle_root(&rd, p->b, root_b);
    if (r == 0)
        r = get(&p->need, p->a, 0, leaf); /* the leaf hash itself */
    if (r == 0)
        memcpy(root_a, leaf, 32);
    return r;
}

/*
 * The dry run: lists the subtrees the proof reads into p->need and their
 * positions as array literals. Returns 0, or DEMS_EINVAL for positions that
 * are not a proof (index >= size, old = 0, old > new).
 */
static int plan(struct proof_req *p)
{
    struct dems_merkle_proof proof;
    uint8_t ra[32], rb[32];
    if (run(p, recording, &proof, ra, rb) < 0 || p->need.overflow)
        return DEMS_EINVAL;
    size_t ol = 0, os = 0;
    p->levels[ol++] = '{';
    p->starts[os++] = '{';
    for (size_t i = 0; i < p->need.n; i++) {
        ol += (size_t)snprintf(p->levels + ol, 5, "%s%u", i ? "," : "", p->need.level[i]);
        os += (size_t)snprintf(p->starts + os, 22, "%s%llu", i ? "," : "",
                               (unsigned long long)p->need.start[i]);
    }
    snprintf(p->levels + ol, 2, "}");
    snprintf(p->starts + os, 2, "}");
    return 0;
}

static json_t *hex_array(const struct dems_merkle_proof *proof)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < proof->len; i++) {
        char hex[65];
        dems_hex_encode(proof->hash[i], 32, hex);
        json_array_append_new(arr, json_string(hex));
    }
    return arr;
}

/* The stored subtree hashes at the listed positions; levels and starts as SQL text. */
#define SUBTREES_SQL(levels, starts)                                                               \
    "SELECT st.level, st.start, encode(st.hash, 'hex') AS hash FROM ledger_subtrees st"            \
    " WHERE (st.level, st.start) IN (SELECT * FROM unnest(" levels "::smallint[], " starts         \
    "::bigint[]))"

static struct dems_db_stmt subtrees_stmt = DEMS_DB_STMT(SUBTREES_SQL("$1", "$2"), 2);
/* The same, with the lookup of the caller's token ($1). */
static struct dems_db_stmt subtrees_folded =
    DEMS_DB_STMT(DEMS_AUTH_FOLD_SQL(SUBTREES_SQL("$2", "$3")), 3);

static void on_subtrees(struct dems_req *req, const PGresult *res, int err)
{
    struct proof_req *p = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    int cl = PQfnumber(res, "level"), cs = PQfnumber(res, "start"), ch = PQfnumber(res, "hash");
    for (int i = 0; cl >= 0 && cs >= 0 && ch >= 0 && i < PQntuples(res); i++) {
        uint64_t level = 0, start = 0;
        const char *lv = PQgetvalue(res, i, cl), *st = PQgetvalue(res, i, cs);
        if (PQgetisnull(res, i, cl) || dems_parse_u64(lv, strlen(lv), 62, &level) < 0 ||
            dems_parse_u64(st, strlen(st), UINT64_MAX, &start) < 0)
            continue; /* folded: the token's row with no subtree */
        for (size_t k = 0; k < p->need.n; k++) {
            if (p->need.start[k] == start && p->need.level[k] == level &&
                dems_hex_decode(PQgetvalue(res, i, ch), 64, p->need.hash[k], 32) == 0)
                p->need.have[k] = true;
        }
    }
    struct dems_merkle_proof proof;
    uint8_t ra[32], rb[32];
    if (run(p, replaying, &proof, ra, rb) < 0) {
        dems_resp_error(req, 400, "beyond_log", "the requested tree size is larger than the log");
        return;
    }
    char ha[65], hb[65];
    dems_hex_encode(ra, 32, ha);
    dems_hex_encode(rb, 32, hb);
    json_t *body =
        p->consistency
            ? json_pack("{s:I,s:I,s:s,s:s,s:o}", "old", (json_int_t)p->a, "new", (json_int_t)p->b,
                        "old_root", ha, "new_root", hb, "proof", hex_array(&proof))
            : json_pack("{s:I,s:I,s:s,s:s,s:o}", "index", (json_int_t)p->a, "size",
                        (json_int_t)p->b, "leaf_hash", ha, "root", hb, "proof", hex_array(&proof));
    dems_resp_json(req, 200, body);
}

/*
 * The request's positions (index and size, or old and new) and its plan.
 * When quiet (the fold hook, before authentication) nothing is answered and
 * NULL means "not folded"; otherwise a bad parameter is answered 400.
 */
static struct proof_req *proof_new(struct dems_req *req, bool consistency, bool quiet)
{
    const char *na = consistency ? "old" : "index", *nb = consistency ? "new" : "size";
    struct proof_req *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        if (!quiet)
            dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    p->consistency = consistency;
    struct dems_str v;
    bool ok = true;
    for (int i = 0; ok && i < 2; i++) {
        const char *name = i == 0 ? na : nb;
        ok = dems_req_query(req, name, &v) &&
             dems_parse_u64(v.ptr, v.len, DEMS_MERKLE_MAX_SIZE, i == 0 ? &p->a : &p->b) == 0;
        if (!ok && !quiet)
            query_u64(req, name, DEMS_MERKLE_MAX_SIZE, &p->a); /* answers 400 naming it */
    }
    if (ok && plan(p) < 0) {
        ok = false;
        if (!quiet)
            dems_resp_error(req, 400, "invalid_parameter",
                            consistency ? "need 0 < old <= new" : "need index < size");
    }
    if (!ok) {
        free(p);
        return NULL;
    }
    return p;
}

bool api_ledger_inclusion_fold(struct dems_req *req, struct dems_auth_fold *ret)
{
    struct proof_req *p = proof_new(req, false, true);
    if (p == NULL)
        return false;
    dems_req_set_data(req, p, free);
    ret->stmt = &subtrees_folded;
    ret->nparams = 2;
    ret->params[0] = p->levels;
    ret->params[1] = p->starts;
    return true;
}

static void proof_start(struct dems_req *req, bool consistency)
{
    struct proof_req *p = dems_req_data(req);
    const PGresult *folded = dems_req_folded(req);
    if (p != NULL && folded != NULL) { /* read with the token (api_ledger_inclusion_fold) */
        on_subtrees(req, folded, 0);
        return;
    }
    if (p == NULL) {
        p = proof_new(req, consistency, false);
        if (p == NULL)
            return;
        dems_req_set_data(req, p, free);
    }
    const char *params[] = {p->levels, p->starts};
    int r = dems_db_req_stmt(req, &subtrees_stmt, params, on_subtrees);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_ledger_inclusion(struct dems_req *req)
{
    proof_start(req, false);
}

void api_ledger_consistency(struct dems_req *req)
{
    proof_start(req, true);
}

/* ---- export: header, every entry up to the latest checkpoint, the note ---- */

#define EXPORT_PAGE 1000

struct export
{
    uint64_t size; /* entries covered by the checkpoint */
    uint64_t next; /* next sequence to fetch */
    char *note;
    bool fetching;
};

static void export_free(void *data)
{
    struct export *x = data;
    free(x->note);
    free(x);
}

static void export_more(struct dems_req *req);

static void on_export_page(struct dems_req *req, const PGresult *res, int err)
{
    struct export *x = dems_req_data(req);
    x->fetching = false;
    if (err < 0) {
        dems_resp_end(req); /* truncated: the missing checkpoint line tells the verifier */
        return;
    }
    struct dems_buf line;
    dems_buf_init(&line, DEMS_LEDGER_MAX_LINE);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *seq = PQgetvalue(res, i, 0), *hex = PQgetvalue(res, i, 1);
        size_t n = strlen(hex) / 2;
        uint8_t *bytes = malloc(n + 1), leaf[32], sig[64];
        if (bytes == NULL || dems_hex_decode(hex, 2 * n, bytes, n) < 0 ||
            dems_hex_decode(PQgetvalue(res, i, 2), 64, leaf, 32) < 0 ||
            dems_hex_decode(PQgetvalue(res, i, 3), 128, sig, 64) < 0) {
            free(bytes);
            continue;
        }
        dems_buf_reset(&line);
        if (dems_ledger_export_entry((uint64_t)api_id(seq, strlen(seq)), bytes, n, leaf, sig,
                                     &line) == 0)
            dems_resp_write(req, line.data, line.len);
        free(bytes);
    }
    dems_buf_done(&line);
    x->next += EXPORT_PAGE;
    if (x->next >= x->size) {
        dems_buf_init(&line, DEMS_LEDGER_MAX_LINE);
        if (dems_ledger_export_checkpoint(x->note, strlen(x->note), &line) == 0)
            dems_resp_write(req, line.data, line.len);
        dems_buf_done(&line);
        dems_resp_end(req);
        return;
    }
    if (dems_resp_wants_more(req))
        export_more(req);
}

static void export_more(struct dems_req *req)
{
    struct export *x = dems_req_data(req);
    if (x->fetching || x->next >= x->size)
        return;
    char s[24], e[24];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)x->next);
    uint64_t end = x->size - x->next < EXPORT_PAGE ? x->size : x->next + EXPORT_PAGE;
    snprintf(e, sizeof(e), "%llu", (unsigned long long)end);
    const char *params[] = {s, e};
    x->fetching = true;
    if (dems_db_req(req,
                    "SELECT seq, encode(bytes, 'hex'), encode(leaf_hash, 'hex'),"
                    " encode(signature, 'hex') FROM ledger_entries"
                    " WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                    2, params, on_export_page) < 0) {
        x->fetching = false;
        dems_resp_end(req);
    }
}

static void on_export_checkpoint(struct dems_req *req, const PGresult *res, int err)
{
    if (err == 0 && PQntuples(res) == 0) {
        dems_resp_header(req, "Retry-After", "1");
        dems_resp_error(req, 503, "checkpoint_unpublished",
                        "no checkpoint has been cosigned by a quorum of this log's witnesses yet");
        return;
    }
    if (err < 0 || PQntuples(res) != 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    struct export *x = calloc(1, sizeof(*x));
    const char *size = PQgetvalue(res, 0, 0);
    if (x != NULL)
        x->note = strdup(PQgetvalue(res, 0, 1));
    if (x == NULL || x->note == NULL) {
        free(x);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    x->size = (uint64_t)api_id(size, strlen(size));
    dems_req_set_data(req, x, export_free);
    const struct dems_server *srv = dems_req_loop(req)->srv;
    struct dems_buf line;
    dems_buf_init(&line, DEMS_LEDGER_MAX_LINE);
    int r = dems_ledger_export_header(dems_ledger_origin(srv), dems_ledger_first_vkey(srv), &line);
    if (r == 0)
        r = dems_resp_start(req, 200, "application/x-ndjson", UINT64_MAX, export_more);
    if (r == 0)
        dems_resp_write(req, line.data, line.len);
    dems_buf_done(&line);
    if (r < 0) {
        dems_resp_err(req, r);
        return;
    }
    if (x->size == 0) {
        on_export_page(req, NULL, 0);
        return;
    }
}

void api_ledger_export(struct dems_req *req)
{
    /* The export ends with the newest checkpoint (with witnesses, the newest
     * published one, cosignatures included) and holds exactly the entries it
     * covers, so a verifier can recompute its root. */
    bool witnessed = dems_req_loop(req)->srv->cfg->witnesses[0] != '\0';
    int r = dems_db_req(req,
                        witnessed ? "SELECT size, note FROM ledger_checkpoint_notes WHERE published"
                                    " ORDER BY size DESC LIMIT 1"
                                  : "SELECT size, note FROM ledger_checkpoints ORDER BY size DESC"
                                    " LIMIT 1",
                        0, NULL, on_export_checkpoint);
    if (r < 0)
        dems_resp_err(req, r);
}
