/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Evidence: GET /v1/evidence/{id} (metadata, hash, ledger sequence) and
 * GET /v1/evidence/{id}/content (the decrypted original, streamed; single
 * HTTP ranges; ETag = the SHA-256). Every content read is ledgered
 * (DOWNLOADED) before its first byte is sent: no record, no download. The
 * bytes are served by serve_blob.c (ranges, ETag, bounded memory). A
 * download by a staff token reads the artefact in the statement that looks
 * the token up (api_evidence_content_fold): one statement per download.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/err.h"
#include "dems/http.h"
#include "dems/str.h"
#include "demsd/auth.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#include "api_int.h"

bool api_evidence_id(struct dems_req *req, char out[static 65])
{
    struct dems_str id = dems_req_param(req, 0);
    uint8_t tmp[32];
    if (id.len != 64 || dems_hex_decode(id.ptr, 64, tmp, 32) < 0) {
        dems_resp_error(req, 404, "not_found", "no such evidence");
        return false;
    }
    for (size_t i = 0; i < 64; i++)
        out[i] = (char)(id.ptr[i] >= 'A' && id.ptr[i] <= 'F' ? id.ptr[i] - 'A' + 'a' : id.ptr[i]);
    out[64] = '\0';
    return true;
}

static void on_evidence(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such evidence"))
        return;
    if (!api_col_bool(res, 0, "visible")) {
        api_evidence_hidden(req, res, api_col(res, 0, "id"), "not_found", "no such evidence");
        return;
    }
    json_error_t jerr;
    json_t *meta = json_loads(api_col(res, 0, "metadata"), 0, &jerr);
    json_t *body =
        json_pack("{s:s,s:s,s:I,s:o,s:s,s:s,s:{s:I}}", "id", api_col(res, 0, "id"), "sha256",
                  api_col(res, 0, "id"), "size", (json_int_t)api_col_int(res, 0, "size"),
                  "metadata", meta != NULL ? meta : json_object(), "uploaded_by",
                  api_col(res, 0, "uploaded_by"), "created_at", api_col(res, 0, "created_at"),
                  "ledger", "ingested_seq", (json_int_t)api_col_int(res, 0, "ingested_seq"));
    if (body == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    if (!api_col_null(res, 0, "content_type"))
        json_object_set_new(body, "content_type", json_string(api_col(res, 0, "content_type")));
    if (!api_col_null(res, 0, "filename"))
        json_object_set_new(body, "filename", json_string(api_col(res, 0, "filename")));
    /* What probing found, the previews made and the preview job's state. */
    json_t *media =
        api_col_null(res, 0, "media") ? NULL : json_loads(api_col(res, 0, "media"), 0, &jerr);
    json_t *prev = api_col_null(res, 0, "previews")
                       ? json_array()
                       : json_loads(api_col(res, 0, "previews"), 0, &jerr);
    json_object_set_new(body, "media", media != NULL ? media : json_null());
    json_object_set_new(body, "previews", prev != NULL ? prev : json_array());
    if (!api_col_null(res, 0, "preview_made_seq"))
        json_object_set_new(json_object_get(body, "ledger"), "preview_made_seq",
                            json_integer(api_col_int(res, 0, "preview_made_seq")));
    if (!api_col_null(res, 0, "preview_job"))
        json_object_set_new(body, "preview_job", json_string(api_col(res, 0, "preview_job")));
    json_object_set_new(body, "disposed_at", api_col_json_str(res, 0, "disposed_at"));
    json_object_set_new(body, "disposal_seq",
                        api_col_null(res, 0, "disposed_seq")
                            ? json_null()
                            : json_integer(api_col_int(res, 0, "disposed_seq")));
    json_object_set_new(body, "deleted_at", api_col_json_str(res, 0, "deleted_at"));
    json_object_set_new(body, "recover_until", api_col_json_str(res, 0, "recover_until"));
    json_object_set_new(body, "retention_policy",
                        api_col_null(res, 0, "retention_policy_id")
                            ? json_null()
                            : json_integer(api_col_int(res, 0, "retention_policy_id")));
    /* What its first bytes are, whether no decoder could read it, and for a
     * submitted ZIP archive what unpacking it gave; the archives it came from. */
    json_object_set_new(body, "format", api_col_json_str(res, 0, "format"));
    json_object_set_new(body, "needs_conversion",
                        json_boolean(api_col_bool(res, 0, "needs_conversion")));
    json_t *archive =
        api_col_null(res, 0, "archive") ? NULL : json_loads(api_col(res, 0, "archive"), 0, &jerr);
    json_t *from = api_col_null(res, 0, "derived_from")
                       ? NULL
                       : json_loads(api_col(res, 0, "derived_from"), 0, &jerr);
    json_object_set_new(body, "archive", archive != NULL ? archive : json_null());
    json_object_set_new(body, "derived_from", from != NULL ? from : json_array());
    dems_resp_json(req, 200, body);
}

/* clang-format off */
#define EVIDENCE_SQL                                                                               \
    "SELECT a.id, a.size, a.content_type, a.filename, a.metadata::text AS metadata,"               \
    " coalesce(u.username, 'device:' || d.serial, 'public:' || ps.reference) AS uploaded_by,"      \
    " " API_TS("a.created_at") " AS created_at, " API_TS("a.disposed_at") " AS disposed_at,"  \
    " " API_TS("a.deleted_at") " AS deleted_at, " API_TS("a.recover_until") " AS recover_until,"  \
    " a.disposed_seq, a.retention_policy_id,"      \
    " (SELECT min(seq) FROM ledger_entries e WHERE e.artefact = a.id"                              \
    "  AND e.type = 'INGESTED') AS ingested_seq,"                                                  \
    " a.media::text AS media,"                                                                     \
    " (SELECT json_agg(json_build_object('kind', x.kind, 'sha256', x.blob, 'size', x.size,"        \
    "  'content_type', x.content_type) ORDER BY x.kind)"                                           \
    "  FROM derivatives x WHERE x.artefact = a.id)::text AS previews,"                             \
    " (SELECT min(seq) FROM ledger_entries e WHERE e.artefact = a.id"                              \
    "  AND e.type = 'PREVIEW_MADE') AS preview_made_seq,"                                          \
    " (SELECT j.state FROM jobs j WHERE j.kind = 'preview'"                                        \
    "  AND j.dedupe_key = 'preview-' || a.id) AS preview_job,"                                     \
    " a.format, a.needs_conversion,"                                                               \
    " " API_ARCHIVE_SQL("a.id", "NULL::bigint", "1000") "::text AS archive,"                       \
    " (SELECT json_agg(json_build_object('archive', dm.archive, 'path', dm.path, 'index', dm.idx)" \
    "  ORDER BY dm.archive, dm.idx) FROM archive_members dm"                                       \
    "  WHERE dm.artefact = a.id)::text AS derived_from,"                                           \
    " " API_VISIBLE_SQL("a.id", "$2", "$3") " AS visible,"                                         \
    " " API_LAPSED_SQL("a.id", "$2") " AS lapsed"                                                  \
    " FROM artefacts a LEFT JOIN users u ON u.id = a.uploaded_by"                                  \
    " LEFT JOIN devices d ON d.id = a.uploaded_by_device"                                          \
    " LEFT JOIN submissions ps ON ps.id = a.uploaded_by_submission WHERE a.id = $1"
/* clang-format on */

void api_evidence_get(struct dems_req *req)
{
    char id[65];
    if (!api_evidence_id(req, id))
        return;
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {id, who.user_id, who.sees_all};
    int r = dems_db_req(req, EVIDENCE_SQL, 3, params, on_evidence);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- content ---- */

/*
 * The artefact read for a download: evidence id, user id and sees-all as SQL
 * text (parameters, or the token lookup's columns when folded). It asks only
 * whether the caller may download; may download implies may see (a share's
 * download right only narrows what it shows). A refusal, which is rare, asks
 * the rest (REFUSED_SQL) to tell 404 from 403 and 410, as before.
 */
/* clang-format off */
#define CONTENT_COLUMNS                                                                            \
    "a.size, coalesce(a.content_type, '') AS content_type,"                                        \
    " coalesce(a.filename, '') AS filename, " API_TS("a.disposed_at") " AS disposed_at,"           \
    " " API_TS("a.deleted_at") " AS deleted_at, " API_TS("a.recover_until") " AS recover_until,"   \
    " a.disposed_seq, a.retention_policy_id"
#define CONTENT_SQL(id, uid, all)                                                                  \
    "SELECT true AS found, " CONTENT_COLUMNS ","                                                   \
    " " API_DOWNLOADABLE_SQL("a.id", uid, all) " AS downloadable"                                  \
    " FROM artefacts a WHERE a.id = " id
/* $1 evidence id, $2 user id, $3 sees all: why a download was refused. */
#define REFUSED_SQL                                                                                \
    "SELECT " CONTENT_COLUMNS ","                                                                  \
    " " API_VISIBLE_SQL("a.id", "$2", "$3") " AS visible,"                                         \
    " " API_LAPSED_SQL("a.id", "$2") " AS lapsed"                                                  \
    " FROM artefacts a WHERE a.id = $1"
/* $1 evidence id, $2 kind, $3 user id, $4 sees all. The artefact's row even
 * without the derivative: a hidden artefact is refused (and recorded)
 * whether or not its preview exists. */
#define DERIVATIVE_SQL                                                                             \
    "SELECT d.blob, d.size, d.content_type, d.kind, " API_TS("a.disposed_at") " AS disposed_at,"  \
    " " API_TS("a.deleted_at") " AS deleted_at, " API_TS("a.recover_until") " AS recover_until,"  \
    " a.disposed_seq, a.retention_policy_id,"  \
    " EXISTS (SELECT 1 FROM"                                                                       \
    " evidence_views v WHERE v.artefact = a.id AND v.kind = $2"                                    \
    " AND v.user_id = $3::bigint) AS viewed,"                                                      \
    " " API_VISIBLE_SQL("a.id", "$3", "$4") " AS visible,"                                         \
    " " API_LAPSED_SQL("a.id", "$3") " AS lapsed"                                                  \
    " FROM artefacts a LEFT JOIN derivatives d ON d.artefact = a.id AND d.kind = $2"               \
    " WHERE a.id = $1"
/* clang-format on */

/*
 * 410 evidence_disposed for an artefact disposed of (its bytes are gone;
 * "disposal_seq": its DISPOSED entry), 410 evidence_deleted for one an
 * approved disposal soft-deleted ("recover_until": an admin may recover it
 * until then).
 */
static bool evidence_disposed(struct dems_req *req, const PGresult *res)
{
    char msg[160];
    if (!api_col_null(res, 0, "disposed_at")) {
        snprintf(msg, sizeof(msg), "this evidence was disposed of at %s (its retention ended)",
                 api_col(res, 0, "disposed_at"));
        dems_resp_problem(req, 410, "evidence_disposed", msg,
                          json_pack("{s:o}", "disposal_seq",
                                    api_col_null(res, 0, "disposed_seq")
                                        ? json_null()
                                        : json_integer(api_col_int(res, 0, "disposed_seq"))));
        return true;
    }
    if (!api_col_null(res, 0, "deleted_at")) {
        snprintf(msg, sizeof(msg),
                 "this evidence is deleted by an approved disposal (recoverable until %s)",
                 api_col(res, 0, "recover_until"));
        dems_resp_problem(req, 410, "evidence_deleted", msg,
                          json_pack("{s:s}", "recover_until", api_col(res, 0, "recover_until")));
        return true;
    }
    return false;
}

/* $1 evidence id, $2 user id, $3 sees all. */
static struct dems_db_stmt content_stmt = DEMS_DB_STMT(CONTENT_SQL("$1", "$2", "$3"), 3);
/* $1 the token's hash, $2 evidence id. */
static struct dems_db_stmt content_folded =
    DEMS_DB_STMT(DEMS_AUTH_FOLD_SQL(CONTENT_SQL("$2", DEMS_AUTH_FOLD_UID, DEMS_AUTH_FOLD_ALL)), 2);

bool api_evidence_content_fold(struct dems_req *req, struct dems_auth_fold *ret)
{
    struct dems_str id = dems_req_param(req, 0);
    uint8_t tmp[32];
    if (id.len != 64 || dems_hex_decode(id.ptr, 64, tmp, 32) < 0)
        return false; /* the handler answers 404 without reading */
    for (size_t i = 0; i < 64; i++)
        ret->text[i] =
            (char)(id.ptr[i] >= 'A' && id.ptr[i] <= 'F' ? id.ptr[i] - 'A' + 'a' : id.ptr[i]);
    ret->text[64] = '\0';
    ret->stmt = &content_folded;
    ret->nparams = 1;
    ret->params[0] = ret->text;
    return true;
}

/* The refusal's reason: not seen (404, or 403 share_ended), disposed of (410), or view only (403).
 */
static void on_refused(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such evidence"))
        return;
    struct api_download *d = dems_req_data(req);
    if (!api_col_bool(res, 0, "visible")) {
        api_evidence_hidden(req, res, d->id, "not_found", "no such evidence");
        return;
    }
    if (evidence_disposed(req, res))
        return;
    dems_auth_refuse(req, "share does not allow downloads", 403, "download_not_shared",
                     "this evidence is shared with you to view, not to download");
}

static void refused(struct dems_req *req, struct api_download *d)
{
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {d->id, who.user_id, who.sees_all};
    int r = dems_db_req(req, REFUSED_SQL, 3, params, on_refused);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_artefact(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such evidence"))
        return;
    if (api_col_null(res, 0, "found")) { /* folded: the token's row, no artefact */
        dems_resp_error(req, 404, "not_found", "no such evidence");
        return;
    }
    struct api_download *d = dems_req_data(req);
    if (!api_col_bool(res, 0, "downloadable")) {
        refused(req, d);
        return;
    }
    if (evidence_disposed(req, res))
        return;
    d->size = (uint64_t)api_col_int(res, 0, "size");
    snprintf(d->content_type, sizeof(d->content_type), "%s", api_col(res, 0, "content_type"));
    /* Raw: start_body makes it safe for the header. A name cut inside a
     * UTF-8 sequence loses that sequence there. */
    snprintf(d->filename, sizeof(d->filename), "%s", api_col(res, 0, "filename"));
    memcpy(d->blob_id, d->id, sizeof(d->blob_id));
    if (!api_download_prepare(req, d))
        return;
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_DOWNLOADED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    it->has_artefact = true;
    dems_hex_decode(d->id, 64, it->artefact, 32);
    it->payload = d->partial ? json_pack("{s:I,s:I}", "first", (json_int_t)d->first, "last",
                                         (json_int_t)d->last)
                             : NULL;
    api_ledger_submit(req, it, api_download_recorded);
}

void api_evidence_content(struct dems_req *req)
{
    struct api_download *d = api_download_new(req);
    if (d == NULL)
        return;
    if (!api_evidence_id(req, d->id))
        return;
    const PGresult *folded = dems_req_folded(req);
    if (folded != NULL) { /* read with the token (api_evidence_content_fold) */
        on_artefact(req, folded, 0);
        return;
    }
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {d->id, who.user_id, who.sees_all};
    int r = dems_db_req_stmt(req, &content_stmt, params, on_artefact);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- previews: the proxy video, poster and thumbnail strip ---- */

static void on_derivative(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    struct api_download *d = dems_req_data(req);
    static const char not_ready[] = "no such evidence, or its preview has not been made (yet)";
    if (PQntuples(res) != 1) {
        dems_resp_error(req, 404, "preview_not_ready", not_ready);
        return;
    }
    if (!api_col_bool(res, 0, "visible")) {
        api_evidence_hidden(req, res, d->id, "preview_not_ready", not_ready);
        return;
    }
    if (evidence_disposed(req, res))
        return;
    if (api_col_null(res, 0, "blob")) {
        dems_resp_error(req, 404, "preview_not_ready", not_ready);
        return;
    }
    snprintf(d->blob_id, sizeof(d->blob_id), "%s", api_col(res, 0, "blob"));
    d->size = (uint64_t)api_col_int(res, 0, "size");
    snprintf(d->content_type, sizeof(d->content_type), "%s", api_col(res, 0, "content_type"));
    d->inline_ = true;
    if (!api_download_prepare(req, d))
        return;
    if (api_col_bool(res, 0, "viewed")) {
        api_download_start(req, d); /* viewed before: ledgered then */
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    const char *kind = api_col(res, 0, "kind");
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_VIEWED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    it->has_artefact = it->has_sha256 = it->has_size = true;
    dems_hex_decode(d->id, 64, it->artefact, 32);
    dems_hex_decode(d->blob_id, 64, it->sha256, 32);
    it->size = d->size;
    it->payload = json_pack("{s:s}", "preview", kind);
    it->pre_sql =
        strdup("INSERT INTO evidence_views (artefact, user_id, kind) VALUES ($1, $2, $3)");
    it->pre_nparams = 3;
    it->pre_params[0] = strdup(d->id);
    it->pre_params[1] = strdup(uid);
    it->pre_params[2] = strdup(kind);
    if (it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || it->pre_params[2] == NULL) {
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_ledger_submit(req, it, api_download_recorded);
}

static void serve_derivative(struct dems_req *req, const char *kind)
{
    struct api_download *d = api_download_new(req);
    if (d == NULL)
        return;
    if (!api_evidence_id(req, d->id))
        return;
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {d->id, kind, who.user_id, who.sees_all};
    int r = dems_db_req(req, DERIVATIVE_SQL, 4, params, on_derivative);
    if (r < 0)
        dems_resp_err(req, r);
}

void api_evidence_preview(struct dems_req *req)
{
    serve_derivative(req, "proxy");
}

void api_evidence_poster(struct dems_req *req)
{
    serve_derivative(req, "poster");
}

void api_evidence_thumbnails(struct dems_req *req)
{
    serve_derivative(req, "sprite_vtt");
}

void api_evidence_sprite(struct dems_req *req)
{
    serve_derivative(req, "sprite");
}
