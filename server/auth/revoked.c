/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The revoked device certificates, kept in memory so that a revoked dock is
 * refused at the TLS handshake (tls.c) or, on a connection or resumed
 * session that began before, before any database or ledger work (auth.c):
 * a dock retrying in a tight loop costs a handshake, not a signed ledger
 * entry per attempt.
 *
 * One set per process, shared by the loop threads under a mutex (a binary
 * search per client certificate). It is filled at start, by every revocation
 * this process makes, on every housekeeping pass (so several demsd processes
 * on one database agree within housekeeping_interval), and whenever a
 * request finds a revocation this process had not heard of. Entries are
 * never removed: revocation is final (a revoked certificate cannot be
 * enrolled again).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/log.h"

struct entry {
    char sha256[65];
    char serial[65];
    time_t logged;    /* when a refusal was last logged */
    uint64_t refused; /* refusals since */
};

struct dems_revoked {
    pthread_mutex_t mu;
    struct entry *v; /* sorted by sha256 */
    size_t n, cap;
    atomic_bool refreshing;
};

struct dems_revoked *dems_revoked_new(void)
{
    struct dems_revoked *rv = calloc(1, sizeof(*rv));
    if (rv == NULL)
        return NULL;
    pthread_mutex_init(&rv->mu, NULL);
    atomic_init(&rv->refreshing, false);
    return rv;
}

void dems_revoked_free(struct dems_revoked *rv)
{
    if (rv == NULL)
        return;
    pthread_mutex_destroy(&rv->mu);
    free(rv->v);
    free(rv);
}

/* The index of sha256, or where it would go (*found false). Under mu. */
static size_t find(const struct dems_revoked *rv, const char *sha256, bool *found)
{
    size_t lo = 0, hi = rv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(rv->v[mid].sha256, sha256);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int insert_at(struct dems_revoked *rv, size_t i, const char *sha256, const char *serial)
{
    if (rv->n == rv->cap) {
        if (rv->cap > SIZE_MAX / 2 / sizeof(struct entry))
            return DEMS_ENOMEM;
        size_t cap = rv->cap == 0 ? 64 : rv->cap * 2;
        struct entry *v = realloc(rv->v, cap * sizeof(struct entry));
        if (v == NULL)
            return DEMS_ENOMEM;
        rv->v = v;
        rv->cap = cap;
    }
    memmove(&rv->v[i + 1], &rv->v[i], (rv->n - i) * sizeof(struct entry));
    struct entry *e = &rv->v[i];
    memset(e, 0, sizeof(*e));
    snprintf(e->sha256, sizeof(e->sha256), "%s", sha256);
    snprintf(e->serial, sizeof(e->serial), "%s", serial);
    rv->n++;
    return 1;
}

int dems_revoked_add(struct dems_revoked *rv, const char *sha256, const char *serial)
{
    if (rv == NULL || strlen(sha256) != 64)
        return DEMS_EINVAL;
    pthread_mutex_lock(&rv->mu);
    bool found;
    size_t i = find(rv, sha256, &found);
    int r = found ? 0 : insert_at(rv, i, sha256, serial);
    pthread_mutex_unlock(&rv->mu);
    return r;
}

bool dems_revoked_has(struct dems_revoked *rv, const char *sha256)
{
    if (rv == NULL)
        return false;
    pthread_mutex_lock(&rv->mu);
    bool found;
    find(rv, sha256, &found);
    pthread_mutex_unlock(&rv->mu);
    return found;
}

bool dems_revoked_refuse(struct dems_revoked *rv, const char *sha256, time_t now,
                         struct dems_revoked_refusal *ret)
{
    if (rv == NULL)
        return false;
    pthread_mutex_lock(&rv->mu);
    bool found;
    size_t i = find(rv, sha256, &found);
    if (found) {
        struct entry *e = &rv->v[i];
        e->refused++;
        ret->log_due = now - e->logged >= DEMS_REVOKED_LOG_INTERVAL;
        ret->refused = e->refused;
        snprintf(ret->serial, sizeof(ret->serial), "%s", e->serial);
        if (ret->log_due) {
            e->logged = now;
            e->refused = 0;
        }
    }
    pthread_mutex_unlock(&rv->mu);
    return found;
}

static const char revoked_sql[] =
    "SELECT cert_sha256, serial FROM devices WHERE revoked_at IS NOT NULL";

/* Adds every row of a revoked_sql result; returns how many were new. */
static int add_rows(struct dems_revoked *rv, const PGresult *res)
{
    int fsha = PQfnumber(res, "cert_sha256"), fserial = PQfnumber(res, "serial");
    int added = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        int r = dems_revoked_add(rv, PQgetvalue(res, i, fsha), PQgetvalue(res, i, fserial));
        if (r < 0)
            return r;
        added += r;
    }
    return added;
}

int dems_revoked_load(struct dems_revoked *rv, const char *conninfo, char *err, size_t errlen)
{
    PGconn *db = dems_db_connect_sync(conninfo, err, errlen);
    if (db == NULL)
        return DEMS_EDB;
    PGresult *res = PQexecParams(db, revoked_sql, 0, NULL, NULL, NULL, NULL, 0);
    int r = DEMS_EDB;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        snprintf(err, errlen, "loading the revoked devices: %.300s", PQresultErrorMessage(res));
    else if ((r = add_rows(rv, res)) < 0)
        snprintf(err, errlen, "loading the revoked devices: out of memory");
    PQclear(res);
    PQfinish(db);
    return r < 0 ? r : 0;
}

static void on_refreshed(void *arg, const PGresult *res, int err)
{
    struct dems_revoked *rv = arg;
    int added = err < 0 ? err : add_rows(rv, res);
    if (added > 0)
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:i}", "event", "revoked_devices_refreshed", "added", added),
                 "learnt of %d device revocation(s) made elsewhere", added);
    atomic_store(&rv->refreshing, false);
}

void dems_revoked_refresh(struct dems_loop *loop)
{
    struct dems_revoked *rv = loop->srv->revoked;
    if (rv == NULL || atomic_exchange(&rv->refreshing, true))
        return; /* one refresh at a time */
    if (dems_db_query(loop->db, revoked_sql, 0, NULL, on_refreshed, rv) < 0)
        atomic_store(&rv->refreshing, false);
}
