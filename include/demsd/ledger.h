/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The custody ledger service inside demsd. One appender thread per process
 * owns a blocking PostgreSQL connection and the in-memory Merkle frontier;
 * loops hand it entries and get their sequence numbers back on their own
 * thread. Appends are batched into one transaction (group commit) under the
 * ledger_head row lock, so sequence numbers are gapless even with several
 * demsd processes on one database. A signed checkpoint is written at most
 * once a second while the log grows. Key material: the Ed25519 seed is kept
 * in ledger_keys sealed (XSalsa20-Poly1305) with the master key, which lives
 * in a file outside the database (server/store/keys.c). Rotation: queue a
 * DEMS_LEDGER_KEY_ROTATED item; the appender makes the next key, records it
 * in the item's payload ("vkey"), signs that entry with the retiring key,
 * and signs everything after it (entries and checkpoints) with the new one.
 */
#ifndef DEMSD_LEDGER_H
#define DEMSD_LEDGER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/ledger.h"
#include "dems/str.h"

struct dems_loop;
struct dems_server;
struct dems_ledger;

/* Most parameters an item's pre-statement may take. */
#define DEMS_LEDGER_PRE_MAX 20

/* One entry to append. Filled by the caller; owned by the ledger once queued. */
struct dems_ledger_item {
    enum dems_ledger_type type;
    enum dems_ledger_actor actor_kind;
    char actor_id[DEMS_LEDGER_MAX_ID + 1];
    bool has_artefact;
    uint8_t artefact[32];
    bool has_sha256;
    uint8_t sha256[32];
    bool has_size;
    uint64_t size;
    char case_id[DEMS_LEDGER_MAX_ID + 1]; /* the entry's "case"; empty when none */
    json_t *payload;                      /* owned; NULL for {} */
    /*
     * Optional statement run in the same transaction just before the entry
     * (e.g. inserting the artefact the entry records). If it fails the entry
     * is not appended and err says why; other entries in the batch are not
     * affected (it runs under a savepoint of its own). Owned strings.
     */
    char *pre_sql;
    int pre_nparams;
    char *pre_params[DEMS_LEDGER_PRE_MAX];
    /* When set, a pre-statement that touched no row (a guarded UPDATE whose
     * condition no longer holds: the object changed meanwhile) fails the
     * item with DEMS_ENOTFOUND, so no entry records a change not made. */
    bool pre_must_change;
    /* When set, the pre-statement gets one more parameter after its own,
     * $(pre_nparams + 1): the sequence number this entry will have, so that
     * the row it changes can name its entry in the same transaction. */
    bool pre_seq;
    /* Results, valid in done: err (0, DEMS_ECONFLICT for a unique violation
     * in pre_sql, DEMS_ENOTFOUND for pre_must_change, DEMS_EINVAL for an entry that cannot be
     * encoded, DEMS_EDB, DEMS_EUNAVAIL), seq. An item that fails never fails the others. */
    int err;
    uint64_t seq;
    void (*done)(struct dems_ledger_item *item, void *arg); /* on loop's thread */
    void *arg;
    struct dems_loop *loop;
    struct dems_ledger_item *next;
};

/* A new item (zeroed); free with dems_ledger_item_free. */
struct dems_ledger_item *dems_ledger_item_new(enum dems_ledger_type type,
                                              enum dems_ledger_actor actor_kind,
                                              const char *actor_id);
void dems_ledger_item_free(struct dems_ledger_item *item);

/*
 * Loads (or on first start creates) the signing key, the frontier and the
 * first checkpoint, then starts the appender thread. Blocking: start-up only.
 */
int dems_ledger_start(struct dems_server *srv, const char *conninfo,
                      const uint8_t master_key[static 32], char *err, size_t errlen);

/*
 * Waits (at most timeout_s seconds) until every queued item has been
 * appended or failed and its outcome handed to its loop (dems_loop_post);
 * true when that happened. Shutdown calls it after the loop threads ended
 * and before their loops are freed, so no outcome is posted to a freed loop.
 */
bool dems_ledger_drain(struct dems_server *srv, unsigned timeout_s);

/* Stops the thread after the queued entries are written. */
void dems_ledger_stop(struct dems_server *srv);

/*
 * Queues item (ownership moves to the ledger); item->done runs on loop's
 * thread once it is durable or has failed (loop NULL: on the appender's
 * thread). loop must outlive the item: a caller that does not wait for it
 * (a request already answered) passes NULL, since loops stop before the
 * ledger does. Every untrusted string in item->payload must be bounded first
 * (dems_ledger_payload_set_text). Returns 0, DEMS_EINVAL when the item can
 * never be an entry (its payload is too big, or not canonical JSON; checked
 * here, before it joins a batch), or DEMS_EUNAVAIL when the ledger is
 * stopping; on an error item is freed and done never runs.
 */
int dems_ledger_append(struct dems_server *srv, struct dems_loop *loop,
                       struct dems_ledger_item *item);

/*
 * The verifier key ("name+keyhash+base64") of the log's first signing key,
 * which export headers name; later keys follow from KEY_ROTATED entries
 * (the key in force is ledger_keys' highest id). Borrowed.
 */
const char *dems_ledger_first_vkey(const struct dems_server *srv);

/*
 * NULL while the ledger works; otherwise one line saying why it stopped for
 * good: the database's log is not an extension of a checkpoint this server
 * signed (entries were removed or rewritten). Then nothing more is appended
 * or signed and /readyz is not ready. Callable from any thread. Borrowed.
 */
const char *dems_ledger_fault(const struct dems_server *srv);

/* A refused request, for dems_ledger_refusal_admit. Strings borrowed. */
struct dems_ledger_refusal {
    enum dems_ledger_actor actor_kind; /* USER or DEVICE */
    const char *actor_id;              /* username or device serial */
    const char *address;               /* the client's address */
    const char *method;
    struct dems_str path; /* as the client sent it: untrusted */
    const char *reason;
};

/*
 * Admits one refusal to the ledger, or not (server/ledger/refusals.c). Per
 * window of refusal_window seconds, a principal may have
 * refusal_max_per_principal ACCESS_DENIED entries and an address
 * refusal_max_per_address. Returns 0 when the caller should append the
 * ACCESS_DENIED entry, or DEMS_ETHROTTLED when a bound is reached: then the
 * refusal is counted (with a bounded sample of what was asked) into the
 * ACCESS_DENIED_SUMMARY entry of its principal and address, written when
 * the window ends, and *ret_retry_after is the number of seconds until it
 * does. Callable from any thread; never blocks on I/O.
 */
int dems_ledger_refusal_admit(struct dems_server *srv, const struct dems_ledger_refusal *r,
                              unsigned *ret_retry_after);

/* The origin line of checkpoints. Borrowed. */
const char *dems_ledger_origin(const struct dems_server *srv);

/*
 * The master key (server/store/keys.c): reads path, or creates it with 32
 * random bytes (mode 0600, directory 0700) when missing. Blocking.
 */
int dems_master_key_load(const char *path, uint8_t ret_key[static 32], char *err, size_t errlen);

/* ---- witnesses (docs/ledger.md, "Witnesses") ---- */

/* Most logs one demsd witnesses, and most witnesses a log submits to. */
#define DEMS_WITNESS_MAX_LOGS 32
#define DEMS_WITNESS_MAX      16
/* Largest POST /add-checkpoint body: "old N", 63 proof lines, a blank line, a note. */
#define DEMS_WITNESS_MAX_BODY (32 + 63 * 45 + 1 + DEMS_NOTE_MAX_BYTES)

/*
 * Sets up both witness roles from the configuration: as a witness for the
 * logs in witness_logs, loads (on first start makes and stores, sealed with
 * master_key) the cosignature key named witness_name; as a log, starts the
 * thread that submits checkpoints to the witnesses configured and publishes
 * those a quorum cosigned. Sets srv->witness. Blocking: start-up only;
 * call before dems_ledger_start and stop after dems_ledger_stop. Returns 0 or
 * a negative DEMS_E* with a one-line reason in err.
 */
int dems_witness_start(struct dems_server *srv, const char *conninfo,
                       const uint8_t master_key[static 32], char *err, size_t errlen);
void dems_witness_stop(struct dems_server *srv);

/* This witness's cosignature verifier key; false when the witness role is off. */
bool dems_witness_vkey(const struct dems_server *srv, char out[static DEMS_NOTE_VKEY_MAX]);

/*
 * Opens a checkpoint note submitted to this witness: its origin must be a
 * witnessed log's and one of that log's keys must have signed it. Returns 0
 * with the checkpoint and the note's text length, DEMS_ENOTFOUND (unknown
 * origin, or the witness role is off), DEMS_ECRYPTO (no valid signature by
 * the log) or DEMS_EINVAL (malformed). Pure; safe on a loop thread.
 */
int dems_witness_open(const struct dems_server *srv, const char *note, size_t len,
                      struct dems_checkpoint *ret_c, size_t *ret_text_len);

/*
 * Appends this witness's cosignature line over checkpoint note text to out.
 * Returns 0, DEMS_EUNAVAIL (the witness role is off) or dems_cosig_sign's errors.
 */
int dems_witness_cosign(const struct dems_server *srv, const char *text, size_t len,
                        uint64_t timestamp, struct dems_buf *out);

/* A checkpoint was signed: the log role's client submits it now (no-op without one). */
void dems_witness_kick(struct dems_server *srv);

#endif
