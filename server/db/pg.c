/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Non-blocking libpq on libevent. Each loop owns a pool of connections; a
 * query goes to an idle connection or waits in a bounded FIFO. The socket
 * event follows what libpq asks for (PQconnectPoll while connecting; PQflush
 * then PQconsumeInput/PQgetResult while a query runs), so no loop thread ever
 * waits on the database. A broken connection fails its query with DEMS_EDB
 * (a statement is never retried behind the caller's back: it may have run)
 * and reconnects with exponential backoff from 100 ms to 5 s. A statement
 * declared as a struct dems_db_stmt is prepared once per connection (its
 * first use there sends Parse, then runs it; later uses run the named
 * statement), so PostgreSQL parses and plans hot statements once, not per
 * request.
 */
#include <event2/event.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/limits.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/http.h"
#include "demsd/log.h"
#include "demsd/metrics.h"

enum pgc_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

struct query {
    struct query *next;
    struct dems_db_stmt *stmt; /* NULL: an unnamed statement (sql) */
    const char *sql;
    int nparams;
    const char **params;
    dems_db_cb cb;
    void *arg;
    /* sql, the params array and the parameter strings follow in one block */
};

struct pgc {
    struct dems_db_pool *pool;
    PGconn *pg;
    struct event *ev;
    short ev_what;
    struct event *retry;
    enum pgc_state state;
    struct query *q;
    PGresult *result;
    unsigned backoff_ms;
    uint64_t prepared; /* bit id - 1: statement id is prepared on this connection */
    bool preparing;    /* the command running is q's Parse, not q itself */
};

struct dems_db_pool {
    struct event_base *base;
    char *conninfo;
    struct pgc *conns;
    size_t n;
    struct query *head, *tail;
    size_t queued;
};

static void pgc_connect(struct pgc *c);
static void dispatch(struct dems_db_pool *pool);

static void on_sock(evutil_socket_t fd, short what, void *arg);

/* Points the socket event at libpq's current socket and interest. */
static void watch(struct pgc *c, short what)
{
    int fd = PQsocket(c->pg);
    if (c->ev != NULL && (event_get_fd(c->ev) != fd || c->ev_what != what)) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->ev == NULL) {
        c->ev = event_new(c->pool->base, fd, what | EV_PERSIST, on_sock, c);
        c->ev_what = what;
        if (c->ev == NULL)
            return;
    }
    event_add(c->ev, NULL);
}

static void finish_query(struct query *q, const PGresult *res, int err)
{
    q->cb(q->arg, res, err);
    free(q);
}

static bool pool_has_live(const struct dems_db_pool *pool)
{
    for (size_t i = 0; i < pool->n; i++) {
        if (pool->conns[i].state != C_DOWN)
            return true;
    }
    return false;
}

/* Fails every queued query (no connection can serve them soon). */
static void fail_queue(struct dems_db_pool *pool, int err)
{
    while (pool->head != NULL) {
        struct query *q = pool->head;
        pool->head = q->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pool->queued--;
        dems_metrics_db_waiting(-1);
        finish_query(q, NULL, err);
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pgc_connect(arg);
}

static void pgc_fail(struct pgc *c)
{
    if (c->pg != NULL && c->state != C_DOWN)
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "db_connection_lost"),
                 "database connection failed: %.200s", PQerrorMessage(c->pg));
    struct query *q = c->q;
    c->q = NULL;
    if (c->result != NULL)
        PQclear(c->result);
    c->result = NULL;
    if (c->ev != NULL)
        event_free(c->ev);
    c->ev = NULL;
    PQfinish(c->pg);
    c->pg = NULL;
    c->state = C_DOWN;
    c->prepared = 0; /* a new session has none */
    c->preparing = false;
    c->backoff_ms = c->backoff_ms == 0 ? 100 : c->backoff_ms * 2;
    if (c->backoff_ms > 5000)
        c->backoff_ms = 5000;
    struct timeval tv = {.tv_sec = c->backoff_ms / 1000,
                         .tv_usec = (suseconds_t)(c->backoff_ms % 1000) * 1000};
    evtimer_add(c->retry, &tv);
    if (q != NULL)
        finish_query(q, NULL, DEMS_EDB);
    if (!pool_has_live(c->pool))
        fail_queue(c->pool, DEMS_EDB);
}

static void pgc_connect(struct pgc *c)
{
    c->pg = PQconnectStart(c->pool->conninfo);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        pgc_fail(c);
        return;
    }
    c->state = C_CONNECTING;
    watch(c, EV_WRITE);
}

/* Ids of prepared statements, given out on first use; 0 = none yet. */
static atomic_uint stmt_ids;

/* The statement's id (1..DEMS_DB_MAX_STMTS), or 0 when it runs unnamed (over the limit). */
static unsigned stmt_id(struct dems_db_stmt *stmt)
{
    /* Named by whichever loop uses it first; the others see that name. */
    unsigned id = atomic_load_explicit(&stmt->id, memory_order_acquire);
    if (id == 0) {
        unsigned want = atomic_fetch_add(&stmt_ids, 1) + 1;
        unsigned expect = 0;
        id = atomic_compare_exchange_strong(&stmt->id, &expect, want) ? want : expect;
    }
    return id <= DEMS_DB_MAX_STMTS ? id : 0;
}

/* Sends q, or for a statement not yet prepared on c its Parse first (complete runs it then). */
static int send_query(struct pgc *c, struct query *q)
{
    unsigned id = q->stmt != NULL ? stmt_id(q->stmt) : 0;
    if (id == 0)
        return PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
    char name[24];
    snprintf(name, sizeof(name), "dems_%u", id);
    if (c->prepared & (UINT64_C(1) << (id - 1)))
        return PQsendQueryPrepared(c->pg, name, q->nparams, q->params, NULL, NULL, 0);
    c->preparing = true;
    return PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL);
}

static void start_query(struct pgc *c, struct query *q)
{
    c->q = q;
    c->state = C_BUSY;
    if (!send_query(c, q)) {
        pgc_fail(c);
        return;
    }
    int f = PQflush(c->pg);
    if (f < 0) {
        pgc_fail(c);
        return;
    }
    watch(c, f == 1 ? EV_READ | EV_WRITE : EV_READ);
}

static void dispatch(struct dems_db_pool *pool)
{
    for (size_t i = 0; i < pool->n && pool->head != NULL; i++) {
        struct pgc *c = &pool->conns[i];
        if (c->state != C_IDLE)
            continue;
        struct query *q = pool->head;
        pool->head = q->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pool->queued--;
        dems_metrics_db_waiting(-1);
        start_query(c, q);
    }
}

static void complete(struct pgc *c)
{
    struct query *q = c->q;
    PGresult *res = c->result;
    c->result = NULL;
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (c->preparing) {
        c->preparing = false;
        if (st == PGRES_COMMAND_OK) { /* prepared here from now on: run it */
            c->prepared |= UINT64_C(1) << (stmt_id(q->stmt) - 1);
            PQclear(res);
            start_query(c, q);
            return;
        }
        /* A Parse that failed fails the query with its error, as the statement would have. */
    }
    c->q = NULL;
    c->state = C_IDLE;
    watch(c, EV_READ);
    int err = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : DEMS_EDB;
    if (err < 0 && res != NULL)
        dems_log(DEMS_LOG_DEBUG, NULL, NULL, "statement failed: %.200s", PQresultErrorMessage(res));
    q->cb(q->arg, res, err);
    free(q);
    PQclear(res);
    dispatch(c->pool);
}

static void on_busy(struct pgc *c, short what)
{
    if (what & EV_WRITE) {
        int f = PQflush(c->pg);
        if (f < 0) {
            pgc_fail(c);
            return;
        }
        watch(c, f == 1 ? EV_READ | EV_WRITE : EV_READ);
    }
    if (!(what & EV_READ))
        return;
    if (!PQconsumeInput(c->pg)) {
        pgc_fail(c);
        return;
    }
    while (!PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (res == NULL) {
            complete(c);
            return;
        }
        if (c->result != NULL)
            PQclear(c->result);
        c->result = res;
    }
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct pgc *c = arg;
    switch (c->state) {
    case C_CONNECTING:
        switch (PQconnectPoll(c->pg)) {
        case PGRES_POLLING_OK:
            PQsetnonblocking(c->pg, 1);
            c->state = C_IDLE;
            c->backoff_ms = 0;
            watch(c, EV_READ);
            dispatch(c->pool);
            break;
        case PGRES_POLLING_READING:
            watch(c, EV_READ);
            break;
        case PGRES_POLLING_WRITING:
            watch(c, EV_WRITE);
            break;
        default:
            pgc_fail(c);
            break;
        }
        break;
    case C_BUSY:
        on_busy(c, what);
        break;
    case C_IDLE:
        /* Readable while idle: a notice, or the server closed on us. */
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK) {
            pgc_fail(c);
            break;
        }
        for (PGnotify *n = PQnotifies(c->pg); n != NULL; n = PQnotifies(c->pg))
            PQfreemem(n);
        break;
    case C_DOWN:
        break;
    }
}

struct dems_db_pool *dems_db_pool_new(struct event_base *base, const char *conninfo, size_t size)
{
    struct dems_db_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->base = base;
    pool->conninfo = strdup(conninfo);
    pool->conns = calloc(size, sizeof(*pool->conns));
    if (pool->conninfo == NULL || pool->conns == NULL) {
        dems_db_pool_free(pool);
        return NULL;
    }
    pool->n = size;
    for (size_t i = 0; i < size; i++) {
        struct pgc *c = &pool->conns[i];
        c->pool = pool;
        c->retry = evtimer_new(base, on_retry, c);
        if (c->retry == NULL) {
            dems_db_pool_free(pool);
            return NULL;
        }
    }
    for (size_t i = 0; i < size; i++)
        pgc_connect(&pool->conns[i]);
    return pool;
}

void dems_db_pool_free(struct dems_db_pool *pool)
{
    if (pool == NULL)
        return;
    fail_queue(pool, DEMS_EUNAVAIL);
    for (size_t i = 0; pool->conns != NULL && i < pool->n; i++) {
        struct pgc *c = &pool->conns[i];
        if (c->q != NULL) {
            struct query *q = c->q;
            c->q = NULL;
            finish_query(q, NULL, DEMS_EUNAVAIL);
        }
        if (c->result != NULL)
            PQclear(c->result);
        if (c->ev != NULL)
            event_free(c->ev);
        if (c->retry != NULL)
            event_free(c->retry);
        PQfinish(c->pg);
    }
    free(pool->conns);
    free(pool->conninfo);
    free(pool);
}

/* Queues a statement: sql is copied unless stmt (which outlives the pool) holds it. */
static int enqueue(struct dems_db_pool *pool, struct dems_db_stmt *stmt, const char *sql,
                   int nparams, const char *const *params, dems_db_cb cb, void *arg)
{
    if (pool->queued >= DEMS_MAX_DB_QUEUE || nparams < 0)
        return DEMS_EUNAVAIL;
    if (!pool_has_live(pool))
        return DEMS_EDB;
    size_t sql_len = stmt != NULL ? 0 : strlen(sql) + 1;
    size_t size = sizeof(struct query) + (size_t)nparams * sizeof(char *) + sql_len;
    for (int i = 0; i < nparams; i++)
        size += params[i] != NULL ? strlen(params[i]) + 1 : 0;
    struct query *q = malloc(size);
    if (q == NULL)
        return DEMS_ENOMEM;
    char *p = (char *)(q + 1);
    q->params = (const char **)(void *)p;
    p += (size_t)nparams * sizeof(char *);
    for (int i = 0; i < nparams; i++) {
        if (params[i] == NULL) {
            q->params[i] = NULL;
            continue;
        }
        size_t len = strlen(params[i]) + 1;
        memcpy(p, params[i], len);
        q->params[i] = p;
        p += len;
    }
    if (stmt == NULL) {
        memcpy(p, sql, sql_len);
        sql = p;
    }
    q->stmt = stmt;
    q->sql = sql;
    q->nparams = nparams;
    q->cb = cb;
    q->arg = arg;
    q->next = NULL;
    if (pool->tail != NULL)
        pool->tail->next = q;
    else
        pool->head = q;
    pool->tail = q;
    pool->queued++;
    dems_metrics_db_waiting(1);
    dispatch(pool);
    return 0;
}

int dems_db_query(struct dems_db_pool *pool, const char *sql, int nparams,
                  const char *const *params, dems_db_cb cb, void *arg)
{
    return enqueue(pool, NULL, sql, nparams, params, cb, arg);
}

int dems_db_query_stmt(struct dems_db_pool *pool, struct dems_db_stmt *stmt,
                       const char *const *params, dems_db_cb cb, void *arg)
{
    return enqueue(pool, stmt, stmt->sql, stmt->nparams, params, cb, arg);
}

struct req_query {
    struct dems_req *req;
    void (*cb)(struct dems_req *req, const PGresult *res, int err);
};

static void on_req_result(void *arg, const PGresult *res, int err)
{
    struct req_query *rq = arg;
    if (!dems_req_is_aborted(rq->req))
        rq->cb(rq->req, res, err);
    dems_req_unref(rq->req);
    free(rq);
}

static int req_query(struct dems_req *req, struct dems_db_stmt *stmt, const char *sql, int nparams,
                     const char *const *params,
                     void (*cb)(struct dems_req *req, const PGresult *res, int err))
{
    struct req_query *rq = malloc(sizeof(*rq));
    if (rq == NULL)
        return DEMS_ENOMEM;
    rq->req = req;
    rq->cb = cb;
    int r = enqueue(dems_req_loop(req)->db, stmt, sql, nparams, params, on_req_result, rq);
    if (r < 0) {
        free(rq);
        return r;
    }
    dems_req_ref(req);
    return 0;
}

int dems_db_req(struct dems_req *req, const char *sql, int nparams, const char *const *params,
                void (*cb)(struct dems_req *req, const PGresult *res, int err))
{
    return req_query(req, NULL, sql, nparams, params, cb);
}

int dems_db_req_stmt(struct dems_req *req, struct dems_db_stmt *stmt, const char *const *params,
                     void (*cb)(struct dems_req *req, const PGresult *res, int err))
{
    return req_query(req, stmt, stmt->sql, stmt->nparams, params, cb);
}

bool dems_db_is_unique_violation(const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && strcmp(state, "23505") == 0;
}

PGconn *dems_db_connect_sync(const char *conninfo, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(conninfo);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "database: cannot connect: %s",
                 c != NULL ? PQerrorMessage(c) : "out of memory");
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
        PQfinish(c);
        return NULL;
    }
    return c;
}

long dems_db_affected(const PGresult *res)
{
    /* PQcmdTuples does not modify its argument but is not declared const. */
    const char *n = PQcmdTuples((PGresult *)(uintptr_t)res);
    uint64_t v = 0;
    if (dems_parse_u64(n, strlen(n), LONG_MAX, &v) < 0)
        return 0;
    return (long)v;
}
