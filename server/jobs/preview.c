/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The preview job (queued for every ingested artefact, payload
 * {"evidence": "<sha256>"}): decrypts the original into a private work
 * directory, makes the proxy MP4, poster, thumbnail sprite and WebVTT index
 * with FFmpeg's libraries in a sandboxed child (common/media), stores each
 * output in the encrypted blob store under its own SHA-256, and records them
 * in one ledger transaction: the derivatives rows, the probe on the artefact
 * and a PREVIEW_MADE entry that links the source hash, every derived hash,
 * the FFmpeg library versions and the exact encoding parameters.
 *
 * Idempotent: a preview already recorded ends the job at once, blobs are
 * content-addressed, and the derivatives rows go in with the ledger entry or
 * not at all. Media the decoder refuses (invalid, unsupported, over budget,
 * or a child killed by seccomp) fails for good and the reason is kept on the
 * artefact, which is marked as needing conversion when no decoder could read
 * it (its format, from its first bytes, says what it seems to be); a crash,
 * timeout or resource limit is retried (the machine may have been busy),
 * then the job is dead with its last error.
 *
 * The worker has no event loop: the entry is appended by the process's
 * ledger appender (server/jobs/job_ledger.c), and the slot waits for it to
 * be durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/buf.h"
#include "dems/config.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/media.h"
#include "dems/sniff.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

/* The outputs, in the order of struct dems_media_outputs. */
static const struct output {
    const char *kind;   /* derivatives.kind */
    const char *file;   /* in the work directory */
    const char *result; /* member of the preview result's "outputs" */
    const char *type;   /* Content-Type served */
} outputs[] = {
    {"proxy", "proxy.mp4", "proxy", "video/mp4"},
    {"poster", "poster.jpg", "poster", "image/jpeg"},
    {"sprite", "sprite.jpg", "sprite", "image/jpeg"},
    {"sprite_vtt", "thumbnails.vtt", "index", "text/vtt; charset=utf-8"},
};
#define NOUT (sizeof(outputs) / sizeof(outputs[0]))

/* ---- files ---- */

struct work {
    char dir[PATH_MAX];
    char input[PATH_MAX + 16];
    char path[NOUT][PATH_MAX + 32];
    int in_fd;
    int out_fd[NOUT];
    char sha[NOUT][65];
    uint64_t size[NOUT];
};

static void work_close(struct work *w)
{
    if (w->in_fd >= 0)
        close(w->in_fd);
    w->in_fd = -1;
    for (size_t i = 0; i < NOUT; i++) {
        if (w->out_fd[i] >= 0)
            close(w->out_fd[i]);
        w->out_fd[i] = -1;
    }
}

/* Removes the work directory and everything in it. */
static void work_remove(struct work *w)
{
    work_close(w);
    unlink(w->input);
    for (size_t i = 0; i < NOUT; i++)
        unlink(w->path[i]);
    rmdir(w->dir);
}

/* Decrypts evidence id into w->input (the sandbox reads it from an fd). */
static int decrypt_input(const struct dems_job_ctx *ctx, const char *id, struct work *w)
{
    struct dems_blob *b = NULL;
    int r = dems_blob_open(ctx->cfg->data_dir, ctx->master_key, id, &b);
    if (r < 0)
        return r;
    int fd = open(w->input, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    uint8_t *chunk = malloc(DEMS_BLOB_CHUNK);
    if (fd < 0 || chunk == NULL)
        r = fd < 0 ? DEMS_EIO : DEMS_ENOMEM;
    long n = 0;
    while (r == 0 && (n = dems_blob_read(b, chunk)) > 0)
        r = dems_blob_write_all(fd, chunk, (size_t)n);
    if (r == 0 && n < 0)
        r = (int)n;
    free(chunk);
    dems_blob_close(b);
    if (r == 0 && lseek(fd, 0, SEEK_SET) != 0)
        r = DEMS_EIO;
    if (r < 0 && fd >= 0) {
        close(fd);
        fd = -1;
    }
    w->in_fd = fd;
    return r;
}

/* SHA-256 and size of an output file. */
static int hash_file(const char *path, char hex[static 65], uint64_t *ret_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return DEMS_EIO;
    struct dems_sha256 sha;
    uint8_t *buf = malloc(1 << 16), digest[32];
    int r = buf != NULL && dems_sha256_init(&sha) == 0 ? 0 : DEMS_ENOMEM;
    uint64_t total = 0;
    while (r == 0) {
        ssize_t n = read(fd, buf, 1 << 16);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = DEMS_EIO;
        if (n <= 0)
            break;
        dems_sha256_update(&sha, buf, (size_t)n);
        total += (uint64_t)n;
    }
    if (r == 0)
        r = dems_sha256_final(&sha, digest);
    if (buf != NULL)
        dems_sha256_done(&sha);
    free(buf);
    close(fd);
    if (r == 0) {
        dems_hex_encode(digest, 32, hex);
        *ret_size = total;
    }
    return r;
}

/* ---- the database ---- */

/* Runs one statement; returns its tuples (caller PQclears) or NULL. */
static PGresult *query(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        PQclear(res);
        return NULL;
    }
    return res;
}

/*
 * Keeps a permanent failure on the artefact, for GET /v1/evidence/{id}.
 * When no decoder could read the data (invalid, unsupported) of a file that
 * is not an archive, it needs conversion: a proprietary CCTV format, say,
 * which the format its first bytes show (artefacts.format) names.
 */
static void record_failure(PGconn *db, const char *id, const struct dems_media_error *me,
                           const struct dems_sniffed *what)
{
    json_t *m = json_pack("{s:{s:s,s:s}}", "preview_error", "code", dems_media_code_str(me->code),
                          "message", me->message);
    bool undecodable = me->code == DEMS_MEDIA_INVALID || me->code == DEMS_MEDIA_UNSUPPORTED;
    char *text = m != NULL ? json_dumps(m, JSON_COMPACT) : NULL;
    const char *params[] = {id, text,
                            undecodable && what->kind != DEMS_SNIFF_ARCHIVE ? "true" : "false"};
    if (text != NULL)
        PQclear(query(db,
                      "UPDATE artefacts SET media = $2::jsonb, needs_conversion = $3::boolean"
                      " WHERE id = $1",
                      3, params));
    free(text);
    json_decref(m);
}

/* What the input is from its first bytes; kept on the artefact when it has no format yet. */
static struct dems_sniffed sniff_input(PGconn *db, const char *id, int fd)
{
    uint8_t head[DEMS_SNIFF_HEAD];
    ssize_t n = pread(fd, head, sizeof(head), 0);
    struct dems_sniffed what = dems_sniff(head, n > 0 ? (size_t)n : 0);
    const char *params[] = {id, what.format};
    PQclear(
        query(db, "UPDATE artefacts SET format = $2 WHERE id = $1 AND format IS NULL", 2, params));
    return what;
}

/* ---- the job ---- */

/*
 * Runs the preview in `demsd media-sandbox` (server/cli/media.c), started
 * by dems_media_runner_spawn (server/jobs/media_runner.c): a fresh
 * single-threaded process whose sandboxed child forks safely, which a
 * worker's threads would not allow. Input on fd 3, outputs on 4-7, one JSON
 * line back on a pipe. The runner enforces the configured timeout itself;
 * it gets a minute more before its whole process group is killed from here.
 */
static int run_sandbox(const struct dems_job_ctx *ctx, const struct work *w, json_t **ret,
                       struct dems_media_error *me, bool *ret_released)
{
    const struct dems_config *cfg = ctx->cfg;
    char pix[24], tot[24], dur[24];
    snprintf(pix, sizeof(pix), "%llu", (unsigned long long)cfg->media_max_pixels);
    snprintf(tot, sizeof(tot), "%llu", (unsigned long long)cfg->media_max_total_pixels);
    snprintf(dur, sizeof(dur), "%llu", (unsigned long long)cfg->media_max_duration);
    const char *args[] = {
        "--max-pixels", pix, "--max-total-pixels", tot, "--max-duration", dur, NULL};
    int fds[1 + NOUT] = {w->in_fd};
    for (size_t i = 0; i < NOUT; i++)
        fds[1 + i] = w->out_fd[i];
    pid_t pid = -1;
    int answer = -1;
    *ret_released = false;
    me->code = DEMS_MEDIA_INTERNAL;
    if (dems_media_runner_spawn(cfg, "media-sandbox", args, fds, 1 + NOUT, &pid, &answer,
                                me->message, sizeof(me->message)) < 0)
        return DEMS_EINTERNAL;
    int r = dems_media_runner_finish(pid, answer, dems_media_runner_deadline(cfg), ctx, ret, me);
    if (r == DEMS_EUNAVAIL) {
        /* The worker is stopping: the job goes back to the queue. */
        *ret_released = true;
        return DEMS_EINTERNAL;
    }
    return r;
}

/*
 * Ledger entries hold integers only (docs/ledger.md): a real number in the
 * parameters (frame rates, seconds) becomes its decimal text, with 15
 * significant digits, in place.
 */
static void stringify_reals(json_t *j)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
        {
            if (json_is_real(v)) {
                char t[40];
                snprintf(t, sizeof(t), "%.15g", json_real_value(v));
                json_object_set_new(j, k, json_string(t));
            } else {
                stringify_reals(v);
            }
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            if (json_is_real(v)) {
                char t[40];
                snprintf(t, sizeof(t), "%.15g", json_real_value(v));
                json_array_set_new(j, i, json_string(t));
            } else {
                stringify_reals(v);
            }
        }
    }
}

/*
 * The ledger entry's payload: the source, every derived file's hash and
 * size, the encoding parameters and the library versions. The full result
 * (probe included) goes on the artefact and the derivatives rows.
 */
static json_t *entry_payload(const char *id, const struct work *w, const json_t *result)
{
    json_t *outs = json_object();
    for (size_t i = 0; outs != NULL && i < NOUT; i++) {
        if (w->sha[i][0] != '\0')
            json_object_set_new(
                outs, outputs[i].kind,
                json_pack("{s:s,s:I}", "sha256", w->sha[i], "size", (json_int_t)w->size[i]));
    }
    json_t *versions = json_deep_copy(json_object_get(result, "ffmpeg"));
    if (versions != NULL)
        json_object_del(versions, "configuration"); /* long; kept with the derivatives */
    json_t *params = json_deep_copy(json_object_get(result, "params"));
    json_t *p = json_pack("{s:s,s:o,s:o,s:o}", "source", id, "outputs", outs, "params", params,
                          "ffmpeg", versions);
    stringify_reals(p);
    /*
     * An entry's payload is at most DEMS_LEDGER_MAX_PAYLOAD canonical bytes.
     * Should the parameters not fit, the entry carries their SHA-256 (of
     * their canonical JSON) and the derivatives rows carry them in full.
     */
    struct dems_buf b;
    dems_buf_init(&b, 1 << 20);
    if (p != NULL && dems_jcs_encode(p, &b) == 0 && b.len > DEMS_LEDGER_MAX_PAYLOAD - 256) {
        dems_buf_reset(&b);
        uint8_t digest[32];
        char hex[65];
        struct dems_sha256 h;
        int hr = dems_jcs_encode(json_object_get(p, "params"), &b) == 0 && dems_sha256_init(&h) == 0
                     ? 0
                     : -1;
        if (hr == 0) {
            dems_sha256_update(&h, b.data, b.len);
            hr = dems_sha256_final(&h, digest);
            dems_sha256_done(&h);
        }
        if (hr == 0) {
            dems_hex_encode(digest, 32, hex);
            json_object_del(p, "params");
            json_object_set_new(p, "params_sha256", json_string(hex));
        }
    }
    dems_buf_done(&b);
    return p;
}

/* The statement the ledger runs in the entry's transaction ($1 id, $2 rows, $3 media). */
static const char record_sql[] =
    "WITH d AS (INSERT INTO derivatives (artefact, kind, blob, size, content_type, params)"
    " SELECT $1, r->>'kind', r->>'blob', (r->>'size')::bigint, r->>'type', r->'params'"
    " FROM jsonb_array_elements($2::jsonb) AS r RETURNING 1)"
    " UPDATE artefacts SET media = $3::jsonb WHERE id = $1 AND (SELECT count(*) FROM d) > 0";

enum dems_job_result dems_job_preview(const struct dems_job *job, struct dems_job_ctx *ctx,
                                      char *err, size_t errlen)
{
    if (dems_job_verify_blob_check(job->payload, err, errlen) < 0)
        return DEMS_JOB_FAIL;
    const char *id = json_string_value(json_object_get(job->payload, "evidence"));
    const char *params[] = {id};
    PGresult *res = query(ctx->db,
                          "SELECT (SELECT count(*) FROM derivatives WHERE artefact = $1)"
                          " FROM artefacts WHERE id = $1",
                          1, params);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot look up evidence %s", id);
        return DEMS_JOB_RETRY;
    }
    int rows = PQntuples(res);
    bool made = rows == 1 && strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    PQclear(res);
    if (rows == 0) {
        snprintf(err, errlen, "no evidence with id %s", id);
        return DEMS_JOB_FAIL;
    }
    if (made)
        return DEMS_JOB_OK; /* recorded by an earlier run */
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;

    struct work w = {.in_fd = -1};
    for (size_t i = 0; i < NOUT; i++)
        w.out_fd[i] = -1;
    snprintf(w.dir, sizeof(w.dir), "%s/work", ctx->cfg->data_dir);
    mkdir(w.dir, 0700);
    snprintf(w.dir, sizeof(w.dir), "%s/work/preview-%lld", ctx->cfg->data_dir, (long long)job->id);
    snprintf(w.input, sizeof(w.input), "%s/input", w.dir);
    for (size_t i = 0; i < NOUT; i++)
        snprintf(w.path[i], sizeof(w.path[i]), "%s/%s", w.dir, outputs[i].file);
    work_remove(&w); /* what a crashed earlier attempt left */
    if (mkdir(w.dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", w.dir, strerror(errno));
        return DEMS_JOB_RETRY;
    }
    enum dems_job_result out = DEMS_JOB_RETRY;
    json_t *result = NULL, *rows_json = NULL, *payload = NULL;
    int r = decrypt_input(ctx, id, &w);
    if (r < 0) {
        snprintf(err, errlen, "cannot read evidence %s: %s", id, dems_strerror(r));
        goto done;
    }
    struct dems_sniffed what = sniff_input(ctx->db, id, w.in_fd);
    for (size_t i = 0; i < NOUT; i++) {
        w.out_fd[i] = open(w.path[i], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (w.out_fd[i] < 0) {
            snprintf(err, errlen, "cannot create %s: %s", w.path[i], strerror(errno));
            goto done;
        }
    }
    struct dems_media_error me = {.code = DEMS_MEDIA_OK};
    bool released = false;
    r = run_sandbox(ctx, &w, &result, &me, &released);
    work_close(&w);
    if (released) {
        snprintf(err, errlen, "the worker stopped during the preview");
        out = DEMS_JOB_RELEASE;
        goto done;
    }
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", dems_media_code_str(me.code), me.message);
        switch (me.code) {
        case DEMS_MEDIA_INVALID:
        case DEMS_MEDIA_UNSUPPORTED:
        case DEMS_MEDIA_TOO_LARGE:
        case DEMS_MEDIA_SECCOMP:
            record_failure(ctx->db, id, &me, &what);
            out = DEMS_JOB_FAIL; /* the same bytes will fail the same way */
            break;
        default:
            out = DEMS_JOB_RETRY;
            break;
        }
        goto done;
    }
    /* Store every output that was made; rows for the ledger's statement. */
    rows_json = json_array();
    const json_t *made_outs = json_object_get(result, "outputs");
    for (size_t i = 0; rows_json != NULL && i < NOUT; i++) {
        const json_t *o = json_object_get(made_outs, outputs[i].result);
        struct stat st;
        if (!json_is_object(o) || stat(w.path[i], &st) != 0 || st.st_size == 0)
            continue; /* not made (audio-only input has no pictures) */
        r = hash_file(w.path[i], w.sha[i], &w.size[i]);
        if (r == 0)
            r = dems_blob_put(ctx->cfg->data_dir, ctx->master_key, w.sha[i], w.path[i]);
        if (r < 0) {
            snprintf(err, errlen, "cannot store the %s: %s", outputs[i].kind, dems_strerror(r));
            goto done;
        }
        json_t *p =
            json_pack("{s:O,s:O,s:O}", "output", o, "encoding", json_object_get(result, "params"),
                      "ffmpeg", json_object_get(result, "ffmpeg"));
        json_array_append_new(rows_json, json_pack("{s:s,s:s,s:s,s:I,s:o}", "kind", outputs[i].kind,
                                                   "blob", w.sha[i], "type", outputs[i].type,
                                                   "size", (json_int_t)w.size[i], "params", p));
    }
    if (rows_json == NULL || json_array_size(rows_json) == 0) {
        snprintf(err, errlen, "the preview produced no output");
        out = DEMS_JOB_FAIL;
        goto done;
    }
    payload = entry_payload(id, &w, result);
    json_t *media = json_pack("{s:O,s:O,s:O}", "probe", json_object_get(result, "probe"), "outputs",
                              made_outs, "limits", json_object_get(result, "limits"));
    char *rows_text = json_dumps(rows_json, JSON_COMPACT);
    char *media_text = media != NULL ? json_dumps(media, JSON_COMPACT) : NULL;
    json_decref(media);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_PREVIEW_MADE, DEMS_LEDGER_ACTOR_SYSTEM, "preview");
    if (it == NULL || payload == NULL || rows_text == NULL || media_text == NULL) {
        dems_ledger_item_free(it);
        free(rows_text);
        free(media_text);
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    it->has_artefact = it->has_sha256 = it->has_size = true;
    dems_hex_decode(id, 64, it->artefact, 32);
    /* The entry's own hash field names the main derivative (the proxy). */
    dems_hex_decode(w.sha[0][0] != '\0' ? w.sha[0] : w.sha[1], 64, it->sha256, 32);
    it->size = w.sha[0][0] != '\0' ? w.size[0] : w.size[1];
    it->payload = payload;
    payload = NULL;
    it->pre_sql = strdup(record_sql);
    it->pre_nparams = 3;
    it->pre_params[0] = strdup(id);
    it->pre_params[1] = rows_text;
    it->pre_params[2] = media_text;
    uint64_t seq = 0;
    if (it->pre_sql == NULL || it->pre_params[0] == NULL) {
        dems_ledger_item_free(it);
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    r = dems_job_ledger_append(it, &seq);
    if (r == DEMS_ECONFLICT) {
        out = DEMS_JOB_OK; /* another run recorded this preview first */
    } else if (r < 0) {
        snprintf(err, errlen, "cannot record the preview in the ledger: %s", dems_strerror(r));
    } else {
        out = DEMS_JOB_OK;
    }
done:
    json_decref(result);
    json_decref(rows_json);
    json_decref(payload);
    work_remove(&w);
    return out;
}
