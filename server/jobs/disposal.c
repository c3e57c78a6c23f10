/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The disposal job ({"batch": id}; docs/operations.md, "Retention, holds and
 * disposal") does the step its batch is at:
 *
 * - listing: the artefacts due now (artefact_retention: every policy that
 *   applies has run out), not held, not soft-deleted nor in another open
 *   batch, become its items (at most 10000); the batch is proposed. Nothing
 *   changes for the artefacts and nothing is ledgered: an admin decides.
 * - approved: each item still due and not held is soft-deleted by a
 *   DISPOSAL_APPROVED entry (actor: the approving admin; payload batch,
 *   reason, recover_until) whose statement marks the artefact deleted (its
 *   content answers 410) and the item; one no longer due or now held is
 *   skipped with the reason. The batch waits out its recovery window
 *   (recover_days; housekeeping queues the next step when it has passed),
 *   or goes on at once when the window is 0.
 * - soft_deleted, window passed: each item still deleted is destroyed: a
 *   DISPOSED entry (actor system "disposal"; payload batch, approved_by,
 *   reason) whose statement marks the artefact disposed (disposed_seq: the
 *   entry's index), deletes the descriptors of its face tracks and forgets
 *   their crops; once durable, its blob, the derivative blobs only it names
 *   and its track crops are crypto-erased (dems_blob_erase). An item held
 *   meanwhile is recovered instead (DISPOSAL_RECOVERED, actor system
 *   "hold"). The artefact row, its hash and its custody stay: a tombstone.
 *
 * Idempotent: each entry's statement changes its item only in the state it
 * expects (pre_must_change), erasing a blob already gone is not an error,
 * and a rerun erases again what a crash left.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

#define BATCH_MAX "10000"

struct batch {
    struct dems_job_ctx *ctx;
    char id[24];
    char state[16];
    char approver[DEMS_LEDGER_MAX_ID + 1];
    char reason[501];
    char recover_until[40];
    bool window_passed;
};

static PGresult *q(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        PQclear(res);
        return NULL;
    }
    return res;
}

static const char *col(const PGresult *res, int row, const char *name)
{
    int c = PQfnumber(res, name);
    return c >= 0 ? PQgetvalue(res, row, c) : "";
}

/* A ledger item with a pre-statement (params copied). NULL when out of memory. */
static struct dems_ledger_item *item(enum dems_ledger_type type, enum dems_ledger_actor kind,
                                     const char *actor, json_t *payload, const char *artefact,
                                     const char *sql, int n, const char *const *params)
{
    struct dems_ledger_item *it = dems_ledger_item_new(type, kind, actor);
    bool ok = it != NULL && payload != NULL && (it->pre_sql = strdup(sql)) != NULL;
    if (ok) {
        it->payload = payload;
        payload = NULL;
        it->pre_nparams = n;
        for (int i = 0; ok && i < n; i++)
            ok = params[i] == NULL || (it->pre_params[i] = strdup(params[i])) != NULL;
        it->has_artefact = true;
        dems_hex_decode(artefact, 64, it->artefact, 32);
        it->pre_must_change = true;
        it->pre_seq = true;
    }
    json_decref(payload);
    if (!ok) {
        dems_ledger_item_free(it);
        return NULL;
    }
    return it;
}

/* Appends it: 1 recorded, 0 not (the row was not as expected), or an error. */
static int append(struct dems_ledger_item *it, char *err, size_t errlen, const char *what)
{
    if (it == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    uint64_t seq;
    int r = dems_job_ledger_append(it, &seq);
    if (r == DEMS_ENOTFOUND)
        return 0;
    if (r < 0) {
        snprintf(err, errlen, "cannot record %s: %s", what, dems_strerror(r));
        return r;
    }
    return 1;
}

/* ---- listing ---- */

static enum dems_job_result list(struct batch *b, char *err, size_t errlen)
{
    const char *params[] = {b->id};
    PGresult *res =
        q(b->ctx->db,
          "WITH i AS (INSERT INTO disposal_items (batch_id, artefact, due_at)"
          " SELECT $1::bigint, r.artefact, r.due_at FROM artefact_retention r"
          " JOIN artefacts a ON a.id = r.artefact"
          " WHERE r.due_at <= now() AND NOT r.held AND a.deleted_at IS NULL"
          " AND NOT EXISTS (SELECT 1 FROM disposal_items o"
          " JOIN disposal_batches ob ON ob.id = o.batch_id"
          " WHERE o.artefact = r.artefact AND ob.state IN ('listing', 'proposed',"
          " 'approved', 'soft_deleted') AND ob.id <> $1::bigint)"
          " ORDER BY r.due_at, r.artefact LIMIT " BATCH_MAX " ON CONFLICT DO NOTHING RETURNING 1)"
          " UPDATE disposal_batches SET state = 'proposed', listed_at = now()"
          " WHERE id = $1::bigint AND state = 'listing' AND (SELECT count(*) FROM i) >= 0",
          1, params);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot list what is due for batch %s", b->id);
        return DEMS_JOB_RETRY;
    }
    PQclear(res);
    return DEMS_JOB_OK;
}

/* ---- soft deletion ---- */

static int skip(struct batch *b, const char *artefact, const char *why)
{
    const char *params[] = {b->id, artefact, why};
    PGresult *res = q(b->ctx->db,
                      "UPDATE disposal_items SET state = 'skipped', detail = $3"
                      " WHERE batch_id = $1::bigint AND artefact = $2 AND state = 'proposed'",
                      3, params);
    PQclear(res);
    return res != NULL ? 0 : DEMS_EDB;
}

static enum dems_job_result soft_delete(struct batch *b, char *err, size_t errlen)
{
    const char *params[] = {b->id};
    PGresult *res =
        q(b->ctx->db,
          "SELECT i.artefact, a.disposed_at IS NOT NULL AS disposed,"
          " a.deleted_at IS NOT NULL AS deleted,"
          " coalesce(r.due_at <= now(), false) AS due, dems_artefact_held(i.artefact) AS held,"
          " to_char(i.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
          " AS due_at FROM disposal_items i JOIN artefacts a ON a.id = i.artefact"
          " LEFT JOIN artefact_retention r ON r.artefact = i.artefact"
          " WHERE i.batch_id = $1::bigint AND i.state = 'proposed' ORDER BY i.artefact",
          1, params);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot read batch %s", b->id);
        return DEMS_JOB_RETRY;
    }
    int rc = 0;
    for (int i = 0; rc >= 0 && i < PQntuples(res); i++) {
        const char *a = col(res, i, "artefact");
        if (col(res, i, "held")[0] == 't' || col(res, i, "due")[0] != 't' ||
            col(res, i, "disposed")[0] == 't' || col(res, i, "deleted")[0] == 't') {
            rc = skip(b, a,
                      col(res, i, "held")[0] == 't'       ? "held: a legal hold was placed"
                      : col(res, i, "disposed")[0] == 't' ? "disposed of already"
                      : col(res, i, "deleted")[0] == 't'  ? "deleted by another batch"
                                                         : "no longer due (its retention changed)");
            continue;
        }
        json_t *payload =
            json_pack("{s:I,s:s,s:s}", "batch", (json_int_t)atoll(b->id), "recover_until",
                      b->recover_until, "due_at", col(res, i, "due_at"));
        if (payload != NULL)
            dems_ledger_payload_set_text(payload, "reason", b->reason, strlen(b->reason), 500);
        const char *pp[] = {b->id, a, b->recover_until};
        rc = append(
            item(DEMS_LEDGER_DISPOSAL_APPROVED, DEMS_LEDGER_ACTOR_USER, b->approver, payload, a,
                 "WITH a AS (UPDATE artefacts SET deleted_at = now(),"
                 " recover_until = $3::timestamptz WHERE id = $2 AND deleted_at IS NULL"
                 " AND disposed_at IS NULL RETURNING 1)"
                 " UPDATE disposal_items SET state = 'soft_deleted', approved_seq = $4::bigint"
                 " WHERE batch_id = $1::bigint AND artefact = $2 AND state = 'proposed'"
                 " AND (SELECT count(*) FROM a) = 1",
                 3, pp),
            err, errlen, "a soft deletion");
    }
    PQclear(res);
    if (rc < 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "database: cannot skip an item of batch %s", b->id);
        return DEMS_JOB_RETRY;
    }
    res = q(b->ctx->db,
            "UPDATE disposal_batches SET state = 'soft_deleted' WHERE id = $1::bigint"
            " AND state = 'approved'",
            1, params);
    PQclear(res);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot update batch %s", b->id);
        return DEMS_JOB_RETRY;
    }
    snprintf(b->state, sizeof(b->state), "soft_deleted");
    return DEMS_JOB_OK;
}

/* ---- destruction ---- */

/*
 * The blobs erased with artefact a: its own and the derivatives only it
 * names, unless another record (a gallery image, a search's probe, a crop)
 * holds the same bytes: blobs are content-addressed. Its track crops are
 * erased by the caller.
 */
static int erase_blobs(struct batch *b, const char *a, char *err, size_t errlen)
{
    const char *params[] = {a};
    PGresult *res = q(b->ctx->db,
                      "SELECT b.blob FROM (SELECT $1::text AS blob UNION SELECT d.blob"
                      " FROM derivatives d WHERE d.artefact = $1 AND NOT EXISTS (SELECT 1"
                      " FROM derivatives o JOIN artefacts oa ON oa.id = o.artefact"
                      " WHERE o.blob = d.blob AND o.artefact <> $1 AND oa.disposed_at IS NULL)"
                      " AND NOT EXISTS (SELECT 1 FROM artefacts x WHERE x.id = d.blob"
                      " AND x.id <> $1)) b"
                      /* The same bytes may be another record's too (content addressing). */
                      " WHERE NOT EXISTS (SELECT 1 FROM face_subjects s WHERE s.image_blob"
                      " = b.blob OR s.crop_blob = b.blob)"
                      " AND NOT EXISTS (SELECT 1 FROM face_searches f WHERE f.probe_blob = b.blob)"
                      " AND NOT EXISTS (SELECT 1 FROM face_tracks t WHERE t.crop_blob = b.blob)",
                      1, params);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot list the blobs of %.64s", a);
        return DEMS_EDB;
    }
    int r = 0;
    for (int i = 0; r == 0 && i < PQntuples(res); i++)
        r = dems_blob_erase(b->ctx->cfg->data_dir, PQgetvalue(res, i, 0));
    PQclear(res);
    if (r < 0)
        snprintf(err, errlen, "cannot crypto-erase the blobs of %.64s: %s", a, dems_strerror(r));
    return r;
}

static int recover_held(struct batch *b, const char *a, char *err, size_t errlen)
{
    json_t *payload = json_pack("{s:I,s:s}", "batch", (json_int_t)atoll(b->id), "reason",
                                "a legal hold was placed before the erasure");
    const char *pp[] = {b->id, a};
    return append(item(DEMS_LEDGER_DISPOSAL_RECOVERED, DEMS_LEDGER_ACTOR_SYSTEM, "hold", payload, a,
                       "WITH a AS (UPDATE artefacts SET deleted_at = NULL, recover_until = NULL"
                       " WHERE id = $2 AND deleted_at IS NOT NULL AND disposed_at IS NULL"
                       " RETURNING 1) UPDATE disposal_items SET state = 'recovered',"
                       " detail = 'held: a legal hold was placed' WHERE batch_id = $1::bigint"
                       " AND artefact = $2 AND state = 'soft_deleted'"
                       " AND (SELECT count(*) FROM a) = 1 AND $3::bigint > 0",
                       2, pp),
                  err, errlen, "a recovery");
}

static enum dems_job_result destroy(struct batch *b, char *err, size_t errlen)
{
    const char *params[] = {b->id};
    PGresult *res = q(b->ctx->db,
                      "SELECT i.artefact, i.state, dems_artefact_held(i.artefact) AS held,"
                      " (SELECT array_to_string(array_agg(t.crop_blob), ',') FROM face_tracks t"
                      " WHERE t.artefact = i.artefact AND t.crop_blob IS NOT NULL) AS crops"
                      " FROM disposal_items i WHERE i.batch_id = $1::bigint"
                      " AND i.state IN ('soft_deleted', 'destroyed') ORDER BY i.artefact",
                      1, params);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot read batch %s", b->id);
        return DEMS_JOB_RETRY;
    }
    int rc = 0;
    for (int i = 0; rc >= 0 && i < PQntuples(res); i++) {
        const char *a = col(res, i, "artefact");
        bool held = col(res, i, "held")[0] == 't';
        if (strcmp(col(res, i, "state"), "soft_deleted") == 0) {
            if (held) {
                rc = recover_held(b, a, err, errlen);
                continue;
            }
            json_t *payload = json_pack("{s:I,s:s,s:s}", "batch", (json_int_t)atoll(b->id),
                                        "approved_by", b->approver, "method", "crypto-erasure");
            if (payload != NULL)
                dems_ledger_payload_set_text(payload, "reason", b->reason, strlen(b->reason), 500);
            const char *pp[] = {b->id, a};
            rc = append(item(DEMS_LEDGER_DISPOSED, DEMS_LEDGER_ACTOR_SYSTEM, "disposal", payload, a,
                             "WITH d AS (DELETE FROM face_descriptors WHERE track_id IN"
                             " (SELECT id FROM face_tracks WHERE artefact = $2) RETURNING 1),"
                             " t AS (UPDATE face_tracks SET crop_blob = NULL WHERE artefact = $2"
                             " RETURNING 1),"
                             " a AS (UPDATE artefacts SET disposed_at = now(),"
                             " disposed_seq = $3::bigint WHERE id = $2 AND deleted_at IS NOT NULL"
                             " AND disposed_at IS NULL RETURNING 1)"
                             " UPDATE disposal_items SET state = 'destroyed',"
                             " disposed_seq = $3::bigint WHERE batch_id = $1::bigint"
                             " AND artefact = $2 AND state = 'soft_deleted'"
                             " AND (SELECT count(*) FROM a) = 1 AND (SELECT count(*) FROM d) >= 0"
                             " AND (SELECT count(*) FROM t) >= 0",
                             2, pp),
                        err, errlen, "a disposal");
            if (rc <= 0)
                continue;
        }
        /* Destroyed (now or by an earlier run): erase what may be left. */
        rc = erase_blobs(b, a, err, errlen);
        char *crops = strdup(col(res, i, "crops"));
        for (char *c = crops, *next; rc == 0 && c != NULL && *c != '\0'; c = next) {
            next = strchr(c, ',');
            if (next != NULL)
                *next++ = '\0';
            rc = dems_blob_erase(b->ctx->cfg->data_dir, c);
        }
        free(crops);
    }
    PQclear(res);
    if (rc < 0)
        return DEMS_JOB_RETRY;
    res =
        q(b->ctx->db,
          "UPDATE disposal_batches SET state = 'done', finished_at = now()"
          " WHERE id = $1::bigint AND state = 'soft_deleted' AND NOT EXISTS"
          " (SELECT 1 FROM disposal_items WHERE batch_id = $1::bigint AND state = 'soft_deleted')",
          1, params);
    PQclear(res);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot finish batch %s", b->id);
        return DEMS_JOB_RETRY;
    }
    return DEMS_JOB_OK;
}

/* ---- the job ---- */

int dems_job_disposal_check(const json_t *payload, char *err, size_t errlen)
{
    json_t *v = json_object_get(payload, "batch");
    if (json_object_size(payload) != 1 || !json_is_integer(v) || json_integer_value(v) <= 0) {
        snprintf(err, errlen, "the payload must be {\"batch\": id}");
        return DEMS_EINVAL;
    }
    return 0;
}

enum dems_job_result dems_job_disposal(const struct dems_job *job, struct dems_job_ctx *ctx,
                                       char *err, size_t errlen)
{
    if (dems_job_disposal_check(job->payload, err, errlen) < 0)
        return DEMS_JOB_FAIL;
    struct batch b = {.ctx = ctx};
    snprintf(b.id, sizeof(b.id), "%lld",
             (long long)json_integer_value(json_object_get(job->payload, "batch")));
    const char *params[] = {b.id};
    PGresult *res = q(ctx->db,
                      "SELECT b.state, coalesce(u.username, '') AS approver,"
                      " coalesce(b.reason, '') AS reason,"
                      " coalesce(to_char(coalesce(b.recover_until, b.approved_at"
                      " + make_interval(days => b.recover_days)) AT TIME ZONE 'UTC',"
                      " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') AS recover_until,"
                      " coalesce(coalesce(b.recover_until, b.approved_at"
                      " + make_interval(days => b.recover_days)) <= now(), false) AS passed"
                      " FROM disposal_batches b LEFT JOIN users u ON u.id = b.approved_by"
                      " WHERE b.id = $1::bigint",
                      1, params);
    if (res == NULL || PQntuples(res) != 1) {
        snprintf(err, errlen, res == NULL ? "database: cannot read batch %s" : "no batch %s", b.id);
        bool missing = res != NULL;
        PQclear(res);
        return missing ? DEMS_JOB_FAIL : DEMS_JOB_RETRY;
    }
    snprintf(b.state, sizeof(b.state), "%s", col(res, 0, "state"));
    snprintf(b.approver, sizeof(b.approver), "%s", col(res, 0, "approver"));
    snprintf(b.reason, sizeof(b.reason), "%s", col(res, 0, "reason"));
    snprintf(b.recover_until, sizeof(b.recover_until), "%s", col(res, 0, "recover_until"));
    b.window_passed = col(res, 0, "passed")[0] == 't';
    PQclear(res);
    if (strcmp(b.state, "listing") == 0)
        return list(&b, err, errlen);
    if (strcmp(b.state, "approved") != 0 && strcmp(b.state, "soft_deleted") != 0)
        return DEMS_JOB_OK; /* proposed (waiting for an admin), done or cancelled */
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    if (strcmp(b.state, "approved") == 0) {
        /* The window is fixed once, from the approval. */
        res = q(ctx->db,
                "UPDATE disposal_batches SET recover_until = approved_at"
                " + make_interval(days => recover_days) WHERE id = $1::bigint"
                " AND recover_until IS NULL",
                1, params);
        PQclear(res);
        enum dems_job_result out = soft_delete(&b, err, errlen);
        if (out != DEMS_JOB_OK || !b.window_passed)
            return out;
    }
    if (!b.window_passed)
        return DEMS_JOB_OK; /* housekeeping queues the erasure when the window has passed */
    return destroy(&b, err, errlen);
}
