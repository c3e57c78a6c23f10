/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Settings that change at run time (docs/configuration.md, "Settings at run
 * time"; demsd/runtime.h):
 *   GET /v1/admin/settings                      each with its value in force, the
 *                                               configuration's, and who changed it
 *   PUT /v1/admin/settings/{key}                {"value": text | number | null}: null
 *                                               returns to the configuration's value;
 *                                               SETTING_CHANGED, history kept
 *   GET /v1/admin/settings/{key}/history        a page at a time
 * A change is in force at once in this process, and on other nodes within
 * housekeeping_interval (api_settings_refresh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/runtime.h"

#include "api_int.h"

struct setting {
    char key[65];
    char value[DEMS_RUNTIME_TEXT_MAX]; /* "" with is_null */
    bool is_null;
};

/* ---- list ---- */

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < dems_runtime_nkeys; i++) {
        const char *key = dems_runtime_keys[i];
        char now[DEMS_RUNTIME_TEXT_MAX], base[DEMS_RUNTIME_TEXT_MAX];
        dems_runtime_text(key, now, sizeof(now));
        dems_runtime_base_text(key, base, sizeof(base));
        int row = -1;
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(api_col(res, r, "key"), key) == 0)
                row = r;
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o}", "key", key, "value", now, "configured",
                           base, "source", row >= 0 ? "database" : "configuration", "stored",
                           row >= 0 ? json_string(api_col(res, row, "value")) : json_null(),
                           "updated_by",
                           row >= 0 ? json_string(api_col(res, row, "updated_by")) : json_null(),
                           "updated_at",
                           row >= 0 ? json_string(api_col(res, row, "updated_at")) : json_null()));
    }
    dems_resp_json(req, 200, json_pack("{s:o}", "settings", arr));
}

void api_settings_list(struct dems_req *req)
{
    int r = dems_db_req(
        req,
        "SELECT s.key, s.value, u.username AS updated_by,"
        " " API_TS(
            "s.updated_at") " AS updated_at"
                            " FROM settings s JOIN users u ON u.id = s.updated_by ORDER BY s.key",
        0, NULL, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- change ---- */

/* Puts the database's overrides in force in this process. */
static void apply_rows(const PGresult *res)
{
    int n = PQntuples(res);
    const char **keys = calloc((size_t)n + 1, sizeof(*keys));
    const char **values = calloc((size_t)n + 1, sizeof(*values));
    if (keys != NULL && values != NULL) {
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            if (api_col_null(res, i, "key"))
                continue; /* the row that only carries the entry's seq */
            keys[k] = api_col(res, i, "key");
            values[k++] = api_col(res, i, "value");
        }
        dems_runtime_apply(keys, values, k);
    }
    free(keys);
    free(values);
}

static void on_reloaded(struct dems_req *req, const PGresult *res, int err)
{
    struct setting *s = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    apply_rows(res);
    char now[DEMS_RUNTIME_TEXT_MAX];
    dems_runtime_text(s->key, now, sizeof(now));
    dems_resp_json(req, 200,
                   json_pack("{s:s,s:s,s:s,s:I}", "key", s->key, "value", now, "source",
                             s->is_null ? "configuration" : "database", "seq",
                             (json_int_t)api_col_int(res, 0, "seq")));
}

static void on_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ENOTFOUND) {
            dems_resp_json(req, 200, json_pack("{s:s,s:n}", "detail", "no change", "seq"));
        } else if (item->err < 0) {
            api_case_changed(req, item, "the setting");
        } else {
            char seq[24];
            snprintf(seq, sizeof(seq), "%llu", (unsigned long long)item->seq);
            const char *params[] = {seq};
            int r = dems_db_req(req,
                                "SELECT key, value, $1::bigint AS seq FROM settings"
                                " UNION ALL SELECT NULL, NULL, $1::bigint"
                                " WHERE NOT EXISTS (SELECT 1 FROM settings)",
                                1, params, on_reloaded);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

static void on_current(struct dems_req *req, const PGresult *res, int err)
{
    struct setting *s = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    bool had = PQntuples(res) == 1;
    const char *old = had ? api_col(res, 0, "value") : NULL;
    if ((s->is_null && !had) || (!s->is_null && had && strcmp(old, s->value) == 0)) {
        char now[DEMS_RUNTIME_TEXT_MAX];
        dems_runtime_text(s->key, now, sizeof(now));
        dems_resp_json(req, 200, json_pack("{s:s,s:s,s:n}", "key", s->key, "value", now, "seq"));
        return;
    }
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)dems_req_principal(req)->user_id);
    json_t *payload = json_pack("{s:s}", "key", s->key);
    if (payload != NULL) {
        if (old != NULL)
            dems_ledger_payload_set_text(payload, "from", old, strlen(old), 1000);
        else
            json_object_set_new(payload, "from", json_null());
        if (!s->is_null)
            dems_ledger_payload_set_text(payload, "to", s->value, strlen(s->value), 1000);
        else
            json_object_set_new(payload, "to", json_null());
    }
    const char *params[] = {s->key, s->is_null ? NULL : s->value, uid, old};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_SETTING_CHANGED, NULL, payload,
        "WITH h AS (INSERT INTO settings_history (key, old_value, new_value, changed_by, seq)"
        " VALUES ($1, $4, $2, $3::bigint, $5::bigint) RETURNING 1),"
        " d AS (DELETE FROM settings WHERE key = $1 AND $2::text IS NULL RETURNING 1)"
        " INSERT INTO settings (key, value, updated_by, updated_seq)"
        " SELECT $1, $2, $3::bigint, $5::bigint WHERE $2::text IS NOT NULL"
        " AND (SELECT count(*) FROM h) = 1 AND (SELECT count(*) FROM d) >= 0"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
        " updated_by = excluded.updated_by, updated_at = now(), updated_seq = excluded.updated_seq",
        4, params);
    if (it == NULL)
        return;
    it->pre_seq = true;
    api_ledger_submit(req, it, on_changed);
}

void api_settings_put(struct dems_req *req)
{
    struct setting *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, s, free);
    struct dems_str p = dems_req_param(req, 0);
    if (p.len == 0 || p.len >= sizeof(s->key)) {
        dems_resp_error(req, 404, "setting_not_found", "no such setting");
        return;
    }
    memcpy(s->key, p.ptr, p.len);
    if (!dems_runtime_key(s->key)) {
        dems_resp_error(req, 404, "setting_not_found",
                        "no such setting (GET /v1/admin/settings lists them)");
        return;
    }
    json_t *v = json_object_get(dems_req_json(req), "value");
    if (v == NULL) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"value\" is required (null returns to the configured value)");
        return;
    }
    if (json_is_null(v)) {
        s->is_null = true;
    } else if (json_is_string(v)) {
        snprintf(s->value, sizeof(s->value), "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(s->value, sizeof(s->value), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(s->value, sizeof(s->value), "%.15g", json_real_value(v));
    } else {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"value\" must be a string, a number or null");
        return;
    }
    char err[300];
    if (!s->is_null && dems_runtime_check(s->key, s->value, err, sizeof(err)) < 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "field \"value\": %s", err);
        dems_resp_error(req, 400, "invalid_field", msg);
        return;
    }
    const char *params[] = {s->key};
    int r = dems_db_req(req, "SELECT value FROM settings WHERE key = $1", 1, params, on_current);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- history ---- */

static json_t *history_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    return json_pack(
        "{s:I,s:s,s:o,s:o,s:s,s:s,s:o}", "id", (json_int_t)api_col_int(res, row, "id"), "key",
        api_col(res, row, "key"), "from", api_col_json_str(res, row, "old_value"), "to",
        api_col_json_str(res, row, "new_value"), "changed_by", api_col(res, row, "changed_by"),
        "changed_at", api_col(res, row, "changed_at"), "seq",
        api_col_null(res, row, "seq") ? json_null() : json_integer(api_col_int(res, row, "seq")));
}

static void on_history(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "history", "id", history_json);
}

void api_settings_history(struct dems_req *req)
{
    struct dems_str p = dems_req_param(req, 0);
    char key[65];
    if (p.len == 0 || p.len >= sizeof(key)) {
        dems_resp_error(req, 404, "setting_not_found", "no such setting");
        return;
    }
    memcpy(key, p.ptr, p.len);
    key[p.len] = '\0';
    if (!dems_runtime_key(key)) {
        dems_resp_error(req, 404, "setting_not_found", "no such setting");
        return;
    }
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    const char *params[] = {key, after, limit};
    int r = dems_db_req(
        req,
        "SELECT h.id, h.key, h.old_value, h.new_value, u.username AS changed_by,"
        " " API_TS("h.changed_at") " AS changed_at, h.seq"
                                   " FROM settings_history h JOIN users u ON u.id = h.changed_by"
                                   " WHERE h.key = $1 AND h.id > $2::bigint ORDER BY h.id LIMIT "
                                   "$3::integer",
        3, params, on_history);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- other nodes' changes ---- */

static void on_refresh(void *arg, const PGresult *res, int err)
{
    (void)arg;
    if (err == 0)
        apply_rows(res);
}

void api_settings_refresh(struct dems_loop *loop)
{
    dems_db_query(loop->db, "SELECT key, value FROM settings", 0, NULL, on_refresh, NULL);
}
