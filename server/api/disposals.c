/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disposal by batch (docs/operations.md, "Retention, holds and disposal"):
 *   GET  /v1/admin/disposal/due                       artefacts due now (not held), a page at a
 * time POST /v1/admin/disposal/batches                   202: a disposal job lists what is due GET
 * /v1/admin/disposal/batches                   a page at a time GET /v1/admin/disposal/batches/{id}
 * with counts of its items by state GET  /v1/admin/disposal/batches/{id}/items        a page at a
 * time POST /v1/admin/disposal/batches/{id}/approve      {"reason", "recover_days"?}: 202; the job
 *                                                     soft-deletes each (DISPOSAL_APPROVED), then
 *                                                     after the window crypto-erases (DISPOSED)
 *   POST /v1/admin/disposal/batches/{id}/cancel       a proposed batch
 *   POST /v1/admin/evidence/{id}/recover              {"reason"}: within the window
 *                                                     (DISPOSAL_RECOVERED)
 * The job is server/jobs/disposal.c; housekeeping queues the erasure of
 * batches whose window has passed (api_disposals_run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/runtime.h"

#include "api_int.h"

struct disp {
    char id[24];
    char artefact[65];
    char reason[501];
};

static struct disp *disp_new(struct dems_req *req, bool with_batch)
{
    struct disp *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, d, free);
    if (with_batch) {
        struct dems_str p = dems_req_param(req, 0);
        int64_t id = api_id(p.ptr, p.len);
        if (id <= 0) {
            dems_resp_error(req, 404, "batch_not_found", "no such disposal batch");
            return NULL;
        }
        snprintf(d->id, sizeof(d->id), "%lld", (long long)id);
    }
    return d;
}

static json_t *int_or_null(const PGresult *res, int row, const char *name)
{
    return api_col_null(res, row, name) ? json_null() : json_integer(api_col_int(res, row, name));
}

/* ---- due ---- */

static json_t *due_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack(
        "{s:s,s:s,s:o,s:I,s:s}", "evidence", api_col(res, row, "artefact"), "due_at",
        api_col(res, row, "due_at"), "filename", api_col_json_str(res, row, "filename"), "size",
        (json_int_t)api_col_int(res, row, "size"), "ingested_at", api_col(res, row, "created_at"));
}

static void on_due(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "due", "artefact", due_json);
}

void api_disposal_due(struct dems_req *req)
{
    struct api_page page;
    if (!api_page_parse(req, &page))
        return;
    char limit[24];
    api_page_sql_limit(&page, limit);
    const char *params[] = {page.has_cursor ? page.cursor : "", limit};
    /* clang-format off */
    int r = dems_db_req(req,
                        "SELECT r.artefact, " API_TS("r.due_at") " AS due_at, a.filename, a.size,"
                        " " API_TS("a.created_at") " AS created_at"
                        " FROM artefact_retention r JOIN artefacts a ON a.id = r.artefact"
                        " WHERE r.due_at <= now() AND NOT r.held AND a.deleted_at IS NULL"
                        " AND r.artefact > $1 ORDER BY r.artefact LIMIT $2::integer",
                        2, params, on_due);
    /* clang-format on */
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- batches ---- */

/* clang-format off */
#define BATCH_COLS                                                                                 \
    "b.id, b.state, (SELECT username FROM users WHERE id = b.created_by) AS created_by,"           \
    " " API_TS("b.created_at") " AS created_at, " API_TS("b.listed_at") " AS listed_at,"           \
    " (SELECT username FROM users WHERE id = b.approved_by) AS approved_by,"                       \
    " " API_TS("b.approved_at") " AS approved_at, b.reason, b.recover_days,"                       \
    " " API_TS("b.recover_until") " AS recover_until, " API_TS("b.finished_at") " AS finished_at," \
    " b.error, (SELECT json_build_object("                                                          \
    "'proposed', count(*) FILTER (WHERE i.state = 'proposed'),"                                    \
    " 'soft_deleted', count(*) FILTER (WHERE i.state = 'soft_deleted'),"                           \
    " 'recovered', count(*) FILTER (WHERE i.state = 'recovered'),"                                 \
    " 'skipped', count(*) FILTER (WHERE i.state = 'skipped'),"                                     \
    " 'destroyed', count(*) FILTER (WHERE i.state = 'destroyed'))"                                 \
    " FROM disposal_items i WHERE i.batch_id = b.id) AS items"
/* clang-format on */

static json_t *batch_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_t *items = json_loads(api_col(res, row, "items"), 0, NULL);
    return json_pack(
        "{s:I,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id",
        (json_int_t)api_col_int(res, row, "id"), "state", api_col(res, row, "state"), "created_by",
        api_col(res, row, "created_by"), "created_at", api_col(res, row, "created_at"), "listed_at",
        api_col_json_str(res, row, "listed_at"), "approved_by",
        api_col_json_str(res, row, "approved_by"), "approved_at",
        api_col_json_str(res, row, "approved_at"), "reason", api_col_json_str(res, row, "reason"),
        "recover_days", int_or_null(res, row, "recover_days"), "recover_until",
        api_col_json_str(res, row, "recover_until"), "finished_at",
        api_col_json_str(res, row, "finished_at"), "error", api_col_json_str(res, row, "error"),
        "items", items != NULL ? items : json_null());
}

static void on_batch(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "batch_not_found", "no such disposal batch"))
        return;
    json_t *b = batch_json(req, res, 0);
    if (b != NULL && !api_col_null(res, 0, "job"))
        json_object_set_new(b, "job", json_integer(api_col_int(res, 0, "job")));
    dems_resp_json(req, api_col_null(res, 0, "job") ? 200 : 202, b);
}

void api_disposal_batches_create(struct dems_req *req)
{
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    const char *params[] = {uid};
    int r = dems_db_req(req,
                        "WITH b AS (INSERT INTO disposal_batches (created_by) VALUES ($1::bigint)"
                        " RETURNING *) SELECT " BATCH_COLS ", dems_enqueue_job('disposal',"
                        " jsonb_build_object('batch', b.id), 'disposal-list-' || b.id) AS job"
                        " FROM b",
                        1, params, on_batch);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_batches(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "batches", "id", batch_json);
}

void api_disposal_batches_list(struct dems_req *req)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {after, limit};
    int r = dems_db_req(req,
                        "SELECT " BATCH_COLS " FROM disposal_batches b WHERE b.id > $1::bigint"
                        " ORDER BY b.id LIMIT $2::integer",
                        2, params, on_batches);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disposal_batches_get(struct dems_req *req)
{
    struct disp *d = disp_new(req, true);
    if (d == NULL)
        return;
    const char *params[] = {d->id};
    int r = dems_db_req(req,
                        "SELECT " BATCH_COLS ", NULL::bigint AS job FROM disposal_batches b"
                        " WHERE b.id = $1::bigint",
                        1, params, on_batch);
    if (r < 0)
        dems_resp_err(req, r);
}

static json_t *item_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "evidence", api_col(res, row, "artefact"),
                     "due_at", api_col(res, row, "due_at"), "state", api_col(res, row, "state"),
                     "detail", api_col_json_str(res, row, "detail"), "approved_seq",
                     int_or_null(res, row, "approved_seq"), "disposed_seq",
                     int_or_null(res, row, "disposed_seq"), "filename",
                     api_col_json_str(res, row, "filename"));
}

static void on_items(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "batch_not_found", "no such disposal batch"))
        return;
    if (api_col_null(res, 0, "artefact"))
        api_page_send(req, "items", json_array(), NULL);
    else
        api_page_answer(req, res, "items", "artefact", item_json);
}

void api_disposal_batch_items(struct dems_req *req)
{
    struct disp *d = disp_new(req, true);
    struct api_page page;
    if (d == NULL || !api_page_parse(req, &page))
        return;
    char limit[24];
    api_page_sql_limit(&page, limit);
    const char *params[] = {d->id, page.has_cursor ? page.cursor : "", limit};
    int r = dems_db_req(
        req,
        "SELECT i.artefact, " API_TS(
            "i.due_at") " AS due_at, i.state, i.detail,"
                        " i.approved_seq, i.disposed_seq, a.filename"
                        " FROM disposal_batches b LEFT JOIN disposal_items i ON i.batch_id = b.id"
                        " AND i.artefact > $2 LEFT JOIN artefacts a ON a.id = i.artefact"
                        " WHERE b.id = $1::bigint ORDER BY i.artefact LIMIT $3::integer",
        3, params, on_items);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- approve, cancel ---- */

static bool read_reason(struct dems_req *req, char out[static 501])
{
    const char *reason;
    if (!api_get_str(req, "reason", 500, true, &reason))
        return false;
    if (!api_label_ok(reason)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"reason\" must be 1-500 printable characters");
        return false;
    }
    snprintf(out, 501, "%s", reason);
    return true;
}

/* The batch as the decision left it (u: the UPDATE's RETURNING *), or as it is. */
#define DECIDED_FROM                                                                               \
    "(SELECT * FROM u UNION ALL SELECT * FROM disposal_batches WHERE id = $1::bigint"              \
    " AND NOT EXISTS (SELECT 1 FROM u)) AS b"

static void on_decided(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "batch_not_found", "no such disposal batch"))
        return;
    if (!api_col_bool(res, 0, "changed")) {
        char msg[120];
        snprintf(msg, sizeof(msg), "the batch is %s: only a proposed batch can be decided",
                 api_col(res, 0, "state"));
        dems_resp_error(req, 409, "batch_not_proposed", msg);
        return;
    }
    on_batch(req, res, 0);
}

void api_disposal_batches_approve(struct dems_req *req)
{
    struct disp *d = disp_new(req, true);
    int64_t days;
    struct dems_runtime *rt = malloc(sizeof(*rt));
    if (rt != NULL)
        dems_runtime_get(rt);
    uint64_t def = rt != NULL ? rt->disposal_recover_days : 7;
    free(rt);
    if (d == NULL || !read_reason(req, d->reason) ||
        !api_get_int(req, "recover_days", 0, 3650, (int64_t)def, &days))
        return;
    char uid[24], ds[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    snprintf(ds, sizeof(ds), "%lld", (long long)days);
    const char *params[] = {d->id, uid, d->reason, ds};
    int r = dems_db_req(
        req,
        "WITH u AS (UPDATE disposal_batches SET state = 'approved', approved_by = $2::bigint,"
        " approved_at = now(), reason = $3, recover_days = $4::integer"
        " WHERE id = $1::bigint AND state = 'proposed' RETURNING *)"
        " SELECT " BATCH_COLS ", (SELECT count(*) FROM u) = 1 AS changed,"
        " (SELECT dems_enqueue_job('disposal', jsonb_build_object('batch', u.id),"
        " 'disposal-approve-' || u.id) FROM u) AS job"
        " FROM " DECIDED_FROM,
        4, params, on_decided);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_disposal_batches_cancel(struct dems_req *req)
{
    struct disp *d = disp_new(req, true);
    if (d == NULL || !read_reason(req, d->reason))
        return;
    const char *params[] = {d->id, d->reason};
    int r = dems_db_req(req,
                        "WITH u AS (UPDATE disposal_batches SET state = 'cancelled', reason = $2,"
                        " finished_at = now() WHERE id = $1::bigint AND state = 'proposed'"
                        " RETURNING *) SELECT " BATCH_COLS ", (SELECT count(*) FROM u) = 1"
                        " AS changed, NULL::bigint AS job FROM " DECIDED_FROM,
                        2, params, on_decided);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- recover ---- */

static void on_recovered(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct disp *d = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ENOTFOUND)
            dems_resp_error(req, 409, "not_recoverable",
                            "the evidence is no longer awaiting disposal (recovered or erased)");
        else if (item->err < 0)
            api_case_changed(req, item, "the evidence");
        else
            dems_resp_json(req, 200,
                           json_pack("{s:s,s:b,s:I}", "evidence", d->artefact, "recovered", 1,
                                     "seq", (json_int_t)item->seq));
    }
    dems_req_unref(req);
}

static void on_deleted(struct dems_req *req, const PGresult *res, int err)
{
    struct disp *d = dems_req_data(req);
    if (!api_found(req, res, err, "not_found", "no such evidence"))
        return;
    if (!api_col_null(res, 0, "disposed_at")) {
        dems_resp_problem(req, 410, "evidence_disposed",
                          "this evidence was crypto-erased: it cannot be recovered",
                          json_pack("{s:o}", "disposal_seq", int_or_null(res, 0, "disposed_seq")));
        return;
    }
    if (api_col_null(res, 0, "deleted_at") || !api_col_bool(res, 0, "in_window")) {
        dems_resp_error(req, 409, "not_recoverable",
                        api_col_null(res, 0, "deleted_at")
                            ? "the evidence is not awaiting disposal"
                            : "the recovery window has passed: the evidence is being erased");
        return;
    }
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    json_t *payload = json_pack("{s:o}", "batch", int_or_null(res, 0, "batch_id"));
    if (payload != NULL)
        dems_ledger_payload_set_text(payload, "reason", d->reason, strlen(d->reason), 500);
    const char *params[] = {d->artefact};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_DISPOSAL_RECOVERED, NULL, payload,
        "WITH a AS (UPDATE artefacts SET deleted_at = NULL, recover_until = NULL"
        " WHERE id = $1 AND deleted_at IS NOT NULL AND disposed_at IS NULL"
        " AND recover_until > now() RETURNING id)"
        " UPDATE disposal_items SET state = 'recovered', detail = 'recovered by an admin'"
        " WHERE artefact IN (SELECT id FROM a) AND state = 'soft_deleted'",
        1, params);
    if (it == NULL)
        return;
    it->has_artefact = true;
    dems_hex_decode(d->artefact, 64, it->artefact, 32);
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_recovered);
}

void api_disposal_recover(struct dems_req *req)
{
    struct disp *d = disp_new(req, false);
    if (d == NULL || !api_evidence_id(req, d->artefact) || !read_reason(req, d->reason))
        return;
    const char *params[] = {d->artefact};
    int r =
        dems_db_req(req,
                    "SELECT a.deleted_at, a.disposed_at, a.disposed_seq,"
                    " coalesce(a.recover_until > now(), false) AS in_window,"
                    " (SELECT max(i.batch_id) FROM disposal_items i WHERE i.artefact = a.id"
                    " AND i.state = 'soft_deleted') AS batch_id FROM artefacts a WHERE a.id = $1",
                    1, params, on_deleted);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- housekeeping ---- */

static void on_noop(void *arg, const PGresult *res, int err)
{
    (void)arg;
    (void)res;
    (void)err;
}

void api_disposals_run(struct dems_loop *loop)
{
    dems_db_query(loop->db,
                  "SELECT dems_enqueue_job('disposal', jsonb_build_object('batch', id),"
                  " 'disposal-erase-' || id) FROM disposal_batches"
                  " WHERE state = 'soft_deleted' AND recover_until <= now()",
                  0, NULL, on_noop, NULL);
}
