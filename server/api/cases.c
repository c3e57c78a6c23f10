/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cases (docs/api.md, "Cases"):
 *   POST  /v1/cases                 create (officers, admins): the creator, if an
 *                                   officer, and the officer in the case become leads
 *   GET   /v1/cases                 the cases the caller has a relation to, filtered, paged
 *   GET   /v1/cases/{id}            one case, with the caller's role in it
 *   PATCH /v1/cases/{id}            title, offence, officer in the case (lead, admin)
 *   POST  /v1/cases/{id}/close      and /reopen (lead, admin)
 * Every change is a ledger entry (CASE_CREATED, CASE_UPDATED) written in the
 * same transaction as the change, naming the case by its reference.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"
#include "upload_meta.h"

struct case_req {
    struct api_case c; /* first: api_case_load fills it */
    char reference[65];
    char oic[DEMS_MAX_USERNAME + 1]; /* officer in the case; "" none */
    bool oic_given;
    bool oic_null;
};

/* ---- one case as JSON ---- */

/* $1 case id, $2 user id, $3 sees all. */
/* clang-format off */
#define CASE_JSON_SQL                                                                              \
    "SELECT c.id, c.reference, c.title, c.offence, c.status, o.username AS officer_in_case,"      \
    " cb.username AS created_by, " API_TS("c.created_at") " AS created_at,"                        \
    " " API_TS("c.updated_at") " AS updated_at, " API_TS("c.closed_at") " AS closed_at,"           \
    " " API_CASE_ROLE_SQL("c.id", "$2", "$3") " AS role,"                                          \
    " (SELECT count(*) FROM exhibits x WHERE x.case_id = c.id AND x.removed_at IS NULL)"           \
    "  AS exhibits,"                                                                               \
    " (SELECT count(*) FROM case_members m WHERE m.case_id = c.id AND m.removed_at IS NULL)"       \
    "  AS members"                                                                                 \
    " FROM cases c LEFT JOIN users o ON o.id = c.officer_in_case"                                  \
    " JOIN users cb ON cb.id = c.created_by"
/* clang-format on */

static json_t *case_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "id", (json_int_t)api_col_int(res, row, "id"),
        "reference", api_col(res, row, "reference"), "title", api_col(res, row, "title"), "status",
        api_col(res, row, "status"), "created_by", api_col(res, row, "created_by"), "created_at",
        api_col(res, row, "created_at"), "updated_at", api_col(res, row, "updated_at"), "exhibits",
        (json_int_t)api_col_int(res, row, "exhibits"), "members",
        (json_int_t)api_col_int(res, row, "members"));
    if (o != NULL) {
        json_object_set_new(o, "offence", api_col_json_str(res, row, "offence"));
        json_object_set_new(o, "officer_in_case", api_col_json_str(res, row, "officer_in_case"));
        json_object_set_new(o, "closed_at", api_col_json_str(res, row, "closed_at"));
        json_object_set_new(o, "my_role", api_col_json_str(res, row, "role"));
    }
    return o;
}

static int answer_status(struct dems_req *req)
{
    struct case_req *cr = dems_req_data(req);
    return cr->c.next == NULL ? 201 : 200; /* created: no case was loaded */
}

static void on_case_json(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "case_not_found", "no such case"))
        return;
    json_t *o = case_json(req, res, 0);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_json(req, answer_status(req), o);
}

/* Answers with the case as it is now; where names it ("c.id = $1" or by reference). */
static void answer_case(struct dems_req *req, const char *where, const char *key)
{
    struct case_req *cr = dems_req_data(req);
    api_viewer(req, &cr->c.who);
    char sql[2048];
    snprintf(sql, sizeof(sql), "%s WHERE %s", CASE_JSON_SQL, where);
    /* The parameter numbering of CASE_JSON_SQL: the key is $1. */
    const char *params[] = {key, cr->c.who.user_id, cr->c.who.sees_all};
    int r = dems_db_req(req, sql, 3, params, on_case_json);
    if (r < 0)
        dems_resp_err(req, r);
}

static struct case_req *case_req_new(struct dems_req *req)
{
    struct case_req *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        dems_resp_err(req, DEMS_ENOMEM);
    else
        dems_req_set_data(req, cr, free);
    return cr;
}

/* ---- create ---- */

static bool reference_ok(struct dems_req *req, const char *ref)
{
    const char *pattern = dems_req_loop(req)->srv->cfg->case_reference_pattern;
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) { /* checked at start */
        dems_resp_err(req, DEMS_EINTERNAL);
        return false;
    }
    bool ok = regexec(&re, ref, 0, NULL, 0) == 0;
    regfree(&re);
    bool printable = true;
    for (const char *p = ref; *p != '\0'; p++)
        printable = printable && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
    if (!ok || !printable) {
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "field \"reference\" must be printable ASCII matching %.100s", pattern);
        dems_resp_error(req, 400, "invalid_reference", detail);
        return false;
    }
    return true;
}

/* Reads "officer_in_case": a username, or null (only when allow_null). */
static bool read_oic(struct dems_req *req, struct case_req *cr, bool allow_null)
{
    json_t *v = json_object_get(dems_req_json(req), "officer_in_case");
    if (v == NULL)
        return true;
    cr->oic_given = true;
    if (json_is_null(v) && allow_null) {
        cr->oic_null = true;
        return true;
    }
    const char *name;
    if (!api_get_str(req, "officer_in_case", DEMS_MAX_USERNAME, true, &name))
        return false;
    if (!dems_auth_username_ok(name)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"officer_in_case\" must name an enabled officer");
        return false;
    }
    snprintf(cr->oic, sizeof(cr->oic), "%s", name);
    dems_auth_username_fold(cr->oic);
    return true;
}

static void on_created(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct case_req *cr = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ECONFLICT)
            dems_resp_error(req, 409, "reference_taken", "a case with that reference exists");
        else if (item->err < 0)
            api_case_changed(req, item, "the case");
        else
            answer_case(req, "lower(c.reference) = lower($1)", cr->reference);
    }
    dems_req_unref(req);
}

static void on_oic(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    struct case_req *cr = dems_req_data(req);
    if (cr->oic[0] != '\0' && (PQntuples(res) != 1 || api_col_null(res, 0, "id"))) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"officer_in_case\" must name an enabled officer");
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    json_t *body = dems_req_json(req);
    const char *title = json_string_value(json_object_get(body, "title"));
    const char *offence = json_string_value(json_object_get(body, "offence"));
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_CASE_CREATED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it != NULL) {
        snprintf(it->case_id, sizeof(it->case_id), "%s", cr->reference);
        it->payload = json_pack("{s:s}", "reference", cr->reference);
        if (it->payload != NULL) {
            dems_ledger_payload_set_text(it->payload, "title", title, strlen(title), 400);
            if (offence != NULL)
                dems_ledger_payload_set_text(it->payload, "offence", offence, strlen(offence), 400);
            if (cr->oic[0] != '\0')
                json_object_set_new(it->payload, "officer_in_case", json_string(cr->oic));
        }
        char uid[24];
        snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
        /* The case, and its leads: the officer in the case and the creator
         * when an officer (administrators see every case anyway). */
        it->pre_sql = strdup(
            "WITH c AS (INSERT INTO cases (reference, title, offence, officer_in_case, created_by)"
            " VALUES ($1, $2, $3, $4::bigint, $5::bigint) RETURNING id)"
            " INSERT INTO case_members (case_id, user_id, role, added_by)"
            " SELECT c.id, l.uid, 'lead', $5::bigint FROM c,"
            " (SELECT DISTINCT x AS uid FROM unnest(ARRAY[$4::bigint,"
            "  CASE WHEN $6::boolean THEN $5::bigint END]) x WHERE x IS NOT NULL) l");
        it->pre_nparams = 6;
        it->pre_params[0] = strdup(cr->reference);
        it->pre_params[1] = strdup(title);
        it->pre_params[2] = offence != NULL ? strdup(offence) : NULL;
        it->pre_params[3] = cr->oic[0] != '\0' ? strdup(api_col(res, 0, "id")) : NULL;
        it->pre_params[4] = strdup(uid);
        it->pre_params[5] = strdup(who->role == DEMS_ROLE_OFFICER ? "true" : "false");
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || (offence != NULL && it->pre_params[2] == NULL) ||
        (cr->oic[0] != '\0' && it->pre_params[3] == NULL) || it->pre_params[4] == NULL ||
        it->pre_params[5] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_created);
}

void api_cases_create(struct dems_req *req)
{
    struct case_req *cr = case_req_new(req);
    if (cr == NULL)
        return;
    const char *ref, *title, *offence;
    if (!api_get_str(req, "reference", 64, true, &ref) ||
        !api_get_str(req, "title", 200, true, &title) ||
        !api_get_str(req, "offence", 200, false, &offence) || !reference_ok(req, ref) ||
        !read_oic(req, cr, false))
        return;
    snprintf(cr->reference, sizeof(cr->reference), "%s", ref);
    const char *params[] = {cr->oic};
    int r = dems_db_req(req,
                        "SELECT (SELECT id FROM users WHERE username = $1 AND role = 'officer'"
                        " AND NOT disabled) AS id",
                        1, params, on_oic);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- get ---- */

static void get_loaded(struct dems_req *req, struct api_case *c)
{
    answer_case(req, "c.id = $1", c->id_s);
}

void api_cases_get(struct dems_req *req)
{
    if (case_req_new(req) != NULL)
        api_case_load(req, API_CASE_READERS, get_loaded);
}

/* ---- list ---- */

/*
 * $1 cursor (a case id: the list is newest first by id), $2 user id, $3
 * sees all (as CASE_JSON_SQL has them), $4 limit, $5 text (reference, title, offence), $6 status,
 * $7 tag (an exhibit's), $8 officer in the case, $9/$10 created from/before (epoch seconds), $11
 * member (username).
 */
/* clang-format off */
#define LIST_SQL                                                                                   \
    CASE_JSON_SQL                                                                                  \
    " WHERE " API_CASE_ROLE_SQL("c.id", "$2", "$3") " IS NOT NULL"                                 \
    " AND ($1::bigint IS NULL OR c.id < $1::bigint)"                                               \
    " AND ($5::text IS NULL OR strpos(lower(c.reference || ' ' || c.title || ' '"                  \
    "  || coalesce(c.offence, '')), lower($5)) > 0)"                                               \
    " AND ($6::text IS NULL OR c.status = $6)"                                                     \
    " AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM exhibits tx WHERE tx.case_id = c.id"          \
    "  AND tx.removed_at IS NULL AND tx.tags @> ARRAY[$7::text]))"                                 \
    " AND ($8::text IS NULL OR o.username = $8)"                                                   \
    " AND ($9::bigint IS NULL OR c.created_at >= to_timestamp($9::bigint))"                        \
    " AND ($10::bigint IS NULL OR c.created_at < to_timestamp($10::bigint))"                       \
    " AND ($11::text IS NULL OR EXISTS (SELECT 1 FROM case_members mm JOIN users mu"               \
    "  ON mu.id = mm.user_id WHERE mm.case_id = c.id AND mm.removed_at IS NULL"                    \
    "  AND mu.username = $11))"                                                                    \
    " ORDER BY c.id DESC LIMIT $4::integer"
/* clang-format on */

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "cases", "id", case_json);
}

void api_cases_list(struct dems_req *req)
{
    struct api_page page;
    char after[24], limit[24];
    if (!api_page_by_id(req, &page, after, limit))
        return;
    char q[201], status[8], tag[65], oic[DEMS_MAX_USERNAME + 1], member[DEMS_MAX_USERNAME + 1];
    char from[24], to[24];
    const char *pq, *pstatus, *ptag, *poic, *pmember, *pfrom, *pto;
    if (!api_text_param(req, "q", 200, q, &pq) ||
        !api_text_param(req, "status", 7, status, &pstatus) ||
        !api_text_param(req, "tag", 64, tag, &ptag) ||
        !api_text_param(req, "officer_in_case", DEMS_MAX_USERNAME, oic, &poic) ||
        !api_text_param(req, "member", DEMS_MAX_USERNAME, member, &pmember) ||
        !api_time_param(req, "from", from, &pfrom) || !api_time_param(req, "to", to, &pto))
        return;
    if (pstatus != NULL && strcmp(pstatus, "open") != 0 && strcmp(pstatus, "closed") != 0) {
        api_bad_param(req, "status", "must be open or closed");
        return;
    }
    if (poic != NULL)
        dems_auth_username_fold(oic);
    if (pmember != NULL)
        dems_auth_username_fold(member);
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {page.has_cursor ? after : NULL,
                            who.user_id,
                            who.sees_all,
                            limit,
                            pq,
                            pstatus,
                            ptag,
                            poic,
                            pfrom,
                            pto,
                            pmember};
    int r = dems_db_req(req, LIST_SQL, 11, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- update, close, reopen ---- */

static void on_updated(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct case_req *cr = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            api_case_changed(req, item, "the case");
        else
            answer_case(req, "c.id = $1", cr->c.id_s);
    }
    dems_req_unref(req);
}

static void on_update_oic(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    struct case_req *cr = dems_req_data(req);
    if (cr->oic[0] != '\0' && api_col_null(res, 0, "id")) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"officer_in_case\" must name an enabled officer");
        return;
    }
    json_t *body = dems_req_json(req);
    const char *title = json_string_value(json_object_get(body, "title"));
    json_t *off = json_object_get(body, "offence");
    struct dems_ledger_item *it = api_case_item(req, &cr->c, DEMS_LEDGER_CASE_UPDATED);
    if (it != NULL) {
        it->payload = json_pack("{s:I}", "case_id", (json_int_t)cr->c.id);
        if (it->payload != NULL && title != NULL)
            dems_ledger_payload_set_text(it->payload, "title", title, strlen(title), 400);
        if (it->payload != NULL && off != NULL)
            json_object_set_new(it->payload, "offence", json_deep_copy(off));
        if (it->payload != NULL && cr->oic_given)
            json_object_set_new(it->payload, "officer_in_case",
                                cr->oic_null ? json_null() : json_string(cr->oic));
        /* Unchanged fields keep their values ($n IS NULL and not given). */
        it->pre_sql = strdup(
            "UPDATE cases SET title = coalesce($2, title),"
            " offence = CASE WHEN $3::boolean THEN $4 ELSE offence END,"
            " officer_in_case = CASE WHEN $5::boolean THEN $6::bigint ELSE officer_in_case END,"
            " updated_at = now() WHERE id = $1::bigint AND status = 'open'");
        it->pre_nparams = 6;
        it->pre_must_change = true;
        it->pre_params[0] = strdup(cr->c.id_s);
        it->pre_params[1] = title != NULL ? strdup(title) : NULL;
        it->pre_params[2] = strdup(off != NULL ? "true" : "false");
        it->pre_params[3] = json_is_string(off) ? strdup(json_string_value(off)) : NULL;
        it->pre_params[4] = strdup(cr->oic_given ? "true" : "false");
        it->pre_params[5] = cr->oic[0] != '\0' ? strdup(api_col(res, 0, "id")) : NULL;
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        (title != NULL && it->pre_params[1] == NULL) || it->pre_params[2] == NULL ||
        (json_is_string(off) && it->pre_params[3] == NULL) || it->pre_params[4] == NULL ||
        (cr->oic[0] != '\0' && it->pre_params[5] == NULL)) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_updated);
}

static void update_loaded(struct dems_req *req, struct api_case *c)
{
    struct case_req *cr = (struct case_req *)c;
    if (!api_case_open(req, c))
        return;
    json_t *body = dems_req_json(req);
    const char *title, *offence = NULL;
    json_t *off = json_object_get(body, "offence");
    if (!api_get_str(req, "title", 200, false, &title) ||
        (off != NULL && !json_is_null(off) && !api_get_str(req, "offence", 200, false, &offence)) ||
        !read_oic(req, cr, true))
        return;
    if (title == NULL && off == NULL && !cr->oic_given) {
        dems_resp_error(req, 400, "invalid_field",
                        "nothing to change: give title, offence or officer_in_case");
        return;
    }
    const char *params[] = {cr->oic};
    int r = dems_db_req(req,
                        "SELECT (SELECT id FROM users WHERE username = $1 AND role = 'officer'"
                        " AND NOT disabled) AS id",
                        1, params, on_update_oic);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_cases_update(struct dems_req *req)
{
    if (case_req_new(req) != NULL)
        api_case_load(req, API_CASE_MANAGERS, update_loaded);
}

static void set_status(struct dems_req *req, struct api_case *c, bool close)
{
    if (c->closed == close) {
        dems_resp_error(req, 409, close ? "case_closed" : "case_open",
                        close ? "the case is closed already" : "the case is open already");
        return;
    }
    const char *reason;
    if (!api_get_str(req, "reason", 500, false, &reason))
        return;
    struct dems_ledger_item *it = api_case_item(req, c, DEMS_LEDGER_CASE_UPDATED);
    if (it != NULL) {
        it->payload = json_pack("{s:I,s:s}", "case_id", (json_int_t)c->id, "status",
                                close ? "closed" : "open");
        if (it->payload != NULL && reason != NULL)
            dems_ledger_payload_set_text(it->payload, "reason", reason, strlen(reason), 1000);
        it->pre_sql = strdup(close ? "UPDATE cases SET status = 'closed', closed_at = now(),"
                                     " updated_at = now() WHERE id = $1::bigint AND status = 'open'"
                                   : "UPDATE cases SET status = 'open', closed_at = NULL,"
                                     " updated_at = now() WHERE id = $1::bigint"
                                     " AND status = 'closed'");
        it->pre_nparams = 1;
        it->pre_must_change = true;
        it->pre_params[0] = strdup(c->id_s);
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_updated);
}

static void close_loaded(struct dems_req *req, struct api_case *c)
{
    set_status(req, c, true);
}

static void reopen_loaded(struct dems_req *req, struct api_case *c)
{
    set_status(req, c, false);
}

void api_cases_close(struct dems_req *req)
{
    if (case_req_new(req) != NULL)
        api_case_load(req, API_CASE_MANAGERS, close_loaded);
}

void api_cases_reopen(struct dems_req *req)
{
    if (case_req_new(req) != NULL)
        api_case_load(req, API_CASE_MANAGERS, reopen_loaded);
}
