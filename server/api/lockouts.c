/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Login lockouts (administrators): GET /v1/admin/lockouts lists the accounts
 * and client addresses whose failed logins are being counted, with when each
 * lockout ends; POST /v1/admin/lockouts/lift {"username"} or {"address"}
 * clears one. Throttling (server/api/login.c) locks an account or an
 * address for the rest of its counting window once it reaches its limit;
 * without this an officer locked out by someone guessing at their name
 * could only wait. Lifting is a LOCKOUT_LIFTED ledger entry, written in the
 * same transaction that deletes the counter, so the two cannot disagree.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/limits.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define KEY_MAX 80 /* "u:" + username, "a:" + address */

/*
 * Counters still inside their window, in key order after the cursor. A
 * lockout is a counter at or over its limit ($2 accounts, $3 addresses);
 * "until" is when its window, and so the lockout, ends.
 */
#define LIST_SQL                                                                                   \
    "SELECT key, failures, " API_TS("window_start") " AS since,"                                   \
                                                    " " API_TS(                                    \
                                                        "(window_start + make_interval(secs => "   \
                                                        "$1::int))") " AS until,"                  \
                                                                     " failures >= CASE WHEN key " \
                                                                     "LIKE 'u:%' THEN $2::int "    \
                                                                     "ELSE $3::int END AS locked"  \
                                                                     " FROM login_throttle WHERE " \
                                                                     "window_start > now() - "     \
                                                                     "make_interval(secs => "      \
                                                                     "$1::int)"                    \
                                                                     " AND ($4::text IS NULL OR "  \
                                                                     "key > $4) ORDER BY key "     \
                                                                     "LIMIT $5::int"

static json_t *lockout_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    const char *key = api_col(res, row, "key");
    bool user = strncmp(key, "u:", 2) == 0;
    return json_pack("{s:s,s:s,s:I,s:b,s:s,s:s}", "kind", user ? "user" : "address",
                     user ? "username" : "address", key + 2, "failures",
                     (json_int_t)api_col_int(res, row, "failures"), "locked",
                     api_col_bool(res, row, "locked"), "since", api_col(res, row, "since"), "until",
                     api_col(res, row, "until"));
}

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "lockouts", "key", lockout_json);
}

void api_lockouts_list(struct dems_req *req)
{
    struct api_page page;
    if (!api_page_parse(req, &page))
        return;
    if (page.has_cursor && (page.cursor[0] != 'u' && page.cursor[0] != 'a')) {
        api_bad_param(req, "cursor", "is not a cursor this list gave");
        return;
    }
    const struct dems_config *cfg = dems_req_loop(req)->srv->cfg;
    char window[24], umax[24], amax[24], limit[24];
    snprintf(window, sizeof(window), "%llu", (unsigned long long)cfg->login_window);
    snprintf(umax, sizeof(umax), "%llu", (unsigned long long)cfg->login_max_failures);
    snprintf(amax, sizeof(amax), "%llu", (unsigned long long)cfg->login_max_failures_per_address);
    api_page_sql_limit(&page, limit);
    const char *params[] = {window, umax, amax, page.has_cursor ? page.cursor : NULL, limit};
    int r = dems_db_req(req, LIST_SQL, 5, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- lifting one ---- */

struct lift {
    char key[KEY_MAX + 1];
    int64_t failures;
};

static void on_lifted(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct lift *l = dems_req_data(req);
    if (item->err < 0)
        dems_resp_error(req, 503, "ledger_unavailable",
                        "the lift could not be recorded, so nothing was changed");
    else
        dems_resp_json(req, 200,
                       json_pack("{s:b,s:I,s:I}", "lifted", true, "failures_cleared",
                                 (json_int_t)l->failures, "seq", (json_int_t)item->seq));
    dems_req_unref(req);
}

static void on_counter(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    struct lift *l = dems_req_data(req);
    if (PQntuples(res) == 0) {
        dems_resp_json(req, 200, json_pack("{s:b,s:i}", "lifted", false, "failures_cleared", 0));
        return;
    }
    l->failures = api_col_int(res, 0, "failures");
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_LOCKOUT_LIFTED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it != NULL) {
        it->payload = json_pack("{s:s,s:I}", l->key[0] == 'u' ? "username" : "address", l->key + 2,
                                "failures", (json_int_t)l->failures);
        it->pre_sql = strdup("DELETE FROM login_throttle WHERE key = $1");
        it->pre_nparams = 1;
        it->pre_params[0] = strdup(l->key);
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_lifted);
}

/* The counter's key from {"username"} or {"address"} (exactly one). */
static bool lift_key(struct dems_req *req, char out[static KEY_MAX + 1])
{
    const char *user, *addr;
    if (!api_get_str(req, "username", DEMS_MAX_USERNAME, false, &user) ||
        !api_get_str(req, "address", 64, false, &addr))
        return false;
    if ((user == NULL) == (addr == NULL)) {
        dems_resp_error(req, 400, "invalid_field",
                        "give exactly one of \"username\" and \"address\"");
        return false;
    }
    if (user != NULL) {
        if (!dems_auth_username_ok(user)) {
            dems_resp_error(req, 400, "invalid_field",
                            "field \"username\" must be 1-64 characters of A-Z a-z 0-9 . _ @ -");
            return false;
        }
        snprintf(out, KEY_MAX + 1, "u:%s", user);
        dems_auth_username_fold(out + 2);
    } else {
        snprintf(out, KEY_MAX + 1, "a:%s", addr);
    }
    return true;
}

void api_lockouts_lift(struct dems_req *req)
{
    struct lift *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, l, free);
    if (!lift_key(req, l->key))
        return;
    char window[24];
    snprintf(window, sizeof(window), "%llu",
             (unsigned long long)dems_req_loop(req)->srv->cfg->login_window);
    const char *params[] = {l->key, window};
    int r = dems_db_req(req,
                        "SELECT failures FROM login_throttle WHERE key = $1"
                        " AND window_start > now() - make_interval(secs => $2::int)",
                        2, params, on_counter);
    if (r < 0)
        dems_resp_err(req, r);
}
