/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upload staging in an object store (demsd/store.h, "remote mode"), so that
 * no node holds a whole upload and the next PATCH of an upload may reach
 * any node.
 *
 * The blob file of an upload is written as before (head, then 64 KiB
 * secretstream chunks, hashed as they arrive), but the local file is only a
 * window on it: every part_chunks cipher chunks (the first part also holds
 * the head) make a part, which is staged in the store (S3 UploadPart, Azure
 * Put Block) under the key staging/ID and then punched out of the local
 * file (sparse), so a node holds at most about two parts of an upload on
 * disk. When the upload completes, the last part is put and the stage is
 * committed; the object is then copied by the store to its content key.
 *
 * What another node needs to continue is committed to the database by the
 * server (server/api/upload_stage.c) after each part and at the end of each
 * PATCH: the parts' tags, and a sealed state (below) naming the offset, the
 * stream and hash states and the plaintext of the unfilled last chunk,
 * encrypted under a key derived from the master key and bound to the
 * upload's id and the state's version. Cipher bytes past the last staged
 * part (less than a part) go to the store as a small object
 * staging/ID.tVER beside it. Everything is whole at a commit, so a node
 * dying loses at most what arrived since its last commit: the client HEADs
 * and resends from the committed offset (tus allows the offset to step back).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/be.h"
#include "dems/err.h"
#include "demsd/blobs.h"
#include "demsd/objstore.h"
#include "demsd/store.h"

#include "staging_int.h"

struct dems_objstore *staging_store;
static uint8_t state_key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];

#define CC        ((uint64_t)DEMS_BLOB_CIPHER_CHUNK)
#define MAX_PARTS 9000 /* of the stores' 10,000, leaving room for superseded ones */

/* The sealed state's plaintext: fixed fields, then tail_len bytes of tail. */
#define STATE_MAGIC  "DSG1"
#define STATE_FIXED  (4 + 1 + 4 + 4 + 8 + 8 + sizeof(stream_state) + DEMS_SHA256_STATE_LEN + 4)
#define STATE_AD_LEN (10 + 32 + 8)

void dems_staging_set_remote(struct dems_objstore *store)
{
    staging_store = store;
    crypto_kdf_derive_from_key(state_key, sizeof(state_key), 1, "dmsstage", staging_master);
    /* Windows of a previous run: what they held is committed or lost. */
    staging_clear_dir();
}

bool dems_staging_is_remote(void)
{
    return staging_store != NULL;
}

uint32_t staging_part_chunks(uint64_t length)
{
    if (staging_store == NULL)
        return 0;
    uint64_t m = (dems_objstore_block_size(staging_store) + CC - 1) / CC;
    if (m == 0)
        m = 1;
    uint64_t size = dems_staging_expected_size(length);
    while (size / (m * CC) >= MAX_PARTS)
        m *= 2;
    return (uint32_t)m;
}

uint64_t dems_staging_part_plain(uint64_t length)
{
    return (uint64_t)staging_part_chunks(length) * DEMS_BLOB_CHUNK;
}

uint64_t dems_staging_part_end(const struct dems_staged *s, uint32_t k)
{
    return k == 0 ? 0 : DEMS_BLOB_HEADER_LEN + (uint64_t)k * s->part_chunks * CC;
}

void staging_after_push(struct dems_staged *s)
{
    uint64_t unit = (uint64_t)s->part_chunks * CC, body = s->file_len - DEMS_BLOB_HEADER_LEN;
    if (unit == 0 || body % unit != 0)
        return;
    uint32_t k = (uint32_t)(body / unit);
    struct dems_staging_snap *n = &s->snap[k % DEMS_STAGING_SNAPS];
    n->set = true;
    n->part = k;
    n->offset = s->offset;
    n->st = s->st;
    dems_sha256_save(&s->sha, n->sha);
}

bool dems_staging_has_snap(const struct dems_staged *s, uint32_t k)
{
    return k > 0 && s->snap[k % DEMS_STAGING_SNAPS].set &&
           s->snap[k % DEMS_STAGING_SNAPS].part == k;
}

int dems_staging_part_ready(struct dems_staged *s, uint32_t ahead)
{
    if (staging_store == NULL || s->broken ||
        s->file_len < dems_staging_part_end(s, s->parts + ahead + 1))
        return 0;
    int r = dems_staging_flush(s); /* the part is read back from the file */
    return r < 0 ? r : 1;
}

void dems_staging_part_done(struct dems_staged *s)
{
    uint64_t from = dems_staging_part_end(s, s->parts);
    s->parts++;
    uint64_t to = dems_staging_part_end(s, s->parts);
    /* The part is in the store: its bytes leave the disk (best effort: a
     * file system without holes just keeps them until the upload ends). */
    (void)fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                    (off_t)(to - from));
}

void dems_staging_committed(struct dems_staged *s, uint64_t ver, uint64_t offset, uint32_t at_part)
{
    s->ver = ver;
    s->committed_offset = offset;
    if (dems_staging_has_snap(s, at_part))
        s->snap[at_part % DEMS_STAGING_SNAPS].set = false;
}

/* Reads [from, to) of upload id's local file into a new buffer. */
static int read_range(const char *id, uint64_t from, uint64_t to, uint8_t **ret)
{
    if (to < from || to - from > SIZE_MAX / 2)
        return DEMS_EINVAL;
    char p[PATH_MAX + 40];
    staging_path_of(id, p, sizeof(p));
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return DEMS_EIO;
    size_t n = (size_t)(to - from);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    int r = buf == NULL ? DEMS_ENOMEM : 0;
    for (size_t done = 0; r == 0 && done < n;) {
        ssize_t got = pread(fd, buf + done, n - done, (off_t)(from + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            r = DEMS_EIO;
        else
            done += (size_t)got;
    }
    close(fd);
    if (r < 0) {
        free(buf);
        return r;
    }
    *ret = buf;
    return 0;
}

static void stage_key(const char *id, char *out, size_t len)
{
    snprintf(out, len, "staging/%s", id);
}

static void tail_key(const char *id, uint64_t ver, char *out, size_t len)
{
    snprintf(out, len, "staging/%s.t%llu", id, (unsigned long long)ver);
}

int dems_staging_put_part(const char *id, uint64_t from, uint64_t to,
                          struct dems_objstore_stage *st, unsigned number,
                          char tag[static DEMS_OBJSTORE_TAG_MAX])
{
    int r = 0;
    if (st->id[0] == '\0') {
        char key[64];
        stage_key(id, key, sizeof(key));
        r = dems_objstore_stage_begin(staging_store, key, st);
    } else {
        stage_key(id, st->key, sizeof(st->key));
    }
    uint8_t *buf = NULL;
    if (r == 0)
        r = read_range(id, from, to, &buf);
    if (r == 0)
        r = dems_objstore_stage_put(staging_store, st, number, buf, (size_t)(to - from), tag);
    free(buf);
    return r;
}

int dems_staging_put_tail(const char *id, uint64_t from, uint64_t to, uint64_t ver)
{
    if (from == to)
        return 0;
    char key[80];
    tail_key(id, ver, key, sizeof(key));
    uint8_t *buf = NULL;
    int r = read_range(id, from, to, &buf);
    if (r == 0)
        r = dems_objstore_put_mem(staging_store, key, buf, (size_t)(to - from));
    free(buf);
    return r;
}

void dems_staging_drop_tail(const char *id, uint64_t ver)
{
    char key[80];
    tail_key(id, ver, key, sizeof(key));
    (void)dems_objstore_delete(staging_store, key);
}

/* What the sealed state is bound to: its purpose, the upload and its version. */
static void state_ad(const char *id, uint64_t ver, uint8_t ad[static STATE_AD_LEN])
{
    memcpy(ad, "dems-stage", 10);
    memset(ad + 10, 0, 32);
    memcpy(ad + 10, id, strnlen(id, 32));
    dems_put_be64(ad + 42, ver);
}

int dems_staging_export(const struct dems_staged *s, uint32_t at_part, uint64_t ver, uint8_t **ret,
                        size_t *ret_len, uint64_t *ret_offset)
{
    if (at_part > 0 && !dems_staging_has_snap(s, at_part))
        return DEMS_EINVAL;
    const struct dems_staging_snap *n = at_part > 0 ? &s->snap[at_part % DEMS_STAGING_SNAPS] : NULL;
    size_t tail = n != NULL ? 0 : s->tail_len;
    size_t plen = STATE_FIXED + tail;
    size_t clen = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + plen +
                  crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t *plain = malloc(plen), *out = malloc(clen);
    if (plain == NULL || out == NULL) {
        free(plain);
        free(out);
        return DEMS_ENOMEM;
    }
    uint8_t *p = plain;
    memcpy(p, STATE_MAGIC, 4);
    p += 4;
    *p++ = n != NULL ? 0 : (uint8_t)s->sealed;
    dems_put_be32(p, s->part_chunks);
    dems_put_be32(p + 4, n != NULL ? n->part : s->parts);
    p += 8;
    uint64_t offset = n != NULL ? n->offset : s->offset;
    dems_put_be64(p, offset);
    dems_put_be64(p + 8, n != NULL ? dems_staging_part_end(s, n->part) : s->file_len);
    p += 16;
    memcpy(p, n != NULL ? &n->st : &s->st, sizeof(stream_state));
    p += sizeof(stream_state);
    if (n != NULL)
        memcpy(p, n->sha, DEMS_SHA256_STATE_LEN);
    else
        dems_sha256_save(&s->sha, p);
    p += DEMS_SHA256_STATE_LEN;
    dems_put_be32(p, (uint32_t)tail);
    p += 4;
    if (tail > 0)
        memcpy(p, s->tail, tail);
    uint8_t ad[STATE_AD_LEN];
    state_ad(s->id, ver, ad);
    randombytes_buf(out, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long clen_out = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               &clen_out, plain, plen, ad, sizeof(ad), NULL, out,
                                               state_key);
    sodium_memzero(plain, plen);
    free(plain);
    *ret = out;
    *ret_len = clen;
    *ret_offset = offset;
    return 0;
}

/*
 * Registers s (parked) in place of a stale state of the same upload, its
 * window (built in tmp) taking the place of the stale one's file. Under the
 * lock, so a state a request holds meanwhile is never touched.
 */
static int register_state(struct dems_staged *s, const char *tmp)
{
    char p[PATH_MAX + 40];
    staging_path_of(s->id, p, sizeof(p));
    pthread_mutex_lock(&staging_mu);
    struct dems_staged *old = staging_find(s->id);
    int r = old != NULL && (old->busy || old->doomed) ? DEMS_ECONFLICT : 0;
    if (r == 0 && rename(tmp, p) != 0)
        r = DEMS_EIO;
    if (r == 0 && old != NULL)
        staging_unlink(old);
    if (r == 0)
        staging_insert(s);
    pthread_mutex_unlock(&staging_mu);
    if (r == 0 && old != NULL)
        staging_free(old);
    return r;
}

/* A state with nothing committed: a new local file with a new head. */
static int import_fresh(struct dems_staged *s, int fd)
{
    int r = staging_write_head(fd, &s->st);
    if (r < 0)
        return r;
    s->file_len = s->disk_len = s->synced_to = DEMS_BLOB_HEADER_LEN;
    s->part_chunks = staging_part_chunks(s->length);
    return 0;
}

/* Decrypts and applies a sealed state; the local file gets its window. */
static int import_state(struct dems_staged *s, int fd, uint64_t ver, const uint8_t *sealed,
                        size_t len)
{
    const size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    const size_t ab = crypto_aead_xchacha20poly1305_ietf_ABYTES;
    if (len < nb + ab + STATE_FIXED || len > nb + ab + STATE_FIXED + DEMS_BLOB_CHUNK)
        return DEMS_ECRYPTO;
    size_t plen = len - nb - ab;
    uint8_t *plain = malloc(plen), ad[STATE_AD_LEN];
    if (plain == NULL)
        return DEMS_ENOMEM;
    state_ad(s->id, ver, ad);
    unsigned long long n = 0;
    int r = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &n, NULL, sealed + nb, len - nb, ad,
                                                   sizeof(ad), sealed, state_key) != 0 ||
        memcmp(plain, STATE_MAGIC, 4) != 0)
        r = DEMS_ECRYPTO;
    const uint8_t *p = plain + 4;
    uint32_t tail = r == 0 ? dems_get_be32(plain + STATE_FIXED - 4) : 0;
    if (r == 0 && (tail >= DEMS_BLOB_CHUNK || STATE_FIXED + tail != plen))
        r = DEMS_ECRYPTO;
    if (r == 0) {
        s->sealed = *p++ != 0;
        s->part_chunks = dems_get_be32(p);
        s->parts = dems_get_be32(p + 4);
        p += 8;
        s->offset = dems_get_be64(p);
        s->file_len = dems_get_be64(p + 8);
        p += 16;
        memcpy(&s->st, p, sizeof(stream_state));
        p += sizeof(stream_state);
        r = dems_sha256_restore(&s->sha, p);
        p += DEMS_SHA256_STATE_LEN + 4;
    }
    uint64_t base = r == 0 ? dems_staging_part_end(s, s->parts) : 0;
    if (r == 0 && (s->part_chunks == 0 || s->offset + tail > s->length || s->file_len < base ||
                   s->file_len - base > (uint64_t)(s->part_chunks + 1) * CC))
        r = DEMS_ECRYPTO; /* not a state of this upload */
    if (r == 0 && tail > 0) {
        s->tail = malloc(tail);
        if (s->tail == NULL)
            r = DEMS_ENOMEM;
        else
            memcpy(s->tail, p, tail);
        s->tail_len = s->tail_cap = s->tail_hashed = tail;
    }
    sodium_memzero(plain, plen);
    free(plain);
    if (r < 0)
        return r;
    /* The window: a sparse file up to the staged parts, then the tail object. */
    if (ftruncate(fd, (off_t)base) != 0)
        return DEMS_EIO;
    if (s->file_len > base) {
        char key[80];
        tail_key(s->id, ver, key, sizeof(key));
        size_t want = (size_t)(s->file_len - base), got = 0;
        uint8_t *buf = malloc(want);
        r = buf == NULL ? DEMS_ENOMEM : dems_objstore_get(staging_store, key, 0, buf, want, &got);
        if (r == 0 && got != want)
            r = DEMS_ECRYPTO; /* a tail object of another size: not this state's */
        if (r == DEMS_ENOTFOUND)
            r = DEMS_EIO;
        if (r == 0 && pwrite(fd, buf, want, (off_t)base) != (ssize_t)want)
            r = DEMS_EIO;
        free(buf);
    }
    s->disk_len = s->synced_to = s->file_len;
    s->committed_offset = s->offset;
    s->ver = ver;
    return r;
}

int dems_staging_import(const char *id, uint64_t length, uint64_t ver, const uint8_t *sealed,
                        size_t len)
{
    /* A state this node holds in a request is not replaced under it. */
    pthread_mutex_lock(&staging_mu);
    struct dems_staged *old = staging_find(id);
    bool busy = old != NULL && (old->busy || old->doomed);
    pthread_mutex_unlock(&staging_mu);
    if (busy)
        return DEMS_ECONFLICT;
    struct dems_staged *s = staging_new(id, length);
    if (s == NULL)
        return DEMS_ENOMEM;
    /* The window is built aside and renamed into place once it is whole. */
    char p[PATH_MAX + 40], tmp[PATH_MAX + 80];
    staging_path_of(id, p, sizeof(p));
    uint32_t nonce = randombytes_random();
    snprintf(tmp, sizeof(tmp), "%s.load-%08x", p, nonce);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int r = fd < 0 ? DEMS_EIO : 0;
    if (r == 0)
        r = ver == 0 || sealed == NULL ? import_fresh(s, fd)
                                       : import_state(s, fd, ver, sealed, len);
    if (fd >= 0)
        close(fd);
    if (r == 0)
        r = register_state(s, tmp);
    if (r < 0) {
        if (fd >= 0)
            unlink(tmp);
        staging_free(s);
    }
    return r;
}

int dems_staging_finish_remote(struct dems_staged *s, struct dems_objstore_stage *st,
                               unsigned number, char (*tags)[DEMS_OBJSTORE_TAG_MAX],
                               uint8_t digest[static 32])
{
    int r = dems_staging_seal(s);
    stage_key(s->id, st->key, sizeof(st->key));
    uint64_t from = dems_staging_part_end(s, s->parts);
    bool rest = from < s->file_len; /* nothing when the last part ended the file */
    if (r == 0 && rest)
        r = dems_staging_put_part(s->id, from, s->file_len, st, number, tags[s->parts]);
    if (r == 0)
        r = dems_objstore_stage_commit(staging_store, st, s->parts + (rest ? 1 : 0), tags);
    if (r == 0)
        r = dems_sha256_final(&s->sha, digest);
    return r;
}

void dems_staging_remote_drop(const char *id, uint64_t ver, const char *handle)
{
    char key[64];
    stage_key(id, key, sizeof(key));
    if (ver > 0)
        dems_staging_drop_tail(id, ver);
    if (handle != NULL && handle[0] != '\0') {
        struct dems_objstore_stage st;
        snprintf(st.key, sizeof(st.key), "%s", key);
        snprintf(st.id, sizeof(st.id), "%s", handle);
        (void)dems_objstore_stage_abort(staging_store, &st);
    }
    (void)dems_objstore_delete(staging_store, key);
}

void dems_staging_object_key(const char *id, char *out, size_t len)
{
    stage_key(id, out, len);
}
