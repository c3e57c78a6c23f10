/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading a stored ZIP archive with the sandboxed reader (unpack_int.h;
 * docs/media.md, "Unpacking archives"): the archive is decrypted into a
 * private work directory (the ZIP reader needs a seekable file: only the
 * central directory at its end says which members are symlinks), then
 * `demsd unpack-sandbox` (server/cli/media.c) reads it with libarchive in
 * the media sandbox (common/media/unpack.c) and writes the members to a
 * pipe as frames (include/dems/unpack.h), its summary or error on another.
 * Here each member's frames are checked again (order, name, sizes, the
 * bounds) as they arrive, and its bytes are hashed and sealed into a blob
 * file in the work directory (dems_blob_out).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#include "dems/config.h"
#include "dems/err.h"
#include "dems/media.h"
#include "dems/sniff.h"
#include "dems/str.h"
#include "dems/unpack.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"

#include "unpack_int.h"

/* Largest summary accepted from the runner. */
#define ANSWER_MAX (64u << 10)

/* ---- the work directory ---- */

void unpack_member_path(const struct unpack_run *u, uint32_t index, char out[static PATH_MAX + 32])
{
    snprintf(out, PATH_MAX + 32, "%s/m%u.blob", u->dir, (unsigned)index);
}

/* Removes the work directory and every file in it. */
static void work_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    rmdir(dir);
}

/* Decrypts the archive into u->archive (0600). */
static int decrypt_archive(struct unpack_run *u)
{
    struct dems_blob *b = NULL;
    int r = dems_blob_open(u->ctx->cfg->data_dir, u->ctx->master_key, u->id, &b);
    if (r < 0)
        return r;
    int fd = open(u->archive, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
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
    if (fd >= 0 && close(fd) != 0 && r == 0)
        r = DEMS_EIO;
    return r;
}

/* ---- the frames ---- */

static bool broken(struct unpack_run *u, const char *why)
{
    if (!u->broken)
        snprintf(u->why, sizeof(u->why), "the archive reader broke the frame rules: %s", why);
    u->broken = true;
    return false;
}

/* Not the reader's fault (memory, the disk): the job is tried again. */
static bool local_fail(struct unpack_run *u, const char *why)
{
    if (!u->broken)
        snprintf(u->why, sizeof(u->why), "%s", why);
    u->broken = u->local = true;
    return false;
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool push(struct unpack_run *u, struct unpack_member *m)
{
    if (u->n == u->cap) {
        size_t cap = u->cap == 0 ? 64 : u->cap * 2;
        struct unpack_member *nm = realloc(u->members, cap * sizeof(*nm));
        if (nm == NULL) {
            free(m->path);
            free(m->detail);
            return local_fail(u, "out of memory");
        }
        u->members = nm;
        u->cap = cap;
    }
    u->members[u->n++] = *m;
    return true;
}

/* A member's place: each index above the last, at most max_members entries. */
static bool next_index(struct unpack_run *u, uint32_t index)
{
    if ((u->seen_any && index <= u->last_index) || index >= u->lim.max_members)
        return broken(u, "member index out of order or out of bounds");
    u->seen_any = true;
    u->last_index = index;
    return true;
}

/* "reason\0detail": the reason (one of reasons) and the detail made printable. */
static bool reason_detail(struct unpack_run *u, const uint8_t *p, size_t len,
                          struct unpack_member *m, size_t *ret_used)
{
    const uint8_t *nul = memchr(p, 0, len);
    if (nul == NULL)
        return broken(u, "a reason without its end");
    m->skipped = dems_unpack_reason_parse((const char *)p, (size_t)(nul - p));
    if (m->skipped == 0)
        return broken(u, "an unknown reason");
    const uint8_t *d = nul + 1, *end = memchr(d, 0, len - (size_t)(d - p));
    size_t dlen = end != NULL ? (size_t)(end - d) : len - (size_t)(d - p);
    char shown[DEMS_UNPACK_DETAIL_MAX + 1];
    dems_unpack_detail_display(d, dlen, shown);
    m->detail = strdup(shown);
    *ret_used = (size_t)(d - p) + dlen + (end != NULL ? 1 : 0);
    return m->detail != NULL || local_fail(u, "out of memory");
}

static bool on_skip(struct unpack_run *u, const uint8_t *p, size_t len)
{
    struct unpack_member m = {.index = (uint32_t)get_le(p, 4)};
    size_t used = 0;
    if (!next_index(u, m.index) || !reason_detail(u, p + 4, len - 4, &m, &used))
        return false;
    char shown[DEMS_UNPACK_DISPLAY_MAX + 1];
    dems_unpack_name_display(p + 4 + used, len - 4 - used, shown);
    m.path = strdup(shown);
    if (m.path == NULL) {
        free(m.detail);
        return local_fail(u, "out of memory");
    }
    return push(u, &m);
}

static bool on_begin(struct unpack_run *u, const uint8_t *p, size_t len)
{
    uint32_t index = (uint32_t)get_le(p, 4);
    const char *name = (const char *)p + 4;
    if (!next_index(u, index))
        return false;
    if (dems_unpack_name_check(name, len - 4) != DEMS_UNPACK_NAME_OK)
        return broken(u, "an unsafe member name");
    u->cur = (struct unpack_member){.index = index, .path = strndup(name, len - 4)};
    u->head_len = 0;
    char path[PATH_MAX + 32];
    unpack_member_path(u, index, path);
    if (u->cur.path == NULL || dems_blob_out_open(path, u->ctx->master_key, &u->out) < 0) {
        free(u->cur.path);
        u->cur.path = NULL;
        u->out = NULL;
        snprintf(u->why, sizeof(u->why), "cannot create the blob of member %u", (unsigned)index);
        u->broken = u->local = true;
        return false;
    }
    return true;
}

static bool on_data(struct unpack_run *u, const uint8_t *p, size_t len)
{
    if (u->cur.size + len > u->lim.max_member_bytes || u->bytes + len > u->budget)
        return broken(u, "more bytes than the bounds allow");
    if (u->head_len < sizeof(u->head)) {
        size_t k = len < sizeof(u->head) - u->head_len ? len : sizeof(u->head) - u->head_len;
        memcpy(u->head + u->head_len, p, k);
        u->head_len += k;
    }
    u->cur.size += len;
    u->bytes += len;
    int r = dems_blob_out_write(u->out, p, len);
    if (r < 0) {
        snprintf(u->why, sizeof(u->why), "cannot store member %u: %s", (unsigned)u->cur.index,
                 dems_strerror(r));
        u->broken = u->local = true;
        return false;
    }
    return true;
}

static bool on_end(struct unpack_run *u, const uint8_t *p)
{
    uint8_t digest[32];
    uint64_t size = 0;
    int r = dems_blob_out_close(u->out, digest, &size);
    dems_blob_out_free(u->out);
    u->out = NULL;
    if (r < 0 || size != u->cur.size) {
        snprintf(u->why, sizeof(u->why), "cannot store member %u: %s", (unsigned)u->cur.index,
                 dems_strerror(r < 0 ? r : DEMS_EIO));
        u->broken = u->local = true;
        return false;
    }
    if (get_le(p, 8) != size)
        return broken(u, "a member's size differs from its bytes");
    dems_hex_encode(digest, 32, u->cur.sha);
    u->cur.what = dems_sniff(u->head, u->head_len);
    bool ok = push(u, &u->cur);
    u->cur = (struct unpack_member){0};
    return ok;
}

static bool on_abandon(struct unpack_run *u, const uint8_t *p, size_t len)
{
    dems_blob_out_free(u->out);
    u->out = NULL;
    char path[PATH_MAX + 32];
    unpack_member_path(u, u->cur.index, path);
    unlink(path);
    size_t used;
    struct unpack_member m = {.index = u->cur.index, .path = u->cur.path};
    u->cur = (struct unpack_member){0};
    if (!reason_detail(u, p, len, &m, &used)) {
        free(m.path);
        return false;
    }
    m.size = 0;
    return push(u, &m);
}

/* Handles the complete frame in u->frame. */
static bool on_frame(struct unpack_run *u)
{
    const uint8_t *p = u->frame + DEMS_UNPACK_FRAME_HEAD;
    bool open = u->out != NULL;
    switch (u->type) {
    case DEMS_UNPACK_BEGIN:
        return open ? broken(u, "a member begins inside another") : on_begin(u, p, u->len);
    case DEMS_UNPACK_SKIP:
        return open ? broken(u, "a skip inside a member") : on_skip(u, p, u->len);
    case DEMS_UNPACK_DATA:
        return open ? on_data(u, p, u->len) : broken(u, "data outside a member");
    case DEMS_UNPACK_END:
        return open ? on_end(u, p) : broken(u, "an end outside a member");
    case DEMS_UNPACK_ABANDON:
        return open ? on_abandon(u, p, u->len) : broken(u, "an abandon outside a member");
    }
    return broken(u, "an unknown frame");
}

/*
 * Reads what is there on the frame pipe: exactly what the current frame
 * still needs, so a frame is whole in u->frame when handled. Returns 1 to
 * go on, 0 at the end of the pipe, -1 when a frame broke the rules.
 */
static int read_frames(struct unpack_run *u, int fd)
{
    for (;;) {
        size_t need = u->have < DEMS_UNPACK_FRAME_HEAD ? DEMS_UNPACK_FRAME_HEAD
                                                       : DEMS_UNPACK_FRAME_HEAD + u->len;
        ssize_t n = read(fd, u->frame + u->have, need - u->have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        if (n <= 0) {
            /* A member cut short is the reader's failure, unless it says it succeeded. */
            u->cut = u->have != 0 || u->out != NULL;
            return 0;
        }
        u->have += (size_t)n;
        if (u->have == DEMS_UNPACK_FRAME_HEAD &&
            dems_unpack_frame_parse(u->frame, &u->type, &u->len) < 0)
            return broken(u, "a malformed frame head"), -1;
        if (u->have == DEMS_UNPACK_FRAME_HEAD + u->len && u->have > DEMS_UNPACK_FRAME_HEAD) {
            u->have = 0;
            if (!on_frame(u))
                return -1;
        }
    }
}

/* ---- the reader, in `demsd unpack-sandbox` ---- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts the runner: the archive on fd 3, the frames on fd 4, the summary on stdout. */
static pid_t spawn_reader(const struct unpack_run *u, int in, int frames_w, int answer_w)
{
    const struct dems_config *cfg = u->ctx->cfg;
    char v[7][24];
    const uint64_t nums[] = {u->archive_size,        u->lim.max_members, u->lim.max_member_bytes,
                             u->lim.max_total_bytes, u->lim.max_ratio,   cfg->media_timeout,
                             cfg->media_memory};
    for (size_t i = 0; i < 7; i++)
        snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)nums[i]);
    /* posix_spawn takes char *const[]: writable copies of the words. */
    char w0[] = "demsd", w1[] = "unpack-sandbox", w2[] = "--archive-size", w3[] = "--max-members",
         w4[] = "--max-member-bytes", w5[] = "--max-total-bytes", w6[] = "--max-ratio",
         w7[] = "--timeout", w8[] = "--memory", w9[] = "--sandbox-user";
    char *argv[] = {w0,   w1, w2,   v[0], w3,   v[1], w4,   v[2], w5,
                    v[3], w6, v[4], w7,   v[5], w8,   v[6], w9,   cfg->sandbox_user,
                    NULL};
    if (cfg->sandbox_user[0] == '\0')
        argv[16] = NULL; /* the runner's default (nobody) if it is root */
    int src[3] = {-1, -1, -1};
    const int from[3] = {in, frames_w, answer_w};
    bool ok = true;
    /* Sources above the targets (1, 3, 4), so no dup2 overwrites another's source. */
    for (int i = 0; ok && i < 3; i++)
        ok = (src[i] = fcntl(from[i], F_DUPFD_CLOEXEC, 64)) >= 0;
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
        ok = posix_spawn_file_actions_adddup2(&fa, src[0], 3) == 0 &&
             posix_spawn_file_actions_adddup2(&fa, src[1], 4) == 0 &&
             posix_spawn_file_actions_adddup2(&fa, src[2], 1) == 0;
    pid_t pid = -1;
    if (ok && posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    for (int i = 0; i < 3; i++)
        if (src[i] >= 0)
            close(src[i]);
    return pid;
}

/* Reads the runner's answer pipe: 1 to go on, 0 at its end, -1 when too long. */
static int read_answer(int fd, char *buf, size_t *len)
{
    for (;;) {
        if (*len == ANSWER_MAX)
            return -1;
        ssize_t n = read(fd, buf + *len, ANSWER_MAX - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        if (n <= 0)
            return 0;
        *len += (size_t)n;
    }
}

int unpack_read(struct unpack_run *u, json_t **ret, struct dems_media_error *me, bool *ret_released)
{
    me->code = DEMS_MEDIA_INTERNAL;
    *ret_released = false;
    int in = open(u->archive, O_RDONLY | O_CLOEXEC), fp[2] = {-1, -1}, ap[2] = {-1, -1};
    bool ok = in >= 0 && pipe2(fp, O_CLOEXEC) == 0 && pipe2(ap, O_CLOEXEC) == 0;
    pid_t pid = ok ? spawn_reader(u, in, fp[1], ap[1]) : -1;
    int errnum = errno;
    if (in >= 0)
        close(in);
    if (fp[1] >= 0)
        close(fp[1]);
    if (ap[1] >= 0)
        close(ap[1]);
    char *buf = malloc(ANSWER_MAX + 1);
    if (pid < 0 || buf == NULL) {
        if (fp[0] >= 0)
            close(fp[0]);
        if (ap[0] >= 0)
            close(ap[0]);
        free(buf);
        snprintf(me->message, sizeof(me->message), "cannot start the unpack sandbox: %s",
                 strerror(errnum));
        return DEMS_EINTERNAL;
    }
    fcntl(fp[0], F_SETFL, O_NONBLOCK);
    fcntl(ap[0], F_SETFL, O_NONBLOCK);
    double deadline = mono() + (double)u->ctx->cfg->media_timeout + 60;
    bool frames_open = true, answer_open = true, killed = false;
    size_t len = 0;
    while (frames_open || answer_open) {
        double left = deadline - mono();
        if (left <= 0 || dems_job_stopping(u->ctx) || u->broken) {
            *ret_released = left > 0 && !u->broken;
            kill(-pid, SIGKILL);
            killed = true;
            break;
        }
        struct pollfd q[2] = {{.fd = frames_open ? fp[0] : -1, .events = POLLIN},
                              {.fd = answer_open ? ap[0] : -1, .events = POLLIN}};
        int n = poll(q, 2, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (n <= 0)
            continue;
        if (q[0].revents != 0)
            frames_open = read_frames(u, fp[0]) > 0;
        if (q[1].revents != 0) {
            int r = read_answer(ap[0], buf, &len);
            answer_open = r > 0;
            if (r < 0)
                broken(u, "an answer too long");
        }
    }
    close(fp[0]);
    close(ap[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    json_t *ans = !killed ? (buf[len] = '\0', json_loads(buf, 0, NULL)) : NULL;
    free(buf);
    json_t *res = json_object_get(ans, "result"), *e = json_object_get(ans, "error");
    int rc = DEMS_EINTERNAL;
    if (json_is_object(res) && u->cut)
        broken(u, "the frames stop mid-way");
    if (json_is_object(res) && !u->broken) {
        *ret = json_incref(res);
        me->code = DEMS_MEDIA_OK;
        rc = 0;
    } else if (json_is_object(e)) {
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *m = json_string_value(json_object_get(e, "message"));
        for (int c = DEMS_MEDIA_INVALID; c <= DEMS_MEDIA_INTERNAL; c++)
            if (code != NULL && strcmp(code, dems_media_code_str((enum dems_media_code)c)) == 0)
                me->code = (enum dems_media_code)c;
        snprintf(me->message, sizeof(me->message), "%s", m != NULL ? m : "(no message)");
        rc = dems_media_code_err(me->code);
    } else {
        snprintf(me->message, sizeof(me->message), "the unpack sandbox runner %s",
                 killed                ? "was stopped"
                 : WIFSIGNALED(status) ? "was killed by a signal"
                                       : "gave no answer");
    }
    json_decref(ans);
    return rc;
}

/* ---- opening and closing ---- */

int unpack_open(struct unpack_run *u, const struct dems_job_ctx *ctx, const char *id,
                uint64_t archive_size, const char *tag, char *err, size_t errlen)
{
    const struct dems_config *cfg = ctx->cfg;
    *u = (struct unpack_run){.ctx = ctx,
                             .id = id,
                             .archive_size = archive_size,
                             .lim = {.max_members = cfg->unpack_max_members,
                                     .max_member_bytes = cfg->unpack_max_member_bytes,
                                     .max_total_bytes = cfg->unpack_max_total_bytes,
                                     .max_ratio = cfg->unpack_max_ratio,
                                     .archive_size = archive_size}};
    if (__builtin_mul_overflow(archive_size, u->lim.max_ratio, &u->budget))
        u->budget = UINT64_MAX;
    u->budget = u->budget < u->lim.max_total_bytes ? u->budget : u->lim.max_total_bytes;
    u->frame = malloc(DEMS_UNPACK_FRAME_HEAD + DEMS_UNPACK_FRAME_MAX);
    if (u->frame == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    snprintf(u->dir, sizeof(u->dir), "%s/work", cfg->data_dir);
    mkdir(u->dir, 0700);
    snprintf(u->dir, sizeof(u->dir), "%s/work/%s-%s", cfg->data_dir, tag, id);
    snprintf(u->archive, sizeof(u->archive), "%s/archive.zip", u->dir);
    work_remove(u->dir); /* what a crashed earlier attempt left */
    if (mkdir(u->dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", u->dir, strerror(errno));
        u->dir[0] = '\0';
        return DEMS_EIO;
    }
    int r = decrypt_archive(u);
    if (r < 0)
        snprintf(err, errlen, "cannot read evidence %s: %s", id, dems_strerror(r));
    return r;
}

void unpack_close(struct unpack_run *u)
{
    if (u->out != NULL)
        dems_blob_out_free(u->out);
    free(u->cur.path);
    for (size_t i = 0; i < u->n; i++) {
        free(u->members[i].path);
        free(u->members[i].detail);
    }
    free(u->members);
    free(u->frame);
    if (u->dir[0] != '\0')
        work_remove(u->dir);
    *u = (struct unpack_run){0};
}
