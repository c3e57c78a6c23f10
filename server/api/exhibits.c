/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exhibits: evidence as it stands in a case (docs/api.md, "Cases").
 *   GET    /v1/cases/{id}/exhibits          the case's exhibits the caller sees
 *   GET    /v1/exhibits                     the same search across every case
 *   POST   /v1/cases/{id}/exhibits          add evidence the caller sees (lead,
 *                                           investigator, admin) as exhibit "reference"
 *   PATCH  /v1/cases/{id}/exhibits/{xid}    description, tags (lead, investigator, admin)
 *   DELETE /v1/cases/{id}/exhibits/{xid}    remove (lead, admin): the row stays, marked
 * Searches filter by text (exhibit reference, description, filename), tag,
 * uploader, device serial and ingest time, a page at a time in exhibit order.
 * A prosecutor sees only the exhibits a live share gives them. Changes are
 * ledger entries (EXHIBIT_ADDED, EXHIBIT_UPDATED, EXHIBIT_REMOVED) naming
 * the case and the artefact.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/limits.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define MAX_TAGS 32
#define MAX_TAG  64

struct exhibit_req {
    struct api_case c; /* first: api_case_load fills it */
    char evidence[65];
    char xid[24];
    char tags[MAX_TAGS * (MAX_TAG + 3) + 3]; /* a PostgreSQL array literal */
    bool tags_given;
};

/* ---- listing and search ---- */

/*
 * $1 case id (NULL: every case), $2 user id, $3 sees all, $4 cursor (the
 * last exhibit id), $5 limit, $6 text, $7 tag, $8 uploader, $9 device
 * serial, $10/$11 ingested from/before (epoch seconds), $12 one exhibit
 * id, $13 one artefact.
 */
/* clang-format off */
#define EXHIBITS_SQL                                                                               \
    "SELECT x.id, x.case_id, c.reference AS case_reference, x.reference, x.description,"          \
    " array_to_json(x.tags)::text AS tags, ab.username AS added_by,"                               \
    " " API_TS("x.added_at") " AS added_at, a.id AS evidence, a.filename, a.content_type,"         \
    " a.size, a.metadata::text AS metadata, " API_TS("a.created_at") " AS ingested_at,"            \
    " coalesce(u.username, 'device:' || d.serial, 'public') AS uploaded_by,"                               \
    " EXISTS (SELECT 1 FROM derivatives dv WHERE dv.artefact = a.id AND dv.kind = 'poster')"       \
    "  AS has_poster,"                                                                             \
    " (SELECT min(seq) FROM ledger_entries e WHERE e.artefact = a.id"                              \
    "  AND e.type = 'INGESTED') AS ingested_seq"                                                   \
    " FROM exhibits x JOIN cases c ON c.id = x.case_id JOIN artefacts a ON a.id = x.artefact"      \
    " JOIN users ab ON ab.id = x.added_by LEFT JOIN users u ON u.id = a.uploaded_by"               \
    " LEFT JOIN devices d ON d.id = a.uploaded_by_device"                                          \
    " WHERE ($1::bigint IS NULL OR x.case_id = $1::bigint)"                                        \
    " AND " API_EXHIBIT_SEEN_SQL("x", API_CASE_ROLE_SQL("x.case_id", "$2", "$3"), "$2", "true")    \
    " AND x.id > $4::bigint"                                                                       \
    " AND ($6::text IS NULL OR strpos(lower(x.reference || ' ' || coalesce(x.description, '')"     \
    "  || ' ' || coalesce(a.filename, '')), lower($6)) > 0)"                                       \
    " AND ($7::text IS NULL OR x.tags @> ARRAY[$7::text])"                                         \
    " AND ($8::text IS NULL OR u.username = $8)"                                                   \
    " AND ($9::text IS NULL OR d.serial = $9)"                                                     \
    " AND ($10::bigint IS NULL OR a.created_at >= to_timestamp($10::bigint))"                      \
    " AND ($11::bigint IS NULL OR a.created_at < to_timestamp($11::bigint))"                       \
    " AND ($12::bigint IS NULL OR x.id = $12::bigint) AND ($13::text IS NULL OR x.artefact = $13)" \
    " ORDER BY x.id LIMIT $5::integer"
/* clang-format on */

static json_t *exhibit_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_error_t jerr;
    json_t *tags = json_loads(api_col(res, row, "tags"), 0, &jerr);
    json_t *meta = json_loads(api_col(res, row, "metadata"), 0, &jerr);
    json_t *ev = json_pack(
        "{s:s,s:I,s:s,s:s,s:b,s:o}", "id", api_col(res, row, "evidence"), "size",
        (json_int_t)api_col_int(res, row, "size"), "ingested_at", api_col(res, row, "ingested_at"),
        "uploaded_by", api_col(res, row, "uploaded_by"), "has_poster",
        api_col_bool(res, row, "has_poster"), "metadata", meta != NULL ? meta : json_object());
    if (ev != NULL) {
        json_object_set_new(ev, "filename", api_col_json_str(res, row, "filename"));
        json_object_set_new(ev, "content_type", api_col_json_str(res, row, "content_type"));
        json_object_set_new(ev, "ingested_seq",
                            api_col_null(res, row, "ingested_seq")
                                ? json_null()
                                : json_integer(api_col_int(res, row, "ingested_seq")));
    }
    json_t *o = json_pack(
        "{s:I,s:I,s:s,s:s,s:o,s:s,s:s,s:o}", "id", (json_int_t)api_col_int(res, row, "id"),
        "case_id", (json_int_t)api_col_int(res, row, "case_id"), "case_reference",
        api_col(res, row, "case_reference"), "reference", api_col(res, row, "reference"), "tags",
        tags != NULL ? tags : json_array(), "added_by", api_col(res, row, "added_by"), "added_at",
        api_col(res, row, "added_at"), "evidence", ev);
    if (o != NULL)
        json_object_set_new(o, "description", api_col_json_str(res, row, "description"));
    return o;
}

static void on_exhibits(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "exhibits", "id", exhibit_json);
}

static void search(struct dems_req *req, const char *case_id)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    char q[201], tag[MAX_TAG + 1], uploader[DEMS_MAX_USERNAME + 1], device[65], from[24], to[24];
    const char *pq, *ptag, *pup, *pdev, *pfrom, *pto;
    if (!api_text_param(req, "q", 200, q, &pq) ||
        !api_text_param(req, "tag", MAX_TAG, tag, &ptag) ||
        !api_text_param(req, "uploader", DEMS_MAX_USERNAME, uploader, &pup) ||
        !api_text_param(req, "device", 64, device, &pdev) ||
        !api_time_param(req, "from", from, &pfrom) || !api_time_param(req, "to", to, &pto))
        return;
    if (pup != NULL)
        dems_auth_username_fold(uploader);
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {case_id, who.user_id, who.sees_all, after, limit, pq,  ptag,
                            pup,     pdev,        pfrom,        pto,   NULL,  NULL};
    int r = dems_db_req(req, EXHIBITS_SQL, 13, params, on_exhibits);
    if (r < 0)
        dems_resp_err(req, r);
}

static void list_loaded(struct dems_req *req, struct api_case *c)
{
    search(req, c->id_s);
}

static struct exhibit_req *exhibit_req_new(struct dems_req *req)
{
    struct exhibit_req *x = calloc(1, sizeof(*x));
    if (x == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_req_set_data(req, x, free);
    return x;
}

void api_exhibits_list(struct dems_req *req)
{
    if (exhibit_req_new(req) != NULL)
        api_case_load(req, API_CASE_READERS, list_loaded);
}

void api_exhibits_search(struct dems_req *req)
{
    search(req, NULL);
}

/* ---- changes ---- */

/*
 * Reads "tags" (an array of up to MAX_TAGS distinct strings of 1..MAX_TAG
 * printable characters, no quotes, commas, braces or backslashes) into
 * x->tags as an array literal. Absent: tags_given false.
 */
static bool read_tags(struct dems_req *req, struct exhibit_req *x)
{
    json_t *v = json_object_get(dems_req_json(req), "tags");
    if (v == NULL)
        return true;
    static const char bad[] = "field \"tags\" must be a list of at most 32 distinct tags, each 1 "
                              "to 64 characters without quotes, commas, braces or backslashes";
    if (!json_is_array(v) || json_array_size(v) > MAX_TAGS) {
        dems_resp_error(req, 400, "invalid_field", bad);
        return false;
    }
    size_t n = 0;
    x->tags[n++] = '{';
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *t = json_array_get(v, i);
        const char *s = json_string_value(t);
        size_t len = s != NULL ? json_string_length(t) : 0;
        bool ok =
            s != NULL && len >= 1 && len <= MAX_TAG && strlen(s) == len && dems_utf8_valid(s, len);
        for (size_t k = 0; ok && k < len; k++)
            ok = (unsigned char)s[k] >= 0x20 && s[k] != 0x7f && strchr("\"',{}\\", s[k]) == NULL;
        for (size_t k = 0; ok && k < i; k++)
            ok = strcmp(json_string_value(json_array_get(v, k)), s) != 0;
        if (!ok) {
            dems_resp_error(req, 400, "invalid_field", bad);
            return false;
        }
        n += (size_t)snprintf(x->tags + n, sizeof(x->tags) - n, "%s\"%s\"", i > 0 ? "," : "", s);
    }
    snprintf(x->tags + n, sizeof(x->tags) - n, "}");
    x->tags_given = true;
    return true;
}

static void on_one(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "exhibit_not_found", "no such exhibit"))
        return;
    struct exhibit_req *x = dems_req_data(req);
    json_t *o = exhibit_json(req, res, 0);
    if (o == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_resp_json(req, x->xid[0] != '\0' ? 200 : 201, o);
}

/* Answers with one exhibit of x's case: by id (x->xid) or else by artefact. */
static void answer_exhibit(struct dems_req *req, struct exhibit_req *x)
{
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {x->c.id_s,
                            who.user_id,
                            who.sees_all,
                            "0",
                            "1",
                            NULL,
                            NULL,
                            NULL,
                            NULL,
                            NULL,
                            NULL,
                            x->xid[0] != '\0' ? x->xid : NULL,
                            x->xid[0] != '\0' ? NULL : x->evidence};
    int r = dems_db_req(req, EXHIBITS_SQL, 13, params, on_one);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct exhibit_req *x = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ECONFLICT)
            dems_resp_error(req, 409, "exhibit_conflict",
                            "the exhibit reference is taken in this case, or the evidence is an "
                            "exhibit of this case already");
        else if (item->err < 0)
            api_case_changed(req, item, "the exhibit");
        else if (item->type == DEMS_LEDGER_EXHIBIT_REMOVED)
            dems_resp_json(req, 200,
                           json_pack("{s:I,s:b,s:I}", "id",
                                     (json_int_t)api_id(x->xid, strlen(x->xid)), "removed", 1,
                                     "seq", (json_int_t)item->seq));
        else
            answer_exhibit(req, x);
    }
    dems_req_unref(req);
}

static bool item_ok(struct dems_ledger_item *it, int nparams, const bool *required)
{
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL)
        return false;
    for (int i = 0; i < nparams; i++)
        if (required[i] && it->pre_params[i] == NULL)
            return false;
    return true;
}

/* ---- add ---- */

static void on_add_checked(struct dems_req *req, const PGresult *res, int err)
{
    struct exhibit_req *x = dems_req_data(req);
    if (!api_found(req, res, err, "evidence_not_found", "no such evidence"))
        return;
    if (!api_col_bool(res, 0, "visible")) {
        api_evidence_hidden(req, NULL, x->evidence, "evidence_not_found", "no such evidence");
        return;
    }
    if (api_col_bool(res, 0, "already")) {
        dems_resp_error(req, 409, "already_exhibit",
                        "that evidence is an exhibit of this case already");
        return;
    }
    json_t *body = dems_req_json(req);
    const char *ref = json_string_value(json_object_get(body, "reference"));
    const char *desc = json_string_value(json_object_get(body, "description"));
    if (api_col_bool(res, 0, "taken")) {
        dems_resp_error(req, 409, "exhibit_reference_taken",
                        "another exhibit of this case has that reference");
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    struct dems_ledger_item *it = api_case_item(req, &x->c, DEMS_LEDGER_EXHIBIT_ADDED);
    if (it != NULL) {
        it->has_artefact = true;
        dems_hex_decode(x->evidence, 64, it->artefact, 32);
        it->payload = json_pack("{s:I,s:s}", "case_id", (json_int_t)x->c.id, "exhibit", ref);
        if (it->payload != NULL && desc != NULL)
            dems_ledger_payload_set_text(it->payload, "description", desc, strlen(desc), 1000);
        if (it->payload != NULL && x->tags_given)
            json_object_set(it->payload, "tags", json_object_get(body, "tags"));
        it->pre_sql = strdup("INSERT INTO exhibits (case_id, artefact, reference, description,"
                             " tags, added_by) VALUES ($1::bigint, $2, $3, $4, $5::text[],"
                             " $6::bigint)");
        it->pre_nparams = 6;
        it->pre_params[0] = strdup(x->c.id_s);
        it->pre_params[1] = strdup(x->evidence);
        it->pre_params[2] = strdup(ref);
        it->pre_params[3] = desc != NULL ? strdup(desc) : NULL;
        it->pre_params[4] = strdup(x->tags_given ? x->tags : "{}");
        it->pre_params[5] = strdup(uid);
    }
    const bool required[] = {true, true, true, desc != NULL, true, true};
    if (!item_ok(it, 6, required)) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_changed);
}

static bool reference_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 32)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              strchr("/._-", ch) != NULL))
            return false;
    }
    return true;
}

static void add_loaded(struct dems_req *req, struct api_case *c)
{
    struct exhibit_req *x = (struct exhibit_req *)c;
    if (!api_case_open(req, c))
        return;
    const char *ev, *ref, *desc;
    if (!api_get_str(req, "evidence", 64, true, &ev) ||
        !api_get_str(req, "reference", 32, true, &ref) ||
        !api_get_str(req, "description", 2000, false, &desc) || !read_tags(req, x))
        return;
    uint8_t tmp[32];
    if (strlen(ev) != 64 || dems_hex_decode(ev, 64, tmp, 32) < 0) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"evidence\" must be an evidence id (64 hex digits)");
        return;
    }
    if (!reference_ok(ref)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"reference\" must be 1 to 32 of A-Z a-z 0-9 / . _ -");
        return;
    }
    for (size_t i = 0; i < 64; i++)
        x->evidence[i] = (char)(ev[i] >= 'A' && ev[i] <= 'F' ? ev[i] - 'A' + 'a' : ev[i]);
    x->evidence[64] = '\0';
    const char *params[] = {x->evidence, x->c.who.user_id, x->c.who.sees_all, x->c.id_s, ref};
    int r = dems_db_req(
        req,
        "SELECT " API_VISIBLE_SQL(
            "a.id", "$2",
            "$3") " AS visible,"
                  " EXISTS (SELECT 1 FROM exhibits e WHERE e.case_id = $4::bigint AND e.artefact = "
                  "a.id"
                  "  AND e.removed_at IS NULL) AS already,"
                  " EXISTS (SELECT 1 FROM exhibits e WHERE e.case_id = $4::bigint"
                  "  AND lower(e.reference) = lower($5) AND e.removed_at IS NULL) AS taken"
                  " FROM artefacts a WHERE a.id = $1",
        5, params, on_add_checked);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_exhibits_add(struct dems_req *req)
{
    if (exhibit_req_new(req) != NULL)
        api_case_load(req, API_CASE_EDITORS, add_loaded);
}

/* ---- update and remove ---- */

static bool exhibit_id(struct dems_req *req, struct exhibit_req *x)
{
    struct dems_str p = dems_req_param(req, 1);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "exhibit_not_found", "no such exhibit");
        return false;
    }
    snprintf(x->xid, sizeof(x->xid), "%lld", (long long)id);
    return true;
}

static void on_exhibit_row(struct dems_req *req, const PGresult *res, int err)
{
    struct exhibit_req *x = dems_req_data(req);
    if (!api_found(req, res, err, "exhibit_not_found", "no such exhibit"))
        return;
    bool remove = dems_req_head(req)->method == DEMS_HTTP_DELETE;
    json_t *body = dems_req_json(req);
    const char *desc = json_string_value(json_object_get(body, "description"));
    json_t *dv = json_object_get(body, "description");
    snprintf(x->evidence, sizeof(x->evidence), "%s", api_col(res, 0, "artefact"));
    const struct dems_principal *who = dems_req_principal(req);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    struct dems_ledger_item *it = api_case_item(
        req, &x->c, remove ? DEMS_LEDGER_EXHIBIT_REMOVED : DEMS_LEDGER_EXHIBIT_UPDATED);
    if (it != NULL) {
        it->has_artefact = true;
        dems_hex_decode(x->evidence, 64, it->artefact, 32);
        it->payload = json_pack("{s:I,s:s}", "case_id", (json_int_t)x->c.id, "exhibit",
                                api_col(res, 0, "reference"));
        it->pre_must_change = true;
        if (remove) {
            const char *reason = json_string_value(json_object_get(body, "reason"));
            if (it->payload != NULL && reason != NULL)
                dems_ledger_payload_set_text(it->payload, "reason", reason, strlen(reason), 1000);
            it->pre_sql = strdup("UPDATE exhibits SET removed_at = now(), removed_by = $2::bigint"
                                 " WHERE id = $1::bigint AND removed_at IS NULL");
            it->pre_nparams = 2;
            it->pre_params[0] = strdup(x->xid);
            it->pre_params[1] = strdup(uid);
        } else {
            if (it->payload != NULL && desc != NULL)
                dems_ledger_payload_set_text(it->payload, "description", desc, strlen(desc), 1000);
            if (it->payload != NULL && dv != NULL && json_is_null(dv))
                json_object_set_new(it->payload, "description", json_null());
            if (it->payload != NULL && x->tags_given)
                json_object_set(it->payload, "tags", json_object_get(body, "tags"));
            it->pre_sql = strdup("UPDATE exhibits SET description = CASE WHEN $2::boolean THEN $3"
                                 " ELSE description END, tags = coalesce($4::text[], tags)"
                                 " WHERE id = $1::bigint AND removed_at IS NULL");
            it->pre_nparams = 4;
            it->pre_params[0] = strdup(x->xid);
            it->pre_params[1] = strdup(dv != NULL ? "true" : "false");
            it->pre_params[2] = desc != NULL ? strdup(desc) : NULL;
            it->pre_params[3] = x->tags_given ? strdup(x->tags) : NULL;
        }
    }
    const bool required[] = {true, true, !remove && desc != NULL, !remove && x->tags_given};
    if (!item_ok(it, remove ? 2 : 4, required)) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_changed);
}

static void find_exhibit(struct dems_req *req, struct exhibit_req *x)
{
    const char *params[] = {x->xid, x->c.id_s};
    int r = dems_db_req(req,
                        "SELECT artefact, reference FROM exhibits WHERE id = $1::bigint"
                        " AND case_id = $2::bigint AND removed_at IS NULL",
                        2, params, on_exhibit_row);
    if (r < 0)
        dems_resp_err(req, r);
}

static void update_loaded(struct dems_req *req, struct api_case *c)
{
    struct exhibit_req *x = (struct exhibit_req *)c;
    if (!api_case_open(req, c) || !exhibit_id(req, x))
        return;
    json_t *dv = json_object_get(dems_req_json(req), "description");
    const char *desc;
    if ((dv != NULL && !json_is_null(dv) && !api_get_str(req, "description", 2000, true, &desc)) ||
        !read_tags(req, x))
        return;
    if (dv == NULL && !x->tags_given) {
        dems_resp_error(req, 400, "invalid_field", "nothing to change: give description or tags");
        return;
    }
    find_exhibit(req, x);
}

static void remove_loaded(struct dems_req *req, struct api_case *c)
{
    struct exhibit_req *x = (struct exhibit_req *)c;
    const char *reason;
    if (!api_case_open(req, c) || !exhibit_id(req, x) ||
        !api_get_str(req, "reason", 500, false, &reason))
        return;
    find_exhibit(req, x);
}

void api_exhibits_update(struct dems_req *req)
{
    if (exhibit_req_new(req) != NULL)
        api_case_load(req, API_CASE_EDITORS, update_loaded);
}

void api_exhibits_remove(struct dems_req *req)
{
    if (exhibit_req_new(req) != NULL)
        api_case_load(req, API_CASE_MANAGERS, remove_loaded);
}
