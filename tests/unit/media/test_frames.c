/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the frame sampler (common/media/frames.c) and the frame
 * stream reader (common/media/frame_read.c). Inputs are made at test time
 * with the ffmpeg command line: 10 s at 25 fps whose every frame carries its
 * number in its colour (red = 20 x second, green = 8 x frame in the second),
 * so a frame read back tells which source frame it was; the same with
 * B-frames, a rotated phone video, a 4K clip, a BT.709 colour, a JPEG, a
 * PNG, audio only, and hostile files. Samplings run in the sandbox (and
 * once in process) into a file or a pipe read by another process; the
 * reader is fed hand-made streams, good and corrupt.
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
#include <libavutil/log.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"

static char dir[256];

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

static void put32be(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* The first tkhd's matrix turned 90 degrees clockwise, as a phone writes it. */
static void make_rotated(void)
{
    size_t len;
    uint8_t *d = slurp("land.mp4", &len);
    uint8_t *t = memmem(d, len, "tkhd", 4);
    const int32_t m[9] = {0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000};

    assert_non_null(t);
    for (int i = 0; i < 9; i++)
        put32be(t - 4 + 48 + 4 * i, (uint32_t)m[i]);
    spill("rot90.mp4", d, len);
    free(d);
}

static void make_hostile(void)
{
    size_t len;
    uint8_t *d = slurp("counter.mp4", &len);
    uint8_t noise[65536];
    uint32_t x = 2463534242u;

    spill("empty.mp4", "", 0);
    spill("truncated.mp4", d, len / 2); /* moov (at the end) cut off */
    free(d);
    for (size_t i = 0; i < sizeof(noise); i++) { /* xorshift32 */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise[i] = (uint8_t)x;
    }
    spill("random.bin", noise, sizeof(noise));
}

/* Frame n of 10 s at 25 fps: red 20 x (n / 25), green 8 x (n % 25). */
#define COUNTER "color=black:s=160x120:r=25:d=10,geq=r='20*floor(N/25)':g='8*mod(N\\,25)':b=128"

static int setup_corpus(void **state)
{
    const char *tmp = getenv("TMPDIR");

    (void)state;
    snprintf(dir, sizeof(dir), "%s/dems-frames-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return -1;
    /* No B-frames: every frame is a reference, so none is skipped. */
    gen("counter.mp4", "-f lavfi -i \"" COUNTER "\" -c:v libx264 -preset ultrafast -bf 0 "
                       "-pix_fmt yuv420p");
    /* x264's defaults: B-frames, some of them not references. */
    gen("counter-b.mp4", "-f lavfi -i \"" COUNTER "\" -c:v libx264 -preset fast -bf 3 "
                         "-pix_fmt yuv420p");
    gen("land.mp4", "-f lavfi -i color=black:s=320x240:r=25:d=2,"
                    "drawbox=x=0:y=0:w=80:h=60:color=white:t=fill -c:v libx264 -preset ultrafast");
    make_rotated();
    gen("uhd.mp4", "-f lavfi -i testsrc=s=3840x2160:r=25:d=0.4 -c:v libx264 -preset ultrafast");
    /* One colour, BT.709 limited range, losslessly coded. */
    gen("bt709.mp4", "-f lavfi -i color=c=0xC04020:s=64x64:r=25:d=1 "
                     "-vf scale=out_color_matrix=bt709:out_range=tv,format=yuv420p "
                     "-colorspace bt709 -color_primaries bt709 -color_trc bt709 "
                     "-c:v libx264 -preset ultrafast -qp 0");
    gen("still.jpg", "-f lavfi -i testsrc=s=320x240:d=1 -frames:v 1");
    gen("still.png", "-f lavfi -i testsrc=s=200x100:d=1 -frames:v 1");
    gen("audio.m4a", "-f lavfi -i sine=f=440:sample_rate=48000:d=2 -c:a aac");
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

/* --- sampling into a file and reading it back ---------------------------- */

#define MAX_FRAMES 64

struct got {
    int r;
    struct dems_media_error err;
    json_t *res;
    int n;
    int64_t t[MAX_FRAMES];
    int number[MAX_FRAMES]; /* source frame number, from the colour */
    uint32_t w[MAX_FRAMES], h[MAX_FRAMES];
    uint8_t px[MAX_FRAMES][3][3]; /* top-left, top-right, bottom-left pixels */
};

/* The source frame number a counter frame shows (its centre pixel). */
static int counter_number(const struct dems_media_frame *f)
{
    const uint8_t *c = f->rgb + (size_t)(f->height / 2) * f->stride + (size_t)(f->width / 2) * 3;
    return (int)lround(c[0] / 20.0) * 25 + (int)lround(c[1] / 8.0);
}

static void read_back(int fd, uint32_t max_side, struct got *g)
{
    struct dems_media_frame f;
    char err[256];
    int r;

    dems_media_frame_init(&f);
    g->n = 0;
    while ((r = dems_media_frame_read(fd, &f, max_side, err, sizeof(err))) == 1) {
        assert_true(g->n < MAX_FRAMES);
        assert_int_equal(f.index, (uint32_t)g->n);
        assert_int_equal(f.stride, (size_t)f.width * 3);
        g->t[g->n] = f.t_us;
        g->w[g->n] = f.width;
        g->h[g->n] = f.height;
        g->number[g->n] = counter_number(&f);
        const uint8_t *corner[3] = {f.rgb, f.rgb + (f.width - 1) * 3,
                                    f.rgb + (size_t)(f.height - 1) * f.stride};
        for (int i = 0; i < 3; i++)
            memcpy(g->px[g->n][i], corner[i], 3);
        g->n++;
    }
    if (r != 0)
        fail_msg("reading the frames back: %d %s", r, err);
    dems_media_frame_done(&f);
}

static void sample(const char *name, const struct dems_media_frames_params *p,
                   const struct dems_media_limits *lim, bool sandboxed, struct got *g)
{
    char in[512], out[512];

    path_of(in, sizeof(in), name);
    snprintf(out, sizeof(out), "%s/frames-%s.bin", dir, name);
    int fd = open(in, O_RDONLY), ofd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0 && ofd >= 0);
    g->res = NULL;
    g->err = (struct dems_media_error){0};
    g->r = sandboxed ? dems_media_frames_sandboxed(fd, ofd, p, lim, &g->res, &g->err)
                     : dems_media_frames(fd, ofd, p, lim, &g->res, &g->err);
    close(fd);
    g->n = 0;
    if (g->r == 0) {
        assert_int_equal(lseek(ofd, 0, SEEK_SET), 0);
        read_back(ofd, p->max_side, g);
    }
    close(ofd);
}

static void sample_ok(const char *name, const struct dems_media_frames_params *p, struct got *g)
{
    struct dems_media_limits lim;

    dems_media_limits_init(&lim);
    lim.timeout = 120;
    sample(name, p, &lim, true, g);
    if (g->r != 0)
        fail_msg("%s: %s: %s", name, dems_media_code_str(g->err.code), g->err.message);
    assert_int_equal((int)json_integer_value(json_object_get(g->res, "frames")), g->n);
}

static double num(const json_t *j, const char *a, const char *b)
{
    const json_t *v = json_object_get(j, a);

    if (b != NULL)
        v = json_object_get(v, b);
    if (!json_is_number(v))
        fail_msg("no number at %s.%s", a, b != NULL ? b : "");
    return json_number_value(v);
}

/* --- sampling ------------------------------------------------------------ */

static void test_defaults(void **state)
{
    struct dems_media_frames_params p;
    struct dems_media_limits lim;
    struct dems_media_error err;
    json_t *res = NULL;

    (void)state;
    dems_media_frames_params_init(&p);
    assert_true(p.fps == 2.0);
    assert_int_equal(p.max_side, 1920);
    assert_true(p.skip_nonref);
    assert_int_equal(p.threads, 1);
    dems_media_limits_init(&lim);
    const struct dems_media_frames_params bad[] = {
        {.fps = 0, .max_side = 1920, .threads = 1},   {.fps = 30.5, .max_side = 1920, .threads = 1},
        {.fps = NAN, .max_side = 1920, .threads = 1}, {.fps = 2, .max_side = 8, .threads = 1},
        {.fps = 2, .max_side = 1920, .threads = 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(dems_media_frames_sandboxed(0, 1, &bad[i], &lim, &res, &err),
                         DEMS_EINTERNAL);
        assert_int_equal(err.code, DEMS_MEDIA_INTERNAL);
        assert_non_null(strstr(err.message, "invalid frame sampling parameters"));
        assert_null(res);
    }
}

/* 2 per second from 10 s at 25 fps: 20 frames, frame k the first at or
 * after k / 2 s (source frame ceil(12.5 k)), its time its own. */
static void test_two_per_second(void **state)
{
    struct dems_media_frames_params p;
    struct got g;

    (void)state;
    dems_media_frames_params_init(&p);
    sample_ok("counter.mp4", &p, &g);
    assert_int_equal(g.n, 20);
    for (int k = 0; k < 20; k++) {
        int want = (25 * k + 1) / 2; /* ceil(12.5 k) */
        assert_true(g.t[k] >= 500000LL * k && g.t[k] < 500000LL * k + 40000);
        assert_int_equal(g.number[k], want);
        assert_int_equal(g.t[k], 40000LL * want);
        assert_int_equal(g.w[k], 160);
        assert_int_equal(g.h[k], 120);
    }
    const json_t *r = g.res;
    assert_int_equal((int)num(r, "decoded", NULL), 250);
    assert_int_equal((int)num(r, "width", NULL), 160);
    assert_int_equal((int)num(r, "height", NULL), 120);
    assert_true(fabs(num(r, "duration", NULL) - 10.0) < 0.05);
    assert_true(fabs(num(r, "source", "fps") - 25.0) < 1e-9);
    assert_int_equal((int)num(r, "source", "width"), 160);
    assert_true(num(r, "params", "fps") == 2.0);
    assert_int_equal((int)num(r, "params", "max_side"), 1920);
    assert_int_equal((int)num(r, "params", "threads"), 1);
    assert_true(json_is_true(json_object_get(json_object_get(r, "params"), "skip_nonref")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "source"), "codec")),
                        "h264");
    assert_true(json_is_object(json_object_get(r, "ffmpeg")));
    json_decref(g.res);
}

static void test_one_and_three_per_second(void **state)
{
    struct dems_media_frames_params p;
    struct got g;

    (void)state;
    dems_media_frames_params_init(&p);
    p.fps = 1;
    sample_ok("counter.mp4", &p, &g);
    assert_int_equal(g.n, 10);
    for (int k = 0; k < 10; k++) {
        assert_int_equal(g.t[k], 1000000LL * k);
        assert_int_equal(g.number[k], 25 * k);
    }
    json_decref(g.res);
    /* 1/3 s is no whole number of source frames. */
    p.fps = 3;
    sample_ok("counter.mp4", &p, &g);
    assert_int_equal(g.n, 30);
    for (int k = 0; k < 30; k++) {
        int64_t target = (1000000LL * k + 2) / 3;
        assert_true(g.t[k] >= target && g.t[k] < target + 40000);
        assert_int_equal(g.t[k], 40000LL * g.number[k]);
    }
    json_decref(g.res);
}

/* With B-frames: skipping non-reference frames decodes far fewer frames,
 * and the frames kept are still the first decoded at or after each
 * sampling time (a skipped frame is at most a few frames late). */
static void test_skip_nonref(void **state)
{
    struct dems_media_frames_params p;
    struct got g;

    (void)state;
    dems_media_frames_params_init(&p);
    p.skip_nonref = false;
    sample_ok("counter-b.mp4", &p, &g);
    assert_int_equal(g.n, 20);
    assert_int_equal((int)num(g.res, "decoded", NULL), 250);
    for (int k = 0; k < 20; k++)
        assert_int_equal(g.number[k], (25 * k + 1) / 2);
    json_decref(g.res);

    p.skip_nonref = true;
    sample_ok("counter-b.mp4", &p, &g);
    assert_int_equal(g.n, 20);
    int decoded = (int)num(g.res, "decoded", NULL);
    if (decoded > 200 || decoded < 25)
        fail_msg("skipping non-reference frames decoded %d of 250", decoded);
    for (int k = 0; k < 20; k++) {
        assert_true(g.t[k] >= 500000LL * k && g.t[k] <= 500000LL * k + 4 * 40000);
        assert_int_equal(g.t[k], 40000LL * g.number[k]);
    }
    json_decref(g.res);
}

/* A phone video turned 90 degrees: portrait frames, the white box that was
 * top left now top right. Also in process (no sandbox). */
static void test_rotated(void **state)
{
    struct dems_media_frames_params p;
    struct dems_media_limits lim;
    struct got g;

    (void)state;
    dems_media_frames_params_init(&p);
    dems_media_limits_init(&lim);
    for (int sandboxed = 0; sandboxed < 2; sandboxed++) {
        sample("rot90.mp4", &p, &lim, sandboxed, &g);
        if (g.r != 0)
            fail_msg("rot90: %s", g.err.message);
        assert_int_equal(g.n, 4);
        assert_int_equal(g.w[0], 240);
        assert_int_equal(g.h[0], 320);
        assert_int_equal((int)num(g.res, "source", "rotation"), 90);
        assert_int_equal((int)num(g.res, "params", "rotation_applied"), 90);
        assert_true(g.px[0][1][0] > 200 && g.px[0][1][1] > 200); /* top right: white */
        assert_true(g.px[0][0][0] < 40);                         /* top left: black */
        assert_true(g.px[0][2][0] < 40);                         /* bottom left: black */
        json_decref(g.res);
    }
}

static void test_scaled(void **state)
{
    struct dems_media_frames_params p;
    struct got g;

    (void)state;
    dems_media_frames_params_init(&p);
    sample_ok("uhd.mp4", &p, &g);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.w[0], 1920);
    assert_int_equal(g.h[0], 1080);
    assert_int_equal((int)num(g.res, "source", "width"), 3840);
    json_decref(g.res);
    p.max_side = 640;
    sample_ok("uhd.mp4", &p, &g);
    assert_int_equal(g.w[0], 640);
    assert_int_equal(g.h[0], 360);
    json_decref(g.res);
    /* Never upscaled. */
    sample_ok("land.mp4", &p, &g);
    assert_int_equal(g.n, 4);
    assert_int_equal(g.w[0], 320);
    assert_int_equal(g.h[0], 240);
    json_decref(g.res);
}

static void test_stills(void **state)
{
    struct dems_media_frames_params p;
    struct got g;
    const struct {
        const char *name;
        uint32_t w, h;
    } stills[] = {{"still.jpg", 320, 240}, {"still.png", 200, 100}};

    (void)state;
    dems_media_frames_params_init(&p);
    for (size_t i = 0; i < 2; i++) {
        sample_ok(stills[i].name, &p, &g);
        assert_int_equal(g.n, 1);
        assert_int_equal(g.t[0], 0);
        assert_int_equal(g.w[0], stills[i].w);
        assert_int_equal(g.h[0], stills[i].h);
        assert_true(json_is_true(json_object_get(json_object_get(g.res, "source"), "still")));
        json_decref(g.res);
    }
}

/* HD video's BT.709 colours come back as they went in (read with BT.601's
 * matrix, this red would lose about 13 levels). */
static void test_colour_matrix(void **state)
{
    struct dems_media_frames_params p;
    struct got g;

    (void)state;
    dems_media_frames_params_init(&p);
    sample_ok("bt709.mp4", &p, &g);
    assert_int_equal(g.n, 2);
    const uint8_t want[3] = {0xc0, 0x40, 0x20};
    for (int i = 0; i < 3; i++)
        if (abs(g.px[0][0][i] - want[i]) > 5)
            fail_msg("channel %d: %d, want %d +- 5", i, g.px[0][0][i], want[i]);
    json_decref(g.res);
}

/* --- refusals ------------------------------------------------------------ */

static void expect_fail(const char *name, const struct dems_media_limits *lim,
                        enum dems_media_code code, const char *needle)
{
    struct dems_media_frames_params p;
    struct got g;

    dems_media_frames_params_init(&p);
    sample(name, &p, lim, true, &g);
    if (g.r == 0 || g.err.code != code || strstr(g.err.message, needle) == NULL)
        fail_msg("%s: expected %s with \"%s\", got %d %s: %s", name, dems_media_code_str(code),
                 needle, g.r, dems_media_code_str(g.err.code), g.err.message);
    assert_int_equal(g.r, dems_media_code_err(code));
    assert_null(g.res);
}

static void test_hostile(void **state)
{
    struct dems_media_limits lim;

    (void)state;
    dems_media_limits_init(&lim);
    lim.timeout = 60;
    expect_fail("empty.mp4", &lim, DEMS_MEDIA_INVALID, "empty file");
    expect_fail("truncated.mp4", &lim, DEMS_MEDIA_INVALID, "moov atom not found");
    expect_fail("random.bin", &lim, DEMS_MEDIA_INVALID, "invalid data");
    expect_fail("audio.m4a", &lim, DEMS_MEDIA_UNSUPPORTED, "no video stream");
    lim.max_pixels = 3840 * 2000;
    expect_fail("uhd.mp4", &lim, DEMS_MEDIA_TOO_LARGE,
                "pixel budget exceeded: 3840x2160 (8294400 px) > 7680000 px");
    dems_media_limits_init(&lim);
    lim.max_total_pixels = 160 * 120 * 100; /* 4 s of the counter */
    expect_fail("counter.mp4", &lim, DEMS_MEDIA_TOO_LARGE, "total pixel budget exceeded");
    dems_media_limits_init(&lim);
    lim.max_duration = 5;
    expect_fail("counter.mp4", &lim, DEMS_MEDIA_TOO_LARGE, "duration 10 s > limit 5 s");
}

/* A reader that went away: the sampler ends with media_output_failed, in
 * the sandbox and in process, where SIGPIPE must neither kill us nor stay
 * blocked or pending afterwards. */
static void test_reader_gone(void **state)
{
    struct dems_media_frames_params p;
    struct dems_media_limits lim;
    struct dems_media_error err = {0};
    json_t *res = NULL;
    char in[512];
    int pfd[2];
    sigset_t before, after, pending;

    (void)state;
    dems_media_frames_params_init(&p);
    dems_media_limits_init(&lim);
    path_of(in, sizeof(in), "counter.mp4");
    for (int sandboxed = 1; sandboxed >= 0; sandboxed--) {
        int fd = open(in, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(pipe(pfd), 0);
        close(pfd[0]);
        sigprocmask(SIG_SETMASK, NULL, &before);
        int r = sandboxed ? dems_media_frames_sandboxed(fd, pfd[1], &p, &lim, &res, &err)
                          : dems_media_frames(fd, pfd[1], &p, &lim, &res, &err);
        sigprocmask(SIG_SETMASK, NULL, &after);
        sigpending(&pending);
        close(fd);
        close(pfd[1]);
        assert_int_equal(r, DEMS_EIO);
        assert_int_equal(err.code, DEMS_MEDIA_OUTPUT);
        assert_non_null(strstr(err.message, "frame pipe closed by the reader after 0 frames"));
        assert_null(res);
        assert_int_equal(sigismember(&after, SIGPIPE), sigismember(&before, SIGPIPE));
        assert_false(sigismember(&pending, SIGPIPE));
    }
}

/* Through a pipe, read by another process while the sandbox writes: what
 * the worker does. The reader reports frames and the last time on a pipe. */
static void test_through_a_pipe(void **state)
{
    struct dems_media_frames_params p;
    struct dems_media_limits lim;
    struct dems_media_error err = {0};
    json_t *res = NULL;
    char in[512];
    int fp[2], rp[2];
    int64_t report[2] = {-1, -1};

    (void)state;
    dems_media_frames_params_init(&p);
    dems_media_limits_init(&lim);
    path_of(in, sizeof(in), "uhd.mp4");
    assert_int_equal(pipe(fp), 0);
    assert_int_equal(pipe(rp), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct dems_media_frame f;
        char e[256];
        int r;
        close(fp[1]);
        close(rp[0]);
        dems_media_frame_init(&f);
        int64_t out[2] = {0, -1};
        while ((r = dems_media_frame_read(fp[0], &f, 1920, e, sizeof(e))) == 1) {
            out[0]++;
            out[1] = f.t_us;
        }
        if (r < 0)
            out[0] = r;
        dems_media_frame_done(&f);
        _exit(write(rp[1], out, sizeof(out)) == sizeof(out) ? 0 : 1);
    }
    close(fp[0]);
    close(rp[1]);
    int fd = open(in, O_RDONLY);
    assert_true(fd >= 0);
    p.fps = 30; /* every frame of the 0.4 s clip: 10 frames of 1920x1080 (6 MB each) */
    int r = dems_media_frames_sandboxed(fd, fp[1], &p, &lim, &res, &err);
    close(fd);
    close(fp[1]);
    if (r != 0)
        fail_msg("%s: %s", dems_media_code_str(err.code), err.message);
    assert_int_equal(read(rp[0], report, sizeof(report)), (ssize_t)sizeof(report));
    close(rp[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(report[0], 10);
    assert_int_equal(report[1], 360000);
    assert_int_equal((int)num(res, "frames", NULL), 10);
    json_decref(res);
}

/* --- the reader ------------------------------------------------------------ */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

struct head {
    const char *magic;
    uint32_t version;
    int64_t t;
    uint32_t w, h, stride, index;
};

/* Appends a header and (when pixels) w x h x 3 pixel bytes to buf. */
static size_t frame_bytes(uint8_t *buf, const struct head *hd, bool pixels)
{
    memcpy(buf, hd->magic, 4);
    put_le(buf + 4, hd->version, 4);
    put_le(buf + 8, (uint64_t)hd->t, 8);
    put_le(buf + 16, hd->w, 4);
    put_le(buf + 20, hd->h, 4);
    put_le(buf + 24, hd->stride, 4);
    put_le(buf + 28, hd->index, 4);
    size_t n = DEMS_MEDIA_FRAME_HEAD;
    if (pixels) {
        memset(buf + n, (int)(hd->index + 1), (size_t)hd->w * hd->h * 3);
        n += (size_t)hd->w * hd->h * 3;
    }
    return n;
}

static struct head good(uint32_t index)
{
    return (struct head){"DFRM", 1, 500000LL * index, 4, 2, 12, index};
}

/* Reads a stream of frames from a pipe: the results of each read until one
 * is not 1, the last error text, and the last frame. */
static int read_stream(const uint8_t *data, size_t len, uint32_t max_side, int *nframes, char *err,
                       size_t errlen, struct dems_media_frame *f)
{
    int pfd[2], r;

    assert_int_equal(pipe(pfd), 0);
    assert_true(len <= 65536);
    assert_int_equal(write(pfd[1], data, len), (ssize_t)len);
    close(pfd[1]);
    *nframes = 0;
    err[0] = '\0';
    while ((r = dems_media_frame_read(pfd[0], f, max_side, err, errlen)) == 1)
        (*nframes)++;
    close(pfd[0]);
    return r;
}

static void expect_refused(const uint8_t *data, size_t len, int want, const char *needle,
                           int frames_before)
{
    struct dems_media_frame f;
    char err[256];
    int n;

    dems_media_frame_init(&f);
    int r = read_stream(data, len, 64, &n, err, sizeof(err), &f);
    if (r != want || strstr(err, needle) == NULL || n != frames_before)
        fail_msg("expected %d \"%s\" after %d frames, got %d \"%s\" after %d", want, needle,
                 frames_before, r, err, n);
    dems_media_frame_done(&f);
    assert_null(f.rgb);
}

static void test_reader_good(void **state)
{
    uint8_t buf[4096];
    size_t n = 0;
    struct dems_media_frame f;
    char err[256];
    int frames;

    (void)state;
    n += frame_bytes(buf + n, &(struct head){"DFRM", 1, 0, 8, 4, 24, 0}, true);
    n += frame_bytes(buf + n, &(struct head){"DFRM", 1, 500000, 4, 2, 12, 1}, true);
    dems_media_frame_init(&f);
    assert_int_equal(read_stream(buf, n, 64, &frames, err, sizeof(err), &f), 0);
    assert_int_equal(frames, 2);
    /* The last frame, in the buffer the first one grew. */
    assert_int_equal(f.index, 1);
    assert_int_equal(f.t_us, 500000);
    assert_int_equal(f.width, 4);
    assert_int_equal(f.height, 2);
    assert_int_equal(f.stride, 12);
    assert_int_equal(f.cap, 8 * 4 * 3);
    assert_int_equal(f.rgb[0], 2);
    assert_int_equal(f.rgb[23], 2);
    dems_media_frame_done(&f);
    /* An empty stream is a clean end too. */
    dems_media_frame_init(&f);
    assert_int_equal(read_stream(buf, 0, 64, &frames, err, sizeof(err), &f), 0);
    assert_int_equal(frames, 0);
    dems_media_frame_done(&f);
}

/* A good frame 0, then frame 1 as h says (with its pixels or not). */
static size_t two_frames(uint8_t *buf, const struct head *h, bool pixels)
{
    struct head first = good(0);
    size_t n = frame_bytes(buf, &first, true);

    return n + frame_bytes(buf + n, h, pixels);
}

static void test_reader_refuses(void **state)
{
    uint8_t buf[8192];
    struct head h;
    size_t n;

    (void)state;
#define ONE(mutate, pixels, want, needle)                                                          \
    do {                                                                                           \
        h = good(1);                                                                               \
        mutate;                                                                                    \
        n = two_frames(buf, &h, pixels);                                                           \
        expect_refused(buf, n, want, needle, 1);                                                   \
    } while (0)
    ONE(h.magic = "DFRN", true, DEMS_EINVAL, "bad magic");
    ONE(h.version = 2, true, DEMS_EINVAL, "version 2, not 1");
    ONE(h.w = 0, false, DEMS_EINVAL, "empty frame 0x2");
    ONE(h.h = 0, false, DEMS_EINVAL, "empty frame 4x0");
    ONE((h.w = 65, h.stride = 195), false, DEMS_ETOOBIG, "frame 65x2 over the side limit 64");
    ONE((h.w = 0x7fffffff, h.h = 0x7fffffff), false, DEMS_ETOOBIG, "over the side limit");
    ONE(h.stride = 16, true, DEMS_EINVAL, "stride 16 for width 4");
    ONE(h.index = 2, true, DEMS_EINVAL, "frame index 2, expected 1");
    ONE(h.t = 0, true, DEMS_EINVAL, "times going backwards (0 us after 0 us)");
    ONE(h.t = -5, true, DEMS_EINVAL, "times going backwards");
#undef ONE
    /* Pixels cut short, and a header cut short. */
    h = good(1);
    n = two_frames(buf, &h, true) - 5;
    expect_refused(buf, n, DEMS_EINVAL, "truncated frame 1 (19 of 24 pixel bytes)", 1);
    n = two_frames(buf, &h, false) - 12;
    expect_refused(buf, n, DEMS_EINVAL, "truncated header (20 of 32 bytes)", 1);
    h = good(0);
    n = frame_bytes(buf, &h, false);
    expect_refused(buf, n, DEMS_EINVAL, "truncated frame 0 (0 of 24 pixel bytes)", 0);
}

/* A corrupt time or index on the first frame; and with no side limit to
 * speak of, a width whose stride (w x 3) a u32 cannot hold. */
static void test_reader_first_frame(void **state)
{
    uint8_t buf[64];
    struct dems_media_frame f;
    char err[256];
    int pfd[2];

    (void)state;
    size_t n = frame_bytes(buf, &(struct head){"DFRM", 1, -1, 4, 2, 12, 0}, false);
    expect_refused(buf, n, DEMS_EINVAL, "times going backwards", 0);
    n = frame_bytes(buf, &(struct head){"DFRM", 1, 0, 4, 2, 12, 1}, false);
    expect_refused(buf, n, DEMS_EINVAL, "frame index 1, expected 0", 0);
    n = frame_bytes(buf, &(struct head){"DFRM", 1, 0, 0xffffffffu, 0xffffffffu, 0xfffffffdu, 0},
                    false);
    dems_media_frame_init(&f);
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], buf, n), (ssize_t)n);
    close(pfd[1]);
    assert_int_equal(dems_media_frame_read(pfd[0], &f, UINT32_MAX, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "stride 4294967293 for width 4294967295"));
    assert_null(f.rgb); /* nothing allocated */
    close(pfd[0]);
}

int main(void)
{
    av_log_set_level(AV_LOG_QUIET);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_two_per_second),
        cmocka_unit_test(test_one_and_three_per_second),
        cmocka_unit_test(test_skip_nonref),
        cmocka_unit_test(test_rotated),
        cmocka_unit_test(test_scaled),
        cmocka_unit_test(test_stills),
        cmocka_unit_test(test_colour_matrix),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_reader_gone),
        cmocka_unit_test(test_through_a_pipe),
        cmocka_unit_test(test_reader_good),
        cmocka_unit_test(test_reader_refuses),
        cmocka_unit_test(test_reader_first_frame),
    };

    return cmocka_run_group_tests(tests, setup_corpus, teardown_corpus);
}
