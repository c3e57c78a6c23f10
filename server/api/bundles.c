/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Court bundles of a case (docs/api.md, "Bundles"; the format is
 * docs/bundle.md):
 *
 *   POST /v1/cases/{id}/bundles               request one (202; a "bundle" job makes it)
 *   GET  /v1/cases/{id}/bundles               the case's bundles, paged by id
 *   GET  /v1/cases/{id}/bundles/{bid}         one: queued, running (bytes done/total),
 *                                             done (SHA-256, size) or failed (why)
 *   GET  /v1/cases/{id}/bundles/{bid}/content the ZIP (ranges, ETag), ledgered first
 *
 * Who: the case's lead and investigators and administrators, for any of
 * its exhibits; a prosecutor whose live share carries download rights, for
 * the exhibits shared with them, and only the bundles they asked for. A
 * viewer is refused (403); anyone else sees no case (404); a prosecutor
 * whose share ended gets 403 share_ended. Refusals are ledgered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

#include "api_int.h"

/* The caller's role in case $1 ($2 uid, $3 sees all), whether a share of theirs
 * ended, and whether they hold a live share with download rights. */
#define CASE_ACCESS                                                                                \
    API_CASE_ROLE_SQL("c.id", "$2", "$3")                                                          \
    " AS role, " API_CASE_LAPSED_SQL(                                                              \
        "c.id", "$2") " AS lapsed, EXISTS (SELECT 1 FROM shares ds WHERE ds.case_id = c.id"        \
                      " AND ds.prosecutor = $2::bigint AND ds.revoked_at IS NULL"                  \
                      " AND ds.expires_at > now() AND ds.can_download) AS can_download"

/* A bundle row as the API shows it (b: bundles). */
#define BUNDLE_COLS                                                                                \
    "b.id, b.state, b.bytes_done, b.bytes_total, b.error, b.include_previews, b.job_id,"           \
    " b.result_sha256, b.result_size, b.made_seq, cardinality(b.exhibits) AS nexhibits,"           \
    " (SELECT username FROM users WHERE id = b.requested_by) AS requested_by, " API_TS(            \
        "b.created_at") " AS created_at, " API_TS("b.finished_at") " AS finished_at"

/* Which bundles of the case the caller sees: all for case staff, their own for a prosecutor. */
#define BUNDLE_SEEN "(role IN ('admin', 'lead', 'investigator') OR b.requested_by = $2::bigint)"

static int64_t case_param(struct dems_req *req)
{
    struct dems_str s = dems_req_param(req, 0);
    int64_t id = api_id(s.ptr, s.len);
    if (id <= 0)
        dems_resp_error(req, 404, "not_found", "no such case");
    return id;
}

/*
 * Answers a caller with no right to the case's bundles and returns false;
 * true when role (the row's) may use them. A prosecutor must hold a live
 * share with download rights.
 */
static bool may_use(struct dems_req *req, const PGresult *res)
{
    const char *role = api_col(res, 0, "role");
    if (api_col_null(res, 0, "role")) {
        if (api_col_bool(res, 0, "lapsed"))
            dems_auth_refuse(req, "case share ended", 403, "share_ended",
                             "your share of this case has ended");
        else
            dems_resp_error(req, 404, "not_found", "no such case");
        return false;
    }
    if (strcmp(role, "viewer") == 0) {
        dems_auth_refuse(req, "case viewers may not make or read bundles", 403, "forbidden",
                         "a case viewer may not make or download bundles");
        return false;
    }
    if (strcmp(role, "prosecutor") == 0 && !api_col_bool(res, 0, "can_download")) {
        dems_auth_refuse(req, "share without download rights", 403, "forbidden",
                         "your share of this case does not allow downloads");
        return false;
    }
    return true;
}

static json_t *bundle_json(const PGresult *res, int row, int64_t case_id)
{
    json_t *o = json_pack("{s:I,s:I,s:s,s:b,s:I,s:o,s:o,s:s}", "id",
                          (json_int_t)api_col_int(res, row, "id"), "case", (json_int_t)case_id,
                          "state", api_col(res, row, "state"), "include_previews",
                          api_col_bool(res, row, "include_previews"), "exhibits",
                          (json_int_t)api_col_int(res, row, "nexhibits"), "requested_by",
                          api_col_json_str(res, row, "requested_by"), "created_at",
                          api_col_json_str(res, row, "created_at"), "href", "");
    if (o == NULL)
        return NULL;
    char href[96];
    snprintf(href, sizeof href, "/v1/cases/%lld/bundles/%lld", (long long)case_id,
             (long long)api_col_int(res, row, "id"));
    json_object_set_new(o, "href", json_string(href));
    json_object_set_new(o, "progress",
                        json_pack("{s:I,s:I}", "bytes_done",
                                  (json_int_t)api_col_int(res, row, "bytes_done"), "bytes_total",
                                  (json_int_t)api_col_int(res, row, "bytes_total")));
    if (!api_col_null(res, row, "job_id"))
        json_object_set_new(o, "job", json_integer(api_col_int(res, row, "job_id")));
    if (!api_col_null(res, row, "error"))
        json_object_set_new(o, "error", api_col_json_str(res, row, "error"));
    if (strcmp(api_col(res, row, "state"), "done") == 0) {
        json_object_set_new(o, "sha256", api_col_json_str(res, row, "result_sha256"));
        json_object_set_new(o, "size", json_integer(api_col_int(res, row, "result_size")));
        json_object_set_new(o, "finished_at", api_col_json_str(res, row, "finished_at"));
        if (!api_col_null(res, row, "made_seq"))
            json_object_set_new(o, "ledger_seq", json_integer(api_col_int(res, row, "made_seq")));
        strncat(href, "/content", sizeof href - strlen(href) - 1);
        json_object_set_new(o, "content", json_string(href));
    } else if (strcmp(api_col(res, row, "state"), "failed") == 0) {
        json_object_set_new(o, "finished_at", api_col_json_str(res, row, "finished_at"));
    }
    return o;
}

/* ---- POST /v1/cases/{id}/bundles ---- */

struct create {
    int64_t case_id;
    bool previews;
    struct api_selection sel;
};

static void create_free(void *data)
{
    struct create *c = data;
    api_selection_done(&c->sel);
    free(c);
}

static void on_created(struct dems_req *req, const PGresult *res, int err)
{
    struct create *c = dems_req_data(req);
    if (!api_found(req, res, err, "not_found", "no such case"))
        return;
    json_t *o = bundle_json(res, 0, c->case_id);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_header(req, "Location", json_string_value(json_object_get(o, "href")));
    dems_resp_json(req, 202, o);
}

/* Inserts the bundle with its job in one statement ($1 case, $2 uid, $4 exhibits, $5 previews). */
static const char insert_sql[] =
    "WITH n AS (SELECT nextval(pg_get_serial_sequence('bundles', 'id')) AS id),"
    " j AS (SELECT n.id, dems_enqueue_job('bundle', jsonb_build_object('bundle', n.id),"
    " 'bundle-' || n.id, 0, NULL) AS job FROM n),"
    " b AS (INSERT INTO bundles (id, case_id, requested_by, exhibits, include_previews, job_id)"
    " OVERRIDING SYSTEM VALUE SELECT j.id, $1::bigint, $2::bigint, $3::bigint[], $4::boolean,"
    " j.job FROM j RETURNING *)"
    " SELECT " BUNDLE_COLS " FROM b";

static void on_selection(struct dems_req *req, const PGresult *res, int err)
{
    struct create *c = dems_req_data(req);
    if (!api_found(req, res, err, "not_found", "no such case") || !may_use(req, res))
        return;
    if (api_col_int(res, 0, "unknown") > 0) {
        dems_resp_error(req, 400, "exhibit_not_in_case",
                        "an exhibit of the selection is not a current exhibit of this case that "
                        "you may download");
        return;
    }
    if (api_col_int(res, 0, "nchosen") == 0) {
        dems_resp_error(req, 400, "empty_selection",
                        "the case has no exhibit you may put in a bundle");
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    char case_s[24], uid[24];
    snprintf(case_s, sizeof case_s, "%lld", (long long)c->case_id);
    snprintf(uid, sizeof uid, "%lld", (long long)who->user_id);
    const char *params[] = {case_s, uid, api_col(res, 0, "chosen"), c->previews ? "t" : "f"};
    int r = dems_db_req(req, insert_sql, 4, params, on_created);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_bundles_create(struct dems_req *req)
{
    struct create *c = calloc(1, sizeof *c);
    if (c == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, c, create_free);
    const json_t *p = json_object_get(dems_req_json(req), "include_previews");
    if (p != NULL && !json_is_boolean(p)) {
        dems_resp_error(req, 400, "invalid_field", "field \"include_previews\" must be a boolean");
        return;
    }
    c->previews = json_is_true(p);
    if ((c->case_id = case_param(req)) <= 0 || !api_selection_read(req, &c->sel))
        return;
    struct api_viewer who;
    api_viewer(req, &who);
    char case_s[24];
    snprintf(case_s, sizeof case_s, "%lld", (long long)c->case_id);
    const char *params[] = {case_s,     who.user_id, who.sees_all, c->sel.all ? "t" : "f",
                            c->sel.ids, c->sel.refs};
    /* The exhibits the caller may bundle (a prosecutor: those shared with download rights),
     * the chosen ones among them, and how many of the named ones are not among them. */
    int r = dems_db_req(
        req,
        "WITH c AS (SELECT c.id, " CASE_ACCESS " FROM cases c WHERE c.id = $1::bigint),"
        " x AS (SELECT x.id, lower(x.reference) AS ref FROM exhibits x, c WHERE x.case_id = c.id"
        " AND " API_EXHIBIT_SEEN_SQL(
            "x", "c.role", "$2",
            "ss.can_download") "),"
                               " pick AS (SELECT x.id FROM x WHERE $4::boolean OR x.id = ANY "
                               "($5::bigint[])"
                               " OR x.ref = ANY ($6::text[]))"
                               " SELECT c.role, c.lapsed, c.can_download,"
                               " (SELECT array_agg(id ORDER BY id) FROM pick)::text AS chosen,"
                               " (SELECT count(*) FROM pick) AS nchosen,"
                               " (SELECT count(*) FROM unnest($5::bigint[]) i WHERE i NOT IN "
                               "(SELECT id FROM x))"
                               " + (SELECT count(*) FROM unnest($6::text[]) f WHERE f NOT IN "
                               "(SELECT ref FROM x))"
                               " AS unknown FROM c",
        6, params, on_selection);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- GET /v1/cases/{id}/bundles ---- */

struct list {
    int64_t case_id;
    struct api_page page;
};

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    struct list *l = dems_req_data(req);
    if (!api_found(req, res, err, "not_found", "no such case") || !may_use(req, res))
        return;
    json_t *items = json_array();
    const char *next = NULL;
    int n = PQntuples(res);
    for (int i = 0; items != NULL && i < n && !api_col_null(res, i, "id"); i++) {
        if ((uint64_t)i == l->page.limit) {
            next = api_col(res, i - 1, "id");
            break;
        }
        if (json_array_append_new(items, bundle_json(res, i, l->case_id)) < 0) {
            json_decref(items);
            items = NULL;
        }
    }
    if (items == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_page_send(req, "bundles", items, next);
}

void api_bundles_list(struct dems_req *req)
{
    struct list *l = calloc(1, sizeof *l);
    char after[24], limit[24], case_s[24];
    if (l == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, l, free);
    if ((l->case_id = case_param(req)) <= 0 || !api_page_by_id(req, &l->page, after, limit))
        return;
    struct api_viewer who;
    api_viewer(req, &who);
    snprintf(case_s, sizeof case_s, "%lld", (long long)l->case_id);
    const char *params[] = {case_s, who.user_id, who.sees_all, after, limit};
    /* One row per bundle seen, or one row of NULLs: the case exists but shows none. */
    int r =
        dems_db_req(req,
                    "WITH c AS (SELECT c.id, " CASE_ACCESS " FROM cases c WHERE c.id = $1::bigint)"
                    " SELECT c.role, c.lapsed, c.can_download, bb.* FROM c LEFT JOIN LATERAL"
                    " (SELECT " BUNDLE_COLS " FROM bundles b WHERE b.case_id = c.id"
                    " AND b.id > $4::bigint AND " BUNDLE_SEEN " ORDER BY b.id"
                    " LIMIT $5::bigint) bb ON true ORDER BY bb.id",
                    5, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- GET /v1/cases/{id}/bundles/{bid}[/content] ---- */

struct one {
    int64_t case_id;
    char bundle_s[24];
};

/* Case access and the bundle ($4), when the caller sees it; answers and returns false if not. */
static bool one_found(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such case") || !may_use(req, res))
        return false;
    if (api_col_null(res, 0, "id")) {
        dems_resp_error(req, 404, "not_found", "no such bundle in this case");
        return false;
    }
    return true;
}

static void on_one(struct dems_req *req, const PGresult *res, int err)
{
    struct one *o = dems_req_data(req);
    if (!one_found(req, res, err))
        return;
    json_t *j = bundle_json(res, 0, o->case_id);
    if (j == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_resp_json(req, 200, j);
}

static int query_one(struct dems_req *req, struct one *o,
                     void (*cb)(struct dems_req *, const PGresult *, int))
{
    struct dems_str b = dems_req_param(req, 1);
    int64_t bid = api_id(b.ptr, b.len);
    if ((o->case_id = case_param(req)) <= 0)
        return 0;
    if (bid <= 0) {
        dems_resp_error(req, 404, "not_found", "no such bundle in this case");
        return 0;
    }
    struct api_viewer who;
    api_viewer(req, &who);
    char case_s[24];
    snprintf(case_s, sizeof case_s, "%lld", (long long)o->case_id);
    snprintf(o->bundle_s, sizeof o->bundle_s, "%lld", (long long)bid);
    const char *params[] = {case_s, who.user_id, who.sees_all, o->bundle_s};
    return dems_db_req(
        req,
        "WITH c AS (SELECT c.id, c.reference, " CASE_ACCESS " FROM cases c WHERE c.id = $1::bigint)"
        " SELECT c.role, c.lapsed, c.can_download, c.reference AS case_ref, bb.*"
        " FROM c LEFT JOIN LATERAL (SELECT " BUNDLE_COLS " FROM bundles b"
        " WHERE b.case_id = c.id AND b.id = $4::bigint AND " BUNDLE_SEEN ") bb ON true",
        4, params, cb);
}

void api_bundles_get(struct dems_req *req)
{
    struct one *o = calloc(1, sizeof *o);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, o, free);
    int r = query_one(req, o, on_one);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_content(struct dems_req *req, const PGresult *res, int err)
{
    struct one *o = dems_req_data(req);
    if (!one_found(req, res, err))
        return;
    if (strcmp(api_col(res, 0, "state"), "done") != 0) {
        dems_resp_error(req, 409, "bundle_not_ready", "the bundle has not been made (yet)");
        return;
    }
    int64_t case_id = o->case_id, bid = api_col_int(res, 0, "id");
    char case_ref[72];
    snprintf(case_ref, sizeof case_ref, "%s", api_col(res, 0, "case_ref"));
    /* The request's data becomes the download. */
    dems_req_set_data(req, NULL, NULL);
    free(o);
    struct api_download *d = api_download_new(req);
    if (d == NULL)
        return;
    snprintf(d->blob_id, sizeof d->blob_id, "%s", api_col(res, 0, "result_sha256"));
    snprintf(d->id, sizeof d->id, "bundle-%lld", (long long)bid);
    snprintf(d->filename, sizeof d->filename, "bundle-%s-%lld.zip", case_ref, (long long)bid);
    snprintf(d->content_type, sizeof d->content_type, "application/zip");
    d->size = (uint64_t)api_col_int(res, 0, "result_size");
    if (!api_download_prepare(req, d))
        return;
    /* No artefact and no case member: a bundle's own entries never enter a later bundle. */
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_DOWNLOADED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    it->has_sha256 = it->has_size = true;
    dems_hex_decode(d->blob_id, 64, it->sha256, 32);
    it->size = d->size;
    it->payload = json_pack("{s:I,s:I,s:s}", "bundle", (json_int_t)bid, "case_id",
                            (json_int_t)case_id, "case_reference", case_ref);
    if (it->payload != NULL && d->partial) {
        json_object_set_new(it->payload, "first", json_integer((json_int_t)d->first));
        json_object_set_new(it->payload, "last", json_integer((json_int_t)d->last));
    }
    api_ledger_submit(req, it, api_download_recorded);
}

void api_bundles_content(struct dems_req *req)
{
    struct one *o = calloc(1, sizeof *o);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, o, free);
    int r = query_one(req, o, on_content);
    if (r < 0)
        dems_resp_err(req, r);
}
