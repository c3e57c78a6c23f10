/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the handlers in server/api/: JSON field readers that answer 400
 * themselves, the timestamp format, and every handler's prototype (the route
 * table in routes.c names them).
 */
#ifndef DEMS_API_INT_H
#define DEMS_API_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/ledger.h"
#include "demsd/access.h"
#include "demsd/blobs.h"
#include "demsd/http.h"

/* SQL that renders a timestamptz column as RFC 3339 UTC. */
#define API_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/*
 * Reads a string member of the request body. On a missing (when required),
 * non-string, empty or longer-than-max value it answers 400 naming the field
 * and returns false. An absent optional field gives *ret NULL and true.
 */
bool api_get_str(struct dems_req *req, const char *key, size_t max, bool required,
                 const char **ret);

/* A name, reference or label: not empty, no control characters (UTF-8 otherwise free). */
bool api_label_ok(const char *s);

/* True when t looks like a token dems made (dems_token_new: 16..63 of A-Z a-z 0-9 _ -). */
bool api_token_text_ok(const char *t);

/* Reads an optional boolean member; def when absent (400 answered, false, when not a boolean). */
bool api_get_bool(struct dems_req *req, const char *key, bool def, bool *ret);

/* Reads an optional integer member in [min, max]; def when absent. */
bool api_get_int(struct dems_req *req, const char *key, int64_t min, int64_t max, int64_t def,
                 int64_t *ret);

/* Who sees which evidence: DEMS_SEES_SQL (demsd/access.h), the one rule. */
#define API_SEES_SQL(id, uid, all, share_cond) DEMS_SEES_SQL(id, uid, all, share_cond)
/* Sees at all (metadata, previews). */
#define API_VISIBLE_SQL(id, uid, all) API_SEES_SQL(id, uid, all, "true")
/*
 * May read the original: a prosecutor needs a share with download rights.
 * API_SEES_SQL(id, uid, all, "vs.can_download") as a function (migration
 * 0029), whose plan is not set up with the caller's on every execution.
 */
#define API_DOWNLOADABLE_SQL(id, uid, all)                                                         \
    "dems_may_download(" id ", " uid "::bigint, " all "::boolean)"
/*
 * True when a share that covered the artefact for prosecutor uid has been
 * revoked or has expired: such a refusal answers 403 share_ended rather
 * than the 404 of evidence never shared.
 */
#define API_LAPSED_SQL(id, uid)                                                                    \
    "EXISTS (SELECT 1 FROM exhibits lx JOIN shares ls ON ls.case_id = lx.case_id"                  \
    " WHERE lx.artefact = " id " AND ls.prosecutor = " uid "::bigint"                              \
    " AND (ls.revoked_at IS NOT NULL OR ls.expires_at <= now())"                                   \
    " AND (ls.whole_case OR EXISTS (SELECT 1 FROM share_exhibits lse"                              \
    " WHERE lse.share_id = ls.id AND lse.exhibit_id = lx.id)))"

/*
 * The caller's relation to case c (an SQL text expression): 'admin' for
 * administrators (parameter all), the current member role ('lead',
 * 'investigator', 'viewer'), 'prosecutor' for a prosecutor holding a live
 * share of it, or NULL (no relation: the case is hidden, 404).
 */
#define API_CASE_ROLE_SQL(c, uid, all)                                                             \
    "(CASE WHEN " all "::boolean THEN 'admin' ELSE coalesce((SELECT cm.role FROM case_members cm"  \
    " WHERE cm.case_id = " c " AND cm.user_id = " uid "::bigint AND cm.removed_at IS NULL),"       \
    " (SELECT 'prosecutor' FROM shares cs WHERE cs.case_id = " c " AND cs.prosecutor = " uid       \
    "::bigint AND cs.revoked_at IS NULL AND cs.expires_at > now() LIMIT 1)) END)"
/* True when prosecutor uid held a share of case c that was revoked or expired. */
#define API_CASE_LAPSED_SQL(c, uid)                                                                \
    "EXISTS (SELECT 1 FROM shares ls WHERE ls.case_id = " c " AND ls.prosecutor = " uid            \
    "::bigint AND (ls.revoked_at IS NOT NULL OR ls.expires_at <= now()))"
/*
 * True when exhibit x (an alias of exhibits) is one the caller sees within its
 * case, given the caller's case role r (the value of API_CASE_ROLE_SQL): every
 * live exhibit for admins and members; for a prosecutor, those of live shares
 * satisfying share_cond ("true", or "ss.can_download").
 */
#define API_EXHIBIT_SEEN_SQL(x, r, uid, share_cond)                                                \
    "(" x ".removed_at IS NULL AND (" r " IN ('admin', 'lead', 'investigator', 'viewer') OR (" r   \
    " = 'prosecutor' AND EXISTS (SELECT 1 FROM shares ss WHERE ss.case_id = " x ".case_id"         \
    " AND ss.prosecutor = " uid "::bigint AND ss.revoked_at IS NULL AND ss.expires_at > now()"     \
    " AND (" share_cond ") AND (ss.whole_case OR EXISTS (SELECT 1 FROM share_exhibits sse"         \
    " WHERE sse.share_id = ss.id AND sse.exhibit_id = " x ".id))))))"

/* An artefact's preview state (id: an SQL expression naming it): ready,
 * pending, failed, or none (no preview job). */
#define API_PREVIEW_STATE_SQL(id)                                                                  \
    "coalesce((SELECT CASE j.state WHEN 'done' THEN 'ready' WHEN 'dead' THEN 'failed'"             \
    " ELSE 'pending' END FROM jobs j WHERE j.kind = 'preview'"                                     \
    " AND j.dedupe_key = 'preview-' || " id "), 'none')"

/*
 * What unpacking the archive id (an SQL expression naming an artefact) gave,
 * as JSON, or NULL when it is no archive being or having been unpacked
 * (docs/api.md, "Triage"): {"state": pending|done|refused|failed, "error",
 * "entries", "extracted", "skipped", "bytes", "members_total", "members":
 * the first max by their place in the archive, each {"index", "path",
 * "evidence", "size", "format", "kind", "preview", "needs_conversion",
 * "exhibit" (its reference in case c, an SQL bigint or NULL), "skipped",
 * "detail"}}.
 */
/* clang-format off */
#define API_ARCHIVE_SQL(id, c, max)                                                                \
    "(SELECT CASE WHEN o.archive IS NULL AND uj.id IS NULL THEN NULL ELSE json_build_object("      \
    "'state', coalesce(o.state, CASE uj.state WHEN 'dead' THEN 'failed' ELSE 'pending' END),"      \
    " 'error', coalesce(o.error, CASE WHEN uj.state = 'dead' THEN uj.last_error END),"             \
    " 'entries', o.entries, 'extracted', o.extracted, 'skipped', o.skipped, 'bytes', o.bytes,"     \
    " 'members_total', (SELECT count(*) FROM archive_members cm WHERE cm.archive = " id "),"       \
    " 'members', (SELECT coalesce(json_agg(json_build_object('index', am.idx, 'path', am.path,"    \
    " 'evidence', am.artefact, 'size', am.size, 'format', am.format, 'kind', am.kind,"             \
    " 'preview', CASE WHEN am.artefact IS NOT NULL THEN " API_PREVIEW_STATE_SQL("am.artefact")     \
    " END, 'needs_conversion', ma.needs_conversion, 'exhibit', (SELECT x.reference"                \
    " FROM exhibits x WHERE x.case_id = " c " AND x.artefact = am.artefact"                        \
    " AND x.removed_at IS NULL), 'skipped', am.skipped, 'detail', am.detail) ORDER BY am.idx),"    \
    " '[]') FROM (SELECT * FROM archive_members WHERE archive = " id " ORDER BY idx"               \
    " LIMIT " max ") am LEFT JOIN artefacts ma ON ma.id = am.artefact)) END"                       \
    " FROM (SELECT 1) AS one LEFT JOIN archive_unpacks o ON o.archive = " id                       \
    " LEFT JOIN jobs uj ON uj.kind = 'unpack' AND uj.dedupe_key = 'unpack-' || " id ")"
/* clang-format on */

/* The parameters of API_VISIBLE_SQL for the request's caller. */
struct api_viewer {
    char user_id[24];
    const char *sees_all; /* "true" or "false" */
};
void api_viewer(const struct dems_req *req, struct api_viewer *ret);

/*
 * A read the caller may not make of evidence that exists (id: 64 hex
 * digits): records the refusal (ACCESS_DENIED naming the artefact) and answers exactly as if the
 * evidence did not exist (404 with code), so ids of others' evidence cannot be probed. When
 * res (row 0) has a true "lapsed" column (API_LAPSED_SQL: a prosecutor whose share of it
 * ended), answers 403 share_ended instead (dems_auth_refuse).
 */
void api_evidence_hidden(struct dems_req *req, const PGresult *res, const char *id,
                         const char *code, const char *detail);

/* The route's evidence id (64 hex digits, lower-cased into out); false when
 * it is not one (404 not_found answered, as for unknown evidence). */
bool api_evidence_id(struct dems_req *req, char out[static 65]);

/* ---- cases (case_access.c) ---- */

struct dems_ledger_item;

/* A caller's relation to a case, as bits (the roles a case route allows). */
enum {
    API_CASE_ADMIN = 1u << 0,
    API_CASE_LEAD = 1u << 1,
    API_CASE_INVESTIGATOR = 1u << 2,
    API_CASE_VIEWER = 1u << 3,
    API_CASE_PROSECUTOR = 1u << 4, /* a live share */
    API_CASE_MEMBERS = API_CASE_LEAD | API_CASE_INVESTIGATOR | API_CASE_VIEWER,
    API_CASE_EDITORS = API_CASE_ADMIN | API_CASE_LEAD | API_CASE_INVESTIGATOR,
    API_CASE_MANAGERS = API_CASE_ADMIN | API_CASE_LEAD,
    API_CASE_READERS = API_CASE_ADMIN | API_CASE_MEMBERS | API_CASE_PROSECUTOR,
};

struct api_case;
typedef void (*api_case_cb)(struct dems_req *req, struct api_case *c);

/*
 * What a case route knows of its case and caller. A handler's request data
 * (dems_req_set_data) must begin with this struct: api_case_load fills it.
 */
struct api_case {
    int64_t id;
    char id_s[24];
    char reference[65];
    char role[16]; /* admin, lead, investigator, viewer or prosecutor */
    bool closed;
    bool can_download; /* a prosecutor: some live share lets them download */
    struct api_viewer who;
    unsigned allowed;
    api_case_cb next;
};

/*
 * Loads the case named by the route's first parameter and the caller's
 * relation to it, then runs next when the relation is one of allowed.
 * Otherwise answers: 404 case_not_found (no such case, or none the caller
 * has any relation to: ledgered as a refusal), 403 share_ended (a
 * prosecutor whose share was revoked or expired) or 403 forbidden (a role
 * that may not do this); both 403s are ledgered refusals.
 */
void api_case_load(struct dems_req *req, unsigned allowed, api_case_cb next);

/* False (having answered 409 case_closed) when the case is closed. */
bool api_case_open(struct dems_req *req, const struct api_case *c);

/* A ledger item of type by the caller, naming the case (its reference). */
struct dems_ledger_item *api_case_item(struct dems_req *req, const struct api_case *c,
                                       enum dems_ledger_type type);

/* Answers a case change whose ledger item failed (409 or 503); what names the object. */
void api_case_changed(struct dems_req *req, const struct dems_ledger_item *item, const char *what);

/*
 * Reads the body's required "expires_at" (RFC 3339) into out as epoch
 * seconds; false (400 invalid_field, expiry_in_past, or expiry_too_far past
 * share_max_days, answered) when bad. Shares and disclosure links use it.
 */
bool api_case_expiry(struct dems_req *req, char out[static 24]);

/* As api_case_expiry for any "expires_at": optional when default_days > 0
 * (then that many days from now), at most max_days ahead (max_name: the
 * setting that says so, named in the error). */
bool api_expiry_field(struct dems_req *req, uint64_t default_days, uint64_t max_days,
                      const char *max_name, char out[static 24]);

#define API_SELECTION_MAX 10000 /* exhibits one request may name */

/*
 * A choice of a case's exhibits from a request body's "exhibits": absent
 * means all (all = true); else a list of exhibit references (strings, 1 to
 * 32 bytes, matched case-insensitively) and/or exhibit ids (positive
 * integers), as PostgreSQL array literals for $n::bigint[] and $n::text[].
 */
struct api_selection {
    bool all;
    char *ids;  /* "{1,2}" */
    char *refs; /* {"a/1","b/2"} (lower-cased, quoted) */
};

/* Reads the body's "exhibits"; false (having answered 400 invalid_field or
 * empty_selection) when it is not a list of 1 to API_SELECTION_MAX items. */
bool api_selection_read(struct dems_req *req, struct api_selection *sel);
void api_selection_done(struct api_selection *sel);

/* Answers 503/500 for a failed query. */
void api_db_error(struct dems_req *req, const PGresult *res, int err);

/*
 * The prologue of a handler's query callback: answers 503/500 for a failed
 * query, or 404 with code and detail when the result has no row, and
 * returns false; true when there is at least one row to read.
 */
bool api_found(struct dems_req *req, const PGresult *res, int err, const char *code,
               const char *detail);

/*
 * Result columns by name (a query's column order can change without its
 * readers noticing; names cannot). The column must exist: a missing name is
 * a programming error (assert). api_col gives "" for NULL.
 */
const char *api_col(const PGresult *res, int row, const char *name);
bool api_col_null(const PGresult *res, int row, const char *name);
/* A decimal column (signed); 0 when NULL or not a number. */
int64_t api_col_int(const PGresult *res, int row, const char *name);
bool api_col_bool(const PGresult *res, int row, const char *name);
/* A text column as a JSON string, or JSON null when NULL (new reference). */
json_t *api_col_json_str(const PGresult *res, int row, const char *name);

/* Parses a decimal id from a column or path segment; 0 when not one. */
int64_t api_id(const char *s, size_t len);

/*
 * Optional query parameters: text (1..max bytes, copied NUL-terminated into
 * out, which holds max + 1) and an RFC 3339 time (as epoch seconds in out).
 * *ret is out, or NULL when absent; false (400 answered) when bad.
 */
bool api_text_param(struct dems_req *req, const char *name, size_t max, char *out,
                    const char **ret);
bool api_time_param(struct dems_req *req, const char *name, char out[static 24], const char **ret);

/* Answers 400 invalid_parameter: query parameter "name" <why>. */
void api_bad_param(struct dems_req *req, const char *name, const char *why);

/*
 * Ledgered actions: queues item (ownership moves) with done(item, req)
 * to run on the request's loop once it is durable or has failed; holds a
 * reference to req until then, which done must drop (dems_req_unref). When
 * the ledger is stopping, answers 503 itself and done never runs.
 */
struct dems_ledger_item;
void api_ledger_submit(struct dems_req *req, struct dems_ledger_item *item,
                       void (*done)(struct dems_ledger_item *item, void *req));

/*
 * A ledgered change by the calling user: an item of type naming case_ref
 * (NULL: none), with payload (stolen, even on failure) and the
 * pre-statement sql run in the entry's transaction with n params (copied;
 * a NULL is SQL NULL). NULL (after answering 500) when out of memory. The
 * caller sets anything else (artefact, pre_must_change) and submits it.
 */
struct dems_ledger_item *api_change_new(struct dems_req *req, enum dems_ledger_type type,
                                        const char *case_ref, json_t *payload, const char *sql,
                                        int n, const char *const *params);

/*
 * One paging style for every list (docs/api.md, "Lists"): ?limit= (1 to
 * API_PAGE_MAX, default API_PAGE_DEFAULT) and ?cursor= (opaque: the
 * "next_cursor" of the previous page, passed back unchanged). The answer is
 * {"<items>": [...], "next_cursor": "..." | null} with, when another page
 * follows, a Link: <...>; rel="next" header holding the same query with the
 * next cursor. Queries ask for one row more than the page (api_page_sql_limit)
 * so the answer knows whether another page follows.
 */
#define API_PAGE_DEFAULT 50
#define API_PAGE_MAX     200
#define API_CURSOR_MAX   128

struct api_page {
    uint64_t limit;
    bool has_cursor;
    char cursor[API_CURSOR_MAX + 1]; /* [A-Za-z0-9._:@~-] */
};

/* Reads ?limit and ?cursor; answers 400 naming the parameter and returns false when bad. */
bool api_page_parse(struct dems_req *req, struct api_page *ret);

/*
 * For lists in ascending id order: reads ?limit and ?cursor (an id) into
 * page, the id to continue after into after ("0" to start), and the LIMIT
 * into limit. Answers 400 and returns false when a parameter is bad.
 */
bool api_page_by_id(struct dems_req *req, struct api_page *page, char after[static 24],
                    char limit[static 24]);

/* The LIMIT for the page's query (limit + 1), as decimal text. */
void api_page_sql_limit(const struct api_page *page, char out[static 24]);

/*
 * Answers 200 with up to the page's limit of rows of res, each made by item
 * (NULL = out of memory), under the key name; the next cursor is the
 * cursor_col value of the page's last row when res holds more rows than the
 * page.
 */
void api_page_answer(struct dems_req *req, const PGresult *res, const char *name,
                     const char *cursor_col,
                     json_t *(*item)(struct dems_req *req, const PGresult *res, int row));

/* As api_page_answer for items already made (stolen) and a next cursor (NULL = last page). */
void api_page_send(struct dems_req *req, const char *name, json_t *items, const char *next);

/* ---- the ledger (ledger.c, prover.c) ---- */

/* The note verifier key ("name+hash+key") of a ledger key: its name and
 * public key in hex. False when they are malformed. */
bool api_vkey(const char *name, const char *pk_hex, char out[static DEMS_NOTE_VKEY_MAX]);

/*
 * Inclusion proofs of n leaves (index, each < size) against the tree of size
 * leaves, with one query: api_prover_new plans (DEMS_EINVAL for an index
 * past size), api_prover_wanted gives the ledger_subtrees rows to fetch as
 * array literals ($1::smallint[] levels, $2::bigint[] starts; free both),
 * api_prover_feed takes the rows (columns level, start, hash in hex), then
 * api_prover_prove gives leaf i's proof and api_prover_root the root
 * (DEMS_ENOTFOUND when a fed row was missing).
 */
struct api_prover;
struct dems_merkle_proof;
int api_prover_new(uint64_t size, const uint64_t *index, size_t n, struct api_prover **ret);
int api_prover_wanted(const struct api_prover *p, char **ret_levels, char **ret_starts);
void api_prover_feed(struct api_prover *p, const PGresult *res);
/*
 * Plans the proofs of n leaves against size (api_prover_new into *ret) and
 * asks the database for the subtrees they need; cb then feeds them
 * (api_prover_feed). Answers the request's error itself and returns false.
 */
bool api_prover_fetch(struct dems_req *req, uint64_t size, const uint64_t *index, size_t n,
                      struct api_prover **ret,
                      void (*cb)(struct dems_req *req, const PGresult *res, int err));
int api_prover_prove(struct api_prover *p, size_t i, struct dems_merkle_proof *ret);
int api_prover_root(struct api_prover *p, uint8_t ret[static 32]);
void api_prover_free(struct api_prover *p);

/* ---- serving a stored blob (serve_blob.c) ---- */

/*
 * A download in progress: the handler fills the blob to serve and how, then
 * calls api_download_prepare and, once it may send (a ledger entry made),
 * api_download_start. Request data of req (freed with it).
 */
struct api_download {
    char id[65];      /* the artefact, or the name used when filename is empty */
    char blob_id[65]; /* the blob served: the artefact itself or a derivative of it */
    bool inline_;     /* Content-Disposition inline (previews) rather than attachment */
    char content_type[128];
    char filename[256];
    uint64_t size;
    uint64_t first, last; /* the byte range sent (inclusive) */
    bool partial;
    /* producer state */
    struct dems_blob *blob;
    uint64_t pos; /* plaintext offset of the next byte the blob yields */
    bool busy;
    bool finished;
    bool first_ready;  /* the first piece is read (or failed: err) */
    bool start_wanted; /* api_download_start was called: answer once it is ready */
    bool unqueued;     /* the work pool refused the first piece's work */
    int err;
    uint8_t *out;
    size_t out_len, out_cap;
    uint8_t *chunk; /* DEMS_BLOB_CHUNK bytes */
};

/* Attaches a zeroed download to req; NULL (after answering 500) when out of memory. */
struct api_download *api_download_new(struct dems_req *req);

/*
 * Conditional and range checks: answers 304 (If-None-Match on the blob's
 * SHA-256 ETag) or 416 itself and returns false; otherwise sets d's range
 * and output buffer, starts reading the range's first piece on the work
 * pool (nothing is sent before api_download_start), and returns true.
 * d->blob_id and d->size must be set.
 */
bool api_download_prepare(struct dems_req *req, struct api_download *d);

/* Sends the head (ETag, Content-Disposition, Content-Range) and streams d's range. */
void api_download_start(struct dems_req *req, struct api_download *d);

/*
 * The done callback of the ledger entry that records a download or a first
 * view (api_ledger_submit with req as arg): starts the download (req's
 * data) once the entry is durable; DEMS_ECONFLICT (a concurrent request
 * recorded the same first view) counts as recorded; any other failure is 503
 * ledger_unavailable, and nothing is sent.
 */
struct dems_ledger_item;
void api_download_recorded(struct dems_ledger_item *item, void *arg);

/* ---- face search (face_cases.c, face_galleries.c, face_imports.c, face_searches.c) ---- */

/* True when the caller holds the face-search permission; otherwise answers
 * 403 face_search_not_permitted (the refusal ledgered) and returns false. */
bool api_face_permitted(struct dems_req *req);

/* A face track row (track_id, artefact, t_first, t_last, best_t,
 * detections, score, quality, best_box) as JSON with its crop's URL. */
json_t *api_face_track_json(const PGresult *res, int row);

/*
 * Decodes b64 (a JPEG or PNG of at most 10 MiB) and stores it as a blob on
 * the work pool, then runs next on the loop with its SHA-256; a bad image
 * is answered 400 invalid_field naming "image", a big one 413.
 */
typedef void (*api_face_image_cb)(struct dems_req *req, const char *sha);
void api_face_image_put(struct dems_req *req, const char *b64, api_face_image_cb next);

/* Routes are attached in routes.c. */
void api_healthz(struct dems_req *req);
void api_readyz(struct dems_req *req);
void api_openapi(struct dems_req *req);
void api_login(struct dems_req *req);
void api_logout(struct dems_req *req);
void api_me(struct dems_req *req);
void api_totp_enrol(struct dems_req *req);
void api_totp_confirm(struct dems_req *req);
void api_tokens_create(struct dems_req *req);
void api_tokens_list(struct dems_req *req);
void api_tokens_revoke(struct dems_req *req);
void api_admin_users_create(struct dems_req *req);
void api_admin_users_list(struct dems_req *req);
void api_lockouts_list(struct dems_req *req);
void api_lockouts_lift(struct dems_req *req);
void api_uploads_options(struct dems_req *req);
int api_uploads_create_begin(struct dems_req *req);
int api_uploads_patch_begin(struct dems_req *req);
int api_uploads_body(struct dems_req *req, const uint8_t *data, size_t n);
void api_uploads_patch_end(struct dems_req *req);
void api_uploads_get(struct dems_req *req);
void api_uploads_delete(struct dems_req *req);

void api_ledger_key(struct dems_req *req);
void api_ledger_keys(struct dems_req *req);
void api_ledger_rotate_key(struct dems_req *req);
void api_ledger_checkpoint(struct dems_req *req);
/* The log in the C2SP tlog-tiles layout (tiles.c). */
void api_tiles_checkpoint(struct dems_req *req);
void api_tiles_tile(struct dems_req *req);
void api_tiles_entries(struct dems_req *req);
/* server/api/witness.c: the C2SP tlog-witness role. */
int api_witness_body(struct dems_req *req, const uint8_t *data, size_t n);
void api_witness_add_checkpoint(struct dems_req *req);
void api_witness_key(struct dems_req *req);
void api_ledger_entries(struct dems_req *req);
void api_ledger_inclusion(struct dems_req *req);
/* The route's fold hook: the subtree read of an inclusion proof, with the token lookup. */
bool api_ledger_inclusion_fold(struct dems_req *req, struct dems_auth_fold *ret);
void api_ledger_consistency(struct dems_req *req);
void api_ledger_export(struct dems_req *req);
void api_ledger_timestamps(struct dems_req *req); /* timestamps.c */
void api_evidence_get(struct dems_req *req);
void api_evidence_list(struct dems_req *req);
void api_staff_index(struct dems_req *req);
void api_staff_file(struct dems_req *req);
void api_staff_redirect(struct dems_req *req);
void api_devices_list(struct dems_req *req);
void api_devices_enrol(struct dems_req *req);
void api_devices_revoke(struct dems_req *req);
void api_devices_assign(struct dems_req *req);
void api_evidence_content(struct dems_req *req);
/* The route's fold hook: the artefact read of a download, with the token lookup. */
bool api_evidence_content_fold(struct dems_req *req, struct dems_auth_fold *ret);
void api_evidence_preview(struct dems_req *req);
void api_evidence_poster(struct dems_req *req);
void api_evidence_thumbnails(struct dems_req *req);
void api_evidence_sprite(struct dems_req *req);
void api_jobs_list(struct dems_req *req);
void api_jobs_get(struct dems_req *req);
void api_jobs_create(struct dems_req *req);
void api_jobs_retry(struct dems_req *req);
void api_bundles_create(struct dems_req *req);
void api_bundles_list(struct dems_req *req);
void api_bundles_get(struct dems_req *req);
void api_bundles_content(struct dems_req *req);
void api_disclosures_create(struct dems_req *req);
void api_disclosures_list(struct dems_req *req);
void api_disclosures_revoke(struct dems_req *req);
void api_disclosure_page(struct dems_req *req);
void api_disclosure_open(struct dems_req *req);
void api_disclosure_get(struct dems_req *req);
void api_disclosure_bundle(struct dems_req *req);
void api_disclosure_bundle_content(struct dems_req *req);
void api_disclosure_preview(struct dems_req *req);
void api_disclosure_poster(struct dems_req *req);
void api_disclosure_thumbnails(struct dems_req *req);
void api_disclosure_sprite(struct dems_req *req);
void api_portal_page(struct dems_req *req);
void api_portal_file(struct dems_req *req);
void api_submission_links_create(struct dems_req *req);
void api_submission_links_list(struct dems_req *req);
void api_submission_links_revoke(struct dems_req *req);
void api_portal_open(struct dems_req *req);
void api_portal_submit(struct dems_req *req);
void api_portal_submission(struct dems_req *req);
void api_portal_finish(struct dems_req *req);
void api_portal_receipt(struct dems_req *req);
void api_submissions_list(struct dems_req *req);
void api_submissions_accept(struct dems_req *req);
void api_submissions_reject(struct dems_req *req);
void api_evidence_custody(struct dems_req *req);
void api_qr(struct dems_req *req);
void api_admin_users_update(struct dems_req *req);
void api_admin_users_password(struct dems_req *req);
void api_devices_ca(struct dems_req *req);
void api_devices_update(struct dems_req *req);
void api_devices_reenrol(struct dems_req *req);
void api_face_case_status(struct dems_req *req);
void api_face_case_indexing(struct dems_req *req);
void api_face_case_tracks(struct dems_req *req);
void api_face_track_crop(struct dems_req *req);
void api_face_galleries_create(struct dems_req *req);
void api_face_galleries_list(struct dems_req *req);
void api_face_gallery_users_set(struct dems_req *req);
void api_face_subjects_list(struct dems_req *req);
void api_face_subjects_create(struct dems_req *req);
void api_face_subjects_remove(struct dems_req *req);
void api_face_subject_crop(struct dems_req *req);
void api_face_searches_create(struct dems_req *req);
void api_face_searches_list(struct dems_req *req);
void api_face_searches_get(struct dems_req *req);
void api_face_searches_oversight(struct dems_req *req);
void api_retention_policies_list(struct dems_req *req);
void api_retention_policies_create(struct dems_req *req);
void api_retention_case_set(struct dems_req *req);
void api_retention_evidence_set(struct dems_req *req);
void api_holds_list(struct dems_req *req);
void api_holds_create(struct dems_req *req);
void api_holds_release(struct dems_req *req);
void api_disposal_due(struct dems_req *req);
void api_disposal_batches_create(struct dems_req *req);
void api_disposal_batches_list(struct dems_req *req);
void api_disposal_batches_get(struct dems_req *req);
void api_disposal_batch_items(struct dems_req *req);
void api_disposal_batches_approve(struct dems_req *req);
void api_disposal_batches_cancel(struct dems_req *req);
void api_disposal_recover(struct dems_req *req);
/* Housekeeping: queues the erasure of batches whose recovery window has passed. */
void api_disposals_run(struct dems_loop *loop);
void api_metrics(struct dems_req *req);
void api_settings_list(struct dems_req *req);
void api_settings_put(struct dems_req *req);
void api_settings_history(struct dems_req *req);
/* Housekeeping: puts other nodes' setting changes in force here. */
void api_settings_refresh(struct dems_loop *loop);
void api_audit_evidence(struct dems_req *req);
void api_audit_case(struct dems_req *req);
void api_audit_user(struct dems_req *req);
void api_face_imports_create(struct dems_req *req);
void api_face_imports_list(struct dems_req *req);
void api_face_imports_get(struct dems_req *req);

/*
 * Rate limits of public routes (rate.c): takes a token from the PostgreSQL
 * bucket "<what>:<client address>" (public_rate_per_minute, public_rate_burst)
 * and runs next(req) when one was there; otherwise answers 429
 * too_many_requests with Retry-After. api_rate_prune (housekeeping) drops
 * buckets idle long enough to be full again.
 */
void api_rate_take(struct dems_req *req, const char *what, void (*next)(struct dems_req *req));
/* As api_rate_take for the bucket "<what>:<link>" of a public submission
 * link (portal_link_rate_per_minute, portal_link_burst), whoever calls. */
void api_rate_take_link(struct dems_req *req, const char *what, int64_t link,
                        void (*next)(struct dems_req *req));
struct dems_config;
struct dems_db_pool;
void api_rate_prune(struct dems_db_pool *db, const struct dems_config *cfg);
/* Disposes of the material of rejected public submissions whose retention
 * has ended (disposal.c; housekeeping on loop 0). */
struct dems_loop;
void api_disposal_run(struct dems_loop *loop);
void api_cases_create(struct dems_req *req);
void api_cases_list(struct dems_req *req);
void api_cases_get(struct dems_req *req);
void api_cases_update(struct dems_req *req);
void api_cases_close(struct dems_req *req);
void api_cases_reopen(struct dems_req *req);
void api_exhibits_list(struct dems_req *req);
void api_exhibits_search(struct dems_req *req);
void api_exhibits_add(struct dems_req *req);
void api_exhibits_update(struct dems_req *req);
void api_exhibits_remove(struct dems_req *req);
void api_members_list(struct dems_req *req);
void api_members_set(struct dems_req *req);
void api_members_remove(struct dems_req *req);
void api_shares_create(struct dems_req *req);
void api_shares_list(struct dems_req *req);
void api_shares_revoke(struct dems_req *req);
void api_shares_mine(struct dems_req *req);

/* Marks abandoned uploads expired and deletes their staged bytes. */
struct dems_db_pool;
void api_uploads_expire(struct dems_loop *loop);

/* ---- completing uploads (upload_record.c) ---- */

enum upload_outcome_kind {
    UPLOAD_RECORDED,  /* evidence: sha is its id */
    UPLOAD_RECORDING, /* complete and stored, not yet recorded: retried without the client */
    UPLOAD_REJECTED,  /* the declared SHA-256 differed; nothing kept */
    UPLOAD_NOT_READY, /* bytes missing, or a request is writing it */
    UPLOAD_GONE,      /* no such upload, or terminated/expired */
    UPLOAD_FAILED,    /* a step failed (err): retried by HEAD/GET, PATCH, housekeeping */
};

struct upload_outcome {
    enum upload_outcome_kind kind;
    int err;
    uint64_t length;
    uint64_t seq; /* the INGESTED entry (UPLOAD_RECORDED now; 0 when recorded before) */
    char sha[65]; /* the SHA-256 once known, else empty */
};

struct dems_loop;
typedef void (*upload_record_cb)(struct dems_req *req, const struct upload_outcome *o);

/*
 * Completes upload id on loop (upload_record.c): seals it if it holds all
 * its bytes, stores it as complete or rejected, moves it into the blob
 * store and records it. With a waiter (the final PATCH, referenced until
 * then) cb answers it once the outcome is known, unless it was aborted.
 * Returns 0 (also when the waiter joined a completion of id already running
 * on this loop that nobody waited for: cb answers from it), DEMS_EAGAIN (one
 * is running already with a waiter or on another loop: cb never runs) or
 * DEMS_ENOMEM. Loop thread.
 */
int upload_record_start(struct dems_loop *loop, const char *id, struct dems_req *waiter,
                        upload_record_cb cb);

/*
 * Housekeeping: retries uploads left complete but unrecorded or sealed but
 * not complete; at_start (the first run) also completes receiving uploads
 * whose staging file is whole and sealed (a crash before they were recorded).
 */
void upload_record_housekeeping(struct dems_loop *loop, bool at_start);

/* Starts the blob integrity sweep when blob_verify_interval has passed. */
struct dems_loop;
void api_evidence_sweep(struct dems_loop *loop);

#endif
