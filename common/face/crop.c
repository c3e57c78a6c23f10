/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JPEG crop of a face (dems_face_crop_jpeg in include/dems/face_track.h):
 * the region around a box, scaled down by area averaging, encoded by
 * libjpeg-turbo into a buffer we grow ourselves (so that a failed encode
 * frees everything; jpeg_mem_dest would leak its buffer on an error exit).
 * Rows are scaled and encoded one at a time: memory is one output row plus
 * the JPEG, whatever the crop's size.
 */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* jpeglib.h needs stdio.h and stddef.h first. */
/* clang-format off */
#include <jpeglib.h>
#include <jerror.h>
/* clang-format on */

#include "dems/err.h"
#include "dems/face_track.h"

#include "face_int.h"

#define MAX_MARGIN   4.0
#define MIN_MAX_SIDE 16

/* A crop in whole pixels of the image. */
struct region {
    int x, y, w, h;
};

/* The encoder's state, kept out of the frame that calls setjmp. */
struct enc {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    jmp_buf jmp;
    struct jpeg_destination_mgr dest;
    uint8_t *buf; /* the JPEG so far */
    size_t cap;
    size_t len;
    bool is_oom;
    const struct dems_face_image *img;
    struct region rg;
    int ow, oh;   /* output size */
    uint8_t *row; /* one output row */
    double *acc;  /* ow x (3 channels + weight) */
    char msg[JMSG_LENGTH_MAX];
};

static int fail(char *err, size_t errlen, int code, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return code;
}

/* The box enlarged by margin, rounded outwards and clipped to the image. */
static int crop_region(const struct dems_face_image *img, const struct dems_face_box *b,
                       double margin, struct region *ret)
{
    if (!isfinite(b->x) || !isfinite(b->y) || !isfinite(b->width) || !isfinite(b->height) ||
        !(b->width > 0.0) || !(b->height > 0.0))
        return DEMS_EINVAL;
    /* The box itself must overlap the image, not only its margin. */
    if (!(b->x < img->width && b->x + b->width > 0.0 && b->y < img->height &&
          b->y + b->height > 0.0))
        return DEMS_EINVAL;
    double x0 = floor(fmax(b->x - margin * b->width, 0.0));
    double y0 = floor(fmax(b->y - margin * b->height, 0.0));
    double x1 = ceil(fmin(b->x + b->width * (1.0 + margin), (double)img->width));
    double y1 = ceil(fmin(b->y + b->height * (1.0 + margin), (double)img->height));
    if (!(x1 > x0 && y1 > y0))
        return DEMS_EINVAL;
    *ret = (struct region){(int)x0, (int)y0, (int)(x1 - x0), (int)(y1 - y0)};
    return 0;
}

/* ---- area-average scaling ---- */

/* Accumulates source row sy, with weight wy, into the output row's sums:
 * output column ox covers source columns [ox * fx, (ox + 1) * fx). */
static void add_row(struct enc *e, int sy, double wy)
{
    const struct region *rg = &e->rg;
    const uint8_t *src = e->img->rgb + (size_t)(rg->y + sy) * e->img->stride + (size_t)rg->x * 3;
    double fx = (double)rg->w / e->ow;
    for (int ox = 0; ox < e->ow; ox++) {
        double a = ox * fx, b = (ox + 1) * fx;
        double *acc = e->acc + (size_t)ox * 4;
        for (int sx = (int)a; sx < rg->w && sx < b; sx++) {
            double w = wy * (fmin(b, sx + 1.0) - fmax(a, (double)sx));
            const uint8_t *p = src + (size_t)sx * 3;
            acc[0] += w * p[0];
            acc[1] += w * p[1];
            acc[2] += w * p[2];
            acc[3] += w;
        }
    }
}

/* Output row oy: the weighted mean of the source area each pixel covers. */
static void scale_row(struct enc *e, int oy)
{
    double fy = (double)e->rg.h / e->oh;
    double a = oy * fy, b = (oy + 1) * fy;
    memset(e->acc, 0, (size_t)e->ow * 4 * sizeof(*e->acc));
    for (int sy = (int)a; sy < e->rg.h && sy < b; sy++)
        add_row(e, sy, fmin(b, sy + 1.0) - fmax(a, (double)sy));
    for (int ox = 0; ox < e->ow; ox++) {
        const double *acc = e->acc + (size_t)ox * 4;
        for (int c = 0; c < 3; c++) {
            double v = acc[3] > 0.0 ? acc[c] / acc[3] : 0.0;
            e->row[(size_t)ox * 3 + (size_t)c] = (uint8_t)lround(fmin(fmax(v, 0.0), 255.0));
        }
    }
}

static void make_row(struct enc *e, int oy)
{
    if (e->ow == e->rg.w && e->oh == e->rg.h) {
        const uint8_t *src = e->img->rgb + (size_t)(e->rg.y + oy) * e->img->stride;
        memcpy(e->row, src + (size_t)e->rg.x * 3, (size_t)e->ow * 3);
    } else {
        scale_row(e, oy);
    }
}

/* ---- libjpeg destination and errors ---- */

static void on_init_dest(j_compress_ptr ci)
{
    struct enc *e = (struct enc *)(void *)ci;
    e->dest.next_output_byte = e->buf;
    e->dest.free_in_buffer = e->cap;
}

/* The buffer is full: double it. */
static boolean on_empty_output(j_compress_ptr ci)
{
    struct enc *e = (struct enc *)(void *)ci;
    size_t cap = e->cap * 2;
    uint8_t *p = cap > e->cap ? realloc(e->buf, cap) : NULL;
    if (p == NULL) {
        e->is_oom = true;
        ERREXIT(ci, JERR_OUT_OF_MEMORY);
    }
    e->dest.next_output_byte = p + e->cap;
    e->dest.free_in_buffer = cap - e->cap;
    e->buf = p;
    e->cap = cap;
    return TRUE;
}

static void on_term_dest(j_compress_ptr ci)
{
    struct enc *e = (struct enc *)(void *)ci;
    e->len = e->cap - e->dest.free_in_buffer;
}

static void on_jpeg_error(j_common_ptr ci)
{
    struct enc *e = (struct enc *)(void *)ci;
    (*e->jerr.format_message)(ci, e->msg);
    longjmp(e->jmp, 1);
}

/* Compresses e's rows into e->buf. Everything that changes after setjmp
 * lives in *e, outside this frame. */
static int encode(struct enc *e, int quality)
{
    e->ci.err = jpeg_std_error(&e->jerr);
    e->jerr.error_exit = on_jpeg_error;
    if (setjmp(e->jmp) != 0) {
        jpeg_destroy_compress(&e->ci);
        return e->is_oom ? DEMS_ENOMEM : DEMS_EINTERNAL;
    }
    jpeg_create_compress(&e->ci);
    e->dest = (struct jpeg_destination_mgr){
        .init_destination = on_init_dest,
        .empty_output_buffer = on_empty_output,
        .term_destination = on_term_dest,
    };
    e->ci.dest = &e->dest;
    e->ci.image_width = (JDIMENSION)e->ow;
    e->ci.image_height = (JDIMENSION)e->oh;
    e->ci.input_components = 3;
    e->ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&e->ci);
    jpeg_set_quality(&e->ci, quality, TRUE);
    jpeg_start_compress(&e->ci, TRUE);
    for (int oy = 0; oy < e->oh; oy++) {
        JSAMPROW row = e->row;
        make_row(e, oy);
        jpeg_write_scanlines(&e->ci, &row, 1);
    }
    jpeg_finish_compress(&e->ci);
    jpeg_destroy_compress(&e->ci);
    return 0;
}

/* Output size: the longer side at most max_side, the aspect kept. */
static void output_size(const struct region *rg, int max_side, int *ret_w, int *ret_h)
{
    int longer = rg->w > rg->h ? rg->w : rg->h;
    if (longer <= max_side) {
        *ret_w = rg->w;
        *ret_h = rg->h;
        return;
    }
    double s = (double)max_side / longer;
    long w = lround(rg->w * s), h = lround(rg->h * s);
    *ret_w = w < 1 ? 1 : (int)w;
    *ret_h = h < 1 ? 1 : (int)h;
}

int dems_face_crop_jpeg(const struct dems_face_image *img, const struct dems_face_box *box,
                        double margin, int max_side, int quality, uint8_t **ret_jpeg,
                        size_t *ret_len, char *err, size_t errlen)
{
    if (img == NULL || !img_valid(img))
        return fail(err, errlen, DEMS_EINVAL, "crop: bad image");
    if (!(margin >= 0.0 && margin <= MAX_MARGIN) || max_side < MIN_MAX_SIDE ||
        max_side > DEMS_FACE_MAX_SIDE || quality < 1 || quality > 100)
        return fail(err, errlen, DEMS_EINVAL, "crop: margin, max_side or quality out of range");
    struct enc *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return DEMS_ENOMEM;
    int r = box == NULL ? DEMS_EINVAL : crop_region(img, box, margin, &e->rg);
    if (r < 0) {
        free(e);
        return fail(err, errlen, r, "crop: the box is empty, not finite or outside the image");
    }
    e->img = img;
    output_size(&e->rg, max_side, &e->ow, &e->oh);
    e->cap = 4096 + (size_t)e->ow * (size_t)e->oh / 2;
    e->buf = malloc(e->cap);
    e->row = malloc((size_t)e->ow * 3);
    e->acc = malloc((size_t)e->ow * 4 * sizeof(*e->acc));
    r = e->buf != NULL && e->row != NULL && e->acc != NULL ? encode(e, quality) : DEMS_ENOMEM;
    if (r == DEMS_EINTERNAL && err != NULL)
        snprintf(err, errlen, "crop: libjpeg failed: %s", e->msg);
    if (r == 0) {
        *ret_jpeg = e->buf;
        *ret_len = e->len;
    } else {
        free(e->buf);
    }
    free(e->row);
    free(e->acc);
    free(e);
    return r;
}
