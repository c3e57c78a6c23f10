/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retention policies (docs/operations.md, "Retention, holds and disposal"):
 *   GET  /v1/admin/retention/policies             a page at a time
 *   POST /v1/admin/retention/policies             {"name", "description"?, "period_days",
 *                                                  "counted_from": "ingestion"|"case_closure"}
 *                                                 201; RETENTION_POLICY_CREATED
 *   PUT  /v1/admin/cases/{id}/retention           {"policy": id | null}; RETENTION_SET
 *   PUT  /v1/admin/evidence/{id}/retention        {"policy": id | null}; RETENTION_SET
 * Each change is a ledger entry in the transaction of the change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

struct ret {
    char target[65]; /* a case id or an artefact id */
    char policy[24]; /* "" for none */
    char name[101];
    bool is_case;
};

static struct ret *ret_new(struct dems_req *req)
{
    struct ret *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, r, free);
    return r;
}

/* ---- policies ---- */

static json_t *policy_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack(
        "{s:I,s:s,s:o,s:I,s:s,s:s,s:s}", "id", (json_int_t)api_col_int(res, row, "id"), "name",
        api_col(res, row, "name"), "description", api_col_json_str(res, row, "description"),
        "period_days", (json_int_t)api_col_int(res, row, "period_days"), "counted_from",
        api_col(res, row, "counted_from"), "created_by", api_col(res, row, "created_by"),
        "created_at", api_col(res, row, "created_at"));
}

#define POLICY_COLS                                                                                \
    "p.id, p.name, p.description, p.period_days, p.counted_from,"                                  \
    " (SELECT username FROM users WHERE id = p.created_by) AS created_by,"                         \
    " " API_TS("p.created_at") " AS created_at"

static void on_policies(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "policies", "id", policy_json);
}

void api_retention_policies_list(struct dems_req *req)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {after, limit};
    int r = dems_db_req(req,
                        "SELECT " POLICY_COLS " FROM retention_policies p WHERE p.id > $1::bigint"
                        " ORDER BY p.id LIMIT $2::integer",
                        2, params, on_policies);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_policy_made(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "policy_not_found", "no such policy"))
        return;
    dems_resp_json(req, 201, policy_json(req, res, 0));
}

static void on_policy_created(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ECONFLICT) {
            dems_resp_error(req, 409, "policy_exists", "a policy with that name already exists");
        } else if (item->err < 0) {
            api_case_changed(req, item, "the policy");
        } else {
            char seq[24];
            snprintf(seq, sizeof(seq), "%llu", (unsigned long long)item->seq);
            const char *params[] = {seq};
            int r = dems_db_req(req,
                                "SELECT " POLICY_COLS
                                " FROM retention_policies p WHERE p.created_seq = $1::bigint",
                                1, params, on_policy_made);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

void api_retention_policies_create(struct dems_req *req)
{
    const char *name, *desc, *from;
    int64_t days;
    if (!api_get_str(req, "name", 100, true, &name) ||
        !api_get_str(req, "description", 500, false, &desc) ||
        !api_get_str(req, "counted_from", 20, true, &from) ||
        !api_get_int(req, "period_days", 1, 36600, 0, &days))
        return;
    if (days == 0) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"period_days\" is required: a whole number of days, 1 to 36600");
        return;
    }
    if (strcmp(from, "ingestion") != 0 && strcmp(from, "case_closure") != 0) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"counted_from\" must be \"ingestion\" or \"case_closure\"");
        return;
    }
    if (!api_label_ok(name)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"name\" must be 1-100 printable characters");
        return;
    }
    char uid[24], d[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    snprintf(d, sizeof(d), "%lld", (long long)days);
    const char *params[] = {name, desc, d, from, uid};
    json_t *payload = json_pack("{s:I,s:s}", "period_days", (json_int_t)days, "counted_from", from);
    if (payload != NULL) {
        dems_ledger_payload_set_text(payload, "name", name, strlen(name), 100);
        if (desc != NULL)
            dems_ledger_payload_set_text(payload, "description", desc, strlen(desc), 500);
    }
    struct dems_ledger_item *it =
        api_change_new(req, DEMS_LEDGER_RETENTION_POLICY_CREATED, NULL, payload,
                       "INSERT INTO retention_policies (name, description, period_days,"
                       " counted_from, created_by, created_seq)"
                       " VALUES ($1, $2, $3::integer, $4, $5::bigint, $6::bigint)",
                       5, params);
    if (it == NULL)
        return;
    it->pre_seq = true;
    api_ledger_submit(req, it, on_policy_created);
}

/* ---- setting a policy on a case or an artefact ---- */

static void on_set(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct ret *r = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            api_case_changed(req, item, r->is_case ? "the case" : "the evidence");
        else
            dems_resp_json(
                req, 200,
                json_pack("{s:o,s:o,s:o,s:I}", r->is_case ? "case" : "evidence",
                          r->is_case ? json_integer(api_id(r->target, strlen(r->target)))
                                     : json_string(r->target),
                          "policy",
                          r->policy[0] != '\0' ? json_integer(api_id(r->policy, strlen(r->policy)))
                                               : json_null(),
                          "policy_name", r->policy[0] != '\0' ? json_string(r->name) : json_null(),
                          "seq", (json_int_t)item->seq));
    }
    dems_req_unref(req);
}

static void on_target(struct dems_req *req, const PGresult *res, int err)
{
    struct ret *r = dems_req_data(req);
    if (!api_found(req, res, err, r->is_case ? "case_not_found" : "not_found",
                   r->is_case ? "no such case" : "no such evidence"))
        return;
    if (r->policy[0] != '\0' && api_col_null(res, 0, "policy_name")) {
        dems_resp_error(req, 400, "invalid_field", "field \"policy\" names no retention policy");
        return;
    }
    snprintf(r->name, sizeof(r->name), "%s", api_col(res, 0, "policy_name"));
    json_t *payload = json_pack(
        "{s:o}", "policy_id",
        r->policy[0] != '\0' ? json_integer(api_id(r->policy, strlen(r->policy))) : json_null());
    if (payload != NULL && r->policy[0] != '\0')
        dems_ledger_payload_set_text(payload, "policy", r->name, strlen(r->name), 100);
    if (payload != NULL && r->is_case)
        json_object_set_new(payload, "case_id", json_integer(api_id(r->target, strlen(r->target))));
    const char *params[] = {r->target, r->policy[0] != '\0' ? r->policy : NULL};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_RETENTION_SET, r->is_case ? api_col(res, 0, "reference") : NULL, payload,
        r->is_case ? "UPDATE cases SET retention_policy_id = $2::bigint WHERE id = $1::bigint"
                   : "UPDATE artefacts SET retention_policy_id = $2::bigint WHERE id = $1"
                     " AND disposed_at IS NULL",
        2, params);
    if (it == NULL)
        return;
    if (!r->is_case) {
        it->has_artefact = true;
        dems_hex_decode(r->target, 64, it->artefact, 32);
    }
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_set);
}

/* Reads {"policy": id | null} into r->policy. */
static bool read_policy(struct dems_req *req, struct ret *r)
{
    json_t *body = dems_req_json(req);
    json_t *v = body != NULL ? json_object_get(body, "policy") : NULL;
    if (v == NULL || (!json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) <= 0))) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"policy\" is required: a policy id, or null for none");
        return false;
    }
    if (json_is_integer(v))
        snprintf(r->policy, sizeof(r->policy), "%lld", (long long)json_integer_value(v));
    return true;
}

void api_retention_case_set(struct dems_req *req)
{
    struct ret *r = ret_new(req);
    if (r == NULL)
        return;
    r->is_case = true;
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "case_not_found", "no such case");
        return;
    }
    snprintf(r->target, sizeof(r->target), "%lld", (long long)id);
    if (!read_policy(req, r))
        return;
    const char *params[] = {r->target, r->policy[0] != '\0' ? r->policy : NULL};
    int rc = dems_db_req(req,
                         "SELECT c.reference, (SELECT name FROM retention_policies"
                         " WHERE id = $2::bigint) AS policy_name FROM cases c"
                         " WHERE c.id = $1::bigint",
                         2, params, on_target);
    if (rc < 0)
        dems_resp_err(req, rc);
}

void api_retention_evidence_set(struct dems_req *req)
{
    struct ret *r = ret_new(req);
    if (r == NULL || !api_evidence_id(req, r->target) || !read_policy(req, r))
        return;
    const char *params[] = {r->target, r->policy[0] != '\0' ? r->policy : NULL};
    int rc = dems_db_req(req,
                         "SELECT a.id AS reference, (SELECT name FROM retention_policies"
                         " WHERE id = $2::bigint) AS policy_name FROM artefacts a"
                         " WHERE a.id = $1 AND a.disposed_at IS NULL",
                         2, params, on_target);
    if (rc < 0)
        dems_resp_err(req, rc);
}
