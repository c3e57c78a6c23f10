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
#include "dems/sniff.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"
#include "demsd/store.h"

#include "api_int.h"
#include "upload_meta.h"
#include "upload_stage.h"

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
    /* Where this request began: a chunk that fails its checksum, or that
     * the disk cannot take, is cut back to it. */
    struct dems_staging_mark start;
    bool has_checksum;
    uint8_t want_chunk[32];
    struct dems_sha256 chunk_sha;
    bool finished; /* the chunk was accepted or rejected deliberately */
    bool is_create;
    bool again; /* an empty PATCH on an upload complete but not yet recorded */
    /* A public submitter's upload from its first byte: the head is sniffed
     * (dems_sniff) and a type the portal does not take is refused. */
    bool sniffing;
    size_t head_len;
    uint8_t head[DEMS_SNIFF_HEAD];
    char expires[64];
    struct upload_stage us; /* staged in an object store: the claim and parts */
    /* The pipeline (local staging): a batch of whole chunks is on the work
     * pool while the loop reads on (dems_staging_take). */
    bool held;        /* reading stopped until the batch in flight ends */
    bool end_waiting; /* the body ended while a batch was in flight */
    int pending_err;  /* a failure to report once the batch in flight ends */
};

static void patch_free(void *data)
{
    struct patch *p = data;
    if (p->staged != NULL) {
        /* Interrupted: a chunk that carried a checksum cannot be verified,
         * so it is cut off; one without is kept (tus: store what came) if
         * it can be written. */
        if (!p->finished && p->start.is_set &&
            (dems_staging_is_remote() || p->has_checksum || dems_staging_flush(p->staged) < 0))
            dems_staging_rollback(p->staged, &p->start);
        dems_staging_release(p->staged);
    }
    dems_staging_mark_done(&p->start);
    dems_sha256_done(&p->chunk_sha);
    free(p->us.sealed);
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

/*
 * A write failed (the disk is full, or an I/O error): this request's bytes
 * are cut off again, so the upload is exactly as the last answered request
 * left it and resumes from Upload-Offset once the cause is gone.
 */
static void write_failed(struct dems_req *req, struct patch *p, int err)
{
    p->finished = true;
    dems_staging_rollback(p->staged, &p->start);
    tus_headers(req);
    offset_header(req, p->staged->offset);
    if (err == DEMS_ENOSPC)
        dems_resp_error(req, 507, "disk_full",
                        "the data volume is full: the bytes of this request were not kept;"
                        " resume from Upload-Offset once there is space");
    else
        dems_resp_err(req, err);
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
    int r = dems_staging_mark(s, &p->start);
    if (r < 0) {
        dems_resp_err(req, r);
        return;
    }
    p->sniffing = s->offset == 0 && dems_req_principal(req)->role == DEMS_ROLE_SUBMITTER;
    p->us.checksummed = p->has_checksum;
    dems_req_continue(req);
}

static void acquire(struct dems_req *req, struct patch *p, bool loaded);

/* Object store: the claim is taken and the state acquired (or answered). */
static void on_stage_claimed(struct dems_req *req, int err)
{
    if (err == 0)
        start_reading(req, dems_req_data(req));
}

/* Takes the upload's state: from this node's registry, or (object store)
 * by a claim that may load it from the store. */
static void take(struct dems_req *req, struct patch *p)
{
    if (!dems_staging_is_remote()) {
        acquire(req, p, false);
        return;
    }
    snprintf(p->us.id, sizeof(p->us.id), "%s", p->id);
    p->us.length = p->length;
    const struct dems_http_head *h = dems_req_head(req);
    upload_stage_claim(req, &p->us, p->client_offset, h->has_length ? h->content_length : 0,
                       &p->staged, on_stage_claimed);
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
    if (r == DEMS_ENOMEM) {
        dems_resp_err(req, r);
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

/* Owners are users, devices or public submissions; SQL renders them as
 * "u<id>", "d<id>" or "s<id>". */
#define OWNER_SQL                                                                                  \
    "coalesce('u' || owner_user_id, 'd' || owner_device_id, 's' || owner_submission_id)"

static void owner_key(const struct dems_req *req, char out[static 24])
{
    const struct dems_principal *pr = dems_req_principal(req);
    if (pr->role == DEMS_ROLE_DEVICE)
        snprintf(out, 24, "d%lld", (long long)pr->device_id);
    else if (pr->role == DEMS_ROLE_SUBMITTER)
        snprintf(out, 24, "s%lld", (long long)pr->submission_id);
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

/* A column of row 0 by name; NULL when SQL NULL. */
static const char *col(const PGresult *res, const char *name)
{
    return api_col_null(res, 0, name) ? NULL : api_col(res, 0, name);
}

/* The answer to the request that finished an upload (or asked again). */
static void reply_final(struct dems_req *req, const struct patch *p, const char *sha, bool recorded)
{
    tus_headers(req);
    offset_header(req, p->length);
    if (sha != NULL && sha[0] != '\0')
        dems_resp_header(req, "Upload-Sha256", sha);
    if (recorded)
        dems_resp_header(req, "Evidence-Id", sha);
    dems_resp_header(req, "Upload-State", recorded ? "complete" : "recording");
    if (p->is_create) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/uploads/%s", p->id);
        dems_resp_header(req, "Location", loc);
    }
    dems_resp_json(req, p->is_create ? 201 : 204, NULL);
}

static void on_recorded(struct dems_req *req, const struct upload_outcome *o)
{
    struct patch *p = dems_req_data(req);
    switch (o->kind) {
    case UPLOAD_RECORDED:
    case UPLOAD_RECORDING:
        reply_final(req, p, o->sha, o->kind == UPLOAD_RECORDED);
        return;
    case UPLOAD_REJECTED:
        tus_headers(req);
        dems_resp_error(req, 422, "sha256_mismatch",
                        "the file's SHA-256 differs from the declared one; nothing was kept");
        return;
    case UPLOAD_NOT_READY:
        tus_headers(req);
        dems_resp_error(req, 409, "upload_busy", "another request is writing this upload");
        return;
    case UPLOAD_GONE:
        tus_headers(req);
        dems_resp_error(req, 404, "not_found", "the upload is gone");
        return;
    case UPLOAD_FAILED:
        break;
    }
    /* All the bytes are in; the server completes it once the cause is gone. */
    tus_headers(req);
    offset_header(req, p->length);
    dems_resp_header(req, "Upload-State", "recording");
    if (o->err == DEMS_ENOSPC)
        dems_resp_error(req, 507, "disk_full",
                        "the upload has all its bytes but the data volume is full: it is"
                        " completed without further requests once there is space");
    else
        dems_resp_err(req, o->err);
}

/* Hands a whole upload to its completion (upload_record.c) and answers from it. */
static void record(struct dems_req *req, struct patch *p)
{
    int r = upload_record_start(dems_req_loop(req), p->id, req, on_recorded);
    if (r == DEMS_EAGAIN) /* a completion is running already (HEAD, housekeeping) */
        reply_final(req, p, NULL, false);
    else if (r < 0)
        dems_resp_err(req, r);
}

/*
 * A PATCH on a complete upload: an empty one at the full offset is answered
 * as the final PATCH was (and records it if that is still to be done), so a
 * client that retries after a lost answer succeeds; anything else is 409.
 */
static void patch_complete(struct dems_req *req, struct patch *p, const char *evidence)
{
    const struct dems_http_head *h = dems_req_head(req);
    if (p->client_offset != p->length || h->chunked || h->content_length > 0) {
        tus_headers(req);
        dems_resp_error(req, 409, "upload_finished", "the upload is already finished");
        return;
    }
    if (evidence != NULL) {
        reply_final(req, p, evidence, true);
        return;
    }
    p->again = true;
    dems_req_continue(req);
}

static void on_patch_row(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    const char *state = PQntuples(res) == 1 ? api_col(res, 0, "state") : NULL;
    if (state == NULL || !is_owner(req, api_col(res, 0, "owner")) ||
        strcmp(state, "terminated") == 0) {
        tus_headers(req);
        dems_resp_error(req, 404, "not_found", "no such upload");
        return;
    }
    if (strcmp(state, "receiving") == 0 && api_col_bool(res, 0, "link_ended")) {
        tus_headers(req);
        dems_resp_error(req, 410, "link_ended",
                        "the submission link has ended or the submission is closed: no more "
                        "files can be sent through it");
        return;
    }
    if (strcmp(state, "expired") == 0 ||
        (strcmp(state, "receiving") == 0 && api_col(res, 0, "live")[0] != 't')) {
        tus_headers(req);
        dems_resp_error(req, 410, "upload_expired", "the upload expired");
        return;
    }
    const char *len = api_col(res, 0, "length");
    p->length = (uint64_t)api_id(len, strlen(len));
    snprintf(p->expires, sizeof(p->expires), "%s", api_col(res, 0, "expires"));
    if (strcmp(state, "complete") == 0) {
        patch_complete(req, p, col(res, "evidence_id"));
        return;
    }
    if (strcmp(state, "receiving") != 0) {
        tus_headers(req);
        dems_resp_error(req, 409, "upload_finished", "the upload is already finished");
        return;
    }
    take(req, p);
}

#define HTTP_DATE(col) "to_char(" col " AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS \"GMT\"')"

/* True for a public submitter's upload whose submission no longer takes
 * files (finished, decided) or whose link was revoked or has expired. */
#define SUBMISSION_ENDED_SQL                                                                       \
    "(owner_submission_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM submissions es"                \
    " JOIN submission_links el ON el.id = es.link_id WHERE es.id = owner_submission_id"            \
    " AND es.state = 'open' AND el.revoked_at IS NULL AND el.expires_at > now()))"

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
    int r = dems_db_req(req,
                        "SELECT length, state, " OWNER_SQL " AS owner, expires_at > now() AS live,"
                        " " HTTP_DATE("expires_at") " AS expires, evidence_id,"
                                                    " " SUBMISSION_ENDED_SQL
                                                    " AS link_ended FROM uploads WHERE id = $1",
                        1, params, on_patch_row);
    return r < 0 ? r : DEMS_EAGAIN;
}

static void on_sniff_terminated(void *arg, const PGresult *res, int err)
{
    (void)arg;
    (void)res;
    (void)err; /* housekeeping expires it if this failed */
}

/*
 * Collects the first DEMS_SNIFF_HEAD bytes of a submitter's upload (or all
 * of a shorter one) and decides: a type the portal does not take (anything
 * but video, images, audio and archives, judged by magic numbers, never by
 * the name) ends the upload: its bytes are dropped, it is terminated and
 * the answer (415 type_not_allowed) says what the file appears to be.
 */
static int sniff(struct dems_req *req, struct patch *p, const uint8_t *data, size_t n)
{
    size_t take = DEMS_SNIFF_HEAD - p->head_len;
    if (take > n)
        take = n;
    memcpy(p->head + p->head_len, data, take);
    p->head_len += take;
    if (p->head_len < DEMS_SNIFF_HEAD && p->staged->offset < p->staged->length)
        return 0;
    p->sniffing = false;
    struct dems_sniffed what = dems_sniff(p->head, p->head_len);
    if (dems_sniff_portal_allowed(what.kind))
        return 0;
    p->finished = true;
    dems_staging_rollback(p->staged, &p->start);
    dems_staging_release(p->staged);
    p->staged = NULL;
    dems_staging_remove(p->id);
    const char *params[] = {p->id};
    dems_db_query(dems_req_loop(req)->db,
                  "UPDATE uploads SET state = 'terminated', updated_at = now()"
                  " WHERE id = $1 AND state = 'receiving'",
                  1, params, on_sniff_terminated, NULL);
    dems_log(DEMS_LOG_INFO, dems_req_id(req),
             json_pack("{s:s,s:s}", "refusal", "type_not_allowed", "format", what.format),
             "portal: refused an upload of %s", what.label);
    char msg[256];
    snprintf(msg, sizeof(msg),
             "this file appears to be %s (%s): the portal takes video, images, audio and"
             " archives (ZIP) only; the upload was ended",
             what.label, what.format);
    tus_headers(req);
    dems_resp_error(req, 415, "type_not_allowed", msg);
    return DEMS_EINVAL;
}

/*
 * The pipeline (docs/architecture.md, "Intake on two cores"): the loop
 * decrypts TLS and parses while a pool thread hashes, encrypts and writes
 * the whole chunks taken before. One batch per upload is in flight; the
 * loop reads on into the tail until it holds DEMS_STAGING_BACKLOG bytes,
 * then stops reading until the batch ends. The batch holds a reference to
 * the request, so nothing that needs the state idle (rollback, release)
 * runs while it is in flight.
 */
static void batch_work(void *arg)
{
    struct patch *p = dems_req_data(arg);
    dems_staging_batch_run(p->staged);
}

static void batch_done(void *arg);

/* Sends the tail's whole chunks to the pool when nothing is in flight. */
static int pump(struct dems_req *req, struct patch *p)
{
    struct dems_staged *s = p->staged;
    if (s == NULL || p->finished || p->sniffing || !dems_staging_batch_ready(s))
        return 0;
    dems_staging_batch_begin(s);
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), batch_work, batch_done, req) == 0)
        return 0;
    dems_req_unref(req);       /* p stays: the request holds it */
    dems_staging_batch_run(s); /* no memory to queue it: here, then */
    return dems_staging_batch_end(s);
}

static void batch_done(void *arg)
{
    struct dems_req *req = arg;
    struct patch *p = dems_req_data(req);
    int r = dems_staging_batch_end(p->staged);
    if (r == 0)
        r = p->pending_err;
    if (dems_req_is_aborted(req)) {
        /* Nobody to answer: patch_free keeps or cuts off what came. */
    } else if (r == 0 && (r = pump(req, p)) == 0) {
        if (p->held && !(p->staged->in_flight && dems_staging_backlog(p->staged))) {
            p->held = false;
            dems_req_resume(req); /* may parse on, end the body, start a batch */
        }
        if (p->end_waiting && p->staged != NULL && !p->staged->in_flight) {
            p->end_waiting = false;
            api_uploads_patch_end(req);
        }
    }
    if (r < 0 && !dems_req_is_aborted(req) && !p->finished) {
        write_failed(req, p, r); /* answered: the rest of the body is not read */
        if (p->held)
            dems_req_resume(req);
    }
    dems_req_unref(req);
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
    bool pipelined = !dems_staging_is_remote();
    int r =
        pipelined ? dems_staging_take(p->staged, data, n) : dems_staging_write(p->staged, data, n);
    if (r < 0 && p->staged->in_flight) {
        /* Reported once the batch in flight ends: until then it owns the state. */
        p->pending_err = r;
        p->held = true;
        dems_req_hold(req);
        return DEMS_EAGAIN;
    }
    if (r < 0) {
        write_failed(req, p, r); /* answered: the rest of the body is not read */
        return r;
    }
    if (p->sniffing && (r = sniff(req, p, data, n)) < 0)
        return r;
    if (pipelined) {
        if ((r = pump(req, p)) < 0) {
            write_failed(req, p, r);
            return r;
        }
        if (p->staged->in_flight && dems_staging_backlog(p->staged)) {
            p->held = true;
            dems_req_hold(req);
            return DEMS_EAGAIN;
        }
        return 0;
    }
    r = upload_stage_after_write(req, &p->us); /* whole parts go to the store */
    if (r < 0 && r != DEMS_EAGAIN)
        write_failed(req, p, r);
    return r;
}

/* Lets the upload go before answering: the client's next PATCH may come at
 * once, on another connection (another loop), and must not find it busy. */
static uint64_t let_go(struct patch *p)
{
    uint64_t offset = p->staged->offset;
    dems_staging_release(p->staged);
    p->staged = NULL;
    return offset;
}

static void reply_progress(struct dems_req *req, struct patch *p, int status)
{
    uint64_t offset = let_go(p);
    tus_headers(req);
    offset_header(req, offset);
    expires_header(req, p->expires);
    dems_resp_header(req, "Upload-State", "receiving");
    if (p->is_create) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/uploads/%s", p->id);
        dems_resp_header(req, "Location", loc);
    }
    dems_resp_json(req, status, NULL);
}

/* Object store: the request's bytes are committed (any node may go on). */
static void on_stage_committed(struct dems_req *req, int err)
{
    struct patch *p = dems_req_data(req);
    struct dems_staged *s = p->staged;
    if (err < 0) {
        p->finished = true;
        offset_header(req, s->committed_offset);
        if (p->is_create) { /* made, but nothing taken: the client resumes it there */
            char loc[64];
            snprintf(loc, sizeof(loc), "/v1/uploads/%s", p->id);
            dems_resp_header(req, "Location", loc);
        }
        let_go(p);
        upload_stage_answer(req, err);
        return;
    }
    p->finished = true;
    if (s->offset < s->length) {
        reply_progress(req, p, p->is_create ? 201 : 204);
        return;
    }
    /* All bytes are in: the completion claims it (sealing in the store). */
    let_go(p);
    record(req, p);
}

void api_uploads_patch_end(struct dems_req *req)
{
    struct patch *p = dems_req_data(req);
    if (p->again) {
        record(req, p);
        return;
    }
    struct dems_staged *s = p->staged;
    if (s->in_flight) {
        p->end_waiting = true; /* batch_done comes back here */
        return;
    }
    if (p->sniffing && p->head_len > 0) {
        /* A submitter's first request ended before the head could be judged:
         * nothing of it is kept, so the type is never decided on less. */
        dems_staging_rollback(s, &p->start);
        p->finished = true;
        tus_headers(req);
        offset_header(req, let_go(p));
        dems_resp_error(req, 400, "first_chunk_too_small",
                        "the first request of a file must carry its first 512 bytes (or all of "
                        "a smaller file), so that its type can be checked");
        return;
    }
    if (p->has_checksum) {
        uint8_t got[32];
        dems_sha256_final(&p->chunk_sha, got);
        if (sodium_memcmp(got, p->want_chunk, 32) != 0) {
            dems_staging_rollback(s, &p->start);
            p->finished = true;
            tus_headers(req);
            offset_header(req, let_go(p));
            dems_resp_error(req, 460, "checksum_mismatch",
                            "the chunk's SHA-256 differs from Upload-Checksum; it was discarded");
            return;
        }
    }
    if (dems_staging_is_remote()) {
        upload_stage_commit(req, &p->us, on_stage_committed);
        return;
    }
    /* Everything this request brought is written before it is answered, so
     * a full disk is reported (507) and the chunk cut off, never lost later. */
    int r = s->offset < s->length ? dems_staging_flush(s) : dems_staging_seal(s);
    if (r < 0) {
        write_failed(req, p, r);
        return;
    }
    p->finished = true;
    if (s->offset < s->length) {
        reply_progress(req, p, p->is_create ? 201 : 204);
        return;
    }
    /* Claimed for completion before it is let go, so a HEAD meanwhile
     * finds it busy or claimed and does not race this request's answer. */
    record(req, p);
    dems_staging_release(s);
    p->staged = NULL;
}

/* ---- POST: creation (and creation-with-upload) ---- */

static void on_created(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    if (err < 0 || PQntuples(res) != 1) {
        dems_staging_remove(p->id);
        if (err == 0) {
            const struct dems_principal *who = dems_req_principal(req);
            bool device = who->role == DEMS_ROLE_DEVICE;
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "this %s has %llu unfinished uploads, the most allowed (%s):"
                     " finish or terminate one first",
                     device ? "device" : "user",
                     (unsigned long long)(device ? cfg(req)->upload_max_unfinished_per_device
                                                 : cfg(req)->upload_max_unfinished_per_user),
                     device ? "upload_max_unfinished_per_device"
                            : "upload_max_unfinished_per_user");
            tus_headers(req);
            dems_resp_error(req, 429, "too_many_unfinished_uploads", msg);
            return;
        }
        api_db_error(req, res, err);
        return;
    }
    snprintf(p->expires, sizeof(p->expires), "%s", PQgetvalue(res, 0, 0));
    if (dems_staging_is_remote())
        take(req, p);
    else
        acquire(req, p, true);
}

/*
 * A public submitter's new upload ($1 id, $2 submission, $3 length, $4
 * metadata, $5 declared SHA-256, $6 expiry in seconds, cut to the link's
 * end), only while the submission is open, its link live, and the file
 * fits the link's limits: files and bytes of the submission, bytes of the
 * link in all and in the last day, uploads in flight through the link.
 * "why" names the first limit reached (NULL: made). Creations racing at
 * a limit's edge may each pass: the limits bound resources, by at most
 * one file per concurrent creation.
 */
#define SUBMITTER_CREATE_SQL                                                                       \
    "WITH s AS (SELECT s.state, l.id AS link_id, l.revoked_at, l.expires_at AS link_expires,"      \
    " l.max_files, l.max_bytes, l.link_max_bytes, l.daily_max_bytes, l.max_concurrent"             \
    " FROM submissions s JOIN submission_links l ON l.id = s.link_id WHERE s.id = $2::bigint),"    \
    " mine AS (SELECT count(*) AS files, coalesce(sum(length), 0) AS bytes FROM uploads"           \
    " WHERE owner_submission_id = $2::bigint AND state IN ('receiving', 'complete')),"             \
    " link AS (SELECT coalesce(sum(u.length), 0) AS bytes, coalesce(sum(u.length)"                 \
    " FILTER (WHERE u.created_at > now() - interval '1 day'), 0) AS day,"                          \
    " count(*) FILTER (WHERE u.state = 'receiving' AND u.expires_at > now()) AS inflight"          \
    " FROM uploads u JOIN submissions ls ON ls.id = u.owner_submission_id"                         \
    " WHERE ls.link_id = (SELECT link_id FROM s) AND u.state IN ('receiving', 'complete')),"       \
    " c AS (SELECT CASE WHEN s.state <> 'open' THEN 'submission_closed'"                           \
    " WHEN s.revoked_at IS NOT NULL OR s.link_expires <= now() THEN 'link_ended'"                  \
    " WHEN mine.files >= s.max_files THEN 'file_limit_reached'"                                    \
    " WHEN mine.bytes + $3::bigint > s.max_bytes THEN 'submission_too_large'"                      \
    " WHEN link.bytes + $3::bigint > s.link_max_bytes THEN 'link_quota_reached'"                   \
    " WHEN link.day + $3::bigint > s.daily_max_bytes THEN 'daily_quota_reached'"                   \
    " WHEN link.inflight >= s.max_concurrent THEN 'too_many_uploads' END AS why,"                  \
    " s.max_files, s.max_bytes, mine.files, mine.bytes,"                                           \
    " least(s.link_expires, now() + make_interval(secs => $6::int)) AS expires"                    \
    " FROM s, mine, link),"                                                                        \
    " ins AS (INSERT INTO uploads (id, owner_submission_id, length, metadata, declared_sha256,"    \
    " expires_at) SELECT $1, $2::bigint, $3::bigint, $4::jsonb, $5, c.expires FROM c"              \
    " WHERE c.why IS NULL RETURNING expires_at)"                                                   \
    " SELECT c.why, c.max_files, c.max_bytes, c.files, c.bytes,"                                   \
    " (SELECT " HTTP_DATE("expires_at") " FROM ins) AS expires FROM c"

/* Answers a refused submitter creation: which limit, in words. */
static void submitter_refused(struct dems_req *req, const PGresult *res)
{
    const char *why = PQntuples(res) == 1 ? api_col(res, 0, "why") : "submission_closed";
    char msg[256];
    int status = 409;
    if (strcmp(why, "link_ended") == 0) {
        status = 410;
        snprintf(msg, sizeof(msg), "the submission link has ended: no more files can be sent");
    } else if (strcmp(why, "file_limit_reached") == 0) {
        snprintf(msg, sizeof(msg), "this submission may hold at most %s files",
                 api_col(res, 0, "max_files"));
    } else if (strcmp(why, "submission_too_large") == 0) {
        status = 413;
        snprintf(msg, sizeof(msg),
                 "this file would take the submission past its limit of %s bytes (%s used)",
                 api_col(res, 0, "max_bytes"), api_col(res, 0, "bytes"));
    } else if (strcmp(why, "link_quota_reached") == 0) {
        status = 413;
        snprintf(msg, sizeof(msg), "the link has received all the data it may take");
    } else if (strcmp(why, "daily_quota_reached") == 0 || strcmp(why, "too_many_uploads") == 0) {
        status = 429;
        dems_resp_header(req, "Retry-After", strcmp(why, "too_many_uploads") == 0 ? "30" : "3600");
        snprintf(msg, sizeof(msg), "%s",
                 strcmp(why, "too_many_uploads") == 0
                     ? "too many files are being sent through this link at once: try again shortly"
                     : "the link has received all the data it may take today: try again later");
    } else {
        why = "submission_closed";
        snprintf(msg, sizeof(msg), "the submission is finished: no more files can be added");
    }
    dems_log(DEMS_LOG_INFO, dems_req_id(req), json_pack("{s:s}", "refusal", why),
             "portal: refused an upload (%s)", why);
    tus_headers(req);
    dems_resp_error(req, status, why, msg);
}

static void on_submitter_created(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    if (err < 0 || PQntuples(res) != 1 || !api_col_null(res, 0, "why")) {
        dems_staging_remove(p->id);
        if (err < 0)
            api_db_error(req, res, err);
        else
            submitter_refused(req, res);
        return;
    }
    snprintf(p->expires, sizeof(p->expires), "%s", api_col(res, 0, "expires"));
    acquire(req, p, true);
}

/* Upload-Metadata a member of the public may give: what the file is called,
 * its type and its hash. Staff-only keys (officer, device, recording times,
 * description: the submission's statement holds those) are refused. */
static bool submitter_meta_ok(struct dems_req *req, json_t *meta)
{
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v)
    {
        if (strcmp(key, "filename") != 0 && strcmp(key, "content_type") != 0 &&
            strcmp(key, "sha256") != 0) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "Upload-Metadata: key \"%s\" is not taken from the public portal"
                     " (filename, filetype and sha256 are)",
                     key);
            tus_headers(req);
            dems_resp_error(req, 400, "invalid_metadata", msg);
            return false;
        }
    }
    return true;
}

/*
 * The new row, only while its owner has fewer unfinished uploads than the
 * cap ($8). Two creations racing may both pass at the cap's edge: the cap
 * bounds resources, it is not an exact quota.
 */
#define CREATE_SQL                                                                                 \
    "INSERT INTO uploads (id, owner_user_id, length, metadata, declared_sha256, expires_at,"       \
    " owner_device_id) SELECT $1, $2, $3, $4::jsonb, $5, now() + make_interval(secs => $6::int),"  \
    " $7 WHERE (SELECT count(*) FROM uploads WHERE state = 'receiving' AND owner_user_id = $2"     \
    " AND expires_at > now()) + (SELECT count(*) FROM uploads WHERE state = 'receiving'"           \
    " AND owner_device_id = $7 AND expires_at > now()) < $8::bigint"                               \
    " RETURNING " HTTP_DATE("expires_at")

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
    const struct dems_principal *who = dems_req_principal(req);
    bool submitter = who->role == DEMS_ROLE_SUBMITTER;
    if (submitter && !submitter_meta_ok(req, meta)) {
        json_decref(meta);
        return DEMS_EINVAL;
    }
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof(rnd));
    dems_hex_encode(rnd, sizeof(rnd), p->id);
    int sr = dems_staging_create(p->id, p->length);
    if (sr < 0) {
        json_decref(meta);
        tus_headers(req);
        if (sr == DEMS_ENOSPC)
            dems_resp_error(req, 507, "disk_full", "the data volume is full: no upload can start");
        else
            dems_resp_error(req, 500, "staging_failed", "cannot create the staging file");
        return sr;
    }
    char *meta_text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    char owner[24], length[24], expiry[24], cap[24];
    bool device = who->role == DEMS_ROLE_DEVICE;
    snprintf(owner, sizeof(owner), "%lld",
             (long long)(device      ? who->device_id
                         : submitter ? who->submission_id
                                     : who->user_id));
    snprintf(length, sizeof(length), "%llu", (unsigned long long)p->length);
    snprintf(expiry, sizeof(expiry), "%llu", (unsigned long long)cfg(req)->upload_expiry);
    if (submitter) {
        const char *sp[] = {p->id, owner, length, meta_text, declared[0] ? declared : NULL, expiry};
        int r = meta_text == NULL
                    ? DEMS_ENOMEM
                    : dems_db_req(req, SUBMITTER_CREATE_SQL, 6, sp, on_submitter_created);
        free(meta_text);
        if (r < 0) {
            dems_staging_remove(p->id);
            return r;
        }
        return DEMS_EAGAIN;
    }
    snprintf(cap, sizeof(cap), "%llu",
             (unsigned long long)(device ? cfg(req)->upload_max_unfinished_per_device
                                         : cfg(req)->upload_max_unfinished_per_user));
    const char *params[] = {
        p->id,  device ? NULL : owner, length, meta_text, declared[0] ? declared : NULL,
        expiry, device ? owner : NULL, cap};
    int r = meta_text == NULL ? DEMS_ENOMEM : dems_db_req(req, CREATE_SQL, 8, params, on_created);
    free(meta_text);
    if (r < 0) {
        dems_staging_remove(p->id);
        return r;
    }
    return DEMS_EAGAIN;
}

/* ---- GET/HEAD: state ---- */

/*
 * The state a client sees: the row's, except that an upload holding all
 * its bytes but not yet recorded as evidence is "recording" (its completion
 * is started again here; it needs nothing from the client).
 */
static const char *shown_state(struct dems_req *req, const PGresult *res, uint64_t offset,
                               uint64_t length)
{
    const char *state = api_col(res, 0, "state"), *id = api_col(res, 0, "id");
    bool whole = strcmp(state, "receiving") == 0 && offset == length;
    bool unrecorded = strcmp(state, "complete") == 0 && col(res, "evidence_id") == NULL;
    if (!whole && !unrecorded)
        return state;
    /* Busy: the request that sealed it is completing it. */
    if (!(whole && dems_staging_busy(id)))
        upload_record_start(dems_req_loop(req), id, NULL, NULL); /* or already running */
    return "recording";
}

/* Answers GET/HEAD from the upload's row (and its loaded staging state). */
static void reply_state(struct dems_req *req, const PGresult *res)
{
    const char *id = api_col(res, 0, "id"), *state = api_col(res, 0, "state");
    const char *len = api_col(res, 0, "length");
    const char *evidence = col(res, "evidence_id");
    uint64_t length = (uint64_t)api_id(len, strlen(len));
    uint64_t offset = 0;
    if (strcmp(state, "receiving") == 0 && dems_staging_is_remote()) {
        /* The committed state's: what any node continues from. */
        offset = (uint64_t)api_col_int(res, 0, "stage_offset");
        expires_header(req, api_col(res, 0, "expires_http"));
    } else if (strcmp(state, "receiving") == 0) {
        int64_t size = dems_staging_size(id);
        offset = size > 0 ? (uint64_t)size : 0;
        expires_header(req, api_col(res, 0, "expires_http"));
    } else if (strcmp(state, "complete") == 0) {
        offset = length;
    }
    tus_headers(req);
    offset_header(req, offset);
    dems_resp_header(req, "Upload-Length", len);
    if (strcmp(state, "terminated") == 0 || strcmp(state, "expired") == 0) {
        dems_resp_error(req, strcmp(state, "expired") == 0 ? 410 : 404,
                        strcmp(state, "expired") == 0 ? "upload_expired" : "not_found",
                        "the upload is gone");
        return;
    }
    const char *shown = shown_state(req, res, offset, length);
    json_error_t jerr;
    json_t *meta = json_loads(api_col(res, 0, "metadata"), 0, &jerr);
    json_t *body =
        json_pack("{s:s,s:s,s:I,s:I,s:o,s:s}", "id", id, "state", shown, "offset",
                  (json_int_t)offset, "length", (json_int_t)length, "metadata",
                  meta != NULL ? meta : json_object(), "expires_at", api_col(res, 0, "expires_at"));
    if (body != NULL && col(res, "sha256") != NULL)
        json_object_set_new(body, "sha256", json_string(col(res, "sha256")));
    if (body != NULL && col(res, "reason") != NULL)
        json_object_set_new(body, "reason", json_string(col(res, "reason")));
    if (evidence != NULL) {
        dems_resp_header(req, "Evidence-Id", evidence);
        if (body != NULL)
            json_object_set_new(body, "evidence_id", json_string(evidence));
    }
    dems_resp_header(req, "Upload-State", shown);
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
    if (PQntuples(res) != 1 || !may_see(req, api_col(res, 0, "owner"))) {
        tus_headers(req);
        dems_resp_error(req, 404, "not_found", "no such upload");
        return;
    }
    const char *id = api_col(res, 0, "id");
    if (strcmp(api_col(res, 0, "state"), "receiving") != 0 || dems_staging_loaded(id) ||
        dems_staging_is_remote()) {
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
    j->length = (uint64_t)api_id(api_col(res, 0, "length"), strlen(api_col(res, 0, "length")));
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
        "SELECT id, " OWNER_SQL " AS owner, length, state, reason, sha256,"
        " metadata::text AS metadata, " API_TS(
            "expires_at") " AS expires_at,"
                          " " HTTP_DATE("expires_at") " AS expires_http, evidence_id,"
                                                      " stage_offset FROM uploads WHERE id = $1",
        1, params, on_state);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- DELETE: termination ---- */

static void on_terminated(struct dems_req *req, const PGresult *res, int err)
{
    struct patch *p = dems_req_data(req);
    /* Let go before any answer: the client's next request may come at
     * once and must not find the upload busy (409) because of this one. */
    if (p->staged != NULL) {
        dems_staging_release(p->staged);
        p->staged = NULL;
    }
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    tus_headers(req);
    if (PQntuples(res) != 1) {
        dems_resp_error(req, 404, "not_found", "no such upload in progress");
        return;
    }
    dems_staging_remove(p->id);
    upload_stage_drop(dems_req_loop(req), p->id, (uint64_t)api_col_int(res, 0, "stage_ver"),
                      api_col(res, 0, "stage_handle"));
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
                        "UPDATE uploads SET state = 'terminated', updated_at = now(),"
                        " stage_gen = stage_gen + 1 WHERE id = $1 AND state = 'receiving'"
                        " AND (" OWNER_SQL " = $2 OR $3::boolean)"
                        " RETURNING id, stage_ver, coalesce(stage_handle, '') AS stage_handle",
                        3, params, on_terminated);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- expiry of abandoned uploads ---- */

static void on_expired(void *arg, const PGresult *res, int err)
{
    struct dems_loop *loop = arg;
    if (err < 0)
        return;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = api_col(res, i, "id");
        dems_staging_remove(id);
        upload_stage_drop(loop, id, (uint64_t)api_col_int(res, i, "stage_ver"),
                          api_col(res, i, "stage_handle"));
    }
}

void api_uploads_expire(struct dems_loop *loop)
{
    dems_db_query(loop->db,
                  "UPDATE uploads SET state = 'expired', updated_at = now(),"
                  " stage_gen = stage_gen + 1 WHERE state = 'receiving' AND expires_at < now()"
                  " RETURNING id, stage_ver, coalesce(stage_handle, '') AS stage_handle",
                  0, NULL, on_expired, loop);
}
