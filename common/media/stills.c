/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The poster JPEG and the thumbnail sprite with its WebVTT index. Both are
 * fed the proxy's upright, scaled frames, so they cost one small scale per
 * thumbnail and nothing per ordinary frame.
 */
#include <libavcodec/avcodec.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dems/err.h"
#include "dems/media.h"

#include "media_int.h"

struct tile {
    AVFrame *frame;
    double t;
};

struct media_stills {
    const struct dems_media_params *p;
    int width, height;  /* the proxy's frames */
    int tile_w, tile_h; /* one thumbnail */
    double interval;    /* seconds between thumbnails */
    double poster_at;   /* seconds */
    double next_tile;   /* time of the next thumbnail */
    AVFrame *poster;    /* a copy of the chosen frame (yuv420p) */
    double poster_t;    /* its time */
    bool poster_final;  /* reached poster_at */
    struct tile *tiles; /* max_tiles entries */
    int ntiles;
    struct SwsContext *sws; /* proxy frame -> tile */
};

static int even(double v)
{
    int r = 2 * (int)lround(v / 2);
    return r < 2 ? 2 : r;
}

struct media_stills *media_stills_new(const struct dems_media_params *p, int width, int height,
                                      double duration, double poster_at)
{
    struct media_stills *s = av_mallocz(sizeof(*s));

    if (s == NULL)
        return NULL;
    s->p = p;
    s->width = width;
    s->height = height;
    s->tile_w = p->tile_width < width ? even(p->tile_width) : even(width);
    s->tile_h = even((double)s->tile_w * height / width);
    s->interval = p->thumb_interval;
    /* Long recordings get fewer, wider-spaced thumbnails, never more than
     * max_tiles; the interval stays a whole number of seconds. */
    if (duration > 0 && duration / s->interval > p->max_tiles)
        s->interval = ceil(duration / p->max_tiles);
    s->poster_at = poster_at;
    s->tiles = av_calloc((size_t)p->max_tiles, sizeof(*s->tiles));
    s->sws = sws_getContext(width, height, AV_PIX_FMT_YUV420P, s->tile_w, s->tile_h,
                            AV_PIX_FMT_YUVJ420P, SWS_BICUBIC, NULL, NULL, NULL);
    if (s->tiles == NULL || s->sws == NULL) {
        media_stills_free(s);
        return NULL;
    }
    return s;
}

void media_stills_free(struct media_stills *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->ntiles; i++)
        av_frame_free(&s->tiles[i].frame);
    av_free(s->tiles);
    av_frame_free(&s->poster);
    sws_freeContext(s->sws);
    av_free(s);
}

static AVFrame *frame_new(int w, int h, enum AVPixelFormat fmt)
{
    AVFrame *f = av_frame_alloc();

    if (f == NULL)
        return NULL;
    f->width = w;
    f->height = h;
    f->format = fmt;
    if (av_frame_get_buffer(f, 0) < 0)
        av_frame_free(&f);
    return f;
}

static int take_poster(struct media_stills *s, const AVFrame *frame, double t)
{
    if (s->poster == NULL) {
        s->poster = frame_new(s->width, s->height, AV_PIX_FMT_YUV420P);
        if (s->poster == NULL)
            return DEMS_ENOMEM;
    }
    if (av_frame_copy(s->poster, frame) < 0)
        return DEMS_EINTERNAL;
    s->poster_t = t;
    return 0;
}

int media_stills_offer(struct media_stills *s, const AVFrame *frame, double t)
{
    int r;

    /* The first decodable frame stands in until poster_at is reached. */
    if (!s->poster_final && (s->poster == NULL || t >= s->poster_at)) {
        r = take_poster(s, frame, t);
        if (r < 0)
            return r;
        s->poster_final = t >= s->poster_at;
    }
    if (t < s->next_tile || s->ntiles >= s->p->max_tiles)
        return 0;
    AVFrame *tf = frame_new(s->tile_w, s->tile_h, AV_PIX_FMT_YUVJ420P);
    if (tf == NULL)
        return DEMS_ENOMEM;
    sws_scale(s->sws, (const uint8_t *const *)frame->data, frame->linesize, 0, s->height, tf->data,
              tf->linesize);
    s->tiles[s->ntiles++] = (struct tile){.frame = tf, .t = t};
    s->next_tile = (floor(t / s->interval) + 1) * s->interval;
    return 0;
}

/* Encodes one yuvj420p frame as a baseline JPEG into *ret_pkt. */
static int encode_jpeg(const AVFrame *f, int quality, AVPacket **ret_pkt)
{
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
    AVCodecContext *c = codec != NULL ? avcodec_alloc_context3(codec) : NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *in = av_frame_clone(f);
    int r = AVERROR(ENOMEM);

    if (c == NULL || pkt == NULL || in == NULL)
        goto done;
    c->width = f->width;
    c->height = f->height;
    c->pix_fmt = AV_PIX_FMT_YUVJ420P;
    c->time_base = (AVRational){1, 1};
    c->flags |= AV_CODEC_FLAG_QSCALE;
    c->global_quality = quality * FF_QP2LAMBDA;
    c->thread_count = 1;
    in->quality = c->global_quality;
    in->pts = 0;
    r = avcodec_open2(c, codec, NULL);
    if (r >= 0)
        r = avcodec_send_frame(c, in);
    if (r >= 0)
        r = avcodec_receive_packet(c, pkt);
done:
    av_frame_free(&in);
    avcodec_free_context(&c);
    if (r < 0) {
        av_packet_free(&pkt);
        return r;
    }
    *ret_pkt = pkt;
    return 0;
}

static int write_jpeg(int fd, const AVFrame *f, int quality, size_t *ret_bytes,
                      struct dems_media_error *err)
{
    AVPacket *pkt = NULL;
    int r = encode_jpeg(f, quality, &pkt);

    if (r < 0)
        return media_fail_av(err, r, "jpeg encoder");
    r = media_write_file(fd, pkt->data, (size_t)pkt->size);
    *ret_bytes = (size_t)pkt->size;
    av_packet_free(&pkt);
    if (r < 0)
        return media_fail(err, DEMS_MEDIA_OUTPUT, "output failed: writing a JPEG");
    return 0;
}

static int poster_finish(struct media_stills *s, int fd, json_t *outputs,
                         struct dems_media_error *err)
{
    json_t *o = json_object();
    size_t bytes = 0;
    int r = 0;

    json_object_set_new(outputs, "poster", o);
    if (fd < 0 || s->poster == NULL) {
        json_object_set_new(o, "produced", json_false());
        return 0;
    }
    AVFrame *j = frame_new(s->width, s->height, AV_PIX_FMT_YUVJ420P);
    struct SwsContext *sws =
        sws_getContext(s->width, s->height, AV_PIX_FMT_YUV420P, s->width, s->height,
                       AV_PIX_FMT_YUVJ420P, SWS_BICUBIC, NULL, NULL, NULL);
    if (j == NULL || sws == NULL) {
        r = media_fail(err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (poster)");
        goto done;
    }
    sws_scale(sws, (const uint8_t *const *)s->poster->data, s->poster->linesize, 0, s->height,
              j->data, j->linesize);
    r = write_jpeg(fd, j, s->p->jpeg_quality, &bytes, err);
    if (r < 0)
        goto done;
    json_object_set_new(o, "produced", json_true());
    json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
    json_object_set_new(o, "width", json_integer(s->width));
    json_object_set_new(o, "height", json_integer(s->height));
    json_object_set_new(o, "time", json_real(s->poster_t));
done:
    sws_freeContext(sws);
    av_frame_free(&j);
    return r;
}

static AVFrame *sprite_compose(struct media_stills *s, int cols, int rows)
{
    AVFrame *f = frame_new(cols * s->tile_w, rows * s->tile_h, AV_PIX_FMT_YUVJ420P);

    if (f == NULL)
        return NULL;
    /* Black background for the unused cells of the last row. */
    for (int y = 0; y < f->height; y++)
        memset(f->data[0] + (size_t)y * (size_t)f->linesize[0], 0, (size_t)f->width);
    for (int p = 1; p < 3; p++)
        for (int y = 0; y < f->height / 2; y++)
            memset(f->data[p] + (size_t)y * (size_t)f->linesize[p], 128, (size_t)f->width / 2);
    for (int i = 0; i < s->ntiles; i++) {
        const AVFrame *t = s->tiles[i].frame;
        int x0 = (i % cols) * s->tile_w, y0 = (i / cols) * s->tile_h;
        for (int p = 0; p < 3; p++) {
            int sh = p == 0 ? 0 : 1;
            for (int y = 0; y < (s->tile_h >> sh); y++)
                memcpy(f->data[p] + (size_t)((y0 >> sh) + y) * (size_t)f->linesize[p] +
                           (size_t)(x0 >> sh),
                       t->data[p] + (size_t)y * (size_t)t->linesize[p], (size_t)(s->tile_w >> sh));
        }
    }
    return f;
}

static void vtt_time(char *buf, size_t n, double t)
{
    long long ms = llround(t * 1000.0);

    snprintf(buf, n, "%02lld:%02lld:%02lld.%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60,
             ms % 1000);
}

/* The WebVTT index and the JSON list of thumbnails. */
static int index_finish(struct media_stills *s, int cols, int fd, double duration, json_t *outputs,
                        struct dems_media_error *err)
{
    json_t *list = json_array(), *o = json_object();
    size_t cap = 32 + (size_t)s->ntiles * 96, len = 0;
    char *vtt = av_malloc(cap);
    int r = 0;

    json_object_set_new(outputs, "thumbnails", list);
    json_object_set_new(outputs, "index", o);
    if (vtt == NULL)
        return media_fail(err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (index)");
    len += (size_t)snprintf(vtt, cap, "WEBVTT\n\n");
    for (int i = 0; i < s->ntiles; i++) {
        int x = (i % cols) * s->tile_w, y = (i / cols) * s->tile_h;
        double t0 = s->tiles[i].t;
        double t1 =
            i + 1 < s->ntiles ? s->tiles[i + 1].t : (duration > t0 ? duration : t0 + s->interval);
        char a[32], b[32];
        vtt_time(a, sizeof(a), t0);
        vtt_time(b, sizeof(b), t1);
        len += (size_t)snprintf(vtt + len, cap - len, "%s --> %s\nsprite.jpg#xywh=%d,%d,%d,%d\n\n",
                                a, b, x, y, s->tile_w, s->tile_h);
        json_array_append_new(list, json_pack("{s:f, s:i, s:i, s:i, s:i}", "t", t0, "x", x, "y", y,
                                              "w", s->tile_w, "h", s->tile_h));
    }
    if (fd >= 0 && s->ntiles > 0) {
        if (media_write_file(fd, (const uint8_t *)vtt, len) < 0)
            r = media_fail(err, DEMS_MEDIA_OUTPUT, "output failed: writing the index");
        json_object_set_new(o, "produced", json_boolean(r == 0));
        json_object_set_new(o, "bytes", json_integer((json_int_t)len));
        json_object_set_new(o, "format", json_string("webvtt"));
    } else {
        json_object_set_new(o, "produced", json_false());
    }
    av_free(vtt);
    return r;
}

static int sprite_finish(struct media_stills *s, int cols, int fd, json_t *outputs,
                         struct dems_media_error *err)
{
    json_t *o = json_object();
    int rows = (s->ntiles + cols - 1) / cols;
    size_t bytes = 0;
    int r;

    json_object_set_new(outputs, "sprite", o);
    if (fd < 0 || s->ntiles == 0) {
        json_object_set_new(o, "produced", json_false());
        return 0;
    }
    AVFrame *f = sprite_compose(s, cols, rows);
    if (f == NULL)
        return media_fail(err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (sprite)");
    r = write_jpeg(fd, f, s->p->jpeg_quality, &bytes, err);
    if (r == 0) {
        json_object_set_new(o, "produced", json_true());
        json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
        json_object_set_new(o, "width", json_integer(f->width));
        json_object_set_new(o, "height", json_integer(f->height));
        json_object_set_new(o, "columns", json_integer(cols));
        json_object_set_new(o, "rows", json_integer(rows));
        json_object_set_new(o, "count", json_integer(s->ntiles));
    }
    av_frame_free(&f);
    return r;
}

int media_stills_finish(struct media_stills *s, const struct dems_media_outputs *out,
                        double duration, json_t *outputs, json_t *params,
                        struct dems_media_error *err)
{
    int cols =
        s->ntiles < s->p->tile_columns ? (s->ntiles > 0 ? s->ntiles : 1) : s->p->tile_columns;
    int r = poster_finish(s, out->poster_fd, outputs, err);

    if (r == 0)
        r = sprite_finish(s, cols, out->sprite_fd, outputs, err);
    if (r == 0)
        r = index_finish(s, cols, out->index_fd, duration, outputs, err);
    json_object_set_new(params, "poster",
                        json_pack("{s:s, s:f, s:f, s:i, s:s, s:s}", "rule",
                                  "first frame at or after fraction x duration, else the first "
                                  "decodable frame",
                                  "fraction", s->p->poster_fraction, "time", s->poster_at, "qscale",
                                  s->p->jpeg_quality, "pix_fmt", "yuvj420p", "scale", "bicubic"));
    json_object_set_new(params, "thumbnails",
                        json_pack("{s:f, s:i, s:i, s:i, s:i, s:i, s:s}", "interval", s->interval,
                                  "tile_width", s->tile_w, "tile_height", s->tile_h, "columns",
                                  cols, "max_tiles", s->p->max_tiles, "qscale", s->p->jpeg_quality,
                                  "scale", "bicubic"));
    return r;
}
