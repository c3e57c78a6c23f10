/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helper of tests/bench/ledger-server/run (not part of tests/run): the
 * ledger appender alone (server/ledger/append.c, the same code demsd runs),
 * in this process, against a real PostgreSQL: the private cluster of a
 * demsd started with --data, beside it as a job worker's appender is.
 *
 *   dems-ledger-appender-bench CONNINFO MASTER_KEY_FILE ORIGIN DATA_DIR PRODUCERS SECONDS
 *       PRODUCERS threads each append one DOWNLOADED entry (a user, an
 *       artefact, no payload: what a download appends) and wait until it is
 *       durable (its group commit is done) before they queue the next, as a
 *       download request waits before its first byte. For SECONDS seconds.
 *   dems-ledger-appender-bench CONNINFO MASTER_KEY_FILE ORIGIN DATA_DIR PRODUCERS fill:N
 *       The same until N entries have been appended: the fast way to grow the
 *       server's log with real signed entries (the proofs benchmark).
 *
 * Prints one line of JSON: appends, failures, seconds, appends per second,
 * group commits (batches) and the latency of an append (queued to durable)
 * at p50/p99/max in ms, and the mean time of one group commit (BEGIN to
 * COMMIT's return, as demsd's dems_ledger_commit_seconds). Run it as the account demsd runs as: the
 * appender writes DATA_DIR/ledger/checkpoint.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"
#include "demsd/metrics.h"

#define MAX_PRODUCERS 1024
#define MAX_SAMPLES   (1u << 22)

/* ---- what append.c needs from the rest of demsd (as tests/integration/ledger_driver.c) ---- */

void dems_log(enum dems_log_level level, const char *request_id, json_t *fields, const char *fmt,
              ...)
{
    (void)request_id;
    json_decref(fields);
    if (level < DEMS_LOG_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("appender-bench log: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int dems_loop_post(struct dems_loop *loop, void (*fn)(void *arg), void *arg)
{
    (void)loop;
    (void)fn;
    (void)arg;
    return DEMS_EUNAVAIL; /* the appender then delivers on its own thread */
}

bool dems_db_is_unique_violation(const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && strcmp(state, "23505") == 0;
}

/* The appender's one metric: counted here (group commits and their time). */
static atomic_uint_fast64_t ncommits, commit_us;

void dems_metrics_ledger_commit(double seconds, size_t entries)
{
    (void)entries;
    atomic_fetch_add(&ncommits, 1);
    atomic_fetch_add(&commit_us, (uint_fast64_t)(seconds * 1e6));
}

PGconn *dems_db_connect_sync(const char *conninfo, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(conninfo);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect: %s", c != NULL ? PQerrorMessage(c) : "no memory");
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* ---- producers ---- */

struct producer {
    struct dems_server *srv;
    unsigned idx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
};

static atomic_bool stop;
static atomic_uint_fast64_t issued, appended, failed;
static uint64_t fill_n; /* 0: run for a time */
static float *samples;  /* ms per append, the first MAX_SAMPLES */
static atomic_uint_fast64_t nsamples;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_durable(struct dems_ledger_item *it, void *arg)
{
    struct producer *p = arg;
    pthread_mutex_lock(&p->mu);
    p->err = it->err;
    p->done = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* One entry as a download appends it; false when it could not be queued. */
static bool append_one(struct producer *p, uint64_t n)
{
    char user[32];
    snprintf(user, sizeof(user), "bench-%u", p->idx);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_DOWNLOADED, DEMS_LEDGER_ACTOR_USER, user);
    if (it == NULL)
        return false;
    it->has_artefact = true;
    uint64_t seed[2] = {p->idx, n};
    crypto_generichash(it->artefact, 32, (const uint8_t *)seed, sizeof(seed), NULL, 0);
    it->done = on_durable;
    it->arg = p;
    p->done = false;
    double t0 = now();
    if (dems_ledger_append(p->srv, NULL, it) < 0)
        return false;
    pthread_mutex_lock(&p->mu);
    while (!p->done)
        pthread_cond_wait(&p->cv, &p->mu);
    int err = p->err;
    pthread_mutex_unlock(&p->mu);
    if (err < 0) {
        atomic_fetch_add(&failed, 1);
        return true;
    }
    atomic_fetch_add(&appended, 1);
    uint64_t s = atomic_fetch_add(&nsamples, 1);
    if (s < MAX_SAMPLES)
        samples[s] = (float)((now() - t0) * 1000);
    return true;
}

static void *produce(void *arg)
{
    struct producer *p = arg;
    while (!atomic_load(&stop)) {
        uint64_t n = atomic_fetch_add(&issued, 1);
        if (fill_n != 0 && n >= fill_n)
            break;
        if (!append_one(p, n)) {
            atomic_fetch_add(&failed, 1);
            break;
        }
    }
    return NULL;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static double pct(const float *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(q * (double)n);
    return sorted[i < n ? i : n - 1];
}

static int usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s CONNINFO MASTER_KEY_FILE ORIGIN DATA_DIR PRODUCERS (SECONDS | fill:N)\n",
            argv0);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc != 7)
        return usage(argv[0]);
    uint64_t producers = 0, secs = 0;
    const char *mode = argv[6];
    if (dems_parse_u64(argv[5], strlen(argv[5]), MAX_PRODUCERS, &producers) < 0 || producers == 0)
        return usage(argv[0]);
    if (strncmp(mode, "fill:", 5) == 0) {
        if (dems_parse_u64(mode + 5, strlen(mode + 5), UINT64_MAX, &fill_n) < 0 || fill_n == 0)
            return usage(argv[0]);
    } else if (dems_parse_u64(mode, strlen(mode), 86400, &secs) < 0 || secs == 0) {
        return usage(argv[0]);
    }
    if (sodium_init() < 0)
        return 2;
    samples = malloc(MAX_SAMPLES * sizeof(*samples));
    if (samples == NULL)
        return 2;
    char err[1024];
    uint8_t master[32];
    if (dems_master_key_load(argv[2], master, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    struct dems_config cfg = {.ledger_origin = argv[3], .data_dir = argv[4]};
    struct dems_server srv = {.cfg = &cfg};
    if (dems_ledger_start(&srv, argv[1], master, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sodium_memzero(master, sizeof(master));

    struct producer *ps = calloc(producers, sizeof(*ps));
    pthread_t *th = calloc(producers, sizeof(*th));
    if (ps == NULL || th == NULL)
        return 2;
    uint64_t c0 = atomic_load(&ncommits), us0 = atomic_load(&commit_us);
    double t0 = now();
    for (unsigned i = 0; i < producers; i++) {
        ps[i] = (struct producer){.srv = &srv, .idx = i};
        pthread_mutex_init(&ps[i].mu, NULL);
        pthread_cond_init(&ps[i].cv, NULL);
        if (pthread_create(&th[i], NULL, produce, &ps[i]) != 0)
            return 2;
    }
    if (fill_n == 0) {
        struct timespec ts = {.tv_sec = (time_t)secs};
        nanosleep(&ts, NULL);
        atomic_store(&stop, true);
    }
    for (unsigned i = 0; i < producers; i++)
        pthread_join(th[i], NULL);
    double t = now() - t0;
    uint64_t nb = atomic_load(&ncommits) - c0;
    double commit_ms = nb ? (double)(atomic_load(&commit_us) - us0) / 1000.0 / (double)nb : 0;
    dems_ledger_stop(&srv); /* signs a checkpoint covering them */

    size_t n = (size_t)atomic_load(&nsamples);
    if (n > MAX_SAMPLES)
        n = MAX_SAMPLES;
    qsort(samples, n, sizeof(*samples), cmp_float);
    uint64_t ok = atomic_load(&appended);
    printf("{\"producers\":%llu,\"appends\":%llu,\"failures\":%llu,\"seconds\":%.2f,"
           "\"per_second\":%.0f,\"commits\":%llu,\"per_commit\":%.1f,\"commit_ms\":%.3f,"
           "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
           (unsigned long long)producers, (unsigned long long)ok,
           (unsigned long long)atomic_load(&failed), t, (double)ok / t, (unsigned long long)nb,
           nb ? (double)ok / (double)nb : 0.0, commit_ms, pct(samples, n, 0.5),
           pct(samples, n, 0.99), n ? (double)samples[n - 1] : 0.0);
    free(samples);
    free(ps);
    free(th);
    return atomic_load(&failed) == 0 ? 0 : 1;
}
