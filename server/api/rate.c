/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rate limits held in PostgreSQL (migration 0016, rate_buckets), so that
 * every demsd node on one database counts against the same buckets. A
 * bucket holds at most `burst` tokens and refills at `per_minute` / 60
 * tokens a second; a request takes one. The refill and the take are one
 * INSERT ... ON CONFLICT DO UPDATE, so concurrent requests on any node
 * serialise on the bucket's row and none is counted twice or lost.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/log.h"

#include "api_int.h"

/* The tokens a bucket holds now: what it had plus the refill since, at most burst.
 * $2 tokens a second, $3 burst. */
#define AVAILABLE                                                                                  \
    "least($3::float8, b.tokens + $2::float8 * extract(epoch FROM clock_timestamp()"               \
    " - b.updated_at))"

/* $1 key, $2 rate (tokens a second), $3 burst. Returns granted and the tokens left. */
static const char take_sql[] =
    "INSERT INTO rate_buckets AS b (key, tokens, granted, updated_at)"
    " VALUES ($1, $3::float8 - 1, true, clock_timestamp())"
    " ON CONFLICT (key) DO UPDATE SET"
    " granted = " AVAILABLE " >= 1,"
    " tokens = CASE WHEN " AVAILABLE " >= 1 THEN " AVAILABLE " - 1 ELSE " AVAILABLE " END,"
    " updated_at = clock_timestamp()"
    " RETURNING granted, tokens";

struct take {
    struct dems_req *req;
    void (*next)(struct dems_req *req);
    double rate; /* tokens a second */
    bool per_link;
};

static void on_taken(void *arg, const PGresult *res, int err)
{
    struct take *t = arg;
    struct dems_req *req = t->req;
    if (!dems_req_is_aborted(req)) {
        if (err < 0 || PQntuples(res) != 1) {
            api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        } else if (api_col_bool(res, 0, "granted")) {
            t->next(req);
        } else {
            double left = strtod(api_col(res, 0, "tokens"), NULL);
            double wait = ceil((1.0 - left) / t->rate);
            char retry[24], detail[160];
            snprintf(retry, sizeof(retry), "%.0f", wait < 1 ? 1.0 : wait);
            snprintf(detail, sizeof(detail), "too many requests %s; try again in %s seconds",
                     t->per_link ? "through this link" : "from your address", retry);
            /* Counted, not written line by line: a client chooses how often. */
            DEMS_LOG_LIMITED(
                DEMS_LOG_WARN, dems_req_id(req),
                json_pack("{s:s,s:s}", "event", "rate_limited", "address", dems_req_peer(req)),
                "rate limit reached");
            dems_resp_header(req, "Retry-After", retry);
            dems_resp_error(req, 429, "too_many_requests", detail);
        }
    }
    dems_req_unref(req);
    free(t);
}

/* Takes a token from bucket key (per_minute, burst); next(req) when one was there. */
static void take(struct dems_req *req, const char *key, uint64_t per_minute, uint64_t burst_n,
                 bool per_link, void (*next)(struct dems_req *req))
{
    struct take *t = malloc(sizeof(*t));
    if (t == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    *t = (struct take){
        .req = req, .next = next, .rate = (double)per_minute / 60, .per_link = per_link};
    char rate[32], burst[24];
    snprintf(rate, sizeof(rate), "%.6f", t->rate);
    snprintf(burst, sizeof(burst), "%llu", (unsigned long long)burst_n);
    const char *params[] = {key, rate, burst};
    dems_req_ref(req);
    int r = dems_db_query(dems_req_loop(req)->db, take_sql, 3, params, on_taken, t);
    if (r < 0) {
        dems_req_unref(req);
        free(t);
        dems_resp_err(req, r);
    }
}

void api_rate_take(struct dems_req *req, const char *what, void (*next)(struct dems_req *req))
{
    const struct dems_config *cfg = dems_req_loop(req)->srv->cfg;
    char key[200];
    snprintf(key, sizeof(key), "%s:%s", what, dems_req_peer(req));
    take(req, key, cfg->public_rate_per_minute, cfg->public_rate_burst, false, next);
}

void api_rate_take_link(struct dems_req *req, const char *what, int64_t link,
                        void (*next)(struct dems_req *req))
{
    const struct dems_config *cfg = dems_req_loop(req)->srv->cfg;
    char key[200];
    snprintf(key, sizeof(key), "%s:%lld", what, (long long)link);
    take(req, key, cfg->portal_link_rate_per_minute, cfg->portal_link_burst, true, next);
}

/* Seconds after which a bucket of this rate is full again. */
static double refill_secs(uint64_t burst, uint64_t per_minute)
{
    return ceil((double)burst * 60 / (double)per_minute) + 1;
}

static void on_pruned(void *arg, const PGresult *res, int err)
{
    (void)arg;
    (void)res;
    (void)err;
}

void api_rate_prune(struct dems_db_pool *db, const struct dems_config *cfg)
{
    /* A bucket idle for burst / rate seconds is full again: dropping it changes nothing. */
    double a = refill_secs(cfg->public_rate_burst, cfg->public_rate_per_minute);
    double b = refill_secs(cfg->portal_link_burst, cfg->portal_link_rate_per_minute);
    char secs[32];
    snprintf(secs, sizeof(secs), "%.0f", a > b ? a : b);
    const char *params[] = {secs};
    dems_db_query(db,
                  "DELETE FROM rate_buckets"
                  " WHERE updated_at < now() - make_interval(secs => $1::float8)",
                  1, params, on_pruned, NULL);
}
