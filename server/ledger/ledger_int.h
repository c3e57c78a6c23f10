/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared inside server/ledger only: the appender's state and the helpers
 * its files share (append.c: queue, batches, keys; checkpoint.c: signed
 * checkpoints and the copy of the newest one kept outside the database).
 * Everything here runs on the appender's thread (or at start, before it
 * exists) unless it says otherwise.
 */
#ifndef DEMSD_LEDGER_INT_H
#define DEMSD_LEDGER_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dems/config.h"
#include "dems/ledger.h"
#include "demsd/ledger.h"

struct dems_ledger {
    struct dems_server *srv;
    PGconn *db;
    char *conninfo;
    uint8_t master[32];          /* opens sealed signing keys (rotations by other processes) */
    struct dems_ledger_key *key; /* the key in force: ledger_keys' highest id */
    int key_id;
    char first_vkey[DEMS_NOTE_VKEY_MAX]; /* key 1: export headers name it */
    char origin[DEMS_NOTE_MAX_NAME + 1];
    struct dems_merkle_frontier frontier;
    bool frontier_ok;
    /*
     * The newest checkpoint this process knows was signed (by it, or by
     * another process sharing its data directory, read from the file), and
     * when this process last signed one.
     */
    struct dems_checkpoint signed_cp;
    bool has_signed_cp;
    int64_t checkpoint_ms;
    uint64_t seen_size;     /* the largest log size this process has seen committed */
    char anchor_path[4200]; /* DATA/ledger/checkpoint */
    /*
     * Set once, when the database's log is found not to extend what was
     * signed: from then on nothing is appended or signed. fault is written
     * before broken is set (release) and read after it (acquire), so other
     * threads (/readyz) may read it.
     */
    atomic_bool broken;
    char fault[512];
    int64_t fault_logged_ms;
    /* refusals.c; made by the first refusal (job workers never refuse) */
    _Atomic(struct dems_ledger_refusals *) refusals;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct dems_ledger_item *head, *tail;
    bool stop;
    bool busy;              /* a batch is being appended (under mu) */
    pthread_cond_t idle_cv; /* broadcast when the queue is empty and no batch runs */
    /* While the database is unreachable: one warning per LEDGER_DB_WARN_MS,
     * and reconnection attempts with a backoff (append.c, connected()). */
    int64_t db_warned_ms;
    unsigned db_suppressed;
    int64_t reconnect_at_ms;
    unsigned reconnect_ms;
};

/* Milliseconds since the Unix epoch. */
int64_t ledger_now_ms(void);

/* Blocking SQL on the appender's connection. */
PGresult *ledger_q(struct dems_ledger *l, const char *sql, int n, const char *const *p);
bool ledger_ok(const PGresult *res);
/* Runs a statement that returns nothing wanted: 0 or DEMS_EDB (logged). */
int ledger_exec(struct dems_ledger *l, const char *sql, int n, const char *const *p);

/* A Merkle reader over ledger_subtrees (one query a read). */
struct dems_merkle_reader ledger_db_reader(struct dems_ledger *l);

/*
 * Inside a transaction: locks ledger_head and brings the frontier and the
 * signing key up to date with it (another process may have appended or
 * rotated). A log smaller than one this process saw, or than the newest
 * signed checkpoint, breaks the ledger (ledger_break). Returns 0,
 * DEMS_EUNAVAIL (broken) or DEMS_EDB.
 */
int ledger_lock_head(struct dems_ledger *l);

/*
 * Marks the ledger broken for good with a one-line reason (printf-style),
 * logged as an error. Nothing is appended or signed afterwards; /readyz
 * reports it. Idempotent: the first reason stays.
 */
void ledger_break(struct dems_ledger *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * At start, after the keys and the head are loaded: reads the checkpoint
 * file (or, without one, adopts the database's newest checkpoint and
 * writes it), checks that the database's log extends it, and signs a
 * checkpoint when the log has grown past it. Returns 0, or a negative
 * DEMS_E* with one line in err (the log was truncated or rewritten: start
 * must be refused).
 */
int ledger_checkpoint_start(struct dems_ledger *l, char *err, size_t errlen);

/*
 * Signs a checkpoint of the log as it is under the head lock, after
 * checking that it extends the newest signed checkpoint, and writes it to
 * the file (fsynced) and then to ledger_checkpoints, in one transaction.
 * Returns 0, DEMS_EUNAVAIL (broken), DEMS_EIO or DEMS_EDB.
 */
int ledger_checkpoint_write(struct dems_ledger *l);

/* Refusal bounds and summaries (refusals.c). NULL means out of memory. */
struct dems_ledger_refusals *ledger_refusals_new(const struct dems_config *cfg);
void ledger_refusals_free(struct dems_ledger_refusals *rf);

/*
 * Ends the refusal window once it is over (or at once when force) and
 * queues its ACCESS_DENIED_SUMMARY entries. Called by the appender once a
 * second, and with force at stop.
 */
void ledger_refusals_tick(struct dems_ledger *l, bool force);

#endif
