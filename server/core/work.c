/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CPU work pool. Event-loop threads must never block, so slow pure
 * computation (Argon2id takes ~100 ms and 64 MiB by design) runs here. Each
 * item runs fn on a pool thread, then is handed back to the loop that
 * submitted it, whose work event calls done on the loop thread.
 */
#include <event2/event.h>
#include <stdlib.h>

#include "dems/err.h"
#include "demsd/core.h"

struct dems_work {
    struct dems_work *next;
    struct dems_loop *loop;
    void (*fn)(void *arg);
    void (*done)(void *arg);
    void *arg;
};

static void *worker_main(void *arg)
{
    struct dems_server *srv = arg;
    pthread_mutex_lock(&srv->pool_mu);
    for (;;) {
        while (srv->queue_head == NULL && !srv->pool_stop)
            pthread_cond_wait(&srv->pool_cv, &srv->pool_mu);
        if (srv->queue_head == NULL)
            break;
        struct dems_work *w = srv->queue_head;
        srv->queue_head = w->next;
        if (srv->queue_head == NULL)
            srv->queue_tail = NULL;
        pthread_mutex_unlock(&srv->pool_mu);

        w->fn(w->arg);

        struct dems_loop *loop = w->loop;
        pthread_mutex_lock(&loop->work_mu);
        w->next = loop->work_done;
        loop->work_done = w;
        pthread_mutex_unlock(&loop->work_mu);
        event_active(loop->work_ev, EV_READ, 0);
        pthread_mutex_lock(&srv->pool_mu);
    }
    pthread_mutex_unlock(&srv->pool_mu);
    return NULL;
}

int dems_work_submit(struct dems_loop *loop, void (*fn)(void *arg), void (*done)(void *arg),
                     void *arg)
{
    struct dems_work *w = malloc(sizeof(*w));
    if (w == NULL)
        return DEMS_ENOMEM;
    *w = (struct dems_work){.loop = loop, .fn = fn, .done = done, .arg = arg};
    struct dems_server *srv = loop->srv;
    pthread_mutex_lock(&srv->pool_mu);
    if (srv->queue_tail != NULL)
        srv->queue_tail->next = w;
    else
        srv->queue_head = w;
    srv->queue_tail = w;
    pthread_cond_signal(&srv->pool_cv);
    pthread_mutex_unlock(&srv->pool_mu);
    return 0;
}

void dems_work_deliver(struct dems_loop *loop)
{
    pthread_mutex_lock(&loop->work_mu);
    struct dems_work *w = loop->work_done;
    loop->work_done = NULL;
    pthread_mutex_unlock(&loop->work_mu);
    while (w != NULL) {
        struct dems_work *next = w->next;
        w->done(w->arg);
        free(w);
        w = next;
    }
}

int dems_work_start(struct dems_server *srv, unsigned n)
{
    pthread_mutex_init(&srv->pool_mu, NULL);
    pthread_cond_init(&srv->pool_cv, NULL);
    srv->workers = calloc(n, sizeof(pthread_t));
    if (srv->workers == NULL)
        return DEMS_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0)
            return DEMS_EINTERNAL;
        srv->nworkers++;
    }
    return 0;
}

void dems_work_stop(struct dems_server *srv)
{
    pthread_mutex_lock(&srv->pool_mu);
    srv->pool_stop = true;
    pthread_cond_broadcast(&srv->pool_cv);
    pthread_mutex_unlock(&srv->pool_mu);
    for (unsigned i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    free(srv->workers);
    srv->workers = NULL;
    srv->nworkers = 0;
}

int dems_loop_post(struct dems_loop *loop, void (*fn)(void *arg), void *arg)
{
    struct dems_work *w = malloc(sizeof(*w));
    if (w == NULL)
        return DEMS_ENOMEM;
    *w = (struct dems_work){.loop = loop, .done = fn, .arg = arg};
    pthread_mutex_lock(&loop->work_mu);
    w->next = loop->work_done;
    loop->work_done = w;
    pthread_mutex_unlock(&loop->work_mu);
    event_active(loop->work_ev, EV_READ, 0);
    return 0;
}
