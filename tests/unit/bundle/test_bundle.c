/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Court bundles (common/bundle): a bundle written from an in-memory log
 * verifies, the same spec gives the same bytes, and each kind of tampering
 * (a byte of an original, a manifest hash, a removed or reordered custody
 * line, a proof hash, a changed entry signature, another log's checkpoint,
 * a foreign pinned key, not a ZIP, a truncated ZIP, a "../" member) fails
 * with its own code. Tampered copies are made by re-zipping the good one
 * with one member changed, so only that member differs.
 */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/buf.h"
#include "dems/bundle.h"
#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/str.h"

#define ORIGIN  "dems.test/bundle"
#define NENT    12
#define ROTATE  6 /* the KEY_ROTATED entry's seq */
#define NFILE   2
#define FILELEN 200000

struct log {
    struct dems_ledger_key *key1, *key2;
    struct dems_merkle_mem *tree;
    struct dems_merkle_frontier front;
    struct dems_buf bytes[NENT];
    uint8_t leaf[NENT][32], sig[NENT][64];
    struct dems_buf note;
    char vkey1[DEMS_NOTE_VKEY_MAX];
};

static struct log lg;
static uint8_t files[NFILE][FILELEN];
static uint8_t sha[NFILE][32];
static char dir[64];
static char good[128];

static void sha256(const void *p, size_t n, uint8_t out[static 32])
{
    struct dems_sha256 h;
    assert_int_equal(dems_sha256_init(&h), 0);
    dems_sha256_update(&h, p, n);
    assert_int_equal(dems_sha256_final(&h, out), 0);
    dems_sha256_done(&h);
}

/* Entry seq of the fixed log: ingests of both files, views, an unrelated download, a rotation. */
static void add_entry(struct log *l, uint64_t seq, struct dems_ledger_key *k, json_t *payload)
{
    static const enum dems_ledger_type types[NENT] = {
        DEMS_LEDGER_INGESTED,    DEMS_LEDGER_DOWNLOADED, DEMS_LEDGER_INGESTED,
        DEMS_LEDGER_VIEWED,      DEMS_LEDGER_DOWNLOADED, DEMS_LEDGER_VIEWED,
        DEMS_LEDGER_KEY_ROTATED, DEMS_LEDGER_VIEWED,     DEMS_LEDGER_DOWNLOADED,
        DEMS_LEDGER_VIEWED,      DEMS_LEDGER_DOWNLOADED, DEMS_LEDGER_VIEWED};
    /* Which file each entry touches: 0, 1, or -1 for none (seq 4: another artefact). */
    static const int touches[NENT] = {0, -1, 1, 0, -1, 1, -1, 0, 1, -1, 0, 1};
    struct dems_ledger_entry e = {.seq = seq,
                                  .time_ms = 1764023456000 + (int64_t)seq * 1000,
                                  .type = types[seq],
                                  .actor_kind = DEMS_LEDGER_ACTOR_USER,
                                  .actor_id = "officer <b>&'x'",
                                  .payload = payload};
    if (touches[seq] >= 0) {
        e.has_artefact = true;
        memcpy(e.artefact, sha[touches[seq]], 32);
    } else if (seq == 4) {
        e.has_artefact = true;
        memset(e.artefact, 0xab, 32);
    } else if (seq == 9) {
        e.case_id = "CASE-1";
    }
    if (e.type == DEMS_LEDGER_INGESTED) {
        e.has_sha256 = e.has_size = true;
        memcpy(e.sha256, sha[touches[seq]], 32);
        e.size = FILELEN;
    }
    struct dems_ledger_sealed s;
    dems_buf_init(&l->bytes[seq], DEMS_LEDGER_MAX_ENTRY);
    assert_int_equal(dems_ledger_entry_seal(k, &l->front, &e, &l->bytes[seq], &s), 0);
    memcpy(l->leaf[seq], s.leaf, 32);
    memcpy(l->sig[seq], s.sig, 64);
    assert_int_equal(dems_merkle_mem_append(l->tree, s.leaf), 0);
}

static void make_log(struct log *l, const char *origin)
{
    char vkey2[DEMS_NOTE_VKEY_MAX];
    assert_int_equal(dems_ledger_key_new(origin, NULL, &l->key1), 0);
    assert_int_equal(dems_ledger_key_new(origin, NULL, &l->key2), 0);
    dems_ledger_key_vkey(l->key1, l->vkey1);
    dems_ledger_key_vkey(l->key2, vkey2);
    l->tree = dems_merkle_mem_new();
    dems_merkle_frontier_init(&l->front);
    for (uint64_t seq = 0; seq < NENT; seq++) {
        json_t *p = seq == ROTATE ? json_pack("{s:s}", "vkey", vkey2)
                                  : json_pack("{s:s}", "filename", "cam <1>.mp4");
        add_entry(l, seq, seq <= ROTATE ? l->key1 : l->key2, p);
        json_decref(p);
    }
    struct dems_checkpoint cp = {.size = NENT};
    snprintf(cp.origin, sizeof cp.origin, "%s", origin);
    dems_merkle_frontier_root(&l->front, cp.root);
    dems_buf_init(&l->note, DEMS_NOTE_MAX_BYTES);
    assert_int_equal(dems_checkpoint_sign(l->key2, &cp, &l->note), 0);
}

static void free_log(struct log *l)
{
    for (size_t i = 0; i < NENT; i++)
        dems_buf_done(&l->bytes[i]);
    dems_buf_done(&l->note);
    dems_merkle_mem_free(l->tree);
    dems_ledger_key_free(l->key1);
    dems_ledger_key_free(l->key2);
}

static void fill_entry(struct dems_bundle_entry *e, uint64_t seq)
{
    struct dems_merkle_reader rd = dems_merkle_mem_reader(lg.tree);
    *e = (struct dems_bundle_entry){
        .seq = seq, .bytes = lg.bytes[seq].data, .len = lg.bytes[seq].len};
    memcpy(e->leaf, lg.leaf[seq], 32);
    memcpy(e->sig, lg.sig[seq], 64);
    assert_int_equal(dems_merkle_prove_inclusion(&rd, seq, NENT, &e->proof), 0);
}

/* ---- a source over the in-memory files, a sink into a file ---- */

struct src {
    size_t i, pos;
};

static int src_open(void *ctx, size_t i)
{
    struct src *s = ctx;
    s->i = i;
    s->pos = 0;
    return 0;
}

static long src_read(void *ctx, uint8_t *buf, size_t cap)
{
    struct src *s = ctx;
    size_t n = FILELEN - s->pos < cap ? FILELEN - s->pos : cap;
    memcpy(buf, files[s->i] + s->pos, n);
    s->pos += n;
    return (long)n;
}

static void src_close(void *ctx)
{
    (void)ctx;
}

static int sink_file(void *ctx, const uint8_t *p, size_t n)
{
    return fwrite(p, 1, n, ctx) == n ? 0 : DEMS_EIO;
}

static int write_bundle(const char *path)
{
    struct dems_bundle_entry keys[1], custody[NENT];
    size_t nc = 0;
    for (uint64_t seq = 0; seq < NENT; seq++)
        if (seq != 4 && seq != ROTATE && seq != 1)
            fill_entry(&custody[nc++], seq);
    fill_entry(&keys[0], ROTATE);
    char h0[65], h1[65];
    dems_hex_encode(sha[0], 32, h0);
    dems_hex_encode(sha[1], 32, h1);
    json_t *c = json_pack("{s:s,s:s,s:s}", "reference", "CASE-1", "title",
                          "R v <Smith> & \"Jones\"", "offence", "theft");
    json_t *x = json_pack("[{s:s,s:s,s:I,s:I,s:s},{s:s,s:s,s:I,s:I,s:s}]", "reference", "EX/1",
                          "sha256", h0, "size", (json_int_t)FILELEN, "ingested_seq", (json_int_t)0,
                          "description", "<script>alert(1)</script>", "reference", "EX-2", "sha256",
                          h1, "size", (json_int_t)FILELEN, "ingested_seq", (json_int_t)2,
                          "filename", "../../etc/passwd");
    struct dems_bundle_file fl[NFILE] = {
        {.exhibit = 0, .kind = "original", .name = "cam 1.mp4", .size = FILELEN},
        {.exhibit = 1, .kind = "original", .name = "../../etc/passwd", .size = FILELEN}};
    memcpy(fl[0].sha256, sha[0], 32);
    memcpy(fl[1].sha256, sha[1], 32);
    struct dems_bundle_spec spec = {.case_info = c,
                                    .exhibits = x,
                                    .origin = ORIGIN,
                                    .first_vkey = lg.vkey1,
                                    .checkpoint = (const char *)lg.note.data,
                                    .checkpoint_len = lg.note.len,
                                    .keys = keys,
                                    .nkeys = 1,
                                    .custody = custody,
                                    .ncustody = nc,
                                    .files = fl,
                                    .nfiles = NFILE,
                                    .time_ms = 1764023456000,
                                    .generator = "dems test"};
    struct src s;
    struct dems_bundle_source src = {src_open, src_read, src_close, &s};
    char err[256];
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    int r = dems_bundle_write(&spec, &src, sink_file, f, err, sizeof err);
    if (r < 0)
        fprintf(stderr, "write: %s\n", err);
    fclose(f);
    json_decref(c);
    json_decref(x);
    return r;
}

static char *slurp(const char *path, size_t *ret_n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_n = (size_t)n;
    return b;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* ---- re-zipping with one member changed ---- */

typedef void (*transform_fn)(struct dems_buf *content);

static void rezip(const char *in, const char *out, const char *member, transform_fn fn,
                  const char *extra_name)
{
    struct archive *r = archive_read_new(), *w = archive_write_new();
    struct archive_entry *e;
    archive_read_support_format_zip_seekable(r);
    assert_int_equal(archive_read_open_filename(r, in, 65536), ARCHIVE_OK);
    archive_write_set_format_zip(w);
    archive_write_zip_set_compression_store(w);
    assert_int_equal(archive_write_open_filename(w, out), ARCHIVE_OK);
    while (archive_read_next_header(r, &e) == ARCHIVE_OK) {
        struct dems_buf b;
        uint8_t chunk[65536];
        la_ssize_t n;
        dems_buf_init(&b, 1 << 26);
        while ((n = archive_read_data(r, chunk, sizeof chunk)) > 0)
            assert_int_equal(dems_buf_append(&b, chunk, (size_t)n), 0);
        const char *name = archive_entry_pathname(e);
        if (member != NULL && strcmp(name, member) == 0)
            fn(&b);
        if (b.len != SIZE_MAX) {
            struct archive_entry *o = archive_entry_new();
            archive_entry_set_pathname(o, name);
            archive_entry_set_filetype(o, AE_IFREG);
            archive_entry_set_perm(o, 0644);
            archive_entry_set_size(o, (la_int64_t)b.len);
            assert_int_equal(archive_write_header(w, o), ARCHIVE_OK);
            assert_int_equal(archive_write_data(w, b.data, b.len), (la_ssize_t)b.len);
            archive_entry_free(o);
        }
        dems_buf_done(&b);
    }
    if (extra_name != NULL) {
        struct archive_entry *o = archive_entry_new();
        archive_entry_set_pathname(o, extra_name);
        archive_entry_set_filetype(o, AE_IFREG);
        archive_entry_set_perm(o, 0644);
        archive_entry_set_size(o, 4);
        assert_int_equal(archive_write_header(w, o), ARCHIVE_OK);
        assert_int_equal(archive_write_data(w, "evil", 4), 4);
        archive_entry_free(o);
    }
    archive_write_free(w);
    archive_read_free(r);
}

static void expect(const char *path, const char *vkey, const char *code, const char *detail_has)
{
    struct dems_bundle_report rep;
    struct dems_bundle_verify_opts o = {.vkey = vkey};
    int r = dems_bundle_verify_file(path, &o, NULL, &rep);
    if (code == NULL) {
        if (r != 0)
            fprintf(stderr, "unexpected fault %s: %s\n", rep.code, rep.detail);
        assert_int_equal(r, 0);
        return;
    }
    if (r != DEMS_ECRYPTO || strcmp(rep.code, code) != 0)
        fprintf(stderr, "want %s, got r=%d %s: %s\n", code, r, rep.code, rep.detail);
    assert_int_equal(r, DEMS_ECRYPTO);
    assert_string_equal(rep.code, code);
    if (detail_has != NULL && strstr(rep.detail, detail_has) == NULL)
        fail_msg("detail '%s' lacks '%s'", rep.detail, detail_has);
}

static void tampered(const char *member, transform_fn fn, const char *extra, const char *code,
                     const char *detail_has)
{
    char path[160];
    snprintf(path, sizeof path, "%s/t.zip", dir);
    rezip(good, path, member, fn, extra);
    expect(path, lg.vkey1, code, detail_has);
}

/* ---- the transforms ---- */

static void flip_middle(struct dems_buf *b)
{
    b->data[b->len / 2] ^= 1;
}

/* Swaps the sha256 of exhibit 1's file in the manifest for exhibit 2's. */
static void manifest_hash(struct dems_buf *b)
{
    char h0[65], h1[65];
    dems_hex_encode(sha[0], 32, h0);
    dems_hex_encode(sha[1], 32, h1);
    char *text = malloc(b->len + 1);
    memcpy(text, b->data, b->len);
    text[b->len] = '\0';
    char *fl = strstr(text, "\"files\"");
    char *p = strstr(fl, h0);
    assert_non_null(p);
    memcpy(b->data + (p - text), h1, 64);
    free(text);
}

/* Removes line 2 of the member. */
static void drop_line2(struct dems_buf *b)
{
    uint8_t *nl1 = memchr(b->data, '\n', b->len);
    uint8_t *nl2 = memchr(nl1 + 1, '\n', b->len - (size_t)(nl1 + 1 - b->data));
    size_t cut = (size_t)(nl2 - nl1);
    memmove(nl1 + 1, nl2 + 1, b->len - (size_t)(nl2 + 1 - b->data));
    b->len -= cut;
}

/* Swaps lines 2 and 3. */
static void swap_lines(struct dems_buf *b)
{
    uint8_t *s2 = (uint8_t *)memchr(b->data, '\n', b->len) + 1;
    uint8_t *s3 = (uint8_t *)memchr(s2, '\n', b->len - (size_t)(s2 - b->data)) + 1;
    uint8_t *e3 = (uint8_t *)memchr(s3, '\n', b->len - (size_t)(s3 - b->data)) + 1;
    size_t l2 = (size_t)(s3 - s2), l3 = (size_t)(e3 - s3);
    uint8_t *tmp = malloc(l2 + l3);
    memcpy(tmp, s3, l3);
    memcpy(tmp + l3, s2, l2);
    memcpy(s2, tmp, l2 + l3);
    free(tmp);
}

/* Changes the first proof hash (line 3) to another valid base64 hash. */
static void proof_hash(struct dems_buf *b)
{
    uint8_t *p = (uint8_t *)memchr(b->data, '\n', b->len) + 1;
    p = (uint8_t *)memchr(p, '\n', b->len) + 1;
    p[0] = p[0] == 'A' ? 'B' : 'A';
}

/* Flips a signature bit of the first custody line, keeping the base64 canonical. */
static void custody_sig(struct dems_buf *b)
{
    char *sig = memmem(b->data, b->len, "\"sig\":\"", 7);
    assert_non_null(sig);
    sig += 7;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
}

static struct log other;

static void other_checkpoint(struct dems_buf *b)
{
    dems_buf_reset(b);
    assert_int_equal(dems_buf_append(b, other.note.data, other.note.len), 0);
}

static void drop_member(struct dems_buf *b)
{
    b->len = SIZE_MAX;
}

/* ---- tests ---- */

static void test_valid_and_deterministic(void **state)
{
    (void)state;
    char again[160];
    size_t n1, n2;
    expect(good, NULL, NULL, NULL);
    expect(good, lg.vkey1, NULL, NULL);
    snprintf(again, sizeof again, "%s/again.zip", dir);
    assert_int_equal(write_bundle(again), 0);
    char *a = slurp(good, &n1), *b = slurp(again, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    /* The report escapes what it shows: no raw markup from the data. */
    assert_null(memmem(a, n1, "<td><script>", 12));
    assert_non_null(memmem(a, n1, "&lt;script&gt;alert(1)&lt;/script&gt;", 37));
    free(a);
    free(b);
}

static void test_tampered_original(void **state)
{
    (void)state;
    tampered("exhibits/001-EX_1/cam_1.mp4", flip_middle, NULL, "file_mismatch", "cam_1.mp4");
    /* The same byte flipped in place in the ZIP (CRC no longer matches either). */
    size_t n;
    char *z = slurp(good, &n), path[160];
    char *hit = memmem(z, n, files[0] + 1000, 64);
    assert_non_null(hit);
    hit[10] ^= 0x40;
    snprintf(path, sizeof path, "%s/flip.zip", dir);
    spit(path, z, n);
    expect(path, lg.vkey1, "file_mismatch", "exhibits/001-EX_1/cam_1.mp4");
    free(z);
}

static void test_tampered_metadata(void **state)
{
    (void)state;
    tampered("manifest.json", manifest_hash, NULL, "file_mismatch", "SHA-256");
    tampered("custody.jsonl", drop_line2, NULL, "missing_entry", "entry 2");
    tampered("custody.jsonl", swap_lines, NULL, "custody_order", "line 3");
    tampered("custody.jsonl", custody_sig, NULL, "bad_signature", "entry 0");
    tampered("proofs/3.tlog-proof", proof_hash, NULL, "bad_proof", "proofs/3.tlog-proof");
    tampered("proofs/5.tlog-proof", drop_member, NULL, "missing_proof", "entry 5");
    tampered("exhibits/002-EX-2/_._.._etc_passwd", drop_member, NULL, "missing_file", "passwd");
    tampered("checkpoint.txt", other_checkpoint, NULL, "bad_checkpoint", NULL);
}

static void test_keys(void **state)
{
    (void)state;
    char v2[DEMS_NOTE_VKEY_MAX], vo[DEMS_NOTE_VKEY_MAX];
    dems_ledger_key_vkey(lg.key2, v2);
    dems_ledger_key_vkey(other.key1, vo);
    expect(good, v2, NULL, NULL); /* the rotated-to key is in the chain */
    expect(good, vo, "untrusted_key", NULL);
    /* keys.jsonl without the rotation: custody entries after it fail their signatures. */
    tampered("keys.jsonl", drop_line2, NULL, "bad_checkpoint", NULL);
}

static void test_not_a_bundle(void **state)
{
    (void)state;
    char path[160];
    size_t n;
    snprintf(path, sizeof path, "%s/junk.zip", dir);
    spit(path, "this is not a zip file at all\n", 30);
    expect(path, NULL, "format", "not a readable ZIP");
    char *z = slurp(good, &n);
    spit(path, z, n / 2);
    expect(path, NULL, "format", NULL);
    free(z);
    tampered(NULL, NULL, "../evil", "unsafe_name", "../evil");
    tampered(NULL, NULL, "exhibits/../../evil", "unsafe_name", NULL);
    tampered(NULL, NULL, "/etc/evil", "unsafe_name", NULL);
    tampered(NULL, NULL, "exhibits/extra.bin", "unexpected_member", NULL);
    tampered("manifest.json", drop_member, NULL, "format", "manifest.json");
    assert_int_equal(
        dems_bundle_verify_file("/nonexistent/x.zip", NULL, NULL, &(struct dems_bundle_report){0}),
        DEMS_EIO);
}

static void test_proof_format(void **state)
{
    (void)state;
    struct dems_merkle_proof p = {.len = 2}, q;
    struct dems_buf b;
    uint64_t idx;
    size_t off;
    memset(p.hash[0], 1, 32);
    memset(p.hash[1], 2, 32);
    dems_buf_init(&b, 4096);
    assert_int_equal(dems_bundle_proof_format(73894, &p, "o\n1\nx\n\n- s\n", 11, &b), 0);
    const char *want = "c2sp.org/tlog-proof@v1\nindex 73894\n"
                       "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n"
                       "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\no\n1\nx\n\n- s\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    assert_int_equal(dems_bundle_proof_parse((char *)b.data, b.len, &idx, &q, &off), 0);
    assert_int_equal(idx, 73894);
    assert_int_equal(q.len, 2);
    assert_memory_equal(q.hash[1], p.hash[1], 32);
    assert_int_equal(off, b.len - 11);
    /* An extra line is allowed; a leading zero, a bad hash or a missing blank line is not. */
    const char *extra = "c2sp.org/tlog-proof@v1\nextra YWJj\nindex 0\n\nnote\n";
    assert_int_equal(dems_bundle_proof_parse(extra, strlen(extra), &idx, &q, &off), 0);
    assert_int_equal(q.len, 0);
    const char *bad[] = {
        "c2sp.org/tlog-proof@v1\nindex 01\n\nn\n", "c2sp.org/tlog-proof@v1\nindex 1\nAQEB\n\nn\n",
        "c2sp.org/tlog-proof@v1\nindex 1\n", "c2sp.org/tlog-proof@v2\nindex 1\n\nn\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(dems_bundle_proof_parse(bad[i], strlen(bad[i]), &idx, &q, &off),
                         DEMS_EINVAL);
    dems_buf_done(&b);
    assert_true(dems_bundle_name_safe("exhibits/001-a/b.mp4"));
    assert_false(dems_bundle_name_safe("a/../b"));
    assert_false(dems_bundle_name_safe("a//b"));
    assert_false(dems_bundle_name_safe("a\\b"));
    assert_false(dems_bundle_name_safe("./a"));
}

static void test_write_refuses_changed_source(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/bad.zip", dir);
    files[1][7] ^= 1;
    assert_int_equal(write_bundle(path), DEMS_ECRYPTO);
    files[1][7] ^= 1;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(dems_crypto_init(), 0);
    for (size_t i = 0; i < NFILE; i++) {
        for (size_t j = 0; j < FILELEN; j++)
            files[i][j] = (uint8_t)(j * 31 + i * 7 + (j >> 8));
        sha256(files[i], FILELEN, sha[i]);
    }
    snprintf(dir, sizeof dir, "/tmp/dems-bundle-XXXXXX");
    assert_non_null(mkdtemp(dir));
    make_log(&lg, ORIGIN);
    make_log(&other, "dems.test/other");
    snprintf(good, sizeof good, "%s/good.zip", dir);
    assert_int_equal(write_bundle(good), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *names[] = {"good.zip", "again.zip", "t.zip", "flip.zip", "junk.zip", "bad.zip"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    free_log(&lg);
    free_log(&other);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_deterministic),
        cmocka_unit_test(test_tampered_original),
        cmocka_unit_test(test_tampered_metadata),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_not_a_bundle),
        cmocka_unit_test(test_proof_format),
        cmocka_unit_test(test_write_refuses_changed_source),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
