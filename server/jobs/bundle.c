/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bundle job ({"bundle": <bundles.id>}, queued by POST
 * /v1/cases/{id}/bundles): gathers the case, the chosen exhibits, their
 * derivatives, the custody entries with an inclusion proof each, the
 * checkpoint and the key chain from the database, and writes the court
 * bundle (common/bundle, docs/bundle.md) streamed straight into the
 * encrypted blob store: the ZIP's bytes are hashed and sealed with
 * secretstream as they come (on a second thread, see struct pipe) and
 * written by dems_blob_out (direct I/O on a third thread) into
 * DATA/work/bundle-<id>.blob, which is renamed into the store under its
 * SHA-256 only when whole. No plaintext
 * reaches the disk, memory stays bounded whatever the size, and a failed
 * bundle leaves no file or blob behind. bytes_done on the row follows the
 * originals read. One ledger transaction records it: the BUNDLE_MADE entry
 * and the row's done state, with the bundle's SHA-256 and size.
 *
 * The checkpoint is the oldest stored one covering every custody entry, so
 * the same request with no new relevant entries gives the same bytes.
 */
#include "dems/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "dems/version.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

#define REPORT_BYTES    (32u << 20) /* bytes_done written at least this often */
#define CHECKPOINT_WAIT 15          /* seconds to wait for a covering checkpoint */
#define PIPE_NBUF       4           /* ZIP buffers between the two threads */
#define PIPE_BUFSZ      (1u << 20)

/* Entries touching the exhibits (arts: text[] of artefacts) or naming the case (ref: its
 * reference), the latter found by the index of migration 0015. */
#define RELEVANT(arts, ref)                                                                        \
    "(artefact = ANY (" arts "::text[]) OR seq IN (SELECT ce.seq FROM ledger_case_entries ce"      \
    " WHERE ce.case_ref = " ref "))"

struct bj {
    struct dems_job_ctx *ctx;
    char id_s[24];
    char *err;
    size_t errlen;
    /* what goes in */
    char case_id_s[24];
    char case_ref[72];
    char requested_by[80];
    bool previews;
    json_t *case_info;
    json_t *exhibits;
    char *arts; /* text[] literal of the exhibits' artefacts */
    struct dems_bundle_file *files;
    char (*blob)[65];
    char (*names)[128];
    size_t nfiles;
    struct dems_bundle_entry *custody, *keys;
    size_t ncustody, nkeys;
    char *note;
    struct dems_checkpoint cp;
    char vkey[DEMS_NOTE_VKEY_MAX];
    int64_t time_ms;
    /* reading */
    struct dems_blob *in;
    uint64_t total, done, reported;
    /* writing */
    char tmp[PATH_MAX];
    struct dems_blob_out *out;
    uint64_t size;
    struct pipe *pipe;
};

/*
 * The ZIP's bytes pass from the thread that reads, decrypts and zips the
 * originals to a second thread that hashes, encrypts and writes them,
 * through PIPE_NBUF buffers of PIPE_BUFSZ bytes: the two halves of the work
 * each take about as long, so a bundle is made at about twice the speed of
 * one thread, in 4 MiB more memory.
 */
struct pipe {
    struct bj *b;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[PIPE_NBUF];
    size_t len[PIPE_NBUF];
    uint64_t head, tail; /* buffers filled / written */
    bool closing;
    int err; /* the writer's first error */
};

static int fail(struct bj *b, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct bj *b, int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    return r;
}

/* Runs one statement; returns its result (caller PQclears) or NULL with err set. */
static PGresult *query(struct bj *b, const char *what, const char *sql, int n,
                       const char *const *params)
{
    PGresult *res = PQexecParams(b->ctx->db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    fail(b, DEMS_EDB, "database: %s: %s", what, PQerrorMessage(b->ctx->db));
    PQclear(res);
    return NULL;
}

static const char *col(const PGresult *res, int row, const char *name)
{
    int c = PQfnumber(res, name);
    return c >= 0 && !PQgetisnull(res, row, c) ? PQgetvalue(res, row, c) : NULL;
}

static int64_t col_int(const PGresult *res, int row, const char *name)
{
    const char *s = col(res, row, name);
    uint64_t v = 0;
    return s != NULL && dems_parse_u64(s, strlen(s), INT64_MAX, &v) == 0 ? (int64_t)v : -1;
}

static json_t *col_str(const PGresult *res, int row, const char *name)
{
    const char *s = col(res, row, name);
    return s != NULL ? json_string(s) : json_null();
}

/* ---- gathering ---- */

/* The bundle row and its case; *ret_state is "queued", "running", "done" or "failed". */
static int load_bundle(struct bj *b, char **ret_exhibits, char ret_state[static 16])
{
    const char *p[] = {b->id_s};
    PGresult *res = query(
        b, "the bundle",
        "SELECT bu.state, bu.exhibits::text AS exhibits, bu.include_previews, c.id AS case_id,"
        " c.reference, c.title, c.offence, u.username"
        " FROM bundles bu JOIN cases c ON c.id = bu.case_id JOIN users u ON u.id = bu.requested_by"
        " WHERE bu.id = $1::bigint",
        1, p);
    if (res == NULL)
        return DEMS_EDB;
    int r = PQntuples(res) == 1 ? 0 : fail(b, DEMS_ENOTFOUND, "no bundle %s", b->id_s);
    if (r == 0) {
        snprintf(ret_state, 16, "%s", col(res, 0, "state"));
        *ret_exhibits = strdup(col(res, 0, "exhibits"));
        snprintf(b->case_id_s, sizeof b->case_id_s, "%s", col(res, 0, "case_id"));
        snprintf(b->case_ref, sizeof b->case_ref, "%s", col(res, 0, "reference"));
        snprintf(b->requested_by, sizeof b->requested_by, "%s", col(res, 0, "username"));
        b->previews = strcmp(col(res, 0, "include_previews"), "t") == 0;
        b->case_info =
            json_pack("{s:o,s:o,s:o}", "reference", col_str(res, 0, "reference"), "title",
                      col_str(res, 0, "title"), "offence", col_str(res, 0, "offence"));
        if (b->case_info == NULL || *ret_exhibits == NULL)
            r = DEMS_ENOMEM;
    }
    PQclear(res);
    return r;
}

static const char exhibits_sql[] =
    "SELECT x.reference, x.description, a.id AS artefact, a.size, a.filename,"
    " a.metadata ->> 'recording_start' AS recorded_start,"
    " a.metadata ->> 'recording_end' AS recorded_end, d.name AS device, d.serial,"
    " u.username AS uploader,"
    " to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS ingested_at,"
    " (SELECT min(seq) FROM ledger_entries le WHERE le.artefact = a.id"
    " AND le.type = 'INGESTED') AS ingested_seq"
    " FROM exhibits x JOIN artefacts a ON a.id = x.artefact"
    " LEFT JOIN users u ON u.id = a.uploaded_by LEFT JOIN devices d ON d.id = a.uploaded_by_device"
    " WHERE x.id = ANY ($1::bigint[]) AND x.removed_at IS NULL ORDER BY x.id";

static json_t *exhibit_json(const PGresult *res, int i)
{
    const char *dev = col(res, i, "device"), *serial = col(res, i, "serial");
    char device[200];
    snprintf(device, sizeof device, "%s (%s)", dev != NULL ? dev : "",
             serial != NULL ? serial : "");
    return json_pack("{s:o,s:o,s:o,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:[]}", "reference",
                     col_str(res, i, "reference"), "description", col_str(res, i, "description"),
                     "sha256", col_str(res, i, "artefact"), "size",
                     (json_int_t)col_int(res, i, "size"), "filename", col_str(res, i, "filename"),
                     "recorded_start", col_str(res, i, "recorded_start"), "recorded_end",
                     col_str(res, i, "recorded_end"), "device",
                     dev != NULL ? json_string(device) : json_null(), "uploader",
                     col_str(res, i, "uploader"), "ingested_at", col_str(res, i, "ingested_at"),
                     "ingested_seq", (json_int_t)col_int(res, i, "ingested_seq"), "derivatives");
}

static int load_exhibits(struct bj *b, const char *ids, size_t nwanted)
{
    const char *p[] = {ids};
    PGresult *res = query(b, "the exhibits", exhibits_sql, 1, p);
    if (res == NULL)
        return DEMS_EDB;
    int n = PQntuples(res), r = 0;
    struct dems_buf arts;
    dems_buf_init(&arts, (size_t)n * 70 + 4);
    if ((size_t)n != nwanted)
        r = fail(b, DEMS_ENOTFOUND, "%zu of the %zu exhibits chosen were removed from the case",
                 nwanted - (size_t)n, nwanted);
    b->exhibits = json_array();
    r = r == 0 && (b->exhibits == NULL || dems_buf_append(&arts, "{", 1) < 0) ? DEMS_ENOMEM : r;
    for (int i = 0; r == 0 && i < n; i++) {
        if (col_int(res, i, "ingested_seq") < 0)
            r = fail(b, DEMS_ENOTFOUND, "exhibit %s has no INGESTED entry",
                     col(res, i, "reference"));
        else if (json_array_append_new(b->exhibits, exhibit_json(res, i)) < 0 ||
                 dems_buf_append(&arts, i > 0 ? "," : "", i > 0 ? 1 : 0) < 0 ||
                 dems_buf_append(&arts, col(res, i, "artefact"), 64) < 0)
            r = DEMS_ENOMEM;
    }
    if (r == 0 && dems_buf_append(&arts, "}", 2) == 0)
        b->arts = (char *)arts.data;
    else
        dems_buf_done(&arts);
    PQclear(res);
    return r == 0 && b->arts == NULL ? DEMS_ENOMEM : r;
}

/* The file name a derivative gets in the bundle. */
static const char *derivative_name(const char *kind)
{
    return strcmp(kind, "proxy") == 0        ? "proxy.mp4"
           : strcmp(kind, "poster") == 0     ? "poster.jpg"
           : strcmp(kind, "sprite") == 0     ? "sprite.jpg"
           : strcmp(kind, "sprite_vtt") == 0 ? "thumbnails.vtt"
                                             : "derivative";
}

static int add_file(struct bj *b, size_t x, const char *kind, const char *name, const char *blob,
                    uint64_t size)
{
    size_t i = b->nfiles++;
    b->files[i] = (struct dems_bundle_file){.exhibit = x, .kind = kind, .size = size};
    snprintf(b->blob[i], sizeof b->blob[i], "%s", blob);
    snprintf(b->names[i], sizeof b->names[i], "%s", name);
    b->files[i].name = b->names[i];
    b->total += size;
    return dems_hex_decode(blob, 64, b->files[i].sha256, 32) == 0 ? 0 : DEMS_EINVAL;
}

/* Derivatives (always listed, with parameters and versions) and the files to carry. */
static int load_files(struct bj *b)
{
    const char *p[] = {b->arts};
    PGresult *res =
        query(b, "the derivatives",
              "SELECT d.artefact, d.kind, d.blob, d.size, d.params -> 'encoding' AS parameters,"
              " d.params -> 'ffmpeg' AS libraries, (SELECT max(seq) FROM ledger_entries le"
              " WHERE le.artefact = d.artefact AND le.type = 'PREVIEW_MADE') AS made_seq"
              " FROM derivatives d WHERE d.artefact = ANY ($1::text[]) ORDER BY d.artefact, d.kind",
              1, p);
    if (res == NULL)
        return DEMS_EDB;
    size_t nx = json_array_size(b->exhibits), n = (size_t)PQntuples(res);
    b->files = calloc(nx + n, sizeof *b->files);
    b->blob = calloc(nx + n, sizeof *b->blob);
    b->names = calloc(nx + n, sizeof *b->names);
    int r = b->files != NULL && b->blob != NULL && b->names != NULL ? 0 : DEMS_ENOMEM;
    for (size_t x = 0; r == 0 && x < nx; x++) {
        json_t *e = json_array_get(b->exhibits, x);
        const char *sha = json_string_value(json_object_get(e, "sha256"));
        const char *fn = json_string_value(json_object_get(e, "filename"));
        r = add_file(b, x, "original", fn != NULL ? fn : "original", sha,
                     (uint64_t)json_integer_value(json_object_get(e, "size")));
        for (int i = 0; r == 0 && (size_t)i < n; i++) {
            if (strcmp(col(res, i, "artefact"), sha) != 0)
                continue;
            json_error_t je;
            const char *pa = col(res, i, "parameters"), *li = col(res, i, "libraries");
            json_t *d =
                json_pack("{s:s,s:s,s:I,s:I,s:o,s:o}", "kind", col(res, i, "kind"), "sha256",
                          col(res, i, "blob"), "size", (json_int_t)col_int(res, i, "size"),
                          "made_seq", (json_int_t)col_int(res, i, "made_seq"), "parameters",
                          pa != NULL ? json_loads(pa, 0, &je) : json_null(), "libraries",
                          li != NULL ? json_loads(li, 0, &je) : json_null());
            if (d == NULL || json_array_append_new(json_object_get(e, "derivatives"), d) < 0)
                r = DEMS_ENOMEM;
            else if (b->previews)
                r = add_file(b, x, json_string_value(json_object_get(d, "kind")),
                             derivative_name(col(res, i, "kind")), col(res, i, "blob"),
                             (uint64_t)col_int(res, i, "size"));
        }
    }
    /* The kinds are borrowed from the manifest's derivative objects, which live as long. */
    PQclear(res);
    return r;
}

/* The oldest checkpoint covering every relevant entry; waits briefly for one to be signed. */
static int load_checkpoint(struct bj *b)
{
    /* With witnesses, the checkpoint a quorum of them cosigned, with their cosignatures. */
    const char *p[] = {b->arts, b->case_ref, b->ctx->cfg->witnesses[0] != '\0' ? "t" : "f"};
    for (int tries = 0;; tries++) {
        PGresult *res = query(
            b, "the checkpoint",
            "WITH m AS (SELECT coalesce(max(seq), -1) AS seq FROM ledger_entries WHERE " RELEVANT(
                "$1",
                "$2") ")"
                      " SELECT k.size, k.note, m.seq FROM m LEFT JOIN LATERAL (SELECT size, note"
                      " FROM ledger_checkpoint_notes WHERE size > m.seq"
                      " AND (published OR NOT $3::boolean) ORDER BY size LIMIT 1) k ON true",
            3, p);
        if (res == NULL)
            return DEMS_EDB;
        const char *note = col(res, 0, "note");
        if (note != NULL) {
            b->note = strdup(note);
            PQclear(res);
            /* Parsed only: its signature is checked by dems-verify against the key chain. */
            const char *blank = b->note != NULL ? strstr(b->note, "\n\n") : NULL;
            if (b->note == NULL)
                return DEMS_ENOMEM;
            if (blank == NULL ||
                dems_checkpoint_parse(b->note, (size_t)(blank - b->note) + 1, &b->cp) < 0)
                return fail(b, DEMS_EINVAL, "the stored checkpoint does not parse");
            return 0;
        }
        PQclear(res);
        if (tries >= CHECKPOINT_WAIT * 4 || dems_job_stopping(b->ctx))
            return fail(b, DEMS_EAGAIN, "no checkpoint covers the exhibits' entries yet");
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Entries as bundle entries, each with its inclusion proof (one query for the subtrees). */
static int fill_proof(struct bj *b, struct dems_bundle_entry *e)
{
    struct dems_merkle_prefetch *pf = malloc(sizeof *pf);
    if (pf == NULL)
        return DEMS_ENOMEM;
    int r = dems_merkle_plan_inclusion(e->seq, b->cp.size, pf);
    char lv[DEMS_MERKLE_MAX_READS * 4 + 4], st[DEMS_MERKLE_MAX_READS * 21 + 4];
    size_t ol = 0, os = 0;
    lv[ol++] = '{';
    st[os++] = '{';
    for (size_t i = 0; r == 0 && i < pf->n; i++) {
        ol += (size_t)snprintf(lv + ol, sizeof lv - ol, "%s%u", i ? "," : "", pf->pos[i].level);
        os += (size_t)snprintf(st + os, sizeof st - os, "%s%llu", i ? "," : "",
                               (unsigned long long)pf->pos[i].start);
    }
    snprintf(lv + ol, sizeof lv - ol, "}");
    snprintf(st + os, sizeof st - os, "}");
    const char *p[] = {lv, st};
    PGresult *res = r == 0 ? query(b, "the subtrees",
                                   "SELECT level, start, encode(hash, 'hex') AS hash"
                                   " FROM ledger_subtrees WHERE (level, start) IN"
                                   " (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
                                   2, p)
                           : NULL;
    if (r == 0 && res == NULL)
        r = DEMS_EDB;
    for (int i = 0; r == 0 && i < PQntuples(res); i++) {
        int64_t level = col_int(res, i, "level"), start = col_int(res, i, "start");
        for (size_t k = 0; k < pf->n; k++)
            if ((int64_t)pf->pos[k].level == level && (int64_t)pf->pos[k].start == start)
                dems_hex_decode(col(res, i, "hash"), 64, pf->hash[k], 32);
    }
    PQclear(res);
    if (r == 0) {
        struct dems_merkle_reader rd = dems_merkle_prefetch_reader(pf);
        r = dems_merkle_prove_inclusion(&rd, e->seq, b->cp.size, &e->proof);
        if (r < 0)
            fail(b, r, "cannot prove entry %llu in the checkpoint's tree",
                 (unsigned long long)e->seq);
    }
    free(pf);
    return r;
}

/*
 * The entries below the checkpoint's size that match where: the custody
 * entries (relevant: where uses $2 artefacts and $3 the case reference) or
 * the key rotations.
 */
static int load_entries(struct bj *b, const char *what, const char *where, bool relevant,
                        struct dems_bundle_entry **ret, size_t *ret_n)
{
    char size[24], sql[1024];
    snprintf(size, sizeof size, "%llu", (unsigned long long)b->cp.size);
    snprintf(sql, sizeof sql,
             "SELECT seq, encode(bytes, 'hex') AS bytes, encode(leaf_hash, 'hex') AS leaf,"
             " encode(signature, 'hex') AS sig FROM ledger_entries WHERE seq < $1::bigint AND %s"
             " ORDER BY seq",
             where);
    const char *p[] = {size, b->arts, b->case_ref};
    PGresult *res = query(b, what, sql, relevant ? 3 : 1, p);
    if (res == NULL)
        return DEMS_EDB;
    size_t n = (size_t)PQntuples(res);
    struct dems_bundle_entry *e = calloc(n > 0 ? n : 1, sizeof *e);
    int r = e != NULL ? 0 : DEMS_ENOMEM;
    *ret = e;
    *ret_n = 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        const char *hex = col(res, (int)i, "bytes");
        size_t len = strlen(hex) / 2;
        uint8_t *bytes = malloc(len > 0 ? len : 1);
        e[i].seq = (uint64_t)col_int(res, (int)i, "seq");
        e[i].bytes = bytes;
        e[i].len = len;
        *ret_n = i + 1;
        if (bytes == NULL || dems_hex_decode(hex, 2 * len, bytes, len) < 0 ||
            dems_hex_decode(col(res, (int)i, "leaf"), 64, e[i].leaf, 32) < 0 ||
            dems_hex_decode(col(res, (int)i, "sig"), 128, e[i].sig, 64) < 0)
            r = bytes == NULL
                    ? DEMS_ENOMEM
                    : fail(b, DEMS_EINVAL, "entry %s does not decode", col(res, (int)i, "seq"));
        else
            r = fill_proof(b, &e[i]);
    }
    PQclear(res);
    return r;
}

static void free_entries(struct dems_bundle_entry *e, size_t n)
{
    for (size_t i = 0; e != NULL && i < n; i++)
        free((void *)(uintptr_t)e[i].bytes);
    free(e);
}

/* The verifier key of the log's first signing key; the bundle's time (its newest entry's). */
static int load_key_and_time(struct bj *b)
{
    PGresult *res = query(b, "the first key",
                          "SELECT name, encode(public_key, 'hex') AS pk FROM ledger_keys"
                          " ORDER BY id LIMIT 1",
                          0, NULL);
    if (res == NULL)
        return DEMS_EDB;
    struct dems_note_verifier v;
    memset(&v, 0, sizeof v);
    const char *name = PQntuples(res) == 1 ? col(res, 0, "name") : NULL;
    int r = name != NULL && strlen(name) <= DEMS_NOTE_MAX_NAME &&
                    dems_hex_decode(col(res, 0, "pk"), 64, v.pk, 32) == 0
                ? 0
                : fail(b, DEMS_EINVAL, "the ledger has no readable first key");
    if (r == 0) {
        snprintf(v.name, sizeof v.name, "%s", name);
        dems_note_keyhash(v.name, strlen(v.name), v.pk, v.keyhash);
        dems_note_verifier_format(&v, b->vkey);
    }
    PQclear(res);
    if (r == 0 && b->ncustody > 0) {
        json_t *root = NULL;
        struct dems_ledger_entry e;
        const struct dems_bundle_entry *last = &b->custody[b->ncustody - 1];
        if (dems_ledger_entry_decode(last->bytes, last->len, &root, &e) == 0)
            b->time_ms = e.time_ms;
        json_decref(root);
    }
    return r;
}

/* ---- the source: originals and previews from the blob store ---- */

static void report(struct bj *b, bool force)
{
    if (!force && b->done - b->reported < REPORT_BYTES)
        return;
    char done[24];
    snprintf(done, sizeof done, "%llu", (unsigned long long)b->done);
    const char *p[] = {b->id_s, done};
    PQclear(query(b, "progress", "UPDATE bundles SET bytes_done = $2::bigint WHERE id = $1::bigint",
                  2, p));
    b->reported = b->done;
}

static int src_open(void *ctx, size_t i)
{
    struct bj *b = ctx;
    return dems_blob_open(b->ctx->cfg->data_dir, b->ctx->master_key, b->blob[i], &b->in);
}

static long src_read(void *ctx, uint8_t *buf, size_t cap)
{
    struct bj *b = ctx;
    if (cap < DEMS_BLOB_CHUNK)
        return DEMS_EINVAL;
    if (dems_job_stopping(b->ctx))
        return DEMS_EUNAVAIL;
    long n = dems_blob_read(b->in, buf);
    if (n > 0) {
        b->done += (uint64_t)n;
        report(b, false);
    }
    return n;
}

static void src_close(void *ctx)
{
    struct bj *b = ctx;
    dems_blob_close(b->in);
    b->in = NULL;
}

/* ---- the sink: hashed, encrypted and written by dems_blob_out ---- */

static void *pipe_main(void *arg)
{
    struct pipe *pp = arg;
    pthread_mutex_lock(&pp->mu);
    for (;;) {
        while (pp->tail == pp->head && !pp->closing)
            pthread_cond_wait(&pp->cv, &pp->mu);
        if (pp->tail == pp->head)
            break;
        size_t i = (size_t)(pp->tail % PIPE_NBUF);
        bool failed = pp->err < 0;
        pthread_mutex_unlock(&pp->mu);
        int r = failed ? 0 : dems_blob_out_write(pp->b->out, pp->buf[i], pp->len[i]);
        pthread_mutex_lock(&pp->mu);
        if (r < 0 && pp->err == 0)
            pp->err = r;
        pp->tail++;
        pthread_cond_broadcast(&pp->cv);
    }
    pthread_mutex_unlock(&pp->mu);
    return NULL;
}

/* Hands the filling buffer to the writer; waits while every buffer is taken. */
static int pipe_push(struct pipe *pp)
{
    pthread_mutex_lock(&pp->mu);
    pp->head++;
    pthread_cond_broadcast(&pp->cv);
    while (pp->head - pp->tail == PIPE_NBUF && pp->err == 0)
        pthread_cond_wait(&pp->cv, &pp->mu);
    int r = pp->err;
    pthread_mutex_unlock(&pp->mu);
    if (r == 0)
        pp->len[pp->head % PIPE_NBUF] = 0; /* free: the writer is done with it */
    return r;
}

/* The writer's side of dems_bundle_write's sink: copies into the filling buffer. */
static int sink(void *ctx, const uint8_t *p, size_t n)
{
    struct pipe *pp = ((struct bj *)ctx)->pipe;
    while (n > 0) {
        size_t i = (size_t)(pp->head % PIPE_NBUF);
        size_t k = PIPE_BUFSZ - pp->len[i] < n ? PIPE_BUFSZ - pp->len[i] : n;
        memcpy(pp->buf[i] + pp->len[i], p, k);
        pp->len[i] += k;
        p += k;
        n -= k;
        if (pp->len[i] == PIPE_BUFSZ) {
            int r = pipe_push(pp);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

static int pipe_start(struct bj *b)
{
    struct pipe *pp = calloc(1, sizeof *pp);
    if (pp == NULL)
        return DEMS_ENOMEM;
    pp->b = b;
    b->pipe = pp;
    for (size_t i = 0; i < PIPE_NBUF; i++)
        if ((pp->buf[i] = malloc(PIPE_BUFSZ)) == NULL)
            return DEMS_ENOMEM;
    pthread_mutex_init(&pp->mu, NULL);
    pthread_cond_init(&pp->cv, NULL);
    if (pthread_create(&pp->thread, NULL, pipe_main, pp) != 0) {
        pthread_mutex_destroy(&pp->mu);
        pthread_cond_destroy(&pp->cv);
        pp->b = NULL; /* no thread to join */
        return DEMS_ENOMEM;
    }
    return 0;
}

/* Passes on what is left (when ok), lets the writer finish and joins it; its error. */
static int pipe_finish(struct bj *b, bool ok)
{
    struct pipe *pp = b->pipe;
    int r = 0;
    if (pp == NULL)
        return 0;
    if (pp->b != NULL) {
        pthread_mutex_lock(&pp->mu);
        if (ok && pp->len[pp->head % PIPE_NBUF] > 0)
            pp->head++;
        if (!ok && pp->err == 0)
            pp->err = DEMS_EIO; /* the bundle failed: write nothing more */
        pp->closing = true;
        pthread_cond_broadcast(&pp->cv);
        pthread_mutex_unlock(&pp->mu);
        pthread_join(pp->thread, NULL);
        r = ok ? pp->err : 0;
        pthread_mutex_destroy(&pp->mu);
        pthread_cond_destroy(&pp->cv);
    }
    for (size_t i = 0; i < PIPE_NBUF; i++)
        free(pp->buf[i]);
    free(pp);
    b->pipe = NULL;
    return r < 0 ? fail(b, r, "cannot write the bundle: %s", dems_strerror(r)) : 0;
}

static int open_sink(struct bj *b)
{
    char dir[PATH_MAX - 64];
    int n = snprintf(dir, sizeof dir, "%s/work", b->ctx->cfg->data_dir);
    if (n < 0 || (size_t)n >= sizeof dir)
        return fail(b, DEMS_EIO, "data_dir is too long");
    mkdir(dir, 0700);
    snprintf(b->tmp, sizeof b->tmp, "%s/bundle-%s.blob", dir, b->id_s);
    unlink(b->tmp); /* what a crashed earlier attempt left */
    int r = dems_blob_out_open(b->tmp, b->ctx->master_key, &b->out);
    return r < 0 ? fail(b, r, "cannot create %s: %s", b->tmp, dems_strerror(r)) : 0;
}

/* Seals the last chunk, fsyncs and moves the blob into the store under its SHA-256. */
static int close_sink(struct bj *b, char hex[static 65])
{
    uint8_t digest[32];
    int r = dems_blob_out_close(b->out, digest, &b->size);
    dems_blob_out_free(b->out);
    b->out = NULL;
    if (r == 0) {
        dems_hex_encode(digest, 32, hex);
        r = dems_blob_adopt(b->ctx->cfg->data_dir, hex, b->tmp);
    }
    return r < 0 ? fail(b, r, "cannot store the bundle: %s", dems_strerror(r)) : 0;
}

/* ---- recording ---- */

static const char done_sql[] =
    "WITH u AS (UPDATE bundles SET state = 'done', result_sha256 = $2, result_size = $3::bigint,"
    " bytes_done = bytes_total, finished_at = now(), error = NULL, made_seq = $4::bigint"
    " WHERE id = $1::bigint AND state = 'running' RETURNING 1)"
    " SELECT 1 / count(*)::integer FROM u";

static int record(struct bj *b, const char *hex)
{
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_BUNDLE_MADE, DEMS_LEDGER_ACTOR_SYSTEM, "bundle");
    char size[24];
    uint64_t seq = 0;
    int r = dems_job_ledger_start(b->ctx, b->err, b->errlen);
    if (r < 0 || it == NULL) {
        dems_ledger_item_free(it);
        return r < 0 ? r : DEMS_ENOMEM;
    }
    snprintf(size, sizeof size, "%llu", (unsigned long long)b->size);
    it->has_sha256 = it->has_size = true;
    dems_hex_decode(hex, 64, it->sha256, 32);
    it->size = b->size;
    /* No artefact and no case member: a bundle's own entry never enters a later bundle. */
    uint64_t case_id = 0, bundle_id = 0;
    dems_parse_u64(b->case_id_s, strlen(b->case_id_s), INT64_MAX, &case_id);
    dems_parse_u64(b->id_s, strlen(b->id_s), INT64_MAX, &bundle_id);
    it->payload = json_pack("{s:I,s:s,s:I,s:I,s:I,s:s,s:b}", "case_id", (json_int_t)case_id,
                            "case_reference", b->case_ref, "bundle", (json_int_t)bundle_id,
                            "exhibits", (json_int_t)json_array_size(b->exhibits), "checkpoint_size",
                            (json_int_t)b->cp.size, "requested_by", b->requested_by,
                            "include_previews", b->previews);
    it->pre_sql = strdup(done_sql);
    it->pre_nparams = 3;
    /* $4: made_seq, set with the state so no reader sees one without the other */
    it->pre_seq = true;
    it->pre_params[0] = strdup(b->id_s);
    it->pre_params[1] = strdup(hex);
    it->pre_params[2] = strdup(size);
    if (it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL ||
        it->pre_params[1] == NULL || it->pre_params[2] == NULL) {
        dems_ledger_item_free(it);
        return DEMS_ENOMEM;
    }
    r = dems_job_ledger_append(it, &seq);
    if (r < 0)
        return fail(b, r, "cannot record the bundle in the ledger: %s", dems_strerror(r));
    return 0;
}

/* ---- the job ---- */

int dems_job_bundle_check(const json_t *payload, char *err, size_t errlen)
{
    const json_t *v = json_object_get(payload, "bundle");
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        snprintf(err, errlen, "payload field \"bundle\" must be a bundle id (a positive integer)");
        return DEMS_EINVAL;
    }
    return 0;
}

static int gather(struct bj *b, const char *ids)
{
    size_t nwanted = 1;
    for (const char *p = ids; *p != '\0'; p++)
        nwanted += *p == ',';
    int r = load_exhibits(b, ids, nwanted);
    if (r == 0)
        r = load_files(b);
    if (r == 0) {
        char total[24];
        snprintf(total, sizeof total, "%llu", (unsigned long long)b->total);
        const char *p[] = {b->id_s, total};
        PQclear(query(b, "bytes_total",
                      "UPDATE bundles SET bytes_total = $2::bigint WHERE id = $1::bigint", 2, p));
    }
    if (r == 0)
        r = load_checkpoint(b);
    if (r == 0)
        r = load_entries(b, "the custody entries", RELEVANT("$2", "$3"), true, &b->custody,
                         &b->ncustody);
    if (r == 0)
        r = load_entries(b, "the key rotations", "type = 'KEY_ROTATED'", false, &b->keys,
                         &b->nkeys);
    if (r == 0)
        r = load_key_and_time(b);
    return r;
}

static int make(struct bj *b, char hex[static 65])
{
    char generator[64];
    snprintf(generator, sizeof generator, "dems %s", dems_version);
    struct dems_bundle_spec spec = {.case_info = b->case_info,
                                    .exhibits = b->exhibits,
                                    .origin = b->cp.origin,
                                    .first_vkey = b->vkey,
                                    .checkpoint = b->note,
                                    .checkpoint_len = strlen(b->note),
                                    .keys = b->keys,
                                    .nkeys = b->nkeys,
                                    .custody = b->custody,
                                    .ncustody = b->ncustody,
                                    .files = b->files,
                                    .nfiles = b->nfiles,
                                    .time_ms = b->time_ms,
                                    .generator = generator};
    struct dems_bundle_source src = {src_open, src_read, src_close, b};
    int r = open_sink(b);
    if (r == 0)
        r = pipe_start(b);
    if (r == 0)
        r = dems_bundle_write(&spec, &src, sink, b, b->err, b->errlen);
    int pr = pipe_finish(b, r == 0);
    if (r == 0)
        r = pr;
    if (r == 0)
        r = close_sink(b, hex);
    report(b, true);
    return r;
}

static void bj_done(struct bj *b)
{
    dems_blob_out_free(b->out);
    if (b->tmp[0] != '\0')
        unlink(b->tmp); /* a failed bundle leaves nothing (a stored one was renamed away) */
    dems_blob_close(b->in);
    json_decref(b->case_info);
    json_decref(b->exhibits);
    free(b->arts);
    free(b->files);
    free(b->blob);
    free(b->names);
    free_entries(b->custody, b->ncustody);
    free_entries(b->keys, b->nkeys);
    free(b->note);
}

/* The row after an attempt that did not finish: failed for good, or queued for a retry. */
static void mark(struct bj *b, enum dems_job_result out, const struct dems_job *job)
{
    bool final =
        out == DEMS_JOB_FAIL || (out == DEMS_JOB_RETRY && job->attempt >= job->max_attempts);
    const char *p[] = {b->id_s, final ? "failed" : "queued", b->err};
    PQclear(query(b, "the failure",
                  "UPDATE bundles SET state = $2, error = left($3, 2000),"
                  " finished_at = CASE WHEN $2 = 'failed' THEN now() END"
                  " WHERE id = $1::bigint AND state <> 'done'",
                  3, p));
}

enum dems_job_result dems_job_bundle(const struct dems_job *job, struct dems_job_ctx *ctx,
                                     char *err, size_t errlen)
{
    struct bj b = {.ctx = ctx, .err = err, .errlen = errlen};
    char state[16], *ids = NULL, hex[65];
    if (dems_job_bundle_check(job->payload, err, errlen) < 0)
        return DEMS_JOB_FAIL;
    snprintf(b.id_s, sizeof b.id_s, "%lld",
             (long long)json_integer_value(json_object_get(job->payload, "bundle")));
    int r = load_bundle(&b, &ids, state);
    enum dems_job_result out = DEMS_JOB_RETRY;
    if (r == DEMS_ENOTFOUND) {
        out = DEMS_JOB_FAIL;
        goto done;
    }
    if (r == 0 && strcmp(state, "done") == 0) {
        free(ids);
        bj_done(&b);
        return DEMS_JOB_OK; /* made by an earlier run */
    }
    char job_s[24];
    snprintf(job_s, sizeof job_s, "%lld", (long long)job->id);
    const char *p[] = {b.id_s, job_s};
    PQclear(r == 0 ? query(&b, "start",
                           "UPDATE bundles SET state = 'running', started_at = now(), error = NULL,"
                           " bytes_done = 0, job_id = $2::bigint WHERE id = $1::bigint",
                           2, p)
                   : NULL);
    if (r == 0)
        r = gather(&b, ids);
    if (r == 0)
        r = make(&b, hex);
    if (r == 0)
        r = record(&b, hex);
    if (r == 0) {
        out = DEMS_JOB_OK;
    } else if (r == DEMS_EUNAVAIL && dems_job_stopping(ctx)) {
        snprintf(err, errlen, "the worker stopped while writing the bundle");
        out = DEMS_JOB_RELEASE;
    } else if (r == DEMS_ENOTFOUND || r == DEMS_EINVAL || r == DEMS_ECRYPTO) {
        out = DEMS_JOB_FAIL; /* the same data will fail the same way */
    }
    if (r < 0 && err[0] == '\0')
        snprintf(err, errlen, "%s", dems_strerror(r));
done:
    if (out != DEMS_JOB_OK)
        mark(&b, out, job);
    free(ids);
    bj_done(&b);
    return out;
}
