/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process-wide counters for GET /metrics (server/core/metrics.c; docs/
 * operations.md, "Metrics and alerts"). Any thread may count (relaxed
 * atomics: a scrape sees each counter whole, not all of them at one
 * instant). Requests are counted by route (the router's table index; the
 * last slot for requests no route took), method and status, with a latency
 * histogram per route.
 */
#ifndef DEMSD_METRICS_H
#define DEMSD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "dems/buf.h"

/* Sizes the per-route tables (call once, before any loop runs). 0 or DEMS_ENOMEM. */
int dems_metrics_init(size_t nroutes);

/* A request answered: route index (nroutes for none), method name, status, seconds taken. */
void dems_metrics_request(size_t route, int status, double seconds);

/* Requests being handled now on a route (+1 when routed, -1 when finished). */
void dems_metrics_in_flight(size_t route, int delta);

/* HTTP bytes read from and written to clients (after TLS). */
void dems_metrics_bytes(uint64_t in, uint64_t out);

/* One durable ledger commit of entries entries that took seconds. */
void dems_metrics_ledger_commit(double seconds, size_t entries);

/* Database pool: queries waiting for a connection (+1 queued, -1 taken). */
void dems_metrics_db_waiting(int delta);

/* Worker processes alive, of how many configured, and restarts so far. */
void dems_metrics_workers(unsigned alive, unsigned configured, uint64_t restarts);

/*
 * Appends the process's counters in the Prometheus text format (0.0.4),
 * naming routes by method and path template (routes[i] for i < nroutes).
 */
struct dems_route;
int dems_metrics_render(struct dems_buf *b, const struct dems_route *routes, size_t nroutes);

#endif
