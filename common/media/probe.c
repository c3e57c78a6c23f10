/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening an input under the limits and describing it: container, streams,
 * frame rates, rotation, creation time, device and GPS metadata. The limits
 * on declared frame sizes and duration are checked here, before any decoder
 * runs on the input's frames.
 */
#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/display.h>
#include <libavutil/pixdesc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dems/err.h"
#include "dems/media.h"

#include "media_int.h"

/* Demuxers that open other files (HLS, concat, DASH, image sequences, ...)
 * do it through io_open: we refuse, so an input can only ever read itself. */
static int refuse_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                       AVDictionary **options)
{
    (void)s;
    (void)pb;
    (void)url;
    (void)flags;
    (void)options;
    return AVERROR(EPERM);
}

int media_check_size(int w, int h, const struct dems_media_limits *lim,
                     struct dems_media_error *err)
{
    if (w <= 0 || h <= 0)
        return 0;
    uint64_t px = (uint64_t)w * (uint64_t)h;
    if ((uint32_t)w > lim->max_side || (uint32_t)h > lim->max_side || px > lim->max_pixels)
        return media_fail(err, DEMS_MEDIA_TOO_LARGE,
                          "pixel budget exceeded: %dx%d (%llu px) > %llu px or side > %u", w, h,
                          (unsigned long long)px, (unsigned long long)lim->max_pixels,
                          lim->max_side);
    return 0;
}

static int check_declared(AVFormatContext *fmt, const struct dems_media_limits *lim,
                          struct dems_media_error *err)
{
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVCodecParameters *par = fmt->streams[i]->codecpar;
        if (par->codec_type != AVMEDIA_TYPE_VIDEO)
            continue;
        int r = media_check_size(par->width, par->height, lim, err);
        if (r < 0)
            return r;
    }
    if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0 &&
        (double)fmt->duration / AV_TIME_BASE > lim->max_duration)
        return media_fail(err, DEMS_MEDIA_TOO_LARGE, "duration %.0f s > limit %.0f s",
                          (double)fmt->duration / AV_TIME_BASE, lim->max_duration);
    return 0;
}

static int find_stream_info(AVFormatContext *fmt, const struct dems_media_limits *lim,
                            struct dems_media_error *err)
{
    unsigned n = fmt->nb_streams;
    AVDictionary **opts = av_calloc(n > 0 ? n : 1, sizeof(*opts));
    int r;

    if (opts == NULL)
        return media_fail(err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (probe)");
    /* The decoders that stream probing opens refuse oversized frames too. */
    for (unsigned i = 0; i < n; i++) {
        av_dict_set_int(&opts[i], "max_pixels", (int64_t)lim->max_pixels, 0);
        av_dict_set(&opts[i], "threads", "1", 0);
    }
    r = avformat_find_stream_info(fmt, opts);
    for (unsigned i = 0; i < n; i++)
        av_dict_free(&opts[i]);
    av_free(opts);
    if (r < 0)
        return media_fail_av(err, r, "stream info");
    return 0;
}

int media_input_open(int in_fd, const struct dems_media_limits *lim, AVFormatContext **ret_fmt,
                     struct dems_media_error *err)
{
    struct stat st;
    AVFormatContext *fmt = NULL;
    AVIOContext *pb = NULL;
    int r;

    if (fstat(in_fd, &st) < 0)
        return media_fail(err, DEMS_MEDIA_INTERNAL, "input: %s", strerror(errno));
    if (S_ISREG(st.st_mode) && st.st_size == 0)
        return media_fail(err, DEMS_MEDIA_INVALID, "empty file");
    fmt = avformat_alloc_context();
    pb = media_avio_reader(in_fd);
    if (fmt == NULL || pb == NULL) {
        r = media_fail(err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (open)");
        goto fail;
    }
    fmt->pb = pb;
    fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    fmt->probesize = lim->probesize;
    fmt->max_analyze_duration = lim->analyzeduration;
    fmt->max_streams = 64;
    fmt->io_open = refuse_open;
    r = avformat_open_input(&fmt, NULL, NULL, NULL);
    if (r < 0) {
        fmt = NULL; /* freed by avformat_open_input */
        if (r == AVERROR_EOF)
            r = media_fail(err, DEMS_MEDIA_INVALID, "empty file");
        else
            r = media_fail_av(err, r, "unrecognised format");
        goto fail;
    }
    /* Refuse absurd declared sizes before any decoder allocates a frame. */
    r = check_declared(fmt, lim, err);
    if (r == 0)
        r = find_stream_info(fmt, lim, err);
    if (r == 0)
        r = check_declared(fmt, lim, err);
    if (r < 0)
        goto fail;
    *ret_fmt = fmt;
    return 0;
fail:
    avformat_close_input(&fmt);
    media_avio_free(&pb);
    return r;
}

void media_input_close(AVFormatContext **fmt)
{
    AVIOContext *pb;

    if (*fmt == NULL)
        return;
    pb = (*fmt)->pb;
    avformat_close_input(fmt);
    media_avio_free(&pb);
}

int media_stream_rotation(const AVStream *st)
{
    size_t size = 0;
    const uint8_t *sd = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
    double theta = 0;

    if (sd != NULL && size >= 9 * sizeof(int32_t)) {
        /* Counter-clockwise angle of the matrix; we report the clockwise
         * turn that makes the picture upright, as ffmpeg's autorotate. */
        theta = -av_display_rotation_get((const int32_t *)(const void *)sd);
    } else {
        const AVDictionaryEntry *e = av_dict_get(st->metadata, "rotate", NULL, 0);
        if (e != NULL)
            theta = strtod(e->value, NULL);
    }
    if (!isfinite(theta))
        return 0;
    theta = fmod(round(theta / 90.0) * 90.0, 360.0);
    if (theta < 0)
        theta += 360.0;
    return (int)theta;
}

/* --- JSON ------------------------------------------------------------- */

static const char *tag(AVDictionary *m, const char *const *keys)
{
    for (; *keys != NULL; keys++) {
        const AVDictionaryEntry *e = av_dict_get(m, *keys, NULL, 0);
        if (e != NULL && e->value[0] != '\0')
            return e->value;
    }
    return NULL;
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v != NULL)
        json_object_set_new(o, key, json_string(v));
}

static void set_q(json_t *o, const char *key, AVRational q)
{
    char buf[48];

    if (q.num <= 0 || q.den <= 0)
        return;
    snprintf(buf, sizeof(buf), "%s_q", key);
    json_object_set_new(o, key, json_real(av_q2d(q)));
    char frac[32];
    snprintf(frac, sizeof(frac), "%d/%d", q.num, q.den);
    json_object_set_new(o, buf, json_string(frac));
}

static void set_time(json_t *o, const char *key, int64_t ts, AVRational tb)
{
    if (ts != AV_NOPTS_VALUE)
        json_object_set_new(o, key, json_real((double)ts * av_q2d(tb)));
}

/* One component of an ISO 6709 string: decimal degrees, DDMM.M or DDMMSS.S
 * (dd is 2 for latitude, 3 for longitude). Returns NAN when malformed. */
static double iso6709_part(const char **s, int dd)
{
    const char *p = *s;
    char *end;
    double v;
    int digits = 0;

    if (*p != '+' && *p != '-')
        return NAN;
    for (const char *q = p + 1; *q >= '0' && *q <= '9'; q++)
        digits++;
    v = strtod(p, &end);
    if (end == p)
        return NAN;
    *s = end;
    double sign = v < 0 ? -1.0 : 1.0, a = fabs(v);
    if (digits == dd + 2) /* degrees and minutes */
        a = floor(a / 100) + fmod(a, 100) / 60.0;
    else if (digits == dd + 4) /* degrees, minutes and seconds */
        a = floor(a / 10000) + floor(fmod(a, 10000) / 100) / 60.0 + fmod(a, 100) / 3600.0;
    return sign * a;
}

static json_t *location_json(const char *iso)
{
    const char *p = iso;
    double lat = iso6709_part(&p, 2);
    double lon = isnan(lat) ? NAN : iso6709_part(&p, 3);
    json_t *o = json_pack("{s:s}", "iso6709", iso);

    if (o == NULL || isnan(lon) || fabs(lat) > 90 || fabs(lon) > 180)
        return o;
    json_object_set_new(o, "latitude", json_real(lat));
    json_object_set_new(o, "longitude", json_real(lon));
    if (*p == '+' || *p == '-')
        json_object_set_new(o, "altitude", json_real(strtod(p, NULL)));
    return o;
}

static json_t *tags_json(AVDictionary *m)
{
    json_t *o = json_object();
    const AVDictionaryEntry *e = NULL;
    int n = 0;

    while (o != NULL && (e = av_dict_get(m, "", e, AV_DICT_IGNORE_SUFFIX)) != NULL && n++ < 64) {
        char v[512];
        snprintf(v, sizeof(v), "%s", e->value); /* cap each value */
        json_object_set_new(o, e->key, json_string(v));
    }
    return o;
}

static json_t *stream_json(const AVStream *st)
{
    const AVCodecParameters *par = st->codecpar;
    json_t *o = json_object();
    char buf[128];

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "index", json_integer(st->index));
    set_str(o, "type", av_get_media_type_string(par->codec_type));
    set_str(o, "codec", avcodec_get_name(par->codec_id));
    set_str(o, "profile", avcodec_profile_name(par->codec_id, par->profile));
    if (par->bit_rate > 0)
        json_object_set_new(o, "bit_rate", json_integer(par->bit_rate));
    set_time(o, "start_time", st->start_time, st->time_base);
    set_time(o, "duration", st->duration, st->time_base);
    if (st->nb_frames > 0)
        json_object_set_new(o, "frames", json_integer(st->nb_frames));
    snprintf(buf, sizeof(buf), "%d/%d", st->time_base.num, st->time_base.den);
    json_object_set_new(o, "time_base", json_string(buf));
    set_str(o, "language", tag(st->metadata, (const char *const[]){"language", NULL}));
    if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
        int rot = media_stream_rotation(st);
        json_object_set_new(o, "width", json_integer(par->width));
        json_object_set_new(o, "height", json_integer(par->height));
        set_str(o, "pix_fmt", av_get_pix_fmt_name((enum AVPixelFormat)par->format));
        set_q(o, "sample_aspect_ratio", par->sample_aspect_ratio);
        set_q(o, "avg_frame_rate", st->avg_frame_rate);
        set_q(o, "r_frame_rate", st->r_frame_rate);
        json_object_set_new(o, "rotation", json_integer(rot));
        json_object_set_new(o, "attached_pic",
                            json_boolean(st->disposition & AV_DISPOSITION_ATTACHED_PIC));
    } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
        json_object_set_new(o, "sample_rate", json_integer(par->sample_rate));
        json_object_set_new(o, "channels", json_integer(par->ch_layout.nb_channels));
        if (av_channel_layout_describe(&par->ch_layout, buf, sizeof(buf)) > 0)
            set_str(o, "channel_layout", buf);
        set_str(o, "sample_fmt", av_get_sample_fmt_name((enum AVSampleFormat)par->format));
    }
    return o;
}

/* Metadata may sit on the container or (MOV/MP4 from some cameras) on the
 * video stream: look in both. */
static const char *find_tag(AVFormatContext *fmt, const char *const *keys)
{
    const char *v = tag(fmt->metadata, keys);

    for (unsigned i = 0; v == NULL && i < fmt->nb_streams; i++)
        v = tag(fmt->streams[i]->metadata, keys);
    return v;
}

json_t *media_probe_json(AVFormatContext *fmt, int64_t file_size)
{
    static const char *const k_time[] = {"com.apple.quicktime.creationdate", "creation_time",
                                         "date", NULL};
    static const char *const k_make[] = {"com.apple.quicktime.make", "make",
                                         "com.android.manufacturer", "manufacturer", NULL};
    static const char *const k_model[] = {"com.apple.quicktime.model", "model", "com.android.model",
                                          NULL};
    static const char *const k_soft[] = {"com.apple.quicktime.software", "software", NULL};
    static const char *const k_loc[] = {"com.apple.quicktime.location.ISO6709", "location",
                                        "location-eng", NULL};
    json_t *o = json_object(), *streams = json_array(), *dev = json_object();
    const char *loc;

    if (o == NULL || streams == NULL || dev == NULL) {
        json_decref(o);
        json_decref(streams);
        json_decref(dev);
        return NULL;
    }
    set_str(o, "format", fmt->iformat->name);
    set_str(o, "format_long", fmt->iformat->long_name);
    if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0)
        json_object_set_new(o, "duration", json_real((double)fmt->duration / AV_TIME_BASE));
    set_time(o, "start_time", fmt->start_time, AV_TIME_BASE_Q);
    if (fmt->bit_rate > 0)
        json_object_set_new(o, "bit_rate", json_integer(fmt->bit_rate));
    if (file_size >= 0)
        json_object_set_new(o, "size", json_integer(file_size));
    set_str(o, "creation_time", find_tag(fmt, k_time));
    set_str(dev, "make", find_tag(fmt, k_make));
    set_str(dev, "model", find_tag(fmt, k_model));
    set_str(dev, "software", find_tag(fmt, k_soft));
    json_object_set_new(o, "device", dev);
    loc = find_tag(fmt, k_loc);
    if (loc != NULL)
        json_object_set_new(o, "location", location_json(loc));
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        json_array_append_new(streams, stream_json(fmt->streams[i]));
    json_object_set_new(o, "streams", streams);
    json_object_set_new(o, "tags", tags_json(fmt->metadata));
    return o;
}

int dems_media_probe(int in_fd, const struct dems_media_limits *lim, json_t **ret_probe,
                     struct dems_media_error *err)
{
    AVFormatContext *fmt = NULL;
    struct stat st;
    json_t *j;
    int r = media_input_open(in_fd, lim, &fmt, err);

    if (r < 0)
        return r;
    j = media_probe_json(fmt, fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1);
    media_input_close(&fmt);
    if (j == NULL)
        return media_fail(err, DEMS_MEDIA_OUT_OF_MEMORY, "out of memory (probe)");
    *ret_probe = j;
    return 0;
}
