/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The job queue for administrators: list jobs (filtered by state and kind,
 * newest first, paged by id), read one, queue one of a known kind with a
 * checked payload, and retry a failed or dead job (attempts reset, due now).
 * The workers do the work (server/jobs/); this file only reads and writes
 * rows.
 */
#include "demsd/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/log.h"

#include "api_int.h"

/* Every column a job's JSON shows (job_json reads them by name). */
#define JOB_COLS                                                                                   \
    "id, kind, payload::text AS payload, dedupe_key, priority, state, attempts, max_attempts,"     \
    " lease_owner, last_error, " API_TS(                                                           \
        "run_after") " AS run_after,"                                                              \
                     " " API_TS("lease_expires") " AS lease_expires, " API_TS(                     \
                         "created_at") " AS created_at,"                                           \
                                       " " API_TS("started_at") " AS started_at, " API_TS(         \
                                           "finished_at") " AS finished_at,"                       \
                                                          " " API_TS(                              \
                                                              "updated_at") " AS updated_at"

static const char *const states[] = {"queued", "running", "failed", "done", "dead"};

static json_t *job_json(struct dems_req *req, const PGresult *res, int row)
{
    json_t *payload = json_loads(api_col(res, row, "payload"), 0, NULL);
    json_int_t max = api_col_null(res, row, "max_attempts")
                         ? (json_int_t)dems_req_loop(req)->srv->cfg->job_max_attempts
                         : api_col_int(res, row, "max_attempts");
    json_t *o = json_pack("{s:I,s:s,s:o,s:I,s:s,s:I,s:I}", "id", api_col_int(res, row, "id"),
                          "kind", api_col(res, row, "kind"), "payload",
                          payload != NULL ? payload : json_object(), "priority",
                          api_col_int(res, row, "priority"), "state", api_col(res, row, "state"),
                          "attempts", api_col_int(res, row, "attempts"), "max_attempts", max);
    if (o == NULL)
        return NULL;
    static const char *const text[] = {"dedupe_key", "lease_owner",   "last_error",
                                       "run_after",  "lease_expires", "created_at",
                                       "started_at", "finished_at",   "updated_at"};
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        json_object_set_new(o, text[i], api_col_json_str(res, row, text[i]));
    return o;
}

/* A kind name as the schema allows it: [a-z][a-z0-9_-]{0,62}. */
static bool kind_ok(const char *s, size_t n)
{
    if (n == 0 || n > DEMS_JOB_KIND_MAX || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ---- GET /v1/admin/jobs ---- */

static void on_jobs(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "jobs", "id", job_json);
}

/* Copies a query parameter (at most len - 1 bytes); false when absent. */
static bool query_copy(struct dems_req *req, const char *name, char *out, size_t len,
                       bool *ret_too_long)
{
    struct dems_str v;
    *ret_too_long = false;
    if (!dems_req_query(req, name, &v))
        return false;
    if (v.len >= len) {
        *ret_too_long = true;
        return true;
    }
    memcpy(out, v.ptr, v.len);
    out[v.len] = '\0';
    return true;
}

void api_jobs_list(struct dems_req *req)
{
    char state[16], kind[DEMS_JOB_KIND_MAX + 1], after[24], limit[24];
    bool long_state, long_kind;
    bool has_state = query_copy(req, "state", state, sizeof(state), &long_state);
    bool has_kind = query_copy(req, "kind", kind, sizeof(kind), &long_kind);
    if (has_state) {
        bool known = false;
        for (size_t i = 0; !long_state && i < sizeof(states) / sizeof(states[0]); i++)
            known = known || strcmp(state, states[i]) == 0;
        if (!known) {
            api_bad_param(req, "state", "must be one of queued, running, failed, done, dead");
            return;
        }
    }
    if (has_kind && (long_kind || !kind_ok(kind, strlen(kind)))) {
        api_bad_param(req, "kind", "must be a job kind (a-z, 0-9, _ and -, at most 63)");
        return;
    }
    struct api_page page;
    if (!api_page_parse(req, &page))
        return;
    uint64_t a = 0;
    if (page.has_cursor && dems_parse_u64(page.cursor, strlen(page.cursor), INT64_MAX, &a) < 0) {
        api_bad_param(req, "cursor", "is not a cursor this list gave");
        return;
    }
    api_page_sql_limit(&page, limit);
    snprintf(after, sizeof(after), "%llu", (unsigned long long)a);
    const char *params[] = {has_state ? state : NULL, has_kind ? kind : NULL,
                            page.has_cursor ? after : NULL, limit};
    int r = dems_db_req(req,
                        "SELECT " JOB_COLS " FROM jobs WHERE ($1::text IS NULL OR state = $1)"
                        " AND ($2::text IS NULL OR kind = $2) AND ($3::bigint IS NULL OR id < $3)"
                        " ORDER BY id DESC LIMIT $4::integer",
                        4, params, on_jobs);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- GET /v1/admin/jobs/{id} ---- */

static void on_job(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such job"))
        return;
    json_t *o = job_json(req, res, 0);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_json(req, 200, o);
}

/* The {id} path segment as decimal text; answers 404 and returns false when not an id. */
static bool path_id(struct dems_req *req, char out[static 24])
{
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "not_found", "no such job");
        return false;
    }
    snprintf(out, 24, "%lld", (long long)id);
    return true;
}

static void get_by_id(struct dems_req *req, const char *id,
                      void (*cb)(struct dems_req *req, const PGresult *res, int err))
{
    const char *params[] = {id};
    int r = dems_db_req(req, "SELECT " JOB_COLS " FROM jobs WHERE id = $1", 1, params, cb);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_jobs_get(struct dems_req *req)
{
    char id[24];
    if (path_id(req, id))
        get_by_id(req, id, on_job);
}

/* ---- POST /v1/admin/jobs/{id}/retry ---- */

static void on_retry_state(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such job"))
        return;
    char msg[160];
    snprintf(msg, sizeof(msg), "the job is %s: only failed or dead jobs can be retried",
             api_col(res, 0, "state"));
    dems_resp_error(req, 409, "job_not_retryable", msg);
}

static void on_retried(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    struct dems_str p = dems_req_param(req, 0);
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)api_id(p.ptr, p.len));
    if (PQntuples(res) != 1) {
        /* Not failed or dead: say what it is (or that it does not exist). */
        const char *params[] = {id};
        int r = dems_db_req(req, "SELECT state FROM jobs WHERE id = $1", 1, params, on_retry_state);
        if (r < 0)
            dems_resp_err(req, r);
        return;
    }
    dems_log(DEMS_LOG_INFO, dems_req_id(req),
             json_pack("{s:s,s:s,s:s}", "event", "job_retried", "job", id, "by",
                       dems_req_principal(req)->username),
             "job %s queued again by an administrator", id);
    on_job(req, res, 0);
}

void api_jobs_retry(struct dems_req *req)
{
    char id[24];
    if (!path_id(req, id))
        return;
    const char *params[] = {id};
    int r = dems_db_req(req,
                        "UPDATE jobs SET state = 'queued', attempts = 0, run_after = now(),"
                        " finished_at = NULL, updated_at = now()"
                        " WHERE id = $1 AND state IN ('failed', 'dead') RETURNING " JOB_COLS,
                        1, params, on_retried);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- POST /v1/admin/jobs ---- */

static void on_created(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) != 1) {
        dems_resp_err(req, DEMS_EINTERNAL);
        return;
    }
    json_t *o = job_json(req, res, 0);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_json(req, 201, o);
}

static void on_enqueued(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0 || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    char id[24];
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0)); /* the function's one column */
    get_by_id(req, id, on_created);
}

void api_jobs_create(struct dems_req *req)
{
    const char *kind, *dedupe;
    int64_t priority, max_attempts;
    if (!api_get_str(req, "kind", DEMS_JOB_KIND_MAX, true, &kind) ||
        !api_get_str(req, "dedupe_key", 200, false, &dedupe) ||
        !api_get_int(req, "priority", -100, 100, 0, &priority) ||
        !api_get_int(req, "max_attempts", 1, 1000, 0, &max_attempts))
        return;
    json_t *body = dems_req_json(req);
    json_t *payload = json_object_get(body, "payload");
    json_t *empty = payload == NULL ? json_object() : NULL;
    char err[512];
    int r = dems_job_check(kind, payload != NULL ? payload : empty, err, sizeof(err));
    if (r < 0) {
        json_decref(empty);
        dems_resp_error(req, 400, r == DEMS_ENOTFOUND ? "unknown_job_kind" : "invalid_field", err);
        return;
    }
    char *text = json_dumps(payload != NULL ? payload : empty, JSON_COMPACT);
    json_decref(empty);
    if (text == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    char prio[16], max[16];
    snprintf(prio, sizeof(prio), "%lld", (long long)priority);
    snprintf(max, sizeof(max), "%lld", (long long)max_attempts);
    const char *params[] = {kind, text, dedupe, prio, max_attempts > 0 ? max : NULL};
    r = dems_db_req(req, DEMS_JOBS_ENQUEUE_SQL, 5, params, on_enqueued);
    free(text);
    if (r < 0)
        dems_resp_err(req, r);
}
