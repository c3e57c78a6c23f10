/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared inside common/media: error reporting, fd-backed AVIO
 * contexts, opening an input under the limits, and the stills (poster and
 * thumbnail sprite) collector used by the preview pipeline.
 */
#ifndef DEMS_MEDIA_INT_H
#define DEMS_MEDIA_INT_H

#include <jansson.h>
#include <libavformat/avformat.h>
#include <stdbool.h>
#include <stdint.h>

#include "dems/media.h"

/* Fills err (if non-NULL) and returns dems_media_code_err(code). */
int media_fail(struct dems_media_error *err, enum dems_media_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Maps an AVERROR from step `what` to a code and message ("invalid data:
 * <what>: <av_err2str>", "out of memory", "unsupported codec", ...). */
int media_fail_av(struct dems_media_error *err, int averr, const char *what);

/* An AVIOContext reading fd (pread when it is a regular file, else read).
 * Returns NULL when out of memory; free with media_avio_free. */
AVIOContext *media_avio_reader(int fd);
/* An AVIOContext writing (and seeking) fd with pwrite. */
AVIOContext *media_avio_writer(int fd);
void media_avio_free(AVIOContext **pb);

/* Opens in_fd as an input: custom AVIO, probesize/analyzeduration bounds,
 * nested opens refused, frame-size and duration limits checked on the
 * declared codec parameters before and after avformat_find_stream_info
 * (whose decoders get max_pixels too). On success *ret_fmt is owned; close
 * with media_input_close. */
int media_input_open(int in_fd, const struct dems_media_limits *lim, AVFormatContext **ret_fmt,
                     struct dems_media_error *err);
void media_input_close(AVFormatContext **fmt);

/* Checks one frame size against the limits; 0 or a TOO_LARGE failure. */
int media_check_size(int w, int h, const struct dems_media_limits *lim,
                     struct dems_media_error *err);

/* Builds the probe JSON of an opened input. NULL when out of memory. */
json_t *media_probe_json(AVFormatContext *fmt, int64_t file_size);

/* Rotation in degrees clockwise (0, 90, 180, 270) to make st upright. */
int media_stream_rotation(const AVStream *st);

/* The index of the best stream of type that is not an attached picture
 * (cover art), or -1. */
int media_pick_stream(AVFormatContext *fmt, enum AVMediaType type);

/* The input's start in st's time base: times are counted from it. */
int64_t media_stream_start(const AVFormatContext *fmt, const AVStream *st);

/* The limits as JSON, for results. NULL when out of memory. */
json_t *media_limits_json(const struct dems_media_limits *l);

/* Writes all of buf to fd at offset 0 after truncating it. */
int media_write_file(int fd, const uint8_t *buf, size_t len);

/* The poster and thumbnail sprite, fed with the proxy's upright frames. */
struct media_stills;

struct media_stills *media_stills_new(const struct dems_media_params *p, int width, int height,
                                      double duration, double poster_at);
void media_stills_free(struct media_stills *s);
/* Offers an upright yuv420p frame at time t (seconds from the start). */
int media_stills_offer(struct media_stills *s, const AVFrame *frame, double t);
/* Encodes and writes what was collected; fills the "poster", "sprite",
 * "index" and "thumbnails" members of outputs and the "poster" and
 * "thumbnails" members of params. */
int media_stills_finish(struct media_stills *s, const struct dems_media_outputs *out,
                        double duration, json_t *outputs, json_t *params,
                        struct dems_media_error *err);

#endif
