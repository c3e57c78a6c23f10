/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writing a court bundle (docs/bundle.md): the members in their fixed order
 * — manifest.json, checkpoint.txt, keys.jsonl, custody.jsonl, one
 * proofs/<seq>.tlog-proof per entry, index.html, then the files — as one
 * stored (uncompressed) ZIP through libarchive, ZIP64 where a size needs
 * it. Every member has the spec's timestamp, owner 0 and mode 0644, so the
 * same spec always gives the same bytes. Metadata is built in memory (its
 * size is bounded by the entry count); files stream through in 64 KiB
 * blocks, hashed on the way so a changed blob fails the write.
 */
#include <archive.h>
#include <archive_entry.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/bundle.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"

#include "bundle_int.h"

struct zw {
    struct archive *a;
    dems_bundle_sink_fn sink;
    void *ctx;
    int sink_err;
    int64_t mtime_s;
};

struct wctx {
    const struct dems_bundle_spec *spec;
    struct zw zw;
    struct bundle_decoded *dec; /* spec->ncustody decoded entries */
    char *err;
    size_t errlen;
};

static int fail(struct wctx *w, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct wctx *w, int r, const char *fmt, ...)
{
    va_list ap;
    if (w->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(w->err, w->errlen, fmt, ap);
        va_end(ap);
    }
    return r;
}

/* ---- the ZIP writer ---- */

static la_ssize_t on_zip_write(struct archive *a, void *ctx, const void *buf, size_t n)
{
    struct zw *z = ctx;
    (void)a;
    int r = z->sink(z->ctx, buf, n);
    if (r < 0) {
        z->sink_err = r;
        return -1;
    }
    return (la_ssize_t)n;
}

static int zw_error(struct wctx *w, const char *what)
{
    if (w->zw.sink_err < 0)
        return fail(w, w->zw.sink_err, "%s: the output refused the bytes (%s)", what,
                    dems_strerror(w->zw.sink_err));
    const char *msg = archive_error_string(w->zw.a);
    return fail(w, DEMS_EIO, "%s: %s", what, msg != NULL ? msg : "libarchive failed");
}

static int zw_open(struct wctx *w, dems_bundle_sink_fn sink, void *ctx)
{
    struct zw *z = &w->zw;
    *z = (struct zw){.sink = sink, .ctx = ctx, .mtime_s = w->spec->time_ms / 1000};
    z->a = archive_write_new();
    if (z->a == NULL)
        return DEMS_ENOMEM;
    if (archive_write_set_format_zip(z->a) != ARCHIVE_OK ||
        archive_write_zip_set_compression_store(z->a) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(z->a, BUNDLE_IO_CHUNK) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(z->a, 1) != ARCHIVE_OK ||
        archive_write_open2(z->a, z, NULL, on_zip_write, NULL, NULL) != ARCHIVE_OK)
        return zw_error(w, "opening the ZIP");
    return 0;
}

static int zw_begin(struct wctx *w, const char *name, uint64_t size)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return DEMS_ENOMEM;
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_mtime(e, w->zw.mtime_s, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    int r = archive_write_header(w->zw.a, e);
    archive_entry_free(e);
    return r == ARCHIVE_OK ? 0 : zw_error(w, name);
}

static int zw_data(struct wctx *w, const char *name, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        la_ssize_t k = archive_write_data(w->zw.a, b, n);
        if (k <= 0)
            return zw_error(w, name);
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int zw_member(struct wctx *w, const char *name, const struct dems_buf *content)
{
    int r = zw_begin(w, name, content->len);
    return r < 0 ? r : zw_data(w, name, content->data, content->len);
}

/* ---- names ---- */

/* Copies s as a safe path component: ASCII letters, digits, '.', '-', '_'; others '_'. */
static void safe_component(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; s != NULL && *s != '\0' && n + 1 < cap && n < 100; s++) {
        unsigned char c = (unsigned char)*s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && n > 0);
        out[n++] = ok ? (char)c : '_';
    }
    if (n == 0 && cap > 4)
        memcpy(out, "file", (n = 4));
    out[n] = '\0';
}

static int file_path(const struct dems_bundle_spec *spec, size_t i, char out[static 512])
{
    const struct dems_bundle_file *f = &spec->files[i];
    const json_t *x = json_array_get(spec->exhibits, f->exhibit);
    char ref[128], name[128], kind[64];

    safe_component(json_string_value(json_object_get(x, "reference")), ref, sizeof ref);
    safe_component(f->name, name, sizeof name);
    safe_component(f->kind, kind, sizeof kind);
    bool original = strcmp(f->kind, "original") == 0;
    int n = original ? snprintf(out, 512, BUNDLE_FILES "%03zu-%s/%s", f->exhibit + 1, ref, name)
                     : snprintf(out, 512, BUNDLE_FILES "%03zu-%s/previews/%s-%s", f->exhibit + 1,
                                ref, kind, name);
    return n > 0 && n < 512 ? 0 : DEMS_ETOOBIG;
}

bool dems_bundle_name_safe(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > DEMS_BUNDLE_MAX_NAME || name[0] == '/' || name[len - 1] == '/')
        return false;
    for (const char *p = name; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\' || *p == ':' || (unsigned char)*p == 0x7f)
            return false;
    /* No empty, "." or ".." component anywhere. */
    for (const char *c = name;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash != NULL ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (slash == NULL)
            return true;
        c = slash + 1;
    }
}

/* ---- checking and decoding the spec ---- */

size_t bundle_note_text_len(const char *note, size_t len)
{
    /* The text ends at the last blank line (C2SP signed-note). */
    for (size_t i = len; i >= 2; i--)
        if (note[i - 1] == '\n' && note[i - 2] == '\n')
            return i - 1;
    return 0;
}

static bool hex32_eq(const json_t *j, const uint8_t h[static 32])
{
    const char *s = json_string_value(j);
    uint8_t b[32];
    return s != NULL && strlen(s) == 64 && dems_hex_decode(s, 64, b, 32) == 0 &&
           memcmp(b, h, 32) == 0;
}

static int check_entries(struct wctx *w, const struct dems_bundle_entry *e, size_t n, uint64_t size,
                         const char *what)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t leaf[32];
        dems_merkle_leaf_hash(e[i].bytes, e[i].len, leaf);
        if (e[i].seq >= size || (i > 0 && e[i].seq <= e[i - 1].seq))
            return fail(w, DEMS_EINVAL, "%s: entry %" PRIu64 " out of order or past the checkpoint",
                        what, e[i].seq);
        if (memcmp(leaf, e[i].leaf, 32) != 0 || dems_ledger_entry_check(e[i].bytes, e[i].len) < 0)
            return fail(w, DEMS_EINVAL,
                        "%s: entry %" PRIu64 " is not canonical or its leaf hash is wrong", what,
                        e[i].seq);
    }
    return 0;
}

static int decode_custody(struct wctx *w)
{
    const struct dems_bundle_spec *s = w->spec;
    w->dec = calloc(s->ncustody > 0 ? s->ncustody : 1, sizeof *w->dec);
    if (w->dec == NULL)
        return DEMS_ENOMEM;
    for (size_t i = 0; i < s->ncustody; i++)
        if (dems_ledger_entry_decode(s->custody[i].bytes, s->custody[i].len, &w->dec[i].root,
                                     &w->dec[i].e) < 0)
            return fail(w, DEMS_EINVAL, "custody entry %" PRIu64 " does not decode",
                        s->custody[i].seq);
    return 0;
}

static int check_spec(struct wctx *w, struct dems_checkpoint *ret_cp)
{
    const struct dems_bundle_spec *s = w->spec;
    size_t tl = bundle_note_text_len(s->checkpoint, s->checkpoint_len);

    if (s->case_info == NULL || !json_is_object(s->case_info) || !json_is_array(s->exhibits) ||
        json_array_size(s->exhibits) == 0 || json_array_size(s->exhibits) > DEMS_BUNDLE_MAX_ITEMS ||
        s->nfiles > DEMS_BUNDLE_MAX_ITEMS || s->ncustody > DEMS_BUNDLE_MAX_ITEMS)
        return fail(w, DEMS_EINVAL, "the spec needs a case and 1 to %u exhibits",
                    DEMS_BUNDLE_MAX_ITEMS);
    if (tl == 0 || dems_checkpoint_parse(s->checkpoint, tl, ret_cp) < 0)
        return fail(w, DEMS_EINVAL, "the checkpoint is not a signed checkpoint note");
    int r = check_entries(w, s->keys, s->nkeys, ret_cp->size, "keys");
    if (r == 0)
        r = check_entries(w, s->custody, s->ncustody, ret_cp->size, "custody");
    for (size_t i = 0; r == 0 && i < s->nfiles; i++)
        if (s->files[i].exhibit >= json_array_size(s->exhibits) || s->files[i].kind == NULL)
            r = fail(w, DEMS_EINVAL, "file %zu names no exhibit", i);
    return r;
}

/* ---- the manifest ---- */

static json_t *exhibit_files(struct wctx *w, size_t x)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < w->spec->nfiles; i++) {
        const struct dems_bundle_file *f = &w->spec->files[i];
        char path[512], hex[65];
        if (f->exhibit != x || file_path(w->spec, i, path) < 0)
            continue;
        dems_hex_encode(f->sha256, 32, hex);
        if (json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:s}", "kind", f->kind, "path", path,
                                                 "size", (json_int_t)f->size, "sha256", hex)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *exhibit_custody(struct wctx *w, const json_t *sha)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < w->spec->ncustody; i++)
        if (w->dec[i].e.has_artefact && hex32_eq(sha, w->dec[i].e.artefact) &&
            json_array_append_new(arr, json_integer((json_int_t)w->dec[i].e.seq)) < 0) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

static int manifest_exhibit(struct wctx *w, size_t x, json_t *out_arr)
{
    const json_t *in = json_array_get(w->spec->exhibits, x);
    const json_t *sha = json_object_get(in, "sha256");
    json_int_t seq = json_integer_value(json_object_get(in, "ingested_seq"));

    if (!json_is_object(in) || !json_is_string(json_object_get(in, "reference")) ||
        !json_is_integer(json_object_get(in, "size")) ||
        !json_is_integer(json_object_get(in, "ingested_seq")) || json_string_length(sha) != 64)
        return fail(w, DEMS_EINVAL, "exhibit %zu lacks reference, sha256, size or ingested_seq", x);
    bool ingested = false;
    for (size_t i = 0; i < w->spec->ncustody; i++)
        if ((json_int_t)w->dec[i].e.seq == seq && w->dec[i].e.type == DEMS_LEDGER_INGESTED &&
            w->dec[i].e.has_artefact && hex32_eq(sha, w->dec[i].e.artefact))
            ingested = true;
    if (!ingested)
        return fail(w, DEMS_EINVAL, "exhibit %zu: its INGESTED entry %lld is not in custody", x,
                    (long long)seq);
    json_t *o = json_deep_copy(in);
    if (o == NULL || json_object_set_new(o, "files", exhibit_files(w, x)) < 0 ||
        json_object_set_new(o, "custody", exhibit_custody(w, sha)) < 0 ||
        json_array_append_new(out_arr, o) < 0)
        return DEMS_ENOMEM;
    return 0;
}

static int build_manifest(struct wctx *w, const struct dems_checkpoint *cp, json_t **ret)
{
    const struct dems_bundle_spec *s = w->spec;
    char root[65], when[25];
    json_t *ex = json_array(), *case_entries = json_array();

    dems_hex_encode(cp->root, 32, root);
    if (dems_ledger_time_format(s->time_ms, when) < 0)
        when[0] = '\0';
    for (size_t x = 0; ex != NULL && x < json_array_size(s->exhibits); x++) {
        int r = manifest_exhibit(w, x, ex);
        if (r < 0) {
            json_decref(ex);
            json_decref(case_entries);
            return r;
        }
    }
    for (size_t i = 0; case_entries != NULL && i < s->ncustody; i++)
        if (!w->dec[i].e.has_artefact)
            json_array_append_new(case_entries, json_integer((json_int_t)w->dec[i].e.seq));
    json_t *m =
        json_pack("{s:i,s:s,s:s,s:O,s:{s:s,s:I,s:s},s:o,s:o,s:I,s:I}", "dems_bundle",
                  DEMS_BUNDLE_FORMAT, "generator", s->generator != NULL ? s->generator : "dems",
                  "as_of", when, "case", s->case_info, "checkpoint", "origin", cp->origin, "size",
                  (json_int_t)cp->size, "root", root, "exhibits", ex, "case_custody", case_entries,
                  "custody_entries", (json_int_t)s->ncustody, "keys", (json_int_t)(s->nkeys + 1));
    if (m == NULL)
        return DEMS_ENOMEM;
    *ret = m;
    return 0;
}

/* ---- members ---- */

static int put_json(struct wctx *w, const char *name, const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    struct dems_buf b;
    dems_buf_init(&b, DEMS_BUNDLE_MAX_META);
    int r = text == NULL ? DEMS_ENOMEM : dems_buf_append(&b, text, strlen(text));
    if (r == 0)
        r = dems_buf_append(&b, "\n", 1);
    if (r == 0)
        r = zw_member(w, name, &b);
    free(text);
    dems_buf_done(&b);
    return r < 0 && r != DEMS_EIO ? fail(w, r, "%s: %s", name, dems_strerror(r)) : r;
}

static int put_lines(struct wctx *w, const char *name, const struct dems_bundle_entry *e, size_t n,
                     bool with_header)
{
    struct dems_buf b;
    int r = 0;
    dems_buf_init(&b, DEMS_BUNDLE_MAX_META);
    if (with_header)
        r = dems_ledger_export_header(w->spec->origin, w->spec->first_vkey, &b);
    for (size_t i = 0; r == 0 && i < n; i++)
        r = dems_ledger_export_entry(e[i].seq, e[i].bytes, e[i].len, e[i].leaf, e[i].sig, &b);
    if (r == 0)
        r = zw_member(w, name, &b);
    else
        r = fail(w, r, "%s: %s", name, dems_strerror(r));
    dems_buf_done(&b);
    return r;
}

static int put_proof(struct wctx *w, const struct dems_bundle_entry *e)
{
    char name[64];
    struct dems_buf b;
    snprintf(name, sizeof name, BUNDLE_PROOFS "%" PRIu64 ".tlog-proof", e->seq);
    dems_buf_init(&b, DEMS_BUNDLE_MAX_PROOF);
    int r = dems_bundle_proof_format(e->seq, &e->proof, w->spec->checkpoint,
                                     w->spec->checkpoint_len, &b);
    r = r < 0 ? fail(w, r, "%s: %s", name, dems_strerror(r)) : zw_member(w, name, &b);
    dems_buf_done(&b);
    return r;
}

/* The proofs of keys and custody entries, merged in ascending seq order. */
static int put_proofs(struct wctx *w)
{
    const struct dems_bundle_spec *s = w->spec;
    size_t i = 0, j = 0;
    int r = 0;
    while (r == 0 && (i < s->nkeys || j < s->ncustody)) {
        bool take_key = j >= s->ncustody || (i < s->nkeys && s->keys[i].seq <= s->custody[j].seq);
        if (take_key && j < s->ncustody && s->keys[i].seq == s->custody[j].seq)
            j++; /* the same entry in both: one proof */
        r = put_proof(w, take_key ? &s->keys[i++] : &s->custody[j++]);
    }
    return r;
}

static int put_html(struct wctx *w, const json_t *manifest)
{
    struct dems_buf b;
    dems_buf_init(&b, DEMS_BUNDLE_MAX_META);
    int r = bundle_html(manifest, w->dec, w->spec->ncustody, w->spec->first_vkey, &b);
    r = r < 0 ? fail(w, r, BUNDLE_HTML ": %s", dems_strerror(r)) : zw_member(w, BUNDLE_HTML, &b);
    dems_buf_done(&b);
    return r;
}

static int copy_file(struct wctx *w, const struct dems_bundle_source *src, size_t i, uint8_t *buf,
                     struct dems_sha256 *h)
{
    const struct dems_bundle_file *f = &w->spec->files[i];
    char path[512];
    uint64_t done = 0;
    uint8_t got[32];

    int r = file_path(w->spec, i, path);
    if (r < 0)
        return fail(w, r, "file %zu: its name is too long", i);
    if ((r = zw_begin(w, path, f->size)) < 0)
        return r;
    if ((r = src->open(src->ctx, i)) < 0)
        return fail(w, r, "%s: cannot open its source (%s)", path, dems_strerror(r));
    for (;;) {
        long n = src->read(src->ctx, buf, BUNDLE_IO_CHUNK);
        if (n < 0) {
            r = fail(w, (int)n, "%s: reading its source failed (%s)", path, dems_strerror((int)n));
            break;
        }
        if (n == 0 || (uint64_t)n > f->size - done) {
            r = n == 0 ? 0 : fail(w, DEMS_ECRYPTO, "%s: the source is longer than its size", path);
            break;
        }
        dems_sha256_update(h, buf, (size_t)n);
        done += (uint64_t)n;
        if ((r = zw_data(w, path, buf, (size_t)n)) < 0)
            break;
    }
    src->close(src->ctx);
    if (r == 0 &&
        (done != f->size || dems_sha256_final(h, got) < 0 || memcmp(got, f->sha256, 32) != 0))
        r = fail(w, DEMS_ECRYPTO, "%s: the source's size or SHA-256 differs from the spec", path);
    return r;
}

static int put_files(struct wctx *w, const struct dems_bundle_source *src)
{
    uint8_t *buf = malloc(BUNDLE_IO_CHUNK);
    int r = buf != NULL ? 0 : DEMS_ENOMEM;
    for (size_t i = 0; r == 0 && i < w->spec->nfiles; i++) {
        struct dems_sha256 h;
        if (dems_sha256_init(&h) < 0) {
            r = DEMS_ENOMEM;
            break;
        }
        r = copy_file(w, src, i, buf, &h);
        dems_sha256_done(&h);
    }
    free(buf);
    return r;
}

static int write_members(struct wctx *w, const struct dems_bundle_source *src,
                         const struct dems_checkpoint *cp)
{
    const struct dems_bundle_spec *s = w->spec;
    json_t *manifest = NULL;
    struct dems_buf note = {.data = (uint8_t *)(uintptr_t)s->checkpoint, .len = s->checkpoint_len};

    int r = build_manifest(w, cp, &manifest);
    if (r == 0)
        r = put_json(w, BUNDLE_MANIFEST, manifest);
    if (r == 0)
        r = zw_member(w, BUNDLE_CHECKPOINT, &note);
    if (r == 0)
        r = put_lines(w, BUNDLE_KEYS, s->keys, s->nkeys, true);
    if (r == 0)
        r = put_lines(w, BUNDLE_CUSTODY, s->custody, s->ncustody, false);
    if (r == 0)
        r = put_proofs(w);
    if (r == 0)
        r = put_html(w, manifest);
    if (r == 0)
        r = put_files(w, src);
    json_decref(manifest);
    return r;
}

int dems_bundle_write(const struct dems_bundle_spec *spec, const struct dems_bundle_source *src,
                      dems_bundle_sink_fn sink, void *sink_ctx, char *err, size_t errlen)
{
    struct wctx w = {.spec = spec, .err = err, .errlen = errlen};
    struct dems_checkpoint cp;

    if (errlen > 0)
        err[0] = '\0';
    int r = check_spec(&w, &cp);
    if (r == 0)
        r = decode_custody(&w);
    if (r == 0)
        r = zw_open(&w, sink, sink_ctx);
    if (r == 0)
        r = write_members(&w, src, &cp);
    if (r == 0 && archive_write_close(w.zw.a) != ARCHIVE_OK)
        r = zw_error(&w, "closing the ZIP");
    if (w.zw.a != NULL)
        archive_write_free(w.zw.a);
    for (size_t i = 0; w.dec != NULL && i < spec->ncustody; i++)
        json_decref(w.dec[i].root);
    free(w.dec);
    if (r < 0 && errlen > 0 && err[0] == '\0')
        fail(&w, r, "%s", dems_strerror(r));
    return r;
}
