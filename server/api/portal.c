/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public submission portal's API (docs/api.md, "Public submissions";
 * officers make the links in submission_links.c):
 *
 *   POST /v1/portal/open             {"token"} → what the link asks for (no case data)
 *   POST /v1/portal/submissions      {"token", statement...} → 201: the submission's
 *                                    reference and its bearer token (dems_ps_...)
 *   GET  /v1/portal/submission       the submitter's submission and its files
 *   POST /v1/portal/submission/finish  no more files: SUBMITTED is ledgered
 *   (files go through tus, /v1/uploads, with the submission's bearer token;
 *    the receipt is receipt.c)
 *
 * Nobody here has an account: the link token travels only in request bodies
 * (the page keeps it in the URL fragment), the submission token only in the
 * Authorization header, and no cookie is set. Every client address and
 * every link has a token bucket (rate.c); refusals are answered with a
 * stable code and counted in the log.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/config.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#include "api_int.h"
#include "upload_meta.h"

struct portal_req {
    char token_hex[65]; /* the link token's SHA-256 */
    int64_t link;
    char link_s[24];
    char sub_token[DEMS_TOKEN_TEXT_MAX];
    char sub_hex[65];
    char reference[24];
    char from[24], to[24]; /* recording times, epoch seconds, or "" */
};

static void portal_req_free(void *p)
{
    struct portal_req *r = p;
    dems_memzero(r->sub_token, sizeof(r->sub_token));
    free(r);
}

static struct portal_req *portal_req_new(struct dems_req *req)
{
    struct portal_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, r, portal_req_free);
    return r;
}

/* Answers a refusal with code, and counts it in the log. */
static void refuse(struct dems_req *req, int status, const char *code, const char *detail)
{
    dems_log(DEMS_LOG_INFO, dems_req_id(req), json_pack("{s:s}", "refusal", code),
             "portal: refused (%s)", code);
    dems_resp_error(req, status, code, detail);
}

/* The link a request names by its "token": hashes it into r->token_hex. */
static bool read_token(struct dems_req *req, struct portal_req *r)
{
    const char *token;
    if (!api_get_str(req, "token", DEMS_TOKEN_TEXT_MAX - 1, true, &token))
        return false;
    if (!api_token_text_ok(token)) {
        refuse(req, 404, "link_not_found", "this link is not known: check it was copied whole");
        return false;
    }
    uint8_t hash[32];
    dems_token_hash(token, strlen(token), hash);
    dems_hex_encode(hash, sizeof(hash), r->token_hex);
    return true;
}

/* The link by token hash $1, and whether it still takes submissions. */
#define LINK_SQL                                                                                   \
    "SELECT l.id, l.kind, l.title, l.message, l.submitter_name, l.contact_required,"               \
    " l.max_files, l.max_bytes, " API_TS(                                                          \
        "l.expires_at") " AS expires_at,"                                                          \
                        " CASE WHEN l.revoked_at IS NOT NULL THEN 'revoked' WHEN l.expires_at <= " \
                        "now()"                                                                    \
                        "  THEN 'expired' WHEN (SELECT count(*) FROM submissions s WHERE "         \
                        "s.link_id = l.id)"                                                        \
                        "  >= l.max_submissions THEN 'used' ELSE 'live' END AS state"              \
                        " FROM submission_links l WHERE l.token_hash = decode($1, 'hex')"

/* False (answered) unless the link row res is live: 404 unknown, 410 ended or used. */
static bool link_live(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return false;
    }
    if (PQntuples(res) != 1) {
        refuse(req, 404, "link_not_found", "this link is not known: check it was copied whole");
        return false;
    }
    const char *state = api_col(res, 0, "state");
    if (strcmp(state, "used") == 0) {
        refuse(req, 410, "link_used",
               "this link has been used already. If you started sending files on another "
               "device or browser, finish there; otherwise ask the officer for a new link");
        return false;
    }
    if (strcmp(state, "live") != 0) {
        refuse(req, 410, "link_ended",
               "this link has ended and no longer takes footage. Contact the police if you "
               "still have footage to give");
        return false;
    }
    return true;
}

static json_t *limits_json(struct dems_req *req, const PGresult *res)
{
    return json_pack("{s:I,s:I,s:I}", "max_files", (json_int_t)api_col_int(res, 0, "max_files"),
                     "max_bytes", (json_int_t)api_col_int(res, 0, "max_bytes"), "max_file_size",
                     (json_int_t)dems_req_loop(req)->srv->cfg->upload_max_size);
}

/* ---- open ---- */

static void on_open_link(struct dems_req *req, const PGresult *res, int err)
{
    if (!link_live(req, res, err))
        return;
    json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:s,s:o,s:s}", "kind", api_col(res, 0, "kind"), "title",
                          api_col(res, 0, "title"), "message", api_col(res, 0, "message"),
                          "contact_required", api_col_bool(res, 0, "contact_required"),
                          "expires_at", api_col(res, 0, "expires_at"), "limits",
                          limits_json(req, res), "uploads", "/v1/uploads");
    if (o != NULL)
        json_object_set_new(o, "submitter_name", api_col_json_str(res, 0, "submitter_name"));
    dems_resp_json(req, 200, o);
}

static void open_admitted(struct dems_req *req)
{
    struct portal_req *r = dems_req_data(req);
    const char *params[] = {r->token_hex};
    int e = dems_db_req(req, LINK_SQL, 1, params, on_open_link);
    if (e < 0)
        dems_resp_err(req, e);
}

void api_portal_open(struct dems_req *req)
{
    struct portal_req *r = portal_req_new(req);
    if (r != NULL && read_token(req, r))
        api_rate_take(req, "portal-open", open_admitted);
}

/* ---- a new submission ---- */

/*
 * Free text from the public: bounded by the caller; here no control
 * characters but line breaks and tabs, and none of the bidirectional marks
 * that make text display as other text.
 */
static bool text_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; p[i] != '\0'; i++) {
        if ((p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t') || p[i] == 0x7f)
            return false;
        /* U+202A..U+202E, U+2066..U+2069 */
        if (p[i] == 0xe2 && p[i + 1] == 0x80 && p[i + 2] >= 0xaa && p[i + 2] <= 0xae)
            return false;
        if (p[i] == 0xe2 && p[i + 1] == 0x81 && p[i + 2] >= 0xa6 && p[i + 2] <= 0xa9)
            return false;
    }
    return true;
}

static const struct {
    const char *name;
    size_t max;
    bool required;
} fields[] = {
    {"description", 4000, true},   {"location", 500, true},      {"contact_name", 200, false},
    {"contact_email", 254, false}, {"contact_phone", 40, false},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static bool bad(struct dems_req *req, const char *code, const char *detail)
{
    refuse(req, 400, code, detail);
    return false;
}

/* A recorded_* time v: plausible (2000 .. tomorrow), into out as epoch seconds. */
static bool read_time(struct dems_req *req, const char *name, const char *v, char out[static 24])
{
    int64_t t;
    if (!upload_parse_rfc3339(v, strlen(v), &t) || t < 946684800 ||
        t > (int64_t)time(NULL) + 86400) {
        char msg[120];
        snprintf(msg, sizeof(msg),
                 "field \"%s\" must be a date and time (RFC 3339) between 2000 and today", name);
        return bad(req, "invalid_field", msg);
    }
    snprintf(out, 24, "%lld", (long long)t);
    return true;
}

/* The statement's checks that need no database; false when answered. */
static bool statement_ok(struct dems_req *req, struct portal_req *r)
{
    const char *v[NFIELDS];
    for (size_t i = 0; i < NFIELDS; i++) {
        if (!api_get_str(req, fields[i].name, fields[i].max, fields[i].required, &v[i]))
            return false;
        if (v[i] != NULL && !text_ok(v[i])) {
            char msg[120];
            snprintf(msg, sizeof(msg), "field \"%s\" holds control characters", fields[i].name);
            return bad(req, "invalid_field", msg);
        }
    }
    const char *email = v[3], *phone = v[4];
    if (email != NULL && (strchr(email, '@') == NULL || strchr(email, ' ') != NULL))
        return bad(req, "invalid_field", "field \"contact_email\" is not an e-mail address");
    if (phone != NULL && strspn(phone, "0123456789+-() ") != strlen(phone))
        return bad(req, "invalid_field",
                   "field \"contact_phone\" may hold only digits, spaces and + - ( )");
    int64_t offset;
    bool declared;
    if (!api_get_int(req, "clock_offset_seconds", -7 * 86400, 7 * 86400, 0, &offset) ||
        !api_get_bool(req, "declaration", false, &declared))
        return false;
    if (!declared)
        return bad(req, "declaration_required",
                   "you must confirm that what you give is true to the best of your knowledge");
    const char *from, *to;
    if (!api_get_str(req, "recorded_from", 64, false, &from) ||
        !api_get_str(req, "recorded_to", 64, false, &to))
        return false;
    if ((from != NULL && !read_time(req, "recorded_from", from, r->from)) ||
        (to != NULL && !read_time(req, "recorded_to", to, r->to)))
        return false;
    if (r->from[0] != '\0' && r->to[0] != '\0' && atoll(r->to) < atoll(r->from))
        return bad(req, "invalid_field", "field \"recorded_to\" is before \"recorded_from\"");
    return true;
}

/* "S-XXXX-XXXX-XXXX" in Crockford's base32 (no I, L, O, U): 60 random bits. */
static void new_reference(char out[static 24])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint8_t rnd[12];
    randombytes_buf(rnd, sizeof(rnd));
    size_t o = 0;
    out[o++] = 'S';
    for (size_t i = 0; i < 12; i++) {
        if (i % 4 == 0)
            out[o++] = '-';
        out[o++] = alphabet[rnd[i] & 31];
    }
    out[o] = '\0';
}

/* One row while the link has room ($1 link; the rest as the columns). */
#define INSERT_SQL                                                                                 \
    "INSERT INTO submissions (link_id, reference, token_hash, description, location,"              \
    " recorded_from, recorded_to, clock_offset_seconds, contact_name, contact_email,"              \
    " contact_phone, declared_at, address) SELECT $1::bigint, $2, decode($3, 'hex'), $4, $5,"      \
    " to_timestamp(nullif($6, '')::bigint), to_timestamp(nullif($7, '')::bigint),"                 \
    " $8::integer, $9, $10, $11, now(), $12"                                                       \
    " FROM submission_links l WHERE l.id = $1::bigint AND l.revoked_at IS NULL"                    \
    " AND l.expires_at > now() AND (SELECT count(*) FROM submissions s"                            \
    " WHERE s.link_id = l.id) < l.max_submissions RETURNING id"

static void on_inserted(struct dems_req *req, const PGresult *res, int err)
{
    struct portal_req *r = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) != 1) {
        refuse(req, 410, "link_used", "this link has taken all the submissions it may");
        return;
    }
    dems_log(DEMS_LOG_INFO, dems_req_id(req),
             json_pack("{s:s,s:I}", "submission", r->reference, "link", (json_int_t)r->link),
             "portal: a submission began");
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:I}", "reference", r->reference, "submission_token", r->sub_token,
                  "state", "open", "id", (json_int_t)api_col_int(res, 0, "id"));
    dems_resp_json(req, 201, o);
}

static void link_admitted(struct dems_req *req)
{
    struct portal_req *r = dems_req_data(req);
    json_t *body = dems_req_json(req);
    uint8_t hash[32];
    if (dems_token_new("ps", r->sub_token, hash) < 0) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_hex_encode(hash, sizeof(hash), r->sub_hex);
    new_reference(r->reference);
    char offset[24];
    json_t *off = json_object_get(body, "clock_offset_seconds");
    if (off != NULL)
        snprintf(offset, sizeof(offset), "%lld", (long long)json_integer_value(off));
    const char *params[] = {
        r->link_s,
        r->reference,
        r->sub_hex,
        json_string_value(json_object_get(body, "description")),
        json_string_value(json_object_get(body, "location")),
        r->from,
        r->to,
        off != NULL ? offset : NULL,
        json_string_value(json_object_get(body, "contact_name")),
        json_string_value(json_object_get(body, "contact_email")),
        json_string_value(json_object_get(body, "contact_phone")),
        dems_req_peer(req),
    };
    int e = dems_db_req(req, INSERT_SQL, 12, params, on_inserted);
    if (e < 0)
        dems_resp_err(req, e);
}

static void on_submit_link(struct dems_req *req, const PGresult *res, int err)
{
    struct portal_req *r = dems_req_data(req);
    if (!link_live(req, res, err))
        return;
    json_t *body = dems_req_json(req);
    bool has_contact = json_object_get(body, "contact_email") != NULL ||
                       json_object_get(body, "contact_phone") != NULL;
    if (api_col_bool(res, 0, "contact_required") && !has_contact) {
        refuse(req, 400, "contact_required",
               "this request needs a way to contact you: give an e-mail address or a telephone "
               "number");
        return;
    }
    r->link = api_col_int(res, 0, "id");
    snprintf(r->link_s, sizeof(r->link_s), "%lld", (long long)r->link);
    api_rate_take_link(req, "portal-link", r->link, link_admitted);
}

static void submit_admitted(struct dems_req *req)
{
    struct portal_req *r = dems_req_data(req);
    const char *params[] = {r->token_hex};
    int e = dems_db_req(req, LINK_SQL, 1, params, on_submit_link);
    if (e < 0)
        dems_resp_err(req, e);
}

void api_portal_submit(struct dems_req *req)
{
    struct portal_req *r = portal_req_new(req);
    if (r != NULL && read_token(req, r) && statement_ok(req, r))
        api_rate_take(req, "portal-submit", submit_admitted);
}

/* ---- the submitter's view ---- */

/* $1 submission id. */
#define SUBMISSION_SQL                                                                             \
    "SELECT s.id, s.reference, s.state, s.description, s.location,"                                \
    " " API_TS("s.recorded_from") " AS recorded_from, " API_TS(                                    \
        "s.recorded_to") " AS recorded_to,"                                                        \
                         " s.clock_offset_seconds, s.contact_name, s.contact_email, "              \
                         "s.contact_phone,"                                                        \
                         " " API_TS("s.created_at") " AS created_at, " API_TS(                     \
                             "s.submitted_at") " AS submitted_at,"                                 \
                                               " l.kind, l.title, l.max_files, "                   \
                                               "l.max_bytes, " API_TS(                             \
                                                   "l.expires_at") " AS expires_at,"               \
                                                                   " (l.revoked_at IS NOT NULL "   \
                                                                   "OR l.expires_at <= now()) AS " \
                                                                   "link_ended,"                   \
                                                                   " (SELECT "                     \
                                                                   "coalesce(json_agg(json_build_" \
                                                                   "object('upload', u.id, "       \
                                                                   "'filename',"                   \
                                                                   "  u.metadata->>'filename', "   \
                                                                   "'size', u.length, 'state', "   \
                                                                   "u.state, 'sha256', "           \
                                                                   "u.evidence_id,"                \
                                                                   "  'created_at', " API_TS(      \
                                                                       "u.created_at") ") ORDER "  \
                                                                                       "BY "       \
                                                                                       "u."        \
                                                                                       "created_"  \
                                                                                       "at, "      \
                                                                                       "u.id), "   \
                                                                                       "'[]')"     \
                                                                                       "  FROM "   \
                                                                                       "uploads "  \
                                                                                       "u WHERE "  \
                                                                                       "u.owner_"  \
                                                                                       "submissio" \
                                                                                       "n_id = "   \
                                                                                       "s.id"      \
                                                                                       "  AND "    \
                                                                                       "u.state "  \
                                                                                       "IN "       \
                                                                                       "('"        \
                                                                                       "receiving" \
                                                                                       "', "       \
                                                                                       "'complete" \
                                                                                       "'))::"     \
                                                                                       "text AS "  \
                                                                                       "files"     \
                                                                                       " FROM "    \
                                                                                       "submissio" \
                                                                                       "ns s "     \
                                                                                       "JOIN "     \
                                                                                       "submissio" \
                                                                                       "n_links "  \
                                                                                       "l ON "     \
                                                                                       "l.id = "   \
                                                                                       "s.link_"   \
                                                                                       "id WHERE " \
                                                                                       "s.id = "   \
                                                                                       "$1::"      \
                                                                                       "bigint"

static void on_submission(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "submission_not_found", "no such submission"))
        return;
    json_error_t jerr;
    json_t *files = json_loads(api_col(res, 0, "files"), 0, &jerr);
    if (!json_is_array(files)) {
        json_decref(files);
        files = json_array();
    }
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:b,s:o,s:{s:s,s:s,s:b}}", "reference", api_col(res, 0, "reference"),
        "state", api_col(res, 0, "state"), "created_at", api_col(res, 0, "created_at"), "kind",
        api_col(res, 0, "kind"), "title", api_col(res, 0, "title"), "link_ended",
        api_col_bool(res, 0, "link_ended"), "files", files, "statement", "description",
        api_col(res, 0, "description"), "location", api_col(res, 0, "location"), "declaration", 1);
    if (o == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    json_t *st = json_object_get(o, "statement");
    static const char *const opt[] = {"recorded_from", "recorded_to", "contact_name",
                                      "contact_email", "contact_phone"};
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++)
        json_object_set_new(st, opt[i], api_col_json_str(res, 0, opt[i]));
    json_object_set_new(st, "clock_offset_seconds",
                        api_col_null(res, 0, "clock_offset_seconds")
                            ? json_null()
                            : json_integer(api_col_int(res, 0, "clock_offset_seconds")));
    json_object_set_new(o, "submitted_at", api_col_json_str(res, 0, "submitted_at"));
    json_object_set_new(o, "expires_at", api_col_json_str(res, 0, "expires_at"));
    json_object_set_new(o, "limits",
                        json_pack("{s:I,s:I,s:I}", "max_files",
                                  (json_int_t)api_col_int(res, 0, "max_files"), "max_bytes",
                                  (json_int_t)api_col_int(res, 0, "max_bytes"), "max_file_size",
                                  (json_int_t)dems_req_loop(req)->srv->cfg->upload_max_size));
    dems_resp_json(req, 200, o);
}

static void submitter_id(struct dems_req *req, char out[static 24])
{
    snprintf(out, 24, "%lld", (long long)dems_req_principal(req)->submission_id);
}

void api_portal_submission(struct dems_req *req)
{
    char id[24];
    submitter_id(req, id);
    const char *params[] = {id};
    int e = dems_db_req(req, SUBMISSION_SQL, 1, params, on_submission);
    if (e < 0)
        dems_resp_err(req, e);
}

/* ---- finish ---- */

struct finish {
    char id[24];
    char case_ref[65];
};

static void on_finished(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ENOTFOUND) {
            refuse(req, 409, "submission_closed", "the submission is finished already");
        } else if (item->err < 0) {
            dems_resp_err(req, item->err);
        } else {
            struct finish *f = dems_req_data(req);
            const char *params[] = {f->id};
            int e = dems_db_req(req, SUBMISSION_SQL, 1, params, on_submission);
            if (e < 0)
                dems_resp_err(req, e);
        }
    }
    dems_req_unref(req);
}

/* Only an open submission with every file whole, through a live link. */
static void on_finish_row(struct dems_req *req, const PGresult *res, int err)
{
    struct finish *f = dems_req_data(req);
    if (!api_found(req, res, err, "submission_not_found", "no such submission"))
        return;
    if (strcmp(api_col(res, 0, "state"), "open") != 0) {
        refuse(req, 409, "submission_closed", "the submission is finished already");
        return;
    }
    if (api_col_bool(res, 0, "link_ended")) {
        refuse(req, 410, "link_ended", "the link has ended: the submission cannot be finished");
        return;
    }
    if (api_col_int(res, 0, "receiving") > 0) {
        refuse(req, 409, "uploads_in_progress",
               "some files are still being sent: let them finish, or remove them, first");
        return;
    }
    if (api_col_int(res, 0, "files") == 0) {
        refuse(req, 409, "no_files", "send at least one file before finishing");
        return;
    }
    snprintf(f->case_ref, sizeof(f->case_ref), "%s", api_col(res, 0, "case_reference"));
    char actor[40];
    snprintf(actor, sizeof(actor), "submission/%s", f->id);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_SUBMITTED, DEMS_LEDGER_ACTOR_LINK, actor);
    if (it != NULL) {
        snprintf(it->case_id, sizeof(it->case_id), "%s", f->case_ref);
        it->payload = json_pack(
            "{s:I,s:I,s:s,s:I,s:I}", "submission", (json_int_t)api_id(f->id, strlen(f->id)),
            "submission_link", (json_int_t)api_col_int(res, 0, "link_id"), "reference",
            api_col(res, 0, "reference"), "files", (json_int_t)api_col_int(res, 0, "files"),
            "bytes", (json_int_t)api_col_int(res, 0, "bytes"));
        it->pre_sql =
            strdup("UPDATE submissions SET state = 'submitted', submitted_at = now(),"
                   " submitted_seq = $2::bigint WHERE id = $1::bigint AND state = 'open'");
        it->pre_nparams = 1;
        it->pre_seq = true; /* $2: the receipt proves this entry */
        it->pre_must_change = true;
        it->pre_params[0] = strdup(f->id);
    }
    if (it == NULL || it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, on_finished);
}

void api_portal_finish(struct dems_req *req)
{
    struct finish *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, f, free);
    submitter_id(req, f->id);
    const char *params[] = {f->id};
    int e = dems_db_req(
        req,
        "SELECT s.state, s.reference, s.link_id, c.reference AS case_reference,"
        " (l.revoked_at IS NOT NULL OR l.expires_at <= now()) AS link_ended,"
        " (SELECT count(*) FROM uploads u WHERE u.owner_submission_id = s.id"
        "  AND u.state = 'receiving' AND u.expires_at > now()) AS receiving,"
        " (SELECT count(*) FROM uploads u WHERE u.owner_submission_id = s.id"
        "  AND u.state = 'complete') AS files,"
        " (SELECT coalesce(sum(u.length), 0) FROM uploads u WHERE u.owner_submission_id = s.id"
        "  AND u.state = 'complete') AS bytes"
        " FROM submissions s JOIN submission_links l ON l.id = s.link_id"
        " JOIN cases c ON c.id = l.case_id WHERE s.id = $1::bigint",
        1, params, on_finish_row);
    if (e < 0)
        dems_resp_err(req, e);
}
