/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The queue's statements over a blocking connection: enqueue, claim (FOR
 * UPDATE SKIP LOCKED, so concurrent workers never wait on each other's
 * rows), lease renewal, results with exponential backoff, and reaping the
 * expired leases of dead workers. Each statement runs in its own transaction
 * except the reaper's, which locks the rows it reaps. Every update of a
 * running job names its lease (owner and attempt number): a worker whose
 * lease expired and whose job was claimed again can no longer change it.
 * No logging here; the worker decides what to say.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/jobs.h"

#define LEASE_EXPIRED "lease expired (worker died?)"
#define REAP_BATCH    "100"

void dems_job_done(struct dems_job *job)
{
    json_decref(job->payload);
    job->payload = NULL;
}

bool dems_job_stopping(const struct dems_job_ctx *ctx)
{
    return ctx->stop != NULL && atomic_load(ctx->stop);
}

void dems_jobs_opts_init(struct dems_jobs_opts *o, const struct dems_config *cfg)
{
    o->lease = cfg->job_lease;
    o->backoff_base = cfg->job_backoff_base;
    o->backoff_max = cfg->job_backoff_max;
    o->max_attempts = cfg->job_max_attempts;
    /* Kind names are [a-z0-9_-] (the schema checks), so no quoting is needed. */
    size_t n = 0;
    o->kinds[n++] = '{';
    for (size_t i = 0; i < dems_job_nkinds; i++) {
        int w = snprintf(o->kinds + n, sizeof(o->kinds) - n, "%s%s", i > 0 ? "," : "",
                         dems_job_kinds[i].name);
        if (w < 0 || (size_t)w >= sizeof(o->kinds) - n - 1)
            break;
        n += (size_t)w;
    }
    o->kinds[n++] = '}';
    o->kinds[n] = '\0';
}

uint64_t dems_jobs_backoff(uint64_t base, uint64_t cap, int attempt)
{
    uint64_t d = base;
    for (int i = 1; i < attempt && d < cap; i++)
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    return d < cap ? d : cap;
}

/* Runs a statement with text parameters; NULL on a connection failure. */
static PGresult *exec(PGconn *db, const char *sql, int n, const char *const *params)
{
    return PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
}

static bool ok(const PGresult *res, ExecStatusType want)
{
    return res != NULL && PQresultStatus(res) == want;
}

static void copy_error(PGconn *db, const PGresult *res, char *err, size_t errlen)
{
    const char *m = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(db);
    snprintf(err, errlen, "database: %s", m != NULL && m[0] != '\0' ? m : "failed");
    size_t n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
}

static int parse_int(const char *s, int64_t *ret)
{
    uint64_t v;
    if (dems_parse_u64(s, strlen(s), INT64_MAX, &v) < 0)
        return DEMS_EINVAL;
    *ret = (int64_t)v;
    return 0;
}

int dems_jobs_enqueue(PGconn *db, const char *kind, const json_t *payload, const char *dedupe_key,
                      int priority, int64_t *ret_id, char *err, size_t errlen)
{
    int r = dems_job_check(kind, payload, err, errlen);
    if (r < 0)
        return r;
    char *text = json_dumps(payload, JSON_COMPACT);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    char prio[16];
    snprintf(prio, sizeof(prio), "%d", priority);
    const char *params[] = {kind, text, dedupe_key, prio, NULL};
    PGresult *res = exec(db, DEMS_JOBS_ENQUEUE_SQL, 5, params);
    free(text);
    if (!ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1) {
        copy_error(db, res, err, errlen);
        PQclear(res);
        return DEMS_EDB;
    }
    int64_t id = 0;
    r = parse_int(PQgetvalue(res, 0, 0), &id);
    PQclear(res);
    if (r < 0) {
        snprintf(err, errlen, "database: enqueue returned no id");
        return DEMS_EDB;
    }
    *ret_id = id;
    return 0;
}

static const char claim_sql[] =
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1,"
    " lease_expires = now() + $2::integer * interval '1 second', started_at = now(),"
    " updated_at = now()"
    " WHERE id = (SELECT id FROM jobs WHERE state IN ('queued', 'failed') AND run_after <= now()"
    "  AND kind = ANY($3::text[]) ORDER BY priority DESC, run_after, id"
    "  LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, kind, payload::text, attempts, COALESCE(max_attempts, $4::integer)";

int dems_jobs_claim(PGconn *db, const struct dems_jobs_opts *o, const char *owner,
                    struct dems_job *ret_job)
{
    char lease[24], max[24];
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)o->lease);
    snprintf(max, sizeof(max), "%llu", (unsigned long long)o->max_attempts);
    const char *params[] = {owner, lease, o->kinds, max};
    PGresult *res = exec(db, claim_sql, 4, params);
    if (!ok(res, PGRES_TUPLES_OK)) {
        PQclear(res);
        return DEMS_EDB;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        return DEMS_ENOTFOUND;
    }
    struct dems_job j = {0};
    int64_t attempt = 0, maxa = 0;
    json_error_t jerr;
    j.payload = json_loads(PQgetvalue(res, 0, 2), 0, &jerr);
    int r = parse_int(PQgetvalue(res, 0, 0), &j.id);
    if (r == 0)
        r = parse_int(PQgetvalue(res, 0, 3), &attempt);
    if (r == 0)
        r = parse_int(PQgetvalue(res, 0, 4), &maxa);
    snprintf(j.kind, sizeof(j.kind), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    if (r < 0 || j.payload == NULL) {
        /* The schema guarantees these; a NULL payload means out of memory. */
        json_decref(j.payload);
        return DEMS_EDB;
    }
    j.attempt = (int)attempt;
    j.max_attempts = (int)maxa;
    *ret_job = j;
    return 0;
}

/* The lease a worker holds: $1 id, $2 owner, $3 attempt. */
#define HELD "id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3::integer"

/* Runs an update of a held job; 0, DEMS_ENOTFOUND (no longer held), DEMS_EDB. */
static int update_held(PGconn *db, const char *sql, const char *owner, const struct dems_job *job,
                       const char *p4, const char *p5)
{
    char id[24], attempt[16];
    snprintf(id, sizeof(id), "%lld", (long long)job->id);
    snprintf(attempt, sizeof(attempt), "%d", job->attempt);
    const char *params[] = {id, owner, attempt, p4, p5};
    int n = p5 != NULL ? 5 : p4 != NULL ? 4 : 3;
    PGresult *res = exec(db, sql, n, params);
    int r = !ok(res, PGRES_COMMAND_OK)           ? DEMS_EDB
            : strcmp(PQcmdTuples(res), "1") != 0 ? DEMS_ENOTFOUND
                                                 : 0;
    PQclear(res);
    return r;
}

int dems_jobs_renew(PGconn *db, const struct dems_jobs_opts *o, const char *owner,
                    const struct dems_job *job)
{
    char lease[24];
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)o->lease);
    return update_held(db,
                       "UPDATE jobs SET lease_expires = now() + $4::integer * interval '1 second',"
                       " updated_at = now() WHERE " HELD,
                       owner, job, lease, NULL);
}

static const char done_sql[] =
    "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_expires = NULL,"
    " finished_at = now(), updated_at = now() WHERE " HELD;
static const char retry_sql[] =
    "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires = NULL,"
    " last_error = $4, run_after = now() + $5::bigint * interval '1 second', updated_at = now()"
    " WHERE " HELD;
static const char dead_sql[] =
    "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires = NULL, last_error = $4,"
    " finished_at = now(), updated_at = now() WHERE " HELD;
static const char release_sql[] =
    "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL,"
    " lease_expires = NULL, updated_at = now() WHERE " HELD;

/* Cuts an error message to len - 1 bytes without splitting a UTF-8 sequence. */
static void cut_error(const char *error, char *out, size_t len)
{
    const char *src = error != NULL && error[0] != '\0' ? error : "failed";
    size_t n = strnlen(src, len - 1);
    /* Cut mid-character: back up to the first byte of that character. */
    while (n > 0 && src[n] != '\0' && ((unsigned char)src[n] & 0xC0) == 0x80)
        n--;
    memcpy(out, src, n);
    out[n] = '\0';
}

int dems_jobs_finish(PGconn *db, const struct dems_jobs_opts *o, const char *owner,
                     const struct dems_job *job, enum dems_job_result result, const char *error,
                     const char **ret_state)
{
    char msg[DEMS_JOB_ERROR_MAX + 1], delay[24];
    cut_error(error, msg, sizeof(msg));
    const char *state;
    int r;
    switch (result) {
    case DEMS_JOB_OK:
        state = "done";
        r = update_held(db, done_sql, owner, job, NULL, NULL);
        break;
    case DEMS_JOB_RELEASE:
        state = "queued";
        r = update_held(db, release_sql, owner, job, NULL, NULL);
        break;
    case DEMS_JOB_RETRY:
        if (job->attempt < job->max_attempts) {
            state = "failed";
            snprintf(delay, sizeof(delay), "%llu",
                     (unsigned long long)dems_jobs_backoff(o->backoff_base, o->backoff_max,
                                                           job->attempt));
            r = update_held(db, retry_sql, owner, job, msg, delay);
            break;
        }
        /* That was the last attempt. */
        __attribute__((fallthrough));
    default:
        state = "dead";
        r = update_held(db, dead_sql, owner, job, msg, NULL);
        break;
    }
    if (r == 0)
        *ret_state = state;
    return r;
}

static int reap_one(PGconn *db, const struct dems_jobs_opts *o, const char *id, int attempts,
                    int max)
{
    char delay[24];
    snprintf(delay, sizeof(delay), "%llu",
             (unsigned long long)dems_jobs_backoff(o->backoff_base, o->backoff_max, attempts));
    const char *params[] = {id, LEASE_EXPIRED, delay};
    PGresult *res =
        attempts < max
            ? exec(db,
                   "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_expires = NULL,"
                   " last_error = $2, run_after = now() + $3::bigint * interval '1 second',"
                   " updated_at = now() WHERE id = $1",
                   3, params)
            : exec(db,
                   "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires = NULL,"
                   " last_error = $2, finished_at = now(), updated_at = now() WHERE id = $1",
                   2, params);
    int r = ok(res, PGRES_COMMAND_OK) ? 0 : DEMS_EDB;
    PQclear(res);
    return r;
}

int dems_jobs_reap(PGconn *db, const struct dems_jobs_opts *o)
{
    char max[24];
    snprintf(max, sizeof(max), "%llu", (unsigned long long)o->max_attempts);
    const char *params[] = {max};
    PGresult *res = PQexec(db, "BEGIN");
    bool began = ok(res, PGRES_COMMAND_OK);
    PQclear(res);
    if (!began)
        return DEMS_EDB;
    /* Rows another reaper holds are skipped, not waited for. */
    res = exec(db,
               "SELECT id, attempts, COALESCE(max_attempts, $1::integer) FROM jobs"
               " WHERE state = 'running' AND lease_expires < now()"
               " ORDER BY lease_expires LIMIT " REAP_BATCH " FOR UPDATE SKIP LOCKED",
               1, params);
    int r = ok(res, PGRES_TUPLES_OK) ? 0 : DEMS_EDB;
    int n = r == 0 ? PQntuples(res) : 0;
    for (int i = 0; r == 0 && i < n; i++) {
        int64_t attempts = 0, maxa = 0;
        if (parse_int(PQgetvalue(res, i, 1), &attempts) < 0 ||
            parse_int(PQgetvalue(res, i, 2), &maxa) < 0)
            r = DEMS_EDB;
        else
            r = reap_one(db, o, PQgetvalue(res, i, 0), (int)attempts, (int)maxa);
    }
    PQclear(res);
    res = PQexec(db, r == 0 ? "COMMIT" : "ROLLBACK");
    if (!ok(res, PGRES_COMMAND_OK))
        r = DEMS_EDB;
    PQclear(res);
    return r < 0 ? r : n;
}

int dems_jobs_next_due(PGconn *db, const struct dems_jobs_opts *o, double *ret_seconds)
{
    const char *params[] = {o->kinds};
    PGresult *res =
        exec(db,
             "SELECT EXTRACT(EPOCH FROM min(run_after) - clock_timestamp())::float8"
             " FROM jobs WHERE state IN ('queued', 'failed') AND kind = ANY($1::text[])",
             1, params);
    if (!ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1) {
        PQclear(res);
        return DEMS_EDB;
    }
    int r = DEMS_ENOTFOUND;
    if (!PQgetisnull(res, 0, 0)) {
        char *end;
        double v = strtod(PQgetvalue(res, 0, 0), &end);
        if (*end == '\0') {
            *ret_seconds = v;
            r = 0;
        }
    }
    PQclear(res);
    return r;
}
