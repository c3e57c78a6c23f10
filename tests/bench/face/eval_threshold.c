/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Threshold evaluation for face matching without a labelled face set
 * (docs/face.md): the faces of face-api's demo photos are different people
 * (impostor pairs); same-person (genuine) pairs come from transforming each
 * photo (mirror, downscale, JPEG re-encode, brightness, crop jitter, small
 * rotation) and re-running the whole pipeline (detect, landmarks,
 * descriptor) on the result.
 *   eval_threshold [--models DIR] [--detector ssd|tiny] IMAGE...
 * Prints a markdown table of false-match and false-non-match rates at
 * thresholds 0.40..0.60 and the distance distributions.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* jpeglib.h needs stdio.h first. */
/* clang-format off */
#include <jpeglib.h>
/* clang-format on */

#include "dems/face.h"

#define MAX_IMG   16
#define MAX_FACES 32
#define MAX_ALL   (MAX_IMG * MAX_FACES)
#define NVAR      9

static const char *const var_name[NVAR] = {"original",      "mirror",      "downscale 0.5",
                                           "downscale 0.3", "JPEG q25",    "brighter x1.4",
                                           "darker x0.6",   "crop jitter", "rotate 8 deg"};

struct face_rec {
    int img, face, var;
    float desc[DEMS_FACE_DESCRIPTOR];
};

static struct face_rec recs[MAX_ALL * NVAR];
static size_t nrecs;

static int new_image(struct dems_face_image *d, int w, int h)
{
    d->owned = calloc((size_t)w * (size_t)h, 3);
    if (d->owned == NULL)
        return -1;
    d->width = w;
    d->height = h;
    d->stride = (size_t)w * 3;
    d->rgb = d->owned;
    return 0;
}

static uint8_t clamp8(double v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

/* Area-average downscale by s (< 1), as a camera further away would see. */
static int downscale(const struct dems_face_image *s, double f, struct dems_face_image *d)
{
    int w = (int)(s->width * f), h = (int)(s->height * f);
    if (new_image(d, w, h) < 0)
        return -1;
    for (int y = 0; y < h; y++) {
        int y0 = (int)(y / f), y1 = (int)((y + 1) / f);
        for (int x = 0; x < w; x++) {
            int x0 = (int)(x / f), x1 = (int)((x + 1) / f);
            double acc[3] = {0};
            int n = 0;
            for (int yy = y0; yy < y1 && yy < s->height; yy++) {
                for (int xx = x0; xx < x1 && xx < s->width; xx++, n++) {
                    for (int c = 0; c < 3; c++)
                        acc[c] += s->rgb[(size_t)yy * s->stride + (size_t)xx * 3 + (size_t)c];
                }
            }
            for (int c = 0; c < 3; c++)
                d->owned[(size_t)y * d->stride + (size_t)x * 3 + (size_t)c] =
                    clamp8(acc[c] / (n > 0 ? n : 1));
        }
    }
    return 0;
}

static int jpeg_roundtrip(const struct dems_face_image *s, int quality, struct dems_face_image *d)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long len = 0;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &mem, &len);
    ci.image_width = (JDIMENSION)s->width;
    ci.image_height = (JDIMENSION)s->height;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(uintptr_t)(s->rgb + (size_t)ci.next_scanline * s->stride);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    char err[256];
    int r = dems_face_image_decode(mem, len, d, err, sizeof(err));
    free(mem);
    return r;
}

/* Pixel transform: mirror (mode 0) or brightness gain (mode 1). */
static int pixel_map(const struct dems_face_image *s, int mode, double gain,
                     struct dems_face_image *d)
{
    if (new_image(d, s->width, s->height) < 0)
        return -1;
    for (int y = 0; y < s->height; y++) {
        for (int x = 0; x < s->width; x++) {
            const uint8_t *p =
                s->rgb + (size_t)y * s->stride + (size_t)(mode == 0 ? s->width - 1 - x : x) * 3;
            uint8_t *q = d->owned + (size_t)y * d->stride + (size_t)x * 3;
            for (int c = 0; c < 3; c++)
                q[c] = mode == 0 ? p[c] : clamp8(p[c] * gain);
        }
    }
    return 0;
}

/* Crop (x, y, w, h), rotated by deg about its centre (bilinear, black fill). */
static int crop_rotate(const struct dems_face_image *s, int x0, int y0, int w, int h, double deg,
                       struct dems_face_image *d)
{
    if (new_image(d, w, h) < 0)
        return -1;
    double a = deg * M_PI / 180, ca = cos(a), sa = sin(a), cx = w / 2.0, cy = h / 2.0;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double u = ca * (x - cx) + sa * (y - cy) + cx + x0;
            double v = -sa * (x - cx) + ca * (y - cy) + cy + y0;
            int iu = (int)floor(u), iv = (int)floor(v);
            if (iu < 0 || iv < 0 || iu + 1 >= s->width || iv + 1 >= s->height)
                continue;
            double fu = u - iu, fv = v - iv;
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = s->rgb + (size_t)iv * s->stride + (size_t)iu * 3 + (size_t)c;
                double top = p[0] + (p[3] - p[0]) * fu;
                double bot = p[s->stride] + (p[s->stride + 3] - p[s->stride]) * fu;
                d->owned[(size_t)y * d->stride + (size_t)x * 3 + (size_t)c] =
                    clamp8(top + (bot - top) * fv);
            }
        }
    }
    return 0;
}

static double iou(struct dems_face_box a, struct dems_face_box b)
{
    double w = fmax(0, fmin(a.x + a.width, b.x + b.width) - fmax(a.x, b.x));
    double h = fmax(0, fmin(a.y + a.height, b.y + b.height) - fmax(a.y, b.y));
    return w * h / ((double)a.width * a.height + (double)b.width * b.height - w * h);
}

/* Runs the pipeline on img; records the face best overlapping want. */
static void analyse(struct dems_face_ctx *ctx, const struct dems_face_opts *o,
                    const struct dems_face_image *img, struct dems_face_box want, int im, int fi,
                    int var)
{
    static struct dems_face faces[MAX_FACES];
    size_t n = 0;
    if (dems_face_detect(ctx, img, o, faces, MAX_FACES, &n) < 0)
        return;
    double best = 0.3;
    int bi = -1;
    for (size_t i = 0; i < n; i++) {
        double v = iou(faces[i].box, want);
        if (v > best) {
            best = v;
            bi = (int)i;
        }
    }
    if (bi < 0 || nrecs >= sizeof(recs) / sizeof(recs[0])) {
        fprintf(stderr, "image %d face %d: not found in variant %s\n", im, fi, var_name[var]);
        return;
    }
    if (dems_face_landmarks(ctx, img, &faces[bi]) < 0 ||
        dems_face_describe(ctx, img, &faces[bi]) < 0)
        return;
    struct face_rec *r = &recs[nrecs++];
    r->img = im;
    r->face = fi;
    r->var = var;
    memcpy(r->desc, faces[bi].descriptor, sizeof(r->desc));
}

static void whole_image_variants(struct dems_face_ctx *ctx, const struct dems_face_opts *o,
                                 const struct dems_face_image *img, int im,
                                 const struct dems_face *orig, size_t n)
{
    for (int var = 1; var <= 6; var++) {
        struct dems_face_image t = {0};
        double f = var == 2 ? 0.5 : var == 3 ? 0.3 : 1.0;
        int r = var == 1   ? pixel_map(img, 0, 1, &t)
                : var <= 3 ? downscale(img, f, &t)
                : var == 4 ? jpeg_roundtrip(img, 25, &t)
                           : pixel_map(img, 1, var == 5 ? 1.4 : 0.6, &t);
        for (size_t i = 0; r == 0 && i < n; i++) {
            struct dems_face_box b = orig[i].box;
            if (var == 1)
                b.x = (float)img->width - b.x - b.width;
            b.x *= (float)f;
            b.y *= (float)f;
            b.width *= (float)f;
            b.height *= (float)f;
            analyse(ctx, o, &t, b, im, (int)i, var);
        }
        dems_face_image_done(&t);
    }
}

static void crop_variants(struct dems_face_ctx *ctx, const struct dems_face_opts *o,
                          const struct dems_face_image *img, int im, const struct dems_face *orig,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct dems_face_box *b = &orig[i].box;
        for (int var = 7; var <= 8; var++) {
            /* A window 2.2x the face, shifted by a fixed pseudo-random 15 %. */
            double jx = ((double)((i * 7 + (size_t)var) % 5) - 2) * 0.075 * b->width;
            double jy = ((double)((i * 3 + (size_t)var) % 5) - 2) * 0.075 * b->height;
            int w = (int)(b->width * 2.2), h = (int)(b->height * 2.2);
            int x0 = (int)(b->x + b->width / 2 - w / 2.0 + jx);
            int y0 = (int)(b->y + b->height / 2 - h / 2.0 + jy);
            struct dems_face_image t = {0};
            if (crop_rotate(img, x0, y0, w, h, var == 8 ? 8.0 : 0.0, &t) < 0)
                continue;
            struct dems_face_box want = {b->x - (float)x0, b->y - (float)y0, b->width, b->height};
            analyse(ctx, o, &t, want, im, (int)i, var);
            dems_face_image_done(&t);
        }
    }
}

static void report(void)
{
    static const double th[] = {0.40, 0.45, 0.50, 0.55, 0.60};
    size_t gen[5] = {0}, ngen = 0, imp[5] = {0}, nimp = 0, impo[5] = {0}, nimpo = 0;
    double gmax = 0, imin = 9, iomin = 9;
    for (size_t a = 0; a < nrecs; a++) {
        for (size_t b = a + 1; b < nrecs; b++) {
            const struct face_rec *p = &recs[a], *q = &recs[b];
            double d = dems_face_distance(p->desc, q->desc);
            bool same = p->img == q->img && p->face == q->face;
            bool orig = p->var == 0 && q->var == 0;
            for (int t = 0; t < 5; t++) {
                if (same)
                    gen[t] += d >= th[t];
                else
                    imp[t] += d < th[t];
                if (!same && orig)
                    impo[t] += d < th[t];
            }
            if (same) {
                ngen++;
                gmax = fmax(gmax, d);
            } else {
                nimp++;
                imin = fmin(imin, d);
            }
            if (!same && orig) {
                nimpo++;
                iomin = fmin(iomin, d);
            }
        }
    }
    printf("faces analysed: %zu (incl. variants); genuine pairs %zu (max distance %.3f); "
           "impostor pairs %zu (min %.3f), of which originals only %zu (min %.3f)\n\n",
           nrecs, ngen, gmax, nimp, imin, nimpo, iomin);
    printf("| threshold | FNMR (genuine >= t) | FMR, all impostor pairs | FMR, original faces "
           "only |\n|---|---|---|---|\n");
    for (int t = 0; t < 5; t++)
        printf("| %.2f | %.2f%% (%zu/%zu) | %.2f%% (%zu/%zu) | %.2f%% (%zu/%zu) |\n", th[t],
               100.0 * (double)gen[t] / (double)(ngen ? ngen : 1), gen[t], ngen,
               100.0 * (double)imp[t] / (double)(nimp ? nimp : 1), imp[t], nimp,
               100.0 * (double)impo[t] / (double)(nimpo ? nimpo : 1), impo[t], nimpo);
    printf("\nFNMR per variant at 0.50 / 0.60 (pairs original-variant):\n\n");
    for (int v = 1; v < NVAR; v++) {
        size_t n = 0, f5 = 0, f6 = 0;
        for (size_t a = 0; a < nrecs; a++) {
            for (size_t b = 0; b < nrecs; b++) {
                if (recs[a].var != 0 || recs[b].var != v || recs[a].img != recs[b].img ||
                    recs[a].face != recs[b].face)
                    continue;
                double d = dems_face_distance(recs[a].desc, recs[b].desc);
                n++;
                f5 += d >= 0.5;
                f6 += d >= 0.6;
            }
        }
        printf("- %s: %zu pairs, %zu / %zu not matched\n", var_name[v], n, f5, f6);
    }
}

int main(int argc, char **argv)
{
    const char *models = NULL;
    struct dems_face_opts o;
    dems_face_opts_init(&o, DEMS_FACE_DETECTOR_SSD);
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--models") == 0)
            models = argv[i + 1];
        else if (strcmp(argv[i], "--detector") == 0 && strcmp(argv[i + 1], "tiny") == 0)
            dems_face_opts_init(&o, DEMS_FACE_DETECTOR_TINY);
    }
    char dir[4096], err[1024];
    struct dems_face_models *m = NULL;
    if (i >= argc || argc - i > MAX_IMG) {
        fprintf(stderr, "usage: eval_threshold [--models DIR] [--detector ssd|tiny] IMAGE...\n");
        return 2;
    }
    if (dems_face_models_find(models, "/proc/self/exe", dir, sizeof(dir)) < 0 ||
        dems_face_models_load(dir, &m, err, sizeof(err)) < 0) {
        fprintf(stderr, "eval_threshold: cannot load models from %s\n", dir);
        return 1;
    }
    struct dems_face_ctx *ctx = dems_face_ctx_new(m);
    static struct dems_face orig[MAX_FACES];
    for (int im = 0; im + i < argc && ctx != NULL; im++) {
        struct dems_face_image img;
        size_t n = 0;
        if (dems_face_image_load(argv[im + i], &img, err, sizeof(err)) < 0 ||
            dems_face_detect(ctx, &img, &o, orig, MAX_FACES, &n) < 0)
            continue;
        for (size_t f = 0; f < n; f++)
            analyse(ctx, &o, &img, orig[f].box, im, (int)f, 0);
        whole_image_variants(ctx, &o, &img, im, orig, n);
        crop_variants(ctx, &o, &img, im, orig, n);
        dems_face_image_done(&img);
    }
    report();
    dems_face_ctx_free(ctx);
    dems_face_models_free(m);
    return 0;
}
