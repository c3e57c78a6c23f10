/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The unpack job (queued when a public submission's file that sniffs as a
 * ZIP archive is recorded; payload {"evidence": "<sha256>", "submission":
 * <id>}, dedupe key unpack-<sha256>): the archive stays the original; each
 * member it may keep becomes an artefact of its own, derived from it.
 *
 * Steps 1-3 are unpack_read.c's (unpack_int.h), shared with face-import.
 * 1. The archive is decrypted into a private work directory
 *    (DATA/work/unpack-<job>/, mode 0700, removed afterwards): the ZIP
 *    reader needs a seekable file, because only the central directory at
 *    its end says which members are symlinks.
 * 2. `demsd unpack-sandbox` (server/cli/media.c: a fresh single-threaded
 *    process, as for previews) reads it with libarchive in the media
 *    sandbox (common/media/unpack.c) and writes the members to a pipe as
 *    frames (include/dems/unpack.h), its summary or error on another.
 * 3. Here each member's frames are checked again (order, name, sizes, the
 *    bounds) as they arrive, and its bytes are hashed and sealed into a blob
 *    file in the work directory (dems_blob_out).
 * 4. Only when the whole archive was read within its bounds is anything
 *    recorded: each member's blob moves into the store under its SHA-256,
 *    then one INGESTED entry per member (actor system:unpack, payload
 *    {"derived_from", "path", "member", "submission", "submission_link"})
 *    whose statement inserts its artefact (unless that content is stored
 *    already), its archive_members row and its preview job; then the
 *    members left out and the outcome (archive_unpacks). A refused or
 *    unreadable archive records only the outcome, and the job is dead.
 *
 * Idempotent: the outcome row ends a later run at once; a member recorded
 * by an earlier run is refused by its archive_members key (the entry is not
 * appended twice); blobs are content-addressed.
 */
#include "dems/unpack.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/media.h"
#include "dems/sniff.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

#include "unpack_int.h"

struct unpack {
    struct unpack_run x; /* the archive being read (unpack_read.c) */
    const char *id;      /* the archive */
    uint64_t archive_size;
    int64_t submission, link;
};

/* ---- recording ---- */

/* Runs one statement; false when it failed. */
static bool exec_ok(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    PQclear(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/*
 * A member's statement, run with its INGESTED entry ($1 archive, $2 index,
 * $3 the member's SHA-256, $4 size, $5 type, $6 file name, $7 path, $8
 * format, $9 kind, $10 whether to queue its preview): the artefact (unless
 * that content is stored already), the archive_members row (its key refuses
 * a member recorded before: the entry is then not appended) and the preview.
 */
static const char member_sql[] =
    "WITH a AS (INSERT INTO artefacts (id, size, content_type, filename, metadata, upload_id,"
    " uploaded_by_submission, format) SELECT $3::text, $4::bigint, $5::text, $6::text,"
    " jsonb_build_object('filename', $6::text, 'content_type', $5::text, 'archive', $1::text,"
    " 'archive_path', $7::text), ar.upload_id, ar.uploaded_by_submission, $8::text"
    " FROM artefacts ar WHERE ar.id = $1::text ON CONFLICT (id) DO NOTHING),"
    " m AS (INSERT INTO archive_members (archive, idx, path, artefact, size, format, kind)"
    " VALUES ($1::text, $2::integer, $7::text, $3::text, $4::bigint, $8::text, $9::text)"
    " RETURNING 1),"
    " j AS (SELECT dems_enqueue_job('preview', jsonb_build_object('evidence', $3::text),"
    " 'preview-' || $3::text) AS job WHERE $10::boolean)"
    " SELECT (SELECT count(*) FROM m) AS members, (SELECT count(*) FROM j) AS jobs";

/* Media (and what may be media no one recognises) get a preview; programs and documents not. */
static bool wants_preview(enum dems_sniff_kind kind)
{
    return kind == DEMS_SNIFF_VIDEO || kind == DEMS_SNIFF_IMAGE || kind == DEMS_SNIFF_AUDIO ||
           kind == DEMS_SNIFF_UNKNOWN;
}

static json_t *member_payload(const struct unpack *u, const struct unpack_member *m)
{
    json_t *p = json_pack("{s:s,s:I}", "derived_from", u->id, "member", (json_int_t)m->index);
    if (p == NULL)
        return NULL;
    if (dems_ledger_payload_set_text(p, "path", m->path, strlen(m->path), 1100) < 0) {
        json_decref(p);
        return NULL;
    }
    if (u->submission > 0) {
        json_object_set_new(p, "submission", json_integer(u->submission));
        json_object_set_new(p, "submission_link", json_integer(u->link));
    }
    return p;
}

/* Moves a member's blob into the store and appends its INGESTED entry. */
static int record_member(struct unpack *u, const struct unpack_member *m, char *err, size_t errlen)
{
    char path[PATH_MAX + 32], idx[16], size[24];
    unpack_member_path(&u->x, m->index, path);
    int r = dems_blob_adopt(u->x.ctx->cfg->data_dir, m->sha, path);
    if (r < 0) {
        snprintf(err, errlen, "cannot store member %s: %s", m->path, dems_strerror(r));
        return r;
    }
    snprintf(idx, sizeof(idx), "%u", (unsigned)m->index);
    snprintf(size, sizeof(size), "%llu", (unsigned long long)m->size);
    const char *slash = strrchr(m->path, '/');
    const char *params[] = {u->id,
                            idx,
                            m->sha,
                            size,
                            m->what.mime_type,
                            slash != NULL ? slash + 1 : m->path,
                            m->path,
                            m->what.format,
                            dems_sniff_kind_name(m->what.kind),
                            wants_preview(m->what.kind) ? "true" : "false"};
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_INGESTED, DEMS_LEDGER_ACTOR_SYSTEM, "unpack");
    bool ok = it != NULL && (it->pre_sql = strdup(member_sql)) != NULL &&
              (it->payload = member_payload(u, m)) != NULL;
    for (int i = 0; ok && i < 10; i++)
        ok = (it->pre_params[i] = strdup(params[i])) != NULL;
    if (!ok) {
        dems_ledger_item_free(it);
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    it->pre_nparams = 10;
    it->has_artefact = it->has_sha256 = it->has_size = true;
    dems_hex_decode(m->sha, 64, it->artefact, 32);
    memcpy(it->sha256, it->artefact, 32);
    it->size = m->size;
    uint64_t seq = 0;
    r = dems_job_ledger_append(it, &seq);
    if (r == DEMS_ECONFLICT)
        return 0; /* recorded by an earlier run */
    if (r < 0)
        snprintf(err, errlen, "cannot record member %s in the ledger: %s", m->path,
                 dems_strerror(r));
    return r;
}

/* The outcome, with the members left out ($2); written once. */
static const char outcome_sql[] =
    "WITH s AS (INSERT INTO archive_members (archive, idx, path, skipped, detail)"
    " SELECT $1, (r->>'index')::integer, r->>'path', r->>'reason', nullif(r->>'detail', '')"
    " FROM jsonb_array_elements($2::jsonb) AS r ON CONFLICT DO NOTHING RETURNING 1)"
    " INSERT INTO archive_unpacks (archive, state, entries, extracted, skipped, bytes, error,"
    " libarchive) SELECT $1, $3, $4::integer, $5::integer, $6::integer, $7::bigint, $8, $9"
    " FROM (SELECT count(*) FROM s) AS done ON CONFLICT (archive) DO NOTHING";

static int record_outcome(struct unpack *u, const char *state, const json_t *summary,
                          const char *error)
{
    json_t *skipped = json_array();
    uint64_t extracted = 0, bytes = 0;
    for (size_t i = 0; skipped != NULL && i < u->x.n && strcmp(state, "done") == 0; i++) {
        const struct unpack_member *m = &u->x.members[i];
        if (m->skipped == 0) {
            extracted++;
            bytes += m->size;
            continue;
        }
        json_array_append_new(skipped,
                              json_pack("{s:I,s:s,s:s,s:s}", "index", (json_int_t)m->index, "path",
                                        m->path, "reason", dems_unpack_reason_str(m->skipped),
                                        "detail", m->detail != NULL ? m->detail : ""));
    }
    char *text = skipped != NULL ? json_dumps(skipped, JSON_COMPACT) : NULL;
    json_decref(skipped);
    char v[4][24];
    const uint64_t nums[] = {(uint64_t)json_integer_value(json_object_get(summary, "entries")),
                             extracted,
                             strcmp(state, "done") == 0 ? (uint64_t)u->x.n - extracted : 0, bytes};
    for (int i = 0; i < 4; i++)
        snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)nums[i]);
    const char *lib = json_string_value(json_object_get(summary, "libarchive"));
    char lib_s[100];
    snprintf(lib_s, sizeof(lib_s), "%s", lib != NULL ? lib : "");
    const char *params[] = {
        u->id, text, state, v[0], v[1], v[2], v[3], error, lib != NULL ? lib_s : NULL};
    bool ok = text != NULL && exec_ok(u->x.ctx->db, outcome_sql, 9, params);
    free(text);
    return ok ? 0 : DEMS_EDB;
}

/* ---- the job ---- */

int dems_job_unpack_check(const json_t *payload, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(payload, "evidence"));
    const json_t *sub = json_object_get(payload, "submission");
    bool hex = id != NULL && strlen(id) == 64;
    for (size_t i = 0; hex && i < 64; i++)
        hex = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    if (!hex) {
        snprintf(err, errlen,
                 "field \"payload.evidence\" must be an evidence id (64 lower-case hex digits)");
        return DEMS_EINVAL;
    }
    if (sub != NULL && !json_is_null(sub) &&
        (!json_is_integer(sub) || json_integer_value(sub) <= 0)) {
        snprintf(err, errlen, "field \"payload.submission\" must be a submission id");
        return DEMS_EINVAL;
    }
    if (json_object_size(payload) != 1 + (sub != NULL)) {
        snprintf(err, errlen, "field \"payload\" takes only \"evidence\" and \"submission\"");
        return DEMS_EINVAL;
    }
    return 0;
}

/*
 * Reads the archive's size and whether it was unpacked already, and the
 * submission's link. Returns 1 to go on, 0 when there is nothing to do,
 * or a job result (negative: see below) with err set.
 */
static int look_up(struct unpack *u, const struct dems_job_ctx *ctx, char *err, size_t errlen,
                   enum dems_job_result *ret)
{
    char sub[24];
    snprintf(sub, sizeof(sub), "%lld", (long long)u->submission);
    const char *params[] = {u->id, sub};
    PGresult *res = PQexecParams(ctx->db,
                                 "SELECT a.size, EXISTS (SELECT 1 FROM archive_unpacks o"
                                 " WHERE o.archive = a.id) AS done,"
                                 " (SELECT link_id FROM submissions WHERE id = $2::bigint) AS link"
                                 " FROM artefacts a WHERE a.id = $1",
                                 2, NULL, params, NULL, NULL, 0);
    int rows = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    if (rows == 1) {
        const char *size = PQgetvalue(res, 0, 0), *link = PQgetvalue(res, 0, 2);
        dems_parse_u64(size, strlen(size), INT64_MAX, &u->archive_size);
        uint64_t l = 0;
        if (dems_parse_u64(link, strlen(link), INT64_MAX, &l) == 0)
            u->link = (int64_t)l;
        bool done = PQgetvalue(res, 0, 1)[0] == 't';
        PQclear(res);
        *ret = DEMS_JOB_OK;
        return done ? 0 : 1;
    }
    PQclear(res);
    snprintf(err, errlen, rows < 0 ? "database: cannot look up evidence %s" : "no evidence %s",
             u->id);
    *ret = rows < 0 ? DEMS_JOB_RETRY : DEMS_JOB_FAIL;
    return 0;
}

/* What the runner's failure means for the job; records the outcome when it is final. */
static enum dems_job_result on_failure(struct unpack *u, const struct dems_media_error *me,
                                       char *err, size_t errlen)
{
    const char *state;
    if (u->x.local) {
        snprintf(err, errlen, "%s", u->x.why);
        return DEMS_JOB_RETRY;
    } else if (u->x.broken) {
        snprintf(err, errlen, "%s", u->x.why);
        state = "failed";
    } else {
        snprintf(err, errlen, "%s: %s", dems_media_code_str(me->code), me->message);
        switch (me->code) {
        case DEMS_MEDIA_TOO_LARGE:
            state = "refused"; /* a bound: nothing is kept */
            break;
        case DEMS_MEDIA_INVALID:
        case DEMS_MEDIA_UNSUPPORTED:
        case DEMS_MEDIA_SECCOMP:
            state = "failed"; /* the same bytes fail the same way */
            break;
        default:
            return DEMS_JOB_RETRY; /* a crash, a timeout, a resource limit: the machine? */
        }
    }
    if (record_outcome(u, state, NULL, u->x.broken ? u->x.why : me->message) < 0) {
        snprintf(err, errlen, "database: cannot record the outcome of unpacking %s", u->id);
        return DEMS_JOB_RETRY;
    }
    return DEMS_JOB_FAIL;
}

/* Records every member extracted, then the outcome. */
static enum dems_job_result record_all(struct unpack *u, const json_t *summary, char *err,
                                       size_t errlen)
{
    uint64_t entries = (uint64_t)json_integer_value(json_object_get(summary, "entries"));
    if (entries < u->x.n || entries > u->x.lim.max_members) {
        snprintf(err, errlen, "the archive reader's summary does not match its members");
        return record_outcome(u, "failed", NULL, err) < 0 ? DEMS_JOB_RETRY : DEMS_JOB_FAIL;
    }
    for (size_t i = 0; i < u->x.n; i++) {
        if (u->x.members[i].skipped == 0 && record_member(u, &u->x.members[i], err, errlen) < 0)
            return DEMS_JOB_RETRY;
    }
    if (record_outcome(u, "done", summary, NULL) < 0) {
        snprintf(err, errlen, "database: cannot record the outcome of unpacking %s", u->id);
        return DEMS_JOB_RETRY;
    }
    return DEMS_JOB_OK;
}

enum dems_job_result dems_job_unpack(const struct dems_job *job, struct dems_job_ctx *ctx,
                                     char *err, size_t errlen)
{
    if (dems_job_unpack_check(job->payload, err, errlen) < 0)
        return DEMS_JOB_FAIL;
    struct unpack u = {.id = json_string_value(json_object_get(job->payload, "evidence")),
                       .submission =
                           json_integer_value(json_object_get(job->payload, "submission"))};
    enum dems_job_result out;
    if (look_up(&u, ctx, err, errlen, &out) <= 0)
        return out;
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    out = DEMS_JOB_RETRY;
    json_t *summary = NULL;
    struct dems_media_error me = {.code = DEMS_MEDIA_OK};
    bool released = false;
    if (unpack_open(&u.x, ctx, u.id, u.archive_size, "unpack", err, errlen) == 0) {
        int r = unpack_read(&u.x, &summary, &me, &released);
        if (released) {
            snprintf(err, errlen, "the worker stopped while unpacking");
            out = DEMS_JOB_RELEASE;
        } else if (r < 0 || u.x.broken) {
            out = on_failure(&u, &me, err, errlen);
        } else {
            out = record_all(&u, summary, err, errlen);
        }
    }
    json_decref(summary);
    unpack_close(&u.x);
    return out;
}
