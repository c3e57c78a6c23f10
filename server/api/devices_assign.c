/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/admin/devices/{id}/assign {"username": "officer" | null}: gives a
 * dock to an officer, or takes it back. The officer then sees what the dock
 * uploads (API_VISIBLE_SQL), including what it uploaded before, so the
 * change is a DEVICE_ASSIGNED ledger entry written in the same transaction
 * as the assignment (serial, the new and the previous assignee). Only an
 * enabled officer can hold a dock: administrators see everything anyway,
 * and prosecutors see no uploads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/limits.h"
#include "demsd/auth.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

struct assign {
    char device[24];
    char username[DEMS_MAX_USERNAME + 1]; /* "" to unassign */
};

static void on_assigned(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct assign *a = dems_req_data(req);
    if (item->err < 0)
        dems_resp_error(req, 503, "ledger_unavailable",
                        "the assignment could not be recorded, so nothing was changed");
    else
        dems_resp_json(req, 200,
                       json_pack("{s:I,s:o,s:I}", "id",
                                 (json_int_t)api_id(a->device, strlen(a->device)), "assigned_to",
                                 a->username[0] != '\0' ? json_string(a->username) : json_null(),
                                 "seq", (json_int_t)item->seq));
    dems_req_unref(req);
}

static void on_rows(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such device"))
        return;
    struct assign *a = dems_req_data(req);
    if (!api_col_null(res, 0, "revoked_at")) {
        dems_resp_error(req, 409, "device_revoked", "a revoked device cannot be assigned");
        return;
    }
    if (a->username[0] != '\0' && api_col_null(res, 0, "user_id")) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"username\" must name an enabled officer");
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_DEVICE_ASSIGNED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it != NULL) {
        it->payload = json_pack("{s:s,s:o,s:o}", "serial", api_col(res, 0, "serial"), "assigned_to",
                                a->username[0] != '\0' ? json_string(a->username) : json_null(),
                                "previous", api_col_json_str(res, 0, "previous"));
        it->pre_sql = strdup("UPDATE devices SET assigned_user = $2::bigint WHERE id = $1");
        it->pre_nparams = 2;
        it->pre_params[0] = strdup(a->device);
        it->pre_params[1] = a->username[0] != '\0' ? strdup(api_col(res, 0, "user_id")) : NULL;
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        (a->username[0] != '\0' && it->pre_params[1] == NULL)) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_assigned);
}

/* Reads {"username": "name" | null} into a->username ("" for null). */
static bool read_assignee(struct dems_req *req, struct assign *a)
{
    json_t *v = json_object_get(dems_req_json(req), "username");
    if (json_is_null(v))
        return true;
    const char *name;
    if (!api_get_str(req, "username", DEMS_MAX_USERNAME, true, &name))
        return false;
    if (!dems_auth_username_ok(name)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"username\" must name an enabled officer");
        return false;
    }
    snprintf(a->username, sizeof(a->username), "%s", name);
    dems_auth_username_fold(a->username);
    return true;
}

void api_devices_assign(struct dems_req *req)
{
    struct assign *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, a, free);
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "not_found", "no such device");
        return;
    }
    snprintf(a->device, sizeof(a->device), "%lld", (long long)id);
    if (dems_req_json(req) == NULL || !json_object_get(dems_req_json(req), "username")) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"username\" is required (an officer, or null to unassign)");
        return;
    }
    if (!read_assignee(req, a))
        return;
    const char *params[] = {a->device, a->username};
    int r = dems_db_req(req,
                        "SELECT d.serial, d.revoked_at, p.username AS previous,"
                        " (SELECT u.id FROM users u WHERE u.username = $2 AND u.role = 'officer'"
                        "  AND NOT u.disabled) AS user_id"
                        " FROM devices d LEFT JOIN users p ON p.id = d.assigned_user"
                        " WHERE d.id = $1",
                        2, params, on_rows);
    if (r < 0)
        dems_resp_err(req, r);
}
