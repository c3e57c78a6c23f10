/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tus uploads staged in an object store, so that the next PATCH of an
 * upload may reach any node (server/store/staging_remote.c has the bytes'
 * side; docs/architecture.md, "Uploads across nodes").
 *
 * The uploads row is the upload's state between requests: stage_gen counts
 * claims, stage_ver names the claim whose state is committed (stage_state,
 * sealed; stage_offset; stage_parts, whose tags are stage_tags[1..]),
 * stage_next hands out part numbers and stage_handle names the store's
 * stage. Every request that writes an upload first claims it (stage_gen + 1)
 * and every later statement of that request is fenced by its claim (WHERE
 * stage_gen = its claim): a request that another took the upload from (a
 * client that gave up on a stalled connection and resent elsewhere) stops
 * at its next step and commits nothing. Part numbers are handed out by the
 * database, so a part put by such a request can never replace one that the
 * committed state names; the commit at completion names only the committed
 * parts, in order.
 *
 * A request commits at each part it stages (unless the chunk carries an
 * Upload-Checksum: then only once the checksum matched) and at its end, so
 * an interrupted request loses only the parts still on their way (at most
 * three) and what arrived after them.
 */
#include "upload_stage.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/log.h"
#include "demsd/objstore.h"

#include "api_int.h"

#define MAX_PART_NUMBER "10000"

static struct dems_staged *st_of(struct upload_stage *us)
{
    return *us->staged;
}

void upload_stage_answer(struct dems_req *req, int err)
{
    dems_resp_header(req, "Tus-Resumable", "1.0.0");
    if (err == DEMS_ECONFLICT)
        dems_resp_error(req, 409, "upload_taken_over",
                        "another request is writing this upload (or took it over): HEAD it and "
                        "resume from Upload-Offset");
    else if (err == DEMS_EUNAVAIL || err == DEMS_EAUTH || err == DEMS_EIO)
        dems_resp_error(req, 503, "store_unavailable",
                        "the object store did not take the upload's bytes: resume from "
                        "Upload-Offset later");
    else if (err == DEMS_ECRYPTO)
        dems_resp_error(req, 500, "staging_corrupt", "the upload's staged state does not open");
    else
        dems_resp_err(req, err);
}

/* A failure mid-request: the state goes (reloaded from the committed one) and the request is
 * answered. */
/* Another request on this node holds the upload (as with local staging). */
static void answer_busy(struct dems_req *req)
{
    dems_resp_header(req, "Tus-Resumable", "1.0.0");
    dems_resp_error(req, 409, "upload_busy", "another request is writing this upload");
}

static void fail(struct dems_req *req, struct upload_stage *us, int err)
{
    us->failed = true; /* steps still on their way stop where they land */
    if (*us->staged != NULL)
        st_of(us)->broken = true;
    upload_stage_answer(req, err);
    us->paused = false;
    dems_req_resume(req); /* answered: only undoes a hold, so the rest is drained */
}

/* ---- hex for bytea ---- */

static char *bytea_hex(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 3);
    if (s == NULL)
        return NULL;
    s[0] = '\\';
    s[1] = 'x';
    sodium_bin2hex(s + 2, 2 * n + 1, p, n);
    return s;
}

int upload_stage_unhex(const char *s, uint8_t **ret, size_t *ret_len)
{
    size_t n = strlen(s);
    if (n < 2 || s[0] != '\\' || s[1] != 'x' || (n - 2) % 2 != 0)
        return DEMS_ECRYPTO;
    uint8_t *b = malloc((n - 2) / 2 + 1);
    size_t got = 0;
    if (b == NULL)
        return DEMS_ENOMEM;
    if (sodium_hex2bin(b, (n - 2) / 2 + 1, s + 2, n - 2, NULL, &got, NULL) != 0) {
        free(b);
        return DEMS_ECRYPTO;
    }
    *ret = b;
    *ret_len = got;
    return 0;
}

/* ---- statements and work-pool jobs, holding a reference to the request ---- */

struct stmt {
    struct dems_req *req;
    struct upload_stage *us;
    void (*cb)(struct dems_req *req, struct upload_stage *us, const PGresult *res, int err);
};

static void stmt_done(void *arg, const PGresult *res, int err)
{
    struct stmt *q = arg;
    if (!dems_req_is_aborted(q->req))
        q->cb(q->req, q->us, res, err);
    dems_req_unref(q->req);
    free(q);
}

static int
db(struct dems_req *req, struct upload_stage *us, const char *sql, int n, const char *const *params,
   void (*cb)(struct dems_req *req, struct upload_stage *us, const PGresult *res, int err))
{
    struct stmt *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return DEMS_ENOMEM;
    q->req = req;
    q->us = us;
    q->cb = cb;
    dems_req_ref(req);
    int r = dems_db_query(dems_req_loop(req)->db, sql, n, params, stmt_done, q);
    if (r < 0) {
        dems_req_unref(req);
        free(q);
    }
    return r;
}

struct job {
    struct dems_req *req;
    struct upload_stage *us;
    struct upload_part *slot; /* a part's job: which one */
    void (*then)(struct dems_req *req, struct upload_stage *us);
    void (*then_part)(struct dems_req *req, struct upload_stage *us, struct upload_part *slot);
};

static void job_done(void *arg)
{
    struct job *j = arg;
    if (!dems_req_is_aborted(j->req)) {
        if (j->then_part != NULL)
            j->then_part(j->req, j->us, j->slot);
        else
            j->then(j->req, j->us);
    }
    dems_req_unref(j->req);
    free(j);
}

static void submit_job(struct dems_req *req, struct upload_stage *us, struct upload_part *slot,
                       void (*fn)(void *arg),
                       void (*then)(struct dems_req *req, struct upload_stage *us),
                       void (*then_part)(struct dems_req *req, struct upload_stage *us,
                                         struct upload_part *slot))
{
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        if (slot != NULL)
            us->uploading--;
        fail(req, us, DEMS_ENOMEM);
        return;
    }
    j->req = req;
    j->us = us;
    j->slot = slot;
    j->then = then;
    j->then_part = then_part;
    dems_req_ref(req);
    if (dems_work_submit(dems_req_loop(req), fn, job_done, j) < 0) {
        dems_req_unref(req);
        free(j);
        if (slot != NULL)
            us->uploading--;
        fail(req, us, DEMS_ENOMEM);
    }
}

static void submit(struct dems_req *req, struct upload_stage *us, void (*fn)(void *arg),
                   void (*then)(struct dems_req *req, struct upload_stage *us))
{
    submit_job(req, us, NULL, fn, then, NULL);
}

/* Fire and forget: an old tail object, or a whole upload's objects. */
struct drop {
    char id[33];
    uint64_t ver;
    char handle[512];
    bool tail_only;
};

static void drop_work(void *arg)
{
    struct drop *d = arg;
    if (d->tail_only)
        dems_staging_drop_tail(d->id, d->ver);
    else
        dems_staging_remote_drop(d->id, d->ver, d->handle);
}

static void drop_done(void *arg)
{
    free(arg);
}

static void drop_submit(struct dems_loop *loop, const char *id, uint64_t ver, const char *handle,
                        bool tail_only)
{
    struct drop *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return; /* the objects stay: the sweep of incomplete stages is the store's lifecycle rule */
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->ver = ver;
    snprintf(d->handle, sizeof(d->handle), "%s", handle != NULL ? handle : "");
    d->tail_only = tail_only;
    if (dems_work_submit(loop, drop_work, drop_done, d) < 0)
        free(d);
}

void upload_stage_drop_tail(struct dems_loop *loop, const char *id, uint64_t ver)
{
    if (dems_staging_is_remote() && ver > 0)
        drop_submit(loop, id, ver, NULL, true);
}

void upload_stage_drop(struct dems_loop *loop, const char *id, uint64_t ver, const char *handle)
{
    if (dems_staging_is_remote())
        drop_submit(loop, id, ver, handle, false);
}

/* After a commit as our claim: the tail object of the state we started from is no longer named. */
static void committed(struct dems_req *req, struct upload_stage *us)
{
    if (us->loaded_ver != 0 && us->loaded_ver != us->gen) {
        drop_submit(dems_req_loop(req), us->id, us->loaded_ver, NULL, true);
        us->loaded_ver = us->gen;
    }
}

/* ---- the claim ---- */

static void claim_acquire(struct dems_req *req, struct upload_stage *us, bool loaded);

static void import_work(void *arg)
{
    struct job *j = arg;
    struct upload_stage *us = j->us;
    us->err = dems_staging_import(us->id, us->length, us->loaded_ver, us->sealed, us->sealed_len);
    free(us->sealed);
    us->sealed = NULL;
}

static void import_then(struct dems_req *req, struct upload_stage *us)
{
    if (us->err < 0) {
        if (us->err != DEMS_ECONFLICT)
            dems_log(DEMS_LOG_WARN, dems_req_id(req),
                     json_pack("{s:s,s:s,s:s}", "event", "upload_state_unloadable", "upload",
                               us->id, "problem", dems_strerror(us->err)),
                     "upload %s: its committed state could not be loaded (%s)", us->id,
                     dems_strerror(us->err));
        if (us->err == DEMS_ECONFLICT)
            answer_busy(req);
        else
            upload_stage_answer(req, us->err);
        us->cb(req, us->err);
        return;
    }
    claim_acquire(req, us, true);
}

static void claim_acquire(struct dems_req *req, struct upload_stage *us, bool loaded)
{
    int r = dems_staging_acquire_ver(us->id, us->loaded_ver, us->staged);
    if (r == DEMS_ENOTFOUND && !loaded) {
        submit(req, us, import_work, import_then);
        return;
    }
    free(us->sealed);
    us->sealed = NULL;
    if (r < 0) {
        *us->staged = NULL;
        if (r == DEMS_ENOTFOUND || r == DEMS_ECONFLICT)
            answer_busy(req);
        else
            upload_stage_answer(req, r);
        us->cb(req, r);
        return;
    }
    us->cb(req, 0);
}

static void on_claim(struct dems_req *req, struct upload_stage *us, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        us->cb(req, err);
        return;
    }
    if (PQntuples(res) != 1) {
        dems_resp_header(req, "Tus-Resumable", "1.0.0");
        dems_resp_error(req, 409, "upload_finished", "the upload is no longer receiving");
        us->cb(req, DEMS_ECONFLICT);
        return;
    }
    us->gen = (uint64_t)api_col_int(res, 0, "stage_gen");
    us->loaded_ver = (uint64_t)api_col_int(res, 0, "stage_ver");
    us->res_next = (unsigned)api_col_int(res, 0, "reserved_from") + 1;
    us->res_end = (unsigned)api_col_int(res, 0, "reserved_to");
    snprintf(us->handle, sizeof(us->handle), "%s", api_col(res, 0, "stage_handle"));
    free(us->sealed);
    us->sealed = NULL;
    us->sealed_len = 0;
    if (!api_col_null(res, 0, "stage_state")) {
        int r = upload_stage_unhex(api_col(res, 0, "stage_state"), &us->sealed, &us->sealed_len);
        if (r < 0) {
            upload_stage_answer(req, r);
            us->cb(req, r);
            return;
        }
    }
    claim_acquire(req, us, false);
}

/* Part boundaries (multiples of part bytes) in (from, to]: the parts a body fills. */
static unsigned parts_filled(uint64_t from, uint64_t to, uint64_t part)
{
    if (part == 0 || to <= from)
        return 0;
    uint64_t n = to / part - from / part;
    return n > 64 ? 64 : (unsigned)n; /* a sanity cap: more are numbered one by one */
}

void upload_stage_claim(struct dems_req *req, struct upload_stage *us, uint64_t offset,
                        uint64_t body, struct dems_staged **staged, upload_stage_cb cb)
{
    us->staged = staged;
    us->cb = cb;
    *staged = NULL;
    if (dems_staging_busy(us->id)) { /* a request here writes it: no claim to take from it */
        answer_busy(req);
        cb(req, DEMS_ECONFLICT);
        return;
    }
    char reserve[16];
    uint64_t to = offset + (body < us->length - offset ? body : us->length - offset);
    snprintf(reserve, sizeof(reserve), "%u",
             offset < us->length ? parts_filled(offset, to, dems_staging_part_plain(us->length))
                                 : 0);
    const char *params[] = {us->id, reserve};
    int r = db(req, us,
               "UPDATE uploads u SET stage_gen = u.stage_gen + 1,"
               " stage_next = least(" MAX_PART_NUMBER ", u.stage_next + $2::int)"
               " FROM (SELECT stage_next FROM uploads WHERE id = $1 FOR UPDATE) o"
               " WHERE u.id = $1 AND u.state = 'receiving'"
               " RETURNING u.stage_gen, u.stage_ver, coalesce(u.stage_handle, '') AS stage_handle,"
               " u.stage_state, o.stage_next AS reserved_from, u.stage_next AS reserved_to",
               2, params, on_claim);
    if (r < 0) {
        dems_resp_err(req, r);
        cb(req, r);
    }
}

/* ---- parts, as bytes arrive ----
 *
 * A part whole in the local file is read back and staged in the store on
 * the work pool while the body goes on arriving into the next. Up to two
 * parts are on their way at once (the stores take parts in any order; the
 * gaps between one part's answer and the next part's request would
 * otherwise leave the store idle), and staged parts are recorded (their
 * tags, and the state where each ends) one at a time, in order, while the
 * next ones travel. Reading pauses when a part is whole that cannot be
 * sent yet, so a slow store slows the client rather than filling the disk
 * (a node holds about three parts of an upload). */

static void start_part(struct dems_req *req, struct upload_stage *us);
static void start_record(struct dems_req *req, struct upload_stage *us);

/* Parts launched and not yet recorded. */
static uint32_t outstanding(const struct upload_stage *us)
{
    return us->launched_upto - (*us->staged)->parts;
}

/* Whether the next part may be launched now: at most two outstanding, and
 * only one until the store's stage exists (the first part begins it) or
 * while parts are numbered one by one. */
static bool may_launch(const struct upload_stage *us)
{
    if (outstanding(us) >= 2)
        return false;
    bool numbered = us->res_next <= us->res_end;
    return us->uploading == 0 || (us->handle[0] != '\0' && numbered);
}

static void pump(struct dems_req *req, struct upload_stage *us)
{
    struct dems_staged *s = st_of(us);
    if (us->failed || s == NULL)
        return;
    if (!us->recording && us->staged_upto > s->parts)
        start_record(req, us);
    int r = 0;
    while (!us->failed && may_launch(us) && (r = dems_staging_part_ready(s, outstanding(us))) > 0)
        start_part(req, us);
    if (r < 0) {
        fail(req, us, r);
        return;
    }
    if (us->failed)
        return;
    if (us->paused && (may_launch(us) || dems_staging_part_ready(s, outstanding(us)) == 0)) {
        us->paused = false; /* the part that made it pause is on its way now */
        dems_req_resume(req);
    } else if (us->ending && us->uploading == 0 && !us->recording && us->staged_upto == s->parts) {
        upload_stage_commit(req, us, us->cb); /* the end of the request waited for parts */
    }
}

static void on_recorded(struct dems_req *req, struct upload_stage *us, const PGresult *res, int err)
{
    struct dems_staged *s = st_of(us);
    us->recording = false;
    if (s == NULL || us->failed)
        return; /* the request let the upload go, or failed, meanwhile (answered) */
    if (err < 0 || dems_db_affected(res) != 1) {
        fail(req, us, err < 0 ? err : DEMS_ECONFLICT);
        return;
    }
    uint32_t k = us->rec_part;
    uint64_t offset = us->rec_commit ? s->snap[k % DEMS_STAGING_SNAPS].offset : 0;
    dems_staging_part_done(s); /* parts = k */
    if (us->rec_commit) {
        dems_staging_committed(s, us->gen, offset, k);
        committed(req, us);
    }
    pump(req, us);
}

/* Records staged part parts + 1: its tag, and (unless the request's chunk
 * must first pass its Upload-Checksum) the state where it ends. */
static void start_record(struct dems_req *req, struct upload_stage *us)
{
    struct dems_staged *s = st_of(us);
    uint32_t k = s->parts + 1;
    const char *tag = us->slot[k % 2].tag;
    char part[16], gen[24];
    snprintf(part, sizeof(part), "%u", k);
    snprintf(gen, sizeof(gen), "%llu", (unsigned long long)us->gen);
    us->recording = true;
    us->rec_part = k;
    us->rec_commit = !us->checksummed && dems_staging_has_snap(s, k);
    int r;
    if (us->rec_commit) {
        uint8_t *sealed = NULL;
        size_t len = 0;
        uint64_t offset = 0;
        r = dems_staging_export(s, k, us->gen, &sealed, &len, &offset);
        char *hex = r == 0 ? bytea_hex(sealed, len) : NULL;
        free(sealed);
        char off[24];
        snprintf(off, sizeof(off), "%llu", (unsigned long long)offset);
        const char *params[] = {us->id, gen, part, tag, us->handle, off, hex};
        r = hex == NULL ? DEMS_ENOMEM
                        : db(req, us,
                             "UPDATE uploads SET stage_tags[$3::int] = $4,"
                             " stage_handle = $5, stage_parts = $3::int,"
                             " stage_ver = $2::bigint, stage_offset = $6::bigint,"
                             " stage_state = $7::bytea, updated_at = now()"
                             " WHERE id = $1 AND stage_gen = $2::bigint",
                             7, params, on_recorded);
        free(hex);
    } else {
        const char *params[] = {us->id, gen, part, tag, us->handle};
        r = db(req, us,
               "UPDATE uploads SET stage_tags[$3::int] = $4, stage_handle = $5"
               " WHERE id = $1 AND stage_gen = $2::bigint",
               5, params, on_recorded);
    }
    if (r < 0) {
        us->recording = false;
        fail(req, us, r);
    }
}

static void put_part_work(void *arg)
{
    struct job *j = arg;
    struct upload_part *p = j->slot;
    struct dems_objstore_stage st;
    memset(&st, 0, sizeof(st));
    snprintf(st.id, sizeof(st.id), "%s", p->handle);
    p->err = dems_staging_put_part(j->us->id, p->from, p->to, &st, p->number, p->tag);
    if (p->err == 0)
        snprintf(p->handle, sizeof(p->handle), "%s", st.id); /* begun here, if it was empty */
}

static void put_part_then(struct dems_req *req, struct upload_stage *us, struct upload_part *p)
{
    us->uploading--;
    if (st_of(us) == NULL || us->failed)
        return;
    if (p->err < 0) {
        fail(req, us, p->err);
        return;
    }
    if (us->handle[0] == '\0')
        snprintf(us->handle, sizeof(us->handle), "%s", p->handle);
    p->done = true;
    /* Staged in order: a later part that lands first waits for the one before. */
    while (us->slot[(us->staged_upto + 1) % 2].done &&
           us->slot[(us->staged_upto + 1) % 2].part == us->staged_upto + 1) {
        us->slot[(us->staged_upto + 1) % 2].done = false;
        us->staged_upto++;
    }
    pump(req, us);
}

static void launch(struct dems_req *req, struct upload_stage *us, struct upload_part *p)
{
    snprintf(p->handle, sizeof(p->handle), "%s", us->handle);
    submit_job(req, us, p, put_part_work, NULL, put_part_then);
}

static void on_number(struct dems_req *req, struct upload_stage *us, const PGresult *res, int err)
{
    struct upload_part *p = &us->slot[us->launched_upto % 2];
    if (st_of(us) == NULL || us->failed) {
        us->uploading--;
        return;
    }
    if (err < 0 || PQntuples(res) != 1) {
        us->uploading--;
        fail(req, us, err < 0 ? err : DEMS_ECONFLICT);
        return;
    }
    p->number = (unsigned)api_col_int(res, 0, "stage_next");
    launch(req, us, p);
}

/* Stages part launched_upto + 1 (whole in the file). */
static void start_part(struct dems_req *req, struct upload_stage *us)
{
    struct dems_staged *s = st_of(us);
    uint32_t k = ++us->launched_upto;
    struct upload_part *p = &us->slot[k % 2];
    memset(p, 0, sizeof(*p));
    p->part = k;
    p->from = dems_staging_part_end(s, k - 1);
    p->to = dems_staging_part_end(s, k);
    us->uploading++;
    if (us->res_next <= us->res_end) { /* reserved with the claim */
        p->number = us->res_next++;
        launch(req, us, p);
        return;
    }
    char gen[24];
    snprintf(gen, sizeof(gen), "%llu", (unsigned long long)us->gen);
    const char *params[] = {us->id, gen};
    int r =
        db(req, us,
           "UPDATE uploads SET stage_next = stage_next + 1 WHERE id = $1"
           " AND stage_gen = $2::bigint AND stage_next < " MAX_PART_NUMBER " RETURNING stage_next",
           2, params, on_number);
    if (r < 0) {
        us->uploading--;
        fail(req, us, r);
    }
}

/* A request's first look at the state: nothing launched beyond it yet. */
static void settle(struct upload_stage *us)
{
    struct dems_staged *s = st_of(us);
    if (us->staged_upto < s->parts)
        us->staged_upto = s->parts;
    if (us->launched_upto < us->staged_upto)
        us->launched_upto = us->staged_upto;
}

int upload_stage_after_write(struct dems_req *req, struct upload_stage *us)
{
    struct dems_staged *s = st_of(us);
    settle(us);
    int r = dems_staging_part_ready(s, outstanding(us));
    if (r <= 0)
        return r;
    if (!may_launch(us)) {
        /* Whole, but it cannot be sent yet: reading waits. */
        us->paused = true;
        dems_req_hold(req);
        return DEMS_EAGAIN;
    }
    start_part(req, us);
    return 0;
}

/* ---- the end of a request ---- */

static void on_committed(struct dems_req *req, struct upload_stage *us, const PGresult *res,
                         int err)
{
    if (st_of(us) == NULL)
        return;
    upload_stage_cb cb = us->cb;
    us->cb = NULL;
    if (err < 0 || dems_db_affected(res) != 1) {
        /* Taken over: our tail object is named by nothing. */
        drop_submit(dems_req_loop(req), us->id, us->gen, NULL, true);
        st_of(us)->broken = true;
        cb(req, err < 0 ? err : DEMS_ECONFLICT);
        return;
    }
    struct dems_staged *s = st_of(us);
    dems_staging_committed(s, us->gen, s->offset, 0);
    committed(req, us);
    cb(req, 0);
}

static void put_tail_work(void *arg)
{
    struct job *j = arg;
    struct upload_stage *us = j->us;
    struct dems_staged *s = st_of(us);
    us->err =
        dems_staging_put_tail(us->id, dems_staging_part_end(s, s->parts), s->file_len, us->gen);
}

static void put_tail_then(struct dems_req *req, struct upload_stage *us)
{
    struct dems_staged *s = st_of(us);
    if (s == NULL)
        return;
    upload_stage_cb cb = us->cb;
    if (us->err < 0) {
        s->broken = true;
        us->cb = NULL;
        cb(req, us->err);
        return;
    }
    uint8_t *sealed = NULL;
    size_t len = 0;
    uint64_t offset = 0;
    int r = dems_staging_export(s, 0, us->gen, &sealed, &len, &offset);
    char *hex = r == 0 ? bytea_hex(sealed, len) : NULL;
    free(sealed);
    char gen[24], off[24], parts[16];
    snprintf(gen, sizeof(gen), "%llu", (unsigned long long)us->gen);
    snprintf(off, sizeof(off), "%llu", (unsigned long long)offset);
    snprintf(parts, sizeof(parts), "%u", s->parts);
    const char *params[] = {us->id, gen, off, parts, hex};
    r = hex == NULL ? DEMS_ENOMEM
                    : db(req, us,
                         "UPDATE uploads SET stage_ver = $2::bigint,"
                         " stage_offset = $3::bigint, stage_parts = $4::int,"
                         " stage_state = $5::bytea, updated_at = now()"
                         " WHERE id = $1 AND stage_gen = $2::bigint",
                         5, params, on_committed);
    free(hex);
    if (r < 0) {
        s->broken = true;
        us->cb = NULL;
        cb(req, r);
    }
}

void upload_stage_commit(struct dems_req *req, struct upload_stage *us, upload_stage_cb cb)
{
    struct dems_staged *s = st_of(us);
    us->cb = cb;
    us->ending = true;
    settle(us);
    if (us->uploading > 0 || us->recording || us->launched_upto > s->parts)
        return; /* pump comes back here once the parts are staged and recorded */
    int r = dems_staging_flush(s);
    if (r == 0)
        r = dems_staging_part_ready(s, 0);
    if (r > 0) { /* a last whole part first */
        start_part(req, us);
        return;
    }
    if (r < 0) {
        s->broken = true;
        us->cb = NULL;
        cb(req, r);
        return;
    }
    submit(req, us, put_tail_work, put_tail_then);
}
