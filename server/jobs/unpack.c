/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The unpack job (queued when a public submission's file that sniffs as a
 * ZIP archive is recorded; payload {"evidence": "<sha256>", "submission":
 * <id>}, dedupe key unpack-<sha256>): the archive stays the original; each
 * member it may keep becomes an artefact of its own, derived from it.
 *
 * 1. The archive is decrypted into a private work directory
 *    (DATA/work/unpack-<job>/, mode 0700, removed afterwards): the ZIP
 *    reader needs a seekable file, because only the central directory at
 *    its end says which members are symlinks.
 * 2. `demsd unpack-sandbox` (server/cli/media.c: a fresh single-threaded
 *    process, as for previews) reads it with libarchive in the media
 *    sandbox (common/media/unpack.c) and writes the members to a pipe as
 *    frames (include/dems/unpack.h), its summary or error on another.
 * 3. Here each member's frames are checked again (order, name, sizes, the
 *    bounds) as they arrive, and its bytes are hashed and sealed into a blob
 *    file in the work directory (dems_blob_out).
 * 4. Only when the whole archive was read within its bounds is anything
 *    recorded: each member's blob moves into the store under its SHA-256,
 *    then one INGESTED entry per member (actor system:unpack, payload
 *    {"derived_from", "path", "member", "submission", "submission_link"})
 *    whose statement inserts its artefact (unless that content is stored
 *    already), its archive_members row and its preview job; then the
 *    members left out and the outcome (archive_unpacks). A refused or
 *    unreadable archive records only the outcome, and the job is dead.
 *
 * Idempotent: the outcome row ends a later run at once; a member recorded
 * by an earlier run is refused by its archive_members key (the entry is not
 * appended twice); blobs are content-addressed.
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
#include "dems/ledger.h"
#include "dems/media.h"
#include "dems/sniff.h"
#include "dems/str.h"
#include "dems/unpack.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

/* Largest summary accepted from the runner. */
#define ANSWER_MAX (64u << 10)

/* One member as the frames gave it. */
struct member {
    uint32_t index;
    char *path;                      /* extracted: its checked name; skipped: printable */
    enum dems_unpack_reason skipped; /* 0: extracted */
    char *detail;                    /* skipped: printable */
    char sha[65];
    uint64_t size;
    struct dems_sniffed what; /* extracted: its first bytes */
};

struct unpack {
    const struct dems_job_ctx *ctx;
    const char *id; /* the archive */
    char dir[PATH_MAX - 64];
    char archive[PATH_MAX];
    uint64_t archive_size;
    int64_t submission, link;
    struct dems_unpack_limits lim;
    uint64_t budget; /* bytes the members may take: min(total, ratio x size) */
    /* The frames. */
    uint8_t *frame; /* DEMS_UNPACK_FRAME_HEAD + DEMS_UNPACK_FRAME_MAX */
    size_t have;
    enum dems_unpack_frame type;
    uint32_t len;
    bool broken; /* a frame broke the rules: the reader is not to be trusted */
    bool local;  /* or storing a member failed here (a full disk): try again later */
    bool cut;    /* the frames ended inside a frame or a member */
    char why[256];
    /* The member being received. */
    struct dems_blob_out *out;
    struct member cur;
    uint8_t head[DEMS_SNIFF_HEAD];
    size_t head_len;
    /* Every member so far. */
    struct member *members;
    size_t n, cap;
    uint64_t bytes; /* received, all members */
    bool seen_any;
    uint32_t last_index;
};

/* ---- the work directory ---- */

static void blob_path(const struct unpack *u, uint32_t index, char out[static PATH_MAX + 32])
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
static int decrypt_archive(struct unpack *u)
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

static bool broken(struct unpack *u, const char *why)
{
    if (!u->broken)
        snprintf(u->why, sizeof(u->why), "the archive reader broke the frame rules: %s", why);
    u->broken = true;
    return false;
}

/* Not the reader's fault (memory, the disk): the job is tried again. */
static bool local_fail(struct unpack *u, const char *why)
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

static bool push(struct unpack *u, struct member *m)
{
    if (u->n == u->cap) {
        size_t cap = u->cap == 0 ? 64 : u->cap * 2;
        struct member *nm = realloc(u->members, cap * sizeof(*nm));
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
static bool next_index(struct unpack *u, uint32_t index)
{
    if ((u->seen_any && index <= u->last_index) || index >= u->lim.max_members)
        return broken(u, "member index out of order or out of bounds");
    u->seen_any = true;
    u->last_index = index;
    return true;
}

/* "reason\0detail": the reason (one of reasons) and the detail made printable. */
static bool reason_detail(struct unpack *u, const uint8_t *p, size_t len, struct member *m,
                          size_t *ret_used)
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

static bool on_skip(struct unpack *u, const uint8_t *p, size_t len)
{
    struct member m = {.index = (uint32_t)get_le(p, 4)};
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

static bool on_begin(struct unpack *u, const uint8_t *p, size_t len)
{
    uint32_t index = (uint32_t)get_le(p, 4);
    const char *name = (const char *)p + 4;
    if (!next_index(u, index))
        return false;
    if (dems_unpack_name_check(name, len - 4) != DEMS_UNPACK_NAME_OK)
        return broken(u, "an unsafe member name");
    u->cur = (struct member){.index = index, .path = strndup(name, len - 4)};
    u->head_len = 0;
    char path[PATH_MAX + 32];
    blob_path(u, index, path);
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

static bool on_data(struct unpack *u, const uint8_t *p, size_t len)
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

static bool on_end(struct unpack *u, const uint8_t *p)
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
    u->cur = (struct member){0};
    return ok;
}

static bool on_abandon(struct unpack *u, const uint8_t *p, size_t len)
{
    dems_blob_out_free(u->out);
    u->out = NULL;
    char path[PATH_MAX + 32];
    blob_path(u, u->cur.index, path);
    unlink(path);
    size_t used;
    struct member m = {.index = u->cur.index, .path = u->cur.path};
    u->cur = (struct member){0};
    if (!reason_detail(u, p, len, &m, &used)) {
        free(m.path);
        return false;
    }
    m.size = 0;
    return push(u, &m);
}

/* Handles the complete frame in u->frame. */
static bool on_frame(struct unpack *u)
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
static int read_frames(struct unpack *u, int fd)
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
static pid_t spawn_reader(const struct unpack *u, int in, int frames_w, int answer_w)
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

/*
 * Runs the reader and takes its frames as they come: 0 with its summary,
 * or a media error (me) from the runner, or DEMS_EINTERNAL with me filled
 * when it could not run or answer. *ret_released when the worker is
 * stopping; u->broken when a frame broke the rules (it was killed then).
 */
static int run_reader(struct unpack *u, json_t **ret, struct dems_media_error *me,
                      bool *ret_released)
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

/* ---- recording ---- */

/* Runs one statement; false when it failed. */
static bool exec_ok(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    PQclear(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/*
 * A member's statement, run with its INGESTED entry ($1 archive, $2 index,
 * $3 the member's SHA-256, $4 size, $5 type, $6 file name, $7 path, $8
 * format, $9 kind, $10 whether to queue its preview): the artefact (unless
 * that content is stored already), the archive_members row (its key refuses
 * a member recorded before: the entry is then not appended) and the preview.
 */
static const char member_sql[] =
    "WITH a AS (INSERT INTO artefacts (id, size, content_type, filename, metadata, upload_id,"
    " uploaded_by_submission, format) SELECT $3::text, $4::bigint, $5::text, $6::text,"
    " jsonb_build_object('filename', $6::text, 'content_type', $5::text, 'archive', $1::text,"
    " 'archive_path', $7::text), ar.upload_id, ar.uploaded_by_submission, $8::text"
    " FROM artefacts ar WHERE ar.id = $1::text ON CONFLICT (id) DO NOTHING),"
    " m AS (INSERT INTO archive_members (archive, idx, path, artefact, size, format, kind)"
    " VALUES ($1::text, $2::integer, $7::text, $3::text, $4::bigint, $8::text, $9::text)"
    " RETURNING 1),"
    " j AS (SELECT dems_enqueue_job('preview', jsonb_build_object('evidence', $3::text),"
    " 'preview-' || $3::text) AS job WHERE $10::boolean)"
    " SELECT (SELECT count(*) FROM m) AS members, (SELECT count(*) FROM j) AS jobs";

/* Media (and what may be media no one recognises) get a preview; programs and documents not. */
static bool wants_preview(enum dems_sniff_kind kind)
{
    return kind == DEMS_SNIFF_VIDEO || kind == DEMS_SNIFF_IMAGE || kind == DEMS_SNIFF_AUDIO ||
           kind == DEMS_SNIFF_UNKNOWN;
}

static json_t *member_payload(const struct unpack *u, const struct member *m)
{
    json_t *p = json_pack("{s:s,s:I}", "derived_from", u->id, "member", (json_int_t)m->index);
    if (p == NULL)
        return NULL;
    if (dems_ledger_payload_set_text(p, "path", m->path, strlen(m->path), 1100) < 0) {
        json_decref(p);
        return NULL;
    }
    if (u->submission > 0) {
        json_object_set_new(p, "submission", json_integer(u->submission));
        json_object_set_new(p, "submission_link", json_integer(u->link));
    }
    return p;
}

/* Moves a member's blob into the store and appends its INGESTED entry. */
static int record_member(struct unpack *u, const struct member *m, char *err, size_t errlen)
{
    char path[PATH_MAX + 32], idx[16], size[24];
    blob_path(u, m->index, path);
    int r = dems_blob_adopt(u->ctx->cfg->data_dir, m->sha, path);
    if (r < 0) {
        snprintf(err, errlen, "cannot store member %s: %s", m->path, dems_strerror(r));
        return r;
    }
    snprintf(idx, sizeof(idx), "%u", (unsigned)m->index);
    snprintf(size, sizeof(size), "%llu", (unsigned long long)m->size);
    const char *slash = strrchr(m->path, '/');
    const char *params[] = {u->id,
                            idx,
                            m->sha,
                            size,
                            m->what.mime_type,
                            slash != NULL ? slash + 1 : m->path,
                            m->path,
                            m->what.format,
                            dems_sniff_kind_name(m->what.kind),
                            wants_preview(m->what.kind) ? "true" : "false"};
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_INGESTED, DEMS_LEDGER_ACTOR_SYSTEM, "unpack");
    bool ok = it != NULL && (it->pre_sql = strdup(member_sql)) != NULL &&
              (it->payload = member_payload(u, m)) != NULL;
    for (int i = 0; ok && i < 10; i++)
        ok = (it->pre_params[i] = strdup(params[i])) != NULL;
    if (!ok) {
        dems_ledger_item_free(it);
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    it->pre_nparams = 10;
    it->has_artefact = it->has_sha256 = it->has_size = true;
    dems_hex_decode(m->sha, 64, it->artefact, 32);
    memcpy(it->sha256, it->artefact, 32);
    it->size = m->size;
    uint64_t seq = 0;
    r = dems_job_ledger_append(it, &seq);
    if (r == DEMS_ECONFLICT)
        return 0; /* recorded by an earlier run */
    if (r < 0)
        snprintf(err, errlen, "cannot record member %s in the ledger: %s", m->path,
                 dems_strerror(r));
    return r;
}

/* The outcome, with the members left out ($2); written once. */
static const char outcome_sql[] =
    "WITH s AS (INSERT INTO archive_members (archive, idx, path, skipped, detail)"
    " SELECT $1, (r->>'index')::integer, r->>'path', r->>'reason', nullif(r->>'detail', '')"
    " FROM jsonb_array_elements($2::jsonb) AS r ON CONFLICT DO NOTHING RETURNING 1)"
    " INSERT INTO archive_unpacks (archive, state, entries, extracted, skipped, bytes, error,"
    " libarchive) SELECT $1, $3, $4::integer, $5::integer, $6::integer, $7::bigint, $8, $9"
    " FROM (SELECT count(*) FROM s) AS done ON CONFLICT (archive) DO NOTHING";

static int record_outcome(struct unpack *u, const char *state, const json_t *summary,
                          const char *error)
{
    json_t *skipped = json_array();
    uint64_t extracted = 0, bytes = 0;
    for (size_t i = 0; skipped != NULL && i < u->n && strcmp(state, "done") == 0; i++) {
        const struct member *m = &u->members[i];
        if (m->skipped == 0) {
            extracted++;
            bytes += m->size;
            continue;
        }
        json_array_append_new(skipped,
                              json_pack("{s:I,s:s,s:s,s:s}", "index", (json_int_t)m->index, "path",
                                        m->path, "reason", dems_unpack_reason_str(m->skipped),
                                        "detail", m->detail != NULL ? m->detail : ""));
    }
    char *text = skipped != NULL ? json_dumps(skipped, JSON_COMPACT) : NULL;
    json_decref(skipped);
    char v[4][24];
    const uint64_t nums[] = {(uint64_t)json_integer_value(json_object_get(summary, "entries")),
                             extracted, strcmp(state, "done") == 0 ? (uint64_t)u->n - extracted : 0,
                             bytes};
    for (int i = 0; i < 4; i++)
        snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)nums[i]);
    const char *lib = json_string_value(json_object_get(summary, "libarchive"));
    char lib_s[100];
    snprintf(lib_s, sizeof(lib_s), "%s", lib != NULL ? lib : "");
    const char *params[] = {
        u->id, text, state, v[0], v[1], v[2], v[3], error, lib != NULL ? lib_s : NULL};
    bool ok = text != NULL && exec_ok(u->ctx->db, outcome_sql, 9, params);
    free(text);
    return ok ? 0 : DEMS_EDB;
}

/* ---- the job ---- */

int dems_job_unpack_check(const json_t *payload, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(payload, "evidence"));
    const json_t *sub = json_object_get(payload, "submission");
    bool hex = id != NULL && strlen(id) == 64;
    for (size_t i = 0; hex && i < 64; i++)
        hex = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    if (!hex) {
        snprintf(err, errlen,
                 "field \"payload.evidence\" must be an evidence id (64 lower-case hex digits)");
        return DEMS_EINVAL;
    }
    if (sub != NULL && !json_is_null(sub) &&
        (!json_is_integer(sub) || json_integer_value(sub) <= 0)) {
        snprintf(err, errlen, "field \"payload.submission\" must be a submission id");
        return DEMS_EINVAL;
    }
    if (json_object_size(payload) != 1 + (sub != NULL)) {
        snprintf(err, errlen, "field \"payload\" takes only \"evidence\" and \"submission\"");
        return DEMS_EINVAL;
    }
    return 0;
}

/*
 * Reads the archive's size and whether it was unpacked already, and the
 * submission's link. Returns 1 to go on, 0 when there is nothing to do,
 * or a job result (negative: see below) with err set.
 */
static int look_up(struct unpack *u, char *err, size_t errlen, enum dems_job_result *ret)
{
    char sub[24];
    snprintf(sub, sizeof(sub), "%lld", (long long)u->submission);
    const char *params[] = {u->id, sub};
    PGresult *res = PQexecParams(u->ctx->db,
                                 "SELECT a.size, EXISTS (SELECT 1 FROM archive_unpacks o"
                                 " WHERE o.archive = a.id) AS done,"
                                 " (SELECT link_id FROM submissions WHERE id = $2::bigint) AS link"
                                 " FROM artefacts a WHERE a.id = $1",
                                 2, NULL, params, NULL, NULL, 0);
    int rows = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    if (rows == 1) {
        const char *size = PQgetvalue(res, 0, 0), *link = PQgetvalue(res, 0, 2);
        dems_parse_u64(size, strlen(size), INT64_MAX, &u->archive_size);
        uint64_t l = 0;
        if (dems_parse_u64(link, strlen(link), INT64_MAX, &l) == 0)
            u->link = (int64_t)l;
        bool done = PQgetvalue(res, 0, 1)[0] == 't';
        PQclear(res);
        *ret = DEMS_JOB_OK;
        return done ? 0 : 1;
    }
    PQclear(res);
    snprintf(err, errlen, rows < 0 ? "database: cannot look up evidence %s" : "no evidence %s",
             u->id);
    *ret = rows < 0 ? DEMS_JOB_RETRY : DEMS_JOB_FAIL;
    return 0;
}

static void unpack_done(struct unpack *u)
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
    work_remove(u->dir);
}

/* What the runner's failure means for the job; records the outcome when it is final. */
static enum dems_job_result on_failure(struct unpack *u, const struct dems_media_error *me,
                                       char *err, size_t errlen)
{
    const char *state;
    if (u->local) {
        snprintf(err, errlen, "%s", u->why);
        return DEMS_JOB_RETRY;
    } else if (u->broken) {
        snprintf(err, errlen, "%s", u->why);
        state = "failed";
    } else {
        snprintf(err, errlen, "%s: %s", dems_media_code_str(me->code), me->message);
        switch (me->code) {
        case DEMS_MEDIA_TOO_LARGE:
            state = "refused"; /* a bound: nothing is kept */
            break;
        case DEMS_MEDIA_INVALID:
        case DEMS_MEDIA_UNSUPPORTED:
        case DEMS_MEDIA_SECCOMP:
            state = "failed"; /* the same bytes fail the same way */
            break;
        default:
            return DEMS_JOB_RETRY; /* a crash, a timeout, a resource limit: the machine? */
        }
    }
    if (record_outcome(u, state, NULL, u->broken ? u->why : me->message) < 0) {
        snprintf(err, errlen, "database: cannot record the outcome of unpacking %s", u->id);
        return DEMS_JOB_RETRY;
    }
    return DEMS_JOB_FAIL;
}

/* Records every member extracted, then the outcome. */
static enum dems_job_result record_all(struct unpack *u, const json_t *summary, char *err,
                                       size_t errlen)
{
    uint64_t entries = (uint64_t)json_integer_value(json_object_get(summary, "entries"));
    if (entries < u->n || entries > u->lim.max_members) {
        snprintf(err, errlen, "the archive reader's summary does not match its members");
        return record_outcome(u, "failed", NULL, err) < 0 ? DEMS_JOB_RETRY : DEMS_JOB_FAIL;
    }
    for (size_t i = 0; i < u->n; i++) {
        if (u->members[i].skipped == 0 && record_member(u, &u->members[i], err, errlen) < 0)
            return DEMS_JOB_RETRY;
    }
    if (record_outcome(u, "done", summary, NULL) < 0) {
        snprintf(err, errlen, "database: cannot record the outcome of unpacking %s", u->id);
        return DEMS_JOB_RETRY;
    }
    return DEMS_JOB_OK;
}

static int work_open(struct unpack *u, char *err, size_t errlen)
{
    const char *data_dir = u->ctx->cfg->data_dir;
    snprintf(u->dir, sizeof(u->dir), "%s/work", data_dir);
    mkdir(u->dir, 0700);
    snprintf(u->dir, sizeof(u->dir), "%s/work/unpack-%s", data_dir, u->id);
    snprintf(u->archive, sizeof(u->archive), "%s/archive.zip", u->dir);
    work_remove(u->dir); /* what a crashed earlier attempt left */
    if (mkdir(u->dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", u->dir, strerror(errno));
        return DEMS_EIO;
    }
    int r = decrypt_archive(u);
    if (r < 0)
        snprintf(err, errlen, "cannot read evidence %s: %s", u->id, dems_strerror(r));
    return r;
}

enum dems_job_result dems_job_unpack(const struct dems_job *job, struct dems_job_ctx *ctx,
                                     char *err, size_t errlen)
{
    if (dems_job_unpack_check(job->payload, err, errlen) < 0)
        return DEMS_JOB_FAIL;
    const struct dems_config *cfg = ctx->cfg;
    struct unpack u = {.ctx = ctx,
                       .id = json_string_value(json_object_get(job->payload, "evidence")),
                       .submission =
                           json_integer_value(json_object_get(job->payload, "submission")),
                       .lim = {.max_members = cfg->unpack_max_members,
                               .max_member_bytes = cfg->unpack_max_member_bytes,
                               .max_total_bytes = cfg->unpack_max_total_bytes,
                               .max_ratio = cfg->unpack_max_ratio}};
    enum dems_job_result out;
    if (look_up(&u, err, errlen, &out) <= 0)
        return out;
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    u.lim.archive_size = u.archive_size;
    if (__builtin_mul_overflow(u.archive_size, u.lim.max_ratio, &u.budget))
        u.budget = UINT64_MAX;
    u.budget = u.budget < u.lim.max_total_bytes ? u.budget : u.lim.max_total_bytes;
    u.frame = malloc(DEMS_UNPACK_FRAME_HEAD + DEMS_UNPACK_FRAME_MAX);
    if (u.frame == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_JOB_RETRY;
    }
    out = DEMS_JOB_RETRY;
    json_t *summary = NULL;
    struct dems_media_error me = {.code = DEMS_MEDIA_OK};
    bool released = false;
    if (work_open(&u, err, errlen) == 0) {
        int r = run_reader(&u, &summary, &me, &released);
        if (released) {
            snprintf(err, errlen, "the worker stopped while unpacking");
            out = DEMS_JOB_RELEASE;
        } else if (r < 0 || u.broken) {
            out = on_failure(&u, &me, err, errlen);
        } else {
            out = record_all(&u, summary, err, errlen);
        }
    }
    json_decref(summary);
    unpack_done(&u);
    return out;
}
