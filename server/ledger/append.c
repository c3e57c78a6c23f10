/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ledger appender (see demsd/ledger.h). Its thread takes everything
 * queued (up to BATCH_MAX entries), and in one transaction: locks
 * ledger_head, checks the in-memory frontier against the head (reloading it
 * from ledger_subtrees when another process appended), runs each entry's
 * pre-statement under a savepoint, assigns sequence numbers, encodes the
 * canonical bytes, hashes and signs them, and inserts entries and completed
 * subtree hashes with one multi-row statement each. One fsync (COMMIT)
 * covers the whole batch: group commit. An item that cannot be appended
 * fails alone (see batch_item and run_batch). Checkpoints, and the guard
 * against a log that shrinks, are in checkpoint.c.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"
#include "demsd/metrics.h"

#include "ledger_int.h"

#define BATCH_MAX 512

int64_t ledger_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct dems_ledger_item *dems_ledger_item_new(enum dems_ledger_type type,
                                              enum dems_ledger_actor actor_kind,
                                              const char *actor_id)
{
    struct dems_ledger_item *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return NULL;
    it->type = type;
    it->actor_kind = actor_kind;
    size_t n = strlen(actor_id);
    if (n > DEMS_LEDGER_MAX_ID) {
        n = DEMS_LEDGER_MAX_ID;
        while (n > 0 && ((uint8_t)actor_id[n] & 0xc0) == 0x80)
            n--; /* never split a UTF-8 character */
    }
    memcpy(it->actor_id, actor_id, n);
    it->actor_id[n] = '\0';
    return it;
}

void dems_ledger_item_free(struct dems_ledger_item *it)
{
    if (it == NULL)
        return;
    json_decref(it->payload);
    free(it->pre_sql);
    for (int i = 0; i < it->pre_nparams && i < DEMS_LEDGER_PRE_MAX; i++)
        free(it->pre_params[i]);
    free(it);
}

/* ---- blocking SQL helpers (this thread only) ---- */

PGresult *ledger_q(struct dems_ledger *l, const char *sql, int n, const char *const *p)
{
    return PQexecParams(l->db, sql, n, NULL, p, NULL, NULL, 0);
}

bool ledger_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

#define DB_WARN_MS       10000
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 5000

/*
 * Logs a failed statement with libpq's message: the result's, or the
 * connection's when there is no result (a lost connection gives none, which
 * once made an empty "ledger: " line every second). While the connection is
 * down the warning is rate-limited, counting what it left out.
 */
static void warn_db(struct dems_ledger *l, const PGresult *res)
{
    const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
    if (msg[0] == '\0')
        msg = PQerrorMessage(l->db);
    if (msg[0] == '\0')
        msg = "no connection to the database";
    int len = (int)strcspn(msg, "\n");
    bool down = PQstatus(l->db) != CONNECTION_OK;
    int64_t t = ledger_now_ms();
    if (down && t - l->db_warned_ms < DB_WARN_MS) {
        l->db_suppressed++;
        return;
    }
    dems_log(DEMS_LOG_WARN, NULL,
             json_pack("{s:s,s:b,s:i}", "event", "ledger_db_error", "connected", !down,
                       "suppressed", (int)l->db_suppressed),
             "ledger: %.*s", len > 300 ? 300 : len, msg);
    if (down) {
        l->db_warned_ms = t;
        l->db_suppressed = 0;
    }
}

int ledger_exec(struct dems_ledger *l, const char *sql, int n, const char *const *p)
{
    PGresult *res = ledger_q(l, sql, n, p);
    int r = ledger_ok(res) ? 0 : DEMS_EDB;
    if (r < 0)
        warn_db(l, res);
    PQclear(res);
    return r;
}

/*
 * True when the connection is up, reconnecting first if it is down and its
 * backoff (100 ms doubling to 5 s) has passed.
 */
static bool connected(struct dems_ledger *l)
{
    if (PQstatus(l->db) == CONNECTION_OK)
        return true;
    int64_t t = ledger_now_ms();
    if (t < l->reconnect_at_ms)
        return false;
    PQreset(l->db);
    if (PQstatus(l->db) == CONNECTION_OK) {
        dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s}", "event", "ledger_db_reconnected"),
                 "ledger: database connection restored");
        l->reconnect_ms = RECONNECT_MIN_MS;
        l->db_warned_ms = 0;
        return true;
    }
    warn_db(l, NULL);
    l->reconnect_ms = l->reconnect_ms < RECONNECT_MIN_MS       ? RECONNECT_MIN_MS
                      : l->reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
                                                               : l->reconnect_ms * 2;
    l->reconnect_at_ms = t + l->reconnect_ms;
    return false;
}

/* Reads stored complete-subtree hashes (the Merkle reader over the DB). */
static int db_subtree(void *ctx, uint64_t start, unsigned level, uint8_t ret[static 32])
{
    struct dems_ledger *l = ctx;
    char s[24], lv[8];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)start);
    snprintf(lv, sizeof(lv), "%u", level);
    const char *p[] = {lv, s};
    PGresult *res = ledger_q(l,
                             "SELECT encode(hash, 'hex') FROM ledger_subtrees"
                             " WHERE level = $1 AND start = $2",
                             2, p);
    int r = ledger_ok(res) && PQntuples(res) == 1 ? 0 : DEMS_EDB;
    if (r == 0 && dems_hex_decode(PQgetvalue(res, 0, 0), 64, ret, 32) < 0)
        r = DEMS_EDB;
    PQclear(res);
    return r;
}

struct dems_merkle_reader ledger_db_reader(struct dems_ledger *l)
{
    return (struct dems_merkle_reader){.get_subtree = db_subtree, .ctx = l};
}

static int load_frontier(struct dems_ledger *l, uint64_t size)
{
    struct dems_merkle_reader rd = ledger_db_reader(l);
    int r = dems_merkle_frontier_load(&rd, size, &l->frontier);
    l->frontier_ok = r == 0;
    return r;
}

/* ---- one batch ---- */

struct arrays {
    struct dems_buf seq, type, artefact, bytes, leaf, sig;
    struct dems_buf lvl, start, hash;
};

static void arrays_init(struct arrays *a)
{
    struct dems_buf *all[] = {&a->seq, &a->type, &a->artefact, &a->bytes, &a->leaf,
                              &a->sig, &a->lvl,  &a->start,    &a->hash};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        dems_buf_init(all[i], 64 << 20);
        dems_buf_append(all[i], "{", 1);
    }
}

static void arrays_done(struct arrays *a)
{
    struct dems_buf *all[] = {&a->seq, &a->type, &a->artefact, &a->bytes, &a->leaf,
                              &a->sig, &a->lvl,  &a->start,    &a->hash};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        dems_buf_done(all[i]);
}

/* Appends one element (text without quotes or commas, or NULL) to an array literal. */
static int add(struct dems_buf *b, const char *v)
{
    int r = b->len > 1 ? dems_buf_append(b, ",", 1) : 0;
    if (r == 0)
        r = dems_buf_append(b, v != NULL ? v : "NULL", strlen(v != NULL ? v : "NULL"));
    return r;
}

static int add_hex(struct dems_buf *b, const uint8_t *p, size_t n)
{
    char *hex = malloc(2 * n + 1);
    if (hex == NULL)
        return DEMS_ENOMEM;
    dems_hex_encode(p, n, hex);
    int r = add(b, hex);
    free(hex);
    return r;
}

static int close_arrays(struct arrays *a)
{
    struct dems_buf *all[] = {&a->seq, &a->type, &a->artefact, &a->bytes, &a->leaf,
                              &a->sig, &a->lvl,  &a->start,    &a->hash};
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(all) / sizeof(all[0]); i++)
        r = dems_buf_append(all[i], "}", 2); /* with the NUL */
    return r;
}

/* The item's pre-statement, inside the item's savepoint (batch_item). */
static int run_pre(struct dems_ledger *l, struct dems_ledger_item *it)
{
    if (it->pre_sql == NULL)
        return 0;
    const char *params[DEMS_LEDGER_PRE_MAX + 1];
    char seq[24];
    int n = it->pre_nparams;
    for (int i = 0; i < n; i++)
        params[i] = it->pre_params[i];
    if (it->pre_seq) {
        /* The item is encoded next with the frontier's size as its seq. */
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)l->frontier.size);
        params[n++] = seq;
    }
    PGresult *res = ledger_q(l, it->pre_sql, n, params);
    int r = 0;
    if (!ledger_ok(res)) {
        r = dems_db_is_unique_violation(res) ? DEMS_ECONFLICT : DEMS_EDB;
        if (r == DEMS_EDB)
            dems_log(DEMS_LOG_WARN, NULL, NULL, "ledger: pre-statement failed: %.300s",
                     PQresultErrorMessage(res));
    } else if (it->pre_must_change && strcmp(PQcmdTuples(res), "0") == 0 && PQntuples(res) == 0) {
        r = DEMS_ENOTFOUND;
    }
    PQclear(res);
    return r;
}

/* The entry an item describes, as sequence number seq. Borrows it. */
static struct dems_ledger_entry item_entry(const struct dems_ledger_item *it, uint64_t seq)
{
    struct dems_ledger_entry e = {
        .seq = seq,
        .time_ms = ledger_now_ms(),
        .type = it->type,
        .actor_kind = it->actor_kind,
        .actor_id = it->actor_id,
        .has_artefact = it->has_artefact,
        .has_sha256 = it->has_sha256,
        .has_size = it->has_size,
        .size = it->size,
        .case_id = it->case_id[0] != '\0' ? it->case_id : NULL,
        .payload = it->payload,
    };
    memcpy(e.artefact, it->artefact, 32);
    memcpy(e.sha256, it->sha256, 32);
    return e;
}

/*
 * Encodes an item's entry as seq into bytes and checks the bytes as a
 * verifier will, so nothing dems-verify would reject is ever signed.
 * Returns 0, DEMS_EINVAL (the item can never be an entry) or DEMS_ENOMEM.
 */
static int encode_item(const struct dems_ledger_item *it, uint64_t seq, struct dems_buf *bytes)
{
    struct dems_ledger_entry e = item_entry(it, seq);
    dems_buf_reset(bytes);
    int r = dems_ledger_entry_encode(&e, bytes);
    if (r == DEMS_ETOOBIG)
        r = DEMS_EINVAL;
    if (r == 0)
        r = dems_ledger_entry_check(bytes->data, bytes->len);
    return r;
}

/* Hashes and signs one encoded entry (seq = the frontier's size) and adds it and its subtrees to a.
 */
static int add_entry(struct dems_ledger *l, struct dems_ledger_item *it, struct arrays *a,
                     const struct dems_buf *bytes)
{
    uint64_t seq = l->frontier.size;
    uint8_t leaf[32], sig[64], completed[DEMS_MERKLE_MAX_LEVELS][32];
    dems_merkle_leaf_hash(bytes->data, bytes->len, leaf);
    dems_ledger_entry_sign(l->key, leaf, sig);
    int n = dems_merkle_frontier_append(&l->frontier, leaf, completed);
    if (n < 0)
        return n;
    char seqs[24], art[65];
    snprintf(seqs, sizeof(seqs), "%llu", (unsigned long long)seq);
    if (it->has_artefact)
        dems_hex_encode(it->artefact, 32, art);
    int r = add(&a->seq, seqs);
    if (r == 0)
        r = add(&a->type, dems_ledger_type_name(it->type));
    if (r == 0)
        r = add(&a->artefact, it->has_artefact ? art : NULL);
    if (r == 0)
        r = add_hex(&a->bytes, bytes->data, bytes->len);
    if (r == 0)
        r = add_hex(&a->leaf, leaf, 32);
    if (r == 0)
        r = add_hex(&a->sig, sig, 64);
    uint64_t size = l->frontier.size;
    for (int lv = 0; r == 0 && lv < n; lv++) {
        char lvs[16], st[24];
        snprintf(lvs, sizeof(lvs), "%d", lv);
        snprintf(st, sizeof(st), "%llu", (unsigned long long)(size - (UINT64_C(1) << lv)));
        r = add(&a->lvl, lvs);
        if (r == 0)
            r = add(&a->start, st);
        if (r == 0)
            r = add_hex(&a->hash, completed[lv], 32);
    }
    it->seq = seq;
    return r;
}

#define APPEND_SQL                                                                                 \
    "SELECT ledger_append($1::bigint[], $2::text[], $3::text[], $4::integer,"                      \
    " $5::text[], $6::text[], $7::text[], $8::smallint[], $9::bigint[], $10::text[])"

/*
 * Reads the results of a pipeline up to its sync: 0 when every statement
 * succeeded, DEMS_EDB (the first error logged) otherwise.
 */
static int pipeline_results(struct dems_ledger *l)
{
    int r = 0;
    for (int guard = 0; guard < 64; guard++) {
        PGresult *res = PQgetResult(l->db);
        if (res == NULL) { /* the end of one statement's results */
            if (PQstatus(l->db) != CONNECTION_OK)
                break;
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            return r;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            if (r == 0 && st != PGRES_PIPELINE_ABORTED)
                warn_db(l, res);
            r = DEMS_EDB;
        }
        PQclear(res);
    }
    warn_db(l, NULL);
    return DEMS_EDB; /* no sync: the connection is lost */
}

/*
 * Appends the batch's entries and subtrees and moves the head, through
 * ledger_append (migration 0011), which checks them against the log (the
 * application role may not insert into the ledger's tables itself), and
 * commits: the two statements sent together (libpq's pipeline mode), so the
 * group commit costs one round trip less. PostgreSQL skips the COMMIT when
 * ledger_append fails; the caller then rolls back, as before.
 */
static int insert_and_commit(struct dems_ledger *l, struct arrays *a)
{
    char kid[16];
    snprintf(kid, sizeof(kid), "%d", l->key_id);
    const char *p[] = {(const char *)a->seq.data,      (const char *)a->type.data,
                       (const char *)a->artefact.data, kid,
                       (const char *)a->bytes.data,    (const char *)a->leaf.data,
                       (const char *)a->sig.data,      (const char *)a->lvl.data,
                       (const char *)a->start.data,    (const char *)a->hash.data};
    if (!PQenterPipelineMode(l->db)) { /* not idle: the statements one by one */
        int r = ledger_exec(l, APPEND_SQL, 10, p);
        return r == 0 ? ledger_exec(l, "COMMIT", 0, NULL) : r;
    }
    int r = PQsendQueryParams(l->db, APPEND_SQL, 10, NULL, p, NULL, NULL, 0) &&
                    PQsendQueryParams(l->db, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
                    PQpipelineSync(l->db)
                ? pipeline_results(l)
                : DEMS_EDB;
    if (!PQexitPipelineMode(l->db) && PQstatus(l->db) == CONNECTION_OK) {
        /* Results still pending (a send failed half way): the connection is
         * in no state to roll back; start it afresh. */
        PQreset(l->db);
        r = DEMS_EDB;
    }
    return r;
}

static int load_key(struct dems_ledger *l, int id, char *err, size_t errlen);
static int head_locked(struct dems_ledger *l, PGresult *res);

/*
 * Locks the head and makes sure the frontier and the signing key match it
 * (another process may have appended, or rotated the key).
 */
int ledger_lock_head(struct dems_ledger *l)
{
    return head_locked(l, ledger_q(l, "SELECT size, key_id FROM ledger_lock_head()", 0, NULL));
}

/*
 * BEGIN and ledger_lock_head in one round trip (a simple-protocol query of
 * two statements answers with the last one's result, or the first error).
 * The caller rolls back when this fails, as after ledger_lock_head.
 */
static int begin_locked(struct dems_ledger *l)
{
    return head_locked(l, PQexec(l->db, "BEGIN; SELECT size, key_id FROM ledger_lock_head()"));
}

/* The end of ledger_lock_head: res is the head's row (size, key id), taken. */
static int head_locked(struct dems_ledger *l, PGresult *res)
{
    int r = ledger_ok(res) && PQntuples(res) == 1 ? 0 : DEMS_EDB;
    uint64_t size = 0, kid = 0;
    if (r == 0) {
        const char *v = PQgetvalue(res, 0, 0), *k = PQgetvalue(res, 0, 1);
        r = dems_parse_u64(v, strlen(v), DEMS_MERKLE_MAX_SIZE, &size) < 0 ||
                    dems_parse_u64(k, strlen(k), INT32_MAX, &kid) < 0
                ? DEMS_EDB
                : 0;
    }
    PQclear(res);
    /*
     * The log only grows: a head below what this process has seen, or below
     * the newest signed checkpoint, means entries were removed from the
     * database (by a superuser with the triggers disabled, or a restored
     * backup). Signing on would contradict what was signed before.
     */
    uint64_t floor = l->seen_size;
    if (l->has_signed_cp && l->signed_cp.size > floor)
        floor = l->signed_cp.size;
    if (r == 0 && size < floor) {
        ledger_break(l,
                     "ledger: the database's log has %llu entries, fewer than the %llu this "
                     "server already saw or signed a checkpoint for: entries were removed from "
                     "the database; nothing more will be appended or signed",
                     (unsigned long long)size, (unsigned long long)floor);
        return DEMS_EUNAVAIL;
    }
    if (r == 0 && (!l->frontier_ok || l->frontier.size != size))
        r = load_frontier(l, size);
    if (r == 0)
        l->seen_size = size;
    if (r == 0 && (int)kid != l->key_id) {
        char err[256];
        r = load_key(l, (int)kid, err, sizeof(err));
        if (r < 0)
            dems_log(DEMS_LOG_ERROR, NULL, NULL, "%s", err);
    }
    return r;
}

/*
 * A KEY_ROTATED item: makes the next key, names it in the entry's payload
 * and stores it sealed, in the batch's transaction. The entry itself is
 * signed by the key it retires; the caller switches keys after COMMIT.
 */
static int begin_rotation(struct dems_ledger *l, struct dems_ledger_item *it,
                          struct dems_ledger_key **ret_next)
{
    char vkey[DEMS_NOTE_VKEY_MAX], kid[16];
    int r = dems_ledger_key_new(l->origin, NULL, ret_next);
    if (r < 0)
        return r;
    dems_ledger_key_vkey(*ret_next, vkey);
    if (it->payload == NULL)
        it->payload = json_object();
    if (it->payload == NULL || json_object_set_new(it->payload, "vkey", json_string(vkey)) < 0)
        r = DEMS_ENOMEM;
    uint8_t seed[32], pk[32];
    uint8_t sealed[crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 32];
    char shex[2 * sizeof(sealed) + 1], pkhex[65];
    dems_ledger_key_seed(*ret_next, seed);
    randombytes_buf(sealed, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(sealed + crypto_secretbox_NONCEBYTES, seed, 32, sealed, l->master);
    sodium_memzero(seed, sizeof(seed));
    dems_ledger_key_public(*ret_next, pk);
    dems_hex_encode(sealed, sizeof(sealed), shex);
    dems_hex_encode(pk, 32, pkhex);
    snprintf(kid, sizeof(kid), "%d", l->key_id + 1);
    const char *p[] = {kid, l->origin, pkhex, shex};
    if (r == 0)
        r = ledger_exec(l, "SELECT ledger_add_key($1::integer, $2, $3, $4)", 4, p);
    if (r < 0) {
        dems_ledger_key_free(*ret_next);
        *ret_next = NULL;
    }
    return r;
}

static void log_item_refused(const struct dems_ledger_item *it, int err)
{
    dems_log(DEMS_LOG_WARN, NULL, NULL,
             "ledger: a %s entry by %.128s was not appended (%s); the rest of its batch was",
             dems_ledger_type_name(it->type), it->actor_id, dems_strerror(err));
}

/*
 * One item inside its batch's transaction: the pre-statement, a key
 * rotation and the encoding run under a savepoint, so an item that fails
 * (a refused pre-statement, an entry that cannot be encoded) is rolled back
 * alone and the batch goes on without it. Its outcome is in it->err.
 * Returns 0, or a negative DEMS_E* when the whole batch cannot go on (the
 * transaction is lost, or out of memory).
 */
static int batch_item(struct dems_ledger *l, struct dems_ledger_item *it, struct arrays *a,
                      struct dems_buf *bytes, struct dems_ledger_key **next)
{
    bool savepoint = it->pre_sql != NULL || it->type == DEMS_LEDGER_KEY_ROTATED;
    if (savepoint && ledger_exec(l, "SAVEPOINT item", 0, NULL) < 0)
        return DEMS_EDB;
    it->err = run_pre(l, it);
    if (it->err == 0 && it->type == DEMS_LEDGER_KEY_ROTATED)
        it->err = begin_rotation(l, it, next);
    if (it->err == 0)
        it->err = encode_item(it, l->frontier.size, bytes);
    if (savepoint &&
        ledger_exec(l, it->err == 0 ? "RELEASE SAVEPOINT item" : "ROLLBACK TO SAVEPOINT item", 0,
                    NULL) < 0)
        return DEMS_EDB;
    if (it->err == DEMS_ENOMEM)
        return DEMS_ENOMEM;
    if (it->err < 0) {
        dems_ledger_key_free(*next); /* its key row was rolled back with it */
        *next = NULL;
        if (it->err != DEMS_ECONFLICT)
            log_item_refused(it, it->err);
        return 0;
    }
    return add_entry(l, it, a, bytes);
}

/*
 * Appends batch in one transaction. Returns 0 (each item's own outcome in
 * its err) or a negative DEMS_E* when nothing was appended; then
 * *ret_retry says whether a statement that carried the items' data failed
 * on a connection that is still good, so that each item may be retried
 * alone.
 */
static int append_batch(struct dems_ledger *l, struct dems_ledger_item *batch, bool *ret_retry)
{
    *ret_retry = false;
    if (atomic_load_explicit(&l->broken, memory_order_acquire))
        return DEMS_EUNAVAIL;
    l->reconnect_at_ms = 0; /* entries are waiting: try now */
    if (!connected(l))
        return DEMS_EDB;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = begin_locked(l);
    struct dems_merkle_frontier saved = l->frontier;
    uint64_t size_before = l->frontier.size;
    struct arrays a;
    arrays_init(&a);
    struct dems_buf bytes;
    dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);
    struct dems_ledger_key *next = NULL; /* a rotation is always its batch's last item */
    bool locked = r == 0;
    for (struct dems_ledger_item *it = batch; r == 0 && it != NULL; it = it->next)
        r = batch_item(l, it, &a, &bytes, &next);
    bool items_done = r == 0;
    if (r == 0)
        r = close_arrays(&a);
    if (r == 0 && a.seq.len > 3)
        r = insert_and_commit(l, &a); /* moves the head too */
    else if (r == 0)
        r = ledger_exec(l, "COMMIT", 0, NULL);
    if (r < 0) {
        ledger_exec(l, "ROLLBACK", 0, NULL);
        l->frontier = saved;
        l->frontier_ok = false; /* reload from the database next time */
        dems_ledger_key_free(next);
        *ret_retry = locked && items_done && PQstatus(l->db) == CONNECTION_OK;
    } else {
        l->seen_size = l->frontier.size;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        dems_metrics_ledger_commit((double)(t1.tv_sec - t0.tv_sec) +
                                       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
                                   (size_t)(l->frontier.size - size_before));
    }
    if (r == 0 && next != NULL) {
        dems_ledger_key_free(l->key);
        l->key = next;
        l->key_id++;
        dems_log(DEMS_LOG_INFO, NULL, NULL, "ledger: signing key rotated (key %d from entry %llu)",
                 l->key_id, (unsigned long long)l->frontier.size);
    }
    dems_buf_done(&bytes);
    arrays_done(&a);
    return r;
}

static void deliver(void *arg)
{
    struct dems_ledger_item *it = arg;
    if (it->done != NULL)
        it->done(it, it->arg);
    dems_ledger_item_free(it);
}

/* Hands each item of a finished batch back to its loop (err set when r failed it). */
static void deliver_all(struct dems_ledger_item *batch, int r)
{
    while (batch != NULL) {
        struct dems_ledger_item *next = batch->next;
        if (r < 0 && batch->err == 0)
            batch->err = r;
        if (batch->loop == NULL || dems_loop_post(batch->loop, deliver, batch) < 0)
            deliver(batch);
        batch = next;
    }
}

/*
 * Appends a batch of n items and delivers the outcomes. When a statement
 * carrying the batch's data failed, no item is blamed for the others: each
 * is retried alone, so one bad item fails alone and never its batch.
 */
static void run_batch(struct dems_ledger *l, struct dems_ledger_item *batch, size_t n)
{
    bool retry = false;
    int r = append_batch(l, batch, &retry);
    if (r == DEMS_EUNAVAIL && atomic_load_explicit(&l->broken, memory_order_acquire) &&
        ledger_now_ms() - l->fault_logged_ms >= 10000) {
        l->fault_logged_ms = ledger_now_ms(); /* loud, but one line per 10 s */
        dems_log(DEMS_LOG_ERROR, NULL, json_pack("{s:s}", "event", "ledger_inconsistent"),
                 "ledger: refusing to append %zu entries: %s", n, l->fault);
    }
    if (r == 0 || !retry || n < 2) {
        deliver_all(batch, r);
        return;
    }
    dems_log(DEMS_LOG_WARN, NULL, NULL,
             "ledger: a batch of %zu entries failed; appending each alone", n);
    while (batch != NULL) {
        struct dems_ledger_item *it = batch;
        batch = it->next;
        it->next = NULL;
        it->err = 0;
        r = append_batch(l, it, &retry);
        if (r < 0)
            log_item_refused(it, r);
        deliver_all(it, r);
    }
}

static uint64_t signed_size(const struct dems_ledger *l)
{
    return l->has_signed_cp ? l->signed_cp.size : 0;
}

/*
 * While idle, once a second: a head below what this process saw means the
 * log was cut under it (see ledger_lock_head); noticed now, not at the next
 * append, so /readyz tells the truth at once.
 */
static void watch_head(struct dems_ledger *l)
{
    if (atomic_load_explicit(&l->broken, memory_order_acquire) || l->seen_size == 0)
        return;
    PGresult *res = ledger_q(l, "SELECT size FROM ledger_head", 0, NULL);
    uint64_t size = 0;
    const char *v = ledger_ok(res) && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL;
    bool have = v != NULL && dems_parse_u64(v, strlen(v), DEMS_MERKLE_MAX_SIZE, &size) == 0;
    PQclear(res);
    if (have && size < l->seen_size)
        ledger_break(l,
                     "ledger: the database's log has %llu entries, fewer than the %llu this "
                     "server already saw: entries were removed from the database; nothing more "
                     "will be appended or signed",
                     (unsigned long long)size, (unsigned long long)l->seen_size);
}

static void *appender_main(void *arg)
{
    struct dems_ledger *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->head == NULL && !l->stop) {
            /* Wake at least once a second to checkpoint recent growth. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        }
        struct dems_ledger_item *batch = l->head;
        size_t n = 0;
        struct dems_ledger_item *last = NULL;
        for (struct dems_ledger_item *it = batch; it != NULL && n < BATCH_MAX; it = it->next) {
            last = it;
            n++;
            if (it->type == DEMS_LEDGER_KEY_ROTATED)
                break; /* entries after a rotation go in the next batch, under the new key */
        }
        if (last != NULL) {
            l->head = last->next;
            if (l->head == NULL)
                l->tail = NULL;
            last->next = NULL;
        }
        bool stopping = l->stop && l->head == NULL;
        l->busy = batch != NULL;
        pthread_mutex_unlock(&l->mu);

        if (batch != NULL)
            run_batch(l, batch, n);
        if (!stopping)
            ledger_refusals_tick(l, false);
        /* Both need the database: after it went away, they wait for a
         * reconnection (with its backoff) instead of failing every second. */
        if (l->frontier_ok && l->frontier.size > signed_size(l) &&
            (ledger_now_ms() - l->checkpoint_ms >= 1000 || stopping)) {
            if (connected(l))
                ledger_checkpoint_write(l);
        } else if (batch == NULL && !stopping && connected(l)) {
            watch_head(l);
        }
        pthread_mutex_lock(&l->mu);
        l->busy = false;
        if (l->head == NULL)
            pthread_cond_broadcast(&l->idle_cv);
        if (stopping)
            break;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- start, stop, queue ---- */

/* Loads signing key id (sealed with the master key) and makes it the key in force. */
static int load_key(struct dems_ledger *l, int id, char *err, size_t errlen)
{
    char kid[16];
    snprintf(kid, sizeof(kid), "%d", id);
    const char *p[] = {kid};
    PGresult *res =
        ledger_q(l, "SELECT encode(sealed_seed, 'hex'), name FROM ledger_keys WHERE id = $1", 1, p);
    if (!ledger_ok(res) || PQntuples(res) != 1) {
        snprintf(err, errlen, "ledger: cannot read signing key %d: %.300s", id,
                 PQresultErrorMessage(res));
        PQclear(res);
        return DEMS_EDB;
    }
    uint8_t seed[32];
    uint8_t sealed[crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 32];
    const char *hex = PQgetvalue(res, 0, 0);
    int r = 0;
    if (dems_hex_decode(hex, strlen(hex), sealed, sizeof(sealed)) < 0 ||
        crypto_secretbox_open_easy(seed, sealed + crypto_secretbox_NONCEBYTES,
                                   sizeof(sealed) - crypto_secretbox_NONCEBYTES, sealed,
                                   l->master) != 0) {
        snprintf(err, errlen,
                 "ledger: the signing key does not open with this master key "
                 "(wrong or replaced master key file?)");
        r = DEMS_ECRYPTO;
    }
    if (r == 0 && strcmp(PQgetvalue(res, 0, 1), l->origin) != 0) {
        snprintf(err, errlen, "ledger: this log's origin is \"%s\"; ledger_origin cannot change",
                 PQgetvalue(res, 0, 1));
        r = DEMS_EINVAL;
    }
    PQclear(res);
    struct dems_ledger_key *k = NULL;
    if (r == 0)
        r = dems_ledger_key_new(l->origin, seed, &k);
    sodium_memzero(seed, sizeof(seed));
    if (r == 0) {
        dems_ledger_key_free(l->key);
        l->key = k;
        l->key_id = id;
    }
    return r;
}

/*
 * At start: loads the key in force, or on first start creates key 1
 * (sealed with the master key), and formats key 1's verifier key.
 */
static int start_keys(struct dems_ledger *l, char *err, size_t errlen)
{
    PGresult *res = ledger_q(l,
                             "SELECT coalesce(max(id), 0), (SELECT encode(public_key, 'hex') FROM"
                             " ledger_keys WHERE id = 1) FROM ledger_keys",
                             0, NULL);
    if (!ledger_ok(res) || PQntuples(res) != 1) {
        snprintf(err, errlen, "ledger: %.300s", PQresultErrorMessage(res));
        PQclear(res);
        return DEMS_EDB;
    }
    uint64_t id = 0;
    const char *idv = PQgetvalue(res, 0, 0);
    if (dems_parse_u64(idv, strlen(idv), INT32_MAX, &id) < 0) {
        PQclear(res);
        snprintf(err, errlen, "ledger: bad signing key id");
        return DEMS_EDB;
    }
    struct dems_note_verifier first;
    bool have_first =
        !PQgetisnull(res, 0, 1) && dems_hex_decode(PQgetvalue(res, 0, 1), 64, first.pk, 32) == 0;
    PQclear(res);
    if (id > 0) {
        if (!have_first) {
            snprintf(err, errlen, "ledger: signing key 1 is missing");
            return DEMS_EDB;
        }
        snprintf(first.name, sizeof(first.name), "%s", l->origin);
        dems_note_keyhash(first.name, strlen(first.name), first.pk, first.keyhash);
        dems_note_verifier_format(&first, l->first_vkey);
        return load_key(l, (int)id, err, errlen);
    }
    struct dems_ledger_key *k = NULL;
    int r = dems_ledger_key_new(l->origin, NULL, &k);
    if (r < 0) {
        snprintf(err, errlen, "ledger: ledger_origin \"%s\" is not a valid key name", l->origin);
        return r;
    }
    uint8_t seed[32], pk[32];
    uint8_t sealed[crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 32];
    dems_ledger_key_seed(k, seed);
    randombytes_buf(sealed, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(sealed + crypto_secretbox_NONCEBYTES, seed, 32, sealed, l->master);
    sodium_memzero(seed, sizeof(seed));
    dems_ledger_key_public(k, pk);
    char shex[2 * sizeof(sealed) + 1], pkhex[65];
    dems_hex_encode(sealed, sizeof(sealed), shex);
    dems_hex_encode(pk, 32, pkhex);
    const char *p[] = {l->origin, pkhex, shex};
    r = ledger_exec(l, "SELECT ledger_add_key(1, $1, $2, $3)", 3, p);
    dems_ledger_key_free(k);
    if (r < 0) {
        snprintf(err, errlen, "ledger: cannot store the signing key");
        return r;
    }
    /* Read it back: another process starting at the same time may have won. */
    return start_keys(l, err, errlen);
}

int dems_ledger_start(struct dems_server *srv, const char *conninfo,
                      const uint8_t master_key[static 32], char *err, size_t errlen)
{
    struct dems_ledger *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return DEMS_ENOMEM;
    l->srv = srv;
    snprintf(l->origin, sizeof(l->origin), "%s", srv->cfg->ledger_origin);
    snprintf(l->anchor_path, sizeof(l->anchor_path), "%s/ledger/checkpoint", srv->cfg->data_dir);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    pthread_cond_init(&l->idle_cv, NULL);
    memcpy(l->master, master_key, 32);
    l->db = dems_db_connect_sync(conninfo, err, errlen);
    int r = l->db != NULL ? 0 : DEMS_EDB;
    if (r == 0)
        r = start_keys(l, err, errlen);
    if (r == 0 && ledger_exec(l, "BEGIN", 0, NULL) == 0) {
        r = ledger_lock_head(l);
        ledger_exec(l, "COMMIT", 0, NULL);
        if (r < 0)
            snprintf(err, errlen, "ledger: stored subtree hashes are missing or damaged");
    }
    if (r == 0)
        r = ledger_checkpoint_start(l, err, errlen);
    if (r == 0 && pthread_create(&l->thread, NULL, appender_main, l) != 0)
        r = DEMS_EINTERNAL;
    if (r < 0) {
        PQfinish(l->db);
        dems_ledger_key_free(l->key);
        sodium_memzero(l->master, sizeof(l->master));
        free(l);
        return r;
    }
    srv->ledger = l;
    return 0;
}

void dems_ledger_stop(struct dems_server *srv)
{
    struct dems_ledger *l = srv->ledger;
    if (l == NULL)
        return;
    ledger_refusals_tick(l, true); /* the refusals counted so far, summarised before stopping */
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    ledger_refusals_free(atomic_load(&l->refusals));
    PQfinish(l->db);
    dems_ledger_key_free(l->key);
    sodium_memzero(l->master, sizeof(l->master));
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    pthread_cond_destroy(&l->idle_cv);
    free(l);
    srv->ledger = NULL;
}

bool dems_ledger_drain(struct dems_server *srv, unsigned timeout_s)
{
    struct dems_ledger *l = srv->ledger;
    if (l == NULL)
        return true;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout_s;
    pthread_mutex_lock(&l->mu);
    int r = 0;
    while ((l->head != NULL || l->busy) && r == 0)
        r = pthread_cond_timedwait(&l->idle_cv, &l->mu, &until);
    bool idle = l->head == NULL && !l->busy;
    pthread_mutex_unlock(&l->mu);
    return idle;
}

int dems_ledger_append(struct dems_server *srv, struct dems_loop *loop,
                       struct dems_ledger_item *item)
{
    struct dems_ledger *l = srv->ledger;
    item->loop = loop;
    item->next = NULL;
    /*
     * An item that can never be an entry fails here, alone, before it joins
     * a batch. A rotation is checked in its batch, once its payload names
     * the new key.
     */
    if (item->type != DEMS_LEDGER_KEY_ROTATED) {
        struct dems_buf bytes;
        dems_buf_init(&bytes, DEMS_LEDGER_MAX_ENTRY);
        int r = encode_item(item, 0, &bytes);
        dems_buf_done(&bytes);
        if (r < 0) {
            log_item_refused(item, r);
            dems_ledger_item_free(item);
            return r;
        }
    }
    pthread_mutex_lock(&l->mu);
    if (l->stop) {
        pthread_mutex_unlock(&l->mu);
        dems_ledger_item_free(item);
        return DEMS_EUNAVAIL;
    }
    if (l->tail != NULL)
        l->tail->next = item;
    else
        l->head = item;
    l->tail = item;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

const char *dems_ledger_first_vkey(const struct dems_server *srv)
{
    return srv->ledger->first_vkey;
}

const char *dems_ledger_fault(const struct dems_server *srv)
{
    const struct dems_ledger *l = srv->ledger;
    if (l == NULL || !atomic_load_explicit(&l->broken, memory_order_acquire))
        return NULL;
    return l->fault;
}

const char *dems_ledger_origin(const struct dems_server *srv)
{
    return srv->ledger->origin;
}
