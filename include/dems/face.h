/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face engine: our own C inference over the pre-trained networks of
 * @vladmandic/face-api 1.7.15 (SSD MobileNetV1 and tiny face detectors, the
 * 68-point landmark net, the dlib ResNet 128-d descriptor). It reproduces
 * face-api's results (see docs/face.md for the measured agreement).
 *
 * Objects:
 * - struct dems_face_models: the weights of all four networks, loaded once
 *   and verified against pinned SHA-256 values; immutable afterwards, so one
 *   set may be shared by any number of threads.
 * - struct dems_face_ctx: per-thread scratch memory (activation buffers,
 *   im2col buffers) reused across calls; a context is used by one thread at a
 *   time. Steady-state calls allocate nothing.
 * - struct dems_face_image: an RGB24 frame (borrowed pixels, or owned when
 *   produced by dems_face_image_load).
 *
 * Results are investigative leads, never identifications: descriptors are
 * compared by euclidean distance and candidates ranked by it.
 */
#ifndef DEMS_FACE_H
#define DEMS_FACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEMS_FACE_LANDMARKS  68
#define DEMS_FACE_DESCRIPTOR 128
/* Largest image side and pixel count we decode (a frame of 8K video fits). */
#define DEMS_FACE_MAX_SIDE   16384
#define DEMS_FACE_MAX_PIXELS (64u * 1024u * 1024u)
/* Largest encoded image file read by dems_face_image_load. */
#define DEMS_FACE_MAX_FILE (256u * 1024u * 1024u)
/* Default euclidean distance below which two descriptors are a candidate
 * match (docs/face.md explains the choice; face-api uses 0.6). */
#define DEMS_FACE_DEFAULT_THRESHOLD 0.5f

enum dems_face_detector {
    DEMS_FACE_DETECTOR_SSD = 0,  /* SSD MobileNetV1 at 512x512: accurate */
    DEMS_FACE_DETECTOR_TINY = 1, /* tiny YOLOv2-style detector: fast */
};

struct dems_face_models;
struct dems_face_ctx;

/* An RGB24 image: pixel (x, y) channel c is rgb[y * stride + x * 3 + c]. */
struct dems_face_image {
    int width;
    int height;
    size_t stride;
    const uint8_t *rgb;
    uint8_t *owned; /* non-NULL when the pixels belong to the image */
};

/*
 * Boxes and landmarks are doubles, as in face-api: a crop edge is the floor
 * of a box or landmark coordinate, so float storage could move it by a pixel
 * (and a descriptor by ~0.06) when a value lies near an integer.
 */
struct dems_face_box {
    double x, y, width, height; /* pixels, in the image's own coordinates */
};

struct dems_face {
    float score;
    struct dems_face_box box;
    double landmarks[DEMS_FACE_LANDMARKS][2]; /* valid after dems_face_landmarks */
    float descriptor[DEMS_FACE_DESCRIPTOR];   /* valid after dems_face_describe */
};

struct dems_face_opts {
    enum dems_face_detector detector;
    double min_score; /* keep detections scoring above this (default 0.5) */
    double iou;       /* NMS overlap threshold (SSD 0.5, tiny 0.4 by default) */
    int max_results;  /* SSD only (default 100) */
    int tiny_size;    /* tiny detector input, multiple of 32 in 64..608 (416) */
};

/* Fills opts with face-api's defaults for detector. */
void dems_face_opts_init(struct dems_face_opts *opts, enum dems_face_detector detector);

/*
 * Finds the models directory (the one holding the *-weights_manifest.json
 * files) and writes its path to buf. Order: dir if non-NULL (a models
 * directory, or an install prefix containing
 * node_modules/@vladmandic/face-api/model); the environment variable
 * DEMS_MODELS (same forms); .models/ in the directory of exe_path or any of
 * its 4 parents (the repository checkout); /usr/share/dems/face-models.
 * Returns 0, DEMS_ENOTFOUND (buf holds a message naming the install command)
 * or DEMS_ETOOBIG if the path does not fit in n bytes.
 */
int dems_face_models_find(const char *dir, const char *exe_path, char *buf, size_t n);

/*
 * Loads and verifies the four networks' weights from dir (a directory found
 * by dems_face_models_find). Every file's SHA-256 must equal its pinned value.
 * Returns 0 and *ret_models (owned; free with dems_face_models_free), or
 * DEMS_ENOTFOUND (a file is missing), DEMS_ECRYPTO (a file was altered),
 * DEMS_EINVAL (a manifest is malformed), DEMS_EIO or DEMS_ENOMEM; then err
 * (if non-NULL) holds one line naming the file and the install command.
 * Blocking (reads ~12 MB).
 */
int dems_face_models_load(const char *dir, struct dems_face_models **ret_models, char *err,
                          size_t errlen);

/*
 * The i-th model file (from 0) and its pinned SHA-256 (hex), which every
 * loaded file was checked against, for records such as FACE_INDEXED.
 * False past the last one.
 */
bool dems_face_model_file(size_t i, const char **ret_file, const char **ret_sha256);

/* Frees models (NULL is fine). No context may still use them. */
void dems_face_models_free(struct dems_face_models *models);

/*
 * Creates a context for one thread. Borrows models, which must outlive it.
 * Returns NULL when out of memory. Holds ~80 MB of scratch buffers.
 */
struct dems_face_ctx *dems_face_ctx_new(const struct dems_face_models *models);

/* Frees ctx (NULL is fine). */
void dems_face_ctx_free(struct dems_face_ctx *ctx);

/*
 * Detects faces in img. Writes up to cap faces (score and box only), best
 * first, to faces and their number to *ret_n (more than cap are dropped).
 * Returns 0, DEMS_EINVAL (bad options or image) or DEMS_ENOMEM.
 */
int dems_face_detect(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                     const struct dems_face_opts *opts, struct dems_face *faces, size_t cap,
                     size_t *ret_n);

/* Computes face->landmarks from face->box. Returns 0 or DEMS_EINVAL (the box
 * lies outside the image). */
int dems_face_landmarks(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                        struct dems_face *face);

/* Computes face->descriptor from face->landmarks (dlib alignment crop).
 * Returns 0 or DEMS_EINVAL. */
int dems_face_describe(struct dems_face_ctx *ctx, const struct dems_face_image *img,
                       struct dems_face *face);

/* Euclidean distance between two descriptors. */
float dems_face_distance(const float a[static DEMS_FACE_DESCRIPTOR],
                         const float b[static DEMS_FACE_DESCRIPTOR]);

/*
 * Decodes a JPEG, PNG or binary PPM (P6, maxval 255) held in memory into an
 * RGB24 image (*ret_img owns its pixels; release with dems_face_image_done).
 * Returns 0, DEMS_EINVAL (not an image, truncated, corrupt, 0x0) or
 * DEMS_ETOOBIG (declared size over the limits above), with one line in err.
 */
int dems_face_image_decode(const uint8_t *data, size_t len, struct dems_face_image *ret_img,
                           char *err, size_t errlen);

/* Reads path and decodes it as above; DEMS_EIO when it cannot be read. */
int dems_face_image_load(const char *path, struct dems_face_image *ret_img, char *err,
                         size_t errlen);

/* Frees the pixels an image owns and clears it. */
void dems_face_image_done(struct dems_face_image *img);

#endif
