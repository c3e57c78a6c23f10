/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Refusals, accountable but bounded. Every refused request could be one
 * signed ACCESS_DENIED entry, so a client that keeps asking for what it may
 * not have would grow the ledger without limit. Per fixed window
 * (refusal_window seconds, aligned to the epoch) each principal gets
 * refusal_max_per_principal entries and each client address
 * refusal_max_per_address; past either bound a refusal is answered 429
 * without an entry of its own and counted, per (principal, address) pair,
 * into one ACCESS_DENIED_SUMMARY entry written when the window ends (or at
 * shutdown), with the count, the window and a few sample paths. So the
 * ledger grows by at most the bounds plus one summary per pair per window,
 * and no refusal goes unrecorded.
 *
 * The state is per process, in memory, bounded: at most COUNTER_SLOTS
 * principals and addresses and (3/4 of) PAIR_SLOTS pairs per window; beyond
 * that the newcomers share one overflow counter or pair (principal "*").
 * Loop threads admit under a mutex (a hash lookup; never blocks on I/O).
 * The window is rolled over, and its summaries queued, by whichever comes
 * first: the first refusal of the next window, or the appender's tick
 * (once a second); at stop, whatever was counted is summarised.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/log.h"

#include "ledger_int.h"

#define COUNTER_SLOTS  4096 /* a power of two */
#define PAIR_SLOTS     1024 /* a power of two */
#define SAMPLES        3    /* sample requests kept per pair */
#define SAMPLE_MAX     128  /* canonical bytes of a sample's path */
#define ADDRESS_MAX    64
#define OVERFLOW_MAX   64 /* linear probes before a key goes to the overflow slot */
#define SUMMARY_SYSTEM "refusals"

struct counter {
    bool used;
    char key[DEMS_LEDGER_MAX_ID + 4]; /* "u:" / "d:" + actor id, or "a:" + address */
    uint64_t n;
};

struct pair {
    bool used;
    enum dems_ledger_actor kind;
    char actor[DEMS_LEDGER_MAX_ID + 1];
    char address[ADDRESS_MAX];
    uint64_t count;
    int64_t first_ms, last_ms;
    size_t nsamples;
    json_t *samples[SAMPLES]; /* {"method", "path", "reason"}, bounded */
};

struct dems_ledger_refusals {
    pthread_mutex_t mu;
    uint64_t per_principal, per_address;
    int64_t window_ms;
    int64_t window; /* index of the current window: now / window_ms */
    struct counter counters[COUNTER_SLOTS];
    struct counter overflow_counter;
    struct pair pairs[PAIR_SLOTS];
    struct pair overflow_pair; /* every pair beyond PAIR_SLOTS, named "*" */
    size_t npairs;
};

static uint64_t fnv1a(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *s = a; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *s = b; s != NULL && *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

struct dems_ledger_refusals *ledger_refusals_new(const struct dems_config *cfg)
{
    struct dems_ledger_refusals *rf = calloc(1, sizeof(*rf));
    if (rf == NULL)
        return NULL;
    pthread_mutex_init(&rf->mu, NULL);
    rf->per_principal = cfg->refusal_max_per_principal;
    rf->per_address = cfg->refusal_max_per_address;
    rf->window_ms = (int64_t)cfg->refusal_window * 1000;
    if (rf->window_ms <= 0)
        rf->window_ms = 60000;
    return rf;
}

/* The process's refusal state, made on first use. NULL means out of memory. */
static struct dems_ledger_refusals *refusals_of(struct dems_ledger *l)
{
    struct dems_ledger_refusals *rf = atomic_load(&l->refusals);
    if (rf != NULL)
        return rf;
    struct dems_ledger_refusals *fresh = ledger_refusals_new(l->srv->cfg);
    if (fresh == NULL)
        return NULL;
    if (atomic_compare_exchange_strong(&l->refusals, &rf, fresh))
        return fresh;
    ledger_refusals_free(fresh); /* another thread made it first */
    return rf;
}

static void pair_clear(struct pair *p)
{
    for (size_t i = 0; i < p->nsamples; i++)
        json_decref(p->samples[i]);
    memset(p, 0, sizeof(*p));
}

void ledger_refusals_free(struct dems_ledger_refusals *rf)
{
    if (rf == NULL)
        return;
    for (size_t i = 0; i < PAIR_SLOTS; i++)
        pair_clear(&rf->pairs[i]);
    pair_clear(&rf->overflow_pair);
    pthread_mutex_destroy(&rf->mu);
    free(rf);
}

/* The counter of key (found or taken), or the shared overflow one. */
static struct counter *counter_get(struct dems_ledger_refusals *rf, const char *prefix,
                                   const char *name)
{
    uint64_t h = fnv1a(prefix, name);
    char key[sizeof(rf->counters[0].key)];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    for (size_t i = 0; i < OVERFLOW_MAX; i++) {
        struct counter *c = &rf->counters[(h + i) & (COUNTER_SLOTS - 1)];
        if (!c->used) {
            c->used = true;
            memcpy(c->key, key, sizeof(key));
            return c;
        }
        if (strcmp(c->key, key) == 0)
            return c;
    }
    return &rf->overflow_counter;
}

/* The pair of (actor, address) (found or taken), or the shared overflow one. */
static struct pair *pair_get(struct dems_ledger_refusals *rf, enum dems_ledger_actor kind,
                             const char *actor, const char *address)
{
    uint64_t h = fnv1a(actor, address) ^ (uint64_t)kind;
    for (size_t i = 0; i < OVERFLOW_MAX && rf->npairs < PAIR_SLOTS * 3 / 4; i++) {
        struct pair *p = &rf->pairs[(h + i) & (PAIR_SLOTS - 1)];
        if (!p->used) {
            p->used = true;
            p->kind = kind;
            snprintf(p->actor, sizeof(p->actor), "%s", actor);
            snprintf(p->address, sizeof(p->address), "%s", address);
            rf->npairs++;
            return p;
        }
        if (p->kind == kind && strcmp(p->actor, actor) == 0 && strcmp(p->address, address) == 0)
            return p;
    }
    struct pair *o = &rf->overflow_pair;
    if (!o->used) {
        o->used = true;
        o->kind = DEMS_LEDGER_ACTOR_SYSTEM;
        snprintf(o->actor, sizeof(o->actor), "*");
        snprintf(o->address, sizeof(o->address), "*");
    }
    return o;
}

/* A summary's sample of one refused request: what was asked, bounded. */
static json_t *sample_of(const struct dems_ledger_refusal *r)
{
    json_t *s = json_object();
    const char *m = r->method != NULL ? r->method : "";
    const char *why = r->reason != NULL ? r->reason : "";
    if (s == NULL || dems_ledger_payload_set_text(s, "method", m, strlen(m), 32) < 0 ||
        dems_ledger_payload_set_text(s, "path", r->path.ptr, r->path.len, SAMPLE_MAX) < 0 ||
        dems_ledger_payload_set_text(s, "reason", why, strlen(why), 128) < 0) {
        json_decref(s);
        return NULL;
    }
    return s;
}

static void count_suppressed(struct dems_ledger_refusals *rf, const struct dems_ledger_refusal *r,
                             int64_t now)
{
    struct pair *p = pair_get(rf, r->actor_kind, r->actor_id, r->address);
    if (p->count == 0)
        p->first_ms = now;
    p->count++;
    p->last_ms = now;
    if (p->nsamples < SAMPLES && (p->samples[p->nsamples] = sample_of(r)) != NULL)
        p->nsamples++;
}

/*
 * Ends the current window when now is past it (or when force): moves its
 * pairs into *ret_pairs (owned by the caller, who writes and frees them;
 * NULL when there are none) and forgets its counters. Returns how many
 * pairs were moved; *ret_window is the index of the window they belong to.
 * Under rf->mu.
 */
static size_t roll(struct dems_ledger_refusals *rf, int64_t now, bool force,
                   struct pair **ret_pairs, int64_t *ret_window)
{
    int64_t w = now / rf->window_ms;
    *ret_pairs = NULL;
    *ret_window = rf->window;
    if (w == rf->window && !force)
        return 0;
    size_t n = rf->npairs + (rf->overflow_pair.used ? 1 : 0);
    struct pair *out = n > 0 ? calloc(n, sizeof(*out)) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < PAIR_SLOTS && out != NULL; i++)
        if (rf->pairs[i].used) {
            out[k++] = rf->pairs[i];
            memset(&rf->pairs[i], 0, sizeof(rf->pairs[i]));
        }
    if (rf->overflow_pair.used && out != NULL) {
        out[k++] = rf->overflow_pair;
        memset(&rf->overflow_pair, 0, sizeof(rf->overflow_pair));
    }
    if (out == NULL) { /* out of memory: the counts are lost, and said so */
        if (n > 0)
            dems_log(DEMS_LOG_ERROR, NULL, NULL,
                     "ledger: out of memory summarising refusals of %zu principals", n);
        for (size_t i = 0; i < PAIR_SLOTS; i++)
            pair_clear(&rf->pairs[i]);
        pair_clear(&rf->overflow_pair);
    }
    rf->npairs = 0;
    if (w != rf->window) {
        memset(rf->counters, 0, sizeof(rf->counters));
        memset(&rf->overflow_counter, 0, sizeof(rf->overflow_counter));
        rf->window = w;
    }
    *ret_pairs = out;
    return k;
}

static int set_time(json_t *o, const char *key, int64_t ms)
{
    char t[25];
    if (dems_ledger_time_format(ms, t) < 0)
        return DEMS_EINVAL;
    return json_object_set_new(o, key, json_string(t)) == 0 ? 0 : DEMS_ENOMEM;
}

/* The ACCESS_DENIED_SUMMARY item of one pair (takes its samples). */
static struct dems_ledger_item *summary_item(struct pair *p, int64_t window_start,
                                             int64_t window_end)
{
    bool overflow = p->kind == DEMS_LEDGER_ACTOR_SYSTEM;
    struct dems_ledger_item *it = dems_ledger_item_new(DEMS_LEDGER_ACCESS_DENIED_SUMMARY, p->kind,
                                                       overflow ? SUMMARY_SYSTEM : p->actor);
    json_t *o = json_object(), *samples = json_array();
    char principal[DEMS_LEDGER_MAX_ID + 8];
    snprintf(principal, sizeof(principal), "%s%s",
             overflow                              ? ""
             : p->kind == DEMS_LEDGER_ACTOR_DEVICE ? "device:"
             : p->kind == DEMS_LEDGER_ACTOR_LINK   ? "link:"
                                                   : "user:",
             p->actor);
    int r = it != NULL && o != NULL && samples != NULL ? 0 : DEMS_ENOMEM;
    for (size_t i = 0; r == 0 && i < p->nsamples; i++) {
        r = json_array_append_new(samples, p->samples[i]) == 0 ? 0 : DEMS_ENOMEM;
        p->samples[i] = NULL;
    }
    if (r == 0)
        r = dems_ledger_payload_set_text(o, "principal", principal, strlen(principal), 160);
    if (r == 0)
        r = dems_ledger_payload_set_text(o, "address", p->address, strlen(p->address), 80);
    if (r == 0)
        r = json_object_set_new(o, "count", json_integer((json_int_t)p->count)) == 0 ? 0
                                                                                     : DEMS_ENOMEM;
    if (r == 0)
        r = set_time(o, "window_start", window_start);
    if (r == 0)
        r = set_time(o, "window_end", window_end);
    if (r == 0)
        r = set_time(o, "first", p->first_ms);
    if (r == 0)
        r = set_time(o, "last", p->last_ms);
    if (r == 0) {
        r = json_object_set_new(o, "samples", samples) == 0 ? 0 : DEMS_ENOMEM;
        samples = NULL;
    }
    json_decref(samples);
    if (r < 0 || it == NULL) {
        json_decref(o);
        dems_ledger_item_free(it);
        return NULL;
    }
    it->payload = o;
    return it;
}

/* Queues the summaries of n rolled pairs (window index w), then frees them. */
static void write_summaries(struct dems_ledger *l, struct pair *pairs, size_t n, int64_t w)
{
    struct dems_ledger_refusals *rf = atomic_load(&l->refusals);
    int64_t start = w * rf->window_ms, end = start + rf->window_ms;
    for (size_t i = 0; i < n; i++) {
        struct dems_ledger_item *it = summary_item(&pairs[i], start, end);
        if (it == NULL || dems_ledger_append(l->srv, NULL, it) < 0)
            dems_log(DEMS_LOG_ERROR, NULL, NULL,
                     "ledger: %llu refusals by %.128s from %.64s could not be summarised",
                     (unsigned long long)pairs[i].count, pairs[i].actor, pairs[i].address);
        pair_clear(&pairs[i]);
    }
    free(pairs);
}

void ledger_refusals_tick(struct dems_ledger *l, bool force)
{
    struct dems_ledger_refusals *rf = atomic_load(&l->refusals);
    if (rf == NULL)
        return;
    struct pair *rolled = NULL;
    int64_t w = 0;
    pthread_mutex_lock(&rf->mu);
    size_t n = roll(rf, ledger_now_ms(), force, &rolled, &w);
    pthread_mutex_unlock(&rf->mu);
    write_summaries(l, rolled, n, w);
}

int dems_ledger_refusal_admit(struct dems_server *srv, const struct dems_ledger_refusal *r,
                              unsigned *ret_retry_after)
{
    struct dems_ledger *l = srv->ledger;
    if (l == NULL)
        return 0;
    struct dems_ledger_refusals *rf = refusals_of(l);
    if (rf == NULL)
        return 0; /* out of memory: ledger it rather than lose it */
    int64_t now = ledger_now_ms();
    const char *prefix = r->actor_kind == DEMS_LEDGER_ACTOR_DEVICE ? "d:" : "u:";
    struct pair *rolled = NULL;
    int64_t w = 0;
    pthread_mutex_lock(&rf->mu);
    size_t n = roll(rf, now, false, &rolled, &w); /* the first refusal of a window ends the last */
    int err = 0;
    struct counter *p = counter_get(rf, prefix, r->actor_id);
    struct counter *a = counter_get(rf, "a:", r->address);
    if (p->n < rf->per_principal && a->n < rf->per_address) {
        p->n++;
        a->n++;
    } else {
        err = DEMS_ETHROTTLED;
        count_suppressed(rf, r, now);
    }
    int64_t left = (rf->window + 1) * rf->window_ms - now;
    pthread_mutex_unlock(&rf->mu);
    write_summaries(l, rolled, n, w);
    if (err < 0)
        *ret_retry_after = left <= 1000 ? 1 : (unsigned)((left + 999) / 1000);
    return err;
}
