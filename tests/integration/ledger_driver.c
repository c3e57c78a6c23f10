/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A test driver for the ledger appender (server/ledger/append.c) beside a
 * running demsd: it starts a second appender on the same database, like a
 * job worker does, and queues items built to fail (too big, not canonical,
 * a refused pre-statement, a rotation that overflows once it names its key,
 * a poisoned row) among good ones, all in one group-commit batch. It prints
 * one line per item, "<name> <queue result> <err> <seq>", so
 * test_ledger.py can check that each bad item failed alone.
 *
 *   dems-ledger-driver CONNINFO MASTER_KEY_FILE ORIGIN DATA_DIR
 */
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

/* ---- what append.c needs from the rest of demsd, kept minimal ---- */

void dems_log(enum dems_log_level level, const char *request_id, json_t *fields, const char *fmt,
              ...)
{
    (void)level;
    (void)request_id;
    json_decref(fields);
    va_list ap;
    va_start(ap, fmt);
    fputs("driver log: ", stderr);
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

/* ---- the items ---- */

struct slot {
    const char *name;
    int queued; /* dems_ledger_append's result */
    int err;
    uint64_t seq;
    bool done;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void on_done(struct dems_ledger_item *it, void *arg)
{
    struct slot *s = arg;
    pthread_mutex_lock(&mu);
    s->err = it->err;
    s->seq = it->seq;
    s->done = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static struct dems_ledger_item *item(enum dems_ledger_type type, json_t *payload)
{
    struct dems_ledger_item *it =
        dems_ledger_item_new(type, DEMS_LEDGER_ACTOR_SYSTEM, "ledger-driver");
    if (it == NULL)
        abort();
    it->payload = payload;
    return it;
}

static void queue(struct dems_server *srv, struct slot *s, struct dems_ledger_item *it)
{
    it->done = on_done;
    it->arg = s;
    s->queued = dems_ledger_append(srv, NULL, it);
    if (s->queued < 0)
        s->done = true; /* freed; done never runs */
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Holds the appender in a batch of its own while the next items queue up behind it. */
static void block(struct dems_server *srv, struct slot *s)
{
    struct dems_ledger_item *it = item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "n", "0"));
    it->pre_sql = strdup("SELECT pg_sleep(0.5)");
    queue(srv, s, it);
    nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
}

static void wait_all(struct slot *slots, size_t n)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < n; i++)
        while (!slots[i].done)
            pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s CONNINFO MASTER_KEY_FILE ORIGIN DATA_DIR\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0)
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

    struct slot slots[] = {
        {.name = "blocker"},   {.name = "good1"},  {.name = "too_big"}, {.name = "nul"},
        {.name = "pre_fails"}, {.name = "good2"},  {.name = "rotate"},  {.name = "blocker2"},
        {.name = "good3"},     {.name = "poison"}, {.name = "good4"},
    };
    size_t n = sizeof(slots) / sizeof(slots[0]);
    /*
     * Round 1, one batch: items that fail inside the batch (a refused
     * pre-statement; a rotation, always a batch's last item, whose payload
     * overflows once it names its key) and items refused before they join
     * it (too big, a NUL no verifier would accept), between good ones.
     */
    block(&srv, &slots[0]);
    queue(&srv, &slots[1], item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "n", "1")));
    char *big = repeat('x', DEMS_LEDGER_MAX_PAYLOAD + 10);
    queue(&srv, &slots[2], item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "path", big)));
    free(big);
    queue(&srv, &slots[3],
          item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s%}", "path", "a\0b", (size_t)3)));
    struct dems_ledger_item *it = item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "n", "pre"));
    it->pre_sql = strdup("SELECT 1 / 0");
    queue(&srv, &slots[4], it);
    queue(&srv, &slots[5], item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "n", "2")));
    /* Fits until the appender adds the new key's "vkey" (about 90 bytes) to it. */
    char *reason = repeat('r', DEMS_LEDGER_MAX_PAYLOAD - 30);
    queue(&srv, &slots[6], item(DEMS_LEDGER_KEY_ROTATED, json_pack("{s:s}", "reason", reason)));
    free(reason);
    wait_all(slots, 7);
    /*
     * Round 2, one batch whose multi-row insert fails because of one row
     * (the test's trigger refuses entries that mention "poison"): each item
     * is retried alone and only that one fails.
     */
    block(&srv, &slots[7]);
    queue(&srv, &slots[8], item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "n", "3")));
    queue(&srv, &slots[9], item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "n", "poison")));
    queue(&srv, &slots[10], item(DEMS_LEDGER_ACCESS_DENIED, json_pack("{s:s}", "n", "4")));
    wait_all(slots, n);
    for (size_t i = 0; i < n; i++)
        printf("%s %d %d %llu\n", slots[i].name, slots[i].queued, slots[i].err,
               (unsigned long long)slots[i].seq);
    fflush(stdout);
    dems_ledger_stop(&srv);
    sodium_memzero(master, sizeof(master));
    return 0;
}
