/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests of face tracks and crops (common/face/track.c, crop.c): synthetic
 * detections with hand-made boxes, landmarks and descriptors for the
 * linking rule (crossing faces, leaving and re-entering within and beyond
 * max_gap, a camera pan, two people at one place, the open-track cap, the
 * descriptor cap, the order of faces in a frame), the quality formula, the
 * crop encoder against the decoder, and one run of the real engine over
 * frames made from tests/face/images.
 *
 * Environment: DEMS_FACE_TESTDATA = tests/face of the source tree (set by
 * meson); models come from the default lookup, as in test_face.c.
 * DEMS_FACE_QUICK (sanitizer builds) shortens the real-engine sequence.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h needs the headers above first. */
/* clang-format off */
#include <cmocka.h>
/* clang-format on */

#include "dems/err.h"
#include "dems/face.h"
#include "dems/face_track.h"

/*
 * track.c is compiled into this test with its allocations going through
 * these wrappers, so that test_out_of_memory can fail each one in turn
 * (curl's torture tests); the library's copy is then not linked in.
 */
static long fi_countdown = -1; /* allocations to let through before one fails */
static bool fi_hit;

static bool fi_fail(void)
{
    if (fi_countdown < 0 || fi_countdown-- > 0)
        return false;
    fi_hit = true;
    return true;
}

static void *fi_malloc(size_t n)
{
    return fi_fail() ? NULL : malloc(n);
}

static void *fi_calloc(size_t n, size_t size)
{
    return fi_fail() ? NULL : calloc(n, size);
}

static void *fi_realloc(void *p, size_t n)
{
    return fi_fail() ? NULL : realloc(p, n);
}

#define malloc  fi_malloc
#define calloc  fi_calloc
#define realloc fi_realloc
#include "../../../common/face/track.c"
#undef malloc
#undef calloc
#undef realloc

#define D DEMS_FACE_DESCRIPTOR

/* ---- synthetic detections ---- */

/* Person p's descriptor: a fixed pseudo-random vector of norm 1. Two
 * persons are ~1.4 apart, far beyond any gate. */
static void person_descriptor(int p, float out[D])
{
    uint32_t s = 2654435761u * (uint32_t)(p + 1);
    double norm = 0;
    for (int i = 0; i < D; i++) {
        s = s * 1103515245u + 12345u;
        out[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
        norm += (double)out[i] * out[i];
    }
    for (int i = 0; i < D; i++)
        out[i] = (float)(out[i] / sqrt(norm));
}

/*
 * A face of person p with its box at (x, y), side s, score; the descriptor
 * is p's moved by off along the last axis (so exactly off away from it);
 * yaw 0 puts the nose tip midway between the eye corners and jaw ends, yaw
 * 1 on the right eye corner (a profile).
 */
static struct dems_face face_of(int p, double x, double y, double s, float score, double off,
                                double yaw)
{
    struct dems_face f = {.score = score, .box = {x, y, s, s}};
    for (int i = 0; i <= 16; i++) { /* the jaw, ear to ear */
        f.landmarks[i][0] = x + s * i / 16.0;
        f.landmarks[i][1] = y + s * (0.3 + 0.6 * sin(M_PI * i / 16.0));
    }
    for (int i = 17; i < DEMS_FACE_LANDMARKS; i++) { /* brows, eyes, nose, mouth */
        f.landmarks[i][0] = x + s * 0.5;
        f.landmarks[i][1] = y + s * 0.5;
    }
    f.landmarks[36][0] = x + 0.2 * s; /* outer eye corners */
    f.landmarks[45][0] = x + 0.8 * s;
    f.landmarks[36][1] = f.landmarks[45][1] = y + 0.35 * s;
    f.landmarks[30][0] = x + (0.5 + 0.3 * yaw) * s; /* nose tip */
    f.landmarks[30][1] = y + 0.6 * s;
    person_descriptor(p, f.descriptor);
    f.descriptor[D - 1] += (float)off;
    return f;
}

static struct dems_face_tracker *tracker(const struct dems_face_track_params *p)
{
    struct dems_face_tracker *tr = NULL;
    assert_int_equal(dems_face_tracker_new(p, &tr), 0);
    assert_non_null(tr);
    return tr;
}

static void add(struct dems_face_tracker *tr, double t, const struct dems_face *f, size_t n,
                struct dems_face_track_assign *a)
{
    assert_int_equal(dems_face_tracker_add(tr, t, f, n, 1280, 720, a), 0);
}

static const struct dems_face_track *find_track(const struct dems_face_track *k, size_t n,
                                                uint32_t id)
{
    for (size_t i = 0; i < n; i++)
        if (k[i].id == id)
            return &k[i];
    fail_msg("no closed track %u", id);
    return NULL;
}

/* Takes the closed tracks, at least one. */
static struct dems_face_track *take_some(struct dems_face_tracker *tr, size_t *ret_n)
{
    struct dems_face_track *k;
    dems_face_tracker_take_closed(tr, &k, ret_n);
    if (k == NULL || *ret_n == 0) {
        fprintf(stderr, "no closed tracks to take\n");
        abort(); /* cmocka's fail() is not noreturn for the compiler */
    }
    return k;
}

/* Distance from a track's mean descriptor to person p's. */
static double mean_to_person(const struct dems_face_track *k, int p)
{
    float d[D];
    person_descriptor(p, d);
    return (double)dems_face_distance(k->mean, d);
}

/* ---- parameters and refusals ---- */

static void test_params_and_refusals(void **state)
{
    (void)state;
    struct dems_face_track_params p, bad;
    dems_face_track_params_init(&p);
    assert_true(p.iou_min == 0.3 && p.max_distance == 0.6 && p.jump_distance == 0.4);
    assert_true(p.max_gap == 1.5 && p.max_descriptors == 8 && p.min_detections == 1);
    assert_true(p.max_open == DEMS_FACE_TRACK_MAX_OPEN && p.ref_side == 112);
    struct dems_face_tracker *tr = (void *)&p;
    bad = p, bad.iou_min = 0;
    assert_int_equal(dems_face_tracker_new(&bad, &tr), DEMS_EINVAL);
    bad = p, bad.jump_distance = 0.7;
    assert_int_equal(dems_face_tracker_new(&bad, &tr), DEMS_EINVAL);
    bad = p, bad.max_distance = NAN;
    assert_int_equal(dems_face_tracker_new(&bad, &tr), DEMS_EINVAL);
    bad = p, bad.max_gap = -1;
    assert_int_equal(dems_face_tracker_new(&bad, &tr), DEMS_EINVAL);
    bad = p, bad.max_descriptors = 0;
    assert_int_equal(dems_face_tracker_new(&bad, &tr), DEMS_EINVAL);
    bad = p, bad.max_open = DEMS_FACE_TRACK_MAX_OPEN + 1;
    assert_int_equal(dems_face_tracker_new(&bad, &tr), DEMS_EINVAL);
    assert_ptr_equal(tr, (void *)&p); /* not written on failure */

    tr = tracker(NULL);
    struct dems_face f = face_of(0, 100, 100, 100, 0.9f, 0, 0);
    struct dems_face_track_assign a = {.track = 77, .best = true};
    add(tr, 1.0, &f, 1, &a);
    assert_int_equal(a.track, 1);
    struct dems_face g = f;
    g.box.width = NAN;
    a.track = 77;
    assert_int_equal(dems_face_tracker_add(tr, 1.5, &g, 1, 1280, 720, &a), DEMS_EINVAL);
    g = f, g.box.height = 0;
    assert_int_equal(dems_face_tracker_add(tr, 1.5, &g, 1, 1280, 720, &a), DEMS_EINVAL);
    g = f, g.descriptor[5] = INFINITY;
    assert_int_equal(dems_face_tracker_add(tr, 1.5, &g, 1, 1280, 720, &a), DEMS_EINVAL);
    g = f, g.landmarks[30][1] = NAN;
    assert_int_equal(dems_face_tracker_add(tr, 1.5, &g, 1, 1280, 720, &a), DEMS_EINVAL);
    assert_int_equal(dems_face_tracker_add(tr, 0.5, &f, 1, 1280, 720, &a), DEMS_EINVAL);
    assert_int_equal(dems_face_tracker_add(tr, NAN, &f, 1, 1280, 720, &a), DEMS_EINVAL);
    assert_int_equal(dems_face_tracker_add(tr, 1.5, &f, 1, 0, 720, &a), DEMS_EINVAL);
    assert_int_equal(dems_face_tracker_add(tr, 1.5, NULL, 1, 1280, 720, &a), DEMS_EINVAL);
    assert_int_equal(a.track, 77); /* not written on failure */
    /* A refused frame changed nothing: the next one continues track 1 and
     * a frame without faces is fine. */
    add(tr, 1.5, NULL, 0, NULL);
    add(tr, 2.0, &f, 1, &a);
    assert_int_equal(a.track, 1);
    assert_false(a.best); /* the same quality is not better */
    assert_int_equal(dems_face_tracker_finish(tr), 0);
    const struct dems_face_track *k;
    size_t n;
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 1);
    assert_int_equal(k[0].detections, 2);
    assert_true(k[0].t_first == 1.0 && k[0].t_last == 2.0);
    dems_face_tracker_free(tr);
    dems_face_tracker_free(NULL);
}

/* ---- quality ---- */

static void test_quality(void **state)
{
    (void)state;
    struct dems_face_track_params p;
    dems_face_track_params_init(&p);
    struct dems_face frontal = face_of(0, 100, 100, 112, 0.9f, 0, 0);
    struct dems_face turned = face_of(0, 100, 100, 112, 0.9f, 0, 0.5);
    struct dems_face profile = face_of(0, 100, 100, 112, 0.9f, 0, 1.0);
    struct dems_face big = face_of(0, 100, 100, 200, 0.8f, 0, 0);
    struct dems_face small = face_of(0, 100, 100, 56, 0.8f, 0, 0);
    struct dems_face tiny = face_of(0, 100, 100, 20, 0.8f, 0, 0);
    struct dems_face cut = face_of(0, -56, 100, 112, 0.9f, 0, 0); /* half outside */
    double qf = dems_face_track_quality(&p, &frontal, 1280, 720);
    double qt = dems_face_track_quality(&p, &turned, 1280, 720);
    double qp = dems_face_track_quality(&p, &profile, 1280, 720);
    double qb = dems_face_track_quality(&p, &big, 1280, 720);
    double qs = dems_face_track_quality(&p, &small, 1280, 720);
    double qy = dems_face_track_quality(&p, &tiny, 1280, 720);
    double qc = dems_face_track_quality(&p, &cut, 1280, 720);
    /* score x size x (0.2 + 0.8 x frontality): a frontal face of the
     * reference size is its score; half the side, half the quality. */
    assert_float_equal(qf, 0.9, 1e-6);
    assert_float_equal(qs, 0.8 * 0.5, 1e-6);
    assert_float_equal(qb, 0.8, 1e-6); /* the size term saturates */
    /* nose at 0.75 of the eye line (0.25/0.75), 0.65 of the jaw (0.35/0.65) */
    assert_float_equal(qt, 0.9 * (0.2 + 0.8 * 0.5 * (0.25 / 0.75 + 0.35 / 0.65)), 1e-6);
    /* on the eye corner: eyes 0, jaw 0.2/0.8 */
    assert_float_equal(qp, 0.9 * (0.2 + 0.8 * 0.5 * 0.25), 1e-6);
    assert_true(qf > qt && qt > qp);
    assert_true(qb > qs && qs > qy);
    assert_float_equal(qc, 0.9 * sqrt(0.5), 1e-6);
    /* Out of range or missing landmarks still give a quality in [0, 1]. */
    struct dems_face bare = {.score = 2.0f, .box = {0, 0, 500, 500}};
    assert_float_equal(dems_face_track_quality(&p, &bare, 1280, 720), 0.2, 1e-9);
    bare.score = -1;
    assert_float_equal(dems_face_track_quality(&p, &bare, 1280, 720), 0.0, 0);
    struct dems_face away = face_of(0, 2000, 100, 112, 0.9f, 0, 0);
    assert_float_equal(dems_face_track_quality(&p, &away, 1280, 720), 0.0, 0);

    /* The track keeps the best: a profile, then a frontal, then a smaller
     * frontal face of the same person. */
    struct dems_face_tracker *tr = tracker(NULL);
    struct dems_face seq[3] = {profile, frontal, face_of(0, 105, 100, 100, 0.9f, 0.01, 0)};
    bool want_best[3] = {true, true, false};
    for (int i = 0; i < 3; i++) {
        struct dems_face_track_assign a;
        add(tr, i * 0.5, &seq[i], 1, &a);
        assert_int_equal(a.track, 1);
        assert_int_equal(a.best, want_best[i]);
    }
    dems_face_tracker_finish(tr);
    const struct dems_face_track *k;
    size_t n;
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 1);
    assert_true(k[0].best.t == 0.5);
    assert_float_equal(k[0].best.quality, qf, 1e-12);
    assert_memory_equal(&k[0].best.box, &frontal.box, sizeof(frontal.box));
    assert_memory_equal(k[0].best.landmarks, frontal.landmarks, sizeof(frontal.landmarks));
    assert_true(k[0].best.score == 0.9f);
    dems_face_tracker_free(tr);
}

/* ---- linking ---- */

/*
 * Two people walk across the frame in opposite directions; their boxes
 * overlap each other in the middle frames (IoU up to 1), but each keeps
 * its own descriptor: two tracks, each all of one person.
 */
static void test_crossing(void **state)
{
    (void)state;
    struct dems_face_tracker *tr = tracker(NULL);
    for (int i = 0; i <= 10; i++) {
        struct dems_face f[2] = {
            face_of(0, 200 + 40 * i, 300, 120, 0.9f, 0.01 * (i % 3), 0),
            face_of(1, 600 - 40 * i, 300, 120, 0.9f, 0.01 * (i % 2), 0),
        };
        struct dems_face_track_assign a[2];
        if (i % 2 == 1) { /* the order in the frame must not matter */
            struct dems_face t = f[0];
            f[0] = f[1];
            f[1] = t;
        }
        add(tr, i * 0.5, f, 2, a);
        assert_int_equal(a[i % 2 == 1 ? 1 : 0].track, 1);
        assert_int_equal(a[i % 2 == 1 ? 0 : 1].track, 2);
    }
    dems_face_tracker_finish(tr);
    const struct dems_face_track *k;
    size_t n;
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(k[i].id, i + 1);
        assert_int_equal(k[i].detections, 11);
        assert_true(mean_to_person(&k[i], (int)i) < 0.02);
        assert_true(k[i].t_first == 0.0 && k[i].t_last == 5.0);
    }
    dems_face_tracker_free(tr);
}

/*
 * A face leaves and comes back: after 1.5 s unseen (the gap allowed) it
 * continues its track; after 2 s it starts a new one, and the old track is
 * closed by that frame and can be taken before the end.
 */
static void test_gap(void **state)
{
    (void)state;
    struct dems_face_tracker *tr = tracker(NULL);
    struct dems_face f = face_of(3, 300, 200, 100, 0.9f, 0, 0);
    struct dems_face_track_assign a;
    add(tr, 0.0, &f, 1, &a);
    add(tr, 0.5, &f, 1, &a);
    add(tr, 1.0, NULL, 0, NULL);
    add(tr, 1.5, NULL, 0, NULL);
    f.box.x += 30;
    add(tr, 2.0, &f, 1, &a); /* unseen 0.5 .. 2.0: 1.5 s */
    assert_int_equal(a.track, 1);
    assert_true(dems_face_tracker_is_open(tr, 1));
    struct dems_face_track *k;
    size_t n;
    dems_face_tracker_take_closed(tr, &k, &n);
    assert_int_equal(n, 0);
    assert_null(k);
    add(tr, 4.0, &f, 1, &a); /* unseen 2.0 .. 4.0: closed */
    assert_int_equal(a.track, 2);
    assert_false(dems_face_tracker_is_open(tr, 1));
    assert_true(dems_face_tracker_is_open(tr, 2));
    k = take_some(tr, &n);
    assert_int_equal(n, 1);
    assert_int_equal(k[0].id, 1);
    assert_int_equal(k[0].detections, 3);
    assert_true(k[0].t_first == 0.0 && k[0].t_last == 2.0);
    dems_face_tracks_free(k, n);
    /* Timestamps a hair over the gap (decoder rounding) still continue. */
    add(tr, 5.5000000001, &f, 1, &a);
    assert_int_equal(a.track, 2);
    assert_int_equal(dems_face_tracker_finish(tr), 0);
    assert_false(dems_face_tracker_is_open(tr, 2));
    k = take_some(tr, &n);
    assert_int_equal(n, 1);
    assert_int_equal(k[0].id, 2);
    assert_int_equal(k[0].detections, 2);
    dems_face_tracks_free(k, n);
    dems_face_tracker_take_closed(tr, &k, &n); /* taken: nothing left */
    assert_int_equal(n, 0);
    dems_face_tracker_free(tr);
}

/*
 * A camera pan: the face jumps across the frame (IoU 0). Its descriptor
 * within jump_distance (0.4) continues the track; one at 0.5 (within
 * max_distance, not the jump gate) starts a new track, as it would
 * continue one in place.
 */
static void test_pan(void **state)
{
    (void)state;
    struct dems_face_tracker *tr = tracker(NULL);
    struct dems_face_track_assign a;
    struct dems_face f = face_of(4, 100, 100, 100, 0.9f, 0, 0);
    add(tr, 0.0, &f, 1, &a);
    f = face_of(4, 900, 400, 100, 0.9f, 0.35, 0); /* moved, 0.35 away */
    add(tr, 0.5, &f, 1, &a);
    assert_int_equal(a.track, 1);
    f = face_of(4, 100, 100, 100, 0.9f, -0.15, 0); /* 0.5 from the last, 0.15 from the first */
    add(tr, 1.0, &f, 1, &a);
    assert_int_equal(a.track, 1); /* the nearest kept descriptor counts */
    struct dems_face g = face_of(4, 500, 100, 100, 0.9f, 0.85, 0); /* >= 0.5 from all */
    add(tr, 1.5, &g, 1, &a);
    assert_int_equal(a.track, 2);
    g.box.x += 10; /* in place, 0.5 from track 1 (kept -0.15), 0 from track 2 */
    add(tr, 2.0, &g, 1, &a);
    assert_int_equal(a.track, 2);
    /* In place, at 0.5 from track 2's descriptors (and >= 1 from track
     * 1's): the overlap gate takes it. */
    struct dems_face h = face_of(4, 515, 100, 100, 0.9f, 1.35, 0);
    add(tr, 2.5, &h, 1, &a);
    assert_int_equal(a.track, 2);
    dems_face_tracker_free(tr);
}

/* Two people at the same place in consecutive frames: IoU 1, descriptors
 * far apart (and just over max_distance): separate tracks. */
static void test_same_place_other_person(void **state)
{
    (void)state;
    struct dems_face_tracker *tr = tracker(NULL);
    struct dems_face_track_assign a;
    struct dems_face f = face_of(5, 400, 200, 120, 0.9f, 0, 0);
    add(tr, 0.0, &f, 1, &a);
    f = face_of(6, 400, 200, 120, 0.9f, 0, 0);
    add(tr, 0.5, &f, 1, &a);
    assert_int_equal(a.track, 2);
    f = face_of(6, 402, 200, 120, 0.9f, 0.61, 0);
    add(tr, 1.0, &f, 1, &a);
    assert_int_equal(a.track, 3);
    f = face_of(6, 404, 200, 120, 0.9f, 0.61 + 0.55, 0); /* 0.55 from the last: same */
    add(tr, 1.5, &f, 1, &a);
    assert_int_equal(a.track, 3);
    dems_face_tracker_finish(tr);
    const struct dems_face_track *k;
    size_t n;
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 3);
    assert_int_equal(k[0].detections + k[1].detections + k[2].detections, 4);
    dems_face_tracker_free(tr);
}

/*
 * One face per track per frame, cheapest pair first: the same person
 * twice in one frame (a reflection) continues the track with the nearer
 * box and starts another with the other.
 */
static void test_one_face_per_track(void **state)
{
    (void)state;
    struct dems_face_tracker *tr = tracker(NULL);
    struct dems_face_track_assign a[2];
    struct dems_face f = face_of(7, 100, 100, 100, 0.9f, 0, 0);
    add(tr, 0.0, &f, 1, a);
    struct dems_face g[2] = {face_of(7, 600, 100, 100, 0.9f, 0, 0),
                             face_of(7, 110, 100, 100, 0.9f, 0, 0)};
    add(tr, 0.5, g, 2, a);
    assert_int_equal(a[1].track, 1);
    assert_int_equal(a[0].track, 2);
    assert_true(a[0].best && !a[1].best);
    dems_face_tracker_free(tr);
}

/*
 * More faces than the open-track cap: the least recently seen close (of
 * equals, the oldest), and their ids come out in order.
 */
static void test_open_cap(void **state)
{
    (void)state;
    struct dems_face_track_params p;
    dems_face_track_params_init(&p);
    p.max_open = 4;
    struct dems_face_tracker *tr = tracker(&p);
    struct dems_face f[6];
    struct dems_face_track_assign a[6];
    for (int i = 0; i < 3; i++)
        f[i] = face_of(10 + i, 10 + 200 * i, 10, 100, 0.9f, 0, 0);
    add(tr, 0.0, f, 3, a);     /* tracks 1..3 */
    add(tr, 0.5, &f[2], 1, a); /* track 3 seen again */
    for (int i = 0; i < 3; i++)
        f[i] = face_of(20 + i, 10 + 200 * i, 400, 100, 0.9f, 0, 0);
    add(tr, 1.0, f, 3, a); /* tracks 4..6: 6 open, 1 and 2 (seen at 0) close */
    assert_int_equal(a[0].track, 4);
    assert_int_equal(a[2].track, 6);
    const struct dems_face_track *k;
    size_t n;
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 2);
    assert_int_equal(k[0].id, 1);
    assert_int_equal(k[1].id, 2);
    for (uint32_t id = 3; id <= 6; id++)
        assert_true(dems_face_tracker_is_open(tr, id));
    /* Six new people in one frame: all four open close, then the two
     * oldest of the new ones (they were placed and reported all the same). */
    for (int i = 0; i < 6; i++)
        f[i] = face_of(30 + i, 10 + 200 * i, 200, 100, 0.9f, 0, 0);
    add(tr, 1.5, f, 6, a);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(a[i].track, 7 + i);
        assert_true(a[i].best);
    }
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 8);
    uint32_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(k[i].id, want[i]);
    assert_int_equal(k[6].detections, 1);
    assert_false(dems_face_tracker_is_open(tr, 8));
    assert_true(dems_face_tracker_is_open(tr, 9));
    dems_face_tracker_free(tr); /* frees open and closed tracks (ASan checks) */
}

/* The descriptor cap keeps the best-quality ones, in time order, with their
 * times; the mean covers every detection. */
static void test_descriptor_cap(void **state)
{
    (void)state;
    struct dems_face_track_params p;
    dems_face_track_params_init(&p);
    p.max_descriptors = 3;
    struct dems_face_tracker *tr = tracker(&p);
    float score[7] = {0.5f, 0.9f, 0.6f, 0.95f, 0.7f, 0.8f, 0.55f};
    bool want_best[7] = {true, true, false, true, false, false, false};
    double off_sum = 0;
    for (int i = 0; i < 7; i++) {
        struct dems_face f = face_of(8, 300 + 5 * i, 300, 120, score[i], 0.02 * i, 0);
        struct dems_face_track_assign a;
        add(tr, 0.5 * i, &f, 1, &a);
        assert_int_equal(a.track, 1);
        assert_int_equal(a.best, want_best[i]);
        off_sum += 0.02 * i;
    }
    dems_face_tracker_finish(tr);
    struct dems_face_track *k;
    size_t n;
    k = take_some(tr, &n);
    dems_face_tracker_free(tr); /* taken tracks outlive the tracker */
    assert_int_equal(n, 1);
    assert_int_equal(k[0].n_descriptors, 3);
    int kept[3] = {1, 3, 5}; /* scores 0.9, 0.95, 0.8; not the later 0.55 */
    for (int i = 0; i < 3; i++) {
        struct dems_face f = face_of(8, 0, 0, 120, 0, 0.02 * kept[i], 0);
        assert_memory_equal(k[0].descriptors[i], f.descriptor, sizeof(f.descriptor));
        assert_true(k[0].descriptor_t[i] == 0.5 * kept[i]);
        assert_float_equal(k[0].descriptor_quality[i], score[kept[i]], 1e-6);
    }
    assert_true(k[0].best.t == 1.5);
    float base[D];
    person_descriptor(8, base);
    for (int i = 0; i < D - 1; i++)
        assert_float_equal(k[0].mean[i], base[i], 1e-6);
    assert_float_equal(k[0].mean[D - 1], base[D - 1] + off_sum / 7, 1e-6);
    dems_face_tracks_free(k, n);
}

/* min_detections drops short tracks: they are not reported, not open. */
static void test_min_detections(void **state)
{
    (void)state;
    struct dems_face_track_params p;
    dems_face_track_params_init(&p);
    p.min_detections = 2;
    struct dems_face_tracker *tr = tracker(&p);
    struct dems_face f[2] = {face_of(1, 100, 100, 100, 0.9f, 0, 0),
                             face_of(2, 500, 100, 100, 0.9f, 0, 0)};
    struct dems_face_track_assign a[2];
    add(tr, 0, f, 2, a);
    add(tr, 0.5, f, 1, a);
    add(tr, 3, NULL, 0, NULL);
    const struct dems_face_track *k;
    size_t n;
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 1);
    assert_int_equal(k[0].id, 1);
    assert_false(dems_face_tracker_is_open(tr, 2));
    /* The dropped track's memory is reused for the next. */
    add(tr, 3.5, &f[1], 1, a);
    assert_int_equal(a[0].track, 3);
    dems_face_tracker_free(tr);
}

/* A tiny pseudo-random generator for the shuffles. */
static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* Six people wandering about, each away for 2.5 s in 5 frames of every
 * 20: frame fr's faces (n returned), moving everyone on. */
struct walk {
    uint32_t seed;
    double x[6], y[6];
};

static void walk_init(struct walk *w)
{
    w->seed = 7;
    for (int p = 0; p < 6; p++) {
        w->x[p] = 50 + 180 * p;
        w->y[p] = 300;
    }
}

static size_t walk_frame(struct walk *w, int fr, struct dems_face f[6])
{
    size_t n = 0;
    for (int p = 0; p < 6; p++) {
        w->x[p] += (double)(rnd(&w->seed) % 61) - 30;
        w->y[p] += (double)(rnd(&w->seed) % 41) - 20;
        if ((fr / 5 + p) % 4 == 0) /* away for a while */
            continue;
        f[n++] = face_of(p, w->x[p], w->y[p], 90 + p * 5, 0.6f + 0.05f * (float)(rnd(&w->seed) % 8),
                         0.05 * (rnd(&w->seed) % 5), 0.1 * (rnd(&w->seed) % 5));
    }
    return n;
}

/* The wandering people fed to two trackers, one with every frame
 * shuffled: the same tracks, ids and assignments. */
static void test_order_independent(void **state)
{
    (void)state;
    struct dems_face_tracker *t1 = tracker(NULL), *t2 = tracker(NULL);
    struct walk w;
    walk_init(&w);
    uint32_t seed = 11;
    for (int fr = 0; fr < 40; fr++) {
        struct dems_face f[6], g[6];
        size_t n = walk_frame(&w, fr, f), perm[6];
        for (size_t i = 0; i < n; i++)
            perm[i] = i;
        for (size_t i = n; i > 1; i--) {
            size_t j = rnd(&seed) % i, t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
        for (size_t i = 0; i < n; i++)
            g[i] = f[perm[i]];
        struct dems_face_track_assign a1[6], a2[6];
        add(t1, fr * 0.5, f, n, a1);
        add(t2, fr * 0.5, g, n, a2);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(a2[i].track, a1[perm[i]].track);
            assert_int_equal(a2[i].best, a1[perm[i]].best);
        }
    }
    dems_face_tracker_finish(t1);
    dems_face_tracker_finish(t2);
    const struct dems_face_track *k1, *k2;
    size_t n1, n2;
    dems_face_tracker_tracks(t1, &k1, &n1);
    dems_face_tracker_tracks(t2, &k2, &n2);
    assert_int_equal(n1, n2);
    /* Each person is away for 2.5 s (beyond max_gap) in 5 frames of every
     * 20, at frames 0, 15, 10 and 5 (p mod 4) onwards: 2 + 2 + 3 + 3 + 2 + 2
     * tracks. */
    assert_int_equal(n1, 14);
    for (size_t i = 0; i < n1; i++) {
        assert_int_equal(k1[i].id, k2[i].id);
        assert_int_equal(k1[i].detections, k2[i].detections);
        assert_int_equal(k1[i].n_descriptors, k2[i].n_descriptors);
        assert_memory_equal(k1[i].mean, k2[i].mean, sizeof(k1[i].mean));
        /* Every track is one person's. */
        int best = 0;
        for (int p = 1; p < 6; p++)
            if (mean_to_person(&k1[i], p) < mean_to_person(&k1[i], best))
                best = p;
        assert_true(mean_to_person(&k1[i], best) < 0.25);
    }
    dems_face_tracker_free(t1);
    dems_face_tracker_free(t2);
}

/* The wandering people under tight limits (4 open, 3 descriptors, 2
 * detections), taking closed tracks as they come: the assignments and every
 * track taken. */
struct outcome {
    struct dems_face_track_assign a[40][6];
    struct dems_face_track *k;
    size_t n;
};

static void take_into(struct dems_face_tracker *tr, struct outcome *o)
{
    struct dems_face_track *k;
    size_t n;
    dems_face_tracker_take_closed(tr, &k, &n);
    if (n == 0)
        return;
    o->k = realloc(o->k, (o->n + n) * sizeof(*k));
    assert_non_null(o->k);
    memcpy(o->k + o->n, k, n * sizeof(*k));
    o->n += n;
    free(k); /* the array; the descriptors now belong to o->k */
}

/* Runs the walk; every call failing for memory is retried. */
static void run_walk(struct outcome *o)
{
    struct dems_face_track_params p;
    dems_face_track_params_init(&p);
    p.max_open = 4;
    p.max_descriptors = 3;
    p.min_detections = 2;
    struct dems_face_tracker *tr = NULL;
    while (dems_face_tracker_new(&p, &tr) == DEMS_ENOMEM)
        ;
    struct walk w;
    walk_init(&w);
    *o = (struct outcome){0};
    for (int fr = 0; fr < 40; fr++) {
        struct dems_face f[6];
        size_t n = walk_frame(&w, fr, f);
        int r;
        while ((r = dems_face_tracker_add(tr, fr * 0.5, f, n, 1280, 720, o->a[fr])) == DEMS_ENOMEM)
            ;
        assert_int_equal(r, 0);
        if (fr % 7 == 3)
            take_into(tr, o);
    }
    while (dems_face_tracker_finish(tr) == DEMS_ENOMEM)
        ;
    take_into(tr, o);
    dems_face_tracker_free(tr);
}

/*
 * Fails the 1st, 2nd, ... allocation of the walk until one runs through:
 * each failed call must leave the tracker as it was (the retry then gives
 * the very outcome of a run without failures) and leak nothing (ASan).
 */
static void test_out_of_memory(void **state)
{
    (void)state;
    struct outcome *want = calloc(1, sizeof(*want)), *got = calloc(1, sizeof(*got));
    assert_true(want != NULL && got != NULL);
    run_walk(want);
    assert_true(want->n >= 10);
    long k;
    for (k = 0;; k++) {
        fi_countdown = k;
        fi_hit = false;
        run_walk(got);
        fi_countdown = -1;
        if (!fi_hit) {
            dems_face_tracks_free(got->k, got->n);
            break;
        }
        assert_memory_equal(got->a, want->a, sizeof(want->a));
        assert_int_equal(got->n, want->n);
        for (size_t i = 0; i < want->n; i++) {
            const struct dems_face_track *x = &got->k[i], *y = &want->k[i];
            assert_int_equal(x->id, y->id);
            assert_int_equal(x->detections, y->detections);
            assert_true(x->t_first == y->t_first && x->t_last == y->t_last);
            assert_memory_equal(&x->best, &y->best, sizeof(x->best));
            assert_int_equal(x->n_descriptors, y->n_descriptors);
            assert_memory_equal(x->descriptors, y->descriptors,
                                x->n_descriptors * sizeof(x->descriptors[0]));
            assert_memory_equal(x->descriptor_t, y->descriptor_t,
                                x->n_descriptors * sizeof(double));
            assert_memory_equal(x->mean, y->mean, sizeof(x->mean));
        }
        dems_face_tracks_free(got->k, got->n);
    }
    assert_true(k > 20); /* the walk allocates as it grows */
    dems_face_tracks_free(want->k, want->n);
    free(want);
    free(got);
}

/* ---- crops ---- */

/* A 300x200 image: left half red, right half blue, rows 100.. green added;
 * columns 240..299 alternate black and white. */
static uint8_t *make_image(struct dems_face_image *img)
{
    enum { W = 300, H = 200 };
    uint8_t *px = malloc(W * H * 3);
    assert_non_null(px);
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            uint8_t *p = px + ((size_t)y * W + (size_t)x) * 3;
            p[0] = x < 150 ? 220 : 20;
            p[1] = y < 100 ? 20 : 200;
            p[2] = x < 150 ? 20 : 220;
            if (x >= 240)
                p[0] = p[1] = p[2] = x % 2 ? 255 : 0;
        }
    }
    *img = (struct dems_face_image){.width = W, .height = H, .stride = W * 3, .rgb = px};
    return px;
}

static void crop_ok(const struct dems_face_image *img, struct dems_face_box box, double margin,
                    int max_side, struct dems_face_image *ret)
{
    uint8_t *jpeg = NULL;
    size_t len = 0;
    char err[256] = "";
    int r = dems_face_crop_jpeg(img, &box, margin, max_side, 90, &jpeg, &len, err, sizeof(err));
    if (r != 0)
        fail_msg("crop: %d %s", r, err);
    assert_true(len > 100 && jpeg[0] == 0xff && jpeg[1] == 0xd8);
    assert_int_equal(dems_face_image_decode(jpeg, len, ret, err, sizeof(err)), 0);
    free(jpeg);
}

static const uint8_t *pixel(const struct dems_face_image *img, int x, int y)
{
    return img->rgb + (size_t)y * img->stride + (size_t)x * 3;
}

static void expect_rgb(const struct dems_face_image *img, int x, int y, int r, int g, int b)
{
    const uint8_t *p = pixel(img, x, y);
    if (abs(p[0] - r) > 12 || abs(p[1] - g) > 12 || abs(p[2] - b) > 12)
        fail_msg("pixel (%d, %d) = %d %d %d, want %d %d %d", x, y, p[0], p[1], p[2], r, g, b);
}

static double luma(int r, int g, int b)
{
    return 0.299 * r + 0.587 * g + 0.114 * b;
}

static void expect_luma(const struct dems_face_image *img, int x, int y, int r, int g, int b)
{
    const uint8_t *p = pixel(img, x, y);
    double got = luma(p[0], p[1], p[2]), want = luma(r, g, b);
    if (fabs(got - want) > 6)
        fail_msg("pixel (%d, %d): luma %.1f, want %.1f", x, y, got, want);
}

static void test_crop(void **state)
{
    (void)state;
    struct dems_face_image img, out;
    uint8_t *px = make_image(&img);

    /* Box 40x40 at (120, 80), margin 0.25: 60x60 from (110, 70), unscaled. */
    crop_ok(&img, (struct dems_face_box){120, 80, 40, 40}, 0.25, 256, &out);
    assert_int_equal(out.width, 60);
    assert_int_equal(out.height, 60);
    expect_rgb(&out, 10, 10, 220, 20, 20);  /* (120, 80): red */
    expect_rgb(&out, 50, 10, 20, 20, 220);  /* (160, 80): blue */
    expect_rgb(&out, 10, 50, 220, 200, 20); /* (120, 120): red + green */
    expect_rgb(&out, 50, 50, 20, 200, 220);
    dems_face_image_done(&out);

    /* Fractional edges round outwards: 10.5..20.2 -> 10..21 (11 px). */
    crop_ok(&img, (struct dems_face_box){10.5, 10.5, 9.7, 9.7}, 0, 256, &out);
    assert_int_equal(out.width, 11);
    assert_int_equal(out.height, 11);
    dems_face_image_done(&out);

    /* Clipped at the image's corner: the box at (-20, -10) 60x50 with
     * margin 0.5 covers -50..70 x -35..65, so 0..70 x 0..65. */
    crop_ok(&img, (struct dems_face_box){-20, -10, 60, 50}, 0.5, 256, &out);
    assert_int_equal(out.width, 70);
    assert_int_equal(out.height, 65);
    dems_face_image_done(&out);

    /* Scaled: the whole image (300x200) to max_side 30 gives 30x20, each
     * pixel the mean of 10x10. The stripes average to grey (a nearest or
     * bilinear pick would give black or white). */
    crop_ok(&img, (struct dems_face_box){0, 0, 300, 200}, 0, 30, &out);
    assert_int_equal(out.width, 30);
    assert_int_equal(out.height, 20);
    expect_rgb(&out, 5, 5, 220, 20, 20);
    expect_rgb(&out, 20, 15, 20, 200, 220);
    for (int y = 0; y < 20; y += 3)
        for (int x = 26; x < 30; x++) /* 24, 25: chroma from the blue */
            expect_rgb(&out, x, y, 128, 128, 128);
    /* The red/blue border at 150 falls between output columns 14 and 15
     * (compared in luma: 4:2:0 chroma blurs colour across the border). */
    expect_luma(&out, 14, 5, 220, 20, 20);
    expect_luma(&out, 15, 5, 20, 20, 220);
    dems_face_image_done(&out);

    /* Scaled by 4/9 (270x180 -> 120x80): the row of output pixels straddling
     * the red/green edge is mixed; the aspect ratio is kept. */
    crop_ok(&img, (struct dems_face_box){0, 10, 270, 180}, 0, 120, &out);
    assert_int_equal(out.width, 120);
    assert_int_equal(out.height, 80);
    dems_face_image_done(&out);

    /* A 1-pixel-high box scaled down keeps one row. */
    crop_ok(&img, (struct dems_face_box){0, 50, 300, 1}, 0, 16, &out);
    assert_int_equal(out.width, 16);
    assert_int_equal(out.height, 1);
    dems_face_image_done(&out);

    /* Refusals. */
    struct dems_face_box bad[] = {
        {NAN, 10, 20, 20},    {10, 10, 0, 20},    {10, 10, 20, -5},      {400, 10, 20, 20},
        {10, 300, 20, 20},    {-100, 10, 50, 20}, {10, 10, INFINITY, 5}, {300, 0, 10, 10},
        {10, -1e300, 20, 20}, {-10, 10, 10, 10}, /* outside, whatever the margin */
    };
    static uint8_t sentinel[] = "unchanged";
    uint8_t *jpeg = sentinel;
    size_t len = 99;
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        assert_int_equal(
            dems_face_crop_jpeg(&img, &bad[i], 0.25, 256, 90, &jpeg, &len, err, sizeof(err)),
            DEMS_EINVAL);
        assert_true(err[0] != 0);
    }
    struct dems_face_box good = {10, 10, 20, 20};
    assert_int_equal(dems_face_crop_jpeg(&img, NULL, 0.25, 256, 90, &jpeg, &len, NULL, 0),
                     DEMS_EINVAL);
    assert_int_equal(dems_face_crop_jpeg(&img, &good, -0.1, 256, 90, &jpeg, &len, NULL, 0),
                     DEMS_EINVAL);
    assert_int_equal(dems_face_crop_jpeg(&img, &good, NAN, 256, 90, &jpeg, &len, NULL, 0),
                     DEMS_EINVAL);
    assert_int_equal(dems_face_crop_jpeg(&img, &good, 0.25, 8, 90, &jpeg, &len, NULL, 0),
                     DEMS_EINVAL);
    assert_int_equal(dems_face_crop_jpeg(&img, &good, 0.25, 256, 0, &jpeg, &len, NULL, 0),
                     DEMS_EINVAL);
    assert_int_equal(dems_face_crop_jpeg(&img, &good, 0.25, 256, 101, &jpeg, &len, NULL, 0),
                     DEMS_EINVAL);
    struct dems_face_image empty = {0};
    assert_int_equal(dems_face_crop_jpeg(&empty, &good, 0.25, 256, 90, &jpeg, &len, NULL, 0),
                     DEMS_EINVAL);
    assert_ptr_equal(jpeg, sentinel);
    assert_int_equal(len, 99);
    free(px);
}

/* ---- the real engine ---- */

static struct dems_face_models *models;
static struct dems_face_ctx *ctx;

static void load(const char *file, struct dems_face_image *img)
{
    const char *dir = getenv("DEMS_FACE_TESTDATA");
    assert_non_null(dir);
    char path[4096], err[512] = "";
    snprintf(path, sizeof(path), "%s/images/%s", dir, file);
    if (dems_face_image_load(path, img, err, sizeof(err)) != 0)
        fail_msg("%s: %s", path, err);
}

/* A 768x512 grey frame with src pasted at (x, y) (clipped). */
static void paste(struct dems_face_image *frame, const struct dems_face_image *src, int x, int y)
{
    uint8_t *px = frame->owned;
    memset(px, 90, frame->stride * (size_t)frame->height);
    for (int r = 0; r < src->height; r++) {
        if (y + r < 0 || y + r >= frame->height)
            continue;
        for (int c = 0; c < src->width; c++)
            if (x + c >= 0 && x + c < frame->width)
                memcpy(px + (size_t)(y + r) * frame->stride + (size_t)(x + c) * 3,
                       src->rgb + (size_t)r * src->stride + (size_t)c * 3, 3);
    }
}

/* Runs the engine on frame and gives the faces to the tracker; checks that
 * a new best can be cropped from the frame. Returns the number of faces. */
static size_t run_frame(struct dems_face_tracker *tr, double t, const struct dems_face_image *fr,
                        struct dems_face faces[8], struct dems_face_track_assign a[8])
{
    size_t n = 0;
    struct dems_face_opts o;
    dems_face_opts_init(&o, DEMS_FACE_DETECTOR_SSD);
    assert_int_equal(dems_face_detect(ctx, fr, &o, faces, 8, &n), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(dems_face_landmarks(ctx, fr, &faces[i]), 0);
        assert_int_equal(dems_face_describe(ctx, fr, &faces[i]), 0);
    }
    assert_int_equal(dems_face_tracker_add(tr, t, faces, n, fr->width, fr->height, a), 0);
    for (size_t i = 0; i < n; i++) {
        if (!a[i].best)
            continue;
        struct dems_face_image crop;
        crop_ok(fr, faces[i].box, 0.25, 128, &crop);
        assert_true(crop.width <= 128 && crop.height <= 128);
        assert_true(crop.width >= 64 || crop.height >= 64);
        dems_face_image_done(&crop);
    }
    return n;
}

/*
 * portrait.jpg (one face) and scaled.jpg (three other people) pasted into
 * 768x512 frames, moving 4 px a frame: P P S P S ... P. The portrait's face
 * is away for 1 s while the scene cuts to S and back (one track), and for
 * 3 s before the last frame (a new track); S's three faces make three
 * tracks of two detections. Under ASan the last S frame is left out.
 */
static void test_real_engine(void **state)
{
    (void)state;
    char dir[4096], err[1024];
    if (dems_face_models_find(NULL, "/proc/self/exe", dir, sizeof(dir)) < 0)
        fail_msg("%s", dir);
    if (dems_face_models_load(dir, &models, err, sizeof(err)) < 0)
        fail_msg("%s", err);
    ctx = dems_face_ctx_new(models);
    assert_non_null(ctx);
    bool quick = getenv("DEMS_FACE_QUICK") != NULL;
    struct dems_face_image portrait, scene, frame = {.width = 768, .height = 512};
    load("portrait.jpg", &portrait);
    load("scaled.jpg", &scene);
    frame.stride = 768 * 3;
    frame.owned = malloc(frame.stride * 512);
    assert_non_null(frame.owned);
    frame.rgb = frame.owned;
    struct {
        double t;
        bool is_portrait;
    } seq[] = {{0, true}, {0.5, true}, {1.0, false}, {1.5, true}, {2.0, false}, {4.5, true}};
    struct dems_face_tracker *tr = tracker(NULL);
    uint32_t portrait_track[2] = {0, 0}, scene_tracks[3] = {0, 0, 0};
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        if (quick && i == 4)
            continue;
        int dx = 4 * (int)i;
        paste(&frame, seq[i].is_portrait ? &portrait : &scene, seq[i].is_portrait ? 200 + dx : dx,
              seq[i].is_portrait ? 31 : 0);
        struct dems_face faces[8];
        struct dems_face_track_assign a[8];
        size_t n = run_frame(tr, seq[i].t, &frame, faces, a);
        assert_int_equal(n, seq[i].is_portrait ? 1 : 3);
        if (seq[i].is_portrait) {
            uint32_t *want = &portrait_track[i == 5];
            if (*want == 0)
                *want = a[0].track;
            assert_int_equal(a[0].track, *want);
        } else {
            for (size_t j = 0; j < 3; j++) { /* the people left to right */
                size_t m = 0;
                for (size_t q = 0; q < 3; q++)
                    m += faces[q].box.x < faces[j].box.x;
                if (i == 2)
                    scene_tracks[m] = a[j].track;
                assert_int_equal(a[j].track, scene_tracks[m]);
            }
        }
    }
    assert_int_equal(dems_face_tracker_finish(tr), 0);
    const struct dems_face_track *k;
    size_t n;
    dems_face_tracker_tracks(tr, &k, &n);
    assert_int_equal(n, 5);
    assert_int_not_equal(portrait_track[0], portrait_track[1]);
    const struct dems_face_track *p0 = find_track(k, n, portrait_track[0]);
    const struct dems_face_track *p1 = find_track(k, n, portrait_track[1]);
    assert_int_equal(p0->detections, 3);
    assert_true(p0->t_first == 0 && p0->t_last == 1.5);
    assert_int_equal(p1->detections, 1);
    /* The same person: the two portrait tracks' means are close; the scene's
     * people are far from them and each other. */
    assert_true(dems_face_distance(p0->mean, p1->mean) < 0.2f);
    for (size_t j = 0; j < 3; j++) {
        const struct dems_face_track *s = find_track(k, n, scene_tracks[j]);
        assert_int_equal(s->detections, quick ? 1 : 2);
        assert_true(dems_face_distance(s->mean, p0->mean) > 0.5f);
        assert_true(s->best.quality > 0.2 && s->best.quality <= 1.0);
    }
    assert_true(p0->best.quality > 0.5);
    free(frame.owned);
    dems_face_image_done(&portrait);
    dems_face_image_done(&scene);
    dems_face_tracker_free(tr);
    dems_face_ctx_free(ctx);
    dems_face_models_free(models);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_and_refusals),
        cmocka_unit_test(test_quality),
        cmocka_unit_test(test_crossing),
        cmocka_unit_test(test_gap),
        cmocka_unit_test(test_pan),
        cmocka_unit_test(test_same_place_other_person),
        cmocka_unit_test(test_one_face_per_track),
        cmocka_unit_test(test_open_cap),
        cmocka_unit_test(test_descriptor_cap),
        cmocka_unit_test(test_min_detections),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_crop),
        cmocka_unit_test(test_real_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
