/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FFmpeg: the release (libavutil/ffversion.h, av_version_info()) and each
 * library's LIB*_VERSION_* against its *_version().
 */
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/ffversion.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
#include <stdio.h>

#include "dems/version.h"

static void one(struct dems_version_lib *ret, const char *name, unsigned built, unsigned running)
{
    ret->name = name;
    snprintf(ret->built, sizeof(ret->built), "%u.%u.%u", built >> 16, (built >> 8) & 255u,
             built & 255u);
    snprintf(ret->running, sizeof(ret->running), "%u.%u.%u", running >> 16, (running >> 8) & 255u,
             running & 255u);
}

size_t dems_version_ffmpeg(struct dems_version_lib *ret, size_t cap)
{
    if (cap < 6)
        return 0;
    ret[0].name = "FFmpeg";
    snprintf(ret[0].built, sizeof(ret[0].built), "%s", FFMPEG_VERSION);
    snprintf(ret[0].running, sizeof(ret[0].running), "%s", av_version_info());
    one(&ret[1], "libavformat", LIBAVFORMAT_VERSION_INT, avformat_version());
    one(&ret[2], "libavcodec", LIBAVCODEC_VERSION_INT, avcodec_version());
    one(&ret[3], "libavutil", LIBAVUTIL_VERSION_INT, avutil_version());
    one(&ret[4], "libswscale", LIBSWSCALE_VERSION_INT, swscale_version());
    one(&ret[5], "libswresample", LIBSWRESAMPLE_VERSION_INT, swresample_version());
    return 6;
}
