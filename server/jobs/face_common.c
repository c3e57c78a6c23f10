/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the face jobs (face_int.h): models and per-thread contexts,
 * frames from the sandboxed sampler, descriptors as stored.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "dems/version.h"
#include "demsd/blobs.h"
#include "demsd/ledger.h"

#include "face_int.h"

/* ---- models and contexts ---- */

static pthread_mutex_t models_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dems_face_models *models;
static __thread struct dems_face_ctx *thread_ctx;

struct dems_face_ctx *face_ctx(const struct dems_config *cfg, char *err, size_t errlen)
{
    if (thread_ctx != NULL)
        return thread_ctx;
    pthread_mutex_lock(&models_mu);
    if (models == NULL) {
        char dir[PATH_MAX];
        int r = dems_face_models_find(cfg->face_models[0] != '\0' ? cfg->face_models : NULL,
                                      "/proc/self/exe", dir, sizeof(dir));
        if (r < 0)
            snprintf(err, errlen, "face models: %s", dir);
        else if (dems_face_models_load(dir, &models, err, errlen) < 0)
            models = NULL;
    }
    struct dems_face_models *m = models;
    pthread_mutex_unlock(&models_mu);
    if (m == NULL)
        return NULL;
    /* Kept for the thread's life: ~80 MB of scratch, reused by every job. */
    thread_ctx = dems_face_ctx_new(m);
    if (thread_ctx == NULL)
        snprintf(err, errlen, "out of memory for a face context");
    return thread_ctx;
}

json_t *face_engine_json(void)
{
    json_t *files = json_object();
    const char *file, *sha;
    for (size_t i = 0; files != NULL && dems_face_model_file(i, &file, &sha); i++) {
        if (strstr(file, ".bin") != NULL) /* the weights; manifests are checked too */
            json_object_set_new(files, file, json_string(sha));
    }
    return json_pack("{s:s,s:s,s:o}", "engine", "dems-face", "version", dems_version, "models",
                     files);
}

void face_opts(struct dems_face_opts *o)
{
    dems_face_opts_init(o, DEMS_FACE_DETECTOR_SSD);
}

int dems_job_face_id_check(const json_t *payload, char *err, size_t errlen)
{
    static const char *const keys[] = {"subject", "search", "import"};
    json_t *v = NULL;
    for (size_t i = 0; v == NULL && i < sizeof(keys) / sizeof(keys[0]); i++)
        v = json_object_get(payload, keys[i]);
    if (json_object_size(payload) != 1 || !json_is_integer(v) || json_integer_value(v) <= 0) {
        snprintf(err, errlen,
                 "the payload must be {\"subject\": id}, {\"search\": id} or {\"import\": id}");
        return DEMS_EINVAL;
    }
    return 0;
}

/* ---- frames ---- */

static void work_remove(struct face_frames *fr)
{
    if (fr->input[0] != '\0')
        unlink(fr->input);
    if (fr->work[0] != '\0')
        rmdir(fr->work);
}

static int decrypt_to(const struct dems_job_ctx *ctx, const char *id, const char *path)
{
    struct dems_blob *b = NULL;
    int r = dems_blob_open(ctx->cfg->data_dir, ctx->master_key, id, &b);
    if (r < 0)
        return r;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
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
    if (fd >= 0)
        close(fd);
    return r;
}

int face_frames_start(const struct dems_job_ctx *ctx, const char *id, const char *tag, double fps,
                      struct face_frames *fr, char *err, size_t errlen)
{
    const struct dems_config *cfg = ctx->cfg;
    *fr = (struct face_frames){.pid = -1, .frames_fd = -1, .answer_fd = -1};
    dems_media_frame_init(&fr->frame);
    fr->max_side = (uint32_t)cfg->face_max_side;
    snprintf(fr->work, sizeof(fr->work), "%s/work", cfg->data_dir);
    mkdir(fr->work, 0700);
    snprintf(fr->work, sizeof(fr->work), "%s/work/%s", cfg->data_dir, tag);
    snprintf(fr->input, sizeof(fr->input), "%s/input", fr->work);
    work_remove(fr); /* what a crashed earlier attempt left */
    if (mkdir(fr->work, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", fr->work, strerror(errno));
        fr->work[0] = fr->input[0] = '\0';
        return DEMS_EIO;
    }
    int r = decrypt_to(ctx, id, fr->input);
    if (r < 0) {
        snprintf(err, errlen, "cannot read blob %s: %s", id, dems_strerror(r));
        work_remove(fr);
        return r;
    }
    char sfps[32], side[24], pix[24], tot[24], dur[24];
    snprintf(sfps, sizeof(sfps), "%.6g", fps > 0 ? fps : 1.0);
    snprintf(side, sizeof(side), "%u", fr->max_side);
    snprintf(pix, sizeof(pix), "%llu", (unsigned long long)cfg->media_max_pixels);
    snprintf(tot, sizeof(tot), "%llu", (unsigned long long)cfg->media_max_total_pixels);
    snprintf(dur, sizeof(dur), "%llu", (unsigned long long)cfg->media_max_duration);
    const char *args[] = {
        "--fps",          sfps, "--max-side", side, "--max-pixels", pix, "--max-total-pixels", tot,
        "--max-duration", dur,  NULL};
    int in = open(fr->input, O_RDONLY | O_CLOEXEC);
    int fp[2] = {-1, -1};
    if (in < 0 || pipe2(fp, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot open the input: %s", strerror(errno));
        if (in >= 0)
            close(in);
        work_remove(fr);
        return DEMS_EIO;
    }
    r = dems_media_runner_spawn(cfg, "media-frames", args, (int[]){in, fp[1]}, 2, &fr->pid,
                                &fr->answer_fd, err, errlen);
    close(in);
    close(fp[1]); /* the child's copy is the only writer: its end is our EOF */
    fr->frames_fd = fp[0];
    if (r < 0) {
        fr->pid = -1;
        close(fp[0]);
        fr->frames_fd = -1;
        work_remove(fr);
        return r;
    }
    fr->deadline = dems_media_runner_deadline(cfg);
    return 0;
}

int face_frames_next(struct face_frames *fr, const struct dems_job_ctx *ctx, char *err,
                     size_t errlen)
{
    for (;;) {
        double left = fr->deadline - dems_media_runner_clock();
        if (left <= 0) {
            snprintf(err, errlen, "the media sandbox gave no frame in time");
            return DEMS_ETOOBIG;
        }
        if (dems_job_stopping(ctx)) {
            snprintf(err, errlen, "the worker is stopping");
            return DEMS_EUNAVAIL;
        }
        struct pollfd q = {.fd = fr->frames_fd, .events = POLLIN};
        int n = poll(&q, 1, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (n < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return DEMS_EIO;
        }
        if (n > 0)
            return dems_media_frame_read(fr->frames_fd, &fr->frame, fr->max_side, err, errlen);
    }
}

int face_frames_finish(struct face_frames *fr, const struct dems_job_ctx *ctx, json_t **ret_result,
                       struct dems_media_error *me)
{
    /* Closing our end first: a child still writing frames gets EPIPE and ends. */
    if (fr->frames_fd >= 0)
        close(fr->frames_fd);
    fr->frames_fd = -1;
    int rc = DEMS_EINTERNAL;
    json_t *result = NULL;
    if (fr->pid > 0)
        rc = dems_media_runner_finish(fr->pid, fr->answer_fd, fr->deadline, ctx, &result, me);
    fr->pid = -1;
    fr->answer_fd = -1;
    dems_media_frame_done(&fr->frame);
    work_remove(fr);
    if (rc == 0 && ret_result != NULL)
        *ret_result = result;
    else
        json_decref(result);
    return rc;
}

void face_image_of(const struct dems_media_frame *f, struct dems_face_image *img)
{
    *img = (struct dems_face_image){
        .width = (int)f->width, .height = (int)f->height, .stride = f->stride, .rgb = f->rgb};
}

PGresult *face_query(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        PQclear(res);
        return NULL;
    }
    return res;
}

struct dems_ledger_item *face_item(enum dems_ledger_type type, enum dems_ledger_actor kind,
                                   const char *actor, json_t *payload, const char *sql, int n,
                                   const char *const *params)
{
    struct dems_ledger_item *it = dems_ledger_item_new(type, kind, actor);
    bool ok = it != NULL && payload != NULL && n <= DEMS_LEDGER_PRE_MAX &&
              (it->pre_sql = strdup(sql)) != NULL;
    if (ok) {
        it->payload = payload;
        payload = NULL;
        it->pre_nparams = n;
        for (int i = 0; ok && i < n; i++)
            ok = params[i] == NULL || (it->pre_params[i] = strdup(params[i])) != NULL;
    }
    json_decref(payload);
    if (!ok) {
        dems_ledger_item_free(it);
        return NULL;
    }
    return it;
}

/* ---- descriptors ---- */

void face_vec_text(const float d[static DEMS_FACE_DESCRIPTOR], char out[static 1027])
{
    uint8_t bytes[DEMS_FACE_DESCRIPTOR * 4];
    for (size_t i = 0; i < DEMS_FACE_DESCRIPTOR; i++) {
        uint32_t u;
        memcpy(&u, &d[i], 4);
        bytes[4 * i] = (uint8_t)u;
        bytes[4 * i + 1] = (uint8_t)(u >> 8);
        bytes[4 * i + 2] = (uint8_t)(u >> 16);
        bytes[4 * i + 3] = (uint8_t)(u >> 24);
    }
    out[0] = '\\';
    out[1] = 'x';
    dems_hex_encode(bytes, sizeof(bytes), out + 2);
}

bool face_vec_parse(const char *text, float d[static DEMS_FACE_DESCRIPTOR])
{
    uint8_t bytes[DEMS_FACE_DESCRIPTOR * 4];
    if (text == NULL || strncmp(text, "\\x", 2) != 0 || strlen(text + 2) != 2 * sizeof(bytes) ||
        dems_hex_decode(text + 2, 2 * sizeof(bytes), bytes, sizeof(bytes)) < 0)
        return false;
    for (size_t i = 0; i < DEMS_FACE_DESCRIPTOR; i++) {
        uint32_t u = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
                     (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
        memcpy(&d[i], &u, 4);
        if (!isfinite(d[i]))
            return false;
    }
    return true;
}

double face_score(double distance)
{
    return distance < 1 ? 1 - distance : 0;
}
