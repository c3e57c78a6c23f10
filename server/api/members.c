/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Case members (docs/api.md, "Cases"):
 *   GET    /v1/cases/{id}/members             current members (members, admins)
 *   PUT    /v1/cases/{id}/members/{username}  {"role": "lead" | "investigator" | "viewer"}
 *   DELETE /v1/cases/{id}/members/{username}
 * Changes are made by the case's leads and administrators, only for enabled
 * officers (prosecutors get shares, not membership), and a case never loses
 * its last lead. Each is a ledger entry (MEMBER_ADDED with the new and any
 * previous role, MEMBER_REMOVED) in the same transaction.
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

struct member_req {
    struct api_case c; /* first: api_case_load fills it */
    char username[DEMS_MAX_USERNAME + 1];
    char role[16];
};

static struct member_req *member_req_new(struct dems_req *req)
{
    struct member_req *m = calloc(1, sizeof(*m));
    if (m == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_req_set_data(req, m, free);
    return m;
}

/* ---- list ---- */

static json_t *member_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack("{s:I,s:s,s:s,s:s,s:s}", "id", (json_int_t)api_col_int(res, row, "id"),
                     "username", api_col(res, row, "username"), "role", api_col(res, row, "role"),
                     "added_by", api_col(res, row, "added_by"), "added_at",
                     api_col(res, row, "added_at"));
}

static void on_members(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "members", "id", member_json);
}

static void list_loaded(struct dems_req *req, struct api_case *c)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {c->id_s, after, limit};
    int r = dems_db_req(req,
                        "SELECT m.id, u.username, m.role, a.username AS added_by,"
                        " " API_TS("m.added_at") " AS added_at"
                                                 " FROM case_members m JOIN users u ON u.id = "
                                                 "m.user_id JOIN users a ON a.id = m.added_by"
                                                 " WHERE m.case_id = $1::bigint AND m.removed_at "
                                                 "IS NULL AND m.id > $2::bigint"
                                                 " ORDER BY m.id LIMIT $3::integer",
                        3, params, on_members);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_members_list(struct dems_req *req)
{
    if (member_req_new(req) != NULL)
        api_case_load(req, API_CASE_ADMIN | API_CASE_MEMBERS, list_loaded);
}

/* ---- set and remove ---- */

static void on_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct member_req *m = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            api_case_changed(req, item, "the membership");
        else if (item->type == DEMS_LEDGER_MEMBER_REMOVED)
            dems_resp_json(req, 200,
                           json_pack("{s:s,s:b,s:I}", "username", m->username, "removed", 1, "seq",
                                     (json_int_t)item->seq));
        else
            dems_resp_json(req, 200,
                           json_pack("{s:s,s:s,s:I}", "username", m->username, "role", m->role,
                                     "seq", (json_int_t)item->seq));
    }
    dems_req_unref(req);
}

static void on_user(struct dems_req *req, const PGresult *res, int err)
{
    struct member_req *m = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    bool remove = dems_req_head(req)->method == DEMS_HTTP_DELETE;
    if (api_col_null(res, 0, "user_id")) {
        dems_resp_error(req, remove ? 404 : 400, remove ? "member_not_found" : "not_an_officer",
                        remove ? "no such member of this case"
                               : "only an enabled officer can be a member of a case");
        return;
    }
    const char *current = api_col_null(res, 0, "current") ? NULL : api_col(res, 0, "current");
    if (remove && current == NULL) {
        dems_resp_error(req, 404, "member_not_found", "no such member of this case");
        return;
    }
    if (!remove && current != NULL && strcmp(current, m->role) == 0) {
        dems_resp_json(req, 200,
                       json_pack("{s:s,s:s,s:n}", "username", m->username, "role", m->role, "seq"));
        return;
    }
    bool demotes_lead =
        current != NULL && strcmp(current, "lead") == 0 && (remove || strcmp(m->role, "lead") != 0);
    if (demotes_lead && api_col_int(res, 0, "leads") <= 1) {
        dems_resp_error(req, 409, "last_lead",
                        "a case keeps at least one lead: make another member lead first");
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    struct dems_ledger_item *it =
        api_case_item(req, &m->c, remove ? DEMS_LEDGER_MEMBER_REMOVED : DEMS_LEDGER_MEMBER_ADDED);
    if (it != NULL) {
        it->payload =
            json_pack("{s:I,s:s,s:o,s:o}", "case_id", (json_int_t)m->c.id, "member", m->username,
                      "role", remove ? json_null() : json_string(m->role), "previous_role",
                      current != NULL ? json_string(current) : json_null());
        /* Guarded by the state read above: a concurrent change fails the
         * item (pre_must_change) rather than being overwritten; the lead
         * count is checked again in the statement. */
        it->pre_must_change = true;
        if (remove)
            it->pre_sql =
                strdup("UPDATE case_members SET removed_at = now(), removed_by = $4::bigint"
                       " WHERE case_id = $1::bigint AND user_id = $2::bigint"
                       " AND removed_at IS NULL AND role = $3 AND ($3 <> 'lead' OR"
                       " (SELECT count(*) FROM case_members l WHERE l.case_id = $1::bigint"
                       "  AND l.role = 'lead' AND l.removed_at IS NULL) > 1)");
        else if (current != NULL)
            it->pre_sql = strdup("UPDATE case_members SET role = $5 WHERE case_id = $1::bigint"
                                 " AND user_id = $2::bigint AND removed_at IS NULL AND role = $3"
                                 " AND ($3 <> 'lead' OR (SELECT count(*) FROM case_members l"
                                 "  WHERE l.case_id = $1::bigint AND l.role = 'lead'"
                                 "  AND l.removed_at IS NULL) > 1) AND $4::bigint IS NOT NULL");
        else
            it->pre_sql = strdup("INSERT INTO case_members (case_id, user_id, role, added_by)"
                                 " VALUES ($1::bigint, $2::bigint, $5, $4::bigint)"
                                 " ON CONFLICT DO NOTHING RETURNING $3::text");
        it->pre_nparams = remove ? 4 : 5; /* the removal names no new role */
        it->pre_params[0] = strdup(m->c.id_s);
        it->pre_params[1] = strdup(api_col(res, 0, "user_id"));
        it->pre_params[2] = strdup(current != NULL ? current : "");
        it->pre_params[3] = strdup(uid);
        if (!remove)
            it->pre_params[4] = strdup(m->role);
    }
    bool ok = it != NULL && it->payload != NULL && it->pre_sql != NULL;
    for (int i = 0; ok && i < it->pre_nparams; i++)
        ok = it->pre_params[i] != NULL;
    if (!ok) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_changed);
}

static void change_loaded(struct dems_req *req, struct api_case *c)
{
    struct member_req *m = (struct member_req *)c;
    if (!api_case_open(req, c))
        return;
    const char *params[] = {m->username, c->id_s};
    int r = dems_db_req(
        req,
        "SELECT u.id AS user_id,"
        " (SELECT role FROM case_members cm WHERE cm.case_id = $2::bigint AND cm.user_id = u.id"
        "  AND cm.removed_at IS NULL) AS current,"
        " (SELECT count(*) FROM case_members l WHERE l.case_id = $2::bigint AND l.role = 'lead'"
        "  AND l.removed_at IS NULL) AS leads"
        " FROM (SELECT 1) one LEFT JOIN users u ON u.username = $1 AND u.role = 'officer'"
        " AND NOT u.disabled",
        2, params, on_user);
    if (r < 0)
        dems_resp_err(req, r);
}

static bool read_username(struct dems_req *req, struct member_req *m)
{
    struct dems_str p = dems_req_param(req, 1);
    if (p.len == 0 || p.len > DEMS_MAX_USERNAME) {
        dems_resp_error(req, 404, "member_not_found", "no such user");
        return false;
    }
    memcpy(m->username, p.ptr, p.len);
    m->username[p.len] = '\0';
    if (!dems_auth_username_ok(m->username)) {
        dems_resp_error(req, 404, "member_not_found", "no such user");
        return false;
    }
    dems_auth_username_fold(m->username);
    return true;
}

void api_members_set(struct dems_req *req)
{
    struct member_req *m = member_req_new(req);
    if (m == NULL || !read_username(req, m))
        return;
    const char *role;
    if (!api_get_str(req, "role", 15, true, &role))
        return;
    if (strcmp(role, "lead") != 0 && strcmp(role, "investigator") != 0 &&
        strcmp(role, "viewer") != 0) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"role\" must be lead, investigator or viewer");
        return;
    }
    snprintf(m->role, sizeof(m->role), "%s", role);
    api_case_load(req, API_CASE_MANAGERS, change_loaded);
}

void api_members_remove(struct dems_req *req)
{
    struct member_req *m = member_req_new(req);
    if (m != NULL && read_username(req, m))
        api_case_load(req, API_CASE_MANAGERS, change_loaded);
}
