/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PostgreSQL for demsd. On event-loop threads, libpq runs in non-blocking
 * mode driven by libevent: a pool of connections per loop, queries queued
 * when all are busy, reconnection with backoff. Parameterised statements
 * only. Synchronous helpers exist for start-up and command-line tools, which
 * run before or outside any event loop.
 */
#ifndef DEMSD_DB_H
#define DEMSD_DB_H

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct dems_db_pool;
struct dems_req;
struct dems_config;

/*
 * Result callback: res is borrowed for the call (NULL when err < 0; err is
 * DEMS_EDB when the connection failed or the statement raised an error, with
 * res then holding the error result if there was one).
 */
typedef void (*dems_db_cb)(void *arg, const PGresult *res, int err);

/* Returns owned; free with dems_db_pool_free (loop thread). */
struct dems_db_pool *dems_db_pool_new(struct event_base *base, const char *conninfo, size_t size);

/* Fails queued queries with DEMS_EUNAVAIL and closes every connection. */
void dems_db_pool_free(struct dems_db_pool *pool);

/*
 * Queues a statement with text parameters (copied; NULL means SQL NULL).
 * Returns 0 and later calls cb exactly once, or returns DEMS_EUNAVAIL (queue
 * full or pool closed) and never calls cb.
 */
int dems_db_query(struct dems_db_pool *pool, const char *sql, int nparams,
                  const char *const *params, dems_db_cb cb, void *arg);

/*
 * dems_db_query on the request's loop, holding a reference to req until cb
 * has run. cb is not called when the request was aborted meanwhile.
 */
int dems_db_req(struct dems_req *req, const char *sql, int nparams, const char *const *params,
                void (*cb)(struct dems_req *req, const PGresult *res, int err));

/*
 * A statement each connection prepares once: PostgreSQL parses and plans it
 * on its first use there, not on every call. For hot paths; declare it
 * static with DEMS_DB_STMT (it must outlive every pool). Its id is given on
 * first use; the first DEMS_DB_MAX_STMTS statements so declared are
 * prepared, any after them run as unnamed statements (same results).
 */
struct dems_db_stmt {
    const char *sql;
    int nparams;
    atomic_uint id; /* 0 until first used */
};
#define DEMS_DB_STMT(text, n)                                                                      \
    {                                                                                              \
        .sql = (text), .nparams = (n)                                                              \
    }
#define DEMS_DB_MAX_STMTS 64

/* dems_db_query with a prepared statement (its parameters: stmt->nparams of params). */
int dems_db_query_stmt(struct dems_db_pool *pool, struct dems_db_stmt *stmt,
                       const char *const *params, dems_db_cb cb, void *arg);

/* dems_db_req with a prepared statement. */
int dems_db_req_stmt(struct dems_req *req, struct dems_db_stmt *stmt, const char *const *params,
                     void (*cb)(struct dems_req *req, const PGresult *res, int err));

/* Rows an INSERT/UPDATE/DELETE touched (PQcmdTuples as a number). */
long dems_db_affected(const PGresult *res);

/* True when a statement's error was a unique-constraint violation. */
bool dems_db_is_unique_violation(const PGresult *res);

/* Synchronous: connects (blocking) and returns the connection or NULL with err filled. */
PGconn *dems_db_connect_sync(const char *conninfo, char *err, size_t errlen);

/*
 * Migrations (server/db/migrate.c). Applies every embedded migration not yet
 * recorded, each in one transaction, under an advisory lock; re-running is a
 * no-op. app_role receives the application grants. Returns 0 or DEMS_E*.
 */
int dems_migrate_run(PGconn *owner, const char *app_role, char *err, size_t errlen);

/* Describes what is pending: NULL when the schema is current, else a message (owned). */
char *dems_migrate_status(PGconn *conn);

/* Number of migrations compiled into this binary. */
size_t dems_migrate_count(void);

/*
 * The embedded cluster (server/db/embedded.c). dems_embedded_start creates
 * (initdb) and starts a private PostgreSQL under data_dir/pg listening only
 * on a Unix socket there, creates the owner and application roles and the
 * database, and fills the two conninfo strings. The socket lives in
 * data_dir/run; when demsd runs as root and client_gid is not -1, that
 * directory belongs to the cluster's account and group client_gid (mode
 * 0750), so the service account demsd switches to can connect. A keeper process runs the
 * postmaster: it adopts one left running by a crashed demsd, restarts it
 * when it dies, and stops it when demsd stops or dies. Call before any
 * thread exists (it forks). dems_embedded_stop shuts the cluster down (fast
 * mode) and waits for the keeper to exit.
 */
struct dems_embedded;
int dems_embedded_start(const struct dems_config *cfg, int client_gid, struct dems_embedded **ret,
                        char *owner_conninfo, char *app_conninfo, size_t conninfo_len, char *err,
                        size_t errlen);
void dems_embedded_stop(struct dems_embedded *e);

/*
 * What the embedded cluster's keeper says: STARTING before its first start,
 * UP while the postmaster answers, DOWN from its death until a new one
 * answers (the keeper restarts it with a backoff), FAILED when the first
 * start failed, STOPPED after dems_embedded_stop. Any thread; never blocks.
 */
enum dems_embedded_state {
    DEMS_EMBEDDED_STARTING,
    DEMS_EMBEDDED_UP,
    DEMS_EMBEDDED_DOWN,
    DEMS_EMBEDDED_FAILED,
    DEMS_EMBEDDED_STOPPED,
};
enum dems_embedded_state dems_embedded_state(const struct dems_embedded *e);

/* The conninfo strings of a cluster another demsd runs (no start). */
int dems_embedded_conninfo(const struct dems_config *cfg, char *owner_conninfo, char *app_conninfo,
                           size_t conninfo_len, char *err, size_t errlen);

/*
 * The data-directory lock: one demsd per data directory. Returns an fd to
 * keep open, or -1 with err naming the holder's pid.
 */
int dems_datadir_lock(const char *data_dir, char *err, size_t errlen);

/* The application role's name for grants. */
#define DEMS_DB_APP_ROLE   "dems_app"
#define DEMS_DB_OWNER_ROLE "dems_owner"

#endif
