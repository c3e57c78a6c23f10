/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The log role of C2SP tlog-witness: a thread of its own (libcurl and a
 * blocking PostgreSQL connection, never on an event loop) that submits this
 * log's newest checkpoint to every configured witness with a consistency
 * proof from the size that witness last cosigned, checks each cosignature
 * returned against the witness's key, stores it (ledger_cosignatures), and
 * publishes the checkpoint (ledger_published) once witness_quorum distinct
 * witnesses cosigned it. A witness that answers 409 Conflict says the size
 * it holds (text/x.tlog.size): the submission is made again from there. A
 * witness that is down, slow or refuses is retried with a growing pause (up
 * to RETRY_MAX_MS) and never holds anything else up: appends go on, and the
 * other witnesses are asked as usual. The thread wakes when a checkpoint is
 * signed (dems_witness_kick) and at least once a second.
 */
#include <curl/curl.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/buf.h"
#include "dems/config.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#include "ledger_int.h"
#include "witness_int.h"

#define RETRY_MAX_MS  10000
#define MAX_ANSWER    8192 /* a witness's answer: a few signature lines */
#define MAX_URL       1024
#define SUBMIT_ROUNDS 3 /* a submission, and again after up to two 409 answers */

struct wc_witness {
    char url[MAX_URL]; /* the submission prefix + "/add-checkpoint" */
    char vkey[DEMS_NOTE_VKEY_MAX];
    struct dems_note_verifier v;
    bool has_size; /* known_size is the size it last cosigned, as far as we know */
    uint64_t known_size;
    bool has_done; /* done_size: the largest checkpoint we hold its cosignature for */
    uint64_t done_size;
    int64_t retry_at_ms;
    unsigned failures;
};

struct witness_client {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked; /* guarded by mu */
    char *conninfo;
    PGconn *db;
    CURL *curl;
    char ca_file[1024];
    long timeout;
    uint64_t quorum;
    bool loaded; /* the cosignatures held were read once */
    size_t n;
    struct wc_witness w[DEMS_WITNESS_MAX];
};

/* ---- settings ---- */

static int parse_one(struct wc_witness *w, const char *s, size_t len, char *err, size_t errlen)
{
    const char *sp = memchr(s, ' ', len);
    size_t ulen = sp != NULL ? (size_t)(sp - s) : len;
    if (sp == NULL || ulen == 0 || ulen + sizeof("/add-checkpoint") > sizeof(w->url) ||
        (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)) {
        snprintf(err, errlen,
                 "config: witnesses: \"%.*s\" is not \"URL VKEY\" (an http(s) URL, a space, the "
                 "witness's verifier key)",
                 (int)(len > 200 ? 200 : len), s);
        return DEMS_EINVAL;
    }
    while (ulen > 0 && s[ulen - 1] == '/')
        ulen--;
    snprintf(w->url, sizeof(w->url), "%.*s/add-checkpoint", (int)ulen, s);
    const char *k = sp;
    while (*k == ' ')
        k++;
    size_t klen = len - (size_t)(k - s);
    while (klen > 0 && k[klen - 1] == ' ')
        klen--;
    if (dems_cosig_verifier_parse(k, klen, &w->v) < 0) {
        snprintf(err, errlen,
                 "config: witnesses: \"%.*s\" is not a witness's cosignature verifier key "
                 "(GET /v1/ledger/witness/key on a dems witness)",
                 (int)(klen > 200 ? 200 : klen), k);
        return DEMS_EINVAL;
    }
    dems_cosig_verifier_format(&w->v, w->vkey);
    return 0;
}

static int parse_witnesses(struct witness_client *c, const char *list, char *err, size_t errlen)
{
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (c->n == DEMS_WITNESS_MAX) {
            snprintf(err, errlen, "config: witnesses: at most %d", DEMS_WITNESS_MAX);
            return DEMS_EINVAL;
        }
        int r = parse_one(&c->w[c->n], p, len, err, errlen);
        if (r < 0)
            return r;
        for (size_t i = 0; i < c->n; i++) {
            if (memcmp(c->w[i].v.pk, c->w[c->n].v.pk, 32) == 0) {
                snprintf(err, errlen, "config: witnesses: %s is listed twice", c->w[i].vkey);
                return DEMS_EINVAL;
            }
        }
        c->n++;
        p += len;
    }
    return 0;
}

/* ---- the database ---- */

static bool db_ready(struct witness_client *c)
{
    if (c->db != NULL && PQstatus(c->db) == CONNECTION_OK)
        return true;
    if (c->db != NULL)
        PQreset(c->db);
    else
        c->db = PQconnectdb(c->conninfo);
    return PQstatus(c->db) == CONNECTION_OK;
}

static PGresult *q(struct witness_client *c, const char *sql, int n, const char *const *p)
{
    return PQexecParams(c->db, sql, n, NULL, p, NULL, NULL, 0);
}

static bool q_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

static bool col_u64(const PGresult *res, int row, const char *name, uint64_t *ret)
{
    int col = PQfnumber(res, name);
    if (col < 0 || PQgetisnull(res, row, col))
        return false;
    const char *v = PQgetvalue(res, row, col);
    return dems_parse_u64(v, strlen(v), INT64_MAX, ret) == 0;
}

static int db_subtree(void *ctx, uint64_t start, unsigned level, uint8_t ret_hash[static 32])
{
    struct witness_client *c = ctx;
    char lv[8], st[24];
    snprintf(lv, sizeof(lv), "%u", level);
    snprintf(st, sizeof(st), "%llu", (unsigned long long)start);
    const char *p[] = {lv, st};
    PGresult *res = q(c,
                      "SELECT encode(hash, 'hex') AS hash FROM ledger_subtrees"
                      " WHERE level = $1::smallint AND start = $2::bigint",
                      2, p);
    int r = DEMS_EDB;
    if (q_ok(res) && PQntuples(res) == 1 &&
        dems_hex_decode(PQgetvalue(res, 0, PQfnumber(res, "hash")), 64, ret_hash, 32) == 0)
        r = 0;
    PQclear(res);
    return r;
}

/* What we hold already: each witness's newest cosigned size (once per start). */
static void load_done(struct witness_client *c)
{
    PGresult *res = q(c,
                      "SELECT witness, max(size) AS size FROM ledger_cosignatures"
                      " GROUP BY witness",
                      0, NULL);
    if (!q_ok(res)) {
        PQclear(res);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *vk = PQgetvalue(res, i, PQfnumber(res, "witness"));
        uint64_t size;
        for (size_t j = 0; j < c->n; j++) {
            if (strcmp(vk, c->w[j].vkey) == 0 && col_u64(res, i, "size", &size)) {
                c->w[j].has_done = c->w[j].has_size = true;
                c->w[j].done_size = c->w[j].known_size = size;
            }
        }
    }
    c->loaded = true;
    PQclear(res);
}

static int store_cosig(struct witness_client *c, const struct wc_witness *w, uint64_t size,
                       const char *line, size_t len, uint64_t ts)
{
    char sz[24], t[24], text[512];
    if (len >= sizeof(text))
        return DEMS_EINVAL;
    memcpy(text, line, len);
    text[len] = '\0';
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    snprintf(t, sizeof(t), "%llu", (unsigned long long)ts);
    const char *p[] = {sz, w->vkey, text, t};
    PGresult *res = q(c,
                      "INSERT INTO ledger_cosignatures (size, witness, line, cosigned_at)"
                      " VALUES ($1::bigint, $2, $3, $4::bigint) ON CONFLICT DO NOTHING",
                      4, p);
    int r = q_ok(res) ? 0 : DEMS_EDB;
    PQclear(res);
    return r;
}

/* ---- one submission ---- */

struct answer {
    struct dems_buf body;
    bool too_big;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t n = size * nmemb;
    if (dems_buf_append(&a->body, ptr, n) < 0) {
        a->too_big = true;
        return 0; /* aborts the transfer */
    }
    return n;
}

/* The request body: "old N", the proof in base64, a blank line, the note. */
static int build_body(struct witness_client *c, uint64_t old, uint64_t size, const char *note,
                      struct dems_buf *out)
{
    struct dems_merkle_proof proof = {.len = 0};
    if (old > 0 && old < size) {
        struct dems_merkle_reader rd = {.get_subtree = db_subtree, .ctx = c};
        int r = dems_merkle_prove_consistency(&rd, old, size, &proof);
        if (r < 0)
            return r;
    }
    char line[64];
    int n = snprintf(line, sizeof(line), "old %llu\n", (unsigned long long)old);
    int r = dems_buf_append(out, line, (size_t)n);
    for (size_t i = 0; r == 0 && i < proof.len; i++) {
        char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(b64, sizeof(b64), proof.hash[i], 32, sodium_base64_VARIANT_ORIGINAL);
        r = dems_buf_append(out, b64, strlen(b64));
        if (r == 0)
            r = dems_buf_append(out, "\n", 1);
    }
    if (r == 0)
        r = dems_buf_append(out, "\n", 1);
    if (r == 0)
        r = dems_buf_append(out, note, strlen(note));
    return r;
}

static long post(struct witness_client *c, const struct wc_witness *w, const struct dems_buf *body,
                 struct answer *a, char *curl_err)
{
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, w->url);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->timeout);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, c->timeout);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, curl_err);
    if (c->ca_file[0] != '\0')
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, (const char *)body->data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, a);
    CURLcode cc = curl_easy_perform(c->curl);
    curl_slist_free_all(hdr);
    long status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    else if (curl_err[0] == '\0')
        snprintf(curl_err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
    return cc == CURLE_OK ? status : -1;
}

/*
 * The first valid cosignature line by w in a 200 answer: 1 and its place,
 * 0 when there is none (a line of w's that does not verify counts as none).
 */
static int find_cosig(const struct wc_witness *w, const struct dems_buf *body, const char *note,
                      size_t text_len, size_t *ret_off, size_t *ret_len, uint64_t *ret_ts)
{
    const char *s = (const char *)body->data;
    for (size_t at = 0; at < body->len;) {
        const char *nl = memchr(s + at, '\n', body->len - at);
        size_t len = nl != NULL ? (size_t)(nl - (s + at)) : body->len - at;
        if (dems_cosig_check_line(s + at, len, note, text_len, &w->v, ret_ts) == 1) {
            *ret_off = at;
            *ret_len = len;
            return 1;
        }
        at += len + 1;
    }
    return 0;
}

/* Logs a failed submission (once per outage) and sets when w is asked again. */
static void failed(struct wc_witness *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void failed(struct wc_witness *w, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Once per outage, not once per retry. */
    if (w->failures == 0)
        dems_log(DEMS_LOG_WARN, NULL,
                 json_pack("{s:s,s:s}", "event", "witness_failed", "witness", w->v.name),
                 "witness %s: %s; retrying", w->v.name, msg);
    unsigned shift = w->failures < 14 ? w->failures : 14;
    int64_t pause = (int64_t)500 << shift;
    w->retry_at_ms = ledger_now_ms() + (pause < RETRY_MAX_MS ? pause : RETRY_MAX_MS);
    w->failures++;
}

static void succeeded(struct wc_witness *w, uint64_t size)
{
    if (w->failures > 0)
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:s}", "event", "witness_recovered", "witness", w->v.name),
                 "witness %s cosigns again", w->v.name);
    w->failures = 0;
    w->retry_at_ms = 0;
    w->has_size = w->has_done = true;
    w->known_size = w->done_size = size;
}

/* The size in a 409 answer ("N\n"). */
static bool conflict_size(const struct dems_buf *body, uint64_t *ret)
{
    size_t len = body->len;
    if (len < 2 || body->data[len - 1] != '\n')
        return false;
    return dems_parse_u64((const char *)body->data, len - 1, INT64_MAX, ret) == 0;
}

/* Submits the checkpoint (size, note with text_len bytes of text) to w. */
static void submit(struct witness_client *c, struct wc_witness *w, uint64_t size, const char *note,
                   size_t text_len)
{
    for (int round = 0; round < SUBMIT_ROUNDS; round++) {
        uint64_t old = w->has_size ? w->known_size : 0;
        if (old > size) {
            failed(w,
                   "it holds a checkpoint of %llu entries, more than this log's newest (%llu): "
                   "it has seen a different history of this log",
                   (unsigned long long)old, (unsigned long long)size);
            w->has_size = false; /* ask again from 0 next time: it answers with its size */
            return;
        }
        struct dems_buf body;
        dems_buf_init(&body, DEMS_NOTE_MAX_BYTES + 64 * 64);
        if (build_body(c, old, size, note, &body) < 0) {
            dems_buf_done(&body);
            failed(w, "cannot read the consistency proof from %llu to %llu",
                   (unsigned long long)old, (unsigned long long)size);
            return;
        }
        struct answer a = {.too_big = false};
        dems_buf_init(&a.body, MAX_ANSWER);
        char curl_err[CURL_ERROR_SIZE] = "";
        long status = post(c, w, &body, &a, curl_err);
        dems_buf_done(&body);
        uint64_t theirs = 0, ts = 0;
        size_t off = 0, len = 0;
        if (status == 200 && find_cosig(w, &a.body, note, text_len, &off, &len, &ts) == 1) {
            if (store_cosig(c, w, size, (const char *)a.body.data + off, len, ts) == 0)
                succeeded(w, size);
            else
                failed(w, "cannot store its cosignature");
            dems_buf_done(&a.body);
            return;
        }
        if (status == 409 && conflict_size(&a.body, &theirs) && (!w->has_size || theirs != old)) {
            w->has_size = true;
            w->known_size = theirs;
            dems_buf_done(&a.body);
            continue; /* again, from the size it holds */
        }
        if (status < 0)
            failed(w, "%s", curl_err);
        else if (status == 200)
            failed(w, "its answer holds no valid cosignature by %s", w->vkey);
        else
            failed(w, "it answered %ld to the checkpoint of %llu entries (from %llu): %.*s", status,
                   (unsigned long long)size, (unsigned long long)old,
                   (int)(a.body.len > 200 ? 200 : a.body.len), (const char *)a.body.data);
        dems_buf_done(&a.body);
        return;
    }
    failed(w, "it keeps answering 409 Conflict");
}

/* Marks size published once a quorum of witnesses cosigned it. */
static void publish(struct witness_client *c, uint64_t size)
{
    char sz[24], quorum[24];
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    snprintf(quorum, sizeof(quorum), "%llu", (unsigned long long)c->quorum);
    const char *p[] = {sz, quorum};
    PGresult *res = q(c,
                      "INSERT INTO ledger_published (size, cosignatures)"
                      " SELECT $1::bigint, n FROM (SELECT count(*)::integer AS n"
                      " FROM ledger_cosignatures WHERE size = $1::bigint) k"
                      " WHERE n >= $2::integer ON CONFLICT DO NOTHING RETURNING cosignatures",
                      2, p);
    if (q_ok(res) && PQntuples(res) == 1)
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:I}", "event", "checkpoint_published", "size", (json_int_t)size),
                 "checkpoint of %llu entries published with %s cosignatures",
                 (unsigned long long)size, PQgetvalue(res, 0, PQfnumber(res, "cosignatures")));
    PQclear(res);
}

/* One pass: the newest checkpoint to every witness that has not cosigned it. */
static void round_once(struct witness_client *c)
{
    if (!db_ready(c))
        return;
    if (!c->loaded)
        load_done(c);
    PGresult *res =
        q(c, "SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1", 0, NULL);
    uint64_t size = 0;
    if (!q_ok(res) || PQntuples(res) != 1 || !col_u64(res, 0, "size", &size) || size == 0) {
        PQclear(res);
        return;
    }
    const char *note = PQgetvalue(res, 0, PQfnumber(res, "note"));
    const char *blank = strstr(note, "\n\n");
    if (blank == NULL) {
        PQclear(res);
        return;
    }
    size_t text_len = (size_t)(blank - note) + 1;
    int64_t now = ledger_now_ms();
    for (size_t i = 0; i < c->n; i++) {
        struct wc_witness *w = &c->w[i];
        if ((w->has_done && w->done_size >= size) || now < w->retry_at_ms)
            continue;
        submit(c, w, size, note, text_len);
    }
    PQclear(res);
    publish(c, size);
}

static void *client_main(void *arg)
{
    struct witness_client *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (!c->kicked) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&c->cv, &c->mu, &until);
        }
        if (c->stop)
            break;
        c->kicked = false;
        pthread_mutex_unlock(&c->mu);
        round_once(c);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void client_free(struct witness_client *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    if (c->db != NULL)
        PQfinish(c->db);
    free(c->conninfo);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

int witness_client_start(struct dems_server *srv, const char *conninfo, struct witness_client **ret,
                         char *err, size_t errlen)
{
    const struct dems_config *cfg = srv->cfg;
    *ret = NULL;
    struct witness_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return DEMS_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    int r = parse_witnesses(c, cfg->witnesses, err, errlen);
    if (r == 0 && c->n > 0 && cfg->witness_quorum > c->n) {
        snprintf(err, errlen, "config: witness_quorum (%llu) exceeds the %zu witnesses listed",
                 (unsigned long long)cfg->witness_quorum, c->n);
        r = DEMS_EINVAL;
    }
    if (r == 0 && strlen(cfg->witness_ca_file) >= sizeof(c->ca_file)) {
        snprintf(err, errlen, "config: witness_ca_file: too long");
        r = DEMS_EINVAL;
    }
    if (r < 0 || c->n == 0) {
        client_free(c);
        return r;
    }
    snprintf(c->ca_file, sizeof(c->ca_file), "%s", cfg->witness_ca_file);
    c->timeout = (long)cfg->witness_timeout;
    c->quorum = cfg->witness_quorum;
    c->conninfo = strdup(conninfo);
    c->curl = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? curl_easy_init() : NULL;
    if (c->conninfo == NULL || c->curl == NULL ||
        pthread_create(&c->thread, NULL, client_main, c) != 0) {
        client_free(c);
        snprintf(err, errlen, "witnesses: cannot start the submitting thread");
        return DEMS_ENOMEM;
    }
    *ret = c;
    return 0;
}

void witness_client_stop(struct witness_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    client_free(c);
}

void witness_client_kick(struct witness_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->kicked = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}
