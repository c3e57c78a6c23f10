/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event loops. One listening socket is shared by N threads, each with its own
 * event_base, connection list and database pool; the kernel hands each new
 * connection to whichever loop accepts first, and a connection stays on that
 * loop for life, so connection state needs no locks. The main thread waits
 * for SIGTERM/SIGINT and then asks every loop to drain: stop accepting, close
 * idle connections, let in-flight requests finish (bounded by
 * shutdown_timeout) and exit.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/http.h"
#include "demsd/log.h"

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    dems_conn_accept(arg, fd, sa, salen);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: log and keep going; libevent retries later. */
    dems_log(DEMS_LOG_WARN, NULL, NULL, "accept failed: %s", strerror(errno));
}

void dems_loop_maybe_exit(struct dems_loop *loop)
{
    if (loop->draining && loop->nconns == 0 && loop->holds == 0)
        event_base_loopexit(loop->base, NULL);
}

void dems_loop_hold(struct dems_loop *loop)
{
    loop->holds++;
}

void dems_loop_unhold(struct dems_loop *loop)
{
    loop->holds--;
    dems_loop_maybe_exit(loop);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dems_loop *loop = arg;
    if (loop->nconns > 0)
        dems_log(DEMS_LOG_WARN, NULL, NULL, "shutdown timeout: closing %zu connections",
                 loop->nconns);
    dems_conn_close_all(loop);
    event_base_loopexit(loop->base, NULL);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dems_loop *loop = arg;
    if (loop->draining)
        return;
    loop->draining = true;
    if (loop->periodic != NULL)
        event_del(loop->periodic);
    if (loop->listener != NULL) {
        evconnlistener_free(loop->listener);
        loop->listener = NULL;
    }
    dems_conn_drain_all(loop);
    struct timeval tv = {.tv_sec = (time_t)loop->srv->cfg->shutdown_timeout};
    evtimer_add(loop->drain_timer, &tv);
    dems_loop_maybe_exit(loop);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dems_conn_reap(arg);
}

static void on_work(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dems_work_deliver(arg);
}

static void on_periodic(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dems_loop *loop = arg;
    if (!loop->draining)
        dems_api_periodic(loop);
}

static int listen_socket(struct dems_server *srv, char *err, size_t errlen)
{
    char host[256];
    uint16_t port;
    if (dems_config_split_hostport(srv->cfg->listen, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "config: listen: expected HOST:PORT");
        return DEMS_EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int gr = getaddrinfo(host, portstr, &hints, &ai);
    if (gr != 0) {
        snprintf(err, errlen, "listen: cannot resolve %s: %s", host, gai_strerror(gr));
        return DEMS_EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen: cannot listen on %s: %s", srv->cfg->listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return DEMS_EIO;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    srv->listen_fd = fd;
    return 0;
}

static int loop_init(struct dems_server *srv, struct dems_loop *loop, unsigned id)
{
    loop->id = id;
    loop->srv = srv;
    pthread_mutex_init(&loop->work_mu, NULL);
    loop->base = event_base_new();
    if (loop->base == NULL)
        return DEMS_ENOMEM;
    loop->stop_ev = event_new(loop->base, -1, 0, on_stop, loop);
    loop->reap_ev = event_new(loop->base, -1, 0, on_reap, loop);
    loop->work_ev = event_new(loop->base, -1, 0, on_work, loop);
    loop->drain_timer = evtimer_new(loop->base, on_drain_timeout, loop);
    if (id == 0) {
        /* Housekeeping (expiring abandoned uploads, recording completed ones) runs
         * on the first loop. */
        loop->periodic = event_new(loop->base, -1, EV_PERSIST, on_periodic, loop);
        struct timeval tv = {.tv_sec = (time_t)srv->cfg->housekeeping_interval};
        if (loop->periodic == NULL || event_add(loop->periodic, &tv) != 0)
            return DEMS_ENOMEM;
        /* And once as soon as the loop runs: uploads a crash left sealed
         * but unrecorded are completed at start (dems_api_periodic). */
        event_active(loop->periodic, EV_READ, 0);
    }
    loop->db = dems_db_pool_new(loop->base, srv->db_conninfo, (size_t)srv->cfg->db_pool_size);
    loop->listener = evconnlistener_new(loop->base, on_accept, loop, 0, -1, srv->listen_fd);
    if (loop->stop_ev == NULL || loop->reap_ev == NULL || loop->work_ev == NULL ||
        loop->drain_timer == NULL || loop->db == NULL || loop->listener == NULL)
        return DEMS_ENOMEM;
    evconnlistener_set_error_cb(loop->listener, on_accept_error);
    return 0;
}

static void loop_done(struct dems_loop *loop)
{
    if (loop->base == NULL)
        return;
    if (loop->listener != NULL)
        evconnlistener_free(loop->listener);
    dems_work_deliver(loop);
    if (loop->db != NULL)
        dems_db_pool_free(loop->db);
    dems_conn_close_all(loop);
    dems_conn_reap(loop);
    if (loop->stop_ev != NULL)
        event_free(loop->stop_ev);
    if (loop->reap_ev != NULL)
        event_free(loop->reap_ev);
    if (loop->work_ev != NULL)
        event_free(loop->work_ev);
    if (loop->drain_timer != NULL)
        event_free(loop->drain_timer);
    if (loop->periodic != NULL)
        event_free(loop->periodic);
    event_base_free(loop->base);
    pthread_mutex_destroy(&loop->work_mu);
}

static void *loop_main(void *arg)
{
    struct dems_loop *loop = arg;
    event_base_dispatch(loop->base);
    return NULL;
}

void dems_loops_stop(struct dems_server *srv)
{
    for (unsigned i = 0; i < srv->nloops; i++)
        event_active(srv->loops[i].stop_ev, EV_READ, 0);
}

int dems_loops_run(struct dems_server *srv)
{
    char err[512];
    int r = listen_socket(srv, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        return r;
    }
    unsigned n = (unsigned)srv->cfg->threads;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (unsigned)cores : 1;
    }
    srv->loops = calloc(n, sizeof(*srv->loops));
    if (srv->loops == NULL)
        return DEMS_ENOMEM;
    srv->nloops = n;
    for (unsigned i = 0; i < n && r == 0; i++)
        r = loop_init(srv, &srv->loops[i], i);
    unsigned started = 0;
    for (; r == 0 && started < n; started++) {
        if (pthread_create(&srv->loops[started].thread, NULL, loop_main, &srv->loops[started]))
            r = DEMS_EINTERNAL;
    }
    if (r == 0) {
        char host[256];
        uint16_t port;
        dems_config_split_hostport(srv->cfg->listen, host, sizeof(host), &port);
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:i,s:i,s:s}", "event", "listening", "port", (int)srv->port,
                           "threads", (int)n, "host", host),
                 "listening on https://%s%s%s:%u/", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", srv->port);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        int sig = 0;
        sigwait(&set, &sig);
        dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s}", "event", "shutdown"),
                 "received %s: draining connections", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    for (unsigned i = 0; i < started; i++)
        event_active(srv->loops[i].stop_ev, EV_READ, 0);
    for (unsigned i = 0; i < started; i++)
        pthread_join(srv->loops[i].thread, NULL);
    dems_work_stop(srv);
    for (unsigned i = 0; i < n; i++)
        loop_done(&srv->loops[i]);
    free(srv->loops);
    srv->loops = NULL;
    close(srv->listen_fd);
    return r;
}
