/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reading side of the frame stream (include/dems/media.h, "DFRM"): the
 * worker takes the sandbox child's sampled RGB frames from a pipe. The
 * child parsed hostile input, so its stream is hostile too: every header
 * field is checked, and the size computed with overflow checks, before a
 * byte of pixels is allocated or read. No FFmpeg here.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"

void dems_media_frame_init(struct dems_media_frame *f)
{
    *f = (struct dems_media_frame){0};
}

void dems_media_frame_done(struct dems_media_frame *f)
{
    free(f->rgb);
    *f = (struct dems_media_frame){0};
}

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* Reads up to len bytes; returns how many (fewer only at EOF) or -errno. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) { /* EWOULDBLOCK on Linux too */
            struct pollfd q = {.fd = fd, .events = POLLIN};
            if (poll(&q, 1, -1) < 0 && errno != EINTR)
                return -errno;
            continue;
        }
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t get64(const uint8_t *p)
{
    return (int64_t)((uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32);
}

/* Checks a header against the previous frame; fills f's fields and the
 * pixel byte count. */
static int check_head(const uint8_t *h, const struct dems_media_frame *f, uint32_t max_side,
                      size_t *ret_bytes, char *err, size_t errlen)
{
    uint32_t version = get32(h + 4), w = get32(h + 16), ht = get32(h + 20);
    uint32_t stride = get32(h + 24), index = get32(h + 28);
    int64_t t = get64(h + 8);
    size_t row, bytes;

    if (memcmp(h, "DFRM", 4) != 0)
        return fail(err, errlen, DEMS_EINVAL, "frame stream: bad magic (frame %u)", f->next_index);
    if (version != DEMS_MEDIA_FRAME_VERSION)
        return fail(err, errlen, DEMS_EINVAL, "frame stream: version %u, not %u", version,
                    DEMS_MEDIA_FRAME_VERSION);
    if (w == 0 || ht == 0)
        return fail(err, errlen, DEMS_EINVAL, "frame stream: empty frame %ux%u", w, ht);
    if (w > max_side || ht > max_side)
        return fail(err, errlen, DEMS_ETOOBIG, "frame stream: frame %ux%u over the side limit %u",
                    w, ht, max_side);
    if (__builtin_mul_overflow((size_t)w, (size_t)3, &row) || stride != row)
        return fail(err, errlen, DEMS_EINVAL, "frame stream: stride %u for width %u", stride, w);
    if (__builtin_mul_overflow(row, (size_t)ht, &bytes))
        return fail(err, errlen, DEMS_ETOOBIG, "frame stream: frame size overflows");
    if (index != f->next_index)
        return fail(err, errlen, DEMS_EINVAL, "frame stream: frame index %u, expected %u", index,
                    f->next_index);
    if (t < 0 || (index > 0 && t <= f->t_us))
        return fail(err, errlen, DEMS_EINVAL,
                    "frame stream: times going backwards (%lld us after %lld us)", (long long)t,
                    (long long)(index > 0 ? f->t_us : 0));
    *ret_bytes = bytes;
    return 0;
}

int dems_media_frame_read(int fd, struct dems_media_frame *f, uint32_t max_side, char *err,
                          size_t errlen)
{
    uint8_t h[DEMS_MEDIA_FRAME_HEAD];
    size_t bytes = 0;
    ssize_t n = read_full(fd, h, sizeof(h));
    int r;

    if (n < 0)
        return fail(err, errlen, DEMS_EIO, "frame stream: read: %s", strerror((int)-n));
    if (n == 0)
        return 0;
    if ((size_t)n < sizeof(h))
        return fail(err, errlen, DEMS_EINVAL, "frame stream: truncated header (%zd of %zu bytes)",
                    n, sizeof(h));
    if ((r = check_head(h, f, max_side, &bytes, err, errlen)) < 0)
        return r;
    if (bytes > f->cap) {
        uint8_t *nb = realloc(f->rgb, bytes);
        if (nb == NULL)
            return fail(err, errlen, DEMS_ENOMEM, "frame stream: out of memory (%zu bytes)", bytes);
        f->rgb = nb;
        f->cap = bytes;
    }
    n = read_full(fd, f->rgb, bytes);
    if (n < 0)
        return fail(err, errlen, DEMS_EIO, "frame stream: read: %s", strerror((int)-n));
    if ((size_t)n < bytes)
        return fail(err, errlen, DEMS_EINVAL,
                    "frame stream: truncated frame %u (%zd of %zu pixel bytes)", f->next_index, n,
                    bytes);
    f->t_us = get64(h + 8);
    f->index = get32(h + 28);
    f->width = get32(h + 16);
    f->height = get32(h + 20);
    f->stride = (size_t)f->width * 3;
    f->next_index = f->index + 1;
    return 1;
}
