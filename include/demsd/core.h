/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The server process: one struct dems_server, N event-loop threads (struct
 * dems_loop, one event_base each) accepting from one shared listening
 * socket, a small thread pool for CPU-heavy work (password hashing), and
 * graceful shutdown. Connection handling lives in server/http/.
 */
#ifndef DEMSD_CORE_H
#define DEMSD_CORE_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dems/config.h"

struct event_base;
struct event;
struct evconnlistener;
struct dems_db_pool;
struct dems_conn;
struct dems_work;
struct dems_admission;
struct sockaddr;
struct dems_revoked;
struct dems_embedded;

struct dems_loop {
    unsigned id;
    struct dems_server *srv;
    struct event_base *base;
    pthread_t thread;
    struct evconnlistener *listener;
    struct dems_db_pool *db;
    struct event *stop_ev; /* activated from the main thread */
    struct event *reap_ev; /* frees closed connections outside callbacks */
    struct event *work_ev; /* delivers finished pool work */
    struct event *drain_timer;
    struct event *periodic;      /* housekeeping timer (loop 0 only) */
    struct event *log_flush;     /* writes rate-limited log summaries (loop 0 only) */
    struct event *accept_resume; /* re-enables accepting after EMFILE/ENFILE */
    int spare_fd;                /* /dev/null, given up to shed a connection at EMFILE */
    struct dems_conn *conns;     /* doubly linked list of live connections */
    struct dems_conn *dead;      /* singly linked list awaiting free */
    size_t nconns;
    size_t holds; /* background tasks that keep a draining loop running */
    bool draining;
    pthread_mutex_t work_mu;
    struct dems_work *work_done; /* finished items, guarded by work_mu */
    uint64_t req_counter;        /* request-id sequence (see conn.c) */
    char date[40];               /* cached HTTP Date header value */
    int64_t date_sec;
};

struct dems_server {
    struct dems_config *cfg;
    SSL_CTX *ssl_ctx;
    X509 *device_ca; /* signs docks' certificates */
    EVP_PKEY *device_ca_key;
    struct dems_revoked *revoked; /* revoked device certificates (demsd/auth.h) */
    int listen_fd;
    uint16_t port;
    size_t max_connections;           /* the configured or derived total cap */
    struct dems_admission *admission; /* server/core/admit.c */
    struct dems_loop *loops;
    unsigned nloops;
    char db_conninfo[2048];
    struct dems_embedded *embedded; /* the embedded cluster, NULL with database_url */
    char *migrations_status;        /* NULL when current */
    struct dems_ledger *ledger;     /* server/ledger/append.c */
    struct dems_witness *witness;   /* server/ledger/witness.c; NULL in job workers */
    uint8_t *master_key;            /* 32 bytes, sodium_malloc'd (server/store/keys.c) */
    /* The CPU work pool (password hashing). */
    pthread_t *workers;
    unsigned nworkers;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    struct dems_work *queue_head, *queue_tail;
    bool pool_stop;
};

/*
 * Runs fn(arg) on a pool thread, then done(arg) on loop's thread. Returns 0,
 * or DEMS_ENOMEM (then neither function runs).
 */
int dems_work_submit(struct dems_loop *loop, void (*fn)(void *arg), void (*done)(void *arg),
                     void *arg);

/*
 * Runs fn(arg) on loop's thread soon; callable from any thread. Returns 0,
 * or DEMS_ENOMEM (then fn never runs).
 */
int dems_loop_post(struct dems_loop *loop, void (*fn)(void *arg), void *arg);

/* On loop's thread: runs done for every finished item (its work_ev). */
void dems_work_deliver(struct dems_loop *loop);

/* Starts and stops the work pool (n threads); stop runs what is queued. */
int dems_work_start(struct dems_server *srv, unsigned n);
void dems_work_stop(struct dems_server *srv);

/*
 * Binds and listens on cfg->listen (srv->listen_fd, srv->port); serve does
 * it before dropping root. Returns 0, or DEMS_E* with err.
 */
int dems_listen_open(struct dems_server *srv, char *err, size_t errlen);

/* Creates the loops (config threads, 0 = cores; listening first unless
 * dems_listen_open did), runs them until shutdown. */
int dems_loops_run(struct dems_server *srv);

/* Asks every loop to drain and stop; safe from any thread. */
void dems_loops_stop(struct dems_server *srv);

/* The TLS context: configured files, or a self-signed pair under data_dir. */
int dems_tls_init(struct dems_server *srv, char *err, size_t errlen);

/* Frees the TLS context and the device CA. */
void dems_tls_done(struct dems_server *srv);

/*
 * Issues a client certificate for a dock from its PEM CSR (signature checked),
 * signed by the device CA: CN = serial, clientAuth, valid 825 days. Returns
 * 0 with the PEM in out (owned, free()) and its SHA-256 fingerprint (hex), or
 * DEMS_EINVAL for a bad CSR.
 */
int dems_tls_issue_device_cert(struct dems_server *srv, const char *csr_pem, const char *serial,
                               char **ret_pem, char ret_sha256[static 65]);

/* SHA-256 fingerprint (hex) of a PEM certificate; DEMS_EINVAL when not one. */
int dems_tls_cert_sha256(const char *pem, char ret_sha256[static 65]);

/*
 * Whether a PEM certificate may authenticate a device at time now: NULL when
 * it may, else a stable code — "certificate_expired",
 * "certificate_not_yet_valid", "certificate_not_for_client_auth" (an
 * extendedKeyUsage without clientAuth or a keyUsage without
 * digitalSignature) or "invalid_certificate" (does not parse). The same rules
 * hold at enrolment, at every handshake and on every device request.
 */
const char *dems_tls_cert_problem(const char *pem, time_t now);

/* One sentence saying what a dems_tls_cert_problem code means. */
const char *dems_tls_cert_problem_text(const char *code);

/*
 * Connection admission (server/core/admit.c): caps on open client connections
 * in total and per client address (an IPv4 address, or an IPv6 /64), shared
 * by every loop and safe from any thread.
 */
struct dems_admit_key {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d; IPv6 as its /64, zero-filled */
};

enum dems_admit {
    DEMS_ADMIT_OK,
    DEMS_ADMIT_FULL,         /* max_connections reached */
    DEMS_ADMIT_ADDRESS_FULL, /* max_connections_per_address reached */
};

/* The key a client address is counted under. */
void dems_admit_key_from(const struct sockaddr *sa, struct dems_admit_key *ret_key);

/* Sets up the caps (max_per_address 0 = none). Returns 0 or DEMS_ENOMEM. */
int dems_admit_init(struct dems_server *srv, size_t max_total, size_t max_per_address);
void dems_admit_done(struct dems_server *srv);

/* Takes a slot for a new connection, unless a cap is reached. */
enum dems_admit dems_admit_take(struct dems_server *srv, const struct dems_admit_key *key);

/* Gives back a slot taken by dems_admit_take. */
void dems_admit_release(struct dems_server *srv, const struct dems_admit_key *key);

/* Open connections now. */
size_t dems_admit_total(struct dems_server *srv);

/* Called by a loop when it has no connections left while draining. */
void dems_loop_maybe_exit(struct dems_loop *loop);

/*
 * A background task not tied to a connection (an upload being recorded
 * after its request went) keeps a draining loop running until it ends, as a
 * connection does (shutdown_timeout still bounds it). Loop thread only.
 */
void dems_loop_hold(struct dems_loop *loop);
void dems_loop_unhold(struct dems_loop *loop);

#endif
