/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Serving a stored blob to a request (evidence content, previews, court
 * bundles): conditional requests on the SHA-256 ETag, one "bytes=" range
 * (206, 416), and the decrypted bytes streamed: decryption runs on the work
 * pool a few chunks at a time, paced by the connection's drain callback, so
 * memory per download stays bounded whatever the size. The blob is opened
 * (its header read and its key unwrapped: a ranged GET when blobs live in an
 * object store) and the range's first piece decrypted before the answer
 * starts, so a blob that is missing or cannot be read gets an error answer
 * rather than a cut connection. That first piece is read as soon as the
 * range is known (api_download_prepare), while the caller's ledger entry is
 * being made durable; it is sent only once api_download_start says so, which
 * the caller does after the entry is durable: no byte leaves before that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/http.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#include "api_int.h"

#define PIECE (4 * DEMS_BLOB_CHUNK) /* plaintext bytes decrypted per work item, at most */

static void download_free(void *data)
{
    struct api_download *d = data;
    dems_blob_close(d->blob);
    free(d->out);
    free(d->chunk);
    free(d);
}

struct api_download *api_download_new(struct dems_req *req)
{
    struct api_download *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, d, download_free);
    return d;
}

/* Whether d->out has room for what the next chunk can add to it (the chunk, or the range's rest).
 */
static bool room_for_chunk(const struct api_download *d)
{
    uint64_t from = d->pos > d->first ? d->pos : d->first;
    uint64_t rest = d->last + 1 - from;
    uint64_t need = rest < DEMS_BLOB_CHUNK ? rest : DEMS_BLOB_CHUNK;
    return d->out_cap - d->out_len >= need;
}

/* Work pool: opens the blob if it is not open, then decrypts up to a piece of the range into
 * d->out. */
static void decrypt_work(void *arg)
{
    struct dems_req *req = arg;
    struct api_download *d = dems_req_data(req);
    const struct dems_server *srv = dems_req_loop(req)->srv;
    d->out_len = 0;
    if (d->blob == NULL) {
        d->err = dems_blob_open(srv->cfg->data_dir, srv->master_key, d->blob_id, &d->blob);
        if (d->err < 0)
            return;
    }
    while (!d->finished && room_for_chunk(d)) {
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
    struct api_download *d = dems_req_data(req);
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
    struct api_download *d = dems_req_data(req);
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

static void start_answer(struct dems_req *req, struct api_download *d);

/* The first piece is read (or could not be): answer, if the caller said so already. */
static void first_done(void *arg)
{
    struct dems_req *req = arg;
    struct api_download *d = dems_req_data(req);
    d->busy = false;
    d->first_ready = true;
    if (!dems_req_is_aborted(req) && d->start_wanted)
        start_answer(req, d);
    dems_req_unref(req);
}

/*
 * Opens the blob and decrypts the range's first piece on the work pool, now,
 * so that it is ready when the answer may start. Nothing is sent.
 */
static void read_first(struct dems_req *req, struct api_download *d)
{
    d->busy = true;
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), decrypt_work, first_done, req) < 0) {
        d->busy = false;
        d->unqueued = true; /* answered 503 when the answer would start */
        d->first_ready = true;
        dems_req_unref(req);
    }
}

void api_download_start(struct dems_req *req, struct api_download *d)
{
    d->start_wanted = true;
    if (d->size == 0 || d->first_ready)
        start_answer(req, d);
    /* else first_done answers */
}

/* The first piece could not be read: the blob is missing, damaged, or its store is down. */
static void answer_unreadable(struct dems_req *req, struct api_download *d)
{
    if (d->blob != NULL) { /* opened, then failed to decrypt or verify */
        dems_log(DEMS_LOG_ERROR, dems_req_id(req),
                 json_pack("{s:s,s:s}", "evidence", d->id, "event", "blob_damaged"),
                 "stored blob failed to decrypt or verify: %s", dems_strerror(d->err));
    } else {
        dems_log(DEMS_LOG_ERROR, dems_req_id(req),
                 json_pack("{s:s,s:s,s:s}", "evidence", d->id, "event", "blob_unreadable", "code",
                           dems_err_code(d->err)),
                 "stored blob %s cannot be opened: %s", d->blob_id, dems_strerror(d->err));
    }
    if (d->blob == NULL && (d->err == DEMS_EUNAVAIL || d->err == DEMS_EAUTH)) /* the store */
        dems_resp_error(req, 503, "store_unavailable",
                        "the evidence store does not answer now; try again later");
    else
        dems_resp_error(req, 500, "blob_unreadable",
                        "the stored evidence is missing or damaged; the integrity "
                        "sweep reports it to the administrators");
}

static void start_answer(struct dems_req *req, struct api_download *d)
{
    if (d->size > 0 && d->unqueued) {
        dems_resp_err(req, DEMS_EUNAVAIL);
        return;
    }
    if (d->size > 0 && d->err < 0) {
        answer_unreadable(req, d);
        return;
    }
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
    /* Busy while the first piece goes out, so that a drain meanwhile does not overwrite it. */
    d->busy = true;
    int r = dems_resp_start(req, d->partial ? 206 : 200, type, len, produce);
    d->busy = false;
    if (r < 0)
        return;
    if (d->size > 0)
        dems_resp_write(req, d->out, d->out_len);
    if (d->finished)
        dems_resp_end(req);
    else if (dems_resp_wants_more(req))
        produce(req);
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

bool api_download_prepare(struct dems_req *req, struct api_download *d)
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
    if (d->size == 0)
        return true;
    uint64_t len = d->last - d->first + 1;
    d->out_cap = len < PIECE ? (size_t)len : PIECE;
    d->out = malloc(d->out_cap);
    d->chunk = malloc(DEMS_BLOB_CHUNK);
    if (d->out == NULL || d->chunk == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return false;
    }
    read_first(req, d);
    return true;
}

void api_download_recorded(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    if (!dems_req_is_aborted(req)) {
        if (item->err < 0 && item->err != DEMS_ECONFLICT)
            dems_resp_error(req, 503, "ledger_unavailable",
                            "the download could not be recorded, so it is refused");
        else
            api_download_start(req, dems_req_data(req));
    }
    dems_req_unref(req);
}
