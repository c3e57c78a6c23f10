/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/media. Inputs are generated at test time with the
 * ffmpeg command line (lavfi testsrc/color/sine) into a temporary directory:
 * H.264 and H.265 in MP4, MKV, AVI and MPEG-TS, MJPEG AVI, video without
 * audio, audio only, 12.5 fps CCTV, variable frame rate, a rotated phone
 * video, a 4-hour 1 fps CCTV file, and a hostile corpus (empty, text,
 * truncated, bit-flipped, absurd declared sizes, a decompression bomb, a
 * size change mid-stream, a never-ending pipe). Every preview goes through
 * the sandbox; the proxies, posters, sprites and indexes are checked with
 * libavformat/libavcodec.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
#include <linux/capability.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

static char dir[256];
static pid_t test_pid;

/* --- corpus ------------------------------------------------------------ */

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

/* ffmpeg -v error -y ARGS DIR/NAME */
static void gen(const char *name, const char *args)
{
    char cmd[2048], out[512];

    path_of(out, sizeof(out), name);
    snprintf(cmd, sizeof(cmd), "ffmpeg -nostdin -v error -y %s '%s'", args, out);
    if (system(cmd) != 0)
        fail_msg("generating %s failed: %s", name, cmd);
}

static uint8_t *slurp(const char *name, size_t *len)
{
    char p[512];
    struct stat st;
    int fd;

    path_of(p, sizeof(p), name);
    fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void spill(const char *name, const void *buf, size_t len)
{
    char p[512];
    int fd;

    path_of(p, sizeof(p), name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

static void put32(uint8_t *p, uint32_t v, bool big)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(big ? v >> (24 - 8 * i) : v >> (8 * i));
}

/* A phone's portrait video: the first tkhd's matrix turned 90 degrees
 * clockwise, as an iPhone writes it. */
static void make_rotated(void)
{
    size_t len;
    uint8_t *d = slurp("land.mp4", &len);
    uint8_t *t = memmem(d, len, "tkhd", 4);
    const int32_t m[9] = {0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000};

    assert_non_null(t);
    for (int i = 0; i < 9; i++)
        put32(t - 4 + 48 + 4 * i, (uint32_t)m[i], true);
    spill("rot90.mp4", d, len);
    free(d);
}

/* An MJPEG AVI whose headers (avih and the stream's BITMAPINFOHEADER)
 * declare 16000x16000. */
static void make_absurd_avi(void)
{
    size_t len;
    uint8_t *d = slurp("mjpeg.avi", &len);
    uint8_t *avih = memmem(d, len, "avih", 4);
    uint8_t *strf = memmem(d, len, "strf", 4);

    assert_non_null(avih);
    assert_non_null(strf);
    put32(avih + 8 + 32, 16000, false); /* dwWidth, dwHeight */
    put32(avih + 8 + 36, 16000, false);
    put32(strf + 8 + 4, 16000, false); /* biWidth, biHeight */
    put32(strf + 8 + 8, 16000, false);
    spill("absurd.avi", d, len);
    free(d);
}

static void make_hostile(void)
{
    static const char y4m[] = "YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n"
                              "0123456789abcdef";
    static const char text[] = "This is not a video. It is a text file named .mp4.\n";
    size_t len;
    uint8_t *d;

    spill("empty.mp4", "", 0);
    spill("text.mp4", text, sizeof(text) - 1);
    spill("absurd.y4m", y4m, sizeof(y4m) - 1);
    make_absurd_avi();
    /* Truncated: an MP4 whose moov (at the end) is cut off. */
    d = slurp("moovlast.mp4", &len);
    spill("truncated.mp4", d, len / 2);
    /* Truncated header: the first 200 bytes of a Matroska file. */
    free(d);
    d = slurp("h264.mkv", &len);
    spill("truncated.mkv", d, 200);
    free(d);
    /* Bit-flipped header: every bit of the first 64 bytes inverted. */
    d = slurp("moovlast.mp4", &len);
    for (size_t i = 0; i < 64; i++)
        d[i] ^= 0xff;
    spill("bitflip.mp4", d, len);
    free(d);
}

static int setup_corpus(void **state)
{
    const char *tmp = getenv("TMPDIR");
    const char *tv = "-f lavfi -i testsrc=s=320x240:r=25:d=2";
    const char *ta = "-f lavfi -i sine=f=440:sample_rate=44100:d=2";
    const char *x264 = "-c:v libx264 -preset ultrafast";
    const char *x265 = "-c:v libx265 -preset ultrafast -x265-params log-level=none";
    char a[1024];
    struct {
        const char *name, *vcodec, *acodec;
    } mux[] = {
        {"h264.mp4", x264, "-c:a aac"},
        {"hevc.mp4", x265, "-c:a aac -tag:v hvc1"},
        {"h264.mkv", x264, "-c:a aac"},
        {"hevc.mkv", x265, "-c:a aac"},
        {"h264.avi", x264, "-c:a libmp3lame"},
        {"hevc.avi", x265, "-c:a libmp3lame -tag:v HEVC"},
        {"h264.ts", x264, "-c:a aac"},
        {"hevc.ts", x265, "-c:a aac"},
        {"mjpeg.avi", "-c:v mjpeg -q:v 5", "-c:a pcm_s16le"},
    };

    (void)state;
    snprintf(dir, sizeof(dir), "%s/dems-media-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(mux) / sizeof(mux[0]); i++) {
        snprintf(a, sizeof(a), "%s %s %s %s -shortest", tv, ta, mux[i].vcodec, mux[i].acodec);
        gen(mux[i].name, a);
    }
    snprintf(a, sizeof(a), "%s %s", tv, x264);
    gen("noaudio.mp4", a);
    gen("moovlast.mp4", a);
    gen("audio.m4a", "-f lavfi -i sine=f=440:sample_rate=48000:d=3 -c:a aac");
    gen("cctv125.avi",
        "-f lavfi -i testsrc=s=352x288:r=12.5:d=4 -c:v libx264 -preset ultrafast -r 12.5");
    gen("vfr.mkv", "-f lavfi -i testsrc=s=320x240:r=25:d=4 "
                   "-vf select='lt(mod(n\\,10)\\,3)+between(n\\,50\\,60)' -vsync vfr "
                   "-c:v libx264 -preset ultrafast");
    gen("land.mp4", "-f lavfi -i color=black:s=320x240:r=25:d=2,"
                    "drawbox=x=0:y=0:w=80:h=60:color=white:t=fill -c:v libx264 -preset ultrafast");
    make_rotated();
    gen("cctv4h.mkv", "-f lavfi -i testsrc=s=128x96:r=1:d=14400 -c:v libx264 -preset ultrafast "
                      "-g 60");
    gen("meta.mov", "-f lavfi -i testsrc=s=320x240:r=25:d=1 -c:v libx264 -preset ultrafast "
                    "-metadata make=Apple -metadata model='iPhone 12' "
                    "-metadata location=+48.8584+002.2945+035.000/ "
                    "-metadata creation_time=2024-05-01T10:20:30Z -f mov");
    gen("bomb.mp4", "-f lavfi -i color=red:s=8000x8000:r=1:d=2 -c:v libx264 -preset ultrafast");
    /* A stream that grows mid-way: 320x240 for 2 s, then an 8000x8000 frame. */
    gen("small.ts", "-f lavfi -i testsrc=s=320x240:r=25:d=2 -c:v libx264 -preset ultrafast");
    gen("big.ts", "-f lavfi -i color=red:s=8000x8000:r=1:d=1 -c:v libx264 -preset ultrafast "
                  "-output_ts_offset 3");
    size_t l1, l2;
    uint8_t *s1 = slurp("small.ts", &l1), *s2 = slurp("big.ts", &l2);
    uint8_t *cat = malloc(l1 + l2);
    assert_non_null(cat);
    memcpy(cat, s1, l1);
    memcpy(cat + l1, s2, l2);
    spill("grows.ts", cat, l1 + l2);
    free(s1);
    free(s2);
    free(cat);
    make_hostile();
    return 0;
}

static int teardown_corpus(void **state)
{
    char cmd[512];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* --- running previews --------------------------------------------------- */

struct run {
    json_t *res;
    struct dems_media_error err;
    int r;
    char out[512]; /* output directory */
};

static int out_fd(const struct run *run, const char *name)
{
    char p[768];

    snprintf(p, sizeof(p), "%s/%s", run->out, name);
    return open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
}

static void preview_with(const char *name, const struct dems_media_params *p,
                         const struct dems_media_limits *lim, bool sandboxed, struct run *run)
{
    char in[512];
    int fd;

    path_of(in, sizeof(in), name);
    snprintf(run->out, sizeof(run->out), "%s/out-%s", dir, name);
    mkdir(run->out, 0755);
    struct dems_media_outputs out = {
        .proxy_fd = out_fd(run, "proxy.mp4"),
        .poster_fd = out_fd(run, "poster.jpg"),
        .sprite_fd = out_fd(run, "sprite.jpg"),
        .index_fd = out_fd(run, "index.vtt"),
    };
    fd = open(in, O_RDONLY);
    assert_true(fd >= 0);
    run->res = NULL;
    run->r = sandboxed ? dems_media_preview_sandboxed(fd, &out, p, lim, &run->res, &run->err)
                       : dems_media_preview(fd, &out, p, lim, &run->res, &run->err);
    close(fd);
    close(out.proxy_fd);
    close(out.poster_fd);
    close(out.sprite_fd);
    close(out.index_fd);
}

static void test_params(struct dems_media_params *p)
{
    dems_media_params_init(p);
    p->thumb_interval = 1.0; /* several thumbnails from a short clip */
    p->preset = "ultrafast";
    p->threads = 2;
}

static void preview(const char *name, struct run *run)
{
    struct dems_media_params p;
    struct dems_media_limits lim;

    test_params(&p);
    dems_media_limits_init(&lim);
    lim.timeout = 120;
    preview_with(name, &p, &lim, true, run);
}

static void expect_fail(const char *name, const struct dems_media_limits *lim,
                        enum dems_media_code code, const char *needle)
{
    struct dems_media_params p;
    struct run run;

    test_params(&p);
    preview_with(name, &p, lim, true, &run);
    if (run.r == 0)
        fail_msg("%s: expected %s, got success", name, dems_media_code_str(code));
    if (run.err.code != code || strstr(run.err.message, needle) == NULL)
        fail_msg("%s: expected %s with \"%s\", got %s: %s", name, dems_media_code_str(code), needle,
                 dems_media_code_str(run.err.code), run.err.message);
    assert_int_equal(run.r, dems_media_code_err(code));
    assert_null(run.res);
}

/* --- checking outputs ---------------------------------------------------- */

/* Top-level MP4 atoms in order: moov must come before mdat (faststart). */
static void check_faststart(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t h[8];
    long moov = -1, mdat = -1, pos = 0;

    assert_non_null(f);
    while (fread(h, 1, 8, f) == 8) {
        uint32_t size = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (memcmp(h + 4, "moov", 4) == 0)
            moov = pos;
        if (memcmp(h + 4, "mdat", 4) == 0)
            mdat = pos;
        assert_true(size >= 8);
        pos += size;
        assert_int_equal(fseek(f, pos, SEEK_SET), 0);
    }
    fclose(f);
    assert_true(moov >= 0 && mdat > moov);
}

struct proxy_info {
    int width, height;
    bool has_audio;
    int frames;
    int distinct_durations;
};

static void inspect_proxy(const char *path, struct proxy_info *pi)
{
    AVFormatContext *fmt = NULL;
    AVPacket *pkt = av_packet_alloc();
    int vi = -1;
    int64_t prev = AV_NOPTS_VALUE, durs[8];
    int nd = 0;

    *pi = (struct proxy_info){0};
    assert_int_equal(avformat_open_input(&fmt, path, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(fmt, NULL) >= 0);
    assert_string_equal(fmt->iformat->name, "mov,mp4,m4a,3gp,3g2,mj2");
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVCodecParameters *par = fmt->streams[i]->codecpar;
        if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
            assert_int_equal(par->codec_id, AV_CODEC_ID_H264);
            assert_int_equal(par->format, AV_PIX_FMT_YUV420P);
            pi->width = par->width;
            pi->height = par->height;
            vi = (int)i;
        } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
            assert_int_equal(par->codec_id, AV_CODEC_ID_AAC);
            pi->has_audio = true;
        }
    }
    /* Frame durations in presentation order, to see variable rates kept. */
    int64_t pts[20000];
    int n = 0;
    while (vi >= 0 && av_read_frame(fmt, pkt) >= 0) {
        if (pkt->stream_index == vi && n < 20000)
            pts[n++] = pkt->pts;
        av_packet_unref(pkt);
    }
    pi->frames = n;
    for (int i = 1; i < n; i++) /* insertion sort: few out of order */
        for (int k = i; k > 0 && pts[k] < pts[k - 1]; k--) {
            int64_t t = pts[k];
            pts[k] = pts[k - 1];
            pts[k - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        if (prev != AV_NOPTS_VALUE) {
            int64_t d = pts[i] - prev;
            bool seen = false;
            for (int k = 0; k < nd; k++)
                seen |= durs[k] == d;
            if (!seen && nd < 8)
                durs[nd++] = d;
        }
        prev = pts[i];
    }
    pi->distinct_durations = nd;
    av_packet_free(&pkt);
    avformat_close_input(&fmt);
}

/* Decodes a JPEG; returns its size and (optionally) the luma at (x, y). */
static void decode_jpeg(const char *path, int *w, int *h, int px, int py, int *luma)
{
    FILE *f = fopen(path, "rb");
    static uint8_t buf[8 << 20];
    size_t len;
    const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_MJPEG);
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();

    assert_non_null(f);
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(len > 4 && buf[0] == 0xff && buf[1] == 0xd8);
    assert_int_equal(avcodec_open2(c, codec, NULL), 0);
    pkt->data = buf;
    pkt->size = (int)len;
    assert_int_equal(avcodec_send_packet(c, pkt), 0);
    assert_int_equal(avcodec_receive_frame(c, fr), 0);
    *w = fr->width;
    *h = fr->height;
    if (luma != NULL)
        *luma = fr->data[0][py * fr->linesize[0] + px];
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&c);
}

static double num(json_t *j, const char *path)
{
    json_t *v = j;
    char key[64];

    for (const char *p = path; v != NULL && *p != '\0';) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, p);
        v = key[0] >= '0' && key[0] <= '9' ? json_array_get(v, (size_t)(key[0] - '0'))
                                           : json_object_get(v, key);
        p += n + (p[n] == '.');
    }
    if (!json_is_number(v))
        fail_msg("no number at %s", path);
    return json_number_value(v);
}

static json_t *video_stream(json_t *probe)
{
    json_t *s;
    size_t i;

    json_array_foreach(json_object_get(probe, "streams"), i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "type")), "video") == 0)
            return s;
    }
    return NULL;
}

static int count_str(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

struct expect {
    const char *file;
    const char *codec; /* of the input's video, NULL for audio only */
    int width, height; /* input, before rotation */
    double fps, duration;
    bool audio;
    int rotation;
};

/* The checks every format goes through. */
static void check_preview(const struct expect *e, const struct run *run, double interval)
{
    char p[768];
    json_t *res = run->res, *probe = json_object_get(res, "probe"), *vs = video_stream(probe);
    struct proxy_info pi;

    if (run->r != 0)
        fail_msg("%s: %s: %s", e->file, dems_media_code_str(run->err.code), run->err.message);
    assert_true(fabs(num(probe, "duration") - e->duration) < 0.25);
    snprintf(p, sizeof(p), "%s/proxy.mp4", run->out);
    check_faststart(p);
    inspect_proxy(p, &pi);
    assert_int_equal(pi.has_audio, e->audio);
    assert_true(pi.height <= 720 && pi.width <= 1280);
    assert_true(json_is_object(json_object_get(res, "ffmpeg")));
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(res, "params"), "container"), "movflags")),
        "+faststart");
    if (e->codec == NULL) { /* audio only: no poster, no sprite, and it says why */
        assert_null(vs);
        json_t *poster = json_object_get(json_object_get(res, "outputs"), "poster");
        assert_true(json_is_false(json_object_get(poster, "produced")));
        assert_string_equal(json_string_value(json_object_get(poster, "reason")),
                            "audio-only input");
        assert_int_equal(pi.width, 0);
        return;
    }
    assert_non_null(vs);
    assert_string_equal(json_string_value(json_object_get(vs, "codec")), e->codec);
    assert_int_equal((int)num(vs, "width"), e->width);
    assert_int_equal((int)num(vs, "height"), e->height);
    assert_true(fabs(num(vs, "avg_frame_rate") - e->fps) < 0.01 ||
                fabs(num(vs, "r_frame_rate") - e->fps) < 0.01);
    assert_int_equal((int)num(vs, "rotation"), e->rotation);
    /* Upright proxy: sides swapped for 90/270. */
    bool turned = e->rotation == 90 || e->rotation == 270;
    assert_int_equal(pi.width, turned ? e->height : e->width);
    assert_int_equal(pi.height, turned ? e->width : e->height);
    assert_int_equal((int)num(res, "outputs.proxy.width"), pi.width);
    assert_int_equal((int)num(res, "params.video.crf"), 23);
    /* Poster: a JPEG at the proxy's size. */
    int w, h;
    snprintf(p, sizeof(p), "%s/poster.jpg", run->out);
    decode_jpeg(p, &w, &h, 0, 0, NULL);
    assert_int_equal(w, pi.width);
    assert_int_equal(h, pi.height);
    /* Sprite and index: one tile per interval, as many cues, a grid. */
    int count = (int)num(res, "outputs.sprite.count");
    double last = e->duration - 0.5 / e->fps;
    double iv = num(res, "params.thumbnails.interval");
    assert_true(iv >= interval);
    /* Containers may start the clock with the audio, a frame earlier. */
    assert_true(abs(count - ((int)floor(last / iv) + 1)) <= 1);
    assert_int_equal(
        (int)json_array_size(json_object_get(json_object_get(res, "outputs"), "thumbnails")),
        count);
    int tw = (int)num(res, "params.thumbnails.tile_width");
    int th = (int)num(res, "params.thumbnails.tile_height");
    int cols = (int)num(res, "outputs.sprite.columns"), rows = (int)num(res, "outputs.sprite.rows");
    assert_int_equal(rows, (count + cols - 1) / cols);
    snprintf(p, sizeof(p), "%s/sprite.jpg", run->out);
    decode_jpeg(p, &w, &h, 0, 0, NULL);
    assert_int_equal(w, cols * tw);
    assert_int_equal(h, rows * th);
    FILE *f;
    static char vtt[1 << 16];
    snprintf(p, sizeof(p), "%s/index.vtt", run->out);
    f = fopen(p, "r");
    assert_non_null(f);
    vtt[fread(vtt, 1, sizeof(vtt) - 1, f)] = '\0';
    fclose(f);
    assert_memory_equal(vtt, "WEBVTT\n\n", 8);
    assert_int_equal(count_str(vtt, " --> "), count);
    assert_int_equal(count_str(vtt, "sprite.jpg#xywh="), count);
}

static void run_format(const struct expect *e)
{
    struct run run;

    preview(e->file, &run);
    check_preview(e, &run, 1.0);
    json_decref(run.res);
}

/* --- formats ------------------------------------------------------------- */

static void test_containers(void **state)
{
    static const char *const files[] = {"h264.mp4", "hevc.mp4", "h264.mkv", "hevc.mkv",
                                        "h264.avi", "hevc.avi", "h264.ts",  "hevc.ts"};

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct expect e = {.file = files[i],
                           .codec = files[i][0] == 'h' && files[i][1] == '2' ? "h264" : "hevc",
                           .width = 320,
                           .height = 240,
                           .fps = 25,
                           .duration = 2.0,
                           .audio = true};
        run_format(&e);
    }
}

static void test_mjpeg_avi(void **state)
{
    (void)state;
    run_format(&(struct expect){"mjpeg.avi", "mjpeg", 320, 240, 25, 2.0, true, 0});
}

static void test_video_without_audio(void **state)
{
    (void)state;
    run_format(&(struct expect){"noaudio.mp4", "h264", 320, 240, 25, 2.0, false, 0});
}

static void test_audio_only(void **state)
{
    (void)state;
    run_format(&(struct expect){"audio.m4a", NULL, 0, 0, 0, 3.0, true, 0});
}

static void test_cctv_12_5_fps(void **state)
{
    struct run run;

    (void)state;
    preview("cctv125.avi", &run);
    check_preview(&(struct expect){"cctv125.avi", "h264", 352, 288, 12.5, 4.0, false, 0}, &run,
                  1.0);
    assert_int_equal((int)num(run.res, "outputs.proxy.frames"), 50);
    json_decref(run.res);
}

static void test_variable_frame_rate(void **state)
{
    struct run run;
    struct proxy_info pi;
    char p[768];

    (void)state;
    preview("vfr.mkv", &run);
    assert_int_equal(run.r, 0);
    /* Frames kept with their own timestamps: 37 frames, several durations. */
    snprintf(p, sizeof(p), "%s/proxy.mp4", run.out);
    inspect_proxy(p, &pi);
    assert_int_equal(pi.frames, 37);
    assert_int_equal((int)num(run.res, "outputs.proxy.frames"), 37);
    assert_true(pi.distinct_durations >= 2);
    assert_true(fabs(num(run.res, "probe.duration") - 3.72) < 0.1);
    json_decref(run.res);
}

static void test_rotated_phone_video(void **state)
{
    struct run run;
    char p[768];
    int w, h, tl, tr;

    (void)state;
    preview("rot90.mp4", &run);
    check_preview(&(struct expect){"rot90.mp4", "h264", 320, 240, 25, 2.0, false, 90}, &run, 1.0);
    assert_int_equal((int)num(run.res, "params.video.rotation_applied"), 90);
    /* The white box at the source's top left is at the upright top right. */
    snprintf(p, sizeof(p), "%s/poster.jpg", run.out);
    decode_jpeg(p, &w, &h, 5, 5, &tl);
    decode_jpeg(p, &w, &h, w - 6, 5, &tr);
    assert_true(tl < 40);
    assert_true(tr > 200);
    json_decref(run.res);
}

static void test_four_hour_cctv(void **state)
{
    struct run run;
    char p[768];
    static char vtt[1 << 16];

    (void)state;
    preview("cctv4h.mkv", &run);
    check_preview(&(struct expect){"cctv4h.mkv", "h264", 128, 96, 1, 14400.0, false, 0}, &run, 1.0);
    /* At most max_tiles thumbnails: the interval grows to 40 s. */
    assert_int_equal((int)num(run.res, "outputs.sprite.count"), 360);
    assert_true(fabs(num(run.res, "params.thumbnails.interval") - 40.0) < 1e-9);
    assert_int_equal((int)num(run.res, "outputs.proxy.frames"), 14400);
    snprintf(p, sizeof(p), "%s/index.vtt", run.out);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    vtt[fread(vtt, 1, sizeof(vtt) - 1, f)] = '\0';
    fclose(f);
    assert_non_null(strstr(vtt, "03:59:20.000 --> 04:00:00.000\n"));
    json_decref(run.res);
}

static void test_probe_metadata(void **state)
{
    char in[512];
    struct dems_media_limits lim;
    struct dems_media_error err;
    json_t *j = NULL;
    int fd;

    (void)state;
    dems_media_limits_init(&lim);
    path_of(in, sizeof(in), "meta.mov");
    fd = open(in, O_RDONLY);
    assert_int_equal(dems_media_probe_sandboxed(fd, &lim, &j, &err), 0);
    close(fd);
    assert_string_equal(json_string_value(json_object_get(j, "format")), "mov,mp4,m4a,3gp,3g2,mj2");
    assert_string_equal(json_string_value(json_object_get(j, "creation_time")),
                        "2024-05-01T10:20:30.000000Z");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "device"), "make")),
                        "Apple");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "device"), "model")),
                        "iPhone 12");
    assert_true(fabs(num(j, "location.latitude") - 48.8584) < 1e-9);
    assert_true(fabs(num(j, "location.longitude") - 2.2945) < 1e-9);
    assert_true(fabs(num(j, "location.altitude") - 35.0) < 1e-9);
    json_decref(j);

    /* In-process probe of a 12.5 fps AVI: both rates, as fractions too. */
    path_of(in, sizeof(in), "cctv125.avi");
    fd = open(in, O_RDONLY);
    assert_int_equal(dems_media_probe(fd, &lim, &j, &err), 0);
    close(fd);
    json_t *vs = video_stream(j);
    assert_true(fabs(num(vs, "avg_frame_rate") - 12.5) < 1e-9);
    assert_string_equal(json_string_value(json_object_get(vs, "avg_frame_rate_q")), "25/2");
    assert_true(fabs(num(vs, "r_frame_rate") - 12.5) < 1e-9);
    json_decref(j);
}

static void test_in_process_preview(void **state)
{
    struct dems_media_params p;
    struct dems_media_limits lim;
    struct run run;

    (void)state;
    test_params(&p);
    dems_media_limits_init(&lim);
    preview_with("h264.mkv", &p, &lim, false, &run);
    check_preview(&(struct expect){"h264.mkv", "h264", 320, 240, 25, 2.0, true, 0}, &run, 1.0);
    json_decref(run.res);
}

/* --- hostile media ------------------------------------------------------- */

static void test_hostile_files(void **state)
{
    struct dems_media_limits lim;

    (void)state;
    dems_media_limits_init(&lim);
    lim.timeout = 60;
    expect_fail("empty.mp4", &lim, DEMS_MEDIA_INVALID, "empty file");
    expect_fail("text.mp4", &lim, DEMS_MEDIA_INVALID, "invalid data");
    expect_fail("truncated.mp4", &lim, DEMS_MEDIA_INVALID, "moov atom not found");
    expect_fail("truncated.mkv", &lim, DEMS_MEDIA_INVALID, "invalid data");
    expect_fail("bitflip.mp4", &lim, DEMS_MEDIA_INVALID, "invalid data");
}

static void test_absurd_dimensions(void **state)
{
    struct dems_media_limits lim;

    (void)state;
    dems_media_limits_init(&lim);
    expect_fail("absurd.y4m", &lim, DEMS_MEDIA_TOO_LARGE, "pixel budget exceeded: 16000x16000");
    expect_fail("absurd.avi", &lim, DEMS_MEDIA_TOO_LARGE, "pixel budget exceeded: 16000x16000");
    expect_fail("bomb.mp4", &lim, DEMS_MEDIA_TOO_LARGE, "pixel budget exceeded: 8000x8000");
    /* Declared 320x240 at first; the decoder meets 8000x8000 later. */
    lim.probesize = 32 << 10;
    lim.analyzeduration = 500000;
    expect_fail("grows.ts", &lim, DEMS_MEDIA_TOO_LARGE, "pixel budget exceeded");
    /* A tighter budget refuses an ordinary file. */
    dems_media_limits_init(&lim);
    lim.max_pixels = 320 * 200;
    expect_fail("h264.mp4", &lim, DEMS_MEDIA_TOO_LARGE, "320x240 (76800 px) > 64000 px");
}

/* Runs a preview of an endless MPEG-TS stream that ffmpeg writes into a pipe. */
static void endless(const struct dems_media_limits *lim, enum dems_media_code code,
                    const char *needle)
{
    struct dems_media_params p;
    struct dems_media_error err = {0};
    json_t *res = NULL;
    char dummy[512];
    FILE *src = popen("ffmpeg -nostdin -v quiet -f lavfi -i testsrc=s=320x240:r=25 "
                      "-c:v libx264 -preset ultrafast -f mpegts pipe:1",
                      "r");
    time_t t0 = time(NULL);

    assert_non_null(src);
    test_params(&p);
    path_of(dummy, sizeof(dummy), "endless.mp4");
    int pfd = open(dummy, O_RDWR | O_CREAT | O_TRUNC, 0644);
    struct dems_media_outputs out = {
        .proxy_fd = pfd, .poster_fd = -1, .sprite_fd = -1, .index_fd = -1};
    int r = dems_media_preview_sandboxed(fileno(src), &out, &p, lim, &res, &err);
    close(pfd);
    pclose(src);
    assert_int_equal(r, dems_media_code_err(code));
    if (err.code != code || strstr(err.message, needle) == NULL)
        fail_msg("endless: %s: %s", dems_media_code_str(err.code), err.message);
    assert_true(time(NULL) - t0 < 30);
}

static void test_never_ending_stream(void **state)
{
    struct dems_media_limits lim;

    (void)state;
    /* The total-pixel budget ends it: 5 s of 320x240 at 25 fps. */
    dems_media_limits_init(&lim);
    lim.max_total_pixels = 320ull * 240 * 25 * 5;
    endless(&lim, DEMS_MEDIA_TOO_LARGE, "total pixel budget exceeded");
    /* With no budget to speak of, the wall-clock timeout ends it. */
    dems_media_limits_init(&lim);
    lim.timeout = 3;
    endless(&lim, DEMS_MEDIA_TIMEOUT, "timed out after 3 s");
}

static void test_output_size_limit(void **state)
{
    struct dems_media_limits lim;

    (void)state;
    dems_media_limits_init(&lim);
    lim.output_bytes = 8192;
    expect_fail("h264.mp4", &lim, DEMS_MEDIA_LIMIT, "file size limit (8192 bytes) exceeded");
}

/* --- the sandbox itself --------------------------------------------------- */

static int child_segv(void *arg, json_t **ret, struct dems_media_error *err)
{
    (void)arg;
    (void)ret;
    (void)err;
    raise(SIGSEGV);
    return 0;
}

static int child_socket(void *arg, json_t **ret, struct dems_media_error *err)
{
    (void)arg;
    (void)err;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    *ret = json_pack("{s:i}", "socket", s);
    return 0;
}

static int child_exec(void *arg, json_t **ret, struct dems_media_error *err)
{
    char prog[] = "/bin/true";
    char *const argv[] = {prog, NULL};

    (void)arg;
    (void)err;
    execv(prog, argv);
    *ret = json_pack("{s:i}", "exec", errno);
    return 0;
}

static int child_kill_parent(void *arg, json_t **ret, struct dems_media_error *err)
{
    (void)arg;
    (void)err;
    int r = kill(test_pid, SIGTERM); /* the test process, our parent */
    *ret = json_pack("{s:i}", "kill", r);
    return 0;
}

static int child_open(void *arg, json_t **ret, struct dems_media_error *err)
{
    (void)arg;
    (void)err;
    int fd = open("/etc/passwd", O_RDONLY);
    *ret = json_pack("{s:i, s:i}", "fd", fd, "errno", errno);
    return 0;
}

/* Who the child is, from inside the seccomp filter (ids and capget only). */
static int child_identity(void *arg, json_t **ret, struct dems_media_error *err)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {{0}};
    uid_t r = 0, e = 0, s = 0;
    gid_t gr = 0, ge = 0, gs = 0;
    gid_t groups[8];
    int ngroups = getgroups(8, groups);
    long caps = syscall(SYS_capget, &h, d) == 0 ? 0 : -1;

    (void)arg;
    (void)err;
    for (int i = 0; caps == 0 && i < _LINUX_CAPABILITY_U32S_3; i++)
        caps |= (long)(d[i].effective | d[i].permitted | d[i].inheritable);
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    *ret = json_pack("{s:i,s:i,s:i,s:i,s:i,s:I,s:i}", "uid", (int)r, "euid", (int)e, "suid", (int)s,
                     "gid", (int)gr, "egid", (int)ge, "caps", (json_int_t)caps, "groups", ngroups);
    return 0;
}

static int child_spin(void *arg, json_t **ret, struct dems_media_error *err)
{
    volatile uint64_t x = 0;

    (void)arg;
    (void)ret;
    (void)err;
    for (;;)
        x++;
    return 0;
}

static int child_sleep(void *arg, json_t **ret, struct dems_media_error *err)
{
    struct timespec ts = {1, 0};

    (void)arg;
    (void)ret;
    (void)err;
    for (;;)
        nanosleep(&ts, NULL);
    return 0;
}

static int child_eat(void *arg, json_t **ret, struct dems_media_error *err)
{
    size_t n = 0;

    (void)arg;
    (void)ret;
    /* Leaked on purpose: the child exits right after. */
    while (malloc(1 << 20) != NULL && n < 100000)
        n++;
    return dems_media_code_err(err->code = DEMS_MEDIA_OUT_OF_MEMORY) +
           0 * snprintf(err->message, sizeof(err->message), "allocation failed after %zu MiB", n);
}

static void sandbox_expect(int (*fn)(void *, json_t **, struct dems_media_error *),
                           const struct dems_media_limits *lim, enum dems_media_code code,
                           const char *needle)
{
    struct dems_media_error err = {0};
    json_t *res = NULL;
    int r = dems_media_sandbox_run(NULL, 0, lim, fn, NULL, &res, &err);

    if (r == 0 || err.code != code || strstr(err.message, needle) == NULL)
        fail_msg("expected %s \"%s\", got %d %s: %s", dems_media_code_str(code), needle, r,
                 dems_media_code_str(err.code), err.message);
    assert_null(res);
}

static void test_sandbox_crash(void **state)
{
    struct dems_media_limits lim;

    (void)state;
    dems_media_limits_init(&lim);
    sandbox_expect(child_segv, &lim, DEMS_MEDIA_CRASHED, "crashed (signal 11");
}

static void test_sandbox_seccomp(void **state)
{
    struct dems_media_limits lim;
    struct dems_media_error err;
    json_t *res = NULL;

    (void)state;
    dems_media_limits_init(&lim);
    sandbox_expect(child_socket, &lim, DEMS_MEDIA_SECCOMP, "seccomp violation (syscall socket");
    sandbox_expect(child_exec, &lim, DEMS_MEDIA_SECCOMP, "seccomp violation (syscall execve");
    sandbox_expect(child_kill_parent, &lim, DEMS_MEDIA_SECCOMP, "seccomp violation (syscall kill");
    /* Opening a file fails softly, so libraries that try carry on. */
    assert_int_equal(dems_media_sandbox_run(NULL, 0, &lim, child_open, NULL, &res, &err), 0);
    assert_int_equal((int)num(res, "fd"), -1);
    assert_int_equal((int)num(res, "errno"), EPERM);
    json_decref(res);
}

/*
 * The decoder never runs as root nor with a capability: started as root it
 * becomes lim.uid/gid (nobody by default) with no supplementary groups;
 * otherwise it keeps the caller's account. Asking it to stay root fails.
 */
static void test_sandbox_unprivileged(void **state)
{
    struct dems_media_limits lim;
    struct dems_media_error err = {0};
    json_t *res = NULL;
    bool root = geteuid() == 0;

    (void)state;
    dems_media_limits_init(&lim);
    assert_int_equal(lim.uid, 65534);
    lim.uid = 4242; /* any unprivileged ids will do */
    lim.gid = 4343;
    assert_int_equal(dems_media_sandbox_run(NULL, 0, &lim, child_identity, NULL, &res, &err), 0);
    int want_uid = root ? 4242 : (int)getuid(), want_gid = root ? 4343 : (int)getgid();
    assert_int_equal((int)num(res, "uid"), want_uid);
    assert_int_equal((int)num(res, "euid"), want_uid);
    assert_int_equal((int)num(res, "suid"), want_uid);
    assert_int_equal((int)num(res, "gid"), want_gid);
    assert_int_equal((int)num(res, "egid"), want_gid);
    assert_int_equal((int)num(res, "caps"), 0);
    if (root)
        assert_int_equal((int)num(res, "groups"), 0);
    json_decref(res);
    if (root) {
        lim.uid = 0;
        sandbox_expect(child_identity, &lim, DEMS_MEDIA_INTERNAL, "dropping privileges failed");
    }
}

static void test_sandbox_limits(void **state)
{
    struct dems_media_limits lim;

    (void)state;
    dems_media_limits_init(&lim);
    lim.timeout = 1;
    sandbox_expect(child_sleep, &lim, DEMS_MEDIA_TIMEOUT, "timed out after 1 s");
    dems_media_limits_init(&lim);
    lim.cpu_seconds = 1;
    lim.timeout = 20;
    sandbox_expect(child_spin, &lim, DEMS_MEDIA_LIMIT, "CPU limit (1 s) exceeded");
    if (!TEST_ASAN) { /* no RLIMIT_AS under ASan */
        dems_media_limits_init(&lim);
        lim.memory = 1ull << 30;
        sandbox_expect(child_eat, &lim, DEMS_MEDIA_OUT_OF_MEMORY,
                       "out of memory (address-space limit 1024 MiB)");
    }
}

static void test_codes(void **state)
{
    (void)state;
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_INVALID), "media_invalid");
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_UNSUPPORTED), "media_unsupported");
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_TOO_LARGE), "media_too_large");
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_TIMEOUT), "media_timeout");
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_CRASHED), "media_crashed");
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_SECCOMP), "media_seccomp_violation");
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_OUT_OF_MEMORY), "media_out_of_memory");
    assert_string_equal(dems_media_code_str(DEMS_MEDIA_LIMIT), "media_limit");
    assert_int_equal(dems_media_code_err(DEMS_MEDIA_INVALID), DEMS_EINVAL);
    assert_int_equal(dems_media_code_err(DEMS_MEDIA_TOO_LARGE), DEMS_ETOOBIG);
}

int main(void)
{
    av_log_set_level(AV_LOG_ERROR);
    test_pid = getpid();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_mjpeg_avi),
        cmocka_unit_test(test_video_without_audio),
        cmocka_unit_test(test_audio_only),
        cmocka_unit_test(test_cctv_12_5_fps),
        cmocka_unit_test(test_variable_frame_rate),
        cmocka_unit_test(test_rotated_phone_video),
        cmocka_unit_test(test_four_hour_cctv),
        cmocka_unit_test(test_probe_metadata),
        cmocka_unit_test(test_in_process_preview),
        cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_absurd_dimensions),
        cmocka_unit_test(test_never_ending_stream),
        cmocka_unit_test(test_output_size_limit),
        cmocka_unit_test(test_sandbox_crash),
        cmocka_unit_test(test_sandbox_seccomp),
        cmocka_unit_test(test_sandbox_limits),
        cmocka_unit_test(test_sandbox_unprivileged),
    };

    return cmocka_run_group_tests(tests, setup_corpus, teardown_corpus);
}
