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
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/runtime.h"

#include "api_int.h"
#include "upload_meta.h"

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

/* ---- an expiry ---- */

bool api_expiry_field(struct dems_req *req, uint64_t default_days, uint64_t max_days,
                      const char *max_name, char out[static 24])
{
    const char *exp;
    int64_t t;
    int64_t now = (int64_t)time(NULL);
    if (!api_get_str(req, "expires_at", 64, default_days == 0, &exp))
        return false;
    if (exp == NULL) {
        snprintf(out, 24, "%lld", (long long)(now + (int64_t)default_days * 86400));
        return true;
    }
    if (!upload_parse_rfc3339(exp, strlen(exp), &t)) {
        dems_resp_error(req, 400, "invalid_field", "field \"expires_at\" must be an RFC 3339 time");
        return false;
    }
    if (t <= now) {
        dems_resp_error(req, 400, "expiry_in_past", "field \"expires_at\" is not in the future");
        return false;
    }
    if ((uint64_t)(t - now) > max_days * 86400) {
        char detail[120];
        snprintf(detail, sizeof(detail), "field \"expires_at\" is more than %llu days ahead (%s)",
                 (unsigned long long)max_days, max_name);
        dems_resp_error(req, 400, "expiry_too_far", detail);
        return false;
    }
    snprintf(out, 24, "%lld", (long long)t);
    return true;
}

bool api_case_expiry(struct dems_req *req, char out[static 24])
{
    struct dems_runtime *rt = malloc(sizeof(*rt)); /* share_max_days may change at run time */
    if (rt == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return false;
    }
    dems_runtime_get(rt);
    uint64_t max = rt->share_max_days;
    free(rt);
    return api_expiry_field(req, 0, max, "share_max_days", out);
}

/* ---- a choice of exhibits ---- */

#define MAX_REF 32

/* Appends s to a text[] literal, lower-cased, quoted and escaped. */
static bool append_ref(struct dems_buf *b, const char *s, size_t len)
{
    bool ok = dems_buf_append(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1) == 0;
    for (size_t i = 0; ok && i < len; i++) {
        char c = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
        if (c == '"' || c == '\\')
            ok = dems_buf_append(b, "\\", 1) == 0;
        ok = ok && dems_buf_append(b, &c, 1) == 0;
    }
    return ok && dems_buf_append(b, "\"", 1) == 0;
}

bool api_selection_read(struct dems_req *req, struct api_selection *sel)
{
    json_t *body = dems_req_json(req);
    const json_t *x = body != NULL ? json_object_get(body, "exhibits") : NULL;
    struct dems_buf ids, refs;
    size_t i;
    const json_t *v;

    if (x != NULL && !json_is_array(x)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"exhibits\" must be an array of exhibit references or ids");
        return false;
    }
    if (x != NULL && json_array_size(x) == 0) {
        dems_resp_error(req, 400, "empty_selection", "the selection names no exhibit");
        return false;
    }
    sel->all = x == NULL;
    dems_buf_init(&ids, 32 * API_SELECTION_MAX);
    dems_buf_init(&refs, (2 * MAX_REF + 4) * API_SELECTION_MAX);
    bool ok = json_array_size(x) <= API_SELECTION_MAX && dems_buf_append(&ids, "{", 1) == 0 &&
              dems_buf_append(&refs, "{", 1) == 0;
    json_array_foreach(x, i, v)
    {
        char num[32];
        if (!ok)
            break;
        if (json_is_integer(v) && json_integer_value(v) > 0) {
            int n = snprintf(num, sizeof num, "%s%lld", ids.len > 1 ? "," : "",
                             (long long)json_integer_value(v));
            ok = dems_buf_append(&ids, num, (size_t)n) == 0;
        } else if (json_is_string(v) && json_string_length(v) > 0 &&
                   json_string_length(v) <= MAX_REF) {
            ok = append_ref(&refs, json_string_value(v), json_string_length(v));
        } else {
            ok = false;
        }
    }
    ok = ok && dems_buf_append(&ids, "}", 2) == 0 && dems_buf_append(&refs, "}", 2) == 0;
    if (ok) {
        sel->ids = (char *)ids.data;
        sel->refs = (char *)refs.data;
        return true;
    }
    dems_buf_done(&ids);
    dems_buf_done(&refs);
    dems_resp_error(req, 400, "invalid_field",
                    "field \"exhibits\": each item is an exhibit reference (1 to 32 characters) or "
                    "a positive exhibit id, at most 10000");
    return false;
}

void api_selection_done(struct api_selection *sel)
{
    free(sel->ids);
    free(sel->refs);
    sel->ids = sel->refs = NULL;
}
