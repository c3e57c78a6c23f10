/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The prologue every /v1/cases/{id}/... route shares (api_int.h,
 * api_case_load): find the case, the caller's relation to it, and refuse
 * what that relation does not allow. A case the caller has no relation to
 * is answered exactly as a missing one (404), so case ids cannot be probed,
 * and the refusal is ledgered; a prosecutor whose share ended gets 403
 * share_ended; a relation whose role is not enough gets 403 forbidden.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

static const struct {
    const char *name;
    unsigned bit;
} roles[] = {
    {"admin", API_CASE_ADMIN},
    {"lead", API_CASE_LEAD},
    {"investigator", API_CASE_INVESTIGATOR},
    {"viewer", API_CASE_VIEWER},
    {"prosecutor", API_CASE_PROSECUTOR},
};

static unsigned role_bit(const char *name)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].bit;
    return 0;
}

/* $1 case id, $2 the caller's user id, $3 sees all. */
/* clang-format off */
#define CASE_ACCESS_SQL                                                                            \
    "SELECT c.reference, c.status, " API_CASE_ROLE_SQL("c.id", "$2", "$3") " AS role,"             \
    " " API_CASE_LAPSED_SQL("c.id", "$2") " AS lapsed,"                                            \
    " EXISTS (SELECT 1 FROM shares s WHERE s.case_id = c.id AND s.prosecutor = $2::bigint"         \
    " AND s.can_download AND s.revoked_at IS NULL AND s.expires_at > now()) AS can_download"       \
    " FROM cases c WHERE c.id = $1"
/* clang-format on */

static void on_case(struct dems_req *req, const PGresult *res, int err)
{
    struct api_case *c = dems_req_data(req);
    if (!api_found(req, res, err, "case_not_found", "no such case"))
        return;
    if (api_col_null(res, 0, "role")) {
        if (api_col_bool(res, 0, "lapsed")) {
            dems_auth_refuse(req, "share of this case ended", 403, "share_ended",
                             "your share of this case has ended (revoked or expired)");
            return;
        }
        dems_auth_denied(req, "no relation to this case", NULL);
        dems_resp_error(req, 404, "case_not_found", "no such case");
        return;
    }
    snprintf(c->role, sizeof(c->role), "%s", api_col(res, 0, "role"));
    snprintf(c->reference, sizeof(c->reference), "%s", api_col(res, 0, "reference"));
    c->closed = strcmp(api_col(res, 0, "status"), "closed") == 0;
    c->can_download = api_col_bool(res, 0, "can_download");
    if ((role_bit(c->role) & c->allowed) == 0) {
        char detail[120];
        snprintf(detail, sizeof(detail), "your role in this case (%s) does not allow this",
                 c->role);
        dems_auth_refuse(req, "case role does not allow this", 403, "forbidden", detail);
        return;
    }
    c->next(req, c);
}

void api_case_load(struct dems_req *req, unsigned allowed, api_case_cb next)
{
    struct api_case *c = dems_req_data(req);
    struct dems_str p = dems_req_param(req, 0);
    c->id = api_id(p.ptr, p.len);
    if (c->id <= 0) {
        dems_resp_error(req, 404, "case_not_found", "no such case");
        return;
    }
    snprintf(c->id_s, sizeof(c->id_s), "%lld", (long long)c->id);
    c->allowed = allowed;
    c->next = next;
    api_viewer(req, &c->who);
    const char *params[] = {c->id_s, c->who.user_id, c->who.sees_all};
    int r = dems_db_req(req, CASE_ACCESS_SQL, 3, params, on_case);
    if (r < 0)
        dems_resp_err(req, r);
}

bool api_case_open(struct dems_req *req, const struct api_case *c)
{
    if (c->closed) {
        dems_resp_error(req, 409, "case_closed",
                        "the case is closed: reopen it before changing it");
        return false;
    }
    return true;
}

struct dems_ledger_item *api_case_item(struct dems_req *req, const struct api_case *c,
                                       enum dems_ledger_type type)
{
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it = dems_ledger_item_new(type, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it != NULL)
        snprintf(it->case_id, sizeof(it->case_id), "%s", c->reference);
    return it;
}

void api_case_changed(struct dems_req *req, const struct dems_ledger_item *item, const char *what)
{
    if (item->err == DEMS_ECONFLICT)
        dems_resp_error(req, 409, "conflict", "that would duplicate what the case already holds");
    else if (item->err == DEMS_ENOTFOUND) {
        char detail[160];
        snprintf(detail, sizeof(detail), "%s changed meanwhile: nothing was changed; reload it",
                 what);
        dems_resp_error(req, 409, "changed_meanwhile", detail);
    } else
        dems_resp_error(req, 503, "ledger_unavailable",
                        "the change could not be recorded, so nothing was changed");
}
