/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker process's ledger appender, shared by the job kinds that record
 * an entry (preview, bundle). Workers have no event loop, so the process
 * starts one appender thread on first use (server/ledger/append.c
 * serialises appends across processes under the ledger_head row lock) and a
 * job slot waits on a condition variable until its entry is durable.
 */
#include <pthread.h>
#include <stdbool.h>

#include "dems/config.h"
#include "demsd/core.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

static pthread_mutex_t ledger_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dems_config ledger_cfg;
static struct dems_server ledger_srv;
static bool ledger_started;

int dems_job_ledger_start(const struct dems_job_ctx *ctx, char *err, size_t errlen)
{
    pthread_mutex_lock(&ledger_mu);
    int r = 0;
    if (!ledger_started) {
        ledger_cfg = *ctx->cfg; /* shallow: the worker's configuration outlives it */
        ledger_srv.cfg = &ledger_cfg;
        r = dems_ledger_start(&ledger_srv, ctx->conninfo, ctx->master_key, err, errlen);
        ledger_started = r == 0;
    }
    pthread_mutex_unlock(&ledger_mu);
    return r;
}

struct wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
    uint64_t seq;
};

static void appended(struct dems_ledger_item *item, void *arg)
{
    struct wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->err = item->err;
    w->seq = item->seq;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int dems_job_ledger_append(struct dems_ledger_item *item, uint64_t *ret_seq)
{
    struct wait w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    item->done = appended;
    item->arg = &w;
    int r = dems_ledger_append(&ledger_srv, NULL, item);
    if (r == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        r = w.err;
        *ret_seq = w.seq;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return r;
}
