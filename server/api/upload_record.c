/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Completing an upload whose bytes have all arrived: seal and fsync its
 * staging file, decide complete or rejected (the declared SHA-256), move the
 * file into the blob store, and record it (the artefact row with the format
 * its first bytes show, uploads.evidence_id, the INGESTED entry and its
 * preview job, or for a ZIP archive from the public its unpack job, in one
 * ledger transaction).
 *
 * This runs apart from any request, because a crash, a dropped connection
 * or a ledger or database failure can stop it at any step, and an upload
 * whose bytes are all in must never be stranded there (#10, #19.2). The
 * final PATCH starts it and waits for the answer; HEAD/GET, an empty PATCH
 * and the housekeeping task start it again for an upload left sealed or
 * complete but unrecorded, and housekeeping's first run after a start
 * completes the uploads a crash left that way. Every step reads the state it
 * starts from (the uploads row, the staging file, the blob store), so
 * running it again after a failure at any point continues where that one
 * stopped. In one process one completion per upload runs at a time (a
 * registry of ids); the statement that records the upload refuses a second
 * INGESTED entry for it, whoever tries.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/sniff.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"
#include "demsd/objstore.h"
#include "demsd/store.h"

#include "api_int.h"
#include "upload_stage.h"

struct rec {
    struct dems_loop *loop;
    char id[33];
    struct dems_req *waiter; /* referenced; NULL when nobody waits */
    upload_record_cb cb;
    struct dems_staged *staged; /* acquired while finishing */
    struct upload_outcome out;
    enum dems_ledger_actor actor_kind;
    char actor[DEMS_LEDGER_MAX_ID + 1];
    int64_t submission, link; /* a public submission's upload: its ids; else 0 */
    const char *format;       /* what its first bytes are (dems_sniff, static); NULL: unread */
    uint8_t digest[32];
    int err;     /* of the step on the work pool */
    int rereads; /* the row changed under us: read it again, once */
    bool loaded; /* the staging state was loaded by this completion */
    /* Staged in an object store: this completion's claim and the committed state. */
    uint64_t gen, ver;
    unsigned number; /* for the last part */
    uint32_t parts;
    char handle[512];
    char *tags;      /* the committed parts' tags, one per line (owned) */
    uint8_t *sealed; /* the committed state (owned) */
    size_t sealed_len;
    struct rec *next; /* in the registry */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rec *running;

/*
 * Registers id as being completed: CLAIMED. When it already is, by a
 * completion of the same loop that nobody waits for (housekeeping, a
 * HEAD), a waiter joins it (JOINED: its answer comes from that one);
 * otherwise BUSY. Joining only on the same loop keeps every callback on the
 * waiter's own thread.
 */
enum claim { CLAIMED, JOINED, BUSY };

static enum claim claim(struct rec *r, struct dems_req *waiter, upload_record_cb cb)
{
    pthread_mutex_lock(&mu);
    enum claim c = CLAIMED;
    for (struct rec *o = running; o != NULL && c == CLAIMED; o = o->next) {
        if (strcmp(o->id, r->id) != 0)
            continue;
        c = BUSY;
        if (waiter != NULL && o->waiter == NULL && o->loop == r->loop) {
            o->waiter = waiter;
            o->cb = cb;
            dems_req_ref(waiter);
            c = JOINED;
        }
    }
    if (c == CLAIMED) {
        r->next = running;
        running = r;
    }
    pthread_mutex_unlock(&mu);
    return c;
}

static void unclaim(struct rec *r)
{
    pthread_mutex_lock(&mu);
    for (struct rec **pp = &running; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}

static void finish(struct rec *r, enum upload_outcome_kind kind, int err)
{
    r->out.kind = kind;
    r->out.err = err;
    if (r->staged != NULL)
        dems_staging_release(r->staged);
    unclaim(r);
    if (r->waiter != NULL) {
        if (!dems_req_is_aborted(r->waiter))
            r->cb(r->waiter, &r->out);
        dems_req_unref(r->waiter);
    }
    dems_loop_unhold(r->loop);
    free(r->tags);
    free(r->sealed);
    free(r);
}

/* A completion nobody waits for stops at the next step once the loop drains. */
static bool stopping(struct rec *r)
{
    if (r->waiter == NULL && r->loop->draining) {
        finish(r, UPLOAD_FAILED, DEMS_EUNAVAIL);
        return true;
    }
    return false;
}

static void warn(const struct rec *r, int err, const char *what)
{
    dems_log(DEMS_LOG_WARN, NULL,
             json_pack("{s:s,s:s,s:s}", "event", "upload_not_recorded", "upload", r->id, "problem",
                       dems_strerror(err)),
             "upload %s: %s (%s); it will be retried", r->id, what, dems_strerror(err));
}

static void read_row(struct rec *r);
static void step_adopt(struct rec *r);

/* ---- recording: artefact + uploads.evidence_id + INGESTED ---- */

static void on_ingested(struct dems_ledger_item *item, void *arg)
{
    struct rec *r = arg;
    /* A conflict is the guard below: the upload was recorded already. */
    if (item->err == 0 || item->err == DEMS_ECONFLICT) {
        r->out.seq = item->err == 0 ? item->seq : 0;
        finish(r, UPLOAD_RECORDED, 0);
        return;
    }
    warn(r, item->err, "complete and stored, but not yet recorded as evidence");
    finish(r, UPLOAD_RECORDING, item->err);
}

/*
 * The statement run with the INGESTED entry, in its transaction. guard
 * makes a second entry for one upload impossible: when the upload already
 * names its evidence it inserts the upload's own row again, the primary key
 * refuses it (a unique violation), and the ledger drops this entry alone.
 * The artefact's preview is queued in the same transaction (once per
 * content; $3 is the format its first bytes show); for a ZIP archive from
 * the public ($4, the submission) its unpacking instead (server/jobs/unpack.c).
 */
#define INGEST_SQL                                                                                 \
    "WITH guard AS (INSERT INTO uploads (id, owner_user_id, owner_device_id, owner_submission_id," \
    " length, metadata, expires_at) SELECT id, owner_user_id, owner_device_id,"                    \
    " owner_submission_id, length, metadata, expires_at"                                           \
    " FROM uploads WHERE id = $2 AND evidence_id IS NOT NULL),"                                    \
    " a AS (INSERT INTO artefacts (id, size, content_type, filename, metadata, uploaded_by,"       \
    " upload_id, uploaded_by_device, uploaded_by_submission, format) SELECT $1, length,"           \
    " metadata->>'content_type', metadata->>'filename', metadata, owner_user_id, id,"              \
    " owner_device_id, owner_submission_id, $3 FROM uploads"                                       \
    " WHERE id = $2 ON CONFLICT (id) DO NOTHING RETURNING id),"                                    \
    " j AS (SELECT dems_enqueue_job('preview', jsonb_build_object('evidence', $1::text),"          \
    " 'preview-' || $1) AS job WHERE $4::bigint IS NULL OR $3::text IS DISTINCT FROM 'zip'"        \
    " UNION ALL SELECT dems_enqueue_job('unpack', jsonb_build_object('evidence', $1::text,"        \
    " 'submission', $4::bigint), 'unpack-' || $1) WHERE $4::bigint IS NOT NULL AND $3 = 'zip')"    \
    " UPDATE uploads SET evidence_id = $1 FROM j WHERE id = $2 AND evidence_id IS NULL"

static void step_record(struct rec *r)
{
    if (stopping(r))
        return;
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_INGESTED, r->actor_kind, r->actor);
    if (it == NULL) {
        finish(r, UPLOAD_RECORDING, DEMS_ENOMEM);
        return;
    }
    it->has_artefact = it->has_sha256 = it->has_size = true;
    dems_hex_decode(r->out.sha, 64, it->artefact, 32);
    memcpy(it->sha256, it->artefact, 32);
    it->size = r->out.length;
    it->payload = json_pack("{s:s}", "upload", r->id);
    if (it->payload != NULL && r->submission > 0) {
        /* A public submission's material: which submission, through which link. */
        json_object_set_new(it->payload, "submission", json_integer(r->submission));
        json_object_set_new(it->payload, "submission_link", json_integer(r->link));
    }
    char sub[24];
    snprintf(sub, sizeof(sub), "%lld", (long long)r->submission);
    it->pre_sql = strdup(INGEST_SQL);
    it->pre_nparams = 4;
    it->pre_params[0] = strdup(r->out.sha);
    it->pre_params[1] = strdup(r->id);
    it->pre_params[2] = r->format != NULL ? strdup(r->format) : NULL;
    it->pre_params[3] = r->submission > 0 ? strdup(sub) : NULL;
    it->done = on_ingested;
    it->arg = r;
    if (it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || (r->format != NULL && it->pre_params[2] == NULL) ||
        (r->submission > 0 && it->pre_params[3] == NULL)) {
        dems_ledger_item_free(it);
        finish(r, UPLOAD_RECORDING, DEMS_ENOMEM);
        return;
    }
    int e = dems_ledger_append(r->loop->srv, r->loop, it); /* frees it on failure */
    if (e < 0) {
        warn(r, e, "complete and stored, but the ledger is not taking entries");
        finish(r, UPLOAD_RECORDING, e);
    }
}

/* ---- the blob: the sealed staging file becomes it ---- */

/*
 * What the stored blob id is, from its first bytes (its first chunk
 * decrypted): the artefact's format, and for a public submission whether
 * it is a ZIP archive to unpack. NULL when it cannot be read now (the
 * preview job sniffs again). Blocking: work pool.
 */
static const char *sniff_blob(const struct dems_server *srv, const char *id)
{
    struct dems_blob *b = NULL;
    uint8_t *chunk = malloc(DEMS_BLOB_CHUNK);
    long n = chunk != NULL ? dems_blob_open(srv->cfg->data_dir, srv->master_key, id, &b) : -1;
    if (n == 0)
        n = dems_blob_read(b, chunk);
    dems_blob_close(b);
    const char *format = n >= 0 ? dems_sniff(chunk, (size_t)n).format : NULL;
    free(chunk);
    return format;
}

static void adopt_work(void *arg)
{
    struct rec *r = arg;
    const char *data_dir = r->loop->srv->cfg->data_dir;
    if (dems_staging_is_remote()) {
        /* The committed stage becomes the blob by a copy in the store. */
        char key[64];
        dems_staging_object_key(r->id, key, sizeof(key));
        r->err = dems_blob_adopt_object(r->out.sha, key, dems_staging_expected_size(r->out.length));
        if (r->err == DEMS_ENOTFOUND)
            r->err = dems_blob_find(data_dir, r->out.sha); /* adopted already */
    } else if (dems_staging_exists(r->id)) {
        char path[4200];
        dems_staging_path(r->id, path, sizeof(path));
        r->err = dems_blob_adopt(data_dir, r->out.sha, path);
    } else {
        /* Moved already (a crash or a failure after the move). */
        r->err = dems_blob_find(data_dir, r->out.sha);
    }
    if (r->err == 0)
        r->format = sniff_blob(r->loop->srv, r->out.sha);
}

static void adopt_done(void *arg)
{
    struct rec *r = arg;
    if (r->err == DEMS_ENOTFOUND && dems_blob_store() != NULL && !dems_staging_is_remote()) {
        /* Several nodes share the database, each stages its own uploads: one
         * complete here with neither a staging file nor its blob in the
         * store is another node's, still sending it (docs/operations.md,
         * "Several nodes"). Left to that node. */
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:s,s:s}", "event", "upload_elsewhere", "upload", r->id, "sha256",
                           r->out.sha),
                 "upload %s is complete but staged on another node (its blob is not in the "
                 "store yet): left to that node",
                 r->id);
        finish(r, UPLOAD_RECORDING, DEMS_EAGAIN);
    } else if (r->err == DEMS_ENOTFOUND) {
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s,s:s}", "event", "upload_bytes_lost", "upload", r->id, "sha256",
                           r->out.sha),
                 "upload %s is complete but its bytes are neither in staging nor in the blob "
                 "store",
                 r->id);
        finish(r, UPLOAD_FAILED, DEMS_EIO);
    } else if (r->err < 0) {
        warn(r, r->err, "complete, but cannot be moved into the blob store");
        finish(r, UPLOAD_RECORDING, r->err);
    } else {
        step_record(r);
    }
}

static void step_adopt(struct rec *r)
{
    if (stopping(r))
        return;
    if (dems_work_submit(r->loop, adopt_work, adopt_done, r) < 0)
        finish(r, UPLOAD_RECORDING, DEMS_ENOMEM);
}

/* ---- sealing: receiving -> complete or rejected ---- */

static void on_stored(void *arg, const PGresult *res, int err)
{
    struct rec *r = arg;
    if (err < 0) {
        warn(r, err, "sealed, but its state could not be stored");
        finish(r, UPLOAD_FAILED, err);
        return;
    }
    if (PQntuples(res) != 1) { /* no longer receiving: see what it is now */
        read_row(r);
        return;
    }
    const char *state = api_col(res, 0, "state");
    snprintf(r->out.sha, sizeof(r->out.sha), "%s", api_col(res, 0, "sha256"));
    if (strcmp(state, "rejected") == 0) {
        dems_staging_remove(r->id);
        upload_stage_drop(r->loop, r->id, r->ver, NULL); /* the committed stage too */
        finish(r, UPLOAD_REJECTED, 0);
        return;
    }
    if (dems_staging_is_remote()) {
        /* Committed in the store: the local window and the tail object go. */
        dems_staging_remove(r->id);
        upload_stage_drop_tail(r->loop, r->id, r->ver);
    } else {
        dems_staging_close(r->id); /* the sealed file is all there is to it now */
    }
    step_adopt(r);
}

static void finish_work(void *arg)
{
    struct rec *r = arg;
    if (!dems_staging_is_remote()) {
        r->err = dems_staging_finish(r->staged, r->digest);
        return;
    }
    /* The committed parts' tags, then room for the last part's. */
    uint32_t n = r->staged->parts;
    char(*tags)[DEMS_OBJSTORE_TAG_MAX] = calloc((size_t)n + 1, sizeof(*tags));
    r->err = tags == NULL ? DEMS_ENOMEM : 0;
    const char *line = r->tags != NULL ? r->tags : "";
    for (uint32_t i = 0; r->err == 0 && i < n; i++) {
        size_t len = strcspn(line, "\n");
        if (len == 0 || len >= DEMS_OBJSTORE_TAG_MAX)
            r->err = DEMS_ECRYPTO; /* a committed part without its tag */
        else
            memcpy(tags[i], line, len);
        line += len + (line[len] == '\n' ? 1 : 0);
    }
    struct dems_objstore_stage st;
    memset(&st, 0, sizeof(st));
    snprintf(st.id, sizeof(st.id), "%s", r->handle);
    if (r->err == 0)
        r->err = dems_staging_finish_remote(r->staged, &st, r->number, tags, r->digest);
    free(tags);
}

static void finish_done(void *arg)
{
    struct rec *r = arg;
    if (r->err < 0 && dems_staging_is_remote())
        r->staged->broken = true; /* sealed here only: the committed state is the truth */
    dems_staging_release(r->staged);
    r->staged = NULL;
    if (r->err < 0) {
        warn(r, r->err, "has all its bytes but cannot be sealed");
        finish(r, UPLOAD_FAILED, r->err);
        return;
    }
    if (stopping(r))
        return;
    char hex[65];
    dems_hex_encode(r->digest, 32, hex);
    const char *params[] = {r->id, hex};
    /* One statement decides: complete when the declared hash (if any)
     * matches, rejected otherwise. */
    int e = dems_db_query(r->loop->db,
                          "UPDATE uploads SET sha256 = $2, updated_at = now(),"
                          " state = CASE WHEN declared_sha256 IS NULL OR declared_sha256 = $2"
                          " THEN 'complete' ELSE 'rejected' END,"
                          " reason = CASE WHEN declared_sha256 IS NULL OR declared_sha256 = $2"
                          " THEN NULL ELSE 'sha256 differs from the declared value' END"
                          " WHERE id = $1 AND state = 'receiving' RETURNING state, sha256",
                          2, params, on_stored, r);
    if (e < 0)
        finish(r, UPLOAD_FAILED, e);
}

static void step_seal(struct rec *r);

static void load_work(void *arg)
{
    struct rec *r = arg;
    r->err = dems_staging_load(r->id, r->out.length);
}

static void load_done(void *arg)
{
    struct rec *r = arg;
    r->loaded = true;
    if (r->err < 0) {
        finish(r, UPLOAD_FAILED, r->err == DEMS_ENOTFOUND ? DEMS_EIO : r->err);
        return;
    }
    if (!stopping(r))
        step_seal(r);
}

static void remote_claim(struct rec *r);

static void step_seal(struct rec *r)
{
    if (dems_staging_is_remote()) {
        remote_claim(r);
        return;
    }
    int e = dems_staging_acquire(r->id, &r->staged);
    if (e == DEMS_ENOTFOUND && !r->loaded) {
        if (dems_work_submit(r->loop, load_work, load_done, r) < 0)
            finish(r, UPLOAD_FAILED, DEMS_ENOMEM);
        return;
    }
    if (e == DEMS_ECONFLICT) { /* a request is writing it: that one completes it */
        finish(r, UPLOAD_NOT_READY, 0);
        return;
    }
    if (e < 0) {
        finish(r, UPLOAD_FAILED, e);
        return;
    }
    if (r->staged->offset != r->staged->length) {
        finish(r, UPLOAD_NOT_READY, 0); /* releases it */
        return;
    }
    if (dems_work_submit(r->loop, finish_work, finish_done, r) < 0)
        finish(r, UPLOAD_FAILED, DEMS_ENOMEM);
}

/* ---- sealing in an object store: claim, load if needed, finish ---- */

static void remote_acquire(struct rec *r);

static void import_work(void *arg)
{
    struct rec *r = arg;
    r->err = dems_staging_import(r->id, r->out.length, r->ver, r->sealed, r->sealed_len);
}

static void import_done(void *arg)
{
    struct rec *r = arg;
    r->loaded = true;
    if (r->err < 0) {
        finish(r, r->err == DEMS_ECONFLICT ? UPLOAD_NOT_READY : UPLOAD_FAILED, r->err);
        return;
    }
    if (!stopping(r))
        remote_acquire(r);
}

static void remote_acquire(struct rec *r)
{
    int e = dems_staging_acquire_ver(r->id, r->ver, &r->staged);
    if (e == DEMS_ENOTFOUND && !r->loaded) {
        if (dems_work_submit(r->loop, import_work, import_done, r) < 0)
            finish(r, UPLOAD_FAILED, DEMS_ENOMEM);
        return;
    }
    if (e < 0) {
        r->staged = NULL;
        finish(r, e == DEMS_ECONFLICT || e == DEMS_ENOTFOUND ? UPLOAD_NOT_READY : UPLOAD_FAILED, e);
        return;
    }
    if (r->staged->offset != r->staged->length) {
        finish(r, UPLOAD_NOT_READY, 0); /* releases it */
        return;
    }
    if (dems_work_submit(r->loop, finish_work, finish_done, r) < 0)
        finish(r, UPLOAD_FAILED, DEMS_ENOMEM);
}

static void on_remote_claim(void *arg, const PGresult *res, int err)
{
    struct rec *r = arg;
    if (err < 0) {
        finish(r, UPLOAD_FAILED, err);
        return;
    }
    if (PQntuples(res) != 1) { /* no longer receiving (or out of part numbers) */
        read_row(r);
        return;
    }
    if ((uint64_t)api_col_int(res, 0, "stage_offset") != r->out.length) {
        finish(r, UPLOAD_NOT_READY, 0); /* the bytes committed so far are not all */
        return;
    }
    r->gen = (uint64_t)api_col_int(res, 0, "stage_gen");
    r->ver = (uint64_t)api_col_int(res, 0, "stage_ver");
    r->number = (unsigned)api_col_int(res, 0, "stage_next");
    snprintf(r->handle, sizeof(r->handle), "%s", api_col(res, 0, "stage_handle"));
    r->tags = strdup(api_col(res, 0, "tags"));
    r->sealed = NULL;
    r->sealed_len = 0;
    int e = r->tags == NULL ? DEMS_ENOMEM : 0;
    if (e == 0 && !api_col_null(res, 0, "stage_state"))
        e = upload_stage_unhex(api_col(res, 0, "stage_state"), &r->sealed, &r->sealed_len);
    if (e < 0) {
        finish(r, UPLOAD_FAILED, e);
        return;
    }
    remote_acquire(r);
}

/* Claims the upload (fencing any request still writing it) and takes a
 * number for its last part. */
static void remote_claim(struct rec *r)
{
    const char *params[] = {r->id};
    int e =
        dems_db_query(r->loop->db,
                      "UPDATE uploads SET stage_gen = stage_gen + 1, stage_next = stage_next + 1"
                      " WHERE id = $1 AND state = 'receiving' AND stage_next < 10000"
                      " RETURNING stage_gen, stage_ver, stage_offset, stage_next,"
                      " coalesce(stage_handle, '') AS stage_handle, stage_state,"
                      " array_to_string(stage_tags[1:stage_parts], E'\\n', '') AS tags",
                      1, params, on_remote_claim, r);
    if (e < 0)
        finish(r, UPLOAD_FAILED, e);
}

/* ---- the starting point: what the uploads row says ---- */

/* A column of row 0 by name; NULL when SQL NULL. */
static const char *col(const PGresult *res, const char *name)
{
    return api_col_null(res, 0, name) ? NULL : api_col(res, 0, name);
}

static void on_row(void *arg, const PGresult *res, int err)
{
    struct rec *r = arg;
    if (err < 0) {
        finish(r, UPLOAD_FAILED, err);
        return;
    }
    if (PQntuples(res) != 1) {
        finish(r, UPLOAD_GONE, 0);
        return;
    }
    const char *state = api_col(res, 0, "state"), *len = api_col(res, 0, "length");
    const char *sha = col(res, "sha256"), *evidence = col(res, "evidence_id");
    const char *actor = col(res, "actor"), *device = api_col(res, 0, "by_device");
    dems_parse_u64(len, strlen(len), INT64_MAX, &r->out.length);
    r->actor_kind = device[0] == 't' ? DEMS_LEDGER_ACTOR_DEVICE : DEMS_LEDGER_ACTOR_USER;
    snprintf(r->actor, sizeof(r->actor), "%s", actor != NULL ? actor : "unknown");
    r->submission = api_col_int(res, 0, "submission");
    r->link = api_col_int(res, 0, "link");
    if (r->submission > 0) {
        r->actor_kind = DEMS_LEDGER_ACTOR_LINK;
        snprintf(r->actor, sizeof(r->actor), "submission/%lld", (long long)r->submission);
    }
    if (sha != NULL)
        snprintf(r->out.sha, sizeof(r->out.sha), "%s", sha);
    if (evidence != NULL) {
        snprintf(r->out.sha, sizeof(r->out.sha), "%s", evidence);
        finish(r, UPLOAD_RECORDED, 0);
    } else if (strcmp(state, "receiving") == 0) {
        step_seal(r);
    } else if (strcmp(state, "complete") == 0) {
        step_adopt(r);
    } else {
        finish(r, strcmp(state, "rejected") == 0 ? UPLOAD_REJECTED : UPLOAD_GONE, 0);
    }
}

static void read_row(struct rec *r)
{
    if (r->rereads++ > 1) {
        finish(r, UPLOAD_FAILED, DEMS_ECONFLICT);
        return;
    }
    const char *params[] = {r->id};
    int e = dems_db_query(r->loop->db,
                          "SELECT u.state, u.length, u.sha256, u.evidence_id,"
                          " u.owner_device_id IS NOT NULL AS by_device,"
                          " coalesce(us.username, d.serial) AS actor,"
                          " u.owner_submission_id AS submission, s.link_id AS link"
                          " FROM uploads u LEFT JOIN users us ON us.id = u.owner_user_id"
                          " LEFT JOIN devices d ON d.id = u.owner_device_id"
                          " LEFT JOIN submissions s ON s.id = u.owner_submission_id"
                          " WHERE u.id = $1",
                          1, params, on_row, r);
    if (e < 0)
        finish(r, UPLOAD_FAILED, e);
}

int upload_record_start(struct dems_loop *loop, const char *id, struct dems_req *waiter,
                        upload_record_cb cb)
{
    struct rec *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return DEMS_ENOMEM;
    r->loop = loop;
    snprintf(r->id, sizeof(r->id), "%s", id);
    enum claim c = claim(r, waiter, cb);
    if (c != CLAIMED) {
        free(r);
        return c == JOINED ? 0 : DEMS_EAGAIN;
    }
    r->cb = cb;
    r->waiter = waiter;
    if (waiter != NULL)
        dems_req_ref(waiter);
    dems_loop_hold(loop);
    read_row(r);
    return 0;
}

/* ---- housekeeping ---- */

/* How long a node keeps the local window of an upload no request uses. */
#define WINDOW_IDLE_SECONDS 30

/* Starts a completion nobody waits for (ignoring one already running). */
static void kick(struct dems_loop *loop, const char *id)
{
    upload_record_start(loop, id, NULL, NULL);
}

static void on_unrecorded(void *arg, const PGresult *res, int err)
{
    struct dems_loop *loop = arg;
    if (err < 0 || loop->draining)
        return;
    for (int i = 0; i < PQntuples(res); i++)
        kick(loop, PQgetvalue(res, i, 0));
}

/* At start: receiving uploads whose staging file holds them whole and sealed. */
struct scan {
    struct dems_loop *loop;
    size_t n;
    char (*ids)[33];
    uint64_t *lengths;
    bool *sealed;
};

static void scan_work(void *arg)
{
    struct scan *sc = arg;
    for (size_t i = 0; i < sc->n; i++) {
        char path[4200];
        struct stat st;
        dems_staging_path(sc->ids[i], path, sizeof(path));
        sc->sealed[i] = stat(path, &st) == 0 &&
                        (uint64_t)st.st_size == dems_staging_expected_size(sc->lengths[i]);
    }
}

static void scan_free(struct scan *sc)
{
    free(sc->ids);
    free(sc->lengths);
    free(sc->sealed);
    free(sc);
}

static void scan_done(void *arg)
{
    struct scan *sc = arg;
    for (size_t i = 0; i < sc->n && !sc->loop->draining; i++) {
        if (sc->sealed[i]) {
            dems_log(
                DEMS_LOG_INFO, NULL,
                json_pack("{s:s,s:s}", "event", "upload_sealed_at_start", "upload", sc->ids[i]),
                "upload %s was sealed but not recorded when demsd stopped: completing it",
                sc->ids[i]);
            kick(sc->loop, sc->ids[i]);
        }
    }
    dems_loop_unhold(sc->loop);
    scan_free(sc);
}

static void on_receiving(void *arg, const PGresult *res, int err)
{
    struct dems_loop *loop = arg;
    size_t n = err == 0 ? (size_t)PQntuples(res) : 0;
    if (n == 0 || loop->draining)
        return;
    struct scan *sc = calloc(1, sizeof(*sc));
    if (sc != NULL) {
        sc->ids = calloc(n, sizeof(*sc->ids));
        sc->lengths = calloc(n, sizeof(*sc->lengths));
        sc->sealed = calloc(n, sizeof(*sc->sealed));
    }
    if (sc == NULL || sc->ids == NULL || sc->lengths == NULL || sc->sealed == NULL) {
        if (sc != NULL)
            scan_free(sc);
        return;
    }
    sc->loop = loop;
    int cid = PQfnumber(res, "id"), clen = PQfnumber(res, "length");
    for (size_t i = 0; i < n; i++) {
        const char *len = PQgetvalue(res, (int)i, clen);
        snprintf(sc->ids[sc->n], 33, "%s", PQgetvalue(res, (int)i, cid));
        if (dems_parse_u64(len, strlen(len), INT64_MAX, &sc->lengths[sc->n]) == 0)
            sc->n++;
    }
    dems_loop_hold(loop);
    if (dems_work_submit(loop, scan_work, scan_done, sc) < 0) {
        dems_loop_unhold(loop);
        scan_free(sc);
    }
}

void upload_record_housekeeping(struct dems_loop *loop, bool at_start)
{
    /* Sealed in memory, not yet complete (a sealing step failed). */
    char ids[64][33];
    size_t n = dems_staging_list_full(ids, 64);
    for (size_t i = 0; i < n; i++)
        kick(loop, ids[i]);
    /* Object store: local windows of uploads idle here (another node may
     * have gone on with them) go; all bytes committed but not sealed (a node
     * died, or the store failed at the end): any node completes it. */
    if (dems_staging_is_remote())
        dems_staging_drop_idle(WINDOW_IDLE_SECONDS);
    if (dems_staging_is_remote())
        dems_db_query(loop->db,
                      "SELECT id FROM uploads WHERE state = 'receiving' AND stage_ver > 0"
                      " AND stage_offset = length AND updated_at < now() - interval '20 seconds'"
                      " AND expires_at > now() ORDER BY updated_at LIMIT 100",
                      0, NULL, on_unrecorded, loop);
    /* Complete, not yet recorded (the ledger or the database failed). */
    dems_db_query(loop->db,
                  "SELECT id FROM uploads WHERE state = 'complete' AND evidence_id IS NULL"
                  " ORDER BY updated_at LIMIT 100",
                  0, NULL, on_unrecorded, loop);
    if (at_start && !dems_staging_is_remote())
        dems_db_query(loop->db,
                      "SELECT id, length FROM uploads WHERE state = 'receiving'"
                      " AND expires_at > now()",
                      0, NULL, on_receiving, loop);
}
