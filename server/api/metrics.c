/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /metrics (admins; docs/operations.md, "Metrics and alerts"): the
 * Prometheus text format (0.0.4). This process's counters (server/core/
 * metrics.c: requests by route and status, latency, bytes, requests in
 * flight, ledger commits, database queue, workers), then what the database
 * says for the whole deployment: ledger size and checkpoint age, jobs by
 * kind and state, running jobs whose lease has run out, uploads receiving.
 */
#include "demsd/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/http.h"

#include "api_int.h"

#define METRICS_MAX (8u << 20)

static int line(struct dems_buf *b, const char *s)
{
    return dems_buf_append(b, s, strlen(s));
}

static int gauge(struct dems_buf *b, const char *name, const char *help, const char *value)
{
    char tmp[400];
    int n = snprintf(tmp, sizeof(tmp), "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name,
                     name, value[0] != '\0' ? value : "NaN");
    return n < 0 || (size_t)n >= sizeof(tmp) ? DEMS_ETOOBIG : dems_buf_append(b, tmp, (size_t)n);
}

/* Job kinds and states are [a-z0-9_-]: no escaping needed in labels. */
static int jobs(struct dems_buf *b, const char *text)
{
    json_t *rows = json_loads(text, 0, NULL);
    int r = line(b, "# HELP dems_jobs Jobs in the queue by kind and state.\n"
                    "# TYPE dems_jobs gauge\n");
    for (size_t i = 0; r == 0 && i < json_array_size(rows); i++) {
        json_t *o = json_array_get(rows, i);
        char tmp[200];
        int n = snprintf(tmp, sizeof(tmp),
                         "dems_jobs{kind=\"%s\",state=\"%s\"} %" JSON_INTEGER_FORMAT "\n",
                         json_string_value(json_object_get(o, "kind")),
                         json_string_value(json_object_get(o, "state")),
                         json_integer_value(json_object_get(o, "n")));
        r = n < 0 || (size_t)n >= sizeof(tmp) ? DEMS_ETOOBIG : dems_buf_append(b, tmp, (size_t)n);
    }
    json_decref(rows);
    return r;
}

static void on_gauges(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no answer"))
        return;
    struct dems_buf b;
    dems_buf_init(&b, METRICS_MAX);
    int r = dems_metrics_render(&b, dems_routes, dems_nroutes);
    if (r == 0)
        r = gauge(&b, "dems_ledger_entries", "Entries in the custody ledger.",
                  api_col(res, 0, "ledger_size"));
    if (r == 0)
        r = gauge(&b, "dems_ledger_checkpoint_entries",
                  "Entries the latest signed checkpoint covers.",
                  api_col(res, 0, "checkpoint_size"));
    if (r == 0)
        r = gauge(&b, "dems_ledger_checkpoint_age_seconds",
                  "Seconds since the latest signed checkpoint.", api_col(res, 0, "checkpoint_age"));
    if (r == 0)
        r = jobs(&b, api_col(res, 0, "jobs"));
    if (r == 0)
        r = gauge(&b, "dems_jobs_lease_expired",
                  "Running jobs whose worker's lease has run out (a worker died or hangs).",
                  api_col(res, 0, "lease_expired"));
    if (r == 0)
        r = gauge(&b, "dems_uploads_receiving", "Uploads begun and not yet complete.",
                  api_col(res, 0, "uploads_receiving"));
    if (r < 0) {
        dems_buf_done(&b);
        dems_resp_err(req, r);
        return;
    }
    dems_resp_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    dems_buf_done(&b);
}

void api_metrics(struct dems_req *req)
{
    int r = dems_db_req(
        req,
        "SELECT (SELECT coalesce(max(seq) + 1, 0) FROM ledger_entries) AS ledger_size,"
        " (SELECT max(size) FROM ledger_checkpoints) AS checkpoint_size,"
        " (SELECT round(extract(epoch FROM now() - max(created_at)), 3) FROM ledger_checkpoints)"
        " AS checkpoint_age,"
        " (SELECT coalesce(json_agg(json_build_object('kind', kind, 'state', state, 'n', n)"
        " ORDER BY kind, state), '[]') FROM (SELECT kind, state, count(*) AS n FROM jobs"
        " GROUP BY kind, state) j)::text AS jobs,"
        " (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_expires < now())"
        " AS lease_expired,"
        " (SELECT count(*) FROM uploads WHERE state = 'receiving') AS uploads_receiving",
        0, NULL, on_gauges);
    if (r < 0)
        dems_resp_err(req, r);
}
