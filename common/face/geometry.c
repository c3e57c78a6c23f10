/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the networks' outputs become pixels: detection boxes, the crops the
 * landmark net and the recogniser see, and the landmark mapping. face-api
 * does this in JavaScript numbers (doubles), except the landmark
 * post-processing, which runs as float32 tensor ops; a crop edge is a floor
 * of such a value, so a box edge within a rounding error of an integer picks
 * its pixel by the last bits. Every expression here therefore keeps face-api's
 * types and its order of operations, including its detours: a detection's
 * box is scaled to relative coordinates and back (x * (1 / W) * W) each time
 * face-api re-creates the detection, which can move a value by an ulp.
 * face-models.md 1-4 and face-api's src/classes/{Box,ObjectDetection,
 * FaceLandmarks}.ts are the reference.
 */
#include <math.h>

#include "face_int.h"

/* Math.round for the non-negative values used here. */
static double js_round(double v)
{
    return floor(v + 0.5);
}

double geo_reshaped(int side_px, int w, int h, int s)
{
    /* computeReshapedDimensions: round(side * (s / max(w, h))). */
    double scale = (double)s / (double)(w > h ? w : h);
    return js_round((double)side_px * scale);
}

void geo_ssd_box(const float b[4], int img_w, int img_h, struct dems_face_box *ret)
{
    double padx = 512.0 / geo_reshaped(img_w, img_w, img_h, 512);
    double pady = 512.0 / geo_reshaped(img_h, img_w, img_h, 512);
    double top = fmax(0.0, (double)b[0]) * pady, bottom = fmin(1.0, (double)b[2]) * pady;
    double left = fmax(0.0, (double)b[1]) * padx, right = fmin(1.0, (double)b[3]) * padx;
    /* new FaceDetection(score, new Rect(left, top, right - left, bottom - top), dims):
     * the relative rect rescaled by the image size. */
    *ret = (struct dems_face_box){left * img_w, top * img_h, (right - left) * img_w,
                                  (bottom - top) * img_h};
}

/* Box.rescale(1 / W) then Box.rescale(W): one relative round trip. */
static struct dems_face_box round_trip(struct dems_face_box b, int img_w, int img_h)
{
    double rw = 1.0 / img_w, rh = 1.0 / img_h;
    return (struct dems_face_box){b.x * rw * img_w, b.y * rh * img_h, b.width * rw * img_w,
                                  b.height * rh * img_h};
}

void geo_tiny_box(const double b[4], int img_w, int img_h, struct dems_face_box *ret)
{
    /* BoundingBox(l, t, r, b) has width r - l; ObjectDetection rescales it
     * to the image, and TinyFaceDetector builds the FaceDetection from that
     * detection's relativeBox, rescaled again. */
    struct dems_face_box d = {b[0] * img_w, b[1] * img_h, (b[2] - b[0]) * img_w,
                              (b[3] - b[1]) * img_h};
    *ret = round_trip(d, img_w, img_h);
}

bool geo_clip(int img_w, int img_h, double x, double y, double w, double h, struct crop *ret)
{
    /* Box.clipAtImageBorders, then floor of each field. */
    double cx = fmax(x, 0.0), cy = fmax(y, 0.0);
    double cw = fmin(x + w - cx, (double)img_w - cx);
    double ch = fmin(y + h - cy, (double)img_h - cy);
    cx = floor(cx);
    cy = floor(cy);
    cw = floor(cw);
    ch = floor(ch);
    if (!(cw >= 1.0 && ch >= 1.0 && cx < (double)img_w && cy < (double)img_h))
        return false;
    *ret = (struct crop){(int)cx, (int)cy, (int)cw, (int)ch};
    return true;
}

bool geo_detection_crop(int img_w, int img_h, const struct dems_face_box *box, struct crop *ret)
{
    /* extractFaceTensors crops det.forSize(W, H).box; FaceDetection.forSize
     * goes through relativeBox twice (ObjectDetection.forSize, then the new
     * FaceDetection). */
    struct dems_face_box b = round_trip(round_trip(*box, img_w, img_h), img_w, img_h);
    return geo_clip(img_w, img_h, b.x, b.y, b.width, b.height, ret);
}

void geo_landmarks(const float o[136], struct crop cr, const struct dems_face_box *box,
                   double ret[DEMS_FACE_LANDMARKS][2])
{
    /* FaceLandmark68NetBase.postProcess, in float32 tensors:
     * (out * 112 - pad) / (crop side * scale), with the centring pad unrounded. */
    double w = cr.w, h = cr.h, scale = 112.0 / fmax(h, w);
    double iw = w * scale, ih = h * scale;
    float padx = (float)(iw < ih ? fabs(iw - ih) / 2 : 0.0);
    float pady = (float)(ih < iw ? fabs(iw - ih) / 2 : 0.0);
    float fw = (float)iw, fh = (float)ih;
    for (int i = 0; i < DEMS_FACE_LANDMARKS; i++) {
        float xr = (o[2 * i] * 112.0f - padx) / fw;
        float yr = (o[2 * i + 1] * 112.0f - pady) / fh;
        /* FaceLandmarks68 at the crop's size, then shiftBy(box.x, box.y)
         * through relativePositions: (xr * w) / w * w + box.x. */
        double px = (double)xr * w / w, py = (double)yr * h / h;
        ret[i][0] = px * w + box->x;
        ret[i][1] = py * h + box->y;
    }
}

/* getCenterPoint: a sum from (0, 0) in order, divided by the count. */
static void center(const double lm[][2], int from, int to, double ret[2])
{
    double x = 0.0, y = 0.0;
    for (int i = from; i < to; i++) {
        x += lm[i][0];
        y += lm[i][1];
    }
    ret[0] = x / (to - from);
    ret[1] = y / (to - from);
}

bool geo_align_crop(int img_w, int img_h, const double lm[DEMS_FACE_LANDMARKS][2],
                    struct crop lmcrop, struct crop *ret)
{
    /* FaceLandmarks.alignDlib over the eye and mouth centres. */
    double c[3][2];
    center(lm, 36, 42, c[0]);
    center(lm, 42, 48, c[1]);
    center(lm, 48, 68, c[2]);
    double dx0 = c[2][0] - c[0][0], dy0 = c[2][1] - c[0][1];
    double dx1 = c[2][0] - c[1][0], dy1 = c[2][1] - c[1][1];
    /* Point.magnitude is sqrt(x ** 2 + y ** 2), not hypot. */
    double eye_to_mouth = (sqrt(dx0 * dx0 + dy0 * dy0) + sqrt(dx1 * dx1 + dy1 * dy1)) / 2;
    double size = floor(eye_to_mouth / 0.45);
    double rx = ((0.0 + c[0][0]) + c[1][0]) + c[2][0], ry = ((0.0 + c[0][1]) + c[1][1]) + c[2][1];
    rx /= 3;
    ry /= 3;
    double x = floor(fmax(0.0, rx - 0.5 * size)), y = floor(fmax(0.0, ry - 0.43 * size));
    /* min(size, imageWidth + x): the landmarks' image is the landmark crop
     * (a face-api quirk, kept). */
    double w = fmin(size, lmcrop.w + x), h = fmin(size, lmcrop.h + y);
    if (!isfinite(size))
        return false;
    return geo_clip(img_w, img_h, x, y, w, h, ret);
}
