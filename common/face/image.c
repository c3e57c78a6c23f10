/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Images in and network inputs out. Decodes JPEG (libjpeg-turbo, default
 * settings: the same pixels as its djpeg tool), PNG (libpng) and binary PPM
 * into RGB24, refusing anything truncated, empty or over the size limits
 * before allocating for it. Builds each network's input as face-api's
 * NetInput.toBatchTensor does: crop, zero-pad to a square, TF's legacy
 * bilinear resize, per-channel normalisation (face-models.md 0.2).
 */
#include <errno.h>
#include <math.h>
#include <png.h>
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
#include "dems/str.h"

#include "face_int.h"

static int fail(char *err, size_t errlen, int code, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return code;
}

/* Checks declared dimensions before anything is allocated for them. */
static int check_dims(uint64_t w, uint64_t h, char *err, size_t errlen)
{
    if (w == 0 || h == 0)
        return fail(err, errlen, DEMS_EINVAL, "image has no pixels (0 width or height)");
    if (w > DEMS_FACE_MAX_SIDE || h > DEMS_FACE_MAX_SIDE || w * h > DEMS_FACE_MAX_PIXELS) {
        if (err != NULL)
            snprintf(err, errlen,
                     "image of %llux%llu pixels is over the limit (%d per side, %u "
                     "pixels)",
                     (unsigned long long)w, (unsigned long long)h, DEMS_FACE_MAX_SIDE,
                     DEMS_FACE_MAX_PIXELS);
        return DEMS_ETOOBIG;
    }
    return 0;
}

static int alloc_image(struct dems_face_image *img, int w, int h)
{
    size_t stride = (size_t)w * 3;
    img->owned = malloc(stride * (size_t)h);
    if (img->owned == NULL)
        return DEMS_ENOMEM;
    img->width = w;
    img->height = h;
    img->stride = stride;
    img->rgb = img->owned;
    return 0;
}

void dems_face_image_done(struct dems_face_image *img)
{
    if (img == NULL)
        return;
    free(img->owned);
    *img = (struct dems_face_image){0};
}

/* ---- PPM ---- */

static int ppm_token(const uint8_t *d, size_t len, size_t *pos, uint64_t max, uint64_t *ret)
{
    for (;;) {
        while (*pos < len &&
               (d[*pos] == ' ' || d[*pos] == '\t' || d[*pos] == '\n' || d[*pos] == '\r'))
            (*pos)++;
        if (*pos < len && d[*pos] == '#') {
            while (*pos < len && d[*pos] != '\n')
                (*pos)++;
            continue;
        }
        break;
    }
    size_t s = *pos;
    while (*pos < len && *pos - s < 12 && d[*pos] >= '0' && d[*pos] <= '9')
        (*pos)++;
    return dems_parse_u64((const char *)d + s, *pos - s, max, ret);
}

static int decode_ppm(const uint8_t *d, size_t len, struct dems_face_image *img, char *err,
                      size_t errlen)
{
    uint64_t w, h, maxval;
    size_t pos = 2;
    if (ppm_token(d, len, &pos, UINT32_MAX, &w) < 0 ||
        ppm_token(d, len, &pos, UINT32_MAX, &h) < 0 ||
        ppm_token(d, len, &pos, 65535, &maxval) < 0 || pos >= len)
        return fail(err, errlen, DEMS_EINVAL, "malformed PPM header");
    if (maxval != 255)
        return fail(err, errlen, DEMS_EINVAL, "unsupported PPM: maxval must be 255");
    int r = check_dims(w, h, err, errlen);
    if (r < 0)
        return r;
    pos++; /* the single white-space byte after maxval */
    size_t need = (size_t)w * (size_t)h * 3;
    if (len - pos < need)
        return fail(err, errlen, DEMS_EINVAL, "truncated PPM: fewer pixels than declared");
    r = alloc_image(img, (int)w, (int)h);
    if (r < 0)
        return r;
    memcpy(img->owned, d + pos, need);
    return 0;
}

/* ---- JPEG ---- */

struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    bool truncated;
};

static void on_jpeg_error(j_common_ptr cinfo)
{
    struct jerr *je = (struct jerr *)(void *)cinfo->err;
    longjmp(je->jmp, 1);
}

static void on_jpeg_message(j_common_ptr cinfo, int level)
{
    struct jerr *je = (struct jerr *)(void *)cinfo->err;
    /* libjpeg pads a file that ends early with grey and only warns; a
     * truncated evidence image must not silently become another image. */
    if (level < 0 && je->pub.msg_code == JWRN_JPEG_EOF)
        je->truncated = true;
}

/* CMYK (or YCCK) rows to RGB. Adobe's files store inverted inks, which is
 * what libjpeg hands back when it saw the Adobe marker. */
static void cmyk_to_rgb(const uint8_t *in, uint8_t *out, size_t w, bool inverted)
{
    for (size_t x = 0; x < w; x++, in += 4, out += 3) {
        unsigned k = inverted ? in[3] : 255u - in[3];
        for (int c = 0; c < 3; c++) {
            unsigned v = inverted ? in[c] : 255u - in[c];
            out[c] = (uint8_t)((v * k + 127u) / 255u);
        }
    }
}

static int jpeg_rows(struct jpeg_decompress_struct *ci, struct dems_face_image *img)
{
    JSAMPARRAY tmp = NULL;
    if (ci->output_components == 4) /* freed with the decompressor */
        tmp = (*ci->mem->alloc_sarray)((j_common_ptr)ci, JPOOL_IMAGE, ci->output_width * 4, 1);
    while (ci->output_scanline < ci->output_height) {
        uint8_t *dst = img->owned + (size_t)ci->output_scanline * img->stride;
        JSAMPROW row = tmp != NULL ? tmp[0] : dst;
        if (jpeg_read_scanlines(ci, &row, 1) != 1)
            return DEMS_EINVAL;
        if (tmp != NULL)
            cmyk_to_rgb(row, dst, ci->output_width, ci->saw_Adobe_marker);
    }
    return 0;
}

static int decode_jpeg(const uint8_t *d, size_t len, struct dems_face_image *img, char *err,
                       size_t errlen)
{
    struct jpeg_decompress_struct ci;
    struct jerr je;
    int r = 0;
    memset(&je, 0, sizeof(je));
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = on_jpeg_error;
    je.pub.emit_message = on_jpeg_message;
    if (setjmp(je.jmp) != 0) {
        char msg[JMSG_LENGTH_MAX + 32] = "cannot decode JPEG: ";
        (*je.pub.format_message)((j_common_ptr)&ci, msg + strlen(msg));
        jpeg_destroy_decompress(&ci);
        dems_face_image_done(img);
        return fail(err, errlen, DEMS_EINVAL, msg);
    }
    jpeg_create_decompress(&ci);
    /* Progressive JPEGs buffer all coefficients; cap that (a 64 Mpx image
     * needs ~400 MB) so a hostile file fails instead of exhausting memory. */
    ci.mem->max_memory_to_use = 512L * 1024 * 1024;
    jpeg_mem_src(&ci, d, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    r = check_dims(ci.image_width, ci.image_height, err, errlen);
    if (r == 0) {
        bool cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
        ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
        jpeg_start_decompress(&ci);
        r = ci.output_components == (cmyk ? 4 : 3)
                ? alloc_image(img, (int)ci.output_width, (int)ci.output_height)
                : fail(err, errlen, DEMS_EINVAL, "unsupported JPEG colours");
    }
    if (r == 0)
        r = jpeg_rows(&ci, img);
    if (r == 0 && !je.truncated)
        jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    if (r == 0 && je.truncated)
        r = fail(err, errlen, DEMS_EINVAL, "truncated JPEG: the file ends before the image does");
    if (r < 0)
        dems_face_image_done(img);
    return r;
}

/* ---- PNG ---- */

static int decode_png(const uint8_t *d, size_t len, struct dems_face_image *img, char *err,
                      size_t errlen)
{
    png_image pi;
    memset(&pi, 0, sizeof(pi));
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, d, len)) {
        if (err != NULL)
            snprintf(err, errlen, "corrupt PNG: %s", pi.message);
        png_image_free(&pi);
        return DEMS_EINVAL;
    }
    int r = check_dims(pi.width, pi.height, err, errlen);
    if (r == 0) {
        pi.format = PNG_FORMAT_RGB;
        r = alloc_image(img, (int)pi.width, (int)pi.height);
    }
    if (r == 0 && !png_image_finish_read(&pi, NULL, img->owned, (png_int_32)img->stride, NULL)) {
        if (err != NULL)
            snprintf(err, errlen, "corrupt or truncated PNG: %s", pi.message);
        r = DEMS_EINVAL;
    }
    png_image_free(&pi);
    if (r < 0)
        dems_face_image_done(img);
    return r;
}

int dems_face_image_decode(const uint8_t *data, size_t len, struct dems_face_image *ret_img,
                           char *err, size_t errlen)
{
    struct dems_face_image img = {0};
    int r;
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        r = decode_jpeg(data, len, &img, err, errlen);
    else if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
        r = decode_png(data, len, &img, err, errlen);
    else if (len >= 3 && data[0] == 'P' && data[1] == '6')
        r = decode_ppm(data, len, &img, err, errlen);
    else
        r = fail(err, errlen, DEMS_EINVAL, "not an image (expected JPEG, PNG or binary PPM)");
    if (r == 0)
        *ret_img = img;
    return r;
}

int dems_face_image_load(const char *path, struct dems_face_image *ret_img, char *err,
                         size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (err != NULL)
            snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return DEMS_EIO;
    }
    int r = 0;
    uint8_t *data = NULL;
    long sz = 0;
    if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        r = fail(err, errlen, DEMS_EIO, "cannot read (not a regular file?)");
    } else if ((unsigned long)sz > DEMS_FACE_MAX_FILE) {
        r = fail(err, errlen, DEMS_ETOOBIG, "image file is over the size limit");
    } else if ((data = malloc((size_t)sz + 1)) == NULL) {
        r = DEMS_ENOMEM;
    } else if (fread(data, 1, (size_t)sz, f) != (size_t)sz) {
        r = fail(err, errlen, DEMS_EIO, "cannot read the whole file");
    }
    fclose(f);
    if (r == 0)
        r = dems_face_image_decode(data, (size_t)sz, ret_img, err, errlen);
    free(data);
    return r;
}

/* ---- network inputs ---- */

bool img_valid(const struct dems_face_image *img)
{
    return img->rgb != NULL && img->width >= 1 && img->height >= 1 &&
           img->width <= DEMS_FACE_MAX_SIDE && img->height <= DEMS_FACE_MAX_SIDE &&
           img->stride >= (size_t)img->width * 3;
}

/* One source row's contribution: the crop row iy (or zeros outside it). */
static const uint8_t *src_row(const struct dems_face_image *img, struct crop cr, int iy)
{
    if (iy < 0 || iy >= cr.h)
        return NULL;
    return img->rgb + (size_t)(cr.y + iy) * img->stride + (size_t)cr.x * 3;
}

/* A crop pixel's channel, or 0 in the padding (ix < 0 or no row). */
static inline float px(const uint8_t *row, int ix, int c)
{
    if (row == NULL || ix < 0)
        return 0.0f;
    return (float)row[(size_t)ix * 3 + (size_t)c];
}

void img_to_input(const struct dems_face_image *img, struct crop cr, int s, bool center,
                  const float mean[3], float mul, float *out)
{
    int side = cr.w > cr.h ? cr.w : cr.h;
    int offx = 0, offy = 0;
    if (center) {
        int d = abs(cr.h - cr.w);
        int after = (int)floor((double)d * 0.5 + 0.5); /* JS Math.round */
        if (cr.w < cr.h)
            offx = d - after;
        else
            offy = d - after;
    }
    double scale = (double)side / (double)s;
    /* Column taps once per call: source columns (crop coordinates, -1 for
     * padding) and weights, in double as tfjs's resize computes them. */
    int c0[MAX_INPUT_SIDE], c1[MAX_INPUT_SIDE];
    double cdx[MAX_INPUT_SIDE];
    for (int q = 0; q < s && q < MAX_INPUT_SIDE; q++) {
        double fx = side == s ? q : (double)q * scale;
        int x0 = (int)floor(fx), x1 = (int)ceil(fx);
        cdx[q] = fx - x0;
        c0[q] = x0 - offx < cr.w ? x0 - offx : -1;
        c1[q] = (x1 > side - 1 ? side - 1 : x1) - offx;
        c1[q] = c1[q] < cr.w ? c1[q] : -1;
    }
    for (int r = 0; r < s; r++) {
        double fy = side == s ? r : (double)r * scale;
        int y0 = (int)floor(fy), y1 = (int)ceil(fy);
        if (y1 > side - 1)
            y1 = side - 1;
        double dy = fy - y0;
        const uint8_t *r0 = src_row(img, cr, y0 - offy), *r1 = src_row(img, cr, y1 - offy);
        float *o = out + (size_t)r * (size_t)s * 3;
        for (int q = 0; q < s && q < MAX_INPUT_SIDE; q++, o += 3) {
            for (int c = 0; c < 3; c++) {
                double tl = px(r0, c0[q], c), tr = px(r0, c1[q], c);
                double bl = px(r1, c0[q], c), br = px(r1, c1[q], c);
                double top = tl + (tr - tl) * cdx[q], bot = bl + (br - bl) * cdx[q];
                float v = (float)(top + (bot - top) * dy);
                o[c] = (v - mean[c]) * mul;
            }
        }
    }
}
