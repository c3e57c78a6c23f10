/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The face-import job ({"import": <face_imports.id>}; docs/face-search.md,
 * "Importing a gallery"): a ZIP of images an admin uploaded by tus becomes
 * pending subjects of a gallery.
 *
 * 1. The archive is read by the sandboxed reader with the unpack bounds
 *    (unpack_read.c): members arrive checked and sealed in a work directory.
 * 2. manifest.json at the archive's root lists the subjects:
 *      {"subjects": [{"file": "images/0001.jpg", "reference": "CUST/0001"}, ...]}
 *    A manifest that is missing, not JSON of that shape or longer than
 *    unpack_max_members fails the import; nothing is recorded.
 * 3. Each line is checked: a reference of 1-64 printable characters, not
 *    held by a live subject of the gallery nor by an earlier line (compared
 *    as PostgreSQL's lower() does, as the gallery's unique index does); a
 *    file that is a member extracted from the archive, a JPEG or PNG by its
 *    first bytes, at most 10 MiB. A line that fails is refused with its
 *    reason and the others go on.
 * 4. The accepted images move into the store; then, in the transaction of
 *    one FACE_GALLERY_IMPORTED entry by the admin who asked (gallery,
 *    archive, counts), a pending subject and its face-enrol job per accepted
 *    line, and the import's outcome with the refused lines. Each enrolment
 *    is then ledgered (FACE_ENROLLED) by its job, as for a single image.
 *
 * Idempotent: an import no longer queued ends a run at once, and its entry
 * is appended only while it is (pre_must_change); blobs are content-addressed.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"

#include "face_int.h"
#include "unpack_int.h"

#define MANIFEST_NAME "manifest.json"
#define MANIFEST_MAX  (8u << 20)
#define IMAGE_MAX     (10u << 20) /* as for one image by API */
#define SHOWN_MAX     200         /* bytes of a refused line's file or reference kept */

struct line {
    const char *file, *reference; /* borrowed from the manifest */
    const struct unpack_member *m;
    const char *reason; /* NULL: accepted so far */
    char detail[160];
};

struct import {
    const struct dems_job_ctx *ctx;
    char id[24], gallery[24], gallery_name[101], archive[65], user[DEMS_LEDGER_MAX_ID + 1];
    uint64_t archive_size;
    struct unpack_run u;
    json_t *manifest;
    struct line *lines;
    size_t nlines;
    const struct unpack_member **by_path; /* extracted members, sorted by path */
    size_t nby;
};

/* ---- the outcome when nothing is imported ---- */

static enum dems_job_result give_up(struct import *im, const char *state, const char *why)
{
    const char *params[] = {im->id, state, why};
    PGresult *res = face_query(im->ctx->db,
                               "UPDATE face_imports SET state = $2, error = left($3, 1000),"
                               " finished_at = now() WHERE id = $1::bigint AND state = 'queued'",
                               3, params);
    bool ok = res != NULL;
    PQclear(res);
    return ok ? DEMS_JOB_FAIL : DEMS_JOB_RETRY;
}

/* What the reader's failure means (as for the unpack job). */
static enum dems_job_result on_read_failure(struct import *im, const struct dems_job *job,
                                            const struct dems_media_error *me, char *err,
                                            size_t errlen)
{
    if (im->u.local) {
        snprintf(err, errlen, "%s", im->u.why);
        return DEMS_JOB_RETRY;
    }
    if (im->u.broken) {
        snprintf(err, errlen, "%s", im->u.why);
        return give_up(im, "failed", err);
    }
    snprintf(err, errlen, "%s: %s", dems_media_code_str(me->code), me->message);
    switch (me->code) {
    case DEMS_MEDIA_TOO_LARGE:
        return give_up(im, "refused", err); /* a bound: nothing is kept */
    case DEMS_MEDIA_INVALID:
    case DEMS_MEDIA_UNSUPPORTED:
    case DEMS_MEDIA_SECCOMP:
        return give_up(im, "failed", err);
    default: /* a crash, a timeout, a resource limit: the machine? */
        return job->attempt < job->max_attempts ? DEMS_JOB_RETRY : give_up(im, "failed", err);
    }
}

/* ---- the manifest ---- */

static int by_path_cmp(const void *a, const void *b)
{
    const struct unpack_member *const *x = a, *const *y = b;
    return strcmp((*x)->path, (*y)->path);
}

static int path_key_cmp(const void *key, const void *elem)
{
    const struct unpack_member *const *m = elem;
    return strcmp(key, (*m)->path);
}

static const struct unpack_member *member_named(const struct import *im, const char *path)
{
    const struct unpack_member *const *hit =
        bsearch(path, im->by_path, im->nby, sizeof(*im->by_path), path_key_cmp);
    return hit != NULL ? *hit : NULL;
}

/* The manifest's bytes, decrypted from its sealed member. */
static int read_manifest(struct import *im, const struct unpack_member *m, char *err, size_t errlen)
{
    if (m->size > MANIFEST_MAX) {
        snprintf(err, errlen, MANIFEST_NAME " is over %u MiB", MANIFEST_MAX >> 20);
        return DEMS_EINVAL;
    }
    char path[PATH_MAX + 32];
    unpack_member_path(&im->u, m->index, path);
    struct dems_blob *b = NULL;
    int r = dems_blob_open_file(path, im->ctx->master_key, &b);
    uint8_t *text = r == 0 ? malloc((size_t)m->size + DEMS_BLOB_CHUNK) : NULL;
    size_t len = 0;
    if (r == 0 && text == NULL)
        r = DEMS_ENOMEM;
    long n = 0;
    while (r == 0 && (n = dems_blob_read(b, text + len)) > 0)
        if ((len += (size_t)n) > m->size)
            r = DEMS_EIO;
    if (r == 0 && n < 0)
        r = (int)n;
    dems_blob_close(b);
    if (r < 0) {
        free(text);
        snprintf(err, errlen, "cannot read " MANIFEST_NAME ": %s", dems_strerror(r));
        return DEMS_EIO;
    }
    json_error_t je;
    im->manifest = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (im->manifest == NULL) {
        snprintf(err, errlen, MANIFEST_NAME " is not valid JSON: line %d: %s", je.line, je.text);
        return DEMS_EINVAL;
    }
    return 0;
}

/* A reference or file name as a refused line shows it: cut at a character. */
static json_t *shown(const char *s)
{
    if (s == NULL)
        return json_null();
    size_t n = strlen(s);
    if (n > SHOWN_MAX) {
        n = SHOWN_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    return json_stringn(s, n);
}

static bool label_ok(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++, n++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return n >= 1 && n <= 64;
}

/* Takes the manifest's lines and checks each against the archive. */
static int check_lines(struct import *im, char *err, size_t errlen)
{
    json_t *subjects = json_object_get(im->manifest, "subjects");
    if (!json_is_object(im->manifest) || !json_is_array(subjects) ||
        json_object_size(im->manifest) != 1) {
        snprintf(err, errlen, MANIFEST_NAME " must be {\"subjects\": [{\"file\", \"reference\"}]}");
        return DEMS_EINVAL;
    }
    im->nlines = json_array_size(subjects);
    if (im->nlines == 0 || im->nlines > im->u.lim.max_members) {
        snprintf(err, errlen, MANIFEST_NAME " lists %zu subjects: 1 to %llu are allowed",
                 im->nlines, (unsigned long long)im->u.lim.max_members);
        return DEMS_EINVAL;
    }
    im->lines = calloc(im->nlines, sizeof(*im->lines));
    if (im->lines == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    for (size_t i = 0; i < im->nlines; i++) {
        struct line *l = &im->lines[i];
        json_t *o = json_array_get(subjects, i);
        l->file = json_string_value(json_object_get(o, "file"));
        l->reference = json_string_value(json_object_get(o, "reference"));
        if (!json_is_object(o) || json_object_size(o) != 2 || l->file == NULL ||
            l->reference == NULL) {
            l->reason = "invalid_line";
            snprintf(l->detail, sizeof(l->detail),
                     "a line is {\"file\": string, \"reference\": string} and nothing else");
        } else if (!label_ok(l->reference)) {
            l->reason = "invalid_reference";
            snprintf(l->detail, sizeof(l->detail), "a reference is 1-64 printable characters");
        } else if ((l->m = member_named(im, l->file)) == NULL) {
            l->reason = "missing_file";
            snprintf(l->detail, sizeof(l->detail), "no such file was extracted from the archive");
        } else if (l->m->what.kind != DEMS_SNIFF_IMAGE || (strcmp(l->m->what.format, "jpeg") != 0 &&
                                                           strcmp(l->m->what.format, "png") != 0)) {
            l->reason = "not_an_image";
            snprintf(l->detail, sizeof(l->detail), "the file is %s, not a JPEG or PNG image",
                     l->m->what.label);
        } else if (l->m->size > IMAGE_MAX) {
            l->reason = "image_too_large";
            snprintf(l->detail, sizeof(l->detail), "the image is over %u MiB", IMAGE_MAX >> 20);
        }
    }
    return 0;
}

/*
 * Refuses the references the gallery holds already or an earlier line
 * has, compared by PostgreSQL's lower() as the unique index compares them.
 */
static int check_references(struct import *im, char *err, size_t errlen)
{
    json_t *refs = json_array();
    for (size_t i = 0; refs != NULL && i < im->nlines; i++)
        json_array_append_new(refs,
                              json_pack("{s:I,s:s}", "n", (json_int_t)i, "r",
                                        im->lines[i].reason == NULL ? im->lines[i].reference : ""));
    char *text = refs != NULL ? json_dumps(refs, JSON_COMPACT) : NULL;
    json_decref(refs);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    const char *params[] = {im->gallery, text};
    PGresult *res = face_query(
        im->ctx->db,
        "WITH t AS (SELECT (e->>'n')::integer AS n, e->>'r' AS r"
        " FROM jsonb_array_elements($2::jsonb) e WHERE e->>'r' <> '')"
        " SELECT n, EXISTS (SELECT 1 FROM face_subjects s WHERE s.gallery_id = $1::bigint"
        " AND s.state <> 'removed' AND lower(s.reference) = lower(t.r)) AS held,"
        " row_number() OVER (PARTITION BY lower(t.r) ORDER BY n) > 1 AS repeated FROM t",
        2, params);
    free(text);
    if (res == NULL) {
        snprintf(err, errlen, "database: cannot check the references");
        return DEMS_EDB;
    }
    int c_n = PQfnumber(res, "n"), c_held = PQfnumber(res, "held"),
        c_rep = PQfnumber(res, "repeated");
    for (int row = 0; row < PQntuples(res); row++) {
        long long n = atoll(PQgetvalue(res, row, c_n));
        if (n < 0 || (size_t)n >= im->nlines)
            continue;
        struct line *l = &im->lines[n];
        if (PQgetvalue(res, row, c_held)[0] == 't') {
            l->reason = "subject_exists";
            snprintf(l->detail, sizeof(l->detail),
                     "the gallery already holds a subject with that reference");
        } else if (PQgetvalue(res, row, c_rep)[0] == 't') {
            l->reason = "duplicate_reference";
            snprintf(l->detail, sizeof(l->detail), "an earlier line has that reference");
        }
    }
    PQclear(res);
    return 0;
}

/* ---- recording ---- */

/* Moves each accepted image into the store (once per member). */
static int store_images(struct import *im, char *err, size_t errlen)
{
    for (size_t i = 0; i < im->nlines; i++) {
        const struct line *l = &im->lines[i];
        if (l->reason != NULL || dems_blob_exists(im->ctx->cfg->data_dir, l->m->sha))
            continue;
        char path[PATH_MAX + 32];
        unpack_member_path(&im->u, l->m->index, path);
        int r = dems_blob_adopt(im->ctx->cfg->data_dir, l->m->sha, path);
        if (r < 0) {
            snprintf(err, errlen, "cannot store %s: %s", l->m->path, dems_strerror(r));
            return r;
        }
    }
    return 0;
}

static enum dems_job_result record(struct import *im, char *err, size_t errlen)
{
    json_t *accepted = json_array(), *refused = json_array();
    size_t n_ok = 0;
    for (size_t i = 0; accepted != NULL && refused != NULL && i < im->nlines; i++) {
        const struct line *l = &im->lines[i];
        if (l->reason == NULL) {
            n_ok++;
            json_array_append_new(accepted,
                                  json_pack("{s:s,s:s}", "r", l->reference, "sha", l->m->sha));
        } else {
            json_array_append_new(refused, json_pack("{s:I,s:o,s:o,s:s,s:s}", "line",
                                                     (json_int_t)i + 1, "file", shown(l->file),
                                                     "reference", shown(l->reference), "reason",
                                                     l->reason, "detail", l->detail));
        }
    }
    char *acc = accepted != NULL ? json_dumps(accepted, JSON_COMPACT) : NULL;
    char *ref = refused != NULL ? json_dumps(refused, JSON_COMPACT) : NULL;
    json_decref(accepted);
    json_decref(refused);
    char entries[24], nrefused[24];
    snprintf(entries, sizeof(entries), "%zu", im->nlines);
    snprintf(nrefused, sizeof(nrefused), "%zu", im->nlines - n_ok);
    json_t *payload =
        json_pack("{s:I,s:s,s:I,s:s,s:I,s:I,s:I}", "gallery_id", (json_int_t)atoll(im->gallery),
                  "gallery", im->gallery_name, "import_id", (json_int_t)atoll(im->id),
                  "archive_sha256", im->archive, "entries", (json_int_t)im->nlines, "accepted",
                  (json_int_t)n_ok, "rejected", (json_int_t)(im->nlines - n_ok));
    const char *params[] = {im->id, acc, entries, nrefused, ref};
    if (acc == NULL || ref == NULL) {
        json_decref(payload);
        payload = NULL; /* face_item then fails */
    }
    struct dems_ledger_item *it =
        face_item(DEMS_LEDGER_FACE_GALLERY_IMPORTED, DEMS_LEDGER_ACTOR_USER, im->user, payload,
                  "WITH e AS (SELECT x->>'r' AS r, x->>'sha' AS sha"
                  " FROM jsonb_array_elements($2::jsonb) x),"
                  " s AS (INSERT INTO face_subjects (gallery_id, reference, image_sha256,"
                  " image_blob, enrolled_by, import_id) SELECT i.gallery_id, e.r, e.sha,"
                  " e.sha, i.created_by, i.id FROM e, face_imports i"
                  " WHERE i.id = $1::bigint AND i.state = 'queued' RETURNING id),"
                  " j AS (SELECT dems_enqueue_job('face-enrol', jsonb_build_object("
                  "'subject', s.id), s.id::text) AS job FROM s)"
                  " UPDATE face_imports SET state = 'done', error = NULL,"
                  " entries = $3::integer, accepted = (SELECT count(*) FROM s),"
                  " rejected = $4::integer, rejections = $5::jsonb,"
                  " ledger_seq = $6::bigint, finished_at = now()"
                  " WHERE id = $1::bigint AND state = 'queued'"
                  " AND (SELECT count(*) FROM j) >= 0",
                  5, params);
    free(acc);
    free(ref);
    if (it == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_JOB_RETRY;
    }
    it->has_artefact = true;
    dems_hex_decode(im->archive, 64, it->artefact, 32);
    it->pre_must_change = true;
    it->pre_seq = true;
    uint64_t seq;
    int r = dems_job_ledger_append(it, &seq);
    if (r == DEMS_ENOTFOUND)
        return DEMS_JOB_OK; /* recorded by another run */
    if (r < 0) {
        /* A reference taken meanwhile (DEMS_ECONFLICT): the next run refuses it. */
        snprintf(err, errlen, "cannot record the import: %s", dems_strerror(r));
        return DEMS_JOB_RETRY;
    }
    return DEMS_JOB_OK;
}

/* ---- the job ---- */

/* The import, its gallery and archive: 1 to go on, 0 when done already, or a result. */
static int look_up(struct import *im, char *err, size_t errlen, enum dems_job_result *ret)
{
    const char *params[] = {im->id};
    PGresult *res = face_query(im->ctx->db,
                               "SELECT i.state, i.archive, a.size, i.gallery_id, g.name,"
                               " u.username FROM face_imports i"
                               " JOIN artefacts a ON a.id = i.archive"
                               " JOIN face_galleries g ON g.id = i.gallery_id"
                               " JOIN users u ON u.id = i.created_by WHERE i.id = $1::bigint",
                               1, params);
    if (res == NULL || PQntuples(res) != 1) {
        snprintf(err, errlen, res == NULL ? "database: cannot look up import %s" : "no import %s",
                 im->id);
        *ret = res == NULL ? DEMS_JOB_RETRY : DEMS_JOB_FAIL;
        PQclear(res);
        return -1;
    }
    bool queued = strcmp(PQgetvalue(res, 0, PQfnumber(res, "state")), "queued") == 0;
    snprintf(im->archive, sizeof(im->archive), "%s", PQgetvalue(res, 0, PQfnumber(res, "archive")));
    const char *size = PQgetvalue(res, 0, PQfnumber(res, "size"));
    dems_parse_u64(size, strlen(size), INT64_MAX, &im->archive_size);
    snprintf(im->gallery, sizeof(im->gallery), "%s",
             PQgetvalue(res, 0, PQfnumber(res, "gallery_id")));
    snprintf(im->gallery_name, sizeof(im->gallery_name), "%s",
             PQgetvalue(res, 0, PQfnumber(res, "name")));
    snprintf(im->user, sizeof(im->user), "%s", PQgetvalue(res, 0, PQfnumber(res, "username")));
    PQclear(res);
    *ret = DEMS_JOB_OK;
    return queued ? 1 : 0;
}

/* Reads the archive, the manifest and the lines; then records. */
static enum dems_job_result import_run(struct import *im, const struct dems_job *job, char *err,
                                       size_t errlen)
{
    char tag[48];
    snprintf(tag, sizeof(tag), "face-import-%s", im->id);
    if (unpack_open(&im->u, im->ctx, im->archive, im->archive_size, tag, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    json_t *summary = NULL;
    struct dems_media_error me = {.code = DEMS_MEDIA_OK};
    bool released = false;
    int r = unpack_read(&im->u, &summary, &me, &released);
    json_decref(summary);
    if (released) {
        snprintf(err, errlen, "the worker stopped while importing");
        return DEMS_JOB_RELEASE;
    }
    if (r < 0 || im->u.broken)
        return on_read_failure(im, job, &me, err, errlen);
    im->by_path = malloc((im->u.n + 1) * sizeof(*im->by_path));
    if (im->by_path == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_JOB_RETRY;
    }
    const struct unpack_member *manifest = NULL;
    for (size_t i = 0; i < im->u.n; i++) {
        const struct unpack_member *m = &im->u.members[i];
        if (m->skipped != 0)
            continue;
        im->by_path[im->nby++] = m;
        if (strcmp(m->path, MANIFEST_NAME) == 0)
            manifest = m;
    }
    qsort(im->by_path, im->nby, sizeof(*im->by_path), by_path_cmp);
    if (manifest == NULL) {
        snprintf(err, errlen, "the archive has no " MANIFEST_NAME " at its root");
        return give_up(im, "failed", err);
    }
    r = read_manifest(im, manifest, err, errlen);
    if (r == 0)
        r = check_lines(im, err, errlen);
    if (r == DEMS_EINVAL)
        return give_up(im, "failed", err);
    if (r == 0)
        r = check_references(im, err, errlen);
    if (r == 0)
        r = store_images(im, err, errlen);
    return r < 0 ? DEMS_JOB_RETRY : record(im, err, errlen);
}

enum dems_job_result dems_job_face_import(const struct dems_job *job, struct dems_job_ctx *ctx,
                                          char *err, size_t errlen)
{
    json_t *ij = json_object_get(job->payload, "import");
    if (!json_is_integer(ij) || json_integer_value(ij) <= 0) {
        snprintf(err, errlen, "field \"import\" must be an import id");
        return DEMS_JOB_FAIL;
    }
    struct import im = {.ctx = ctx};
    snprintf(im.id, sizeof(im.id), "%lld", (long long)json_integer_value(ij));
    enum dems_job_result out;
    if (look_up(&im, err, errlen, &out) <= 0)
        return out;
    if (dems_job_ledger_start(ctx, err, errlen) < 0)
        return DEMS_JOB_RETRY;
    out = import_run(&im, job, err, errlen);
    unpack_close(&im.u);
    free(im.by_path);
    free(im.lines);
    json_decref(im.manifest);
    return out;
}
