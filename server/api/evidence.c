/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Evidence: GET /v1/evidence/{id} (metadata, hash, ledger sequence) and
 * GET /v1/evidence/{id}/content (the decrypted original, streamed; single
 * HTTP ranges; ETag = the SHA-256). Every content read is ledgered
 * (DOWNLOADED) before its first byte is sent: no record, no download.
 * Decryption runs on the work pool a few chunks at a time, paced by the
 * connection's drain callback, so memory per download stays bounded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/err.h"
#include "dems/http.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#include "api_int.h"

#define PIECE (4 * DEMS_BLOB_CHUNK) /* plaintext bytes decrypted per work item */

static bool evidence_id(struct dems_req *req, char out[static 65])
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
        api_evidence_hidden(req, api_col(res, 0, "id"), "not_found", "no such evidence");
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
    dems_resp_json(req, 200, body);
}

/* clang-format off */
#define EVIDENCE_SQL                                                                               \
    "SELECT a.id, a.size, a.content_type, a.filename, a.metadata::text AS metadata,"               \
    " coalesce(u.username, 'device:' || d.serial) AS uploaded_by,"                                 \
    " " API_TS("a.created_at") " AS created_at,"                                                   \
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
    " " API_VISIBLE_SQL("a.id", "$2", "$3") " AS visible"                                          \
    " FROM artefacts a LEFT JOIN users u ON u.id = a.uploaded_by"                                  \
    " LEFT JOIN devices d ON d.id = a.uploaded_by_device WHERE a.id = $1"
/* clang-format on */

void api_evidence_get(struct dems_req *req)
{
    char id[65];
    if (!evidence_id(req, id))
        return;
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {id, who.user_id, who.sees_all};
    int r = dems_db_req(req, EVIDENCE_SQL, 3, params, on_evidence);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- content ---- */

struct download {
    char id[65];      /* the artefact */
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
    int err;
    uint8_t *out;
    size_t out_len;
    uint8_t chunk[DEMS_BLOB_CHUNK];
};

static void download_free(void *data)
{
    struct download *d = data;
    dems_blob_close(d->blob);
    free(d->out);
    free(d);
}

/* Work pool: decrypts up to PIECE bytes of the range into d->out. */
static void decrypt_work(void *arg)
{
    struct dems_req *req = arg;
    struct download *d = dems_req_data(req);
    const struct dems_server *srv = dems_req_loop(req)->srv;
    d->out_len = 0;
    if (d->blob == NULL) {
        d->err = dems_blob_open(srv->cfg->data_dir, srv->master_key, d->blob_id, &d->blob);
        if (d->err < 0)
            return;
    }
    while (PIECE - d->out_len >= DEMS_BLOB_CHUNK && !d->finished) { /* room for a whole chunk */
        long n = dems_blob_read(d->blob, d->chunk);
        if (n < 0) {
            d->err = (int)n;
            return;
        }
        if (n == 0) {
            d->err = d->pos <= d->last ? DEMS_ECRYPTO : 0; /* shorter than recorded */
            d->finished = true;
            return;
        }
        uint64_t cs = d->pos, ce = d->pos + (uint64_t)n; /* [cs, ce) */
        d->pos = ce;
        if (ce <= d->first)
            continue;
        uint64_t from = cs > d->first ? cs : d->first;
        uint64_t to = ce - 1 < d->last ? ce - 1 : d->last;
        memcpy(d->out + d->out_len, d->chunk + (from - cs), (size_t)(to - from + 1));
        d->out_len += (size_t)(to - from + 1);
        if (to == d->last)
            d->finished = true;
    }
}

static void produce(struct dems_req *req);

static void decrypt_done(void *arg)
{
    struct dems_req *req = arg;
    struct download *d = dems_req_data(req);
    d->busy = false;
    if (!dems_req_is_aborted(req)) {
        if (d->err < 0) {
            dems_log(DEMS_LOG_ERROR, dems_req_id(req),
                     json_pack("{s:s,s:s}", "evidence", d->id, "event", "blob_damaged"),
                     "stored blob failed to decrypt or verify: %s", dems_strerror(d->err));
            dems_resp_abort(req);
        } else {
            dems_resp_write(req, d->out, d->out_len);
            if (d->finished)
                dems_resp_end(req);
            else if (dems_resp_wants_more(req))
                produce(req);
        }
    }
    dems_req_unref(req);
}

static void produce(struct dems_req *req)
{
    struct download *d = dems_req_data(req);
    if (d->busy || d->finished)
        return;
    d->busy = true;
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), decrypt_work, decrypt_done, req) < 0) {
        d->busy = false;
        dems_req_unref(req);
        dems_resp_abort(req);
    }
}

/* Sends the head and starts streaming d's range of its blob. */
static void start_body(struct dems_req *req, struct download *d)
{
    char etag[70], disp[3 * sizeof(d->filename) + 160], range[80];
    snprintf(etag, sizeof(etag), "\"%s\"", d->blob_id);
    dems_resp_header(req, "ETag", etag);
    dems_resp_header(req, "Accept-Ranges", "bytes");
    if (d->inline_) {
        /* Cache-Control stays no-store: evidence must not linger in browser caches. */
        dems_resp_header(req, "Content-Disposition", "inline");
    } else {
        if (dems_http_content_disposition("attachment", d->filename, d->id, disp, sizeof(disp)) < 0)
            snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", d->id);
        dems_resp_header(req, "Content-Disposition", disp);
    }
    if (d->partial) {
        snprintf(range, sizeof(range), "bytes %llu-%llu/%llu", (unsigned long long)d->first,
                 (unsigned long long)d->last, (unsigned long long)d->size);
        dems_resp_header(req, "Content-Range", range);
    }
    uint64_t len = d->size == 0 ? 0 : d->last - d->first + 1;
    if (d->size == 0)
        d->finished = true;
    /* Originals as an allow-listed type only; derivatives are our own. */
    const char *type = d->inline_ ? d->content_type : dems_http_served_type(d->content_type);
    if (dems_resp_start(req, d->partial ? 206 : 200, type, len, produce) == 0 && d->size == 0)
        dems_resp_end(req);
}

static void on_downloaded(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct download *d = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0)
            dems_resp_error(req, 503, "ledger_unavailable",
                            "the download could not be recorded, so it is refused");
        else
            start_body(req, d);
    }
    dems_req_unref(req);
}

/* Parses a single "bytes=" range; false when absent or not one we honour. */
static int parse_range(const struct dems_str *h, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (h == NULL || h->len < 7 || memcmp(h->ptr, "bytes=", 6) != 0 ||
        memchr(h->ptr, ',', h->len) != NULL)
        return 0; /* absent or multi-range: serve the whole file */
    const char *p = h->ptr + 6;
    size_t n = h->len - 6;
    const char *dash = memchr(p, '-', n);
    if (dash == NULL)
        return 0;
    size_t a_len = (size_t)(dash - p), b_len = n - a_len - 1;
    uint64_t a = 0, b = 0;
    if (a_len == 0) { /* suffix: the last b bytes */
        if (dems_parse_u64(dash + 1, b_len, UINT64_MAX, &b) < 0)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (dems_parse_u64(p, a_len, UINT64_MAX, &a) < 0)
        return 0;
    if (b_len > 0 && (dems_parse_u64(dash + 1, b_len, UINT64_MAX, &b) < 0 || b < a))
        return 0;
    if (a >= size)
        return -1;
    *first = a;
    *last = b_len == 0 || b >= size ? size - 1 : b;
    return 1;
}

/*
 * Conditional and range checks shared by content and previews: answers
 * 304 (If-None-Match on the blob's SHA-256 ETag) or 416 itself and returns
 * false; otherwise sets d's range and output buffer.
 */
static bool prepare(struct dems_req *req, struct download *d)
{
    const struct dems_http_head *h = dems_req_head(req);
    const struct dems_str *inm = dems_http_head_get(h, "if-none-match");
    char etag[70];
    snprintf(etag, sizeof(etag), "\"%s\"", d->blob_id);
    if (inm != NULL && (dems_str_eq(*inm, dems_str_from(etag)) || dems_str_eq_ci(*inm, "*"))) {
        dems_resp_header(req, "ETag", etag);
        dems_resp_json(req, 304, NULL);
        return false;
    }
    d->first = 0;
    d->last = d->size > 0 ? d->size - 1 : 0;
    int pr = parse_range(dems_http_head_get(h, "range"), d->size, &d->first, &d->last);
    if (pr < 0) {
        char cr[40];
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)d->size);
        dems_resp_header(req, "Content-Range", cr);
        dems_resp_error(req, 416, "range_not_satisfiable", "the range is outside the file");
        return false;
    }
    d->partial = pr > 0;
    d->out = malloc(PIECE);
    if (d->out == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return false;
    }
    return true;
}

static void on_artefact(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such evidence"))
        return;
    struct download *d = dems_req_data(req);
    if (!api_col_bool(res, 0, "visible")) {
        api_evidence_hidden(req, d->id, "not_found", "no such evidence");
        return;
    }
    d->size = (uint64_t)api_col_int(res, 0, "size");
    snprintf(d->content_type, sizeof(d->content_type), "%s", api_col(res, 0, "content_type"));
    /* Raw: start_body makes it safe for the header. A name cut inside a
     * UTF-8 sequence loses that sequence there. */
    snprintf(d->filename, sizeof(d->filename), "%s", api_col(res, 0, "filename"));
    memcpy(d->blob_id, d->id, sizeof(d->blob_id));
    if (!prepare(req, d))
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
    it->done = on_downloaded;
    it->arg = req;
    dems_req_ref(req);
    struct dems_loop *loop = dems_req_loop(req);
    if (dems_ledger_append(loop->srv, loop, it) < 0) {
        dems_req_unref(req);
        dems_resp_err(req, DEMS_EUNAVAIL);
    }
}

void api_evidence_content(struct dems_req *req)
{
    struct download *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, d, download_free);
    if (!evidence_id(req, d->id))
        return;
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {d->id, who.user_id, who.sees_all};
    int r = dems_db_req(req,
                        "SELECT a.size, coalesce(a.content_type, '') AS content_type,"
                        " coalesce(a.filename, '') AS filename,"
                        " " API_VISIBLE_SQL("a.id", "$2", "$3") " AS visible"
                                                                " FROM artefacts a WHERE a.id = $1",
                        3, params, on_artefact);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- previews: the proxy video, poster and thumbnail strip ---- */

/*
 * GET /v1/evidence/{id}/preview, /poster, /thumbnails (WebVTT), /sprite.jpg:
 * derivatives made by the preview job, served like content (ranges, ETag =
 * the derivative's SHA-256, 304/416) but inline. The first view of each kind
 * by each user is ledgered (VIEWED, with the derivative's hash) before its
 * first byte; later requests by the same user (a player's many range
 * requests) are not.
 */
static void on_viewed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct download *d = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        /* DEMS_ECONFLICT: a concurrent request recorded this first view. */
        if (item->err < 0 && item->err != DEMS_ECONFLICT)
            dems_resp_error(req, 503, "ledger_unavailable",
                            "the view could not be recorded, so it is refused");
        else
            start_body(req, d);
    }
    dems_req_unref(req);
}

static void on_derivative(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    struct download *d = dems_req_data(req);
    static const char not_ready[] = "no such evidence, or its preview has not been made (yet)";
    if (PQntuples(res) != 1) {
        dems_resp_error(req, 404, "preview_not_ready", not_ready);
        return;
    }
    if (!api_col_bool(res, 0, "visible")) {
        api_evidence_hidden(req, d->id, "preview_not_ready", not_ready);
        return;
    }
    if (api_col_null(res, 0, "blob")) {
        dems_resp_error(req, 404, "preview_not_ready", not_ready);
        return;
    }
    snprintf(d->blob_id, sizeof(d->blob_id), "%s", api_col(res, 0, "blob"));
    d->size = (uint64_t)api_col_int(res, 0, "size");
    snprintf(d->content_type, sizeof(d->content_type), "%s", api_col(res, 0, "content_type"));
    d->inline_ = true;
    if (!prepare(req, d))
        return;
    if (api_col_bool(res, 0, "viewed")) {
        start_body(req, d); /* viewed before: ledgered then */
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
    it->done = on_viewed;
    it->arg = req;
    dems_req_ref(req);
    struct dems_loop *loop = dems_req_loop(req);
    if (dems_ledger_append(loop->srv, loop, it) < 0) {
        dems_req_unref(req);
        dems_resp_err(req, DEMS_EUNAVAIL);
    }
}

static void serve_derivative(struct dems_req *req, const char *kind)
{
    struct download *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, d, download_free);
    if (!evidence_id(req, d->id))
        return;
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {d->id, kind, who.user_id, who.sees_all};
    /* The artefact's row even without the derivative: a hidden artefact is
     * refused (and recorded) whether or not its preview exists. */
    int r =
        dems_db_req(req,
                    "SELECT d.blob, d.size, d.content_type, d.kind, EXISTS (SELECT 1 FROM"
                    " evidence_views v WHERE v.artefact = a.id AND v.kind = $2"
                    " AND v.user_id = $3::bigint) AS viewed,"
                    " " API_VISIBLE_SQL(
                        "a.id", "$3", "$4") " AS visible"
                                            " FROM artefacts a LEFT JOIN derivatives d"
                                            " ON d.artefact = a.id AND d.kind = $2 WHERE a.id = $1",
                    4, params, on_derivative);
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
