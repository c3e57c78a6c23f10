/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the fixtures test_verify_cli.sh feeds to dems-verify: a good
 * 20-entry export and tampered copies (changed payload, re-signed entry,
 * deleted, swapped and duplicated entries, flipped signature bit, wrong
 * checkpoint root), the verifier keys, a checkpoint note, an entry's bytes,
 * argument files for inclusion and consistency proofs, and a blob with its
 * SHA-256.
 *
 *   ledger-mkfixture DIR
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#define N      20
#define ORIGIN "dems.test/cli"

static const char *dir;
static struct dems_ledger_key *key, *other;
static struct dems_merkle_mem *tree;
static uint8_t bytes[N][DEMS_LEDGER_MAX_ENTRY];
static size_t blen[N];
static uint8_t leaf[N][32], sig[N][64];

static FILE *open_out(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    return f;
}

static void make_entry(uint64_t seq, const char *note, uint8_t *out, size_t *ret_len)
{
    json_t *payload = json_pack("{s:s}", "note", note);
    struct dems_ledger_entry e = {.seq = seq,
                                  .time_ms = 1764023456789 + (int64_t)seq,
                                  .type = DEMS_LEDGER_DOWNLOADED,
                                  .actor_kind = DEMS_LEDGER_ACTOR_USER,
                                  .actor_id = "u-9",
                                  .payload = payload};
    struct dems_buf b;
    dems_buf_init(&b, DEMS_LEDGER_MAX_ENTRY);
    if (dems_ledger_entry_encode(&e, &b) < 0)
        exit(2);
    memcpy(out, b.data, b.len);
    *ret_len = b.len;
    dems_buf_done(&b);
    json_decref(payload);
}

static void put(FILE *f, struct dems_buf *b)
{
    fwrite(b->data, 1, b->len, f);
    dems_buf_reset(b);
}

static void put_checkpoint(FILE *f, struct dems_buf *b, uint64_t size, const uint8_t root[32])
{
    struct dems_checkpoint c = {.origin = ORIGIN, .size = size};
    struct dems_buf note;
    memcpy(c.root, root, 32);
    dems_buf_init(&note, 4096);
    dems_checkpoint_sign(key, &c, &note);
    dems_ledger_export_checkpoint((const char *)note.data, note.len, b);
    put(f, b);
    dems_buf_done(&note);
}

enum tamper { GOOD, PAYLOAD, RESIGNED, DELETED, SWAPPED, DUPLICATE, BADSIG, BADROOT };

static void write_export(const char *name, enum tamper t)
{
    FILE *f = open_out(name);
    struct dems_buf b;
    char vkey[DEMS_NOTE_VKEY_MAX];
    uint8_t root[32];
    struct dems_merkle_reader rd = dems_merkle_mem_reader(tree);

    dems_buf_init(&b, 1 << 16);
    dems_ledger_key_vkey(key, vkey);
    dems_ledger_export_header(ORIGIN, vkey, &b);
    put(f, &b);
    for (uint64_t i = 0; i < N; i++) {
        uint64_t j = i;
        uint8_t s[64], tb[DEMS_LEDGER_MAX_ENTRY], tl[32];
        size_t tlen;
        if (t == DELETED && i == 9)
            continue;
        if (t == SWAPPED && (i == 4 || i == 5))
            j = i == 4 ? 5 : 4;
        memcpy(s, sig[j], 64);
        if (t == BADSIG && j == 12)
            s[20] ^= 0x04;
        if ((t == PAYLOAD || t == RESIGNED) && j == 7) {
            make_entry(7, "nothing to see here", tb, &tlen);
            if (t == RESIGNED) {
                dems_merkle_leaf_hash(tb, tlen, tl);
                dems_ledger_entry_sign(other, tl, s);
            } else {
                memcpy(tl, leaf[7], 32);
            }
            dems_ledger_export_entry(j, tb, tlen, tl, s, &b);
        } else {
            dems_ledger_export_entry(j, bytes[j], blen[j], leaf[j], s, &b);
        }
        if (t == DUPLICATE && i == 15)
            dems_ledger_export_entry(j, bytes[j], blen[j], leaf[j], s, &b);
        put(f, &b);
    }
    dems_merkle_root(&rd, N, root);
    if (t == BADROOT)
        root[31] ^= 0x01;
    put_checkpoint(f, &b, N, root);
    dems_buf_done(&b);
    fclose(f);
}

static void hexline(FILE *f, const uint8_t h[32])
{
    char hex[65];
    dems_hex_encode(h, 32, hex);
    fputs(hex, f);
}

static void write_proofs(void)
{
    struct dems_merkle_reader rd = dems_merkle_mem_reader(tree);
    struct dems_merkle_proof p;
    uint8_t root[32], old[32];
    FILE *f = open_out("inclusion.args");

    dems_merkle_root(&rd, N, root);
    dems_merkle_root(&rd, 7, old);
    dems_merkle_prove_inclusion(&rd, 5, N, &p);
    fprintf(f, "--index\n5\n--size\n%d\n--root\n", N);
    hexline(f, root);
    fprintf(f, "\n--proof\n");
    for (size_t i = 0; i < p.len; i++) {
        if (i > 0)
            fputc(',', f);
        hexline(f, p.hash[i]);
    }
    fprintf(f, "\n");
    fclose(f);
    f = open_out("leaf5.hex");
    hexline(f, leaf[5]);
    fclose(f);
    f = open_out("leaf6.hex");
    hexline(f, leaf[6]);
    fclose(f);
    f = open_out("entry5.bin");
    fwrite(bytes[5], 1, blen[5], f);
    fclose(f);

    dems_merkle_prove_consistency(&rd, 7, N, &p);
    f = open_out("consistency.args");
    fprintf(f, "--old\n7\n--new\n%d\n--old-root\n", N);
    hexline(f, old);
    fprintf(f, "\n--new-root\n");
    hexline(f, root);
    fprintf(f, "\n--proof\n");
    for (size_t i = 0; i < p.len; i++) {
        if (i > 0)
            fputc(',', f);
        hexline(f, p.hash[i]);
    }
    fprintf(f, "\n");
    fclose(f);

    struct dems_checkpoint c = {.origin = ORIGIN, .size = N};
    struct dems_buf note;
    memcpy(c.root, root, 32);
    dems_buf_init(&note, 4096);
    dems_checkpoint_sign(key, &c, &note);
    f = open_out("checkpoint.note");
    fwrite(note.data, 1, note.len, f);
    fclose(f);
    dems_buf_done(&note);
}

int main(int argc, char **argv)
{
    if (argc != 2 || sodium_init() < 0)
        return 2;
    dir = argv[1];
    if (dems_ledger_key_new(ORIGIN, NULL, &key) < 0 ||
        dems_ledger_key_new(ORIGIN, NULL, &other) < 0 || (tree = dems_merkle_mem_new()) == NULL)
        return 2;
    for (uint64_t i = 0; i < N; i++) {
        make_entry(i, "viewed", bytes[i], &blen[i]);
        dems_merkle_leaf_hash(bytes[i], blen[i], leaf[i]);
        dems_ledger_entry_sign(key, leaf[i], sig[i]);
        dems_merkle_mem_append(tree, leaf[i]);
    }
    static const struct {
        const char *name;
        enum tamper t;
    } ex[] = {{"good.export", GOOD},         {"payload.export", PAYLOAD},
              {"resigned.export", RESIGNED}, {"deleted.export", DELETED},
              {"swapped.export", SWAPPED},   {"duplicate.export", DUPLICATE},
              {"badsig.export", BADSIG},     {"badroot.export", BADROOT}};
    for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++)
        write_export(ex[i].name, ex[i].t);
    write_proofs();

    char vkey[DEMS_NOTE_VKEY_MAX];
    FILE *f = open_out("key.vkey");
    dems_ledger_key_vkey(key, vkey);
    fprintf(f, "%s", vkey);
    fclose(f);
    f = open_out("other.vkey");
    dems_ledger_key_vkey(other, vkey);
    fprintf(f, "%s", vkey);
    fclose(f);

    /* A 1 MiB blob of a fixed pattern and its SHA-256. */
    static uint8_t blob[1 << 20];
    uint8_t h[32];
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 31 + (i >> 8));
    crypto_hash_sha256(h, blob, sizeof(blob));
    f = open_out("blob.bin");
    fwrite(blob, 1, sizeof(blob), f);
    fclose(f);
    f = open_out("blob.sha256");
    hexline(f, h);
    fclose(f);

    dems_merkle_mem_free(tree);
    dems_ledger_key_free(key);
    dems_ledger_key_free(other);
    return 0;
}
