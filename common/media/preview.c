/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The preview pipeline: one pass over the input decodes the chosen video and
 * audio streams, scales (libswscale) and turns the video upright, resamples
 * the audio (libswresample), encodes H.264 (libx264) and AAC into an MP4 with
 * faststart, and hands the upright frames to the stills collector. Source
 * timestamps are kept, so variable and odd frame rates come out as they went
 * in. Every decoded frame is checked against the frame-size, total-pixel and
 * duration limits.
 */
#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/cpu.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"

#include "media_int.h"

struct vpipe {
    AVStream *ist;
    AVCodecContext *dec, *enc;
    AVStream *ost;
    struct SwsContext *sws;
    int in_w, in_h, in_fmt; /* what sws was made for */
    int rot;                /* clockwise degrees applied */
    int sw, sh;             /* scaled, before rotation */
    int ow, oh;             /* upright output */
    AVFrame *scaled, *upright;
    int64_t start;    /* input start, in ist->time_base */
    int64_t last_pts; /* last encoded pts */
    int64_t frames;   /* frames encoded */
    int64_t decoded;  /* frames decoded */
    int64_t errors;   /* packets the decoder refused */
    int gop, threads;
};

struct apipe {
    AVStream *ist;
    AVCodecContext *dec, *enc;
    AVStream *ost;
    SwrContext *swr;
    AVAudioFifo *fifo;
    AVFrame *frame;
    int64_t start;    /* input start, in ist->time_base */
    int64_t next_pts; /* in samples at the output rate */
    bool started;
    int64_t decoded;
    int64_t errors;
};

struct job {
    const struct dems_media_params *p;
    const struct dems_media_limits *lim;
    const struct dems_media_outputs *out;
    struct dems_media_error *err;
    AVFormatContext *in, *mux;
    AVIOContext *mux_pb;
    struct vpipe v;
    struct apipe a;
    bool has_v, has_a;
    uint64_t total_px;
    double duration; /* declared, seconds; 0 when unknown */
    double max_t;    /* latest decoded time */
    int64_t in_size; /* bytes, -1 when not a regular file */
    struct media_stills *stills;
    AVPacket *pkt, *opkt;
    AVFrame *frame;
};

static int even(double v)
{
    int r = 2 * (int)lround(v / 2);
    return r < 2 ? 2 : r;
}

/* --- output ------------------------------------------------------------ */

/* faststart: the mp4 muxer re-opens its output for reading to move the moov
 * atom to the front; we hand it a reader over the same fd. */
static int reopen_proxy(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                        AVDictionary **options)
{
    const struct job *j = s->opaque;

    (void)url;
    (void)options;
    if ((flags & AVIO_FLAG_WRITE) != 0)
        return AVERROR(EPERM);
    *pb = media_avio_reader(j->out->proxy_fd);
    return *pb != NULL ? 0 : AVERROR(ENOMEM);
}

static int close_reopened(struct AVFormatContext *s, AVIOContext *pb)
{
    (void)s;
    media_avio_free(&pb);
    return 0;
}

static int write_packets(struct job *j, AVCodecContext *enc, AVStream *ost)
{
    int r;

    while ((r = avcodec_receive_packet(enc, j->opkt)) >= 0) {
        av_packet_rescale_ts(j->opkt, enc->time_base, ost->time_base);
        j->opkt->stream_index = ost->index;
        r = av_interleaved_write_frame(j->mux, j->opkt);
        if (r < 0)
            return media_fail_av(j->err, r, "mp4 muxer");
    }
    if (r != AVERROR(EAGAIN) && r != AVERROR_EOF)
        return media_fail_av(j->err, r, "encoder");
    return 0;
}

static int open_video_encoder(struct job *j)
{
    struct vpipe *v = &j->v;
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    AVDictionary *opts = NULL;
    AVRational fr = v->ist->avg_frame_rate;
    int r;

    if (codec == NULL)
        return media_fail(j->err, DEMS_MEDIA_INTERNAL, "libx264 encoder not available");
    if (fr.num <= 0 || fr.den <= 0)
        fr = v->ist->r_frame_rate;
    v->enc = avcodec_alloc_context3(codec);
    if (v->enc == NULL)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (encoder)");
    v->enc->width = v->ow;
    v->enc->height = v->oh;
    v->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    v->enc->sample_aspect_ratio = (AVRational){1, 1};
    v->enc->time_base = v->ist->time_base;
    if (fr.num > 0 && fr.den > 0)
        v->enc->framerate = fr;
    v->gop = fr.num > 0 && fr.den > 0 ? (int)lround(j->p->gop_seconds * av_q2d(fr)) : 50;
    v->gop = v->gop < 1 ? 1 : v->gop > 600 ? 600 : v->gop;
    v->enc->gop_size = v->gop;
    v->enc->thread_count = v->threads;
    v->enc->color_range = AVCOL_RANGE_MPEG;
    v->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    av_dict_set(&opts, "preset", j->p->preset, 0);
    av_dict_set_int(&opts, "crf", j->p->crf, 0);
    av_dict_set(&opts, "profile", "high", 0);
    r = avcodec_open2(v->enc, codec, &opts);
    av_dict_free(&opts);
    if (r < 0)
        return media_fail_av(j->err, r, "libx264 open");
    v->ost = avformat_new_stream(j->mux, NULL);
    if (v->ost == NULL)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (mp4 stream)");
    v->ost->time_base = v->enc->time_base;
    v->ost->avg_frame_rate = v->enc->framerate;
    r = avcodec_parameters_from_context(v->ost->codecpar, v->enc);
    return r < 0 ? media_fail_av(j->err, r, "video stream") : 0;
}

/* AAC keeps the input's sample rate when AAC has it, else 48 kHz; mono stays
 * mono and everything else becomes stereo. */
static int aac_rate(int in)
{
    static const int rates[] = {96000, 88200, 64000, 48000, 44100, 32000,
                                24000, 22050, 16000, 12000, 11025, 8000};

    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
        if (rates[i] == in)
            return in;
    return 48000;
}

static int open_audio_encoder(struct job *j)
{
    struct apipe *a = &j->a;
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
    int r;

    if (codec == NULL)
        return media_fail(j->err, DEMS_MEDIA_INTERNAL, "aac encoder not available");
    a->enc = avcodec_alloc_context3(codec);
    if (a->enc == NULL)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (encoder)");
    a->enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
    a->enc->sample_rate = aac_rate(a->dec->sample_rate);
    if (a->dec->ch_layout.nb_channels == 1)
        av_channel_layout_from_mask(&a->enc->ch_layout, AV_CH_LAYOUT_MONO);
    else
        av_channel_layout_from_mask(&a->enc->ch_layout, AV_CH_LAYOUT_STEREO);
    a->enc->bit_rate = j->p->audio_bitrate;
    a->enc->time_base = (AVRational){1, a->enc->sample_rate};
    a->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    r = avcodec_open2(a->enc, codec, NULL);
    if (r < 0)
        return media_fail_av(j->err, r, "aac open");
    r = swr_alloc_set_opts2(&a->swr, &a->enc->ch_layout, a->enc->sample_fmt, a->enc->sample_rate,
                            &a->dec->ch_layout, a->dec->sample_fmt, a->dec->sample_rate, 0, NULL);
    if (r >= 0)
        r = swr_init(a->swr);
    if (r < 0)
        return media_fail_av(j->err, r, "resampler");
    a->fifo = av_audio_fifo_alloc(a->enc->sample_fmt, a->enc->ch_layout.nb_channels, 4096);
    a->frame = av_frame_alloc();
    a->ost = avformat_new_stream(j->mux, NULL);
    if (a->fifo == NULL || a->frame == NULL || a->ost == NULL)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (audio)");
    a->ost->time_base = a->enc->time_base;
    r = avcodec_parameters_from_context(a->ost->codecpar, a->enc);
    return r < 0 ? media_fail_av(j->err, r, "audio stream") : 0;
}

static int open_mux(struct job *j)
{
    AVDictionary *opts = NULL;
    int r;

    if (ftruncate(j->out->proxy_fd, 0) < 0)
        return media_fail(j->err, DEMS_MEDIA_OUTPUT, "output failed: proxy: %s", strerror(errno));
    r = avformat_alloc_output_context2(&j->mux, NULL, "mp4", NULL);
    if (r < 0)
        return media_fail_av(j->err, r, "mp4 muxer");
    j->mux_pb = media_avio_writer(j->out->proxy_fd);
    if (j->mux_pb == NULL)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (mp4)");
    j->mux->pb = j->mux_pb;
    j->mux->flags |= AVFMT_FLAG_CUSTOM_IO;
    j->mux->opaque = j;
    j->mux->io_open = reopen_proxy;
    j->mux->io_close2 = close_reopened;
    if (j->has_v && (r = open_video_encoder(j)) < 0)
        return r;
    if (j->has_a && (r = open_audio_encoder(j)) < 0)
        return r;
    av_dict_set(&opts, "movflags", "+faststart", 0);
    r = avformat_write_header(j->mux, &opts);
    av_dict_free(&opts);
    return r < 0 ? media_fail_av(j->err, r, "mp4 header") : 0;
}

/* --- input ------------------------------------------------------------- */

int media_pick_stream(AVFormatContext *fmt, enum AVMediaType type)
{
    int best = av_find_best_stream(fmt, type, -1, -1, NULL, 0);

    if (best >= 0 && !(fmt->streams[best]->disposition & AV_DISPOSITION_ATTACHED_PIC))
        return best;
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        if (fmt->streams[i]->codecpar->codec_type == type &&
            !(fmt->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC))
            return (int)i;
    return -1;
}

static int open_decoder(struct job *j, AVStream *st, int threads, AVCodecContext **ret)
{
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    AVCodecContext *c;
    int r;

    if (codec == NULL)
        return media_fail(j->err, DEMS_MEDIA_UNSUPPORTED, "unsupported codec: %s",
                          avcodec_get_name(st->codecpar->codec_id));
    c = avcodec_alloc_context3(codec);
    *ret = c;
    if (c == NULL)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (decoder)");
    r = avcodec_parameters_to_context(c, st->codecpar);
    if (r < 0)
        return media_fail_av(j->err, r, "decoder parameters");
    c->max_pixels = (int64_t)j->lim->max_pixels;
    c->pkt_timebase = st->time_base;
    c->thread_count = threads;
    r = avcodec_open2(c, codec, NULL);
    return r < 0 ? media_fail_av(j->err, r, "decoder open") : 0;
}

/* Output size: square pixels, upright, within max_width x max_height (the
 * box turned for portrait), never upscaled, even sides. */
static void plan_video(struct job *j)
{
    struct vpipe *v = &j->v;
    const AVCodecParameters *par = v->ist->codecpar;
    AVRational sar = par->sample_aspect_ratio;
    double dw = par->width, dh = par->height;
    double bw = j->p->max_width, bh = j->p->max_height;

    if (sar.num > 0 && sar.den > 0)
        dw = dw * sar.num / sar.den;
    v->rot = media_stream_rotation(v->ist);
    if (v->rot == 90 || v->rot == 270) {
        double t = dw;
        dw = dh;
        dh = t;
    }
    if (dh > dw) {
        double t = bw;
        bw = bh;
        bh = t;
    }
    double scale = fmin(1.0, fmin(bw / dw, bh / dh));
    v->ow = even(dw * scale);
    v->oh = even(dh * scale);
    v->sw = v->rot == 90 || v->rot == 270 ? v->oh : v->ow;
    v->sh = v->rot == 90 || v->rot == 270 ? v->ow : v->oh;
}

int64_t media_stream_start(const AVFormatContext *fmt, const AVStream *st)
{
    if (fmt->start_time == AV_NOPTS_VALUE)
        return st->start_time != AV_NOPTS_VALUE ? st->start_time : 0;
    return av_rescale_q(fmt->start_time, AV_TIME_BASE_Q, st->time_base);
}

static int open_streams(struct job *j)
{
    int vi = media_pick_stream(j->in, AVMEDIA_TYPE_VIDEO),
        ai = media_pick_stream(j->in, AVMEDIA_TYPE_AUDIO);
    int threads = j->p->threads > 0 ? j->p->threads : av_cpu_count() * 3 / 2;
    int r;

    if (vi < 0 && ai < 0)
        return media_fail(j->err, DEMS_MEDIA_UNSUPPORTED, "no audio or video stream");
    j->v.threads = threads < 1 ? 1 : threads > 16 ? 16 : threads;
    if (vi >= 0) {
        j->has_v = true;
        j->v.ist = j->in->streams[vi];
        j->v.start = media_stream_start(j->in, j->v.ist);
        j->v.last_pts = INT64_MIN;
        if (j->v.ist->codecpar->width <= 0 || j->v.ist->codecpar->height <= 0)
            return media_fail(j->err, DEMS_MEDIA_INVALID,
                              "invalid data: video stream %d has no frame size", vi);
        plan_video(j);
        if ((r = open_decoder(j, j->v.ist, 0, &j->v.dec)) < 0)
            return r;
    }
    if (ai >= 0) {
        j->has_a = true;
        j->a.ist = j->in->streams[ai];
        j->a.start = media_stream_start(j->in, j->a.ist);
        if ((r = open_decoder(j, j->a.ist, 1, &j->a.dec)) < 0)
            return r;
    }
    return 0;
}

/* --- video ------------------------------------------------------------- */

static void rotate_plane(uint8_t *dst, int dls, const uint8_t *src, int sls, int w, int h, int rot)
{
    /* w x h is the source plane; dst is h x w for 90/270. */
    for (int y = 0; y < h; y++) {
        const uint8_t *s = src + (ptrdiff_t)y * sls;
        for (int x = 0; x < w; x++) {
            ptrdiff_t o;
            if (rot == 90)
                o = (ptrdiff_t)x * dls + (h - 1 - y);
            else if (rot == 270)
                o = (ptrdiff_t)(w - 1 - x) * dls + y;
            else
                o = (ptrdiff_t)(h - 1 - y) * dls + (w - 1 - x);
            dst[o] = s[x];
        }
    }
}

static int alloc_frame(AVFrame **f, int w, int h)
{
    *f = av_frame_alloc();
    if (*f == NULL)
        return AVERROR(ENOMEM);
    (*f)->width = w;
    (*f)->height = h;
    (*f)->format = AV_PIX_FMT_YUV420P;
    return av_frame_get_buffer(*f, 0);
}

/* A bicubic scaler to yuv420p that slices each frame over the CPUs, as
 * ffmpeg's scale filter does. */
static struct SwsContext *scaler(const AVFrame *in, int w, int h)
{
    struct SwsContext *c = sws_alloc_context();

    if (c == NULL)
        return NULL;
    av_opt_set_int(c, "srcw", in->width, 0);
    av_opt_set_int(c, "srch", in->height, 0);
    av_opt_set_int(c, "src_format", in->format, 0);
    av_opt_set_int(c, "dstw", w, 0);
    av_opt_set_int(c, "dsth", h, 0);
    av_opt_set_int(c, "dst_format", AV_PIX_FMT_YUV420P, 0);
    av_opt_set_int(c, "sws_flags", SWS_BICUBIC, 0);
    av_opt_set_int(c, "threads", av_cpu_count(), 0);
    if (sws_init_context(c, NULL, NULL) < 0) {
        sws_freeContext(c);
        return NULL;
    }
    return c;
}

/* Scales (and turns) a decoded frame into v->upright or v->scaled; returns
 * the frame to encode. */
static AVFrame *convert(struct vpipe *v, const AVFrame *in)
{
    AVFrame *out = v->rot != 0 ? v->upright : v->scaled;

    if (v->sws == NULL || in->width != v->in_w || in->height != v->in_h ||
        in->format != v->in_fmt) {
        sws_freeContext(v->sws);
        v->sws = scaler(in, v->sw, v->sh);
        v->in_w = in->width;
        v->in_h = in->height;
        v->in_fmt = in->format;
    }
    /* The encoder may still reference the previous frame's buffers. */
    if (v->sws == NULL || av_frame_make_writable(v->scaled) < 0 || av_frame_make_writable(out) < 0)
        return NULL;
    if (sws_scale_frame(v->sws, v->scaled, in) < 0)
        return NULL;
    if (v->rot != 0)
        for (int p = 0; p < 3; p++)
            rotate_plane(out->data[p], out->linesize[p], v->scaled->data[p], v->scaled->linesize[p],
                         p == 0 ? v->sw : v->sw / 2, p == 0 ? v->sh : v->sh / 2, v->rot);
    return out;
}

static int check_time(struct job *j, double t)
{
    if (t > j->max_t)
        j->max_t = t;
    if (t > j->lim->max_duration)
        return media_fail(j->err, DEMS_MEDIA_TOO_LARGE, "duration limit exceeded: %.0f s > %.0f s",
                          t, j->lim->max_duration);
    return 0;
}

static int on_video_frame(struct job *j, AVFrame *f)
{
    struct vpipe *v = &j->v;
    int64_t pts = f->best_effort_timestamp;
    int r = media_check_size(f->width, f->height, j->lim, j->err);

    if (r < 0)
        return r;
    v->decoded++;
    uint64_t px = (uint64_t)f->width * (uint64_t)f->height;
    if (px > j->lim->max_total_pixels - j->total_px)
        return media_fail(j->err, DEMS_MEDIA_TOO_LARGE,
                          "total pixel budget exceeded: %llu px after %lld frames",
                          (unsigned long long)j->lim->max_total_pixels, (long long)v->decoded);
    j->total_px += px;
    if (pts == AV_NOPTS_VALUE)
        pts = v->last_pts == INT64_MIN ? v->start : v->last_pts + v->start + 1;
    pts -= v->start;
    /* Keep source timestamps (variable frame rates stay variable); drop a
     * frame that does not move time forward, as the mp4 muxer would refuse it. */
    if (pts <= v->last_pts)
        return 0;
    double t = (double)pts * av_q2d(v->ist->time_base);
    if ((r = check_time(j, t)) < 0)
        return r;
    AVFrame *up = convert(v, f);
    if (up == NULL)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (scaler)");
    v->last_pts = pts;
    if (j->stills != NULL && (r = media_stills_offer(j->stills, up, t)) < 0)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (thumbnails)");
    if (v->enc == NULL)
        return 0;
    up->pts = pts;
    up->pict_type = AV_PICTURE_TYPE_NONE;
    r = avcodec_send_frame(v->enc, up);
    if (r < 0)
        return media_fail_av(j->err, r, "libx264");
    v->frames++;
    return write_packets(j, v->enc, v->ost);
}

/* --- audio ------------------------------------------------------------- */

static int encode_audio(struct job *j, bool flush)
{
    struct apipe *a = &j->a;
    int fs = a->enc->frame_size, r;

    while (av_audio_fifo_size(a->fifo) >= fs || (flush && av_audio_fifo_size(a->fifo) > 0)) {
        int n = FFMIN(av_audio_fifo_size(a->fifo), fs);
        av_frame_unref(a->frame);
        a->frame->nb_samples = n;
        a->frame->format = a->enc->sample_fmt;
        a->frame->sample_rate = a->enc->sample_rate;
        if ((r = av_channel_layout_copy(&a->frame->ch_layout, &a->enc->ch_layout)) < 0 ||
            (r = av_frame_get_buffer(a->frame, 0)) < 0)
            return media_fail_av(j->err, r, "audio frame");
        av_audio_fifo_read(a->fifo, (void **)a->frame->data, n);
        a->frame->pts = a->next_pts;
        a->next_pts += n;
        if ((r = avcodec_send_frame(a->enc, a->frame)) < 0)
            return media_fail_av(j->err, r, "aac");
        if ((r = write_packets(j, a->enc, a->ost)) < 0)
            return r;
    }
    return 0;
}

static int resample(struct job *j, const AVFrame *f)
{
    struct apipe *a = &j->a;
    int max = swr_get_out_samples(a->swr, f != NULL ? f->nb_samples : 0);
    uint8_t **buf = NULL;
    int r, n;

    if (max <= 0)
        return 0;
    r = av_samples_alloc_array_and_samples(&buf, NULL, a->enc->ch_layout.nb_channels, max,
                                           a->enc->sample_fmt, 0);
    if (r < 0)
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (resampler)");
    n = swr_convert(a->swr, buf, max, f != NULL ? (const uint8_t **)(void *)f->extended_data : NULL,
                    f != NULL ? f->nb_samples : 0);
    r = n < 0 ? media_fail_av(j->err, n, "resampler") : 0;
    if (n > 0 && av_audio_fifo_write(a->fifo, (void **)buf, n) < n)
        r = media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (audio fifo)");
    av_freep(&buf[0]);
    av_freep(&buf);
    return r;
}

static int on_audio_frame(struct job *j, AVFrame *f)
{
    struct apipe *a = &j->a;
    int64_t pts = f->best_effort_timestamp;
    int r;

    a->decoded++;
    if (pts != AV_NOPTS_VALUE) {
        pts -= a->start;
        if ((r = check_time(j, (double)pts * av_q2d(a->ist->time_base))) < 0)
            return r;
        if (!a->started && a->enc != NULL) {
            /* Audio that starts late keeps its offset against the video. */
            a->next_pts = av_rescale_q(pts, a->ist->time_base, a->enc->time_base);
            a->next_pts = a->next_pts < 0 ? 0 : a->next_pts;
        }
    }
    a->started = true;
    if (a->enc == NULL)
        return 0;
    if ((r = resample(j, f)) < 0)
        return r;
    return encode_audio(j, false);
}

/* --- the decode loop --------------------------------------------------- */

/* A corrupt packet or frame is counted and skipped, as players do, unless
 * the decoder refused a new frame size over max_pixels (its get_buffer
 * fails with the new size in the context, or ff_set_dimensions zeroes it):
 * a stream that grows mid-way is refused like one that declares the size up
 * front. */
static int decode_error(struct job *j, const AVCodecContext *dec, int r, bool video)
{
    if (r == AVERROR(ENOMEM))
        return media_fail_av(j->err, r, "decoder");
    if (video && media_check_size(dec->width, dec->height, j->lim, j->err) < 0)
        return dems_media_code_err(DEMS_MEDIA_TOO_LARGE);
    if (video && r == AVERROR(EINVAL) && (dec->width == 0 || dec->height == 0))
        return media_fail(j->err, DEMS_MEDIA_TOO_LARGE,
                          "pixel budget exceeded: the decoder refused a frame over %llu px",
                          (unsigned long long)j->lim->max_pixels);
    (video ? &j->v.errors : &j->a.errors)[0]++;
    return 0;
}

static int drain(struct job *j, AVCodecContext *dec, bool video)
{
    int r;

    while ((r = avcodec_receive_frame(dec, j->frame)) >= 0) {
        r = video ? on_video_frame(j, j->frame) : on_audio_frame(j, j->frame);
        av_frame_unref(j->frame);
        if (r < 0)
            return r;
    }
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
        return 0;
    return decode_error(j, dec, r, video);
}

static int decode(struct job *j, AVCodecContext *dec, const AVPacket *pkt, bool video)
{
    int r = avcodec_send_packet(dec, pkt);

    if (r < 0 && r != AVERROR_EOF && r != AVERROR(EAGAIN) &&
        (r = decode_error(j, dec, r, video)) < 0)
        return r;
    return drain(j, dec, video);
}

static int run(struct job *j)
{
    int r;

    for (;;) {
        r = av_read_frame(j->in, j->pkt);
        if (r == AVERROR_EOF || r == AVERROR_INVALIDDATA)
            break; /* a truncated tail ends the input */
        if (r == AVERROR(ENOMEM))
            return media_fail_av(j->err, r, "demuxer");
        if (r < 0)
            return media_fail_av(j->err, r, "read");
        if (j->has_v && j->pkt->stream_index == j->v.ist->index)
            r = decode(j, j->v.dec, j->pkt, true);
        else if (j->has_a && j->pkt->stream_index == j->a.ist->index)
            r = decode(j, j->a.dec, j->pkt, false);
        av_packet_unref(j->pkt);
        if (r < 0)
            return r;
    }
    if (j->has_v && (r = decode(j, j->v.dec, NULL, true)) < 0)
        return r;
    if (j->has_a && (r = decode(j, j->a.dec, NULL, false)) < 0)
        return r;
    if (j->has_v && j->v.frames + (j->v.enc == NULL ? j->v.decoded : 0) == 0)
        return media_fail(j->err, DEMS_MEDIA_INVALID,
                          "invalid data: no decodable video frame (%lld packets refused)",
                          (long long)j->v.errors);
    if (!j->has_v && j->a.decoded == 0)
        return media_fail(j->err, DEMS_MEDIA_INVALID,
                          "invalid data: no decodable audio frame (%lld packets refused)",
                          (long long)j->a.errors);
    return 0;
}

static int finish_mux(struct job *j)
{
    int r;

    if (j->has_v) {
        if ((r = avcodec_send_frame(j->v.enc, NULL)) < 0)
            return media_fail_av(j->err, r, "libx264 flush");
        if ((r = write_packets(j, j->v.enc, j->v.ost)) < 0)
            return r;
    }
    if (j->has_a) {
        if ((r = resample(j, NULL)) < 0 || (r = encode_audio(j, true)) < 0)
            return r;
        if ((r = avcodec_send_frame(j->a.enc, NULL)) < 0)
            return media_fail_av(j->err, r, "aac flush");
        if ((r = write_packets(j, j->a.enc, j->a.ost)) < 0)
            return r;
    }
    r = av_write_trailer(j->mux);
    if (r < 0)
        return media_fail_av(j->err, r, "mp4 trailer (faststart)");
    avio_flush(j->mux_pb);
    return j->mux_pb->error < 0 ? media_fail_av(j->err, j->mux_pb->error, "proxy write") : 0;
}

/* --- result ------------------------------------------------------------ */

static json_t *params_json(const struct job *j)
{
    json_t *o = json_object();

    if (j->has_v)
        json_object_set_new(
            o, "video",
            json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:i, s:s, s:i, s:i, s:f, s:i, s:s, "
                      "s:s}",
                      "encoder", "libx264", "codec", "h264", "preset", j->p->preset, "crf",
                      j->p->crf, "profile", "high", "pix_fmt", "yuv420p", "width", j->v.ow,
                      "height", j->v.oh, "scale", "bicubic", "rotation_applied", j->v.rot, "gop",
                      j->v.gop, "gop_seconds", j->p->gop_seconds, "threads", j->v.threads,
                      "timestamps", "source (variable frame rate kept)", "color_range", "tv"));
    if (j->has_a)
        json_object_set_new(o, "audio",
                            json_pack("{s:s, s:s, s:i, s:i, s:i, s:s}", "encoder", "aac", "profile",
                                      "LC", "bit_rate", j->p->audio_bitrate, "sample_rate",
                                      j->a.enc->sample_rate, "channels",
                                      j->a.enc->ch_layout.nb_channels, "sample_fmt", "fltp"));
    json_object_set_new(o, "container",
                        json_pack("{s:s, s:s}", "format", "mp4", "movflags", "+faststart"));
    return o;
}

json_t *media_limits_json(const struct dems_media_limits *l)
{
    return json_pack("{s:I, s:i, s:I, s:f, s:I, s:I}", "max_pixels", (json_int_t)l->max_pixels,
                     "max_side", (int)l->max_side, "max_total_pixels",
                     (json_int_t)l->max_total_pixels, "max_duration", l->max_duration, "probesize",
                     (json_int_t)l->probesize, "analyzeduration", (json_int_t)l->analyzeduration);
}

static json_t *proxy_json(const struct job *j)
{
    struct stat st;
    json_t *o = json_object();

    json_object_set_new(o, "produced", json_true());
    if (fstat(j->out->proxy_fd, &st) == 0)
        json_object_set_new(o, "bytes", json_integer((json_int_t)st.st_size));
    json_object_set_new(o, "video", json_boolean(j->has_v));
    json_object_set_new(o, "audio", json_boolean(j->has_a));
    if (j->has_v) {
        json_object_set_new(o, "width", json_integer(j->v.ow));
        json_object_set_new(o, "height", json_integer(j->v.oh));
        json_object_set_new(o, "frames", json_integer(j->v.frames));
        json_object_set_new(o, "decode_errors", json_integer(j->v.errors));
    }
    json_object_set_new(o, "duration", json_real(j->max_t));
    json_object_set_new(o, "faststart", json_true());
    return o;
}

static int result_json(struct job *j, json_t **ret)
{
    json_t *res = json_object(), *outputs = json_object(), *params = params_json(j);
    int r = 0;

    json_object_set_new(res, "probe", media_probe_json(j->in, j->in_size));
    if (j->mux != NULL)
        json_object_set_new(outputs, "proxy", proxy_json(j));
    else
        json_object_set_new(outputs, "proxy", json_pack("{s:b}", "produced", 0));
    if (j->stills != NULL) {
        r = media_stills_finish(j->stills, j->out, j->duration > 0 ? j->duration : j->max_t,
                                outputs, params, j->err);
    } else {
        const char *why = j->has_v ? "not requested" : "audio-only input";
        json_object_set_new(outputs, "poster",
                            json_pack("{s:b, s:s}", "produced", 0, "reason", why));
        json_object_set_new(outputs, "sprite",
                            json_pack("{s:b, s:s}", "produced", 0, "reason", why));
        json_object_set_new(outputs, "index",
                            json_pack("{s:b, s:s}", "produced", 0, "reason", why));
        json_object_set_new(outputs, "thumbnails", json_array());
    }
    json_object_set_new(res, "outputs", outputs);
    json_object_set_new(res, "params", params);
    json_object_set_new(res, "limits", media_limits_json(j->lim));
    json_object_set_new(res, "ffmpeg", dems_media_versions());
    if (r < 0) {
        json_decref(res);
        return r;
    }
    *ret = res;
    return 0;
}

/* --- entry ------------------------------------------------------------- */

static void job_done(struct job *j)
{
    avcodec_free_context(&j->v.dec);
    avcodec_free_context(&j->v.enc);
    sws_freeContext(j->v.sws);
    av_frame_free(&j->v.scaled);
    av_frame_free(&j->v.upright);
    avcodec_free_context(&j->a.dec);
    avcodec_free_context(&j->a.enc);
    swr_free(&j->a.swr);
    if (j->a.fifo != NULL)
        av_audio_fifo_free(j->a.fifo);
    av_frame_free(&j->a.frame);
    avformat_free_context(j->mux);
    media_avio_free(&j->mux_pb);
    media_stills_free(j->stills);
    av_packet_free(&j->pkt);
    av_packet_free(&j->opkt);
    av_frame_free(&j->frame);
    media_input_close(&j->in);
}

static int setup(struct job *j, int in_fd)
{
    struct stat st;
    int r = media_input_open(in_fd, j->lim, &j->in, j->err);

    if (r < 0)
        return r;
    j->in_size = fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1;
    if (j->in->duration != AV_NOPTS_VALUE && j->in->duration > 0)
        j->duration = (double)j->in->duration / AV_TIME_BASE;
    if ((r = open_streams(j)) < 0)
        return r;
    j->pkt = av_packet_alloc();
    j->opkt = av_packet_alloc();
    j->frame = av_frame_alloc();
    if (j->pkt == NULL || j->opkt == NULL || j->frame == NULL ||
        (j->has_v && (alloc_frame(&j->v.scaled, j->v.sw, j->v.sh) < 0 ||
                      alloc_frame(&j->v.upright, j->v.ow, j->v.oh) < 0)))
        return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (frames)");
    if (j->out->proxy_fd >= 0 && (r = open_mux(j)) < 0)
        return r;
    if (j->has_v && (j->out->poster_fd >= 0 || j->out->sprite_fd >= 0 || j->out->index_fd >= 0)) {
        j->stills = media_stills_new(j->p, j->v.ow, j->v.oh, j->duration,
                                     j->duration * j->p->poster_fraction);
        if (j->stills == NULL)
            return media_fail(j->err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (stills)");
    }
    return 0;
}

static int check_params(const struct dems_media_params *p, struct dems_media_error *err)
{
    if (p->max_width < 16 || p->max_height < 16 || p->crf < 0 || p->crf > 51 || p->preset == NULL ||
        !(p->gop_seconds > 0) || p->threads < 0 || p->audio_bitrate < 8000 ||
        !(p->poster_fraction >= 0 && p->poster_fraction <= 1) || !(p->thumb_interval > 0) ||
        p->tile_width < 16 || p->tile_columns < 1 || p->max_tiles < 1 || p->max_tiles > 10000 ||
        p->jpeg_quality < 2 || p->jpeg_quality > 31)
        return media_fail(err, DEMS_MEDIA_INTERNAL, "invalid preview parameters");
    return 0;
}

int dems_media_preview(int in_fd, const struct dems_media_outputs *out,
                       const struct dems_media_params *p, const struct dems_media_limits *lim,
                       json_t **ret_result, struct dems_media_error *err)
{
    struct dems_media_error local = {0};
    struct job j = {.p = p, .lim = lim, .out = out, .err = err != NULL ? err : &local};
    int r;

    j.err->code = DEMS_MEDIA_OK;
    r = check_params(p, j.err);
    if (r == 0)
        r = setup(&j, in_fd);
    if (r == 0)
        r = run(&j);
    if (r == 0 && j.mux != NULL)
        r = finish_mux(&j);
    if (r == 0)
        r = result_json(&j, ret_result);
    job_done(&j);
    return r;
}
