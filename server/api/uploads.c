/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resumable uploads: tus 1.0.0 core plus the creation, creation-with-upload,
 * termination, checksum (sha256) and expiration extensions, at /v1/uploads.
 *
 * Bytes stream from the parser straight into the upload's staging file and
 * its running SHA-256 (server/store/staging.c); memory per upload is the
 * hash state and a few fixed buffers, whatever the size. A PATCH first checks
 * the upload in PostgreSQL (owner, state, expiry) and the offset, and only
 * then reads its body. A chunk with Upload-Checksum is verified at its end
 * and cut off again if it does not match (460); an interrupted PATCH keeps
 * what arrived unless it carried a checksum. When the last byte arrives the
 * file is fsynced (work pool), its SHA-256 compared with the one the client
 * declared (if any), and the upload becomes complete or rejected.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/store.h"

#include "api_int.h"
#include "upload_meta.h"

#define TUS_VERSION    "1.0.0"
#define TUS_EXTENSIONS "creation,creation-with-upload,termination,checksum,expiration"

static void tus_headers(struct dems_req *req)
{
    dems_resp_header(req, "Tus-Resumable", TUS_VERSION);
}

static void expires_header(struct dems_req *req, const char *http_date)
{
    if (http_date != NULL && http_date[0] != '\0')
        dems_resp_header(req, "Upload-Expires", http_date);
}

static void offset_header(struct dems_req *req, uint64_t offset)
{
    char v[24];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)offset);
    dems_resp_header(req, "Upload-Offset", v);
}

/* Tus-Resumable must name the version we speak (tus core, 412 otherwise). */
static bool check_tus(struct dems_req *req)
{
    const struct dems_str *v = dems_http_head_get(dems_req_head(req), "tus-resumable");
    if (v != NULL && dems_str_eq(*v, DEMS_STR(TUS_VERSION)))
        return true;
    tus_headers(req);
    dems_resp_header(req, "Tus-Version", TUS_VERSION);
    dems_resp_error(req, 412, "tus_version_unsupported", "Tus-Resumable must be " TUS_VERSION);
    return false;
}

/*
 * Reads a tus number header: 1*DIGIT (no sign, exponent, hex or spaces) no
 * larger than 2^63 - 1, as tus's Upload-Length and Upload-Offset are
 * non-negative 64-bit signed integers. A missing (when required) or
 * malformed value answers 400 (missing_header / invalid_header); a well-formed
 * one over limit answers 413 too_large.
 */
static bool header_u64(struct dems_req *req, const char *name, uint64_t limit, bool required,
                       uint64_t *ret, bool *ret_present)
{
    const struct dems_str *v = dems_http_head_get(dems_req_head(req), name);
    *ret_present = v != NULL;
    if (v == NULL && !required)
        return true;
    uint64_t n = 0;
    int r = v != NULL ? dems_parse_u64(v->ptr, v->len, INT64_MAX, &n) : DEMS_EINVAL;
    if (r == 0 && n <= limit) {
        *ret = n;
        return true;
    }
    char msg[128];
    tus_headers(req);
    if (r == 0) {
        snprintf(msg, sizeof(msg), "header %s is over the limit of %llu", name,
                 (unsigned long long)limit);
        dems_resp_error(req, 413, "too_large", msg);
        return false;
    }
    snprintf(msg, sizeof(msg), "header %s must be a whole number of digits up to 2^63-1", name);
    dems_resp_error(req, 400, v == NULL ? "missing_header" : "invalid_header", msg);
    return false;
}

static const struct dems_config *cfg(const struct dems_req *req)
{
    return dems_req_loop(req)->srv->cfg;
}

/* ---- OPTIONS ---- */

void api_uploads_options(struct dems_req *req)
{
    char max[24];
    snprintf(max, sizeof(max), "%llu", (unsigned long long)cfg(req)->upload_max_size);
    tus_headers(req);
    dems_resp_header(req, "Tus-Version", TUS_VERSION);
    dems_resp_header(req, "Tus-Extension", TUS_EXTENSIONS);
    dems_resp_header(req, "Tus-Max-Size", max);
    dems_resp_header(req, "Tus-Checksum-Algorithm", "sha256");
    dems_resp_json(req, 204, NULL);
}

/* ---- a PATCH (or the body of a creation-with-upload POST) ---- */

struct patch {
    char id[33];
    uint64_t client_offset;
    uint64_t length;
    struct dems_staged *staged;
    struct dems_staging_mark start; /* before this chunk (to cut it off), with a checksum */
    bool has_start;
    bool has_checksum;
    uint8_t want_chunk[32];
    struct dems_sha256 chunk_sha;
    bool finished; /* the chunk was accepted or rejected deliberately */
    bool is_create;
    char expires[64];
};

static void patch_free(void *data)
{
    struct patch *p = data;
    if (p->staged != NULL) {
        /* An interrupted chunk that carried a checksum cannot be verified:
         * drop it. One without a checksum is kept (tus: store what came). */
        if (!p->finished && p->has_start)
            dems_staging_rollback(p->staged, &p->start);
        dems_staging_release(p->staged);
    }
    if (p->has_start)
        dems_staging_mark_done(&p->start);
    dems_sha256_done(&p->chunk_sha);
    free(p);
}

static int parse_checksum(struct dems_req *req, struct patch *p)
{
    const struct dems_str *v = dems_http_head_get(dems_req_head(req), "upload-checksum");
    if (v == NULL)
        return 0;
    const char *sp = memchr(v->ptr, ' ', v->len);
    if (sp == NULL || !dems_str_eq_ci((struct dems_str){v->ptr, (size_t)(sp - v->ptr)}, "sha256")) {
        tus_headers(req);
        dems_resp_error(req, 400, "checksum_algorithm_unsupported",
                        "Upload-Checksum must use sha256");
        return DEMS_EINVAL;
    }
    size_t blen = v->len - (size_t)(sp - v->ptr) - 1;
    size_t out = 0;
    if (sodium_base642bin(p->want_chunk, sizeof(p->want_chunk), sp + 1, blen, NULL, &out, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        out != 32) {
        tus_headers(req);
        dems_resp_error(req, 400, "invalid_header", "Upload-Checksum is not base64 of 32 bytes");
        return DEMS_EINVAL;
    }
    if (dems_sha256_init(&p->chunk_sha) < 0)
        return DEMS_ENOMEM;
    p->has_checksum = true;
    return 0;
}

static void start_reading(struct dems_req *req, struct patch *p)
{
    struct dems_staged *s = p->staged;
    if (p->client_offset != s->offset) {
        offset_header(req, s->offset);
        tus_headers(req);
        dems_resp_error(req, 409, "offset_mismatch", "Upload-Offset does not match the upload");
        return;
    }
    const struct dems_http_head *h = dems_req_head(req);
    if (h->has_length && h->content_length > s->length - s->offset) {
        tus_headers(req);
        dems_resp_error(req, 413, "too_large", "the body would pass Upload-Length");
        return;
    }
    if (p->has_checksum && !p->has_start) {
        p->has_start = true;
        if (dems_staging_mark(s, &p->start) < 0) {
            dems_resp_err(req, DEMS_ENOMEM);
            return;
        }
    }
    dems_req_continue(req);
}

static void on_loaded(void *arg);

struct load_job {
    struct dems_req *req;
    char id[33];
    uint64_t length;
    int err;
};

static void load_work(void *arg)
{
    struct load_job *j = arg;
    j->err = dems_staging_load(j->id, j->length);
}

/* Takes the upload's staging state; loads it on the work pool if needed. */
static void acquire(struct dems_req *req, struct patch *p, bool loaded)
{
    int r = dems_staging_acquire(p->id, &p->staged);
    if (r == DEMS_ENOTFOUND && !loaded) {
        struct load_job *j = calloc(1, sizeof(*j));
        if (j == NULL) {
            dems_resp_err(req, DEMS_ENOMEM);
            return;
        }
        j->req = req;
        snprintf(j->id, sizeof(j->id), "%s", p->id);
        j->length = p->length;
        dems_req_ref(req);
        if (dems_work_submit(dems_req_loop(req), load_work, on_loaded, j) < 0) {
            dems_req_unref(req);
            free(j);
            dems_resp_err(req, DEMS_ENOMEM);
        }
        return;
    }
    if (r == DEMS_ECONFLICT) {
        tus_headers(req);
        dems_resp_error(req, 409, "upload_busy", "another request is writing this upload");
        return;
    }
    if (r < 0) {
        dems_resp_error(req, 500, "staging_missing", "the upload's staged bytes are missing");
        return;
    }
    start_reading(req, p);
}

static void on_loaded(void *arg)
{
    struct load_job *j = arg;
    struct dems_req *req = j->req;
    if (!dems_req_is_aborted(req)) {
        if (j->err < 0)
            dems_resp_error(req, 500, "staging_missing", "the upload's staged bytes are missing");
        else
            acquire(req, dems_req_data(req), true);
    }
    dems_req_unref(req);
    free(j);
}

/* Owners are users or devices; SQL renders them as "u<id>" or "d<id>". */
#define OWNER_SQL "coalesce('u' || owner_user_id, 'd' || owner_device_id)"

static void owner_key(const struct dems_req *req, char out[static 24])
{
    const struct dems_principal *pr = dems_req_principal(req);
    if (pr->role == DEMS_ROLE_DEVICE)
        snprintf(out, 24, "d%lld", (long long)pr->device_id);
    else
        snprintf(out, 24, "u%lld", (long long)pr->user_id);
}

static bool is_owner(const struct dems_req *req, const char *owner)
{
    char mine[24];
    owner_key(req, mine);
    return strcmp(owner, mine) == 0;
}

/* Administrators see every upload's state (and may end one); only its owner
 * writes its bytes, so the INGESTED entry's actor is who sent them. */
static bool may_see(const struct dems_req *req, const char *owner)
{
    return dems_req_principal(req)->role == DEMS_ROLE_ADMIN || is_owner(req, owner);
}

static void on_patch_row(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) != 1 || !is_owner(req, PQgetvalue(res, 0, 2)) ||
        strcmp(PQgetvalue(res, 0, 1), "terminated") == 0) {
        tus_headers(req);
        dems_resp_error(req, 404, "not_found", "no such upload");
        return;
    }
    const char *state = PQgetvalue(res, 0, 1);
    if (strcmp(state, "expired") == 0 || PQgetvalue(res, 0, 3)[0] != 't') {
        tus_headers(req);
        dems_resp_error(req, 410, "upload_expired", "the upload expired");
        return;
    }
    if (strcmp(state, "receiving") != 0) {
        tus_headers(req);
        dems_resp_error(req, 409, "upload_finished", "the upload is already finished");
        return;
    }
    const char *len = PQgetvalue(res, 0, 0);
    p->length = (uint64_t)api_id(len, strlen(len));
    snprintf(p->expires, sizeof(p->expires), "%s", PQgetvalue(res, 0, 4));
    acquire(req, p, false);
}

#define HTTP_DATE(col) "to_char(" col " AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS \"GMT\"')"

int api_uploads_patch_begin(struct dems_req *req)
{
    if (!check_tus(req))
        return DEMS_EINVAL;
    const struct dems_str *ct = dems_http_head_get(dems_req_head(req), "content-type");
    if (ct == NULL || !dems_str_eq_ci(*ct, "application/offset+octet-stream")) {
        tus_headers(req);
        dems_resp_error(req, 415, "unsupported_media_type",
                        "PATCH bodies must be application/offset+octet-stream");
        return DEMS_EINVAL;
    }
    struct patch *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return DEMS_ENOMEM;
    dems_req_set_data(req, p, patch_free);
    bool present;
    if (!header_u64(req, "upload-offset", INT64_MAX, true, &p->client_offset, &present) ||
        parse_checksum(req, p) < 0)
        return DEMS_EINVAL;
    struct dems_str id = dems_req_param(req, 0);
    if (!upload_id_ok(id)) {
        tus_headers(req);
        dems_resp_error(req, 404, "not_found", "no such upload");
        return DEMS_ENOTFOUND;
    }
    memcpy(p->id, id.ptr, 32);
    const char *params[] = {p->id};
    int r =
        dems_db_req(req,
                    "SELECT length, state, " OWNER_SQL
                    ", expires_at > now(), " HTTP_DATE("expires_at") " FROM uploads WHERE id = $1",
                    1, params, on_patch_row);
    return r < 0 ? r : DEMS_EAGAIN;
}

int api_uploads_body(struct dems_req *req, const uint8_t *data, size_t n)
{
    struct patch *p = dems_req_data(req);
    if (p == NULL || p->staged == NULL)
        return DEMS_EINVAL; /* a body on a creation without the right type */
    if (n > p->staged->length - p->staged->offset)
        return DEMS_ETOOBIG;
    if (p->has_checksum)
        dems_sha256_update(&p->chunk_sha, data, n);
    return dems_staging_write(p->staged, data, n);
}

struct finish_job {
    struct dems_req *req;
    struct dems_staged *staged;
    uint8_t digest[32];
    int err;
};

static void finish_work(void *arg)
{
    struct finish_job *j = arg;
    j->err = dems_staging_finish(j->staged, j->digest);
}

static void reply_progress(struct dems_req *req, struct patch *p, int status)
{
    tus_headers(req);
    offset_header(req, p->staged->offset);
    expires_header(req, p->expires);
    if (p->is_create) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/uploads/%s", p->id);
        dems_resp_header(req, "Location", loc);
    }
    dems_resp_json(req, status, NULL);
}

/* ---- promotion: complete upload -> encrypted blob + artefact + INGESTED ---- */

struct promote {
    struct dems_req *req;
    char sha[65];
    char size[24];
    char staging[4200];
    int err;
};

static void reply_complete(struct dems_req *req, struct promote *pr)
{
    struct patch *p = dems_req_data(req);
    tus_headers(req);
    dems_resp_header(req, "Upload-Offset", pr->size);
    dems_resp_header(req, "Upload-Sha256", pr->sha);
    dems_resp_header(req, "Evidence-Id", pr->sha);
    if (p->is_create) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/uploads/%s", p->id);
        dems_resp_header(req, "Location", loc);
    }
    dems_resp_json(req, p->is_create ? 201 : 204, NULL);
}

static void on_ingested(struct dems_ledger_item *item, void *arg)
{
    struct promote *pr = arg;
    struct dems_req *req = pr->req;
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0) {
            dems_resp_error(req, 503, "ledger_unavailable",
                            "the upload is complete but could not be recorded as evidence yet");
        } else {
            struct patch *p = dems_req_data(req);
            dems_staging_remove(p->id); /* the encrypted blob holds it now */
            reply_complete(req, pr);
        }
    }
    dems_req_unref(req);
    free(pr);
}

static void promote_work(void *arg)
{
    struct promote *pr = arg;
    struct dems_server *srv = dems_req_loop(pr->req)->srv;
    /* The staging file was encrypted as it arrived and is sealed: it becomes the blob. */
    pr->err = dems_blob_adopt(srv->cfg->data_dir, pr->sha, pr->staging);
}

static char *dup(const char *s)
{
    return strdup(s);
}

static void promote_done(void *arg)
{
    struct promote *pr = arg;
    struct dems_req *req = pr->req;
    struct dems_loop *loop = dems_req_loop(req);
    struct patch *p = dems_req_data(req);
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it = NULL;
    if (!dems_req_is_aborted(req) && pr->err == 0)
        it =
            who->role == DEMS_ROLE_DEVICE
                ? dems_ledger_item_new(DEMS_LEDGER_INGESTED, DEMS_LEDGER_ACTOR_DEVICE, who->serial)
                : dems_ledger_item_new(DEMS_LEDGER_INGESTED, DEMS_LEDGER_ACTOR_USER, who->username);
    if (it == NULL) {
        if (!dems_req_is_aborted(req))
            dems_resp_error(req, 500, "evidence_store_failed",
                            "the upload is complete but could not be stored as evidence");
        dems_req_unref(req);
        free(pr);
        return;
    }
    it->has_artefact = it->has_sha256 = it->has_size = true;
    dems_hex_decode(pr->sha, 64, it->artefact, 32);
    memcpy(it->sha256, it->artefact, 32);
    uint64_t size = 0;
    dems_parse_u64(pr->size, strlen(pr->size), UINT64_MAX, &size);
    it->size = size;
    it->payload = json_pack("{s:s}", "upload", p->id);
    it->pre_sql = dup("WITH a AS (INSERT INTO artefacts (id, size, content_type, filename,"
                      " metadata, uploaded_by, upload_id, uploaded_by_device)"
                      " SELECT $1, length, metadata->>'content_type', metadata->>'filename',"
                      " metadata, owner_user_id, id, owner_device_id FROM uploads WHERE id = $2"
                      " ON CONFLICT (id) DO NOTHING RETURNING id),"
                      /* Its preview, queued in the same transaction (once per content). */
                      " j AS (SELECT dems_enqueue_job('preview', jsonb_build_object('evidence',"
                      " $1::text), 'preview-' || $1) AS job)"
                      " UPDATE uploads SET evidence_id = $1 FROM j WHERE id = $2");
    it->pre_nparams = 2;
    it->pre_params[0] = dup(pr->sha);
    it->pre_params[1] = dup(p->id);
    it->done = on_ingested;
    it->arg = pr;
    if (it->pre_sql == NULL || it->pre_params[0] == NULL || it->pre_params[1] == NULL ||
        dems_ledger_append(loop->srv, loop, it) < 0) {
        if (it->pre_sql == NULL || it->pre_params[0] == NULL || it->pre_params[1] == NULL)
            dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_EUNAVAIL);
        dems_req_unref(req);
        free(pr);
    }
}

static void on_state_stored(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    if (err < 0 || PQntuples(res) != 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    const char *state = PQgetvalue(res, 0, 0);
    dems_staging_close(p->id);
    p->staged = NULL; /* closed: nothing to release */
    if (strcmp(state, "rejected") == 0) {
        dems_staging_remove(p->id);
        tus_headers(req);
        dems_resp_error(req, 422, "sha256_mismatch",
                        "the file's SHA-256 differs from the declared one; nothing was kept");
        return;
    }
    struct promote *pr = calloc(1, sizeof(*pr));
    if (pr == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    pr->req = req;
    snprintf(pr->size, sizeof(pr->size), "%s", PQgetvalue(res, 0, 1));
    snprintf(pr->sha, sizeof(pr->sha), "%s", PQgetvalue(res, 0, 2));
    dems_staging_path(p->id, pr->staging, sizeof(pr->staging));
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), promote_work, promote_done, pr) < 0) {
        dems_req_unref(req);
        free(pr);
        dems_resp_err(req, DEMS_ENOMEM);
    }
}

static void on_finished(void *arg)
{
    struct finish_job *j = arg;
    struct dems_req *req = j->req;
    struct patch *p = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (j->err < 0) {
            dems_resp_err(req, j->err);
        } else {
            char hex[65];
            dems_hex_encode(j->digest, 32, hex);
            const char *params[] = {p->id, hex};
            /* One statement decides: complete when the declared hash (if
             * any) matches, rejected otherwise. */
            int r =
                dems_db_req(req,
                            "UPDATE uploads SET sha256 = $2, updated_at = now(),"
                            " state = CASE WHEN declared_sha256 IS NULL OR declared_sha256 = $2"
                            " THEN 'complete' ELSE 'rejected' END,"
                            " reason = CASE WHEN declared_sha256 IS NULL OR declared_sha256 = $2"
                            " THEN NULL ELSE 'sha256 differs from the declared value' END"
                            " WHERE id = $1 AND state = 'receiving'"
                            " RETURNING state, length, sha256",
                            2, params, on_state_stored);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
    free(j);
}

void api_uploads_patch_end(struct dems_req *req)
{
    struct patch *p = dems_req_data(req);
    struct dems_staged *s = p->staged;
    if (s == NULL) { /* a creation without a body */
        reply_progress(req, p, 201);
        return;
    }
    if (p->has_checksum) {
        uint8_t got[32];
        dems_sha256_final(&p->chunk_sha, got);
        if (sodium_memcmp(got, p->want_chunk, 32) != 0) {
            dems_staging_rollback(s, &p->start);
            p->finished = true;
            tus_headers(req);
            offset_header(req, s->offset);
            dems_resp_error(req, 460, "checksum_mismatch",
                            "the chunk's SHA-256 differs from Upload-Checksum; it was discarded");
            return;
        }
    }
    p->finished = true;
    if (s->offset < s->length) {
        reply_progress(req, p, p->is_create ? 201 : 204);
        return;
    }
    struct finish_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    j->req = req;
    j->staged = s;
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), finish_work, on_finished, j) < 0) {
        dems_req_unref(req);
        free(j);
        dems_resp_err(req, DEMS_ENOMEM);
    }
}

/* ---- POST: creation (and creation-with-upload) ---- */

static void on_created(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    if (err < 0 || PQntuples(res) != 1) {
        dems_staging_remove(p->id);
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    snprintf(p->expires, sizeof(p->expires), "%s", PQgetvalue(res, 0, 0));
    /* The staging file is new and empty: loading it here reads nothing. */
    if (dems_staging_load(p->id, p->length) < 0) {
        dems_resp_error(req, 500, "staging_failed", "cannot create the staging file");
        return;
    }
    acquire(req, p, true);
}

int api_uploads_create_begin(struct dems_req *req)
{
    if (!check_tus(req))
        return DEMS_EINVAL;
    const struct dems_http_head *h = dems_req_head(req);
    if (dems_http_head_get(h, "upload-defer-length") != NULL) {
        tus_headers(req);
        dems_resp_error(req, 400, "defer_length_unsupported", "Upload-Length is required");
        return DEMS_EINVAL;
    }
    struct patch *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return DEMS_ENOMEM;
    p->is_create = true;
    dems_req_set_data(req, p, patch_free);
    bool present;
    if (!header_u64(req, "upload-length", cfg(req)->upload_max_size, true, &p->length, &present))
        return DEMS_EINVAL;
    if ((h->chunked || h->content_length > 0)) {
        const struct dems_str *ct = dems_http_head_get(h, "content-type");
        if (ct == NULL || !dems_str_eq_ci(*ct, "application/offset+octet-stream")) {
            tus_headers(req);
            dems_resp_error(req, 415, "unsupported_media_type",
                            "upload bodies must be application/offset+octet-stream");
            return DEMS_EINVAL;
        }
        if (parse_checksum(req, p) < 0)
            return DEMS_EINVAL;
    }
    const struct dems_str *mh = dems_http_head_get(h, "upload-metadata");
    char declared[65], err[192];
    json_t *meta = upload_meta_parse(mh != NULL ? *mh : DEMS_STR(""), (int64_t)time(NULL), declared,
                                     err, sizeof(err));
    if (meta == NULL) {
        tus_headers(req);
        dems_resp_error(req, 400, "invalid_metadata", err);
        return DEMS_EINVAL;
    }
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof(rnd));
    dems_hex_encode(rnd, sizeof(rnd), p->id);
    if (dems_staging_create(p->id) < 0) {
        json_decref(meta);
        dems_resp_error(req, 500, "staging_failed", "cannot create the staging file");
        return DEMS_EIO;
    }
    char *meta_text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    char owner[24], length[24], expiry[24];
    const struct dems_principal *who = dems_req_principal(req);
    bool device = who->role == DEMS_ROLE_DEVICE;
    snprintf(owner, sizeof(owner), "%lld", (long long)(device ? who->device_id : who->user_id));
    snprintf(length, sizeof(length), "%llu", (unsigned long long)p->length);
    snprintf(expiry, sizeof(expiry), "%llu", (unsigned long long)cfg(req)->upload_expiry);
    const char *params[] = {
        p->id,  device ? NULL : owner, length, meta_text, declared[0] ? declared : NULL,
        expiry, device ? owner : NULL};
    int r = meta_text == NULL ? DEMS_ENOMEM
                              : dems_db_req(req,
                                            "INSERT INTO uploads (id, owner_user_id, length,"
                                            " metadata, declared_sha256, expires_at,"
                                            " owner_device_id)"
                                            " VALUES ($1, $2, $3, $4::jsonb, $5,"
                                            " now() + make_interval(secs => $6::int), $7)"
                                            " RETURNING " HTTP_DATE("expires_at"),
                                            7, params, on_created);
    free(meta_text);
    if (r < 0) {
        dems_staging_remove(p->id);
        return r;
    }
    return DEMS_EAGAIN;
}

/* ---- GET/HEAD: state ---- */

/* Answers GET/HEAD from the upload's row (and its loaded staging state). */
static void reply_state(struct dems_req *req, const PGresult *res)
{
    const char *id = PQgetvalue(res, 0, 0), *state = PQgetvalue(res, 0, 3);
    const char *len = PQgetvalue(res, 0, 2);
    uint64_t length = (uint64_t)api_id(len, strlen(len));
    uint64_t offset = 0;
    if (strcmp(state, "receiving") == 0) {
        int64_t size = dems_staging_size(id);
        offset = size > 0 ? (uint64_t)size : 0;
        expires_header(req, PQgetvalue(res, 0, 8));
    } else if (strcmp(state, "complete") == 0) {
        offset = length;
    }
    json_error_t jerr;
    json_t *meta = json_loads(PQgetvalue(res, 0, 6), 0, &jerr);
    json_t *body =
        json_pack("{s:s,s:s,s:I,s:I,s:o,s:s}", "id", id, "state", state, "offset",
                  (json_int_t)offset, "length", (json_int_t)length, "metadata",
                  meta != NULL ? meta : json_object(), "expires_at", PQgetvalue(res, 0, 7));
    if (body != NULL && !PQgetisnull(res, 0, 5))
        json_object_set_new(body, "sha256", json_string(PQgetvalue(res, 0, 5)));
    if (body != NULL && !PQgetisnull(res, 0, 4))
        json_object_set_new(body, "reason", json_string(PQgetvalue(res, 0, 4)));
    if (!PQgetisnull(res, 0, 9)) {
        dems_resp_header(req, "Evidence-Id", PQgetvalue(res, 0, 9));
        if (body != NULL)
            json_object_set_new(body, "evidence_id", json_string(PQgetvalue(res, 0, 9)));
    }
    tus_headers(req);
    offset_header(req, offset);
    dems_resp_header(req, "Upload-Length", len);
    if (strcmp(state, "terminated") == 0 || strcmp(state, "expired") == 0) {
        json_decref(body);
        dems_resp_error(req, strcmp(state, "expired") == 0 ? 410 : 404,
                        strcmp(state, "expired") == 0 ? "upload_expired" : "not_found",
                        "the upload is gone");
        return;
    }
    dems_resp_json(req, 200, body);
}

struct state_load {
    struct dems_req *req;
    PGresult *row; /* owned copy */
    char id[33];
    uint64_t length;
    int err;
};

static void state_load_work(void *arg)
{
    struct state_load *j = arg;
    j->err = dems_staging_load(j->id, j->length);
}

static void state_loaded(void *arg)
{
    struct state_load *j = arg;
    if (!dems_req_is_aborted(j->req)) {
        if (j->err < 0 && j->err != DEMS_ENOTFOUND)
            dems_resp_err(j->req, j->err);
        else
            reply_state(j->req, j->row);
    }
    dems_req_unref(j->req);
    PQclear(j->row);
    free(j);
}

static void on_state(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) != 1 || !may_see(req, PQgetvalue(res, 0, 1))) {
        tus_headers(req);
        dems_resp_error(req, 404, "not_found", "no such upload");
        return;
    }
    const char *id = PQgetvalue(res, 0, 0);
    if (strcmp(PQgetvalue(res, 0, 3), "receiving") != 0 || dems_staging_loaded(id)) {
        reply_state(req, res);
        return;
    }
    /*
     * The offset a client resumes from must be exact: after a restart it
     * is what re-reading the staging file keeps (whole chunks that
     * decrypt), so load it (work pool) before answering.
     */
    struct state_load *j = calloc(1, sizeof(*j));
    if (j == NULL || (j->row = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES)) == NULL) {
        free(j);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    j->req = req;
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->length = (uint64_t)api_id(PQgetvalue(res, 0, 2), strlen(PQgetvalue(res, 0, 2)));
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), state_load_work, state_loaded, j) < 0) {
        dems_req_unref(req);
        PQclear(j->row);
        free(j);
        dems_resp_err(req, DEMS_ENOMEM);
    }
}

void api_uploads_get(struct dems_req *req)
{
    struct dems_str id = dems_req_param(req, 0);
    if (!upload_id_ok(id)) {
        dems_resp_error(req, 404, "not_found", "no such upload");
        return;
    }
    char idz[33];
    memcpy(idz, id.ptr, 32);
    idz[32] = '\0';
    const char *params[] = {idz};
    int r = dems_db_req(
        req,
        "SELECT id, " OWNER_SQL ", length, state, reason, sha256, metadata::text, " API_TS(
            "expires_at") ", " HTTP_DATE("expires_at") ", evidence_id FROM uploads WHERE id = $1",
        1, params, on_state);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- DELETE: termination ---- */

static void on_terminated(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    tus_headers(req);
    if (PQntuples(res) != 1) {
        dems_resp_error(req, 404, "not_found", "no such upload in progress");
        return;
    }
    if (p->staged != NULL)
        p->staged = NULL; /* freed by dems_staging_remove below */
    dems_staging_remove(p->id);
    dems_resp_json(req, 204, NULL);
}

void api_uploads_delete(struct dems_req *req)
{
    if (!check_tus(req))
        return;
    struct dems_str id = dems_req_param(req, 0);
    struct patch *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, p, patch_free);
    if (!upload_id_ok(id)) {
        tus_headers(req);
        dems_resp_error(req, 404, "not_found", "no such upload");
        return;
    }
    memcpy(p->id, id.ptr, 32);
    /* Hold the upload so no PATCH writes while it goes. */
    if (dems_staging_acquire(p->id, &p->staged) == DEMS_ECONFLICT) {
        tus_headers(req);
        dems_resp_error(req, 409, "upload_busy", "another request is writing this upload");
        return;
    }
    p->finished = true;
    char uid[24];
    owner_key(req, uid);
    const char *params[] = {p->id, uid,
                            dems_req_principal(req)->role == DEMS_ROLE_ADMIN ? "t" : "f"};
    int r = dems_db_req(req,
                        "UPDATE uploads SET state = 'terminated', updated_at = now()"
                        " WHERE id = $1 AND state = 'receiving'"
                        " AND (" OWNER_SQL " = $2 OR $3::boolean) RETURNING id",
                        3, params, on_terminated);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- expiry of abandoned uploads ---- */

static void on_expired(void *arg, const PGresult *res, int err)
{
    (void)arg;
    if (err < 0)
        return;
    for (int i = 0; i < PQntuples(res); i++)
        dems_staging_remove(PQgetvalue(res, i, 0));
}

void api_uploads_expire(struct dems_db_pool *db)
{
    dems_db_query(db,
                  "UPDATE uploads SET state = 'expired', updated_at = now()"
                  " WHERE state = 'receiving' AND expires_at < now() RETURNING id",
                  0, NULL, on_expired, NULL);
}
