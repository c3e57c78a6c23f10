/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Face tracks (include/dems/face_track.h): links each frame's detections to
 * the open tracks, keeps per track its best detection, its best descriptors
 * and the running sum for the mean descriptor, and closes tracks that go
 * unseen or overflow the open-track cap. Every call first computes and
 * allocates all it needs, then changes the tracker, so a failed call
 * leaves it as it was. docs/face.md ("Tracks") states the rules.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/face_track.h"

/* Frame times come from a decoder's timestamps (pts x time base), so a gap
 * meant to be exactly max_gap may be a hair over it. */
#define GAP_SLACK 1e-6
/* Weight of frontality in the quality (the rest is a floor, so that among
 * profile views score and size still order the detections). */
#define FRONTAL_WEIGHT 0.8

/* Landmarks of the 68-point (iBUG 300-W) layout, counted from 0. */
enum {
    LM_JAW_FIRST = 0,
    LM_JAW_LAST = 16,
    LM_NOSE_TIP = 30,
    LM_EYE_OUTER_L = 36,
    LM_EYE_OUTER_R = 45
};

struct open_track {
    struct dems_face_track pub; /* descriptors has room for max_descriptors */
    struct dems_face_box last_box;
    float last_desc[DEMS_FACE_DESCRIPTOR];
    double sum[DEMS_FACE_DESCRIPTOR];
    bool is_matched; /* scratch of one dems_face_tracker_add */
    bool is_closing; /* likewise */
};

/* A face of the current frame, in the canonical order (see face_cmp). */
struct face_ref {
    const struct dems_face *f;
    size_t idx;     /* its index in the caller's array */
    double quality; /* dems_face_track_quality */
    size_t track;   /* open[] index it joins, or SIZE_MAX for a new track */
};

struct evict;

/* A (track, face) pair that passed the gates (16 bytes: a frame may have
 * up to max_open x DEMS_FACE_TRACK_MAX_FACES of them). */
struct pair {
    double cost;
    uint32_t track; /* open[] index: open[] is in id order */
    uint32_t face;  /* faces[] rank in the canonical order */
};

struct dems_face_tracker {
    struct dems_face_track_params p;
    uint32_t next_id;
    bool has_frame;
    double t_prev;
    struct open_track *open;
    size_t n_open, cap_open;
    struct dems_face_track *closed;
    size_t n_closed, cap_closed;
    /* Descriptor blocks allocated ahead of the tracks that will use them. */
    void **spare;
    size_t n_spare, cap_spare;
    /* Scratch reused by every add. */
    struct face_ref *faces;
    size_t cap_faces;
    struct pair *pairs;
    size_t cap_pairs;
    struct evict *order;
    size_t cap_order;
};

/*
 * Grows the array that parr points to (items of elem bytes; parr is the
 * address of any object pointer, copied with memcpy so that no pointer is
 * accessed through another type) to hold at least need items. 0, or
 * DEMS_ENOMEM with the array as it was.
 */
static int reserve(void *parr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap < 16 ? 16 : *cap;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (n > SIZE_MAX / elem)
        return DEMS_ENOMEM;
    void *p;
    memcpy(&p, parr, sizeof(p));
    void *q = realloc(p, n * elem);
    if (q == NULL)
        return DEMS_ENOMEM;
    memcpy(parr, &q, sizeof(q));
    *cap = n;
    return 0;
}

void dems_face_track_params_init(struct dems_face_track_params *p)
{
    *p = (struct dems_face_track_params){
        .iou_min = 0.3,
        .max_distance = 0.6,
        .jump_distance = 0.4,
        .max_gap = 1.5,
        .max_descriptors = 8,
        .min_detections = 1,
        .max_open = DEMS_FACE_TRACK_MAX_OPEN,
        .ref_side = 112.0,
    };
}

static bool params_valid(const struct dems_face_track_params *p)
{
    return isfinite(p->iou_min) && p->iou_min > 0.0 && p->iou_min <= 1.0 &&
           isfinite(p->max_distance) && p->max_distance > 0.0 && isfinite(p->jump_distance) &&
           p->jump_distance > 0.0 && p->jump_distance <= p->max_distance && isfinite(p->max_gap) &&
           p->max_gap >= 0.0 && p->max_descriptors >= 1 &&
           p->max_descriptors <= DEMS_FACE_TRACK_MAX_DESCRIPTORS && p->max_open >= 1 &&
           p->max_open <= DEMS_FACE_TRACK_MAX_OPEN && isfinite(p->ref_side) && p->ref_side > 0.0;
}

/* ---- quality ---- */

/*
 * Where m lies between a and b, as the ratio of the shorter to the longer
 * of its two distances along the line a-b: 1 when m is midway, 0 when it is
 * at or beyond either end.
 */
static double balance(const double a[2], const double m[2], const double b[2])
{
    double ux = b[0] - a[0], uy = b[1] - a[1];
    double len2 = ux * ux + uy * uy;
    if (!(len2 > 1e-12))
        return 0.0;
    double s = ((m[0] - a[0]) * ux + (m[1] - a[1]) * uy) / len2;
    if (!(s > 0.0 && s < 1.0))
        return 0.0;
    double lo = s < 0.5 ? s : 1.0 - s;
    return lo / (1.0 - lo);
}

/* Frontality: the nose tip's balance between the outer eye corners and
 * between the jaw ends, averaged. Turning the head (yaw) moves the nose tip
 * towards one side in both; roll does not change it (it is measured along
 * each pair's own line); pitch is not measured. */
static double frontality(const double (*lm)[2])
{
    double eyes = balance(lm[LM_EYE_OUTER_L], lm[LM_NOSE_TIP], lm[LM_EYE_OUTER_R]);
    double jaw = balance(lm[LM_JAW_FIRST], lm[LM_NOSE_TIP], lm[LM_JAW_LAST]);
    return 0.5 * (eyes + jaw);
}

/* Side length (square root of the area) of the part of b inside the frame. */
static double visible_side(const struct dems_face_box *b, int w, int h)
{
    double x0 = fmax(b->x, 0.0), x1 = fmin(b->x + b->width, (double)w);
    double y0 = fmax(b->y, 0.0), y1 = fmin(b->y + b->height, (double)h);
    if (!(x1 > x0 && y1 > y0))
        return 0.0;
    return sqrt((x1 - x0) * (y1 - y0));
}

double dems_face_track_quality(const struct dems_face_track_params *p, const struct dems_face *face,
                               int img_width, int img_height)
{
    double score = fmin(fmax((double)face->score, 0.0), 1.0);
    double size = fmin(visible_side(&face->box, img_width, img_height) / p->ref_side, 1.0);
    double q = score * size * (1.0 - FRONTAL_WEIGHT + FRONTAL_WEIGHT * frontality(face->landmarks));
    return isfinite(q) && q > 0.0 ? fmin(q, 1.0) : 0.0;
}

/* ---- tracker life ---- */

int dems_face_tracker_new(const struct dems_face_track_params *p,
                          struct dems_face_tracker **ret_tracker)
{
    struct dems_face_track_params def;
    if (p == NULL) {
        dems_face_track_params_init(&def);
        p = &def;
    }
    if (!params_valid(p))
        return DEMS_EINVAL;
    struct dems_face_tracker *tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return DEMS_ENOMEM;
    tr->p = *p;
    tr->next_id = 1;
    *ret_tracker = tr;
    return 0;
}

void dems_face_tracks_free(struct dems_face_track *tracks, size_t n)
{
    if (tracks == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(tracks[i].descriptors);
    free(tracks);
}

void dems_face_tracker_free(struct dems_face_tracker *tr)
{
    if (tr == NULL)
        return;
    for (size_t i = 0; i < tr->n_open; i++)
        free(tr->open[i].pub.descriptors);
    free(tr->open);
    dems_face_tracks_free(tr->closed, tr->n_closed);
    for (size_t i = 0; i < tr->n_spare; i++)
        free(tr->spare[i]);
    free(tr->spare);
    free(tr->faces);
    free(tr->pairs);
    free(tr->order);
    free(tr);
}

/* One allocation for a track's descriptors, their times and qualities. */
static size_t block_size(const struct dems_face_track_params *p)
{
    return p->max_descriptors * (sizeof(float[DEMS_FACE_DESCRIPTOR]) + 2 * sizeof(double));
}

/* Makes sure n descriptor blocks are ready for new tracks. */
static int reserve_blocks(struct dems_face_tracker *tr, size_t n)
{
    if (reserve(&tr->spare, &tr->cap_spare, n, sizeof(*tr->spare)) < 0)
        return DEMS_ENOMEM;
    while (tr->n_spare < n) {
        void *b = malloc(block_size(&tr->p));
        if (b == NULL)
            return DEMS_ENOMEM;
        tr->spare[tr->n_spare++] = b;
    }
    return 0;
}

/* ---- a track's contents ---- */

static void track_start(struct dems_face_tracker *tr, struct open_track *o, void *block)
{
    size_t rows = tr->p.max_descriptors;
    *o = (struct open_track){
        .pub.id = tr->next_id++,
        .pub.descriptors = block,
        .pub.descriptor_t =
            (double *)(void *)((char *)block + rows * sizeof(float[DEMS_FACE_DESCRIPTOR])),
    };
    o->pub.descriptor_quality = o->pub.descriptor_t + rows;
    o->pub.best.quality = -1.0; /* any detection is better than none */
}

/*
 * Keeps face's descriptor if the track has room or it beats the worst kept
 * one (the earliest of equals goes). Rows stay in time order: the new one
 * is always the latest.
 */
static void keep_descriptor(struct dems_face_track *k, size_t max, double t, double q,
                            const float *desc)
{
    size_t at = k->n_descriptors;
    if (at == max) {
        size_t worst = 0;
        for (size_t i = 1; i < at; i++)
            if (k->descriptor_quality[i] < k->descriptor_quality[worst])
                worst = i;
        if (!(q > k->descriptor_quality[worst]))
            return;
        size_t tail = at - worst - 1;
        memmove(k->descriptors[worst], k->descriptors[worst + 1], tail * sizeof(k->descriptors[0]));
        memmove(&k->descriptor_t[worst], &k->descriptor_t[worst + 1], tail * sizeof(double));
        memmove(&k->descriptor_quality[worst], &k->descriptor_quality[worst + 1],
                tail * sizeof(double));
        at--;
    }
    memcpy(k->descriptors[at], desc, sizeof(k->descriptors[0]));
    k->descriptor_t[at] = t;
    k->descriptor_quality[at] = q;
    k->n_descriptors = at + 1;
}

/* Adds a detection to a track; true if it became the track's best. */
static bool track_extend(struct dems_face_tracker *tr, struct open_track *o, double t,
                         const struct face_ref *fr)
{
    const struct dems_face *f = fr->f;
    struct dems_face_track *k = &o->pub;
    if (k->detections == 0)
        k->t_first = t;
    k->t_last = t;
    k->detections++;
    o->last_box = f->box;
    memcpy(o->last_desc, f->descriptor, sizeof(o->last_desc));
    for (size_t i = 0; i < DEMS_FACE_DESCRIPTOR; i++)
        o->sum[i] += (double)f->descriptor[i];
    keep_descriptor(k, tr->p.max_descriptors, t, fr->quality, f->descriptor);
    if (!(fr->quality > k->best.quality))
        return false;
    k->best.t = t;
    k->best.box = f->box;
    k->best.score = f->score;
    k->best.quality = fr->quality;
    memcpy(k->best.landmarks, f->landmarks, sizeof(k->best.landmarks));
    return true;
}

/* Moves a track to the closed list (room reserved by the caller) or drops it
 * (too few detections). */
static void track_close(struct dems_face_tracker *tr, struct open_track *o)
{
    struct dems_face_track *k = &o->pub;
    if (k->detections < tr->p.min_detections) {
        if (tr->n_spare < tr->cap_spare)
            tr->spare[tr->n_spare++] = k->descriptors;
        else
            free(k->descriptors);
        return;
    }
    for (size_t i = 0; i < DEMS_FACE_DESCRIPTOR; i++)
        k->mean[i] = (float)(o->sum[i] / (double)k->detections);
    tr->closed[tr->n_closed++] = *k;
}

/* Closes the tracks marked is_closing, in id order, keeping the rest in
 * order. Room in closed[] is reserved by the caller. */
static void close_marked(struct dems_face_tracker *tr)
{
    size_t kept = 0;
    for (size_t i = 0; i < tr->n_open; i++) {
        if (tr->open[i].is_closing)
            track_close(tr, &tr->open[i]);
        else if (kept++ != i)
            tr->open[kept - 1] = tr->open[i];
    }
    tr->n_open = kept;
}

/* ---- linking ---- */

static bool face_valid(const struct dems_face *f)
{
    if (!isfinite(f->score) || !isfinite(f->box.x) || !isfinite(f->box.y) ||
        !isfinite(f->box.width) || !isfinite(f->box.height) || !(f->box.width > 0.0) ||
        !(f->box.height > 0.0))
        return false;
    for (size_t i = 0; i < DEMS_FACE_LANDMARKS; i++)
        if (!isfinite(f->landmarks[i][0]) || !isfinite(f->landmarks[i][1]))
            return false;
    for (size_t i = 0; i < DEMS_FACE_DESCRIPTOR; i++)
        if (!isfinite(f->descriptor[i]))
            return false;
    return true;
}

static int cmp_double(double a, double b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

/* The canonical order of a frame's faces, so that results do not depend on
 * the order the detector listed them in: by box, then score, then the
 * descriptor's bytes. Only identical faces compare equal. */
static int face_cmp(const void *pa, const void *pb)
{
    const struct dems_face *a = ((const struct face_ref *)pa)->f;
    const struct dems_face *b = ((const struct face_ref *)pb)->f;
    int c = cmp_double(a->box.x, b->box.x);
    if (c == 0)
        c = cmp_double(a->box.y, b->box.y);
    if (c == 0)
        c = cmp_double(a->box.width, b->box.width);
    if (c == 0)
        c = cmp_double(a->box.height, b->box.height);
    if (c == 0)
        c = cmp_double((double)a->score, (double)b->score);
    if (c == 0)
        c = memcmp(a->descriptor, b->descriptor, sizeof(a->descriptor));
    return c;
}

static int pair_cmp(const void *pa, const void *pb)
{
    const struct pair *a = pa, *b = pb;
    int c = cmp_double(a->cost, b->cost);
    if (c == 0)
        c = a->track < b->track ? -1 : a->track > b->track;
    if (c == 0)
        c = a->face < b->face ? -1 : a->face > b->face;
    return c;
}

static double iou(const struct dems_face_box *a, const struct dems_face_box *b)
{
    double w = fmin(a->x + a->width, b->x + b->width) - fmax(a->x, b->x);
    double h = fmin(a->y + a->height, b->y + b->height) - fmax(a->y, b->y);
    if (!(w > 0.0 && h > 0.0))
        return 0.0;
    double inter = w * h;
    return inter / (a->width * a->height + b->width * b->height - inter);
}

/* Distance from a descriptor to a track: to the nearest of its last and its
 * kept descriptors (a track seen from several angles matches any of them). */
static double track_distance(const struct open_track *o, const float *desc)
{
    double d = (double)dems_face_distance(o->last_desc, desc);
    for (size_t i = 0; i < o->pub.n_descriptors; i++)
        d = fmin(d, (double)dems_face_distance(o->pub.descriptors[i], desc));
    return d;
}

/*
 * The linking rule: a pair passes if the face's box overlaps the track's
 * last box with IoU >= iou_min and the descriptor distance is <= max_distance
 * (same place, plausibly the same face), or if the distance is <=
 * jump_distance whatever the overlap (the camera or the person moved
 * fast). Its cost is distance / max_distance + (1 - IoU): lower is better,
 * so overlap wins over a jump at equal distance.
 */
static int find_pairs(struct dems_face_tracker *tr, size_t n, size_t *ret_n)
{
    size_t np = 0;
    for (size_t ti = 0; ti < tr->n_open; ti++) {
        const struct open_track *o = &tr->open[ti];
        if (o->is_closing)
            continue;
        for (size_t fi = 0; fi < n; fi++) {
            const struct dems_face *f = tr->faces[fi].f;
            double ov = iou(&o->last_box, &f->box);
            double d = track_distance(o, f->descriptor);
            bool pass =
                (ov >= tr->p.iou_min && d <= tr->p.max_distance) || d <= tr->p.jump_distance;
            if (!pass)
                continue;
            if (reserve(&tr->pairs, &tr->cap_pairs, np + 1, sizeof(*tr->pairs)) < 0)
                return DEMS_ENOMEM;
            tr->pairs[np++] = (struct pair){
                .cost = d / tr->p.max_distance + (1.0 - ov),
                .track = (uint32_t)ti,
                .face = (uint32_t)fi,
            };
        }
    }
    *ret_n = np;
    return 0;
}

/* Greedy assignment: the cheapest pair first, each track and face once.
 * Returns the number of faces left to start new tracks. */
static size_t assign_pairs(struct dems_face_tracker *tr, size_t np, size_t n)
{
    if (np > 1) /* tr->pairs is NULL until the first pair */
        qsort(tr->pairs, np, sizeof(*tr->pairs), pair_cmp);
    size_t left = n;
    for (size_t i = 0; i < np; i++) {
        struct pair *pr = &tr->pairs[i];
        struct face_ref *fr = &tr->faces[pr->face];
        if (tr->open[pr->track].is_matched || fr->track != SIZE_MAX)
            continue;
        tr->open[pr->track].is_matched = true;
        fr->track = pr->track;
        left--;
    }
    return left;
}

/* Marks the tracks unseen for more than max_gap at time t (they take no
 * part in the linking), and clears the other scratch flag. */
static void mark_expired(struct dems_face_tracker *tr, double t)
{
    for (size_t i = 0; i < tr->n_open; i++) {
        struct open_track *o = &tr->open[i];
        o->is_matched = false;
        o->is_closing = t - o->pub.t_last > tr->p.max_gap + GAP_SLACK;
    }
}

/* A live track as a candidate for closing over the cap. */
struct evict {
    double t_last;
    uint32_t id;
    size_t idx;
};

/* Least recently seen first; of equals, the oldest (lowest id). */
static int evict_cmp(const void *pa, const void *pb)
{
    const struct evict *a = pa, *b = pb;
    int c = cmp_double(a->t_last, b->t_last);
    return c != 0 ? c : (a->id < b->id ? -1 : a->id > b->id);
}

/* Marks the least recently seen live tracks while more than max_open are
 * live (order[] has room for n_open). */
static void mark_over_cap(struct dems_face_tracker *tr)
{
    size_t live = 0;
    for (size_t i = 0; i < tr->n_open; i++) {
        const struct open_track *o = &tr->open[i];
        if (!o->is_closing)
            tr->order[live++] = (struct evict){o->pub.t_last, o->pub.id, i};
    }
    if (live <= tr->p.max_open)
        return;
    qsort(tr->order, live, sizeof(*tr->order), evict_cmp);
    for (size_t i = 0; i < live - tr->p.max_open; i++)
        tr->open[tr->order[i].idx].is_closing = true;
}

/* ---- the calls ---- */

static int check_frame(const struct dems_face_tracker *tr, double t, const struct dems_face *faces,
                       size_t n, int img_width, int img_height)
{
    if (!isfinite(t) || (tr->has_frame && t < tr->t_prev) || n > DEMS_FACE_TRACK_MAX_FACES ||
        (n > 0 && faces == NULL) || img_width < 1 || img_height < 1)
        return DEMS_EINVAL;
    if (n > UINT32_MAX - tr->next_id) /* ids would wrap: years of video */
        return DEMS_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        if (!face_valid(&faces[i]))
            return DEMS_EINVAL;
    return 0;
}

/* Everything the changes of one add need, allocated before any is made. */
static int reserve_for(struct dems_face_tracker *tr, size_t n_new)
{
    size_t total = tr->n_open + n_new;
    if (reserve(&tr->open, &tr->cap_open, total, sizeof(*tr->open)) < 0 ||
        reserve(&tr->closed, &tr->cap_closed, tr->n_closed + total, sizeof(*tr->closed)) < 0 ||
        reserve(&tr->order, &tr->cap_order, total, sizeof(*tr->order)) < 0)
        return DEMS_ENOMEM;
    return reserve_blocks(tr, n_new);
}

/* Applies the assignment: extends matched tracks, starts new ones (in the
 * canonical order, so ids do not depend on the caller's order). */
static void apply(struct dems_face_tracker *tr, double t, size_t n,
                  struct dems_face_track_assign *assign)
{
    for (size_t i = 0; i < n; i++) {
        struct face_ref *fr = &tr->faces[i];
        if (fr->track == SIZE_MAX) {
            fr->track = tr->n_open++;
            track_start(tr, &tr->open[fr->track], tr->spare[--tr->n_spare]);
        }
        struct open_track *o = &tr->open[fr->track];
        bool best = track_extend(tr, o, t, fr);
        if (assign != NULL)
            assign[fr->idx] = (struct dems_face_track_assign){.track = o->pub.id, .best = best};
    }
}

int dems_face_tracker_add(struct dems_face_tracker *tr, double t, const struct dems_face *faces,
                          size_t n, int img_width, int img_height,
                          struct dems_face_track_assign *assign)
{
    int r = check_frame(tr, t, faces, n, img_width, img_height);
    if (r < 0)
        return r;
    if (reserve(&tr->faces, &tr->cap_faces, n, sizeof(*tr->faces)) < 0)
        return DEMS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        tr->faces[i] = (struct face_ref){
            .f = &faces[i],
            .idx = i,
            .quality = dems_face_track_quality(&tr->p, &faces[i], img_width, img_height),
            .track = SIZE_MAX,
        };
    if (n > 1)
        qsort(tr->faces, n, sizeof(*tr->faces), face_cmp);
    size_t np;
    mark_expired(tr, t);
    r = find_pairs(tr, n, &np);
    if (r < 0)
        return r;
    size_t n_new = assign_pairs(tr, np, n);
    r = reserve_for(tr, n_new);
    if (r < 0)
        return r;
    /* From here on nothing fails. */
    apply(tr, t, n, assign);
    mark_over_cap(tr);
    close_marked(tr);
    tr->has_frame = true;
    tr->t_prev = t;
    return 0;
}

bool dems_face_tracker_is_open(const struct dems_face_tracker *tr, uint32_t id)
{
    size_t lo = 0, hi = tr->n_open; /* open[] is in id order */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tr->open[mid].pub.id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tr->n_open && tr->open[lo].pub.id == id;
}

int dems_face_tracker_finish(struct dems_face_tracker *tr)
{
    if (reserve(&tr->closed, &tr->cap_closed, tr->n_closed + tr->n_open, sizeof(*tr->closed)) < 0)
        return DEMS_ENOMEM;
    for (size_t i = 0; i < tr->n_open; i++)
        tr->open[i].is_closing = true;
    close_marked(tr);
    return 0;
}

void dems_face_tracker_tracks(const struct dems_face_tracker *tr,
                              const struct dems_face_track **ret_tracks, size_t *ret_n)
{
    *ret_tracks = tr->closed;
    *ret_n = tr->n_closed;
}

void dems_face_tracker_take_closed(struct dems_face_tracker *tr,
                                   struct dems_face_track **ret_tracks, size_t *ret_n)
{
    *ret_n = tr->n_closed;
    if (tr->n_closed == 0) {
        *ret_tracks = NULL;
        return;
    }
    *ret_tracks = tr->closed;
    tr->closed = NULL;
    tr->n_closed = 0;
    tr->cap_closed = 0;
}
