/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The timestamp thread (docs/ledger.md, "Timestamps"). Every tsa_interval
 * seconds it reads the newest signed checkpoint and, for each configured
 * Time-Stamping Authority whose newest token is older, asks it (blocking
 * libcurl, bounded by tsa_timeout) for an RFC 3161 token over SHA-256 of
 * the checkpoint's note. A token that verifies (common/ledger/tsa.c) is
 * stored in ledger_timestamps by the pre-statement of its TIMESTAMPED
 * entry, so the row and the entry commit together; anything else is one
 * warning line with the reason, and the next round asks again.
 *
 * "While the log grows": a round asks a TSA only when entries other than
 * TIMESTAMPED ones were appended since the checkpoint of its newest token,
 * so the entries this thread appends never make it ask again by
 * themselves. The thread has its own blocking database connection and
 * holds no lock anyone else waits for: appends and requests go on whatever
 * a TSA does.
 */
#include "demsd/timestamp.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "dems/tsa.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

/* Bytes of a URL kept in the TIMESTAMPED entry's payload. */
#define TSA_NAME_MAX 1024

struct tsa_thread {
    struct dems_server *srv;
    char *conninfo;
    PGconn *db;
    struct dems_tsa_trust *trust;
    char urls[DEMS_CONFIG_TSA_MAX][DEMS_CONFIG_TSA_URL_MAX + 1];
    int nurls;
    long timeout;      /* seconds */
    uint64_t interval; /* seconds */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* stop, and an appended entry's outcome */
    bool stop;
    atomic_bool stopping; /* read by curl's progress callback */
    bool appended;        /* the outcome below is in (under mu) */
    int append_err;
    uint64_t append_seq;
};

static struct tsa_thread *tsa;

/* The newest checkpoint: size, root (hex) and note, as stored. */
struct checkpoint {
    uint64_t size;
    char root[65];
    char *note; /* owned */
    uint8_t imprint[32];
};

/* ---- the database ---- */

static PGresult *q(struct tsa_thread *t, const char *sql, int n, const char *const *p)
{
    return PQexecParams(t->db, sql, n, NULL, p, NULL, NULL, 0);
}

/* Connects when there is no good connection. false (logged once a round) when it cannot. */
static bool connected(struct tsa_thread *t)
{
    if (t->db != NULL && PQstatus(t->db) == CONNECTION_OK)
        return true;
    PQfinish(t->db);
    char err[512];
    t->db = dems_db_connect_sync(t->conninfo, err, sizeof(err));
    if (t->db == NULL)
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "timestamp_failed"),
                 "timestamp: the database does not answer (%s); retried in %llu s", err,
                 (unsigned long long)t->interval);
    return t->db != NULL;
}

/* Reads the newest checkpoint. Returns 0, DEMS_ENOTFOUND (none, or an empty log) or DEMS_EDB. */
static int newest_checkpoint(struct tsa_thread *t, struct checkpoint *ret)
{
    PGresult *res = q(t,
                      "SELECT size, encode(root, 'hex') AS root, note FROM ledger_checkpoints"
                      " ORDER BY size DESC LIMIT 1",
                      0, NULL);
    int r = DEMS_EDB;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0) {
        r = DEMS_ENOTFOUND;
    } else if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        const char *size = PQgetvalue(res, 0, PQfnumber(res, "size"));
        const char *root = PQgetvalue(res, 0, PQfnumber(res, "root"));
        const char *note = PQgetvalue(res, 0, PQfnumber(res, "note"));
        r = dems_parse_u64(size, strlen(size), INT64_MAX, &ret->size) == 0 && strlen(root) == 64
                ? 0
                : DEMS_EDB;
        if (r == 0 && ret->size == 0)
            r = DEMS_ENOTFOUND; /* nothing to vouch for yet */
        if (r == 0 && (ret->note = strdup(note)) == NULL)
            r = DEMS_ENOMEM;
        if (r == 0) {
            memcpy(ret->root, root, 65);
            crypto_hash_sha256(ret->imprint, (const uint8_t *)note, strlen(note));
        }
    }
    if (r == DEMS_EDB)
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "timestamp_failed"),
                 "timestamp: cannot read the newest checkpoint: %.300s", PQresultErrorMessage(res));
    PQclear(res);
    return r;
}

/*
 * Whether url should be asked to timestamp cp: it has no token at cp's
 * size or later, and entries other than TIMESTAMPED were appended since
 * the checkpoint of its newest token (or it has none). Returns 1, 0, or
 * DEMS_EDB.
 */
static int wanted(struct tsa_thread *t, const char *url, const struct checkpoint *cp)
{
    char size[24];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)cp->size);
    const char *p[] = {url, size};
    PGresult *res =
        q(t,
          "SELECT t.last IS NULL OR (t.last < $2::bigint AND EXISTS (SELECT 1 FROM ledger_entries e"
          " WHERE e.seq >= t.last AND e.seq < $2::bigint AND e.type <> 'TIMESTAMPED')) AS wanted"
          " FROM (SELECT max(size) AS last FROM ledger_timestamps WHERE tsa = $1) t",
          2, p);
    int r = DEMS_EDB;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        r = strcmp(PQgetvalue(res, 0, PQfnumber(res, "wanted")), "t") == 0;
    else
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "timestamp_failed"),
                 "timestamp: cannot read the stored timestamps: %.300s", PQresultErrorMessage(res));
    PQclear(res);
    return r;
}

/* ---- the request ---- */

struct answer {
    uint8_t *data;
    size_t len;
    bool too_big;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t n = size * nmemb; /* curl guarantees no overflow (size is 1) */
    if (n > DEMS_TSA_MAX_RESPONSE - a->len) {
        a->too_big = true;
        return 0; /* aborts the transfer */
    }
    uint8_t *p = realloc(a->data, a->len + n);
    if (p == NULL)
        return 0;
    memcpy(p + a->len, ptr, n);
    a->data = p;
    a->len += n;
    return n;
}

/* Cuts a request when the thread is asked to stop (called about once a second). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct tsa_thread *t = arg;
    return atomic_load_explicit(&t->stopping, memory_order_relaxed) ? 1 : 0;
}

/*
 * POSTs the DER request to url and reads the answer into a (capped at
 * DEMS_TSA_MAX_RESPONSE). Returns 0 (an HTTP 200 answer), or DEMS_EIO with
 * one line in why.
 */
static int post(struct tsa_thread *t, const char *url, const uint8_t *req, size_t reqlen,
                struct answer *a, char *why, size_t whylen)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/timestamp-query");
    struct curl_slist *hdr2 =
        hdr != NULL ? curl_slist_append(hdr, "Accept: application/timestamp-reply") : NULL;
    if (h == NULL || hdr2 == NULL) {
        snprintf(why, whylen, "out of memory");
        curl_slist_free_all(hdr);
        curl_easy_cleanup(h);
        return DEMS_EIO;
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, t->timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, t->timeout < 10 ? t->timeout : 10L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr2);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)req);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)reqlen);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL); /* curl_err is about to go */
    curl_easy_cleanup(h);
    curl_slist_free_all(hdr2);
    if (a->too_big) {
        snprintf(why, whylen, "the answer is larger than %d bytes", DEMS_TSA_MAX_RESPONSE);
        return DEMS_EIO;
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(why, whylen, "cut short: demsd is stopping");
        return DEMS_EIO;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(why, whylen, "no answer within tsa_timeout (%ld s)", t->timeout);
        return DEMS_EIO;
    }
    if (rc != CURLE_OK) {
        snprintf(why, whylen, "the request failed: %.200s",
                 curl_err[0] != '\0' ? curl_err : curl_easy_strerror(rc));
        return DEMS_EIO;
    }
    if (status != 200) {
        snprintf(why, whylen, "the TSA answered HTTP %ld", status);
        return DEMS_EIO;
    }
    return 0;
}

/* ---- storing ---- */

static void on_appended(struct dems_ledger_item *item, void *arg)
{
    struct tsa_thread *t = arg;
    pthread_mutex_lock(&t->mu);
    t->append_err = item->err;
    t->append_seq = item->seq;
    t->appended = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* The TIMESTAMPED entry's payload. NULL: out of memory. */
static json_t *entry_payload(const char *url, const struct checkpoint *cp,
                             const struct dems_tsa_info *info)
{
    char imprint[65];
    dems_hex_encode(cp->imprint, 32, imprint);
    json_t *p = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "checkpoint_size", (json_int_t)cp->size,
                          "checkpoint_root", cp->root, "checkpoint_sha256", imprint, "gen_time",
                          info->gen_time, "serial", info->serial, "policy", info->policy);
    if (p != NULL && dems_ledger_payload_set_text(p, "tsa", url, strlen(url), TSA_NAME_MAX) < 0) {
        json_decref(p);
        p = NULL;
    }
    return p;
}

/* Sets the item's pre-statement: the ledger_timestamps row, naming the entry's seq. */
static int set_pre(struct dems_ledger_item *it, const char *url, const struct checkpoint *cp,
                   const uint8_t *token, size_t len, const struct dems_tsa_info *info)
{
    char size[24], sha[65];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)cp->size);
    dems_hex_encode(info->token_sha256, 32, sha);
    char *hex = malloc(2 * len + 1);
    if (hex == NULL)
        return DEMS_ENOMEM;
    dems_hex_encode(token, len, hex);
    it->pre_sql = strdup("INSERT INTO ledger_timestamps (size, tsa, token, token_sha256, gen_time,"
                         " seq) VALUES ($1::bigint, $2, decode($3, 'hex'), decode($4, 'hex'),"
                         " $5::timestamptz, $6::bigint)");
    it->pre_params[0] = strdup(size);
    it->pre_params[1] = strdup(url);
    it->pre_params[2] = hex;
    it->pre_params[3] = strdup(sha);
    it->pre_params[4] = strdup(info->gen_time);
    it->pre_nparams = 5;
    it->pre_seq = true;
    for (int i = 0; i < 5; i++) {
        if (it->pre_params[i] == NULL)
            return DEMS_ENOMEM;
    }
    return it->pre_sql != NULL ? 0 : DEMS_ENOMEM;
}

/*
 * Appends the TIMESTAMPED entry whose pre-statement stores the token, and
 * waits for its outcome. Returns 0 (*ret_seq set) or a negative DEMS_E*.
 */
static int store(struct tsa_thread *t, const char *url, const struct checkpoint *cp,
                 const uint8_t *token, size_t len, const struct dems_tsa_info *info,
                 uint64_t *ret_seq)
{
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_TIMESTAMPED, DEMS_LEDGER_ACTOR_SYSTEM, "timestamps");
    if (it == NULL)
        return DEMS_ENOMEM;
    it->has_sha256 = true;
    memcpy(it->sha256, info->token_sha256, 32);
    it->has_size = true;
    it->size = len;
    it->payload = entry_payload(url, cp, info);
    int r = it->payload != NULL ? set_pre(it, url, cp, token, len, info) : DEMS_ENOMEM;
    if (r < 0) {
        dems_ledger_item_free(it);
        return r;
    }
    it->done = on_appended;
    it->arg = t;
    it->loop = NULL; /* done runs on the appender's thread */
    pthread_mutex_lock(&t->mu);
    t->appended = false;
    pthread_mutex_unlock(&t->mu);
    r = dems_ledger_append(t->srv, NULL, it);
    if (r < 0)
        return r; /* it was freed; done never runs */
    pthread_mutex_lock(&t->mu);
    while (!t->appended)
        pthread_cond_wait(&t->cv, &t->mu);
    r = t->append_err;
    *ret_seq = t->append_seq;
    pthread_mutex_unlock(&t->mu);
    return r;
}

/* ---- a round ---- */

static void refused(struct tsa_thread *t, const char *url, const struct checkpoint *cp,
                    const char *why)
{
    dems_log(DEMS_LOG_WARN, NULL,
             json_pack("{s:s,s:o,s:I,s:o}", "event", "timestamp_refused", "tsa",
                       dems_log_str(url, strlen(url)), "size", (json_int_t)cp->size, "reason",
                       dems_log_str(why, strlen(why))),
             "timestamp: no token from %s for checkpoint %llu, refused: %s; asked again in %llu s",
             url, (unsigned long long)cp->size, why, (unsigned long long)t->interval);
}

/* Asks url for a token over cp, checks it and stores it. */
static void timestamp_one(struct tsa_thread *t, const char *url, const struct checkpoint *cp)
{
    uint8_t nonce[DEMS_TSA_NONCE_BYTES], *req = NULL, *token = NULL;
    size_t reqlen = 0, tokenlen = 0;
    struct answer a = {.data = NULL};
    struct dems_tsa_info info;
    char why[400] = "";
    int r = dems_tsa_request(cp->imprint, nonce, &req, &reqlen);
    if (r < 0)
        snprintf(why, sizeof(why), "cannot make the request: %s", dems_strerror(r));
    if (r == 0)
        r = post(t, url, req, reqlen, &a, why, sizeof(why));
    if (r == 0)
        r = dems_tsa_response_check(a.data, a.len, cp->imprint, nonce, t->trust, &token, &tokenlen,
                                    &info, why, sizeof(why));
    uint64_t seq = 0;
    if (r == 0) {
        r = store(t, url, cp, token, tokenlen, &info, &seq);
        if (r < 0)
            snprintf(why, sizeof(why), "the token verified but could not be stored: %s",
                     r == DEMS_ECONFLICT ? "another node stored one for this checkpoint"
                                         : dems_strerror(r));
    }
    if (r == 0)
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:o,s:I,s:I,s:s}", "event", "timestamp_stored", "tsa",
                           dems_log_str(url, strlen(url)), "size", (json_int_t)cp->size, "seq",
                           (json_int_t)seq, "gen_time", info.gen_time),
                 "timestamp: %s stamped checkpoint %llu at %s (entry %llu)", url,
                 (unsigned long long)cp->size, info.gen_time, (unsigned long long)seq);
    else
        refused(t, url, cp, why);
    free(req);
    free(a.data);
    free(token);
}

static void round_run(struct tsa_thread *t)
{
    if (dems_ledger_fault(t->srv) != NULL || !connected(t))
        return;
    struct checkpoint cp = {.note = NULL};
    if (newest_checkpoint(t, &cp) < 0)
        return;
    for (int i = 0; i < t->nurls && !atomic_load(&t->stopping); i++) {
        int w = wanted(t, t->urls[i], &cp);
        if (w == 1)
            timestamp_one(t, t->urls[i], &cp);
        else if (w < 0)
            break;
    }
    free(cp.note);
}

/* ---- the thread ---- */

static void *run(void *arg)
{
    struct tsa_thread *t = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec ||
            (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec)) {
            pthread_mutex_unlock(&t->mu);
            round_run(t);
            pthread_mutex_lock(&t->mu);
            clock_gettime(CLOCK_MONOTONIC, &next);
            next.tv_sec += (time_t)t->interval;
            continue;
        }
        pthread_cond_timedwait(&t->cv, &t->mu, &next);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void tsa_free(struct tsa_thread *t)
{
    if (t == NULL)
        return;
    PQfinish(t->db);
    dems_tsa_trust_free(t->trust);
    free(t->conninfo);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int dems_timestamps_start(struct dems_server *srv, const char *conninfo, char *err, size_t errlen)
{
    struct tsa_thread *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    int n = dems_config_tsa_urls(srv->cfg, t->urls, err, errlen);
    if (n <= 0) {
        free(t);
        return n; /* 0: timestamps are off */
    }
    t->nurls = n;
    t->srv = srv;
    t->timeout = (long)srv->cfg->tsa_timeout;
    t->interval = srv->cfg->tsa_interval;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->mu, NULL);
    char why[512];
    t->conninfo = strdup(conninfo);
    t->trust = dems_tsa_trust_load(srv->cfg->tsa_ca_file, why, sizeof(why));
    int r = t->conninfo == NULL ? DEMS_ENOMEM : 0;
    if (r == 0 && t->trust == NULL) {
        snprintf(err, errlen, "tsa_ca_file: %s", why);
        r = DEMS_EINVAL;
    }
    if (r == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "timestamps: libcurl cannot start");
        r = DEMS_EINTERNAL;
    }
    if (r == 0 && pthread_create(&t->thread, NULL, run, t) != 0) {
        curl_global_cleanup();
        snprintf(err, errlen, "timestamps: cannot start the thread");
        r = DEMS_EINTERNAL;
    }
    if (r < 0) {
        if (r == DEMS_ENOMEM)
            snprintf(err, errlen, "out of memory");
        tsa_free(t);
        return r;
    }
    tsa = t;
    dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s,s:i}", "event", "timestamps_on", "tsas", n),
             "timestamps: %d TSA(s), every %llu s while the log grows", n,
             (unsigned long long)t->interval);
    return 0;
}

void dems_timestamps_stop(void)
{
    struct tsa_thread *t = tsa;
    if (t == NULL)
        return;
    atomic_store(&t->stopping, true);
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    curl_global_cleanup();
    tsa = NULL;
    tsa_free(t);
}
