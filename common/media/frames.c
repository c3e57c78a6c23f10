/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Frame sampling for face indexing: one pass over the best video stream
 * keeps, for each multiple of 1/fps seconds, the first decoded frame at or
 * after it, turns it upright, gives it square pixels, scales it (never up)
 * to RGB24 with swscale (with the stream's YUV matrix and range) and writes it to a pipe as a
 * "DFRM" frame (include/dems/media.h) for the worker, which detects faces on them while this
 * decodes on. The decoder may skip non-reference frames: most frames are never kept, and an H.264
 * decoder that skips what no other frame needs does much less work (docs/media.md has the
 * measurement). Every decoded frame is checked against the frame-size, total-pixel and duration
 * limits, as in the preview pipeline.
 */
#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"

#include "media_int.h"

struct sampler {
    const struct dems_media_frames_params *p;
    const struct dems_media_limits *lim;
    struct dems_media_error *err;
    int out_fd;
    AVFormatContext *in;
    AVStream *st;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    struct SwsContext *sws;
    int sws_w, sws_h, sws_fmt; /* the decoded size and format sws was made for */
    AVFrame *scaled;           /* RGB24, before rotation */
    uint8_t *buf;              /* one frame as written: header and packed upright pixels */
    size_t buf_cap;
    int rot;              /* clockwise degrees applied */
    bool still;           /* an image: one frame */
    bool done;            /* nothing more to write */
    bool broken_pipe;     /* our write raised SIGPIPE (blocked, to be discarded) */
    int64_t start;        /* the stream's start, in st->time_base */
    int64_t step_us;      /* one frame at the average rate: times for frames without one */
    int64_t last_us;      /* the last decoded frame's time; INT64_MIN before the first */
    int64_t next_k;       /* the next multiple of 1/fps to fill */
    uint32_t written;     /* frames written */
    int64_t decoded;      /* frames decoded */
    int64_t errors;       /* packets the decoder refused */
    uint64_t total_px;    /* decoded pixels */
    int64_t max_us;       /* the latest decoded time */
    int first_w, first_h; /* the first frame written */
    int resized;          /* frames written at another size than the first */
};

void dems_media_frames_params_init(struct dems_media_frames_params *p)
{
    *p = (struct dems_media_frames_params){
        .fps = 2.0,
        .max_side = 1920,
        .skip_nonref = true,
        .threads = 1,
    };
}

/* --- sampling ------------------------------------------------------------ */

/* The time of multiple k of 1/fps, in microseconds. */
static int64_t target_us(const struct sampler *s, int64_t k)
{
    return llround((double)k * 1e6 / s->p->fps);
}

/* The first multiple of 1/fps after t_us: the next one to fill. */
static int64_t next_multiple(const struct sampler *s, int64_t t_us)
{
    int64_t k = (int64_t)floor((double)t_us * s->p->fps / 1e6) + 1;

    while (k > 0 && target_us(s, k - 1) > t_us)
        k--;
    while (target_us(s, k) <= t_us)
        k++;
    return k;
}

/* A decoded frame's time in microseconds from the stream's start. A frame
 * without a usable timestamp follows the previous one by a frame. */
static int64_t frame_time(const struct sampler *s, const AVFrame *f)
{
    int64_t pts = f->best_effort_timestamp, rel;

    if (pts != AV_NOPTS_VALUE && !__builtin_sub_overflow(pts, s->start, &rel))
        return av_rescale_q(rel, s->st->time_base, AV_TIME_BASE_Q);
    if (s->last_us == INT64_MIN)
        return 0;
    return __builtin_add_overflow(s->last_us, s->step_us, &rel) ? INT64_MAX : rel;
}

/* --- conversion ------------------------------------------------------------ */

/* Upright size (ow x oh) with square pixels and the longer side within
 * max_side, never upscaled; sw x sh is the same before the rotation. */
static void plan(const struct sampler *s, const AVFrame *f, int *sw, int *sh, int *ow, int *oh)
{
    AVRational sar = f->sample_aspect_ratio;
    double dw = f->width, dh = f->height;

    if (sar.num <= 0 || sar.den <= 0)
        sar = s->st->codecpar->sample_aspect_ratio;
    /* Odd aspect ratios (outside 1:10 .. 10:1) are taken for damage. */
    if (sar.num > 0 && sar.den > 0 && av_q2d(sar) >= 0.1 && av_q2d(sar) <= 10)
        dw = dw * sar.num / sar.den;
    if (s->rot == 90 || s->rot == 270) {
        double t = dw;
        dw = dh;
        dh = t;
    }
    double scale = fmin(1.0, (double)s->p->max_side / fmax(dw, dh));
    *ow = (int)fmax(1.0, fmin((double)s->p->max_side, round(dw * scale)));
    *oh = (int)fmax(1.0, fmin((double)s->p->max_side, round(dh * scale)));
    *sw = s->rot == 90 || s->rot == 270 ? *oh : *ow;
    *sh = s->rot == 90 || s->rot == 270 ? *ow : *oh;
}

static struct SwsContext *scaler(const AVFrame *in, int w, int h, int threads)
{
    struct SwsContext *c = sws_alloc_context();

    if (c == NULL)
        return NULL;
    av_opt_set_int(c, "srcw", in->width, 0);
    av_opt_set_int(c, "srch", in->height, 0);
    av_opt_set_int(c, "src_format", in->format, 0);
    av_opt_set_int(c, "dstw", w, 0);
    av_opt_set_int(c, "dsth", h, 0);
    av_opt_set_int(c, "dst_format", AV_PIX_FMT_RGB24, 0);
    av_opt_set_int(c, "sws_flags", SWS_BICUBIC, 0);
    av_opt_set_int(c, "threads", threads, 0);
    if (sws_init_context(c, NULL, NULL) < 0) {
        sws_freeContext(c);
        return NULL;
    }
    /* The stream's YUV matrix (BT.709 for most HD video; swscale assumes
     * BT.601) and range, so that faces keep their colours. */
    int *inv, *tab, src_range, dst_range, brightness, contrast, saturation;
    if (sws_getColorspaceDetails(c, &inv, &src_range, &tab, &dst_range, &brightness, &contrast,
                                 &saturation) >= 0) {
        src_range |= in->color_range == AVCOL_RANGE_JPEG;
        sws_setColorspaceDetails(c, sws_getCoefficients((int)in->colorspace), src_range, tab,
                                 dst_range, brightness, contrast, saturation);
    }
    return c;
}

/* Scales f to sw x sh RGB24 in s->scaled, (re)making the scaler when the
 * decoded size or format changes. */
static int scale(struct sampler *s, const AVFrame *f, int sw, int sh)
{
    int r;

    if (s->sws == NULL || f->width != s->sws_w || f->height != s->sws_h ||
        f->format != s->sws_fmt || s->scaled->width != sw || s->scaled->height != sh) {
        sws_freeContext(s->sws);
        av_frame_free(&s->scaled);
        s->sws = scaler(f, sw, sh, s->p->threads);
        if (s->sws == NULL)
            return media_fail(s->err, DEMS_MEDIA_UNSUPPORTED,
                              "unsupported codec: no conversion from %s to rgb24",
                              av_get_pix_fmt_name((enum AVPixelFormat)f->format) != NULL
                                  ? av_get_pix_fmt_name((enum AVPixelFormat)f->format)
                                  : "?");
        s->sws_w = f->width;
        s->sws_h = f->height;
        s->sws_fmt = f->format;
        s->scaled = av_frame_alloc();
        if (s->scaled == NULL)
            return media_fail(s->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (frames)");
        s->scaled->width = sw;
        s->scaled->height = sh;
        s->scaled->format = AV_PIX_FMT_RGB24;
        if ((r = av_frame_get_buffer(s->scaled, 0)) < 0)
            return media_fail_av(s->err, r, "frame buffer");
    }
    r = sws_scale_frame(s->sws, s->scaled, f);
    return r < 0 ? media_fail_av(s->err, r, "scaler") : 0;
}

/* Copies the scaled sw x sh picture into dst (ow x oh, packed), turned
 * clockwise by rot degrees. */
static void pack(uint8_t *dst, const AVFrame *src, int rot)
{
    int w = src->width, h = src->height;
    size_t dls = (size_t)(rot == 90 || rot == 270 ? h : w) * 3;

    if (rot == 0) {
        for (int y = 0; y < h; y++)
            memcpy(dst + (size_t)y * dls, src->data[0] + (ptrdiff_t)y * src->linesize[0],
                   (size_t)w * 3);
        return;
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src->data[0] + (ptrdiff_t)y * src->linesize[0];
        for (int x = 0; x < w; x++) {
            size_t dx, dy;
            if (rot == 90) {
                dx = (size_t)(h - 1 - y);
                dy = (size_t)x;
            } else if (rot == 270) {
                dx = (size_t)y;
                dy = (size_t)(w - 1 - x);
            } else {
                dx = (size_t)(w - 1 - x);
                dy = (size_t)(h - 1 - y);
            }
            memcpy(dst + dy * dls + dx * 3, row + (size_t)x * 3, 3);
        }
    }
}

/* --- output ------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int write_out(struct sampler *s, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(s->out_fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            /* A non-blocking pipe: wait until the reader makes room. */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (n < 0 && errno == EPIPE) {
            s->broken_pipe = true;
            return media_fail(s->err, DEMS_MEDIA_OUTPUT,
                              "output failed: frame pipe closed by the reader after %u frames",
                              s->written);
        }
        if (n <= 0)
            return media_fail(s->err, DEMS_MEDIA_OUTPUT, "output failed: frames: %s",
                              n < 0 ? strerror(errno) : "nothing written");
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Scales, turns, and writes one frame at t_us. */
static int emit(struct sampler *s, const AVFrame *f, int64_t t_us)
{
    int sw, sh, ow, oh, r;

    plan(s, f, &sw, &sh, &ow, &oh);
    if ((r = scale(s, f, sw, sh)) < 0)
        return r;
    size_t stride = (size_t)ow * 3, len = DEMS_MEDIA_FRAME_HEAD + stride * (size_t)oh;
    if (len > s->buf_cap) {
        av_freep(&s->buf);
        s->buf = av_malloc(len);
        s->buf_cap = s->buf != NULL ? len : 0;
        if (s->buf == NULL)
            return media_fail(s->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (frames)");
    }
    memcpy(s->buf, "DFRM", 4);
    put_le(s->buf + 4, DEMS_MEDIA_FRAME_VERSION, 4);
    put_le(s->buf + 8, (uint64_t)t_us, 8);
    put_le(s->buf + 16, (uint64_t)ow, 4);
    put_le(s->buf + 20, (uint64_t)oh, 4);
    put_le(s->buf + 24, stride, 4);
    put_le(s->buf + 28, s->written, 4);
    pack(s->buf + DEMS_MEDIA_FRAME_HEAD, s->scaled, s->rot);
    if ((r = write_out(s, s->buf, len)) < 0)
        return r;
    if (s->written == 0) {
        s->first_w = ow;
        s->first_h = oh;
    } else if (ow != s->first_w || oh != s->first_h) {
        s->resized++;
    }
    s->written++;
    return 0;
}

/* --- decoding ------------------------------------------------------------ */

static int on_frame(struct sampler *s, const AVFrame *f)
{
    int r = media_check_size(f->width, f->height, s->lim, s->err);

    if (r < 0)
        return r;
    s->decoded++;
    uint64_t px = (uint64_t)f->width * (uint64_t)f->height;
    if (px > s->lim->max_total_pixels - s->total_px)
        return media_fail(s->err, DEMS_MEDIA_TOO_LARGE,
                          "total pixel budget exceeded: %llu px after %lld frames",
                          (unsigned long long)s->lim->max_total_pixels, (long long)s->decoded);
    s->total_px += px;
    int64_t t_us = frame_time(s, f);
    s->last_us = t_us;
    if ((double)t_us / 1e6 > s->lim->max_duration)
        return media_fail(s->err, DEMS_MEDIA_TOO_LARGE, "duration limit exceeded: %.0f s > %.0f s",
                          (double)t_us / 1e6, s->lim->max_duration);
    s->max_us = t_us > s->max_us ? t_us : s->max_us;
    if (t_us < 0 || t_us < target_us(s, s->next_k))
        return 0;
    if ((r = emit(s, f, t_us)) < 0)
        return r;
    s->next_k = next_multiple(s, t_us);
    s->done = s->still;
    return 0;
}

/* As in the preview: a corrupt packet is counted and skipped, unless the
 * decoder refused a frame size over the budget. */
static int decode_error(struct sampler *s, int r)
{
    const AVCodecContext *dec = s->dec;

    if (r == AVERROR(ENOMEM))
        return media_fail_av(s->err, r, "decoder");
    if (media_check_size(dec->width, dec->height, s->lim, s->err) < 0)
        return dems_media_code_err(DEMS_MEDIA_TOO_LARGE);
    if (r == AVERROR(EINVAL) && (dec->width == 0 || dec->height == 0))
        return media_fail(s->err, DEMS_MEDIA_TOO_LARGE,
                          "pixel budget exceeded: the decoder refused a frame over %llu px",
                          (unsigned long long)s->lim->max_pixels);
    s->errors++;
    return 0;
}

static int decode(struct sampler *s, const AVPacket *pkt)
{
    int r = avcodec_send_packet(s->dec, pkt);

    if (r < 0 && r != AVERROR_EOF && r != AVERROR(EAGAIN) && (r = decode_error(s, r)) < 0)
        return r;
    while (!s->done && (r = avcodec_receive_frame(s->dec, s->frame)) >= 0) {
        r = on_frame(s, s->frame);
        av_frame_unref(s->frame);
        if (r < 0)
            return r;
    }
    if (s->done || r == AVERROR(EAGAIN) || r == AVERROR_EOF)
        return 0;
    return decode_error(s, r);
}

static int run(struct sampler *s)
{
    int r;

    while (!s->done) {
        r = av_read_frame(s->in, s->pkt);
        if (r == AVERROR_EOF || r == AVERROR_INVALIDDATA)
            break; /* a truncated tail ends the input */
        if (r == AVERROR(ENOMEM))
            return media_fail_av(s->err, r, "demuxer");
        if (r < 0)
            return media_fail_av(s->err, r, "read");
        r = s->pkt->stream_index == s->st->index ? decode(s, s->pkt) : 0;
        av_packet_unref(s->pkt);
        if (r < 0)
            return r;
    }
    if (!s->done && (r = decode(s, NULL)) < 0)
        return r;
    if (s->decoded == 0)
        return media_fail(s->err, DEMS_MEDIA_INVALID,
                          "invalid data: no decodable video frame (%lld packets refused)",
                          (long long)s->errors);
    return 0;
}

static int open_decoder(struct sampler *s)
{
    const AVCodec *codec = avcodec_find_decoder(s->st->codecpar->codec_id);
    int r;

    if (codec == NULL)
        return media_fail(s->err, DEMS_MEDIA_UNSUPPORTED, "unsupported codec: %s",
                          avcodec_get_name(s->st->codecpar->codec_id));
    s->dec = avcodec_alloc_context3(codec);
    if (s->dec == NULL)
        return media_fail(s->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (decoder)");
    if ((r = avcodec_parameters_to_context(s->dec, s->st->codecpar)) < 0)
        return media_fail_av(s->err, r, "decoder parameters");
    s->dec->max_pixels = (int64_t)s->lim->max_pixels;
    s->dec->pkt_timebase = s->st->time_base;
    s->dec->thread_count = s->p->threads;
    /* Frames nothing else refers to are never kept, so never decode them. */
    if (s->p->skip_nonref)
        s->dec->skip_frame = AVDISCARD_NONREF;
    r = avcodec_open2(s->dec, codec, NULL);
    return r < 0 ? media_fail_av(s->err, r, "decoder open") : 0;
}

/* Image demuxers ("jpeg_pipe", "png_pipe", ...) read one picture. */
static bool is_still(const AVFormatContext *fmt)
{
    const char *name = fmt->iformat->name;
    size_t n = strlen(name);

    return n > 5 && strcmp(name + n - 5, "_pipe") == 0;
}

static int setup(struct sampler *s, int in_fd)
{
    int r = media_input_open(in_fd, s->lim, &s->in, s->err);

    if (r < 0)
        return r;
    int vi = media_pick_stream(s->in, AVMEDIA_TYPE_VIDEO);
    if (vi < 0)
        return media_fail(s->err, DEMS_MEDIA_UNSUPPORTED, "no video stream");
    s->st = s->in->streams[vi];
    if (s->st->codecpar->width <= 0 || s->st->codecpar->height <= 0)
        return media_fail(s->err, DEMS_MEDIA_INVALID,
                          "invalid data: video stream %d has no frame size", vi);
    for (unsigned i = 0; i < s->in->nb_streams; i++)
        if ((int)i != vi)
            s->in->streams[i]->discard = AVDISCARD_ALL;
    s->still = is_still(s->in);
    s->rot = media_stream_rotation(s->st);
    s->start = media_stream_start(s->in, s->st);
    AVRational fr = s->st->avg_frame_rate.num > 0 && s->st->avg_frame_rate.den > 0
                        ? s->st->avg_frame_rate
                        : s->st->r_frame_rate;
    s->step_us = fr.num > 0 && fr.den > 0 ? av_rescale(AV_TIME_BASE, fr.den, fr.num) : 40000;
    s->step_us = s->step_us < 1 ? 1 : s->step_us;
    s->last_us = INT64_MIN;
    if ((r = open_decoder(s)) < 0)
        return r;
    s->pkt = av_packet_alloc();
    s->frame = av_frame_alloc();
    if (s->pkt == NULL || s->frame == NULL)
        return media_fail(s->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (frames)");
    return 0;
}

/* --- result ------------------------------------------------------------- */

static json_t *source_json(const struct sampler *s)
{
    const AVCodecParameters *par = s->st->codecpar;
    AVRational fr = s->st->avg_frame_rate.num > 0 && s->st->avg_frame_rate.den > 0
                        ? s->st->avg_frame_rate
                        : s->st->r_frame_rate;

    return json_pack("{s:s, s:i, s:i, s:f, s:i, s:b}", "codec", avcodec_get_name(par->codec_id),
                     "width", par->width, "height", par->height, "fps",
                     !s->still && fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 0.0, "rotation", s->rot,
                     "still", s->still);
}

static json_t *params_json(const struct sampler *s)
{
    return json_pack("{s:f, s:i, s:b, s:i, s:s, s:s, s:s, s:i, s:s, s:i, s:s}", "fps", s->p->fps,
                     "max_side", (int)s->p->max_side, "skip_nonref", s->p->skip_nonref, "threads",
                     s->p->threads, "pix_fmt", "rgb24", "scale", "bicubic", "yuv_matrix",
                     "the stream's (bt601 when unspecified)", "rotation_applied", s->rot, "format",
                     "DFRM", "version", DEMS_MEDIA_FRAME_VERSION, "sampling",
                     "first decoded frame at or after each multiple of 1/fps");
}

static int result_json(const struct sampler *s, json_t **ret)
{
    double duration = (double)s->max_us / 1e6;

    if (s->in->duration != AV_NOPTS_VALUE && s->in->duration > 0)
        duration = (double)s->in->duration / AV_TIME_BASE;
    json_t *res = json_pack("{s:i, s:I, s:I, s:f, s:i, s:i, s:i, s:o, s:o, s:o, s:o}", "frames",
                            (int)s->written, "decoded", (json_int_t)s->decoded, "decode_errors",
                            (json_int_t)s->errors, "duration", s->still ? 0.0 : duration, "width",
                            s->first_w, "height", s->first_h, "resized", s->resized, "source",
                            source_json(s), "params", params_json(s), "limits",
                            media_limits_json(s->lim), "ffmpeg", dems_media_versions());

    if (res == NULL)
        return media_fail(s->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (result)");
    *ret = res;
    return 0;
}

/* --- entry ------------------------------------------------------------- */

static void sampler_done(struct sampler *s)
{
    avcodec_free_context(&s->dec);
    sws_freeContext(s->sws);
    av_frame_free(&s->scaled);
    av_frame_free(&s->frame);
    av_packet_free(&s->pkt);
    av_freep(&s->buf);
    media_input_close(&s->in);
}

static int check_params(const struct dems_media_frames_params *p, struct dems_media_error *err)
{
    if (p == NULL || !(p->fps > 0 && p->fps <= 30) || p->max_side < 16 || p->max_side > 16384 ||
        p->threads < 1 || p->threads > 16)
        return media_fail(err, DEMS_MEDIA_INTERNAL, "invalid frame sampling parameters");
    return 0;
}

/*
 * SIGPIPE is blocked in this thread while we write, so a reader that went
 * away makes write fail with EPIPE instead of killing the process (the
 * sandbox child starts with every signal at its default). A SIGPIPE our
 * write raised is then pending on this thread; setting SIG_IGN discards it
 * (POSIX) before the old mask comes back.
 */
static void restore_sigpipe(const sigset_t *old, bool raised)
{
    if (raised && !sigismember(old, SIGPIPE)) {
        struct sigaction ign = {.sa_handler = SIG_IGN}, prev;
        sigemptyset(&ign.sa_mask);
        if (sigaction(SIGPIPE, &ign, &prev) == 0) {
            pthread_sigmask(SIG_SETMASK, old, NULL);
            sigaction(SIGPIPE, &prev, NULL);
            return;
        }
    }
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

int dems_media_frames(int in_fd, int out_fd, const struct dems_media_frames_params *p,
                      const struct dems_media_limits *lim, json_t **ret_result,
                      struct dems_media_error *err)
{
    struct dems_media_error local = {0};
    struct sampler s = {.p = p, .lim = lim, .out_fd = out_fd, .err = err != NULL ? err : &local};
    sigset_t pipe_set, old;
    int r;

    s.err->code = DEMS_MEDIA_OK;
    if ((r = check_params(p, s.err)) < 0)
        return r;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    r = setup(&s, in_fd);
    if (r == 0)
        r = run(&s);
    if (r == 0)
        r = result_json(&s, ret_result);
    sampler_done(&s);
    restore_sigpipe(&old, s.broken_pipe);
    return r;
}

/* --- in the sandbox ------------------------------------------------------- */

struct frames_args {
    int in_fd, out_fd;
    const struct dems_media_frames_params *p;
    const struct dems_media_limits *lim;
};

static int frames_child(void *arg, json_t **ret, struct dems_media_error *err)
{
    const struct frames_args *a = arg;

    return dems_media_frames(a->in_fd, a->out_fd, a->p, a->lim, ret, err);
}

int dems_media_frames_sandboxed(int in_fd, int out_fd, const struct dems_media_frames_params *p,
                                const struct dems_media_limits *lim, json_t **ret_result,
                                struct dems_media_error *err)
{
    struct dems_media_error local = {0};
    struct frames_args a = {.in_fd = in_fd, .out_fd = out_fd, .p = p, .lim = lim};
    const int keep[2] = {in_fd, out_fd};
    int r;

    err = err != NULL ? err : &local;
    if ((r = check_params(p, err)) < 0)
        return r;
    return dems_media_sandbox_run(keep, 2, lim, frames_child, &a, ret_result, err);
}
