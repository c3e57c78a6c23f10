/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by embedded.c (start-up, initdb, roles) and keeper.c (the process
 * that runs and restarts the embedded PostgreSQL). Private to server/db/.
 */
#ifndef DEMS_EMBEDDED_INT_H
#define DEMS_EMBEDDED_INT_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "demsd/db.h"

struct dems_config;

#define EMB_SUPERUSER "dems_super"

/* Sleeps ms milliseconds. */
void emb_sleep_ms(long ms);

/* A libpq conninfo for a Unix-socket directory, database and role. */
void emb_conninfo(char *out, size_t len, const char *dir, const char *db, const char *user);

/*
 * In a forked child: unblocks signals, sends output to logfd, becomes
 * uid/gid when root, optionally asks for SIGINT when its parent dies, and
 * execs argv (argv[2] is the data directory, checked for reachability).
 */
_Noreturn void emb_child_exec(uid_t uid, gid_t gid, int logfd, const char *const *argv,
                              bool deathsig);

/*
 * The keeper's state, in a page shared (MAP_SHARED) between demsd and its
 * keeper process: the keeper writes, demsd reads (/readyz, start-up).
 */
struct emb_shared {
    _Atomic int state;         /* enum dems_embedded_state */
    _Atomic unsigned restarts; /* times the cluster was started again */
    char reason[256];          /* why it failed; written before state FAILED */
};

/* What the keeper needs; all borrowed for the fork. */
struct emb_keeper_args {
    const struct dems_config *cfg;
    const char *pgdir;       /* the cluster's data directory */
    const char *sockdir;     /* where its Unix socket goes */
    const char *socket_mode; /* unix_socket_permissions */
    const char *logpath;     /* DATA/postgresql.log, for messages */
    int logfd;               /* open on logpath; the postmaster's output */
    uid_t uid;               /* the cluster's account (root switches to it) */
    gid_t gid;
};

/*
 * Forks the keeper (server/db/keeper.c): it becomes the cluster's account,
 * adopts a postmaster a crashed demsd left serving or starts one, publishes
 * its state in shared, restarts the postmaster with a backoff whenever it
 * dies, and stops it (fast, then immediate) when *ret_ctl is closed or the
 * process holding it dies. Returns the keeper's pid, or -1 (fork failed).
 * Call before any thread exists.
 */
pid_t emb_keeper_start(const struct emb_keeper_args *a, struct emb_shared *shared, int *ret_ctl);

#endif
