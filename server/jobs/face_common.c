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
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "dems/version.h"
#include "demsd/blobs.h"

#include "face_int.h"

extern char **environ;

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
    json_t *s = json_object_get(payload, "subject"), *q = json_object_get(payload, "search");
    json_t *v = s != NULL ? s : q;
    if ((s != NULL) == (q != NULL) || !json_is_integer(v) || json_integer_value(v) <= 0) {
        snprintf(err, errlen, "the payload must be {\"subject\": id} or {\"search\": id}");
        return DEMS_EINVAL;
    }
    return 0;
}

/* ---- frames ---- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
    int in = open(fr->input, O_RDONLY | O_CLOEXEC);
    char sfps[32], side[24], pix[24], tot[24], dur[24], tmo[24], mem[24];
    snprintf(sfps, sizeof(sfps), "%.6g", fps > 0 ? fps : 1.0);
    snprintf(side, sizeof(side), "%u", fr->max_side);
    snprintf(pix, sizeof(pix), "%llu", (unsigned long long)cfg->media_max_pixels);
    snprintf(tot, sizeof(tot), "%llu", (unsigned long long)cfg->media_max_total_pixels);
    snprintf(dur, sizeof(dur), "%llu", (unsigned long long)cfg->media_max_duration);
    snprintf(tmo, sizeof(tmo), "%llu", (unsigned long long)cfg->media_timeout);
    snprintf(mem, sizeof(mem), "%llu", (unsigned long long)cfg->media_memory);
    char w0[] = "demsd", w1[] = "media-frames", w2[] = "--fps", w3[] = "--max-side",
         w4[] = "--max-pixels", w5[] = "--max-total-pixels", w6[] = "--max-duration",
         w7[] = "--timeout", w8[] = "--memory", w9[] = "--sandbox-user";
    char *argv[] = {w0, w1,  w2, sfps, w3, side, w4, pix, w5,  tot, w6,
                    dur, w7, tmo, w8,  mem,  w9, cfg->sandbox_user, NULL};
    if (cfg->sandbox_user[0] == '\0')
        argv[16] = NULL;
    int fpipe[2] = {-1, -1}, apipe[2] = {-1, -1}, src_in = -1, src_fr = -1;
    bool ok = in >= 0 && pipe2(fpipe, O_CLOEXEC) == 0 && pipe2(apipe, O_CLOEXEC) == 0;
    /* Sources above the targets (3, 4), so no dup2 overwrites another's source. */
    if (ok)
        ok = (src_in = fcntl(in, F_DUPFD_CLOEXEC, 64)) >= 0 &&
             (src_fr = fcntl(fpipe[1], F_DUPFD_CLOEXEC, 64)) >= 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    sigset_t none, deflt;
    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGCHLD);
    sigaddset(&deflt, SIGPIPE);
    sigaddset(&deflt, SIGTERM);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    if (ok)
        ok = posix_spawn_file_actions_adddup2(&fa, src_in, 3) == 0 &&
             posix_spawn_file_actions_adddup2(&fa, src_fr, 4) == 0 &&
             posix_spawn_file_actions_adddup2(&fa, apipe[1], 1) == 0;
    int sr = ok ? posix_spawn(&fr->pid, "/proc/self/exe", &fa, &attr, argv, environ) : errno;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    int fds[] = {in, src_in, src_fr, fpipe[1], apipe[1]};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    fr->frames_fd = fpipe[0];
    fr->answer_fd = apipe[0];
    if (!ok || sr != 0) {
        snprintf(err, errlen, "cannot start the media sandbox: %s", strerror(sr != 0 ? sr : errno));
        fr->pid = -1;
        struct dems_media_error me;
        face_frames_finish(fr, NULL, &me);
        return DEMS_EINTERNAL;
    }
    fr->deadline = mono() + (double)cfg->media_timeout + 60;
    return 0;
}

int face_frames_next(struct face_frames *fr, const struct dems_job_ctx *ctx, char *err,
                     size_t errlen)
{
    for (;;) {
        double left = fr->deadline - mono();
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

/* Largest answer accepted from the sampler. */
#define ANSWER_MAX (1u << 20)

static enum dems_media_code code_from(const char *name)
{
    for (int c = DEMS_MEDIA_OK; c <= DEMS_MEDIA_INTERNAL; c++) {
        if (name != NULL && strcmp(dems_media_code_str((enum dems_media_code)c), name) == 0)
            return (enum dems_media_code)c;
    }
    return DEMS_MEDIA_INTERNAL;
}

int face_frames_finish(struct face_frames *fr, json_t **ret_result, struct dems_media_error *me)
{
    me->code = DEMS_MEDIA_INTERNAL;
    snprintf(me->message, sizeof(me->message), "the media sandbox gave no answer");
    /* Closing our end first: a child still writing frames gets EPIPE and ends. */
    if (fr->frames_fd >= 0)
        close(fr->frames_fd);
    fr->frames_fd = -1;
    char *buf = NULL;
    size_t len = 0;
    bool killed = false;
    if (fr->answer_fd >= 0 && fr->pid > 0) {
        buf = malloc(ANSWER_MAX + 1);
        while (buf != NULL && len < ANSWER_MAX) {
            double left = fr->deadline - mono();
            if (left <= 0) {
                kill(-fr->pid, SIGKILL);
                killed = true;
                break;
            }
            struct pollfd q = {.fd = fr->answer_fd, .events = POLLIN};
            int n = poll(&q, 1, left > 1 ? 1000 : (int)(left * 1000) + 1);
            if (n <= 0)
                continue;
            ssize_t k = read(fr->answer_fd, buf + len, ANSWER_MAX - len);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                break;
            len += (size_t)k;
        }
    }
    if (fr->answer_fd >= 0)
        close(fr->answer_fd);
    fr->answer_fd = -1;
    int status = 0;
    if (fr->pid > 0) {
        if (len >= ANSWER_MAX)
            kill(-fr->pid, SIGKILL);
        while (waitpid(fr->pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    fr->pid = -1;
    dems_media_frame_done(&fr->frame);
    work_remove(fr);
    json_t *ans = buf != NULL && !killed ? (buf[len] = '\0', json_loads(buf, 0, NULL)) : NULL;
    free(buf);
    json_t *res = json_object_get(ans, "result");
    json_t *e = json_object_get(ans, "error");
    int rc = DEMS_EINTERNAL;
    if (json_is_object(res)) {
        if (ret_result != NULL)
            *ret_result = json_incref(res);
        me->code = DEMS_MEDIA_OK;
        me->message[0] = '\0';
        rc = 0;
    } else if (json_is_object(e)) {
        me->code = code_from(json_string_value(json_object_get(e, "code")));
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(me->message, sizeof(me->message), "%s", m != NULL ? m : "(no message)");
        rc = dems_media_code_err(me->code);
    } else if (killed || WIFSIGNALED(status)) {
        snprintf(me->message, sizeof(me->message), "the media sandbox runner was killed");
    }
    json_decref(ans);
    return rc;
}

void face_image_of(const struct dems_media_frame *f, struct dems_face_image *img)
{
    *img = (struct dems_face_image){.width = (int)f->width,
                                    .height = (int)f->height,
                                    .stride = f->stride,
                                    .rgb = f->rgb};
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
