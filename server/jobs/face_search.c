/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face-search job ({"search": <face_searches.id>}; docs/face-search.md):
 * takes the probe's descriptors (a track's stored ones, or the best face of
 * the probe image, decoded in the media sandbox), searches the footage
 * cache restricted to the indexed artefacts the searcher may see now, or
 * the gallery cache restricted to the gallery, keeps each track's or
 * subject's best score (1 - euclidean distance) at or above the search's
 * threshold, and stores the ranked candidates with a FACE_SEARCH entry (by
 * the searcher: case, purpose, legal basis, authorisation, probe hash,
 * scope, threshold, number of results) in the same transaction. A probe
 * without a face ends the search failed, and that is ledgered too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "dems/vector.h"
#include "demsd/access.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

#include "face_int.h"

#define PROBES_MAX 8

struct probe {
    float d[PROBES_MAX][DEMS_FACE_DESCRIPTOR];
    size_t n;
};

struct hitset {
    const struct probe *probe;
    const uint64_t *bits; /* allowed owners */
    uint64_t nbits;
    size_t k;
    struct dems_vector_hit *hits; /* all probes' hits */
    size_t nhits;
};

struct filter_arg {
    const uint32_t *owner;
    size_t nowner;
    const uint64_t *bits;
    uint64_t nbits;
};

static bool accept(uint64_t label, void *arg)
{
    const struct filter_arg *f = arg;
    if (label >= f->nowner)
        return false;
    uint32_t o = f->owner[label];
    return o != 0 && o < f->nbits && (f->bits[o / 64] >> (o % 64) & 1) != 0;
}

static int run_search(struct dems_vector_index *index, const uint32_t *owner, size_t nowner,
                      void *arg)
{
    struct hitset *h = arg;
    struct filter_arg fa = {owner, nowner, h->bits, h->nbits};
    struct dems_vector_filter f = {.accept = accept, .arg = &fa};
    size_t ef = h->k < 128 ? 128 : h->k;
    for (size_t i = 0; i < h->probe->n; i++) {
        size_t n = 0;
        int rc = dems_vector_search(index, h->probe->d[i], h->k, ef, &f, h->hits + h->nhits, &n);
        if (rc < 0)
            return rc;
        h->nhits += n;
    }
    return 0;
}

static const char *col(const PGresult *res, int row, const char *name)
{
    int c = PQfnumber(res, name);
    return c < 0 || PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

/* The search as stored, with the searcher. */
struct search {
    char id[24], case_id[24], case_ref[65], user[DEMS_LEDGER_MAX_ID + 1], uid[24];
    bool sees_all;
    bool gallery_scope;
    char gallery[24], probe_track[24], probe_sha[65], probe_blob[65];
    char purpose[501], basis[201], authorisation[201];
    double threshold;
    int max_results;
};

static int load(PGconn *db, const char *id, struct search *s, bool *ret_queued)
{
    const char *params[] = {id};
    PGresult *res =
        face_query(db,
                   "SELECT f.state, f.case_id, c.reference, u.username, u.id AS uid,"
                   " u.role = 'admin' AS sees_all, f.scope, f.gallery_id, f.probe_track,"
                   " f.probe_sha256, f.probe_blob, f.purpose, f.legal_basis,"
                   " f.authorisation, f.threshold, f.max_results"
                   " FROM face_searches f JOIN cases c ON c.id = f.case_id"
                   " JOIN users u ON u.id = f.user_id WHERE f.id = $1::bigint",
                   1, params);
    if (res == NULL)
        return DEMS_EDB;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return DEMS_ENOTFOUND;
    }
    *s = (struct search){0};
    snprintf(s->id, sizeof(s->id), "%s", id);
#define COPY(field, name)                                                                          \
    snprintf(s->field, sizeof(s->field), "%s", col(res, 0, name) != NULL ? col(res, 0, name) : "")
    COPY(case_id, "case_id");
    COPY(case_ref, "reference");
    COPY(user, "username");
    COPY(uid, "uid");
    COPY(gallery, "gallery_id");
    COPY(probe_track, "probe_track");
    COPY(probe_sha, "probe_sha256");
    COPY(probe_blob, "probe_blob");
    COPY(purpose, "purpose");
    COPY(basis, "legal_basis");
    COPY(authorisation, "authorisation");
#undef COPY
    s->sees_all = strcmp(col(res, 0, "sees_all"), "t") == 0;
    s->gallery_scope = strcmp(col(res, 0, "scope"), "gallery") == 0;
    s->threshold = atof(col(res, 0, "threshold"));
    s->max_results = (int)atoll(col(res, 0, "max_results"));
    *ret_queued = strcmp(col(res, 0, "state"), "queued") == 0;
    PQclear(res);
    return 0;
}

/* The probe's descriptors. Returns 0, or < 0 with why (a bad probe) or err (retry). */
static int probe_of(const struct dems_job *job, struct dems_job_ctx *ctx, const struct search *s,
                    struct probe *p, char *why, size_t whylen, char *err, size_t errlen)
{
    p->n = 0;
    if (s->probe_track[0] != '\0') {
        const char *params[] = {s->probe_track};
        PGresult *res = face_query(ctx->db,
                                   "SELECT vec FROM face_descriptors WHERE track_id = $1::bigint"
                                   " ORDER BY id LIMIT 8",
                                   1, params);
        if (res == NULL) {
            snprintf(err, errlen, "database: cannot read the probe track");
            return DEMS_EDB;
        }
        for (int i = 0; i < PQntuples(res) && p->n < PROBES_MAX; i++)
            if (face_vec_parse(PQgetvalue(res, i, 0), p->d[p->n]))
                p->n++;
        PQclear(res);
        if (p->n == 0) {
            snprintf(why, whylen, "the probe track has no descriptors (deleted?)");
            return DEMS_EINVAL;
        }
        return 0;
    }
    struct dems_face_ctx *fc = face_ctx(ctx->cfg, err, errlen);
    if (fc == NULL)
        return DEMS_EAGAIN;
    char tag[48];
    snprintf(tag, sizeof(tag), "probe-%lld", (long long)job->id);
    struct face_frames fr;
    if (face_frames_start(ctx, s->probe_blob, tag, 1, &fr, err, errlen) < 0)
        return DEMS_EAGAIN;
    struct dems_face *faces = malloc(FACE_MAX_PER_FRAME * sizeof(*faces));
    char ferr[256] = "";
    int rc = faces == NULL ? DEMS_ENOMEM : face_frames_next(&fr, ctx, ferr, sizeof(ferr));
    size_t n = 0;
    double q;
    if (rc == 1) {
        struct dems_face_image img;
        face_image_of(&fr.frame, &img);
        struct dems_face best;
        rc = face_best_face(fc, &img, faces, &n, &best, &q);
        if (rc == 0 && n > 0) {
            memcpy(p->d[0], best.descriptor, sizeof(p->d[0]));
            p->n = 1;
        }
    }
    struct dems_media_error me;
    int mr = face_frames_finish(&fr, ctx, NULL, &me);
    free(faces);
    if (rc == DEMS_EUNAVAIL || mr == DEMS_EUNAVAIL) {
        snprintf(err, errlen, "the worker is stopping");
        return DEMS_EUNAVAIL;
    }
    if (mr < 0) {
        snprintf(why, whylen, "the probe image cannot be decoded: %s", me.message);
        return DEMS_EINVAL;
    }
    if (p->n == 0) {
        snprintf(why, whylen, "no face found in the probe image");
        return DEMS_EINVAL;
    }
    return 0;
}

/* Allowed owners: the gallery, or the indexed artefacts the searcher may see now. */
static int allowed(PGconn *db, const struct search *s, uint64_t **ret_bits, uint64_t *ret_nbits)
{
    PGresult *res;
    if (s->gallery_scope) {
        const char *params[] = {s->gallery};
        res = face_query(db, "SELECT $1::bigint AS n", 1, params);
    } else {
        const char *params[] = {s->uid, s->sees_all ? "true" : "false"};
        /* The rule of every evidence route (a searcher holds no prosecutor's shares). */
        res =
            face_query(db,
                       "SELECT fi.n FROM face_index fi WHERE fi.state = 'done' AND " DEMS_SEES_SQL(
                           "fi.artefact", "$1", "$2", "true"),
                       2, params);
    }
    if (res == NULL)
        return DEMS_EDB;
    uint64_t max = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        uint64_t n = strtoull(PQgetvalue(res, i, 0), NULL, 10);
        max = n > max ? n : max;
    }
    uint64_t nbits = max + 1;
    uint64_t *bits = calloc((size_t)(nbits + 63) / 64, sizeof(uint64_t));
    if (bits == NULL) {
        PQclear(res);
        return DEMS_ENOMEM;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        uint64_t n = strtoull(PQgetvalue(res, i, 0), NULL, 10);
        bits[n / 64] |= 1ull << (n % 64);
    }
    PQclear(res);
    *ret_bits = bits;
    *ret_nbits = nbits;
    return 0;
}

struct cand {
    long long owner_id; /* track or subject */
    double score;
    double t;
};

static int by_score(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->owner_id < y->owner_id ? -1 : x->owner_id > y->owner_id;
}

/* Ranks the hits by track or subject (best score each), above the threshold. */
static int rank(PGconn *db, const struct search *s, const struct hitset *h, json_t **ret_rows,
                size_t *ret_n)
{
    /* Which track or subject each hit's descriptor belongs to, still there:
     * only hits that can pass the threshold, as an array literal the primary
     * key's index answers (a jsonb list made PostgreSQL scan). */
    char *text = malloc(h->nhits * 21 + 3);
    if (text == NULL)
        return DEMS_ENOMEM;
    size_t o = 0;
    text[o++] = '{';
    for (size_t i = 0; i < h->nhits; i++) {
        if (face_score(sqrt((double)h->hits[i].distance)) < s->threshold)
            continue;
        o += (size_t)snprintf(text + o, 22, "%s%llu", o > 1 ? "," : "",
                              (unsigned long long)h->hits[i].label);
    }
    text[o++] = '}';
    text[o] = '\0';
    const char *params[] = {text, s->probe_track[0] != '\0' ? s->probe_track : NULL};
    PGresult *res = face_query(
        db,
        s->gallery_scope
            ? "SELECT d.id, d.subject_id AS owner, NULL::float8 AS t FROM face_descriptors d"
              " JOIN face_subjects s ON s.id = d.subject_id AND s.state = 'enrolled'"
              " WHERE d.id = ANY ($1::bigint[])"
              " AND ($2::bigint IS NULL OR $2::bigint IS NOT NULL)"
            : "SELECT d.id, d.track_id AS owner, t.best_t AS t FROM face_descriptors d"
              " JOIN face_tracks t ON t.id = d.track_id"
              " WHERE d.id = ANY ($1::bigint[])"
              " AND d.track_id IS DISTINCT FROM $2::bigint",
        2, params);
    free(text);
    if (res == NULL)
        return DEMS_EDB;
    struct cand *c = calloc(h->nhits + 1, sizeof(*c));
    size_t nc = 0;
    for (int i = 0; c != NULL && i < PQntuples(res); i++) {
        long long id = atoll(PQgetvalue(res, i, 0));
        long long owner = atoll(PQgetvalue(res, i, 1));
        double t = PQgetisnull(res, i, 2) ? -1 : atof(PQgetvalue(res, i, 2));
        double best = -1;
        for (size_t j = 0; j < h->nhits; j++) {
            if ((long long)h->hits[j].label != id)
                continue;
            double sc = face_score(sqrt((double)h->hits[j].distance));
            best = sc > best ? sc : best;
        }
        if (best < s->threshold)
            continue;
        size_t j = 0;
        while (j < nc && c[j].owner_id != owner)
            j++;
        if (j == nc)
            c[nc++] = (struct cand){owner, best, t};
        else if (best > c[j].score)
            c[j].score = best;
    }
    PQclear(res);
    if (c == NULL)
        return DEMS_ENOMEM;
    qsort(c, nc, sizeof(*c), by_score);
    if (nc > (size_t)s->max_results)
        nc = (size_t)s->max_results;
    json_t *rows = json_array();
    for (size_t i = 0; rows != NULL && i < nc; i++) {
        char sc[32];
        snprintf(sc, sizeof(sc), "%.4f", c[i].score);
        json_array_append_new(rows, json_pack("{s:I,s:s,s:I}", "rank", (json_int_t)(i + 1), "score",
                                              sc, "owner", (json_int_t)c[i].owner_id));
    }
    free(c);
    if (rows == NULL)
        return DEMS_ENOMEM;
    *ret_rows = rows;
    *ret_n = nc;
    return 0;
}

/* The FACE_SEARCH entry with the results (or the failure), in one transaction. */
static int record(const struct search *s, json_t *rows, size_t n, const char *failure, char *err,
                  size_t errlen)
{
    char thr[32];
    snprintf(thr, sizeof(thr), "%.4f", s->threshold);
    json_t *payload = json_pack(
        "{s:I,s:s,s:s,s:s,s:o,s:o,s:s,s:I,s:s}", "search_id", (json_int_t)atoll(s->id), "scope",
        s->gallery_scope ? "gallery" : "footage", "probe_sha256", s->probe_sha, "probe",
        s->probe_track[0] != '\0' ? "track" : "image", "probe_track",
        s->probe_track[0] != '\0' ? json_integer(atoll(s->probe_track)) : json_null(), "gallery_id",
        s->gallery_scope ? json_integer(atoll(s->gallery)) : json_null(), "threshold", thr,
        "results", (json_int_t)n, "state", failure != NULL ? "failed" : "done");
    if (payload != NULL) {
        dems_ledger_payload_set_text(payload, "purpose", s->purpose, strlen(s->purpose), 500);
        dems_ledger_payload_set_text(payload, "legal_basis", s->basis, strlen(s->basis), 200);
        dems_ledger_payload_set_text(payload, "authorisation", s->authorisation,
                                     strlen(s->authorisation), 200);
        if (failure != NULL)
            dems_ledger_payload_set_text(payload, "error", failure, strlen(failure), 300);
    }
    char *rows_text = json_dumps(rows, JSON_COMPACT);
    char count[24];
    snprintf(count, sizeof(count), "%zu", n);
    const char *pp[] = {s->id, rows_text, count, failure != NULL ? "failed" : "done", failure};
    struct dems_ledger_item *it =
        rows_text == NULL
            ? NULL
            : face_item(
                  DEMS_LEDGER_FACE_SEARCH, DEMS_LEDGER_ACTOR_USER, s->user, payload,
                  s->gallery_scope
                      ? "WITH r AS (INSERT INTO face_search_results (search_id, rank, score,"
                        " subject_id) SELECT $1::bigint, (e->>'rank')::integer, "
                        "(e->>'score')::real,"
                        " (e->>'owner')::bigint FROM jsonb_array_elements($2::jsonb) e RETURNING 1)"
                        " UPDATE face_searches SET state = $4, error = $5, results = $3::integer,"
                        " ledger_seq = $6::bigint, finished_at = now()"
                        " WHERE id = $1::bigint AND state = 'queued' AND (SELECT count(*) FROM r) "
                        ">= 0"
                      : "WITH r AS (INSERT INTO face_search_results (search_id, rank, score,"
                        " track_id, t) SELECT $1::bigint, (e->>'rank')::integer, "
                        "(e->>'score')::real,"
                        " (e->>'owner')::bigint, t.best_t FROM jsonb_array_elements($2::jsonb) e"
                        " JOIN face_tracks t ON t.id = (e->>'owner')::bigint RETURNING 1)"
                        " UPDATE face_searches SET state = $4, error = $5, results = $3::integer,"
                        " ledger_seq = $6::bigint, finished_at = now()"
                        " WHERE id = $1::bigint AND state = 'queued' AND (SELECT count(*) FROM r) "
                        ">= 0",
                  5, pp);
    if (rows_text == NULL)
        json_decref(payload);
    free(rows_text);
    if (it == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    snprintf(it->case_id, sizeof(it->case_id), "%s", s->case_ref);
    it->has_sha256 = true;
    dems_hex_decode(s->probe_sha, 64, it->sha256, 32);
    it->pre_must_change = true;
    it->pre_seq = true;
    uint64_t seq;
    int rc = dems_job_ledger_append(it, &seq);
    if (rc == DEMS_ENOTFOUND)
        return 0; /* recorded by another run */
    if (rc < 0)
        snprintf(err, errlen, "cannot record the search: %s", dems_strerror(rc));
    return rc;
}

enum dems_job_result dems_job_face_search(const struct dems_job *job, struct dems_job_ctx *ctx,
                                          char *err, size_t errlen)
{
    json_t *sj = json_object_get(job->payload, "search");
    if (!json_is_integer(sj) || json_integer_value(sj) <= 0) {
        snprintf(err, errlen, "field \"search\" must be a search id");
        return DEMS_JOB_FAIL;
    }
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(sj));
    struct search s;
    bool queued = false;
    int rc = load(ctx->db, id, &s, &queued);
    if (rc < 0) {
        snprintf(err, errlen, rc == DEMS_ENOTFOUND ? "no search %s" : "database: cannot load %s",
                 id);
        return rc == DEMS_ENOTFOUND ? DEMS_JOB_FAIL : DEMS_JOB_RETRY;
    }
    if (!queued)
        return DEMS_JOB_OK;
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    struct probe *p = malloc(sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_JOB_RETRY;
    }
    char why[300] = "";
    rc = probe_of(job, ctx, &s, p, why, sizeof(why), err, errlen);
    if (rc == DEMS_EUNAVAIL) {
        free(p);
        return DEMS_JOB_RELEASE;
    }
    json_t *rows = NULL;
    size_t n = 0;
    if (rc == DEMS_EINVAL) {
        /* A bad probe: the search ends failed, and that is ledgered too. */
        rows = json_array();
        rc = rows != NULL ? record(&s, rows, 0, why, err, errlen) : DEMS_ENOMEM;
        json_decref(rows);
        free(p);
        snprintf(err, errlen, "%s", why);
        return rc == 0 ? DEMS_JOB_FAIL : DEMS_JOB_RETRY;
    }
    if (rc < 0) {
        free(p);
        return DEMS_JOB_RETRY;
    }
    uint64_t *bits = NULL, nbits = 0;
    rc = allowed(ctx->db, &s, &bits, &nbits);
    struct hitset h = {.probe = p,
                       .bits = bits,
                       .nbits = nbits,
                       .k = (size_t)s.max_results * 4 < 64 ? 64 : (size_t)s.max_results * 4};
    h.hits = rc == 0 ? calloc(h.k * p->n + 1, sizeof(*h.hits)) : NULL;
    if (rc == 0 && h.hits == NULL)
        rc = DEMS_ENOMEM;
    if (rc == 0)
        rc = face_cache_use(ctx, s.gallery_scope ? FACE_CACHE_GALLERY : FACE_CACHE_FOOTAGE,
                            run_search, &h, err, errlen);
    if (rc == 0)
        rc = rank(ctx->db, &s, &h, &rows, &n);
    if (rc == 0)
        rc = record(&s, rows, n, NULL, err, errlen);
    else if (err[0] == '\0')
        snprintf(err, errlen, "face search failed: %s", dems_strerror(rc));
    json_decref(rows);
    free(h.hits);
    free(bits);
    free(p);
    return rc == 0 ? DEMS_JOB_OK : DEMS_JOB_RETRY;
}
