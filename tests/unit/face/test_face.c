/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of the face engine (common/face) and its command line
 * (server/cli/face.c): the kernels against plain loops, the image decoders
 * and their refusals, the model loader's checks, and agreement with
 * face-api itself on the fixtures made by tests/face/regen.sh (same faces
 * at IoU >= 0.9, landmarks within 1.5 px, descriptors within 0.02, the same
 * same/different decisions at 0.6 on every pair).
 *
 * Environment: DEMS_FACE_TESTDATA = tests/face of the source tree (set by
 * meson); models come from the default lookup (.models/ of the checkout,
 * installed by deploy/install.d/face-models) or DEMS_MODELS.
 */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
/* cmocka.h needs the headers above first. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "dems/err.h"
#include "dems/face.h"
#include "demsd/cli.h"

#include "../../../common/face/face_int.h"

#define MAX_FACES 64

static char models_dir[4096];
static const char *testdata;
static struct dems_face_models *models;
static struct dems_face_ctx *ctx;

static int setup(void **state)
{
    (void)state;
    char err[1024];
    testdata = getenv("DEMS_FACE_TESTDATA");
    if (testdata == NULL) {
        fprintf(stderr, "DEMS_FACE_TESTDATA is not set\n");
        return -1;
    }
    if (dems_face_models_find(NULL, "/proc/self/exe", models_dir, sizeof(models_dir)) < 0) {
        fprintf(stderr, "%s\n", models_dir);
        return -1;
    }
    if (dems_face_models_load(models_dir, &models, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    ctx = dems_face_ctx_new(models);
    return ctx != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    dems_face_ctx_free(ctx);
    dems_face_models_free(models);
    return 0;
}

static void path_of(char *buf, size_t n, const char *file)
{
    if (strncmp(file, "sample", 6) == 0)
        snprintf(buf, n, "%s/../demo/%s", models_dir, file);
    else
        snprintf(buf, n, "%s/images/%s", testdata, file);
}

static void load(const char *file, struct dems_face_image *img)
{
    char path[4200], err[512] = "";
    path_of(path, sizeof(path), file);
    int r = dems_face_image_load(path, img, err, sizeof(err));
    if (r != 0)
        fail_msg("%s: %s", path, err);
}

/* ---- kernels ---- */

static uint32_t rng = 12345;

static float frand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* The best kernel family this CPU supports. */
static int simd_max(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return SIMD_NONE;
    return __builtin_cpu_supports("avx512f") ? SIMD_AVX512 : SIMD_AVX2;
}

static void test_gemm_matches_loops(void **state)
{
    (void)state;
    enum { M = 29, K = 37, N = 53 };
    float a[M * K], w[K * N], sc[N], sh[N], c0[M * N];
    for (size_t i = 0; i < M * K; i++)
        a[i] = frand();
    for (size_t i = 0; i < K * N; i++)
        w[i] = frand();
    for (size_t i = 0; i < N; i++) {
        sc[i] = frand();
        sh[i] = frand();
    }
    struct alloc_list al = {0};
    struct gemm_w g;
    assert_int_equal(gemm_w_init(&g, &al, w, K, N, sc, sh), 0);
    /* Every kernel family this CPU has, against double-precision loops. */
    for (int level = SIMD_NONE; level <= simd_max(); level++) {
        op_gemm(level, M, a, K, &g, c0, N, ACT_RELU6);
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                double acc = 0;
                for (int k = 0; k < K; k++)
                    acc += (double)a[i * K + k] * w[k * N + j];
                double v = fmin(fmax(acc * sc[j] + sh[j], 0.0), 6.0);
                if (fabs(c0[i * N + j] - v) > 1e-4)
                    fail_msg("level %d: c[%d][%d] = %f, want %f", level, i, j,
                             (double)c0[i * N + j], v);
            }
        }
    }
    al_free(&al);
}

static void test_depthwise_matches_loops(void **state)
{
    (void)state;
    enum { H = 9, W = 8, C = 20 };
    float in[H * W * C], wt[9 * C], sc[C], sh[C], o0[5 * 4 * C], o1[5 * 4 * C];
    for (size_t i = 0; i < H * W * C; i++)
        in[i] = frand();
    for (size_t i = 0; i < 9 * C; i++)
        wt[i] = frand();
    for (size_t i = 0; i < C; i++) {
        sc[i] = frand();
        sh[i] = frand();
    }
    struct alloc_list al = {0};
    struct dw_w d;
    assert_int_equal(dw_w_init(&d, &al, wt, C, sc, sh), 0);
    int oh, ow;
    int pt = pad_same_before(H, 3, 2, &oh), pl = pad_same_before(W, 3, 2, &ow);
    assert_int_equal(oh, 5);
    assert_int_equal(ow, 4);
    assert_int_equal(pt, 1); /* odd input, stride 2: padding 1 before */
    assert_int_equal(pl, 0); /* even input: 0 before, 1 after */
    struct shape is = {H, W, C};
    op_dwconv3(SIMD_NONE, in, is, 2, pt, pl, &d, o0, oh, ow, ACT_LEAKY);
    op_dwconv3(simd_max(), in, is, 2, pt, pl, &d, o1, oh, ow, ACT_LEAKY);
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (int ky = 0; ky < 3; ky++) {
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = y * 2 - pt + ky, ix = x * 2 - pl + kx;
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                            acc += (double)in[(iy * W + ix) * C + c] * wt[(ky * 3 + kx) * C + c];
                    }
                }
                double v = acc * sc[c] + sh[c];
                v = v > 0 ? v : 0.1 * v;
                assert_true(fabs(o0[(y * ow + x) * C + c] - v) < 1e-4);
                assert_true(fabs(o1[(y * ow + x) * C + c] - v) < 1e-4);
            }
        }
    }
    al_free(&al);
}

/* ---- images ---- */

static uint8_t *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)n + 1);
    assert_non_null(d);
    assert_int_equal(fread(d, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return d;
}

static void test_png_ppm_jpeg_agree(void **state)
{
    (void)state;
    struct dems_face_image jpg, png, ppm;
    load("portrait.jpg", &jpg);
    load("portrait-crop.png", &png);
    assert_int_equal(jpg.width, 350);
    assert_int_equal(jpg.height, 450);
    assert_int_equal(png.width, 120);
    assert_int_equal(png.height, 150);
    for (int y = 0; y < 150; y++)
        assert_memory_equal(png.rgb + (size_t)y * png.stride,
                            jpg.rgb + (size_t)(y + 100) * jpg.stride + 300, 360);
    /* A CMYK JPEG of the same region comes out as about the same RGB. */
    struct dems_face_image cmyk;
    load("portrait-crop-cmyk.jpg", &cmyk);
    assert_int_equal(cmyk.width, 120);
    assert_int_equal(cmyk.height, 150);
    double diff = 0;
    for (int y = 0; y < 150; y++) {
        for (int x = 0; x < 360; x++)
            diff += abs(cmyk.rgb[(size_t)y * cmyk.stride + (size_t)x] -
                        png.rgb[(size_t)y * png.stride + (size_t)x]);
    }
    diff /= 150.0 * 360.0;
    if (diff > 6.0)
        fail_msg("CMYK JPEG differs from RGB by %.2f levels on average", diff);
    dems_face_image_done(&cmyk);
    /* A PPM written from the JPEG's pixels reads back identically. */
    char hdr[64];
    int hl = snprintf(hdr, sizeof(hdr), "P6\n# comment\n%d %d\n255\n", jpg.width, jpg.height);
    size_t n = (size_t)hl + jpg.stride * (size_t)jpg.height;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    memcpy(buf, hdr, (size_t)hl);
    memcpy(buf + hl, jpg.rgb, n - (size_t)hl);
    char err[256];
    assert_int_equal(dems_face_image_decode(buf, n, &ppm, err, sizeof(err)), 0);
    assert_int_equal(ppm.width, jpg.width);
    assert_memory_equal(ppm.rgb, jpg.rgb, n - (size_t)hl);
    /* ...and one byte short is refused. */
    struct dems_face_image bad = {0};
    assert_int_equal(dems_face_image_decode(buf, n - 1, &bad, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "truncated"));
    free(buf);
    dems_face_image_done(&jpg);
    dems_face_image_done(&png);
    dems_face_image_done(&ppm);
}

/* Decodes data and expects code, with err containing what. */
static void expect_bad(const uint8_t *data, size_t len, int code, const char *what)
{
    struct dems_face_image img = {0};
    char err[512] = "";
    int r = dems_face_image_decode(data, len, &img, err, sizeof(err));
    if (r != code || strstr(err, what) == NULL)
        fail_msg("expected %d '%s', got %d '%s'", code, what, r, err);
    assert_null(img.owned);
}

/* Finds the JPEG SOF0/SOF2 marker and writes height/width there. */
static void jpeg_set_dims(uint8_t *d, size_t len, unsigned w, unsigned h)
{
    for (size_t i = 2; i + 9 < len; i++) {
        if (d[i] == 0xff && (d[i + 1] == 0xc0 || d[i + 1] == 0xc2)) {
            d[i + 5] = (uint8_t)(h >> 8);
            d[i + 6] = (uint8_t)h;
            d[i + 7] = (uint8_t)(w >> 8);
            d[i + 8] = (uint8_t)w;
            return;
        }
    }
    fail_msg("no SOF marker");
}

static void png_set_dims(uint8_t *d, unsigned w, unsigned h)
{
    /* IHDR data starts at byte 16; its CRC covers type + data (13 bytes). */
    const uint8_t v[8] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                          (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h};
    memcpy(d + 16, v, 8);
    uLong crc = crc32(0L, d + 12, 17);
    d[29] = (uint8_t)(crc >> 24);
    d[30] = (uint8_t)(crc >> 16);
    d[31] = (uint8_t)(crc >> 8);
    d[32] = (uint8_t)crc;
}

static void test_bad_images(void **state)
{
    (void)state;
    char path[4200];
    size_t jl, pl;
    snprintf(path, sizeof(path), "%s/images/portrait.jpg", testdata);
    uint8_t *jpg = slurp(path, &jl);
    snprintf(path, sizeof(path), "%s/images/portrait-crop.png", testdata);
    uint8_t *png = slurp(path, &pl);

    expect_bad((const uint8_t *)"hello, world\n", 13, DEMS_EINVAL, "not an image");
    expect_bad((const uint8_t *)"", 0, DEMS_EINVAL, "not an image");
    expect_bad(jpg, jl / 2, DEMS_EINVAL, "truncated JPEG");
    expect_bad(jpg, 300, DEMS_EINVAL, "JPEG");
    expect_bad(png, pl / 2, DEMS_EINVAL, "PNG");
    expect_bad(png, 40, DEMS_EINVAL, "PNG");
    expect_bad((const uint8_t *)"P6 0 0 255\n", 11, DEMS_EINVAL, "no pixels");
    expect_bad((const uint8_t *)"P6 30000 30000 255\n", 19, DEMS_ETOOBIG, "over the limit");
    expect_bad((const uint8_t *)"P6 12 x 255\n", 12, DEMS_EINVAL, "malformed PPM");
    expect_bad((const uint8_t *)"P6 2 2 65535\n", 13, DEMS_EINVAL, "maxval");

    jpeg_set_dims(jpg, jl, 30000, 30000);
    expect_bad(jpg, jl, DEMS_ETOOBIG, "30000x30000");
    jpeg_set_dims(jpg, jl, 0, 0);
    expect_bad(jpg, jl, DEMS_EINVAL, "JPEG");
    png_set_dims(png, 30000, 30000);
    expect_bad(png, pl, DEMS_ETOOBIG, "30000x30000");
    png_set_dims(png, 0, 0);
    expect_bad(png, pl, DEMS_EINVAL, "PNG");
    free(jpg);
    free(png);

    struct dems_face_image img = {0};
    char err[256];
    assert_int_equal(dems_face_image_load("/nonexistent/x.jpg", &img, err, sizeof(err)), DEMS_EIO);
    assert_int_equal(dems_face_image_load("/", &img, err, sizeof(err)) < 0, 1);
}

/* Randomly damaged JPEG and PNG files decode or fail cleanly (ASan/UBSan
 * watch the decoders' error paths; every success must be a whole image). */
static void test_damaged_images(void **state)
{
    (void)state;
    static const char *const names[2] = {"portrait.jpg", "portrait-crop.png"};
    char path[4200];
    for (int k = 0; k < 2; k++) {
        size_t len;
        snprintf(path, sizeof(path), "%s/images/%s", testdata, names[k]);
        uint8_t *orig = slurp(path, &len), *d = malloc(len);
        assert_non_null(d);
        for (int round = 0; round < 60; round++) {
            memcpy(d, orig, len);
            size_t n = len;
            for (int j = 0; j < 1 + round % 8; j++) {
                rng = rng * 1103515245u + 12345u;
                d[(rng >> 4) % len] = (uint8_t)(rng >> 20);
            }
            if (round % 5 == 4)
                n = (rng >> 3) % len; /* and cut short */
            struct dems_face_image img = {0};
            char err[512] = "";
            int r = dems_face_image_decode(d, n, &img, err, sizeof(err));
            if (r == 0) {
                assert_true(img.width > 0 && img.height > 0 && img.rgb != NULL);
                dems_face_image_done(&img);
            } else {
                assert_true(r == DEMS_EINVAL || r == DEMS_ETOOBIG);
                assert_true(err[0] != '\0');
                assert_null(img.owned);
            }
        }
        free(d);
        free(orig);
    }
}

/* ---- models ---- */

static void test_models_lookup(void **state)
{
    (void)state;
    char buf[4096];
    /* An install prefix is accepted as well as the model directory. */
    char prefix[4200];
    if (strstr(models_dir, "/node_modules/@vladmandic/face-api/model") != NULL) {
        snprintf(prefix, sizeof(prefix), "%s/../../../..", models_dir);
        assert_int_equal(dems_face_models_find(prefix, NULL, buf, sizeof(buf)), 0);
        assert_non_null(strstr(buf, "node_modules/@vladmandic/face-api/model"));
    }
    assert_int_equal(setenv("DEMS_MODELS", models_dir, 1), 0);
    assert_int_equal(dems_face_models_find(NULL, NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, models_dir);
    assert_int_equal(dems_face_models_find(NULL, NULL, buf, 8), DEMS_ENOTFOUND);
    unsetenv("DEMS_MODELS");
}

static void test_models_missing_or_altered(void **state)
{
    (void)state;
    char buf[4096], err[1024];
    struct dems_face_models *m = NULL;
    assert_int_equal(dems_face_models_find("/nonexistent", NULL, buf, sizeof(buf)), DEMS_ENOTFOUND);
    assert_non_null(strstr(buf, "deploy/install.d/face-models"));
    assert_int_equal(dems_face_models_load("/nonexistent", &m, err, sizeof(err)), DEMS_ENOTFOUND);
    assert_non_null(strstr(err, "deploy/install.d/face-models"));
    assert_null(m);

    /* A copy of the model directory with one weight byte changed. */
    char tmpl[] = "/tmp/dems-face-test-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    static const char *const files[] = {
        "ssd_mobilenetv1_model-weights_manifest.json",    "ssd_mobilenetv1_model.bin",
        "tiny_face_detector_model-weights_manifest.json", "tiny_face_detector_model.bin",
        "face_landmark_68_model-weights_manifest.json",   "face_landmark_68_model.bin",
        "face_recognition_model-weights_manifest.json",   "face_recognition_model.bin"};
    char src[4400], dst[4400];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(src, sizeof(src), "%s/%s", models_dir, files[i]);
        snprintf(dst, sizeof(dst), "%s/%s", tmpl, files[i]);
        if (strcmp(files[i], "face_landmark_68_model.bin") != 0) {
            assert_int_equal(symlink(src, dst), 0);
            continue;
        }
        size_t n;
        uint8_t *d = slurp(src, &n);
        d[n / 2] ^= 1;
        FILE *f = fopen(dst, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(d, 1, n, f), n);
        fclose(f);
        free(d);
    }
    assert_int_equal(dems_face_models_load(tmpl, &m, err, sizeof(err)), DEMS_ECRYPTO);
    assert_non_null(strstr(err, "face_landmark_68_model.bin"));
    assert_non_null(strstr(err, "deploy/install.d/face-models"));
    snprintf(dst, sizeof(dst), "%s/face_landmark_68_model.bin", tmpl);
    unlink(dst);
    assert_int_equal(dems_face_models_load(tmpl, &m, err, sizeof(err)), DEMS_ENOTFOUND);
    assert_non_null(strstr(err, "face_landmark_68_model.bin"));
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(dst, sizeof(dst), "%s/%s", tmpl, files[i]);
        unlink(dst);
    }
    rmdir(tmpl);
}

/* ---- agreement with face-api ---- */

struct found {
    char file[64];
    struct dems_face face;
    const float *ref_desc; /* borrowed from the fixture */
    float ref[DEMS_FACE_DESCRIPTOR];
};

static double iou(const struct dems_face_box *a, json_t *b)
{
    double bx = json_number_value(json_object_get(b, "x"));
    double by = json_number_value(json_object_get(b, "y"));
    double bw = json_number_value(json_object_get(b, "width"));
    double bh = json_number_value(json_object_get(b, "height"));
    double w = fmax(0, fmin(a->x + a->width, bx + bw) - fmax(a->x, bx));
    double h = fmax(0, fmin(a->y + a->height, by + bh) - fmax(a->y, by));
    return w * h / ((double)a->width * a->height + bw * bh - w * h);
}

/* Checks one image against its fixture entry; appends the matched faces. */
static void check_image(json_t *entry, const struct dems_face_opts *o, struct found *all,
                        size_t *nall, size_t cap, double worst[3])
{
    const char *file = json_string_value(json_object_get(entry, "file"));
    json_t *ref = json_object_get(entry, "faces");
    struct dems_face_image img;
    struct dems_face faces[MAX_FACES];
    size_t n = 0;
    bool used[MAX_FACES] = {false};
    load(file, &img);
    assert_int_equal(img.width, json_integer_value(json_object_get(entry, "width")));
    assert_int_equal(img.height, json_integer_value(json_object_get(entry, "height")));
    assert_int_equal(dems_face_detect(ctx, &img, o, faces, MAX_FACES, &n), 0);
    if (n != json_array_size(ref))
        fail_msg("%s: %zu faces, face-api found %zu", file, n, json_array_size(ref));
    size_t i;
    json_t *rf;
    json_array_foreach(ref, i, rf)
    {
        size_t best = 0;
        double bi = -1;
        for (size_t j = 0; j < n; j++) {
            double v = iou(&faces[j].box, json_object_get(rf, "box"));
            if (!used[j] && v > bi) {
                bi = v;
                best = j;
            }
        }
        if (bi < 0.9)
            fail_msg("%s: face %zu has IoU %.3f with ours", file, i, bi);
        used[best] = true;
        struct dems_face *f = &faces[best];
        assert_true(fabs(f->score - json_number_value(json_object_get(rf, "score"))) < 0.01);
        assert_int_equal(dems_face_landmarks(ctx, &img, f), 0);
        assert_int_equal(dems_face_describe(ctx, &img, f), 0);
        double lm = 0, d2 = 0;
        json_t *pts = json_object_get(rf, "landmarks"), *desc = json_object_get(rf, "descriptor");
        assert_int_equal(json_array_size(pts), DEMS_FACE_LANDMARKS);
        assert_int_equal(json_array_size(desc), DEMS_FACE_DESCRIPTOR);
        for (int k = 0; k < DEMS_FACE_LANDMARKS; k++) {
            json_t *p = json_array_get(pts, (size_t)k);
            lm = fmax(lm, hypot(f->landmarks[k][0] - json_number_value(json_array_get(p, 0)),
                                f->landmarks[k][1] - json_number_value(json_array_get(p, 1))));
        }
        assert_true(*nall < cap);
        struct found *fd = &all[(*nall)++];
        snprintf(fd->file, sizeof(fd->file), "%s", file);
        fd->face = *f;
        for (int k = 0; k < DEMS_FACE_DESCRIPTOR; k++) {
            fd->ref[k] = (float)json_number_value(json_array_get(desc, (size_t)k));
            d2 += pow(f->descriptor[k] - fd->ref[k], 2);
        }
        worst[0] = fmin(worst[0], bi);
        worst[1] = fmax(worst[1], lm);
        worst[2] = fmax(worst[2], sqrt(d2));
        if (lm > 1.5 || sqrt(d2) > 0.02)
            fail_msg("%s face %zu: landmarks off by %.3f px, descriptor by %.4f", file, i, lm,
                     sqrt(d2));
    }
    dems_face_image_done(&img);
}

static void check_fixture(const char *name, enum dems_face_detector det)
{
    char path[4200];
    json_error_t jerr;
    snprintf(path, sizeof(path), "%s/%s", testdata, name);
    json_t *fx = json_load_file(path, 0, &jerr);
    if (fx == NULL)
        fail_msg("%s: %s", path, jerr.text);
    struct dems_face_opts o;
    dems_face_opts_init(&o, det);
    enum { CAP = 128 };
    struct found *all = calloc(CAP, sizeof(*all));
    assert_non_null(all);
    size_t nall = 0, i;
    double worst[3] = {1, 0, 0};
    json_t *entry;
    /* DEMS_FACE_QUICK=1 (set for sanitizer builds) checks every third image. */
    bool quick = getenv("DEMS_FACE_QUICK") != NULL;
    json_array_foreach(fx, i, entry)
    {
        if (!quick || i % 3 == 0)
            check_image(entry, &o, all, &nall, CAP, worst);
    }
    /* Same decision at face-api's 0.6 on every pair of faces. */
    size_t pairs = 0, below = 0;
    for (size_t a = 0; a < nall; a++) {
        for (size_t b = a + 1; b < nall; b++) {
            float ours = dems_face_distance(all[a].face.descriptor, all[b].face.descriptor);
            float theirs = dems_face_distance(all[a].ref, all[b].ref);
            if ((ours < 0.6f) != (theirs < 0.6f))
                fail_msg("%s/%s: distance %.4f vs face-api %.4f", all[a].file, all[b].file,
                         (double)ours, (double)theirs);
            pairs++;
            below += theirs < 0.6f;
        }
    }
    print_message("%s: %zu faces, min IoU %.5f, max landmark error %.4f px, max descriptor "
                  "distance %.6f; %zu pairs agree at 0.6 (%zu below)\n",
                  name, nall, worst[0], worst[1], worst[2], pairs, below);
    free(all);
    json_decref(fx);
}

static void test_reference_ssd(void **state)
{
    (void)state;
    check_fixture("expected-ssd.json", DEMS_FACE_DETECTOR_SSD);
}

static void test_reference_tiny(void **state)
{
    (void)state;
    check_fixture("expected-tiny.json", DEMS_FACE_DETECTOR_TINY);
}

/* The portable kernels give the same descriptor as the SIMD ones. */
static void test_portable_kernels_agree(void **state)
{
    (void)state;
    struct dems_face_image img;
    struct dems_face_opts o;
    struct dems_face f[4];
    size_t n = 0;
    load("portrait.jpg", &img);
    dems_face_opts_init(&o, DEMS_FACE_DETECTOR_TINY);
    o.tiny_size = 128;
    assert_int_equal(dems_face_detect(ctx, &img, &o, f, 4, &n), 0);
    assert_true(n >= 1);
    assert_int_equal(dems_face_landmarks(ctx, &img, &f[0]), 0);
    struct dems_face g = f[0];
    assert_int_equal(dems_face_describe(ctx, &img, &f[0]), 0);
    int saved = models->simd;
    models->simd = SIMD_NONE;
    struct dems_face h = g;
    assert_int_equal(dems_face_landmarks(ctx, &img, &h), 0);
    assert_int_equal(dems_face_describe(ctx, &img, &h), 0);
    models->simd = saved;
    for (int k = 0; k < DEMS_FACE_LANDMARKS; k++)
        assert_true(fabs(h.landmarks[k][0] - f[0].landmarks[k][0]) < 1e-2);
    assert_true(dems_face_distance(h.descriptor, f[0].descriptor) < 1e-3f);
    dems_face_image_done(&img);
}

/* Two threads with their own contexts over one model set. */
struct thr {
    const struct dems_face_image *img;
    struct dems_face face;
    int r;
};

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    struct dems_face_ctx *c = dems_face_ctx_new(models);
    t->r = c == NULL ? DEMS_ENOMEM : dems_face_landmarks(c, t->img, &t->face);
    if (t->r == 0)
        t->r = dems_face_describe(c, t->img, &t->face);
    dems_face_ctx_free(c);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct dems_face_image img;
    load("portrait.jpg", &img);
    struct dems_face base = {.box = {82, 93, 237, 254}};
    assert_int_equal(dems_face_landmarks(ctx, &img, &base), 0);
    assert_int_equal(dems_face_describe(ctx, &img, &base), 0);
    struct thr t[2] = {{&img, {.box = {82, 93, 237, 254}}, -1},
                       {&img, {.box = {82, 93, 237, 254}}, -1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].r, 0);
        assert_memory_equal(t[i].face.descriptor, base.descriptor, sizeof(base.descriptor));
    }
    /* A box outside the image is refused, not read out of bounds. */
    struct dems_face out = {.box = {5000, 5000, 100, 100}};
    assert_int_equal(dems_face_landmarks(ctx, &img, &out), DEMS_EINVAL);
    dems_face_image_done(&img);
}

/* ---- geometry at pixel boundaries (issue 10) ---- */

/*
 * A detection box whose left and top edges lie 1e-6 px below an integer
 * (X - 1e-6): face-api (doubles) crops from X - 1, as a float box (X) would
 * not. The landmark crop must be the same as for the box (X - 0.75, Y - 0.75)
 * of the same size, so every landmark moves by exactly the boxes'
 * difference. (Not X - 1: face-api's x * (1 / W) * W round trips can take an
 * integer edge an ulp below itself, and so a pixel lower.)
 */
static void test_landmark_crop_at_boundary(void **state)
{
    (void)state;
    struct dems_face_image img;
    load("portrait.jpg", &img);
    struct dems_face a = {.box = {100.0 - 1e-6, 120.0 - 1e-6, 200.5, 210.5}};
    struct dems_face b = {.box = {99.25, 119.25, 200.5, 210.5}};
    struct crop ca, cb;
    assert_true(geo_detection_crop(img.width, img.height, &a.box, &ca));
    assert_true(geo_detection_crop(img.width, img.height, &b.box, &cb));
    assert_int_equal(ca.x, 99);
    assert_int_equal(ca.y, 119);
    assert_memory_equal(&ca, &cb, sizeof(ca));
    assert_int_equal(dems_face_landmarks(ctx, &img, &a), 0);
    assert_int_equal(dems_face_landmarks(ctx, &img, &b), 0);
    double dx = a.box.x - b.box.x, dy = a.box.y - b.box.y, worst = 0;
    for (int k = 0; k < DEMS_FACE_LANDMARKS; k++) {
        worst = fmax(worst, fabs(a.landmarks[k][0] - b.landmarks[k][0] - dx));
        worst = fmax(worst, fabs(a.landmarks[k][1] - b.landmarks[k][1] - dy));
    }
    if (worst > 1e-3)
        fail_msg("landmarks moved by %.4f px more than the box: the crop moved", worst);
    dems_face_image_done(&img);
}

/* Sets the eye and mouth landmarks to L, R and M (x shifted by dx). */
static void set_eyes_mouth(struct dems_face *f, double x0, double y0, double dx)
{
    for (int i = 36; i < 68; i++) {
        bool left = i < 42, right = i >= 42 && i < 48;
        f->landmarks[i][0] = (left ? x0 - 20 : right ? x0 + 20 : x0) + dx;
        f->landmarks[i][1] = left || right ? y0 : y0 + 40;
    }
}

/*
 * alignDlib's crop with its left edge 1e-6 px below an integer: eye-to-mouth
 * distance sqrt(20^2 + 40^2) gives size floor(44.72 / 0.45) = 99, the centre
 * is x0 + dx, so the edge is x0 + dx - 49.5 (x0 = 248.5). Landmarks shifted
 * by -1e-6 and by -0.4 both crop from 198, so the descriptors are identical.
 * Float landmarks would round the first shift away and crop from 199.
 */
static void test_align_crop_at_boundary(void **state)
{
    (void)state;
    struct dems_face_image img;
    load("portrait.jpg", &img);
    struct dems_face a = {.box = {82, 93, 237, 254}};
    assert_int_equal(dems_face_landmarks(ctx, &img, &a), 0);
    struct dems_face b = a;
    set_eyes_mouth(&a, 248.5, 160.0, -1e-6);
    set_eyes_mouth(&b, 248.5, 160.0, -0.4);
    struct crop lmcrop, ca, cb;
    assert_true(geo_detection_crop(img.width, img.height, &a.box, &lmcrop));
    assert_true(
        geo_align_crop(img.width, img.height, (const double(*)[2])a.landmarks, lmcrop, &ca));
    assert_true(
        geo_align_crop(img.width, img.height, (const double(*)[2])b.landmarks, lmcrop, &cb));
    assert_int_equal(ca.x, 198);
    assert_memory_equal(&ca, &cb, sizeof(ca));
    assert_int_equal(dems_face_describe(ctx, &img, &a), 0);
    assert_int_equal(dems_face_describe(ctx, &img, &b), 0);
    float d = dems_face_distance(a.descriptor, b.descriptor);
    if (d != 0.0f)
        fail_msg("descriptors differ by %.4f: the aligned crop moved", (double)d);
    dems_face_image_done(&img);
}

static double num(json_t *a, size_t i)
{
    return json_number_value(json_array_get(a, i));
}

static void expect_crop(bool ok, struct crop c, json_t *want, const char *what, size_t i)
{
    if (json_is_null(want)) {
        if (ok)
            fail_msg("%s %zu: a crop where face-api has none", what, i);
        return;
    }
    if (!ok || c.x != (int)num(want, 0) || c.y != (int)num(want, 1) || c.w != (int)num(want, 2) ||
        c.h != (int)num(want, 3))
        fail_msg("%s %zu: crop (%d, %d, %d, %d), face-api (%g, %g, %g, %g)", what, i, c.x, c.y, c.w,
                 c.h, num(want, 0), num(want, 1), num(want, 2), num(want, 3));
}

static void expect_box(const struct dems_face_box *b, json_t *want, const char *what, size_t i)
{
    double got[4] = {b->x, b->y, b->width, b->height};
    for (size_t k = 0; k < 4; k++) {
        if (got[k] != num(want, k))
            fail_msg("%s %zu: box[%zu] %.17g, face-api %.17g", what, i, k, got[k], num(want, k));
    }
}

static void check_geo_boxes(json_t *fx)
{
    json_t *c;
    size_t i;
    json_array_foreach(json_object_get(fx, "ssd"), i, c)
    {
        json_t *b = json_object_get(c, "b");
        float bf[4] = {(float)num(b, 0), (float)num(b, 1), (float)num(b, 2), (float)num(b, 3)};
        struct dems_face_box box;
        geo_ssd_box(bf, (int)json_integer_value(json_object_get(c, "W")),
                    (int)json_integer_value(json_object_get(c, "H")), &box);
        expect_box(&box, json_object_get(c, "box"), "ssd", i);
    }
    json_array_foreach(json_object_get(fx, "tiny"), i, c)
    {
        json_t *b = json_object_get(c, "b");
        double bd[4] = {num(b, 0), num(b, 1), num(b, 2), num(b, 3)};
        struct dems_face_box box;
        geo_tiny_box(bd, (int)json_integer_value(json_object_get(c, "W")),
                     (int)json_integer_value(json_object_get(c, "H")), &box);
        expect_box(&box, json_object_get(c, "box"), "tiny", i);
    }
    json_array_foreach(json_object_get(fx, "crop"), i, c)
    {
        json_t *b = json_object_get(c, "box");
        struct dems_face_box box = {num(b, 0), num(b, 1), num(b, 2), num(b, 3)};
        struct crop cr = {0};
        bool ok = geo_detection_crop((int)json_integer_value(json_object_get(c, "W")),
                                     (int)json_integer_value(json_object_get(c, "H")), &box, &cr);
        expect_crop(ok, cr, json_object_get(c, "crop"), "crop", i);
    }
}

static void check_geo_landmarks(json_t *fx)
{
    json_t *c;
    size_t i;
    json_array_foreach(json_object_get(fx, "landmarks"), i, c)
    {
        json_t *o = json_object_get(c, "o"), *b = json_object_get(c, "box");
        json_t *lm = json_object_get(c, "lm");
        float of[136];
        for (size_t k = 0; k < 136; k++)
            of[k] = (float)num(o, k);
        struct crop cr = {0, 0, (int)json_integer_value(json_object_get(c, "w")),
                          (int)json_integer_value(json_object_get(c, "h"))};
        struct dems_face_box box = {num(b, 0), num(b, 1), 0, 0};
        double got[DEMS_FACE_LANDMARKS][2];
        geo_landmarks(of, cr, &box, got);
        for (size_t k = 0; k < DEMS_FACE_LANDMARKS; k++) {
            json_t *p = json_array_get(lm, k);
            if (got[k][0] != num(p, 0) || got[k][1] != num(p, 1))
                fail_msg("landmarks %zu point %zu: (%.17g, %.17g), face-api (%.17g, %.17g)", i, k,
                         got[k][0], got[k][1], num(p, 0), num(p, 1));
        }
    }
    json_array_foreach(json_object_get(fx, "align"), i, c)
    {
        json_t *lm = json_object_get(c, "lm"), *lc = json_object_get(c, "lmcrop");
        double pts[DEMS_FACE_LANDMARKS][2];
        for (size_t k = 0; k < DEMS_FACE_LANDMARKS; k++) {
            pts[k][0] = num(json_array_get(lm, k), 0);
            pts[k][1] = num(json_array_get(lm, k), 1);
        }
        struct crop lmcrop = {0, 0, (int)num(lc, 0), (int)num(lc, 1)}, cr = {0};
        bool ok = geo_align_crop((int)json_integer_value(json_object_get(c, "W")),
                                 (int)json_integer_value(json_object_get(c, "H")),
                                 (const double(*)[2])pts, lmcrop, &cr);
        expect_crop(ok, cr, json_object_get(c, "crop"), "align", i);
    }
}

/*
 * Boxes, crops and landmarks agree exactly with face-api's own classes
 * (tests/face/geometry.js) on cases steered next to pixel boundaries.
 */
static void test_geometry_reference(void **state)
{
    (void)state;
    char path[4200];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/expected-geometry.json", testdata);
    json_t *fx = json_load_file(path, 0, &je);
    if (fx == NULL)
        fail_msg("%s: %s", path, je.text);
    check_geo_boxes(fx);
    check_geo_landmarks(fx);
    json_decref(fx);
}

/* Degenerate frames run through every stage without faults. */
static void test_odd_sizes(void **state)
{
    (void)state;
    static const int dims[][2] = {{1, 1}, {1, 700}, {700, 1}, {33, 17}};
    static uint8_t px[700 * 3];
    for (size_t i = 0; i < sizeof(px); i++)
        px[i] = (uint8_t)(i * 37);
    for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
        struct dems_face_image img = {
            .width = dims[k][0], .height = dims[k][1], .stride = (size_t)dims[k][0] * 3, .rgb = px};
        if (dims[k][1] == 17)
            img.stride = 0; /* rows may not overlap: refused */
        struct dems_face f[4];
        struct dems_face_opts o;
        size_t n = 99;
        dems_face_opts_init(&o, k % 2 ? DEMS_FACE_DETECTOR_TINY : DEMS_FACE_DETECTOR_SSD);
        int r = dems_face_detect(ctx, &img, &o, f, 4, &n);
        if (img.stride == 0) {
            assert_int_equal(r, DEMS_EINVAL);
            continue;
        }
        assert_int_equal(r, 0);
        assert_int_equal(n, 0);
        /* A whole-frame box through landmarks and descriptor. */
        f[0].box = (struct dems_face_box){0, 0, (float)img.width, (float)img.height};
        assert_int_equal(dems_face_landmarks(ctx, &img, &f[0]), 0);
        assert_int_equal(dems_face_describe(ctx, &img, &f[0]) <= 0, 1);
    }
    struct dems_face_opts o;
    dems_face_opts_init(&o, DEMS_FACE_DETECTOR_TINY);
    o.tiny_size = 100; /* not a multiple of 32 */
    struct dems_face_image img = {.width = 1, .height = 1, .stride = 3, .rgb = px};
    size_t n;
    struct dems_face f;
    assert_int_equal(dems_face_detect(ctx, &img, &o, &f, 1, &n), DEMS_EINVAL);
    /* Landmarks and descriptor refuse an image without pixels. */
    struct dems_face_image none = {.width = 10, .height = 10, .stride = 30};
    f.box = (struct dems_face_box){0, 0, 5, 5};
    assert_int_equal(dems_face_landmarks(ctx, &none, &f), DEMS_EINVAL);
    assert_int_equal(dems_face_describe(ctx, &none, &f), DEMS_EINVAL);
}

/* ---- command line ---- */

/* Runs dems_cli_face with stdout captured into a string (owned). */
static int run_cli(char **ret_out, int argc, ...)
{
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc && i < 15; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    char tmpl[] = "/tmp/dems-face-cli-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    int r = dems_cli_face(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(fd);
    size_t n;
    *ret_out = (char *)slurp(tmpl, &n);
    (*ret_out)[n] = '\0';
    unlink(tmpl);
    return r;
}

static void test_cli(void **state)
{
    (void)state;
    char img[4200], bad[] = "/tmp/dems-face-bad-XXXXXX", *out = NULL;
    snprintf(img, sizeof(img), "%s/images/portrait.jpg", testdata);
    int fd = mkstemp(bad);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not an image", 12), 12);
    close(fd);
    int r = run_cli(&out, 6, "face", "embed", "--models", models_dir, img, bad);
    assert_int_equal(r, 1); /* one bad image: status 1, the good one still done */
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (j == NULL)
        fail_msg("CLI output is not JSON: %s", jerr.text);
    assert_int_equal(json_array_size(j), 2);
    json_t *o = json_array_get(j, 0), *f = json_array_get(json_object_get(o, "faces"), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "width")), 350);
    assert_int_equal(json_array_size(json_object_get(f, "landmarks")), 68);
    assert_int_equal(json_array_size(json_object_get(f, "descriptor")), 128);
    assert_true(json_number_value(json_object_get(json_object_get(f, "box"), "width")) > 100);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_array_get(j, 1), "error")), "not an image"));
    json_decref(j);
    free(out);
    unlink(bad);

    r = run_cli(&out, 7, "face", "detect", "--detector", "tiny", "--min-score", "0.3", img);
    assert_int_equal(r, 0);
    j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    f = json_array_get(json_object_get(json_array_get(j, 0), "faces"), 0);
    assert_null(json_object_get(f, "descriptor"));
    assert_int_equal(json_array_size(json_object_get(f, "landmarks")), 68);
    json_decref(j);
    free(out);

    /* Everything the SSD scores, even boxes with no pixel in the image. */
    char noface[4200];
    snprintf(noface, sizeof(noface), "%s/images/noface.jpg", testdata);
    r = run_cli(&out, 7, "face", "detect", "--min-score", "0", "--max-results", "40", noface);
    assert_int_equal(r, 0);
    j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    assert_true(json_array_size(json_object_get(json_array_get(j, 0), "faces")) > 0);
    json_decref(j);
    free(out);

    assert_int_equal(run_cli(&out, 3, "face", "detect", "--help"), 0);
    assert_non_null(strstr(out, "--models"));
    free(out);
    assert_int_equal(run_cli(&out, 4, "face", "detect", "--min-score", "2"), 2);
    free(out);
    assert_int_equal(run_cli(&out, 2, "face", "frobnicate"), 2);
    free(out);
    assert_int_equal(run_cli(&out, 5, "face", "detect", "--models", "/nonexistent", img), 2);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_matches_loops),
        cmocka_unit_test(test_depthwise_matches_loops),
        cmocka_unit_test(test_png_ppm_jpeg_agree),
        cmocka_unit_test(test_bad_images),
        cmocka_unit_test(test_damaged_images),
        cmocka_unit_test(test_models_lookup),
        cmocka_unit_test(test_models_missing_or_altered),
        cmocka_unit_test(test_reference_ssd),
        cmocka_unit_test(test_reference_tiny),
        cmocka_unit_test(test_portable_kernels_agree),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_landmark_crop_at_boundary),
        cmocka_unit_test(test_align_crop_at_boundary),
        cmocka_unit_test(test_geometry_reference),
        cmocka_unit_test(test_odd_sizes),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
