/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Legal holds (docs/operations.md, "Retention, holds and disposal"): while a
 * hold is on an artefact, or on a case it is or was an exhibit of, it is
 * never disposed of (nor destroyed after an approved soft deletion: it is
 * recovered instead).
 *   GET  /v1/admin/holds[?active=true|false]     a page at a time
 *   POST /v1/admin/holds                        {"case": id | "evidence": sha256, "reason"}
 *                                               201; HOLD_PLACED
 *   POST /v1/admin/holds/{id}/release           {"reason"}; HOLD_RELEASED
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

struct hold {
    char id[24];
    char case_id[24];
    char artefact[65];
    char reason[501];
};

static struct hold *hold_new(struct dems_req *req)
{
    struct hold *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, h, free);
    return h;
}

#define HOLD_COLS                                                                                  \
    "h.id, h.case_id, (SELECT reference FROM cases WHERE id = h.case_id) AS case_reference,"       \
    " h.artefact, h.reason, (SELECT username FROM users WHERE id = h.placed_by) AS placed_by,"     \
    " " API_TS(                                                                                    \
        "h.placed_at") " AS placed_at,"                                                            \
                       " (SELECT username FROM users WHERE id = h.released_by) AS released_by,"    \
                       " " API_TS("h.released_at") " AS released_at, h.release_reason, "           \
                                                   "h.placed_seq, h.released_seq"

static json_t *int_or_null(const PGresult *res, int row, const char *name)
{
    return api_col_null(res, row, name) ? json_null() : json_integer(api_col_int(res, row, name));
}

static json_t *hold_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack(
        "{s:I,s:o,s:o,s:o,s:s,s:s,s:s,s:o,s:o,s:o,s:b,s:o,s:o}", "id",
        (json_int_t)api_col_int(res, row, "id"), "case", int_or_null(res, row, "case_id"),
        "case_reference", api_col_json_str(res, row, "case_reference"), "evidence",
        api_col_json_str(res, row, "artefact"), "reason", api_col(res, row, "reason"), "placed_by",
        api_col(res, row, "placed_by"), "placed_at", api_col(res, row, "placed_at"), "released_by",
        api_col_json_str(res, row, "released_by"), "released_at",
        api_col_json_str(res, row, "released_at"), "release_reason",
        api_col_json_str(res, row, "release_reason"), "active",
        api_col_null(res, row, "released_at"), "placed_seq", int_or_null(res, row, "placed_seq"),
        "released_seq", int_or_null(res, row, "released_seq"));
}

/* ---- list ---- */

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "holds", "id", hold_json);
}

void api_holds_list(struct dems_req *req)
{
    struct api_page page;
    char after[24], limit[24], active[8];
    const char *a = NULL;
    if (!api_page_by_id(req, &page, after, limit) || !api_text_param(req, "active", 5, active, &a))
        return;
    if (a != NULL && strcmp(a, "true") != 0 && strcmp(a, "false") != 0) {
        dems_resp_error(req, 400, "invalid_parameter",
                        "parameter \"active\" must be \"true\" or \"false\"");
        return;
    }
    const char *params[] = {after, limit, a};
    int r = dems_db_req(req,
                        "SELECT " HOLD_COLS " FROM legal_holds h WHERE h.id > $1::bigint"
                        " AND ($3::boolean IS NULL OR (h.released_at IS NULL) = $3::boolean)"
                        " ORDER BY h.id LIMIT $2::integer",
                        3, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- place ---- */

static void on_hold_row(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "hold_not_found", "no such hold"))
        return;
    /* 201 for a hold just placed, 200 for one just released. */
    dems_resp_json(req, api_col_null(res, 0, "released_at") ? 201 : 200, hold_json(req, res, 0));
}

static void on_placed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0) {
            api_case_changed(req, item, "the hold");
        } else {
            char seq[24];
            snprintf(seq, sizeof(seq), "%llu", (unsigned long long)item->seq);
            const char *params[] = {seq};
            int r = dems_db_req(
                req, "SELECT " HOLD_COLS " FROM legal_holds h WHERE h.placed_seq = $1::bigint", 1,
                params, on_hold_row);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

static void on_target(struct dems_req *req, const PGresult *res, int err)
{
    struct hold *h = dems_req_data(req);
    bool is_case = h->case_id[0] != '\0';
    if (!api_found(req, res, err, is_case ? "case_not_found" : "not_found",
                   is_case ? "no such case" : "no such evidence"))
        return;
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    json_t *payload = json_object();
    if (payload != NULL) {
        dems_ledger_payload_set_text(payload, "reason", h->reason, strlen(h->reason), 500);
        if (is_case)
            json_object_set_new(payload, "case_id",
                                json_integer(api_id(h->case_id, strlen(h->case_id))));
    }
    const char *params[] = {is_case ? h->case_id : NULL, is_case ? NULL : h->artefact, h->reason,
                            uid};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_HOLD_PLACED, is_case ? api_col(res, 0, "reference") : NULL, payload,
        "INSERT INTO legal_holds (case_id, artefact, reason, placed_by, placed_seq)"
        " VALUES ($1::bigint, $2, $3, $4::bigint, $5::bigint)",
        4, params);
    if (it == NULL)
        return;
    if (!is_case) {
        it->has_artefact = true;
        dems_hex_decode(h->artefact, 64, it->artefact, 32);
    }
    it->pre_seq = true;
    api_ledger_submit(req, it, on_placed);
}

/* The required "reason" (1-500 printable characters) into out. */
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

void api_holds_create(struct dems_req *req)
{
    struct hold *h = hold_new(req);
    if (h == NULL)
        return;
    json_t *body = dems_req_json(req);
    json_t *c = json_object_get(body, "case");
    const char *ev = json_string_value(json_object_get(body, "evidence"));
    if ((c != NULL) == (json_object_get(body, "evidence") != NULL)) {
        dems_resp_error(req, 400, "invalid_field",
                        "give one of field \"case\" (a case id) or field \"evidence\" (an id)");
        return;
    }
    if (c != NULL) {
        if (!json_is_integer(c) || json_integer_value(c) <= 0) {
            dems_resp_error(req, 400, "invalid_field", "field \"case\" must be a case id");
            return;
        }
        snprintf(h->case_id, sizeof(h->case_id), "%lld", (long long)json_integer_value(c));
    } else {
        uint8_t raw[32];
        if (ev == NULL || strlen(ev) != 64 || dems_hex_decode(ev, 64, raw, 32) < 0) {
            dems_resp_error(req, 400, "invalid_field",
                            "field \"evidence\" must be an evidence id (64 hex digits)");
            return;
        }
        dems_hex_encode(raw, 32, h->artefact);
    }
    if (!read_reason(req, h->reason))
        return;
    int r;
    if (h->case_id[0] != '\0') {
        const char *params[] = {h->case_id};
        r = dems_db_req(req, "SELECT reference FROM cases WHERE id = $1::bigint", 1, params,
                        on_target);
    } else {
        const char *params[] = {h->artefact};
        r = dems_db_req(req,
                        "SELECT id AS reference FROM artefacts WHERE id = $1"
                        " AND disposed_at IS NULL",
                        1, params, on_target);
    }
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- release ---- */

static void on_released(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct hold *h = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ENOTFOUND) {
            dems_resp_error(req, 409, "hold_released", "the hold was released already");
        } else if (item->err < 0) {
            api_case_changed(req, item, "the hold");
        } else {
            const char *params[] = {h->id};
            int r =
                dems_db_req(req, "SELECT " HOLD_COLS " FROM legal_holds h WHERE h.id = $1::bigint",
                            1, params, on_hold_row);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

static void on_hold(struct dems_req *req, const PGresult *res, int err)
{
    struct hold *h = dems_req_data(req);
    if (!api_found(req, res, err, "hold_not_found", "no such hold"))
        return;
    if (!api_col_null(res, 0, "released_at")) {
        dems_resp_error(req, 409, "hold_released", "the hold was released already");
        return;
    }
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    json_t *payload = json_pack("{s:I}", "hold_id", (json_int_t)api_id(h->id, strlen(h->id)));
    if (payload != NULL) {
        dems_ledger_payload_set_text(payload, "reason", h->reason, strlen(h->reason), 500);
        if (!api_col_null(res, 0, "case_id"))
            json_object_set_new(payload, "case_id", json_integer(api_col_int(res, 0, "case_id")));
    }
    const char *params[] = {h->id, uid, h->reason};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_HOLD_RELEASED,
        api_col_null(res, 0, "case_reference") ? NULL : api_col(res, 0, "case_reference"), payload,
        "UPDATE legal_holds SET released_at = now(), released_by = $2::bigint,"
        " release_reason = $3, released_seq = $4::bigint"
        " WHERE id = $1::bigint AND released_at IS NULL",
        3, params);
    if (it == NULL)
        return;
    if (!api_col_null(res, 0, "artefact")) {
        it->has_artefact = true;
        dems_hex_decode(api_col(res, 0, "artefact"), 64, it->artefact, 32);
    }
    it->pre_seq = true;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_released);
}

void api_holds_release(struct dems_req *req)
{
    struct hold *h = hold_new(req);
    if (h == NULL)
        return;
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "hold_not_found", "no such hold");
        return;
    }
    snprintf(h->id, sizeof(h->id), "%lld", (long long)id);
    if (!read_reason(req, h->reason))
        return;
    const char *params[] = {h->id};
    int r = dems_db_req(req, "SELECT " HOLD_COLS " FROM legal_holds h WHERE h.id = $1::bigint", 1,
                        params, on_hold);
    if (r < 0)
        dems_resp_err(req, r);
}
