/* SPDX-License-Identifier: Apache-2.0 */
/* Field readers and error answers shared by the handlers (see api_int.h). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/ledger.h"

#include "api_int.h"
#include "upload_meta.h"

static void bad_field(struct dems_req *req, const char *key, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "field \"%s\" %s", key, why);
    dems_resp_error(req, 400, "invalid_field", msg);
}

bool api_get_str(struct dems_req *req, const char *key, size_t max, bool required, const char **ret)
{
    json_t *body = dems_req_json(req);
    json_t *v = body != NULL ? json_object_get(body, key) : NULL;
    if (v == NULL) {
        if (required) {
            bad_field(req, key, "is required");
            return false;
        }
        *ret = NULL;
        return true;
    }
    if (!json_is_string(v)) {
        bad_field(req, key, "must be a string");
        return false;
    }
    size_t len = json_string_length(v);
    if (len == 0 || len > max || strlen(json_string_value(v)) != len) {
        char why[64];
        snprintf(why, sizeof(why), "must be 1 to %zu characters", max);
        bad_field(req, key, why);
        return false;
    }
    *ret = json_string_value(v);
    return true;
}

bool api_get_int(struct dems_req *req, const char *key, int64_t min, int64_t max, int64_t def,
                 int64_t *ret)
{
    json_t *body = dems_req_json(req);
    json_t *v = body != NULL ? json_object_get(body, key) : NULL;
    if (v == NULL) {
        *ret = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char why[96];
        snprintf(why, sizeof(why), "must be a whole number from %lld to %lld", (long long)min,
                 (long long)max);
        bad_field(req, key, why);
        return false;
    }
    *ret = json_integer_value(v);
    return true;
}

bool api_label_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return s[0] != '\0';
}

bool api_token_text_ok(const char *t)
{
    size_t n = strlen(t);
    if (n < 16 || n >= DEMS_TOKEN_TEXT_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool api_get_bool(struct dems_req *req, const char *key, bool def, bool *ret)
{
    json_t *body = dems_req_json(req);
    json_t *v = body != NULL ? json_object_get(body, key) : NULL;
    if (v == NULL) {
        *ret = def;
        return true;
    }
    if (!json_is_boolean(v)) {
        bad_field(req, key, "must be true or false");
        return false;
    }
    *ret = json_is_true(v);
    return true;
}

void api_db_error(struct dems_req *req, const PGresult *res, int err)
{
    (void)res;
    dems_resp_err(req, err == DEMS_EDB && res != NULL ? DEMS_EINTERNAL : DEMS_EDB);
}

bool api_found(struct dems_req *req, const PGresult *res, int err, const char *code,
               const char *detail)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return false;
    }
    if (PQntuples(res) < 1) {
        dems_resp_error(req, 404, code, detail);
        return false;
    }
    return true;
}

static int col(const PGresult *res, const char *name)
{
    int c = PQfnumber(res, name);
    assert(c >= 0 && "the query has no column of that name");
    return c;
}

const char *api_col(const PGresult *res, int row, const char *name)
{
    return PQgetvalue(res, row, col(res, name));
}

bool api_col_null(const PGresult *res, int row, const char *name)
{
    return PQgetisnull(res, row, col(res, name)) != 0;
}

int64_t api_col_int(const PGresult *res, int row, const char *name)
{
    const char *v = api_col(res, row, name);
    bool neg = v[0] == '-';
    uint64_t n = 0;
    if (dems_parse_u64(v + neg, strlen(v + neg), INT64_MAX, &n) < 0)
        return 0;
    return neg ? -(int64_t)n : (int64_t)n;
}

bool api_col_bool(const PGresult *res, int row, const char *name)
{
    return api_col(res, row, name)[0] == 't';
}

json_t *api_col_json_str(const PGresult *res, int row, const char *name)
{
    return api_col_null(res, row, name) ? json_null() : json_string(api_col(res, row, name));
}

int64_t api_id(const char *s, size_t len)
{
    uint64_t v = 0;
    if (dems_parse_u64(s, len, INT64_MAX, &v) < 0)
        return 0;
    return (int64_t)v;
}

void api_viewer(const struct dems_req *req, struct api_viewer *ret)
{
    const struct dems_principal *p = dems_req_principal(req);
    snprintf(ret->user_id, sizeof(ret->user_id), "%lld", (long long)p->user_id);
    ret->sees_all = p->role == DEMS_ROLE_ADMIN ? "true" : "false";
}

void api_evidence_hidden(struct dems_req *req, const PGresult *res, const char *id,
                         const char *code, const char *detail)
{
    uint8_t artefact[32];
    bool named = strlen(id) == 64 && dems_hex_decode(id, 64, artefact, 32) == 0;
    if (res != NULL && PQfnumber(res, "lapsed") >= 0 && api_col_bool(res, 0, "lapsed")) {
        dems_auth_refuse(req, "share of this evidence ended", 403, "share_ended",
                         "your share of this evidence has ended (revoked or expired)");
        return;
    }
    dems_auth_denied(req, "no relation to this evidence", named ? artefact : NULL);
    dems_resp_error(req, 404, code, detail);
}

bool api_text_param(struct dems_req *req, const char *name, size_t max, char *out, const char **ret)
{
    struct dems_str v;
    *ret = NULL;
    if (!dems_req_query(req, name, &v))
        return true;
    if (v.len == 0 || v.len > max || memchr(v.ptr, '\0', v.len) != NULL) {
        char why[64];
        snprintf(why, sizeof(why), "must be 1 to %zu characters", max);
        api_bad_param(req, name, why);
        return false;
    }
    memcpy(out, v.ptr, v.len);
    out[v.len] = '\0';
    *ret = out;
    return true;
}

bool api_time_param(struct dems_req *req, const char *name, char out[static 24], const char **ret)
{
    struct dems_str v;
    int64_t t;
    *ret = NULL;
    if (!dems_req_query(req, name, &v))
        return true;
    if (!upload_parse_rfc3339(v.ptr, v.len, &t)) {
        api_bad_param(req, name, "must be an RFC 3339 time");
        return false;
    }
    snprintf(out, 24, "%lld", (long long)t);
    *ret = out;
    return true;
}

void api_bad_param(struct dems_req *req, const char *name, const char *why)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "query parameter \"%s\" %s", name, why);
    dems_resp_error(req, 400, "invalid_parameter", msg);
}

void api_ledger_submit(struct dems_req *req, struct dems_ledger_item *item,
                       void (*done)(struct dems_ledger_item *item, void *req))
{
    item->done = done;
    item->arg = req;
    dems_req_ref(req);
    struct dems_loop *loop = dems_req_loop(req);
    if (dems_ledger_append(loop->srv, loop, item) < 0) {
        dems_req_unref(req);
        dems_resp_err(req, DEMS_EUNAVAIL);
    }
}

struct dems_ledger_item *api_change_new(struct dems_req *req, enum dems_ledger_type type,
                                        const char *case_ref, json_t *payload, const char *sql,
                                        int n, const char *const *params)
{
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it = dems_ledger_item_new(type, DEMS_LEDGER_ACTOR_USER, who->username);
    bool ok = it != NULL && payload != NULL && n <= DEMS_LEDGER_PRE_MAX;
    if (ok) {
        it->payload = payload;
        payload = NULL;
        if (case_ref != NULL)
            snprintf(it->case_id, sizeof(it->case_id), "%s", case_ref);
    }
    if (ok && sql != NULL) {
        ok = (it->pre_sql = strdup(sql)) != NULL;
        it->pre_nparams = n;
        for (int i = 0; ok && i < n; i++)
            ok = params[i] == NULL || (it->pre_params[i] = strdup(params[i])) != NULL;
    }
    json_decref(payload);
    if (!ok) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    return it;
}

/* ---- paging ---- */

static bool cursor_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("._:@~-", c) != NULL;
}

bool api_page_parse(struct dems_req *req, struct api_page *ret)
{
    struct dems_str v;
    struct api_page p = {.limit = API_PAGE_DEFAULT};
    if (dems_req_query(req, "limit", &v) &&
        (dems_parse_u64(v.ptr, v.len, API_PAGE_MAX, &p.limit) < 0 || p.limit == 0)) {
        char why[64];
        snprintf(why, sizeof(why), "must be a whole number from 1 to %d", API_PAGE_MAX);
        api_bad_param(req, "limit", why);
        return false;
    }
    if (dems_req_query(req, "cursor", &v)) {
        bool ok = v.len > 0 && v.len <= API_CURSOR_MAX;
        for (size_t i = 0; ok && i < v.len; i++)
            ok = cursor_char(v.ptr[i]);
        if (!ok) {
            api_bad_param(req, "cursor", "is not a cursor this list gave");
            return false;
        }
        memcpy(p.cursor, v.ptr, v.len);
        p.cursor[v.len] = '\0';
        p.has_cursor = true;
    }
    *ret = p;
    return true;
}

bool api_page_by_id(struct dems_req *req, struct api_page *page, char after[static 24],
                    char limit[static 24])
{
    if (!api_page_parse(req, page))
        return false;
    uint64_t id = 0;
    if (page->has_cursor &&
        dems_parse_u64(page->cursor, strlen(page->cursor), INT64_MAX, &id) < 0) {
        api_bad_param(req, "cursor", "is not a cursor this list gave");
        return false;
    }
    snprintf(after, 24, "%llu", (unsigned long long)id);
    api_page_sql_limit(page, limit);
    return true;
}

void api_page_sql_limit(const struct api_page *page, char out[static 24])
{
    snprintf(out, 24, "%llu", (unsigned long long)page->limit + 1);
}

/* Appends s[0..n) percent-encoding all but RFC 3986 unreserved bytes. */
static int append_encoded(struct dems_buf *b, const char *s, size_t n)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        char c = s[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        char enc[4];
        snprintf(enc, sizeof(enc), "%%%02X", (unsigned char)c);
        r = plain ? dems_buf_append(b, &c, 1) : dems_buf_append(b, enc, 3);
    }
    return r;
}

/*
 * The next page's link: this request's path with its decoded query
 * parameters, re-encoded, in order, the cursor replaced by next. Built from
 * the decoded names, so "cur%73or" is the cursor too; every byte outside
 * the unreserved set is %XX, so nothing can end the <...> or the header.
 */
static void set_next_link(struct dems_req *req, const char *next)
{
    const struct dems_http_head *h = dems_req_head(req);
    const struct dems_http_query *q = dems_req_query_all(req);
    struct dems_buf b;
    dems_buf_init(&b, 8192);
    int r = dems_buf_append(&b, "<", 1);
    for (size_t i = 0; r == 0 && i < h->path.len; i++) {
        /* The path matched a route: segments of [A-Za-z0-9._~-] and '/'. */
        r = h->path.ptr[i] == '/' ? dems_buf_append(&b, "/", 1)
                                  : append_encoded(&b, h->path.ptr + i, 1);
    }
    r = r == 0 ? dems_buf_append(&b, "?", 1) : r;
    for (size_t i = 0; r == 0 && i < q->nparams; i++) {
        const struct dems_http_param *p = &q->params[i];
        if (dems_str_eq(p->name, dems_str_from("cursor")))
            continue;
        r = append_encoded(&b, p->name.ptr, p->name.len);
        r = r == 0 ? dems_buf_append(&b, "=", 1) : r;
        r = r == 0 ? append_encoded(&b, p->value.ptr, p->value.len) : r;
        r = r == 0 ? dems_buf_append(&b, "&", 1) : r;
    }
    r = r == 0 ? dems_buf_append(&b, "cursor=", 7) : r;
    r = r == 0 ? append_encoded(&b, next, strlen(next)) : r;
    r = r == 0 ? dems_buf_append(&b, ">; rel=\"next\"\0", 14) : r;
    if (r == 0)
        dems_resp_header(req, "Link", (const char *)b.data);
    dems_buf_done(&b);
}

void api_page_send(struct dems_req *req, const char *name, json_t *items, const char *next)
{
    if (items == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    if (next != NULL)
        set_next_link(req, next);
    dems_resp_json(req, 200,
                   json_pack("{s:o,s:o}", name, items, "next_cursor",
                             next != NULL ? json_string(next) : json_null()));
}

void api_page_answer(struct dems_req *req, const PGresult *res, const char *name,
                     const char *cursor_col,
                     json_t *(*item)(struct dems_req *req, const PGresult *res, int row))
{
    struct api_page page;
    if (!api_page_parse(req, &page)) /* checked before the query: cannot fail here */
        return;
    int n = PQntuples(res);
    bool more = (uint64_t)n > page.limit;
    if (more)
        n = (int)page.limit;
    json_t *arr = json_array();
    for (int i = 0; arr != NULL && i < n; i++) {
        json_t *o = item(req, res, i);
        if (o == NULL || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    api_page_send(req, name, arr, more ? api_col(res, n - 1, cursor_col) : NULL);
}
