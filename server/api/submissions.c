/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Triage of public submissions, by the officers of the case whose link they
 * came through (docs/api.md, "Triage"):
 *
 *   GET  /v1/cases/{id}/submissions?state=         the queue (default: submitted)
 *   POST /v1/cases/{id}/submissions/{sid}/accept   its files become exhibits
 *   POST /v1/cases/{id}/submissions/{sid}/reject   {"reason"}: kept for
 *                                                  portal_reject_retention_days, then disposed of
 *
 * Submitted material is evidence already (hashed, encrypted, INGESTED) but
 * no exhibit until accepted; so is what was extracted from its ZIP archives
 * (server/jobs/unpack.c), listed under each archive and made an exhibit
 * with it when it may be media. Accepting appends one EXHIBIT_ADDED entry per
 * file (each inserting its exhibit, naming the submission) and then
 * SUBMISSION_ACCEPTED, which marks the submission; rejecting appends
 * SUBMISSION_REJECTED. Each entry is in the transaction of its change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/runtime.h"

#include "api_int.h"

#define MAX_FILES    10000 /* the files of one submission and what its archives held */
#define MAX_PREFIX   24
#define TRIAGE_ROLES (API_CASE_ADMIN | API_CASE_MEMBERS)

struct triage {
    struct api_case c; /* first: api_case_load fills it */
    char sid[24];
    char reference[24];
    json_t *made; /* accept: the exhibits, as answered */
    size_t pending;
    int first_err;
};

static void triage_free(void *p)
{
    struct triage *t = p;
    json_decref(t->made);
    free(t);
}

static struct triage *triage_new(struct dems_req *req)
{
    struct triage *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, t, triage_free);
    return t;
}

/* ---- the queue ---- */

/* $1 case id, $2 state or NULL (all), $3 cursor, $4 limit, $5 submission or NULL. */
/* clang-format off */
#define LIST_SQL                                                                                   \
    "SELECT s.id, s.reference, s.state, s.description, s.location,"                               \
    " " API_TS("s.recorded_from") " AS recorded_from, " API_TS("s.recorded_to") " AS recorded_to," \
    " s.clock_offset_seconds, s.contact_name, s.contact_email, s.contact_phone,"                   \
    " " API_TS("s.created_at") " AS created_at, " API_TS("s.submitted_at") " AS submitted_at,"     \
    " db.username AS decided_by, " API_TS("s.decided_at") " AS decided_at, s.reason,"              \
    " " API_TS("s.dispose_after") " AS dispose_after, l.id AS link_id, l.kind, l.title,"           \
    " (SELECT coalesce(json_agg(json_build_object('evidence', u.evidence_id, 'filename',"         \
    "  u.metadata->>'filename', 'size', u.length, 'content_type', a.content_type,"                 \
    "  'preview', " API_PREVIEW_STATE_SQL("u.evidence_id") ", 'exhibit', (SELECT x.reference"      \
    "  FROM exhibits x WHERE x.case_id = l.case_id AND x.artefact = u.evidence_id"                 \
    "  AND x.removed_at IS NULL), 'format', a.format, 'needs_conversion', a.needs_conversion,"     \
    "  'archive', " API_ARCHIVE_SQL("u.evidence_id", "l.case_id", "100") ")"                        \
    "  ORDER BY u.created_at, u.id), '[]') FROM uploads u"                                         \
    "  JOIN artefacts a ON a.id = u.evidence_id WHERE u.owner_submission_id = s.id"                \
    "  AND u.state = 'complete')::text AS files"                                                   \
    " FROM submissions s JOIN submission_links l ON l.id = s.link_id"                              \
    " LEFT JOIN users db ON db.id = s.decided_by"                                                  \
    " WHERE l.case_id = $1::bigint AND ($2::text IS NULL OR s.state = $2) AND s.id > $3::bigint"   \
    " AND ($5::bigint IS NULL OR s.id = $5::bigint) ORDER BY s.id LIMIT $4::integer"
/* clang-format on */

static json_t *submission_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_error_t jerr;
    json_t *files = json_loads(api_col(res, row, "files"), 0, &jerr);
    if (!json_is_array(files)) {
        json_decref(files);
        files = json_array();
    }
    json_t *o = json_pack(
        "{s:I,s:s,s:s,s:s,s:{s:I,s:s,s:s},s:o,s:{s:s,s:s}}", "id",
        (json_int_t)api_col_int(res, row, "id"), "reference", api_col(res, row, "reference"),
        "state", api_col(res, row, "state"), "created_at", api_col(res, row, "created_at"), "link",
        "id", (json_int_t)api_col_int(res, row, "link_id"), "kind", api_col(res, row, "kind"),
        "title", api_col(res, row, "title"), "files", files, "statement", "description",
        api_col(res, row, "description"), "location", api_col(res, row, "location"));
    if (o == NULL)
        return NULL;
    json_t *st = json_object_get(o, "statement");
    static const char *const opt[] = {"recorded_from", "recorded_to", "contact_name",
                                      "contact_email", "contact_phone"};
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        json_object_set_new(st, opt[i], api_col_json_str(res, row, opt[i]));
    json_object_set_new(st, "clock_offset_seconds",
                        api_col_null(res, row, "clock_offset_seconds")
                            ? json_null()
                            : json_integer(api_col_int(res, row, "clock_offset_seconds")));
    static const char *const more[] = {"submitted_at", "decided_by", "decided_at", "reason",
                                       "dispose_after"};
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
        json_object_set_new(o, more[i], api_col_json_str(res, row, more[i]));
    return o;
}

static void on_list(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "submissions", "id", submission_json);
}

static void list_loaded(struct dems_req *req, struct api_case *c)
{
    struct api_page page;
    char after[24], limit[24], state[16];
    const char *st;
    if (!api_page_by_id(req, &page, after, limit) ||
        !api_text_param(req, "state", sizeof(state) - 1, state, &st))
        return;
    static const char *const states[] = {"open",     "submitted", "accepted",
                                         "rejected", "disposed",  "all"};
    bool ok = st == NULL;
    for (size_t i = 0; !ok && i < sizeof(states) / sizeof(states[0]); i++)
        ok = strcmp(st, states[i]) == 0;
    if (!ok) {
        api_bad_param(req, "state", "must be open, submitted, accepted, rejected, disposed or all");
        return;
    }
    const char *filter = st == NULL ? "submitted" : strcmp(st, "all") == 0 ? NULL : st;
    const char *params[] = {c->id_s, filter, after, limit, NULL};
    int r = dems_db_req(req, LIST_SQL, 5, params, on_list);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_submissions_list(struct dems_req *req)
{
    if (triage_new(req) != NULL)
        api_case_load(req, TRIAGE_ROLES, list_loaded);
}

/* ---- one submission, after a decision ---- */

static void on_one(struct dems_req *req, const PGresult *res, int err)
{
    struct triage *t = dems_req_data(req);
    if (!api_found(req, res, err, "submission_not_found", "no such submission of this case"))
        return;
    json_t *o = submission_json(req, res, 0);
    if (o != NULL && t->made != NULL)
        json_object_set(o, "exhibits_added", t->made);
    dems_resp_json(req, 200, o);
}

static void answer_one(struct dems_req *req, struct triage *t)
{
    const char *params[] = {t->c.id_s, NULL, "0", "1", t->sid};
    int r = dems_db_req(req, LIST_SQL, 5, params, on_one);
    if (r < 0)
        dems_resp_err(req, r);
}

/* Reads {sid} and loads the submission's state in this case; next(req, row). */
static void load_submission(struct dems_req *req, struct triage *t,
                            void (*next)(struct dems_req *req, const PGresult *res, int err))
{
    struct dems_str p = dems_req_param(req, 1);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "submission_not_found", "no such submission of this case");
        return;
    }
    snprintf(t->sid, sizeof(t->sid), "%lld", (long long)id);
    const char *params[] = {t->sid, t->c.id_s};
    int r = dems_db_req(
        req,
        "SELECT s.state, s.reference, s.link_id,"
        " (SELECT coalesce(json_agg(json_build_object('evidence', f.evidence_id, 'filename',"
        "  f.filename) ORDER BY f.created_at, f.id, f.idx), '[]') FROM (SELECT DISTINCT ON"
        "  (v.evidence_id) v.* FROM (SELECT u.evidence_id, u.metadata->>'filename' AS filename,"
        "  u.created_at, u.id, -1 AS idx FROM uploads u WHERE u.owner_submission_id = s.id"
        "  AND u.state = 'complete' AND u.evidence_id IS NOT NULL"
        /* and what was extracted from its archives that may be media (docs/api.md) */
        "  UNION ALL SELECT m.artefact, m.path, u.created_at, u.id, m.idx FROM uploads u"
        "  JOIN archive_members m ON m.archive = u.evidence_id WHERE u.owner_submission_id = s.id"
        "  AND u.state = 'complete' AND m.artefact IS NOT NULL"
        "  AND m.kind IN ('video', 'image', 'audio', 'unknown')) v WHERE NOT EXISTS"
        "  (SELECT 1 FROM exhibits x WHERE x.case_id = l.case_id AND x.artefact = v.evidence_id"
        "  AND x.removed_at IS NULL) ORDER BY v.evidence_id, v.created_at, v.id, v.idx) f)::text"
        "  AS files,"
        " (SELECT count(*) FROM uploads u JOIN jobs j ON j.kind = 'unpack'"
        "  AND j.dedupe_key = 'unpack-' || u.evidence_id WHERE u.owner_submission_id = s.id"
        "  AND j.state IN ('queued', 'running', 'failed')) AS unpacking,"
        " (SELECT count(*) FROM uploads u WHERE u.owner_submission_id = s.id"
        "  AND u.state = 'complete') AS complete,"
        " (SELECT count(*) FROM uploads u WHERE u.owner_submission_id = s.id"
        "  AND u.state = 'complete' AND u.evidence_id IS NULL) AS unrecorded"
        " FROM submissions s JOIN submission_links l ON l.id = s.link_id"
        " WHERE s.id = $1::bigint AND l.case_id = $2::bigint",
        2, params, next);
    if (r < 0)
        dems_resp_err(req, r);
}

/* False (answered 409) unless the submission awaits triage. */
static bool awaiting(struct dems_req *req, const PGresult *res)
{
    const char *state = api_col(res, 0, "state");
    if (strcmp(state, "submitted") == 0)
        return true;
    char msg[160];
    snprintf(msg, sizeof(msg), "the submission is %s: only a submitted one is triaged",
             strcmp(state, "open") == 0 ? "still open (its submitter has not finished it)" : state);
    dems_resp_error(req, 409, "submission_not_pending", msg);
    return false;
}

/* ---- accept ---- */

static void decided(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct triage *t = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ENOTFOUND)
            dems_resp_error(req, 409, "submission_not_pending",
                            "the submission was decided meanwhile");
        else if (item->err < 0)
            api_case_changed(req, item, "the submission");
        else
            answer_one(req, t);
    }
    dems_req_unref(req);
}

static struct dems_ledger_item *decision(struct dems_req *req, struct triage *t,
                                         enum dems_ledger_type type, json_t *payload,
                                         const char *sql, const char *extra)
{
    struct dems_ledger_item *it = api_case_item(req, &t->c, type);
    if (it == NULL) {
        json_decref(payload);
        return NULL;
    }
    it->payload = payload;
    it->pre_sql = strdup(sql);
    it->pre_nparams = extra != NULL ? 3 : 2;
    it->pre_must_change = true;
    it->pre_params[0] = strdup(t->sid);
    it->pre_params[1] = strdup(t->c.who.user_id);
    it->pre_params[2] = extra != NULL ? strdup(extra) : NULL;
    if (it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || (extra != NULL && it->pre_params[2] == NULL)) {
        dems_ledger_item_free(it);
        return NULL;
    }
    return it;
}

static void finish_accept(struct dems_req *req, struct triage *t)
{
    json_t *payload = json_pack("{s:I,s:I,s:s,s:O}", "case_id", (json_int_t)t->c.id, "submission",
                                (json_int_t)api_id(t->sid, strlen(t->sid)), "reference",
                                t->reference, "exhibits", t->made);
    struct dems_ledger_item *it = decision(
        req, t, DEMS_LEDGER_SUBMISSION_ACCEPTED, payload,
        "UPDATE submissions SET state = 'accepted', decided_by = $2::bigint, decided_at = now()"
        " WHERE id = $1::bigint AND state = 'submitted'",
        NULL);
    if (it == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, decided);
}

static void on_exhibit(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct triage *t = dems_req_data(req);
    if (item->err < 0 && t->first_err == 0)
        t->first_err = item->err;
    if (--t->pending == 0 && !dems_req_is_aborted(req)) {
        if (t->first_err == DEMS_ECONFLICT)
            dems_resp_error(req, 409, "exhibit_reference_taken",
                            "an exhibit reference or file was taken meanwhile: nothing more was "
                            "added; accept again to add the rest");
        else if (t->first_err < 0)
            api_case_changed(req, item, "the exhibits");
        else
            finish_accept(req, t);
    }
    dems_req_unref(req);
}

/* A reference for file i: "<prefix>/<i + 1>". */
static void file_reference(const char *prefix, size_t i, char out[static MAX_PREFIX + 24])
{
    snprintf(out, MAX_PREFIX + 24, "%s/%zu", prefix, i + 1);
}

static void on_refs_free(struct dems_req *req, const PGresult *res, int err)
{
    struct triage *t = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (api_col_int(res, 0, "taken") > 0) {
        dems_resp_error(req, 409, "exhibit_reference_taken",
                        "an exhibit reference with that prefix is taken in this case: give another "
                        "\"reference_prefix\"");
        return;
    }
    /* Every file in one go: each EXHIBIT_ADDED inserts its exhibit. */
    json_t *body = dems_req_json(req);
    const char *desc = json_string_value(json_object_get(body, "description"));
    size_t n = json_array_size(t->made);
    t->pending = n;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(t->made, i);
        const char *ev = json_string_value(json_object_get(x, "evidence"));
        const char *ref = json_string_value(json_object_get(x, "reference"));
        const char *name = json_string_value(json_object_get(x, "filename"));
        char text[600];
        snprintf(text, sizeof(text), "%s (public submission %s: %.300s)",
                 desc != NULL ? desc : "Submitted by a member of the public", t->reference,
                 name != NULL ? name : "file");
        struct dems_ledger_item *it = api_case_item(req, &t->c, DEMS_LEDGER_EXHIBIT_ADDED);
        if (it != NULL) {
            it->has_artefact = true;
            dems_hex_decode(ev, 64, it->artefact, 32);
            it->payload = json_pack("{s:I,s:s,s:I}", "case_id", (json_int_t)t->c.id, "exhibit", ref,
                                    "submission", (json_int_t)api_id(t->sid, strlen(t->sid)));
            if (it->payload != NULL)
                dems_ledger_payload_set_text(it->payload, "description", text, strlen(text), 1000);
            it->pre_sql =
                strdup("INSERT INTO exhibits (case_id, artefact, reference, description,"
                       " added_by) VALUES ($1::bigint, $2, $3, left($4, 2000), $5::bigint)");
            it->pre_nparams = 5;
            it->pre_params[0] = strdup(t->c.id_s);
            it->pre_params[1] = strdup(ev);
            it->pre_params[2] = strdup(ref);
            it->pre_params[3] = strdup(text);
            it->pre_params[4] = strdup(t->c.who.user_id);
        }
        bool ok = it != NULL && it->payload != NULL && it->pre_sql != NULL;
        for (int k = 0; ok && k < 5; k++)
            ok = it->pre_params[k] != NULL;
        if (!ok) {
            dems_ledger_item_free(it);
            t->pending = i; /* those submitted answer; none did: answer here */
            if (i == 0)
                dems_resp_err(req, DEMS_ENOMEM);
            else
                t->first_err = DEMS_ENOMEM;
            return;
        }
        api_ledger_submit(req, it, on_exhibit);
    }
}

static void on_accept_row(struct dems_req *req, const PGresult *res, int err)
{
    struct triage *t = dems_req_data(req);
    if (!api_found(req, res, err, "submission_not_found", "no such submission of this case") ||
        !awaiting(req, res))
        return;
    if (api_col_int(res, 0, "unrecorded") > 0) {
        dems_resp_error(req, 409, "submission_recording",
                        "some files are still being recorded: accept in a moment");
        return;
    }
    if (api_col_int(res, 0, "unpacking") > 0) {
        dems_resp_error(req, 409, "submission_unpacking",
                        "an archive is still being unpacked: accept in a moment");
        return;
    }
    snprintf(t->reference, sizeof(t->reference), "%s", api_col(res, 0, "reference"));
    json_error_t jerr;
    json_t *files = json_loads(api_col(res, 0, "files"), 0, &jerr);
    size_t n = json_array_size(files);
    if (!json_is_array(files) || api_col_int(res, 0, "complete") == 0 || n > MAX_FILES) {
        json_decref(files);
        dems_resp_error(req, 409, "no_files", "the submission has no file to accept");
        return;
    }
    if (n == 0) { /* every file is an exhibit of this case already */
        json_decref(files);
        t->made = json_array();
        if (t->made == NULL)
            dems_resp_err(req, DEMS_ENOMEM);
        else
            finish_accept(req, t);
        return;
    }
    const char *prefix = json_string_value(json_object_get(dems_req_json(req), "reference_prefix"));
    char def[MAX_PREFIX + 1];
    if (prefix == NULL) {
        snprintf(def, sizeof(def), "%s", t->reference); /* "S-XXXX-XXXX-XXXX" */
        prefix = def;
    }
    /* Files already exhibits of this case (the same footage sent twice) are not in files. */
    t->made = json_array();
    char refs[(MAX_PREFIX + 26) * 4];
    struct dems_buf lit;
    dems_buf_init(&lit, (MAX_PREFIX + 32) * (MAX_FILES + 1));
    bool ok = t->made != NULL && dems_buf_append(&lit, "{", 1) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *f = json_array_get(files, i);
        char ref[MAX_PREFIX + 24];
        file_reference(prefix, i, ref);
        json_array_append_new(t->made, json_pack("{s:O,s:O,s:s}", "evidence",
                                                 json_object_get(f, "evidence"), "filename",
                                                 json_object_get(f, "filename"), "reference", ref));
        int m = snprintf(refs, sizeof(refs), "%s\"%s\"", i ? "," : "", ref);
        ok = dems_buf_append(&lit, refs, (size_t)m) == 0;
    }
    ok = ok && dems_buf_append(&lit, "}", 2) == 0;
    json_decref(files);
    if (!ok) {
        dems_buf_done(&lit);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    const char *params[] = {t->c.id_s, (const char *)lit.data};
    int r = dems_db_req(req,
                        "SELECT count(*) AS taken FROM exhibits WHERE case_id = $1::bigint"
                        " AND removed_at IS NULL AND lower(reference) IN"
                        " (SELECT lower(r) FROM unnest($2::text[]) r)",
                        2, params, on_refs_free);
    dems_buf_done(&lit);
    if (r < 0)
        dems_resp_err(req, r);
}

static bool prefix_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > MAX_PREFIX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '/' || c == '.'))
            return false;
    }
    return true;
}

static void accept_loaded(struct dems_req *req, struct api_case *c)
{
    struct triage *t = (struct triage *)c;
    const char *prefix, *desc;
    if (!api_case_open(req, c) ||
        !api_get_str(req, "reference_prefix", MAX_PREFIX, false, &prefix) ||
        !api_get_str(req, "description", 1000, false, &desc))
        return;
    if (prefix != NULL && !prefix_ok(prefix)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"reference_prefix\" must be 1-24 of A-Z a-z 0-9 - _ / .");
        return;
    }
    load_submission(req, t, on_accept_row);
}

void api_submissions_accept(struct dems_req *req)
{
    if (triage_new(req) != NULL)
        api_case_load(req, API_CASE_EDITORS, accept_loaded);
}

/* ---- reject ---- */

static void on_reject_row(struct dems_req *req, const PGresult *res, int err)
{
    struct triage *t = dems_req_data(req);
    if (!api_found(req, res, err, "submission_not_found", "no such submission of this case") ||
        !awaiting(req, res))
        return;
    const char *reason = json_string_value(json_object_get(dems_req_json(req), "reason"));
    char days[24];
    struct dems_runtime *rt = malloc(sizeof(*rt));
    if (rt == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_runtime_get(rt);
    uint64_t keep = rt->portal_reject_retention_days;
    free(rt);
    snprintf(days, sizeof(days), "%llu", (unsigned long long)keep);
    json_t *payload = json_pack("{s:I,s:I,s:s,s:I}", "case_id", (json_int_t)t->c.id, "submission",
                                (json_int_t)api_id(t->sid, strlen(t->sid)), "reference",
                                api_col(res, 0, "reference"), "keep_days", (json_int_t)keep);
    if (payload != NULL)
        dems_ledger_payload_set_text(payload, "reason", reason, strlen(reason), 1000);
    struct dems_ledger_item *it = decision(
        req, t, DEMS_LEDGER_SUBMISSION_REJECTED, payload,
        "UPDATE submissions SET state = 'rejected', decided_by = $2::bigint, decided_at = now(),"
        " reason = $4, dispose_after = now() + make_interval(days => $3::int)"
        " WHERE id = $1::bigint AND state = 'submitted'",
        days);
    if (it != NULL) {
        it->pre_nparams = 4;
        it->pre_params[3] = strdup(reason);
    }
    if (it == NULL || it->pre_params[3] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, decided);
}

static void reject_loaded(struct dems_req *req, struct api_case *c)
{
    const char *reason;
    if (!api_get_str(req, "reason", 1000, true, &reason))
        return;
    load_submission(req, (struct triage *)c, on_reject_row);
}

void api_submissions_reject(struct dems_req *req)
{
    if (triage_new(req) != NULL)
        api_case_load(req, API_CASE_EDITORS, reject_loaded);
}
