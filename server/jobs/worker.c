/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A worker process: N slot threads, each with its own blocking PostgreSQL
 * connection, claiming and running jobs; and the main thread, which owns a
 * LISTEN dems_jobs connection and a signalfd and sleeps in poll() on both.
 *
 * A slot claims until nothing is runnable, asks when the next waiting job
 * falls due, and sleeps on a condition variable until then (at most
 * job_poll_interval) or until the main thread wakes it: a notification
 * (a job was queued) bumps a generation counter and wakes every slot. So an
 * idle worker costs one poll() wake-up per job_poll_interval and nothing
 * else. The main thread also renews the leases of running jobs (every third
 * of job_lease), reaps the expired leases of dead workers (every
 * job_poll_interval), and on SIGTERM/SIGINT tells the slots to stop: idle
 * ones exit, busy ones finish (or release) their job first, and the main
 * thread keeps renewing leases until they have.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/db.h"
#include "demsd/jobs.h"
#include "demsd/log.h"

#define MAX_SLOTS        64
#define RECONNECT_MIN_MS 500
#define RECONNECT_MAX_MS 30000

struct worker;

struct slot {
    struct worker *w;
    unsigned index;
    pthread_t thread;
    char owner[300]; /* host:pid:slot */
    PGconn *db;
    /* The running job (for lease renewal), guarded by w->mu. */
    bool busy;
    struct dems_job job;
    bool lease_lost;
};

struct worker {
    const struct dems_config *cfg;
    const char *conninfo;
    const uint8_t *master_key;
    struct dems_jobs_opts opts;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen; /* bumped by every wake-up; guarded by mu */
    atomic_bool stop;
    unsigned nslots;
    unsigned live; /* slot threads not yet finished; guarded by mu */
    struct slot slots[MAX_SLOTS];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wake_all(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->gen++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Sleeps up to seconds or until woken (gen moves) or stopping. */
static void slot_sleep(struct worker *w, uint64_t seen, double seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double whole = (double)(time_t)seconds;
    until.tv_sec += (time_t)seconds;
    until.tv_nsec += (long)((seconds - whole) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (w->gen == seen && !atomic_load(&w->stop)) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&w->mu);
}

/* (Re)connects the slot's connection; sleeps with backoff while it cannot. */
static bool slot_connect(struct slot *s)
{
    struct worker *w = s->w;
    unsigned delay = RECONNECT_MIN_MS;
    while (!atomic_load(&w->stop)) {
        if (s->db != NULL && PQstatus(s->db) == CONNECTION_OK)
            return true;
        PQfinish(s->db);
        char err[512];
        s->db = dems_db_connect_sync(w->conninfo, err, sizeof(err));
        if (s->db != NULL)
            return true;
        dems_log(DEMS_LOG_WARN, NULL,
                 json_pack("{s:s,s:s,s:i}", "event", "worker_db_unavailable", "owner", s->owner,
                           "retry_ms", (int)delay),
                 "%s", err);
        pthread_mutex_lock(&w->mu);
        uint64_t seen = w->gen;
        pthread_mutex_unlock(&w->mu);
        slot_sleep(w, seen, delay / 1000.0);
        delay = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
    }
    return false;
}

static const char *result_name(enum dems_job_result r)
{
    switch (r) {
    case DEMS_JOB_OK:
        return "ok";
    case DEMS_JOB_RETRY:
        return "retry";
    case DEMS_JOB_FAIL:
        return "fail";
    default:
        return "release";
    }
}

/* Runs one claimed job's handler and records its result. */
static void slot_run(struct slot *s, struct dems_job *job)
{
    struct worker *w = s->w;
    const struct dems_job_kind *k = dems_job_kind_find(job->kind);
    struct dems_job_ctx ctx = {.cfg = w->cfg,
                               .master_key = w->master_key,
                               .db = s->db,
                               .conninfo = w->conninfo,
                               .stop = &w->stop};
    char err[DEMS_JOB_ERROR_MAX + 1] = "";
    double t0 = now_s();
    enum dems_job_result res;
    if (k == NULL) {
        /* Only kinds in the registry are claimed; this cannot happen. */
        snprintf(err, sizeof(err), "no handler for job kind %s", job->kind);
        res = DEMS_JOB_FAIL;
    } else {
        res = k->run(job, &ctx, err, sizeof(err));
    }
    double ms = (now_s() - t0) * 1000;
    const char *state = NULL;
    int r = dems_jobs_finish(s->db, &w->opts, s->owner, job, res, err, &state);
    pthread_mutex_lock(&w->mu);
    s->busy = false;
    bool lost = s->lease_lost;
    pthread_mutex_unlock(&w->mu);
    json_t *f = json_pack("{s:s,s:I,s:s,s:i,s:s,s:i}", "event", "job_finished", "job",
                          (json_int_t)job->id, "kind", job->kind, "attempt", job->attempt, "result",
                          result_name(res), "ms", (int)ms);
    if (f != NULL && res != DEMS_JOB_OK)
        json_object_set_new(f, "error", json_string(err));
    if (r == 0) {
        json_object_set_new(f, "state", json_string(state));
        dems_log(res == DEMS_JOB_OK || res == DEMS_JOB_RELEASE ? DEMS_LOG_INFO : DEMS_LOG_WARN,
                 NULL, f, "job %lld (%s) %s", (long long)job->id, job->kind, state);
    } else if (r == DEMS_ENOTFOUND || lost) {
        dems_log(DEMS_LOG_WARN, NULL, f,
                 "job %lld (%s): lease lost before the result was recorded; the job was "
                 "reclaimed and will run again",
                 (long long)job->id, job->kind);
    } else {
        dems_log(DEMS_LOG_ERROR, NULL, f,
                 "job %lld (%s): cannot record the result: %s; its lease will expire",
                 (long long)job->id, job->kind, PQerrorMessage(s->db));
    }
}

static void *slot_main(void *arg)
{
    struct slot *s = arg;
    struct worker *w = s->w;
    while (slot_connect(s)) {
        pthread_mutex_lock(&w->mu);
        uint64_t seen = w->gen;
        pthread_mutex_unlock(&w->mu);
        if (atomic_load(&w->stop))
            break;
        struct dems_job job;
        int r = dems_jobs_claim(s->db, &w->opts, s->owner, &job);
        if (r == 0) {
            pthread_mutex_lock(&w->mu);
            s->busy = true;
            s->lease_lost = false;
            s->job = job; /* shares the payload; only id and attempt are read */
            pthread_mutex_unlock(&w->mu);
            slot_run(s, &job);
            dems_job_done(&job);
            continue;
        }
        double wait = (double)w->cfg->job_poll_interval;
        if (r == DEMS_ENOTFOUND) {
            double due;
            if (dems_jobs_next_due(s->db, &w->opts, &due) == 0 && due < wait)
                wait = due < 0.05 ? 0.05 : due; /* a due job may be another's, locked */
        } else {
            dems_log(DEMS_LOG_WARN, NULL,
                     json_pack("{s:s,s:s}", "event", "job_claim_failed", "owner", s->owner),
                     "cannot claim jobs: %s", PQerrorMessage(s->db));
            /* A lost connection is made again at once (with its own backoff);
             * a failing statement (schema not migrated yet?) is retried at
             * the poll interval, not in a tight loop. */
            if (PQstatus(s->db) != CONNECTION_OK)
                wait = 0;
        }
        slot_sleep(w, seen, wait);
    }
    PQfinish(s->db);
    s->db = NULL;
    pthread_mutex_lock(&w->mu);
    w->live--;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    wake_all(w); /* and the main thread, through its poll timeout */
    return NULL;
}

/* The main thread's connection: LISTEN dems_jobs. NULL while unavailable. */
static PGconn *listen_connect(struct worker *w)
{
    char err[512];
    PGconn *db = dems_db_connect_sync(w->conninfo, err, sizeof(err));
    if (db == NULL) {
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "worker_db_unavailable"), "%s",
                 err);
        return NULL;
    }
    PGresult *res = PQexec(db, "LISTEN dems_jobs");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "worker_db_unavailable"),
                 "LISTEN failed: %s", PQerrorMessage(db));
        PQfinish(db);
        return NULL;
    }
    return db;
}

/* Renews the lease of every running job. */
static void renew_leases(struct worker *w, PGconn *db)
{
    for (unsigned i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        pthread_mutex_lock(&w->mu);
        bool busy = s->busy && !s->lease_lost;
        struct dems_job job = {.id = s->job.id, .attempt = s->job.attempt};
        pthread_mutex_unlock(&w->mu);
        if (!busy)
            continue;
        int r = dems_jobs_renew(db, &w->opts, s->owner, &job);
        if (r == DEMS_ENOTFOUND) {
            pthread_mutex_lock(&w->mu);
            s->lease_lost = s->busy && s->job.id == job.id;
            pthread_mutex_unlock(&w->mu);
            dems_log(DEMS_LOG_WARN, NULL,
                     json_pack("{s:s,s:I,s:s}", "event", "job_lease_lost", "job",
                               (json_int_t)job.id, "owner", s->owner),
                     "job %lld: lease lost (expired and reclaimed?)", (long long)job.id);
        }
    }
}

static void reap(struct worker *w, PGconn *db)
{
    int n = dems_jobs_reap(db, &w->opts);
    if (n > 0) {
        dems_log(DEMS_LOG_WARN, NULL,
                 json_pack("{s:s,s:i}", "event", "job_leases_expired", "jobs", n),
                 "%d job(s) whose worker stopped renewing the lease returned to the queue", n);
        wake_all(w);
    }
}

/* Drains notifications; true when there was at least one. */
static bool take_notifications(PGconn *db)
{
    bool any = false;
    PGnotify *n;
    while ((n = PQnotifies(db)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

static unsigned live_slots(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    unsigned n = w->live;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Handles a signal from the signalfd: the first SIGTERM/SIGINT stops. */
static void on_signal(struct worker *w, int sfd)
{
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si) || atomic_load(&w->stop))
        return;
    dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s}", "event", "worker_stopping"),
             "received %s: finishing running jobs", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    atomic_store(&w->stop, true);
    wake_all(w);
}

static void main_loop(struct worker *w, int sfd)
{
    PGconn *db = NULL;
    double renew_every = (double)w->cfg->job_lease / 3;
    double poll_every = (double)w->cfg->job_poll_interval;
    double next_renew = now_s() + renew_every, next_reap = 0, next_connect = 0;
    unsigned delay = RECONNECT_MIN_MS;
    while (live_slots(w) > 0) {
        double t = now_s();
        if (db == NULL && t >= next_connect && !atomic_load(&w->stop)) {
            db = listen_connect(w);
            if (db == NULL) {
                next_connect = t + delay / 1000.0;
                delay = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
            } else {
                delay = RECONNECT_MIN_MS;
                wake_all(w); /* jobs may have been queued while we were away */
            }
        }
        if (db != NULL && t >= next_renew) {
            renew_leases(w, db);
            next_renew = t + renew_every;
        }
        if (db != NULL && t >= next_reap && !atomic_load(&w->stop)) {
            reap(w, db);
            next_reap = t + poll_every;
        }
        /* A statement on this connection may have read notifications into
         * libpq's buffer, where poll() cannot see them. */
        if (db != NULL && take_notifications(db))
            wake_all(w);
        /*
         * Sleep until the next thing due. Without a connection only the
         * reconnection is due (renewals and reaping wait for it: counting
         * their past-due times would make this a busy loop).
         */
        double until;
        if (atomic_load(&w->stop))
            until = t + 0.2; /* notice slots finishing */
        else if (db == NULL)
            until = next_connect;
        else
            until = next_renew < next_reap ? next_renew : next_reap;
        int ms = until > t ? (int)((until - t) * 1000) + 1 : 0;
        struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN},
                                {.fd = db != NULL ? PQsocket(db) : -1, .events = POLLIN}};
        int n = poll(pfd, 2, ms);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && (pfd[0].revents & POLLIN) != 0)
            on_signal(w, sfd);
        if (db != NULL && pfd[1].revents != 0) {
            if (PQconsumeInput(db) == 0 || PQstatus(db) != CONNECTION_OK) {
                dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "worker_db_lost"),
                         "lost the LISTEN connection: %s", PQerrorMessage(db));
                PQfinish(db);
                db = NULL;
                next_connect = now_s() + delay / 1000.0;
            } else if (take_notifications(db)) {
                wake_all(w);
            }
        }
    }
    PQfinish(db);
}

static int start_slots(struct worker *w)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    for (unsigned i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        s->w = w;
        s->index = i;
        snprintf(s->owner, sizeof(s->owner), "%.200s:%ld:%u", host, (long)getpid(), i);
        pthread_mutex_lock(&w->mu);
        w->live++;
        pthread_mutex_unlock(&w->mu);
        if (pthread_create(&s->thread, NULL, slot_main, s) != 0) {
            pthread_mutex_lock(&w->mu);
            w->live--;
            pthread_mutex_unlock(&w->mu);
            return (int)i;
        }
    }
    return (int)w->nslots;
}

int dems_worker_run(const struct dems_config *cfg, const char *conninfo,
                    const uint8_t master_key[static 32])
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        fprintf(stderr, "demsd worker: signalfd: %s\n", strerror(errno));
        return 1;
    }
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        close(sfd);
        fprintf(stderr, "demsd worker: out of memory\n");
        return 1;
    }
    w->cfg = cfg;
    w->conninfo = conninfo;
    w->master_key = master_key;
    w->nslots = cfg->worker_slots < MAX_SLOTS ? (unsigned)cfg->worker_slots : MAX_SLOTS;
    dems_jobs_opts_init(&w->opts, cfg);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    int started = start_slots(w);
    int rc = 0;
    if (started < (int)w->nslots) {
        fprintf(stderr, "demsd worker: cannot start slot threads\n");
        atomic_store(&w->stop, true);
        wake_all(w);
        rc = 1;
    } else {
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:i,s:s}", "event", "worker_started", "slots", (int)w->nslots,
                           "kinds", w->opts.kinds),
                 "worker started: %u slot(s), kinds %s", w->nslots, w->opts.kinds);
    }
    main_loop(w, sfd);
    for (int i = 0; i < started; i++)
        pthread_join(w->slots[i].thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    close(sfd);
    if (rc == 0)
        dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s}", "event", "worker_stopped"),
                 "worker stopped");
    return rc;
}
