/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Defaults, error codes and messages, FFmpeg version reporting, and the
 * fd-backed AVIO contexts every input and output goes through (so that
 * FFmpeg never opens a file itself, which the sandbox forbids anyway).
 */
#include "dems/media.h"

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"

#include "media_int.h"

#define AVIO_BUF_SIZE 65536

void dems_media_limits_init(struct dems_media_limits *lim)
{
    *lim = (struct dems_media_limits){
        .max_pixels = 8192ull * 4320ull,
        .max_side = 16384,
        .max_total_pixels = 1ull << 40,
        .max_duration = 86400.0,
        .probesize = 16 << 20,
        .analyzeduration = 15 * 1000000ll,
        .timeout = 3600,
        .cpu_seconds = 7200,
        .memory = 4ull << 30,
        .output_bytes = 8ull << 30,
        .uid = 65534,
        .gid = 65534,
    };
}

void dems_media_params_init(struct dems_media_params *p)
{
    *p = (struct dems_media_params){
        .max_width = 1280,
        .max_height = 720,
        .crf = 23,
        .preset = "veryfast",
        .gop_seconds = 2.0,
        .threads = 0,
        .audio_bitrate = 128000,
        .poster_fraction = 0.1,
        .thumb_interval = 10.0,
        .tile_width = 160,
        .tile_columns = 10,
        .max_tiles = 360,
        .jpeg_quality = 3,
    };
}

const char *dems_media_code_str(enum dems_media_code code)
{
    switch (code) {
    case DEMS_MEDIA_OK:
        return "ok";
    case DEMS_MEDIA_INVALID:
        return "media_invalid";
    case DEMS_MEDIA_UNSUPPORTED:
        return "media_unsupported";
    case DEMS_MEDIA_TOO_LARGE:
        return "media_too_large";
    case DEMS_MEDIA_TIMEOUT:
        return "media_timeout";
    case DEMS_MEDIA_CRASHED:
        return "media_crashed";
    case DEMS_MEDIA_SECCOMP:
        return "media_seccomp_violation";
    case DEMS_MEDIA_OUT_OF_MEMORY:
        return "media_out_of_memory";
    case DEMS_MEDIA_LIMIT:
        return "media_limit";
    case DEMS_MEDIA_OUTPUT:
        return "media_output_failed";
    case DEMS_MEDIA_INTERNAL:
        return "media_internal";
    }
    return "media_internal";
}

int dems_media_code_err(enum dems_media_code code)
{
    switch (code) {
    case DEMS_MEDIA_OK:
        return 0;
    case DEMS_MEDIA_INVALID:
    case DEMS_MEDIA_UNSUPPORTED:
    case DEMS_MEDIA_CRASHED:
    case DEMS_MEDIA_SECCOMP:
        return DEMS_EINVAL;
    case DEMS_MEDIA_TOO_LARGE:
    case DEMS_MEDIA_TIMEOUT:
    case DEMS_MEDIA_OUT_OF_MEMORY:
    case DEMS_MEDIA_LIMIT:
        return DEMS_ETOOBIG;
    case DEMS_MEDIA_OUTPUT:
        return DEMS_EIO;
    case DEMS_MEDIA_INTERNAL:
        return DEMS_EINTERNAL;
    }
    return DEMS_EINTERNAL;
}

int media_fail(struct dems_media_error *err, enum dems_media_code code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return dems_media_code_err(code);
}

int media_fail_av(struct dems_media_error *err, int averr, const char *what)
{
    char text[AV_ERROR_MAX_STRING_SIZE] = {0};

    av_strerror(averr, text, sizeof(text));
    if (averr == AVERROR(ENOMEM))
        return media_fail(err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (%s)", what);
    if (averr == AVERROR_DECODER_NOT_FOUND || averr == AVERROR_DEMUXER_NOT_FOUND ||
        averr == AVERROR_PATCHWELCOME)
        return media_fail(err, DEMS_MEDIA_UNSUPPORTED, "unsupported codec: %s: %s", what, text);
    if (averr == AVERROR(EFBIG) || averr == AVERROR(ENOSPC))
        return media_fail(err, DEMS_MEDIA_OUTPUT, "output failed: %s: %s", what, text);
    return media_fail(err, DEMS_MEDIA_INVALID, "invalid data: %s: %s", what, text);
}

static void version_add(json_t *o, const char *name, const char *ident, unsigned v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%u.%u.%u", AV_VERSION_MAJOR(v), AV_VERSION_MINOR(v),
             AV_VERSION_MICRO(v));
    json_object_set_new(o, name, json_pack("{s:s, s:s}", "compiled", ident, "runtime", buf));
}

json_t *dems_media_versions(void)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "ffmpeg", json_string(av_version_info()));
    version_add(o, "libavformat", LIBAVFORMAT_IDENT, avformat_version());
    version_add(o, "libavcodec", LIBAVCODEC_IDENT, avcodec_version());
    version_add(o, "libavutil", LIBAVUTIL_IDENT, avutil_version());
    version_add(o, "libswscale", LIBSWSCALE_IDENT, swscale_version());
    version_add(o, "libswresample", LIBSWRESAMPLE_IDENT, swresample_version());
    json_object_set_new(o, "configuration", json_string(avcodec_configuration()));
    return o;
}

/* --- fd-backed AVIO ---------------------------------------------------- */

struct fd_io {
    int fd;
    bool is_file; /* regular file: pread/pwrite at pos, seekable */
    int64_t pos;
};

static int fd_read(void *opaque, uint8_t *buf, int size)
{
    struct fd_io *io = opaque;
    ssize_t n;

    do {
        if (io->is_file)
            n = pread(io->fd, buf, (size_t)size, (off_t)io->pos);
        else
            n = read(io->fd, buf, (size_t)size);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return AVERROR(errno);
    if (n == 0)
        return AVERROR_EOF;
    io->pos += n;
    return (int)n;
}

static int fd_write(void *opaque, uint8_t *buf, int size)
{
    struct fd_io *io = opaque;
    size_t done = 0;

    while (done < (size_t)size) {
        ssize_t n = pwrite(io->fd, buf + done, (size_t)size - done, (off_t)io->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return AVERROR(n < 0 ? errno : EIO);
        done += (size_t)n;
        io->pos += n;
    }
    return size;
}

static int64_t fd_seek(void *opaque, int64_t offset, int whence)
{
    struct fd_io *io = opaque;
    struct stat st;

    if (!io->is_file)
        return AVERROR(ESPIPE);
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE || whence == SEEK_END) {
        if (fstat(io->fd, &st) < 0)
            return AVERROR(errno);
        if (whence == AVSEEK_SIZE)
            return st.st_size;
        offset += st.st_size;
    } else if (whence == SEEK_CUR) {
        offset += io->pos;
    } else if (whence != SEEK_SET) {
        return AVERROR(EINVAL);
    }
    if (offset < 0)
        return AVERROR(EINVAL);
    io->pos = offset;
    return offset;
}

static AVIOContext *avio_for_fd(int fd, bool write)
{
    struct fd_io *io = av_mallocz(sizeof(*io));
    uint8_t *buf = av_malloc(AVIO_BUF_SIZE);
    struct stat st;
    AVIOContext *pb = NULL;

    if (io == NULL || buf == NULL)
        goto fail;
    io->fd = fd;
    io->is_file = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    pb = avio_alloc_context(buf, AVIO_BUF_SIZE, write ? 1 : 0, io, write ? NULL : fd_read,
                            write ? fd_write : NULL, fd_seek);
    if (pb == NULL)
        goto fail;
    pb->seekable = io->is_file ? AVIO_SEEKABLE_NORMAL : 0;
    return pb;
fail:
    av_free(io);
    av_free(buf);
    return NULL;
}

AVIOContext *media_avio_reader(int fd)
{
    return avio_for_fd(fd, false);
}

AVIOContext *media_avio_writer(int fd)
{
    return avio_for_fd(fd, true);
}

void media_avio_free(AVIOContext **pb)
{
    if (*pb == NULL)
        return;
    if ((*pb)->write_flag)
        avio_flush(*pb);
    av_freep(&(*pb)->opaque);
    av_freep(&(*pb)->buffer);
    avio_context_free(pb);
}

int media_write_file(int fd, const uint8_t *buf, size_t len)
{
    size_t done = 0;

    if (ftruncate(fd, 0) < 0)
        return DEMS_EIO;
    while (done < len) {
        ssize_t n = pwrite(fd, buf + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return DEMS_EIO;
        done += (size_t)n;
    }
    return 0;
}
