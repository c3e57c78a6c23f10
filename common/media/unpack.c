/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The archive reader of the unpack pipeline (include/dems/unpack.h): runs
 * in the media sandbox's child, reads a ZIP archive with libarchive and
 * writes each member that may be kept to a pipe as frames.
 *
 * libarchive's seekable ZIP reader is used, not the streaming one: only
 * the central directory at the end of a ZIP file carries a member's Unix
 * mode, which is what marks a symlink (a streaming reader sees the local
 * headers alone and would take a link for a small regular file). Member
 * data is still decompressed as a stream, a block at a time, and every
 * byte decompressed counts against the bounds, so a ZIP bomb is stopped
 * after max_ratio x its size, whatever its headers declare.
 */
#include "dems/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"
#include "dems/sniff.h"

#include "media_int.h"

struct reader {
    struct archive *a;
    int out_fd;
    const struct dems_unpack_limits *lim;
    uint64_t budget; /* bytes that may be decompressed: min(total, ratio x size) */
    uint64_t entries, directories, extracted, skipped;
    uint64_t bytes; /* decompressed, all members */
    uint8_t *buf;   /* a frame: DEMS_UNPACK_FRAME_HEAD + DEMS_UNPACK_FRAME_MAX */
};

#define PAYLOAD(rd) ((rd)->buf + DEMS_UNPACK_FRAME_HEAD)

/* ---- frames ---- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Sends a frame whose payload is parts[0..n) laid end to end; a part may
 * already be in place at the start of the payload (DATA).
 */
static int send_frame(struct reader *rd, enum dems_unpack_frame type, const void *const *parts,
                      const size_t *lens, int n, struct dems_media_error *err)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (PAYLOAD(rd) + off != parts[i])
            memmove(PAYLOAD(rd) + off, parts[i], lens[i]);
        off += lens[i];
    }
    dems_unpack_frame_head(rd->buf, type, (uint32_t)off);
    if (write_all(rd->out_fd, rd->buf, DEMS_UNPACK_FRAME_HEAD + off) < 0)
        return media_fail(err, DEMS_MEDIA_OUTPUT, "unpack: writing a member failed: %s",
                          strerror(errno));
    return 0;
}

/* Up to max bytes of s: what a frame carries of a detail or a name. */
static size_t cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n < max ? n : max;
}

/* A member not extracted: SKIP with the reason, a detail and its name (as UTF-8). */
static int skip(struct reader *rd, uint32_t index, const char *raw, enum dems_unpack_reason reason,
                const char *detail, struct dems_media_error *err)
{
    uint8_t idx[4];
    char name[DEMS_UNPACK_DISPLAY_MAX + 1];
    const char *why = dems_unpack_reason_str(reason);
    put_le(idx, index, 4);
    dems_unpack_name_utf8((const uint8_t *)raw, strlen(raw), name, sizeof(name));
    const void *parts[] = {idx, why, "", detail, "", name};
    const size_t lens[] = {4, strlen(why), 1, cut(detail, DEMS_UNPACK_DETAIL_MAX), 1, strlen(name)};
    rd->skipped++;
    return send_frame(rd, DEMS_UNPACK_SKIP, parts, lens, 6, err);
}

/* A member whose BEGIN was sent but whose data is not to be kept. */
static int abandon(struct reader *rd, enum dems_unpack_reason reason, const char *detail,
                   struct dems_media_error *err)
{
    const char *why = dems_unpack_reason_str(reason);
    const void *parts[] = {why, "", detail};
    const size_t lens[] = {strlen(why), 1, cut(detail, DEMS_UNPACK_DETAIL_MAX)};
    rd->skipped++;
    return send_frame(rd, DEMS_UNPACK_ABANDON, parts, lens, 3, err);
}

/* ---- reading ---- */

/* Counts n more decompressed bytes against the archive's budget. */
static int count(struct reader *rd, size_t n, struct dems_media_error *err)
{
    const struct dems_unpack_limits *l = rd->lim;
    rd->bytes += n;
    if (rd->bytes <= rd->budget)
        return 0;
    if (rd->bytes > l->max_total_bytes)
        return media_fail(err, DEMS_MEDIA_TOO_LARGE,
                          "unpack: more than %llu bytes in all (unpack_max_total_bytes)",
                          (unsigned long long)l->max_total_bytes);
    return media_fail(err, DEMS_MEDIA_TOO_LARGE,
                      "unpack: expansion ratio over %llu: the %llu-byte archive unpacks to more "
                      "than %llu bytes (unpack_max_ratio; a ZIP bomb?)",
                      (unsigned long long)l->max_ratio, (unsigned long long)l->archive_size,
                      (unsigned long long)rd->budget);
}

/*
 * Reads up to want bytes of the current member into PAYLOAD(rd) + have:
 * the number read (0 at its end), or a negative libarchive status.
 */
static la_ssize_t read_data(struct reader *rd, size_t have, size_t want)
{
    la_ssize_t n;
    do {
        n = archive_read_data(rd->a, PAYLOAD(rd) + have, want);
    } while (n == ARCHIVE_RETRY);
    return n;
}

/* A failed read of a member's data: fatal for the archive, or that member unreadable. */
static int data_error(struct reader *rd, la_ssize_t n, uint32_t index, const char *name, bool begun,
                      struct dems_media_error *err)
{
    const char *msg = archive_error_string(rd->a);
    if (n == ARCHIVE_FATAL)
        return media_fail(err, DEMS_MEDIA_INVALID, "unpack: the archive is damaged: %s",
                          msg != NULL ? msg : "read error");
    msg = msg != NULL ? msg : "cannot decompress it";
    return begun ? abandon(rd, DEMS_UNPACK_UNREADABLE, msg, err)
                 : skip(rd, index, name, DEMS_UNPACK_UNREADABLE, msg, err);
}

/* Sends a regular member with a safe name: BEGIN, DATA..., END (or ABANDON). */
static int extract(struct reader *rd, uint32_t index, const char *name,
                   struct dems_media_error *err)
{
    const uint64_t max = rd->lim->max_member_bytes;
    size_t have = 0;
    la_ssize_t n = 1;
    int r = 0;
    /* The head first: an archive inside the archive is not sent. */
    while (have < DEMS_SNIFF_HEAD && (n = read_data(rd, have, DEMS_SNIFF_HEAD - have)) > 0) {
        have += (size_t)n;
        if ((r = count(rd, (size_t)n, err)) < 0)
            return r;
    }
    if (n < 0)
        return data_error(rd, n, index, name, false, err);
    struct dems_sniffed what = dems_sniff(PAYLOAD(rd), have);
    if (what.kind == DEMS_SNIFF_ARCHIVE)
        return skip(rd, index, name, DEMS_UNPACK_NESTED, what.label, err);
    if (have > max)
        return skip(rd, index, name, DEMS_UNPACK_TOO_LARGE, "over unpack_max_member_bytes", err);
    /* BEGIN goes out through the buffer, so keep the head aside meanwhile. */
    uint8_t head[DEMS_SNIFF_HEAD], idx[4];
    memcpy(head, PAYLOAD(rd), have);
    put_le(idx, index, 4);
    const void *begin[] = {idx, name};
    const size_t blen[] = {4, strlen(name)};
    if ((r = send_frame(rd, DEMS_UNPACK_BEGIN, begin, blen, 2, err)) < 0)
        return r;
    uint64_t size = have;
    if (have > 0) {
        const void *part[] = {head};
        if ((r = send_frame(rd, DEMS_UNPACK_DATA, part, &have, 1, err)) < 0)
            return r;
    }
    while (n > 0 && (n = read_data(rd, 0, DEMS_UNPACK_DATA_MAX)) > 0) {
        size_t k = (size_t)n;
        if ((r = count(rd, k, err)) < 0)
            return r;
        if (k > max - size)
            return abandon(rd, DEMS_UNPACK_TOO_LARGE, "over unpack_max_member_bytes", err);
        size += k;
        const void *part[] = {PAYLOAD(rd)};
        if ((r = send_frame(rd, DEMS_UNPACK_DATA, part, &k, 1, err)) < 0)
            return r;
    }
    if (n < 0)
        return data_error(rd, n, index, name, true, err);
    uint8_t sz[8];
    put_le(sz, size, 8);
    const void *end[] = {sz};
    const size_t elen[] = {8};
    rd->extracted++;
    return send_frame(rd, DEMS_UNPACK_END, end, elen, 1, err);
}

static const char *special_kind(mode_t type)
{
    switch (type) {
    case AE_IFCHR:
        return "character device";
    case AE_IFBLK:
        return "block device";
    case AE_IFIFO:
        return "FIFO";
    case AE_IFSOCK:
        return "socket";
    default:
        return "special file";
    }
}

/* One entry: a directory is counted; anything else extracted or skipped. */
static int entry(struct reader *rd, struct archive_entry *e, uint32_t index,
                 struct dems_media_error *err)
{
    const char *raw = archive_entry_pathname(e);
    raw = raw != NULL ? raw : "";
    mode_t type = archive_entry_filetype(e);
    char detail[DEMS_UNPACK_DETAIL_MAX + 8];
    if (type == AE_IFDIR) {
        rd->directories++;
        return 0;
    }
    if (type == AE_IFLNK) {
        const char *to = archive_entry_symlink(e);
        snprintf(detail, sizeof(detail), "-> %s", to != NULL ? to : "?");
        return skip(rd, index, raw, DEMS_UNPACK_SYMLINK, detail, err);
    }
    if (archive_entry_hardlink(e) != NULL) {
        snprintf(detail, sizeof(detail), "-> %s", archive_entry_hardlink(e));
        return skip(rd, index, raw, DEMS_UNPACK_HARDLINK, detail, err);
    }
    if (type != AE_IFREG)
        return skip(rd, index, raw, DEMS_UNPACK_DEVICE, special_kind(type), err);
    if (archive_entry_is_encrypted(e))
        return skip(rd, index, raw, DEMS_UNPACK_ENCRYPTED, "needs a password", err);
    char name[DEMS_UNPACK_NAME_MAX + 1];
    size_t n = dems_unpack_name_utf8((const uint8_t *)raw, strlen(raw), name, sizeof(name));
    enum dems_unpack_name_fault f =
        n >= sizeof(name) ? DEMS_UNPACK_NAME_TOO_LONG : dems_unpack_name_check(name, n);
    if (f != DEMS_UNPACK_NAME_OK)
        return skip(rd, index, raw, DEMS_UNPACK_UNSAFE_NAME, dems_unpack_name_fault_str(f), err);
    if (archive_entry_size_is_set(e) && archive_entry_size(e) >= 0 &&
        (uint64_t)archive_entry_size(e) > rd->lim->max_member_bytes)
        return skip(rd, index, name, DEMS_UNPACK_TOO_LARGE, "over unpack_max_member_bytes", err);
    return extract(rd, index, name, err);
}

static int read_archive(struct reader *rd, struct dems_media_error *err)
{
    struct archive_entry *e;
    for (uint32_t index = 0;; index++) {
        int r = archive_read_next_header(rd->a, &e);
        if (r == ARCHIVE_EOF)
            return 0;
        if (r == ARCHIVE_FATAL || (r == ARCHIVE_FAILED && index == 0 && e == NULL)) {
            const char *msg = archive_error_string(rd->a);
            return media_fail(err, DEMS_MEDIA_INVALID, "unpack: not a readable ZIP archive: %s",
                              msg != NULL ? msg : "unrecognised");
        }
        if (++rd->entries > rd->lim->max_members)
            return media_fail(err, DEMS_MEDIA_TOO_LARGE,
                              "unpack: more than %llu members (unpack_max_members)",
                              (unsigned long long)rd->lim->max_members);
        if (r == ARCHIVE_FAILED) {
            const char *raw = e != NULL ? archive_entry_pathname(e) : NULL;
            const char *msg = archive_error_string(rd->a);
            r = skip(rd, index, raw != NULL ? raw : "", DEMS_UNPACK_UNREADABLE,
                     msg != NULL ? msg : "unreadable header", err);
        } else {
            r = entry(rd, e, index, err); /* ARCHIVE_OK or ARCHIVE_WARN */
        }
        if (r < 0)
            return r;
    }
}

int dems_unpack(int in_fd, int out_fd, const struct dems_unpack_limits *lim, json_t **ret_summary,
                struct dems_media_error *err)
{
    struct dems_media_error local;
    err = err != NULL ? err : &local;
    struct reader rd = {.out_fd = out_fd, .lim = lim};
    if (__builtin_mul_overflow(lim->archive_size, lim->max_ratio, &rd.budget))
        rd.budget = UINT64_MAX;
    rd.budget = rd.budget < lim->max_total_bytes ? rd.budget : lim->max_total_bytes;
    rd.buf = malloc(DEMS_UNPACK_FRAME_HEAD + DEMS_UNPACK_FRAME_MAX);
    rd.a = archive_read_new();
    if (rd.buf == NULL || rd.a == NULL) {
        free(rd.buf);
        archive_read_free(rd.a);
        return media_fail(err, DEMS_MEDIA_INTERNAL, "unpack: out of memory");
    }
    int r;
    /* ZIP only, read through its central directory (see the top of the file). */
    if (archive_read_support_format_zip_seekable(rd.a) != ARCHIVE_OK ||
        archive_read_open_fd(rd.a, in_fd, 1 << 16) != ARCHIVE_OK) {
        const char *msg = archive_error_string(rd.a);
        r = media_fail(err, DEMS_MEDIA_INVALID, "unpack: not a readable ZIP archive: %s",
                       msg != NULL ? msg : "unrecognised");
    } else {
        r = read_archive(&rd, err);
    }
    if (r == 0) {
        *ret_summary =
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:s}", "entries", (json_int_t)rd.entries, "directories",
                      (json_int_t)rd.directories, "extracted", (json_int_t)rd.extracted, "skipped",
                      (json_int_t)rd.skipped, "bytes", (json_int_t)rd.bytes, "libarchive",
                      archive_version_string());
        if (*ret_summary == NULL)
            r = media_fail(err, DEMS_MEDIA_INTERNAL, "unpack: out of memory");
    }
    archive_read_free(rd.a);
    free(rd.buf);
    return r;
}

/* ---- in the sandbox ---- */

struct unpack_args {
    int in_fd, out_fd;
    const struct dems_unpack_limits *lim;
};

static int unpack_child(void *arg, json_t **ret, struct dems_media_error *err)
{
    const struct unpack_args *a = arg;
    return dems_unpack(a->in_fd, a->out_fd, a->lim, ret, err);
}

int dems_unpack_sandboxed(int in_fd, int out_fd, const struct dems_unpack_limits *lim,
                          const struct dems_media_limits *mlim, json_t **ret_summary,
                          struct dems_media_error *err)
{
    struct unpack_args a = {.in_fd = in_fd, .out_fd = out_fd, .lim = lim};
    const int keep[] = {in_fd, out_fd};
    return dems_media_sandbox_run(keep, 2, mlim, unpack_child, &a, ret_summary, err);
}
