/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The process's counters for GET /metrics (demsd/metrics.h). Plain arrays of
 * 64-bit counters bumped with relaxed atomic adds: no locks on the request
 * path, and a scrape reads each counter whole. Latency histograms use the
 * fixed buckets below (seconds); a bucket's count is cumulative only when
 * rendered, as the format wants.
 */
#include "demsd/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/err.h"
#include "demsd/http.h"

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,   0.25,   0.5,   1,    2.5,   10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

/* The statuses counted by name; anything else is counted as its class ("5xx"). */
static const int statuses[] = {200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 406, 409,
                               410, 411, 413, 414, 415, 416, 422, 429, 431, 500, 501, 503, 507};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))
#define NCOLS   (NSTATUS + 5) /* then 1xx..5xx for the rest */

struct route_stats {
    uint64_t status[NCOLS];
    uint64_t bucket[NBUCKETS + 1]; /* the last: above every bucket */
    uint64_t sum_us;
    int64_t in_flight;
};

static struct {
    struct route_stats *routes; /* nroutes + 1: the last for unrouted requests */
    size_t nroutes;
    uint64_t bytes_in, bytes_out;
    uint64_t ledger_bucket[NBUCKETS + 1];
    uint64_t ledger_sum_us, ledger_entries;
    int64_t db_waiting;
    uint64_t workers_alive, workers_configured, worker_restarts;
    int64_t started;
} m;

#define ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define GET(p)    __atomic_load_n((p), __ATOMIC_RELAXED)

int dems_metrics_init(size_t nroutes)
{
    free(m.routes);
    m.routes = calloc(nroutes + 1, sizeof(*m.routes));
    m.nroutes = nroutes;
    m.started = (int64_t)time(NULL);
    return m.routes != NULL ? 0 : DEMS_ENOMEM;
}

static size_t bucket_of(double seconds)
{
    size_t i = 0;
    while (i < NBUCKETS && seconds > buckets[i])
        i++;
    return i;
}

static struct route_stats *route_at(size_t route)
{
    if (m.routes == NULL)
        return NULL;
    return &m.routes[route < m.nroutes ? route : m.nroutes];
}

void dems_metrics_request(size_t route, int status, double seconds)
{
    struct route_stats *r = route_at(route);
    if (r == NULL)
        return;
    size_t col = NSTATUS + (status >= 100 && status < 600 ? (size_t)(status / 100 - 1) : 4);
    for (size_t i = 0; i < NSTATUS; i++)
        if (statuses[i] == status)
            col = i;
    ADD(&r->status[col], 1);
    ADD(&r->bucket[bucket_of(seconds)], 1);
    ADD(&r->sum_us, (uint64_t)(seconds > 0 ? seconds * 1e6 : 0));
}

void dems_metrics_in_flight(size_t route, int delta)
{
    struct route_stats *r = route_at(route);
    if (r != NULL)
        ADD(&r->in_flight, delta);
}

void dems_metrics_bytes(uint64_t in, uint64_t out)
{
    if (in != 0)
        ADD(&m.bytes_in, in);
    if (out != 0)
        ADD(&m.bytes_out, out);
}

void dems_metrics_ledger_commit(double seconds, size_t entries)
{
    ADD(&m.ledger_bucket[bucket_of(seconds)], 1);
    ADD(&m.ledger_sum_us, (uint64_t)(seconds > 0 ? seconds * 1e6 : 0));
    ADD(&m.ledger_entries, entries);
}

void dems_metrics_db_waiting(int delta)
{
    ADD(&m.db_waiting, delta);
}

void dems_metrics_workers(unsigned alive, unsigned configured, uint64_t restarts)
{
    __atomic_store_n(&m.workers_alive, alive, __ATOMIC_RELAXED);
    __atomic_store_n(&m.workers_configured, configured, __ATOMIC_RELAXED);
    __atomic_store_n(&m.worker_restarts, restarts, __ATOMIC_RELAXED);
}

/* ---- rendering ---- */

static int put(struct dems_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(struct dems_buf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return DEMS_ETOOBIG;
    return dems_buf_append(b, tmp, (size_t)n);
}

static const char *method_name(enum dems_http_method mth)
{
    switch (mth) {
    case DEMS_HTTP_GET:
        return "GET";
    case DEMS_HTTP_HEAD:
        return "HEAD";
    case DEMS_HTTP_POST:
        return "POST";
    case DEMS_HTTP_PUT:
        return "PUT";
    case DEMS_HTTP_PATCH:
        return "PATCH";
    case DEMS_HTTP_DELETE:
        return "DELETE";
    case DEMS_HTTP_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

/* The labels of route i: route path templates hold no quotes or backslashes. */
static void labels(const struct dems_route *routes, size_t i, char *out, size_t len)
{
    if (i < m.nroutes)
        snprintf(out, len, "method=\"%s\",route=\"%s\"", method_name(routes[i].method),
                 routes[i].pattern);
    else
        snprintf(out, len, "method=\"\",route=\"(none)\"");
}

static int histogram(struct dems_buf *b, const char *name, const char *lab, const uint64_t *bk,
                     uint64_t sum_us)
{
    uint64_t cum = 0;
    int r = 0;
    for (size_t k = 0; r == 0 && k <= NBUCKETS; k++) {
        cum += GET(&bk[k]);
        char le[24];
        if (k < NBUCKETS)
            snprintf(le, sizeof(le), "%g", buckets[k]);
        else
            snprintf(le, sizeof(le), "+Inf");
        r = put(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, lab, lab[0] ? "," : "", le, cum);
    }
    if (r == 0)
        r = put(b, "%s_sum{%s} %.6f\n%s_count{%s} %" PRIu64 "\n", name, lab,
                (double)GET(&sum_us) / 1e6, name, lab, cum);
    return r;
}

int dems_metrics_render(struct dems_buf *b, const struct dems_route *routes, size_t nroutes)
{
    if (m.routes == NULL || nroutes != m.nroutes)
        return DEMS_EINVAL;
    int r = put(b, "# HELP dems_http_requests_total Requests answered, by route and status.\n"
                   "# TYPE dems_http_requests_total counter\n");
    char lab[400];
    for (size_t i = 0; r == 0 && i <= m.nroutes; i++) {
        labels(routes, i, lab, sizeof(lab));
        for (size_t c = 0; r == 0 && c < NCOLS; c++) {
            uint64_t v = GET(&m.routes[i].status[c]);
            if (v == 0)
                continue;
            if (c < NSTATUS)
                r = put(b, "dems_http_requests_total{%s,status=\"%d\"} %" PRIu64 "\n", lab,
                        statuses[c], v);
            else
                r = put(b, "dems_http_requests_total{%s,status=\"%zuxx\"} %" PRIu64 "\n", lab,
                        c - NSTATUS + 1, v);
        }
    }
    if (r == 0)
        r = put(b, "# HELP dems_http_request_duration_seconds Time from a request's head to its"
                   " last byte handed to the socket.\n"
                   "# TYPE dems_http_request_duration_seconds histogram\n");
    for (size_t i = 0; r == 0 && i <= m.nroutes; i++) {
        uint64_t n = 0;
        for (size_t k = 0; k <= NBUCKETS; k++)
            n += GET(&m.routes[i].bucket[k]);
        if (n == 0)
            continue;
        labels(routes, i, lab, sizeof(lab));
        r = histogram(b, "dems_http_request_duration_seconds", lab, m.routes[i].bucket,
                      m.routes[i].sum_us);
    }
    if (r == 0)
        r = put(b, "# HELP dems_http_requests_in_flight Requests being handled now.\n"
                   "# TYPE dems_http_requests_in_flight gauge\n");
    for (size_t i = 0; r == 0 && i < m.nroutes; i++) {
        int64_t v = GET(&m.routes[i].in_flight);
        if (v == 0)
            continue;
        labels(routes, i, lab, sizeof(lab));
        r = put(b, "dems_http_requests_in_flight{%s} %" PRId64 "\n", lab, v);
    }
    if (r == 0)
        r = put(b,
                "# HELP dems_http_received_bytes_total HTTP bytes read from clients.\n"
                "# TYPE dems_http_received_bytes_total counter\n"
                "dems_http_received_bytes_total %" PRIu64 "\n"
                "# HELP dems_http_sent_bytes_total HTTP bytes written to clients.\n"
                "# TYPE dems_http_sent_bytes_total counter\n"
                "dems_http_sent_bytes_total %" PRIu64 "\n",
                GET(&m.bytes_in), GET(&m.bytes_out));
    if (r == 0)
        r = put(b, "# HELP dems_ledger_commit_seconds Durable ledger commits (group commits).\n"
                   "# TYPE dems_ledger_commit_seconds histogram\n");
    if (r == 0)
        r = histogram(b, "dems_ledger_commit_seconds", "", m.ledger_bucket, m.ledger_sum_us);
    if (r == 0)
        r = put(b,
                "# HELP dems_ledger_committed_entries_total Entries this process committed.\n"
                "# TYPE dems_ledger_committed_entries_total counter\n"
                "dems_ledger_committed_entries_total %" PRIu64 "\n"
                "# HELP dems_db_queries_waiting Queries waiting for a database connection.\n"
                "# TYPE dems_db_queries_waiting gauge\n"
                "dems_db_queries_waiting %" PRId64 "\n"
                "# HELP dems_workers_alive Worker processes running.\n"
                "# TYPE dems_workers_alive gauge\n"
                "dems_workers_alive %" PRIu64 "\n"
                "# HELP dems_workers_configured Worker processes serve keeps running.\n"
                "# TYPE dems_workers_configured gauge\n"
                "dems_workers_configured %" PRIu64 "\n"
                "# HELP dems_worker_restarts_total Worker processes restarted after exiting.\n"
                "# TYPE dems_worker_restarts_total counter\n"
                "dems_worker_restarts_total %" PRIu64 "\n"
                "# HELP dems_process_start_time_seconds When this process started.\n"
                "# TYPE dems_process_start_time_seconds gauge\n"
                "dems_process_start_time_seconds %" PRId64 "\n",
                GET(&m.ledger_entries), GET(&m.db_waiting), GET(&m.workers_alive),
                GET(&m.workers_configured), GET(&m.worker_restarts), m.started);
    return r;
}
