/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Face tracks: links one video's per-frame face detections (from
 * dems_face_detect, dems_face_landmarks and dems_face_describe) into tracks
 * by box overlap and descriptor distance, and keeps per track its time span,
 * its best-quality detection and its best descriptors; plus the JPEG crop
 * encoder for a track's best detection. Pure computation: no I/O, no
 * logging, no threads. A tracker is used by one thread at a time.
 *
 * The worker's loop, in short:
 *
 *     dems_face_tracker_new(&params, &tr);
 *     for each sampled frame (t ascending):
 *         detect, landmarks, describe -> faces[n]
 *         dems_face_tracker_add(tr, t, faces, n, w, h, assign);
 *         for each i with assign[i].best: dems_face_crop_jpeg(frame, &faces[i].box, ...)
 *             and keep it as the crop of track assign[i].track (replacing any)
 *         dems_face_tracker_take_closed(tr, &tracks, &k): store them and their
 *             crops; drop held crops of tracks no longer open (dropped ones)
 *     dems_face_tracker_finish(tr); take the rest; dems_face_tracker_free(tr);
 *
 * docs/face.md ("Tracks") explains the linking rule, the quality formula and
 * the limits.
 */
#ifndef DEMS_FACE_TRACK_H
#define DEMS_FACE_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/face.h"

/* Default and largest number of tracks open at once. */
#define DEMS_FACE_TRACK_MAX_OPEN 4096
/* Largest number of descriptors a track may keep (max_descriptors). */
#define DEMS_FACE_TRACK_MAX_DESCRIPTORS 1024
/* Largest number of detections in one frame (the detectors give at most
 * 100 by default). */
#define DEMS_FACE_TRACK_MAX_FACES 1024

struct dems_face_track_params {
    /* A detection may continue a track whose last box it overlaps with
     * IoU >= iou_min (default 0.3) if its descriptor lies within
     * max_distance (default 0.6) of the nearest of the track's last and
     * kept descriptors... */
    double iou_min;
    double max_distance;
    /* ...or, whatever the overlap (a camera pan, a jump), when it lies
     * within jump_distance (default 0.4, at most max_distance). */
    double jump_distance;
    /* Seconds a track may go unseen and still continue (default 1.5: three
     * samples missed at 2 per second); longer, and it closes. */
    double max_gap;
    /* Descriptors kept per track, the best-quality ones (default 8). */
    size_t max_descriptors;
    /* Tracks with fewer detections are dropped when they close (default 1). */
    size_t min_detections;
    /* Open tracks at most (default DEMS_FACE_TRACK_MAX_OPEN); over it the
     * least recently seen closes. */
    size_t max_open;
    /* Face side in pixels (square root of the box area) from which the
     * quality's size term is 1 (default 112, the descriptor's input). */
    double ref_side;
};

/* One face of a frame as dems_face_tracker_add placed it. */
struct dems_face_track_assign {
    uint32_t track; /* the track it joined or started (ids count from 1) */
    bool best;      /* it is now that track's best detection: crop it */
};

/* A track's best detection. */
struct dems_face_track_best {
    double t;                 /* the frame's time */
    struct dems_face_box box; /* as given to dems_face_tracker_add */
    float score;              /* detector score */
    double quality;           /* dems_face_track_quality, in [0, 1] */
    double landmarks[DEMS_FACE_LANDMARKS][2];
};

/* A closed track. */
struct dems_face_track {
    uint32_t id;
    double t_first, t_last; /* times of its first and last detection */
    size_t detections;      /* frames it was seen in */
    struct dems_face_track_best best;
    /* The n_descriptors (<= max_descriptors) best-quality descriptors, in
     * time order; descriptor_t[i] and descriptor_quality[i] give the time
     * and quality of the detection descriptors[i] came from. The three
     * arrays are one allocation owned by the track. */
    size_t n_descriptors;
    float (*descriptors)[DEMS_FACE_DESCRIPTOR];
    double *descriptor_t;
    double *descriptor_quality;
    /* Arithmetic mean of the descriptors of all its detections (not only
     * the kept ones), not normalised: the engine's descriptors are compared
     * unnormalised by euclidean distance, and so can this be. */
    float mean[DEMS_FACE_DESCRIPTOR];
};

struct dems_face_tracker;

/* Fills p with the defaults above. */
void dems_face_track_params_init(struct dems_face_track_params *p);

/*
 * Quality of one detection in [0, 1], higher better:
 * score x size x (0.2 + 0.8 x frontality), where score is the detector's
 * (clamped to [0, 1]); size = min(1, s / ref_side) with s the square root of
 * the box area inside the img_width x img_height frame; frontality in [0, 1]
 * from the 68 landmarks (the nose tip's balance between the outer eye
 * corners and between the jaw ends; docs/face.md). Non-finite input gives 0.
 */
double dems_face_track_quality(const struct dems_face_track_params *p, const struct dems_face *face,
                               int img_width, int img_height);

/*
 * Creates a tracker with params p (borrowed; copied) or the defaults when p
 * is NULL. Returns 0 and *ret_tracker (owned; free with
 * dems_face_tracker_free), DEMS_EINVAL (a parameter out of range: the
 * distances and iou_min must be finite and > 0, iou_min <= 1,
 * jump_distance <= max_distance, max_gap >= 0, max_descriptors 1 ..
 * DEMS_FACE_TRACK_MAX_DESCRIPTORS, max_open 1 .. DEMS_FACE_TRACK_MAX_OPEN,
 * ref_side > 0) or DEMS_ENOMEM.
 */
int dems_face_tracker_new(const struct dems_face_track_params *p,
                          struct dems_face_tracker **ret_tracker);

/* Frees tr and every track it still holds (NULL is fine). Tracks already
 * taken are the caller's. */
void dems_face_tracker_free(struct dems_face_tracker *tr);

/*
 * Adds the n faces detected in the frame at time t (seconds, not before the
 * previous frame's), each with box, score, landmarks and descriptor filled,
 * in an img_width x img_height frame. First closes the tracks unseen for
 * more than max_gap; then links faces to open tracks (docs/face.md: the
 * pairs passing the gates, greedily by cost, one face per track), starts a
 * track for each face left over, and closes the least recently seen tracks
 * while more than max_open are open. If assign is non-NULL it receives n
 * entries: assign[i] for faces[i]. The result does not depend on the order
 * of faces, except which of two identical faces gets which track. Borrows
 * faces for the call. Returns 0; DEMS_EINVAL (t non-finite or earlier than
 * the previous frame's, n over DEMS_FACE_TRACK_MAX_FACES, a frame side < 1,
 * a non-finite value or a box without area in a face); DEMS_ETOOBIG (the
 * 2^32 - 1 track ids are used up); or DEMS_ENOMEM. On error the tracker is
 * unchanged and assign is not written.
 */
int dems_face_tracker_add(struct dems_face_tracker *tr, double t, const struct dems_face *faces,
                          size_t n, int img_width, int img_height,
                          struct dems_face_track_assign *assign);

/* Whether track id is open (it may still gain detections and a new best).
 * A track neither open nor among the closed ones was dropped (fewer than
 * min_detections) or already taken. */
bool dems_face_tracker_is_open(const struct dems_face_tracker *tr, uint32_t id);

/* Closes every open track (end of the video). Returns 0 or DEMS_ENOMEM (then
 * nothing closed). */
int dems_face_tracker_finish(struct dems_face_tracker *tr);

/*
 * The closed tracks not yet taken, in the order they closed (those closing
 * in one call by id); tracks with fewer than min_detections detections are
 * not among them. Borrowed; valid until the next call that changes tr.
 */
void dems_face_tracker_tracks(const struct dems_face_tracker *tr,
                              const struct dems_face_track **ret_tracks, size_t *ret_n);

/*
 * Moves the closed tracks (as above) to the caller, so that a long video
 * need not hold them all: *ret_tracks is owned (free with
 * dems_face_tracks_free; NULL when *ret_n is 0). Cannot fail.
 */
void dems_face_tracker_take_closed(struct dems_face_tracker *tr,
                                   struct dems_face_track **ret_tracks, size_t *ret_n);

/* Frees n tracks taken from a tracker, and the array (NULL is fine). */
void dems_face_tracks_free(struct dems_face_track *tracks, size_t n);

/*
 * Encodes as JPEG the crop of img around box: the box enlarged by margin
 * times its width (left and right) and height (top and bottom), its edges
 * rounded outwards to whole pixels and clipped to the image, then scaled
 * down by area averaging (each output pixel the mean of the source area it
 * covers, partial pixels weighted) so that its longer side is at most
 * max_side, and encoded by libjpeg-turbo at quality (1..100; 4:2:0, baseline).
 * Returns 0 and *ret_jpeg (owned; free with free()) of *ret_len bytes, or
 * DEMS_EINVAL (a non-finite or empty box, a box not overlapping the image, a
 * margin outside 0..4, max_side outside 16..DEMS_FACE_MAX_SIDE, a bad quality
 * or image), DEMS_ENOMEM or DEMS_EINTERNAL (libjpeg failed); then err (if
 * non-NULL) holds one line.
 */
int dems_face_crop_jpeg(const struct dems_face_image *img, const struct dems_face_box *box,
                        double margin, int max_side, int quality, uint8_t **ret_jpeg,
                        size_t *ret_len, char *err, size_t errlen);

#endif
