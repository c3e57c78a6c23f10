/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event loops. One listening socket is shared by N threads, each with its own
 * event_base, connection list and database pool; the kernel hands each new
 * connection to whichever loop accepts first, and a connection stays on that
 * loop for life, so connection state needs no locks. The main thread waits
 * for SIGTERM/SIGINT and then asks every loop to drain: stop accepting, close
 * idle connections, let in-flight requests finish (bounded by
 * shutdown_timeout) and exit.
 *
 * Accepting is where a flood meets the server, so it stays cheap and never
 * spins. A socket over max_connections or max_connections_per_address is
 * closed at once, before TLS: answering 503 would need a TLS handshake,
 * which is the very work a flood wants us to do. At the file-descriptor
 * limit (EMFILE/ENFILE) accept() fails while the listening socket stays
 * readable, so a level-triggered listener would call us back forever (100%
 * CPU, a log line each time): instead the loop gives up its spare
 * descriptor, accepts and closes pending connections with it (the clients
 * learn at once instead of waiting in the backlog), takes the spare back,
 * and stops listening for ACCEPT_BACKOFF_MS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/limits.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/http.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

/* How long a loop stops accepting after running out of descriptors. */
#define ACCEPT_BACKOFF_MS 250
/* Pending connections shed (accepted and closed) per EMFILE episode. */
#define SHED_MAX 64
/* Descriptors kept free of connections for everything else (see derive_max). */
#define FD_RESERVE_BASE 64

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    (void)salen;
    struct dems_loop *loop = arg;
    struct dems_admit_key key;
    dems_admit_key_from(sa, &key);
    enum dems_admit r = dems_admit_take(loop->srv, &key);
    if (r == DEMS_ADMIT_OK) {
        dems_conn_accept(loop, fd, sa, &key);
        return;
    }
    close(fd);
    char peer[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)sa)->sin_addr, peer, sizeof(peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)sa)->sin6_addr, peer, sizeof(peer));
    if (r == DEMS_ADMIT_FULL)
        DEMS_LOG_LIMITED(DEMS_LOG_WARN, NULL,
                         json_pack("{s:s,s:s}", "event", "connection_refused", "peer", peer),
                         "refused a connection: max_connections (%zu) reached",
                         loop->srv->max_connections);
    else
        DEMS_LOG_LIMITED(DEMS_LOG_WARN, NULL,
                         json_pack("{s:s,s:s}", "event", "connection_refused", "peer", peer),
                         "refused a connection: max_connections_per_address (%llu) reached",
                         (unsigned long long)loop->srv->cfg->max_connections_per_address);
}

static int open_spare(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/*
 * Out of descriptors: free the spare, use it to accept and close what is
 * pending, take it back. Another thread may take the freed descriptor
 * first; then there is nothing to shed with this time, and the spare is
 * reopened when a descriptor is free again.
 */
static size_t shed_pending(struct dems_loop *loop)
{
    size_t shed = 0;
    if (loop->spare_fd >= 0) {
        close(loop->spare_fd);
        loop->spare_fd = -1;
    }
    while (shed < SHED_MAX) {
        int fd = accept4(loop->srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
        shed++;
    }
    loop->spare_fd = open_spare();
    return shed;
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct dems_loop *loop = arg;
    int err = errno;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        DEMS_LOG_LIMITED(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "accept_failed"),
                         "accept failed: %s", strerror(err));
        return;
    }
    size_t shed = err == EMFILE || err == ENFILE ? shed_pending(loop) : 0;
    evconnlistener_disable(l);
    struct timeval tv = {.tv_sec = 0, .tv_usec = ACCEPT_BACKOFF_MS * 1000};
    evtimer_add(loop->accept_resume, &tv);
    DEMS_LOG_LIMITED(DEMS_LOG_WARN, NULL,
                     json_pack("{s:s,s:s,s:I,s:I}", "event", "accept_failed", "error",
                               strerror(err), "shed", (json_int_t)shed, "connections",
                               (json_int_t)dems_admit_total(loop->srv)),
                     "accept failed: %s; closed %zu pending connection(s), not accepting for %d ms",
                     strerror(err), shed, ACCEPT_BACKOFF_MS);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dems_loop *loop = arg;
    if (loop->spare_fd < 0)
        loop->spare_fd = open_spare();
    if (loop->listener != NULL && !loop->draining)
        evconnlistener_enable(loop->listener);
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    dems_log_flush();
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
    if (loop->accept_resume != NULL)
        event_del(loop->accept_resume);
    if (loop->log_flush != NULL)
        event_del(loop->log_flush);
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

int dems_listen_open(struct dems_server *srv, char *err, size_t errlen)
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
    loop->accept_resume = evtimer_new(loop->base, on_accept_resume, loop);
    loop->spare_fd = open_spare();
    if (id == 0) {
        /* Summaries of rate-limited log lines go out within a few seconds. */
        loop->log_flush = event_new(loop->base, -1, EV_PERSIST, on_log_flush, loop);
        struct timeval ftv = {.tv_sec = 2};
        if (loop->log_flush == NULL || event_add(loop->log_flush, &ftv) != 0)
            return DEMS_ENOMEM;
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
    /* Close-on-exec: worker and sandbox processes must not inherit clients. */
    loop->listener =
        evconnlistener_new(loop->base, on_accept, loop, LEV_OPT_CLOSE_ON_EXEC, -1, srv->listen_fd);
    if (loop->stop_ev == NULL || loop->reap_ev == NULL || loop->work_ev == NULL ||
        loop->drain_timer == NULL || loop->db == NULL || loop->listener == NULL ||
        loop->accept_resume == NULL || loop->spare_fd < 0)
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
    if (loop->log_flush != NULL)
        event_free(loop->log_flush);
    if (loop->accept_resume != NULL)
        event_free(loop->accept_resume);
    if (loop->spare_fd >= 0)
        close(loop->spare_fd);
    event_base_free(loop->base);
    pthread_mutex_destroy(&loop->work_mu);
}

static void *loop_main(void *arg)
{
    struct dems_loop *loop = arg;
    event_base_dispatch(loop->base);
    return NULL;
}

/*
 * Raises the soft open-file limit to the hard one (the kernel default soft
 * limit, 1024, is far below what a server with thousands of clients needs;
 * the hard limit is the administrator's choice) and returns it.
 */
static uint64_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

/*
 * The default max_connections: half the descriptors left after a reserve
 * (each connection may hold a second one: an upload's staging file or a
 * download's blob), at most DEMS_MAX_CONNECTIONS_DEFAULT (memory: a TLS
 * connection costs tens of KiB) and at least 16. The reserve covers the
 * listening socket, each loop's event base, wake-up events, spare and
 * database connections, the ledger's connection, worker pipes and logs.
 */
static size_t derive_max(const struct dems_server *srv, unsigned nloops, uint64_t nofile)
{
    uint64_t reserve =
        FD_RESERVE_BASE + (uint64_t)nloops * (srv->cfg->db_pool_size + 8) + srv->cfg->workers * 4;
    uint64_t n = nofile > reserve ? (nofile - reserve) / 2 : 0;
    if (n > DEMS_MAX_CONNECTIONS_DEFAULT)
        n = DEMS_MAX_CONNECTIONS_DEFAULT;
    return n < 16 ? 16 : (size_t)n;
}

void dems_loops_stop(struct dems_server *srv)
{
    for (unsigned i = 0; i < srv->nloops; i++)
        event_active(srv->loops[i].stop_ev, EV_READ, 0);
}

int dems_loops_run(struct dems_server *srv)
{
    char err[512];
    int r = srv->listen_fd >= 0 ? 0 : dems_listen_open(srv, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        return r;
    }
    unsigned n = (unsigned)srv->cfg->threads;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (unsigned)cores : 1;
    }
    uint64_t nofile = raise_nofile();
    srv->max_connections = srv->cfg->max_connections != 0 ? (size_t)srv->cfg->max_connections
                                                          : derive_max(srv, n, nofile);
    r = dems_admit_init(srv, srv->max_connections, (size_t)srv->cfg->max_connections_per_address);
    srv->loops = r == 0 ? calloc(n, sizeof(*srv->loops)) : NULL;
    if (srv->loops == NULL) {
        close(srv->listen_fd);
        dems_admit_done(srv);
        return DEMS_ENOMEM;
    }
    for (unsigned i = 0; i < n; i++)
        srv->loops[i].spare_fd = -1;
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
                 json_pack("{s:s,s:i,s:i,s:s,s:I,s:I,s:I}", "event", "listening", "port",
                           (int)srv->port, "threads", (int)n, "host", host, "max_connections",
                           (json_int_t)srv->max_connections, "max_connections_per_address",
                           (json_int_t)srv->cfg->max_connections_per_address, "open_file_limit",
                           (json_int_t)nofile),
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
    /*
     * Ledger outcomes are posted to the loop that queued them: wait until
     * none is still coming before the loops go (loop_done runs what was
     * posted, the requests it releases are already aborted). Should the
     * database hang past the wait, the loops are left for the exit to reclaim
     * rather than freed under an appender that may still post to them.
     */
    bool drained = dems_ledger_drain(srv, (unsigned)srv->cfg->shutdown_timeout + 5);
    if (!drained)
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "ledger_not_drained"),
                 "ledger appends still running at shutdown; leaving the loops to the exit");
    for (unsigned i = 0; drained && i < n; i++)
        loop_done(&srv->loops[i]);
    if (drained)
        free(srv->loops);
    srv->loops = NULL;
    close(srv->listen_fd);
    dems_admit_done(srv);
    return r;
}
