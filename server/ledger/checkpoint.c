/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed checkpoints, and the guard against a log that shrinks. A database
 * superuser can disable the append-only triggers and delete the last
 * entries together with their checkpoints; what remains is a shorter log
 * that verifies on its own. So demsd keeps the newest checkpoint it signed
 * outside the database too, in DATA/ledger/checkpoint, and never signs a
 * checkpoint that is not a consistent extension of it (RFC 9162 section
 * 2.1.4 consistency proof from the stored subtree hashes).
 *
 * Ordering: a checkpoint is signed, written to the file (temporary file,
 * fsync, rename, fsync of the directory) and only then inserted into
 * ledger_checkpoints, where clients read it; all under the ledger_head row
 * lock, the lock that serialises appends. So processes sharing a data
 * directory (demsd serve and its job workers, each with an appender) update
 * the file one at a time, and each reads the file afresh under the lock
 * before it signs: none can sign a checkpoint older than, or inconsistent
 * with, one another has signed. Processes with different data directories
 * on one database each keep their own file; each is checked against it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/ledger.h"
#include "demsd/log.h"

#include "ledger_int.h"

void ledger_break(struct dems_ledger *l, const char *fmt, ...)
{
    if (atomic_load_explicit(&l->broken, memory_order_acquire))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->fault, sizeof(l->fault), fmt, ap);
    va_end(ap);
    atomic_store_explicit(&l->broken, true, memory_order_release);
    l->fault_logged_ms = ledger_now_ms();
    dems_log(DEMS_LOG_ERROR, NULL, json_pack("{s:s}", "event", "ledger_inconsistent"), "%s",
             l->fault);
}

/* ---- the file ---- */

/* The directory part of path (path has a '/'). */
static void dir_of(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash != NULL)
        *slash = '\0';
}

/*
 * Reads the file into note (NUL-terminated). Returns 0, DEMS_ENOTFOUND when
 * there is none, DEMS_ETOOBIG or DEMS_EIO.
 */
static int anchor_read(const char *path, struct dems_buf *note)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
    uint8_t buf[DEMS_NOTE_MAX_BYTES + 1];
    ssize_t n = dems_blob_read_full(fd, buf, sizeof(buf));
    close(fd);
    if (n < 0)
        return DEMS_EIO;
    if ((size_t)n > DEMS_NOTE_MAX_BYTES)
        return DEMS_ETOOBIG;
    dems_buf_reset(note);
    int r = dems_buf_append(note, buf, (size_t)n);
    if (r == 0)
        r = dems_buf_append(note, "", 1);
    if (r == 0)
        note->len--; /* the NUL is not part of the note */
    return r;
}

/* Replaces the file with note atomically and durably. Returns 0 or DEMS_EIO. */
static int anchor_write(const char *path, const char *note, size_t len)
{
    char dir[sizeof(((struct dems_ledger *)0)->anchor_path)], tmp[sizeof(dir) + 32];
    dir_of(path, dir, sizeof(dir));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return DEMS_EIO;
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return DEMS_EIO;
    int r = dems_blob_write_all(fd, (const uint8_t *)note, len);
    if (r == 0 && fsync(fd) != 0)
        r = DEMS_EIO;
    if (close(fd) != 0)
        r = DEMS_EIO;
    if (r == 0 && rename(tmp, path) != 0)
        r = DEMS_EIO;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return DEMS_EIO;
    r = fsync(dfd) == 0 ? 0 : DEMS_EIO;
    close(dfd);
    return r;
}

/*
 * Opens a checkpoint note signed by any of this log's keys (a file signed
 * before a rotation carries the old key). Returns 0, DEMS_EINVAL (malformed
 * or another origin), DEMS_ECRYPTO (not signed by this log) or DEMS_EDB.
 */
static int open_note(struct dems_ledger *l, const char *note, size_t len,
                     struct dems_checkpoint *ret_c)
{
    PGresult *res = ledger_q(l, "SELECT encode(public_key, 'hex') FROM ledger_keys", 0, NULL);
    if (!ledger_ok(res)) {
        PQclear(res);
        return DEMS_EDB;
    }
    int r = DEMS_ECRYPTO;
    for (int i = 0; i < PQntuples(res) && r == DEMS_ECRYPTO; i++) {
        struct dems_note_verifier v;
        snprintf(v.name, sizeof(v.name), "%s", l->origin);
        if (dems_hex_decode(PQgetvalue(res, i, 0), 64, v.pk, 32) < 0)
            continue;
        dems_note_keyhash(v.name, strlen(v.name), v.pk, v.keyhash);
        r = dems_checkpoint_open(note, len, &v, l->origin, ret_c);
    }
    PQclear(res);
    return r;
}

/* ---- consistency ---- */

/*
 * Whether the database's log (the frontier, loaded under the head lock) is
 * a consistent extension of old: at least as long, and an RFC 9162
 * consistency proof built from the stored subtree hashes verifies from
 * old's root to the frontier's root. Returns 0, DEMS_ECONFLICT (with the
 * reason in why) or DEMS_EDB (the proof could not be read: the connection
 * failed, or stored subtree hashes are missing).
 */
static int check_extends(struct dems_ledger *l, const struct dems_checkpoint *old, char *why,
                         size_t whylen)
{
    uint64_t n = l->frontier.size;
    if (old->size > n) {
        snprintf(why, whylen,
                 "the database's log has %llu entries, fewer than the %llu of the newest "
                 "checkpoint this server signed: entries were removed from the database",
                 (unsigned long long)n, (unsigned long long)old->size);
        return DEMS_ECONFLICT;
    }
    if (old->size == 0)
        return 0;
    uint8_t root[32];
    dems_merkle_frontier_root(&l->frontier, root);
    struct dems_merkle_proof proof = {.len = 0};
    struct dems_merkle_reader rd = ledger_db_reader(l);
    if (old->size < n && dems_merkle_prove_consistency(&rd, old->size, n, &proof) < 0) {
        snprintf(why, whylen,
                 "cannot read the subtree hashes proving that the log of %llu entries "
                 "extends the signed checkpoint of %llu",
                 (unsigned long long)n, (unsigned long long)old->size);
        return DEMS_EDB;
    }
    if (dems_merkle_verify_consistency(old->size, n, old->root, root, &proof) < 0) {
        snprintf(why, whylen,
                 "the database's log of %llu entries is not an extension of the newest "
                 "checkpoint this server signed (%llu entries): entries were changed or removed",
                 (unsigned long long)n, (unsigned long long)old->size);
        return DEMS_ECONFLICT;
    }
    return 0;
}

/*
 * Takes the file's checkpoint as the newest signed one when it is newer
 * than what this process knows (another process sharing the data directory
 * signed it). A file that is unreadable or not this log's breaks nothing
 * here: the caller refuses to sign over it.
 */
static int refresh_from_file(struct dems_ledger *l, char *why, size_t whylen)
{
    struct dems_buf note;
    dems_buf_init(&note, DEMS_NOTE_MAX_BYTES + 1);
    int r = anchor_read(l->anchor_path, &note);
    struct dems_checkpoint c;
    if (r == 0)
        r = open_note(l, (const char *)note.data, note.len, &c);
    dems_buf_done(&note);
    if (r == DEMS_ENOTFOUND)
        return r;
    if (r < 0) {
        snprintf(why, whylen, "the checkpoint file %.300s is %s", l->anchor_path,
                 r == DEMS_ECRYPTO  ? "not signed by this log's keys"
                 : r == DEMS_EINVAL ? "not a checkpoint of this log"
                 : r == DEMS_EDB    ? "not checkable (database error)"
                                    : "unreadable");
        return r;
    }
    if (!l->has_signed_cp || c.size > l->signed_cp.size) {
        l->signed_cp = c;
        l->has_signed_cp = true;
    }
    return 0;
}

/* Signs c and appends the note (with a NUL after it) to note. */
static int sign_note(struct dems_ledger *l, const struct dems_checkpoint *c, struct dems_buf *note)
{
    int r = dems_checkpoint_sign(l->key, c, note);
    if (r == 0)
        r = dems_buf_append(note, "", 1);
    return r;
}

static int insert_checkpoint(struct dems_ledger *l, const struct dems_checkpoint *c,
                             const char *note)
{
    char size[24], root[65], kid[16];
    snprintf(size, sizeof(size), "%llu", (unsigned long long)c->size);
    dems_hex_encode(c->root, 32, root);
    snprintf(kid, sizeof(kid), "%d", l->key_id);
    const char *p[] = {size, root, note, kid};
    return ledger_exec(l, "SELECT ledger_add_checkpoint($1::bigint, $2, $4::integer, $3)", 4, p);
}

/*
 * Under the head lock: checks the log against the newest signed checkpoint
 * (this process's or the file's) and, when the log is longer, signs a new
 * one, writes the file, then the table. Returns 0, DEMS_ECONFLICT (the log
 * does not extend it; the caller breaks or refuses start, with why),
 * DEMS_EIO, DEMS_EDB.
 */
static int sign_locked(struct dems_ledger *l, char *why, size_t whylen)
{
    int r = refresh_from_file(l, why, whylen);
    if (r == DEMS_ENOTFOUND)
        r = 0; /* this process's own checkpoint still holds, and the file is rewritten below */
    else if (r < 0)
        return r == DEMS_EDB || r == DEMS_EIO ? r : DEMS_ECONFLICT;
    if (l->has_signed_cp && (r = check_extends(l, &l->signed_cp, why, whylen)) < 0)
        return r;
    if (l->has_signed_cp && l->signed_cp.size == l->frontier.size)
        return 0; /* signed already (here or by a process sharing the file) */
    struct dems_checkpoint c = {.size = l->frontier.size};
    snprintf(c.origin, sizeof(c.origin), "%s", l->origin);
    dems_merkle_frontier_root(&l->frontier, c.root);
    struct dems_buf note;
    dems_buf_init(&note, DEMS_NOTE_MAX_BYTES + 1);
    r = sign_note(l, &c, &note);
    if (r == 0) {
        r = anchor_write(l->anchor_path, (const char *)note.data, note.len - 1);
        if (r < 0)
            snprintf(why, whylen, "cannot write the checkpoint file %.300s", l->anchor_path);
    }
    if (r == 0)
        r = insert_checkpoint(l, &c, (const char *)note.data);
    dems_buf_done(&note);
    if (r == 0) {
        l->signed_cp = c;
        l->has_signed_cp = true;
    }
    return r;
}

int ledger_checkpoint_write(struct dems_ledger *l)
{
    if (atomic_load_explicit(&l->broken, memory_order_acquire))
        return DEMS_EUNAVAIL;
    if (ledger_exec(l, "BEGIN", 0, NULL) < 0)
        return DEMS_EDB;
    char why[400] = "";
    int r = ledger_lock_head(l);
    if (r == 0)
        r = sign_locked(l, why, sizeof(why));
    if (r == 0)
        r = ledger_exec(l, "COMMIT", 0, NULL);
    else
        ledger_exec(l, "ROLLBACK", 0, NULL);
    if (r == 0)
        dems_witness_kick(l->srv);      /* witnesses are asked to cosign it (witness_client.c) */
    l->checkpoint_ms = ledger_now_ms(); /* a failed attempt waits its second too */
    if (r == DEMS_ECONFLICT)
        ledger_break(l, "ledger: %s; no checkpoint will be signed and nothing appended", why);
    else if (r < 0 && why[0] != '\0')
        dems_log(DEMS_LOG_ERROR, NULL, NULL, "ledger: %s", why);
    return r;
}

/*
 * Without a file (first start, or an upgrade from a demsd that kept none):
 * the database's newest checkpoint, verified, becomes the one to extend.
 * A truncation from before this moment cannot be seen; from now on it can.
 */
static int adopt_from_db(struct dems_ledger *l, char *err, size_t errlen)
{
    PGresult *res =
        ledger_q(l, "SELECT note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1", 0, NULL);
    if (!ledger_ok(res)) {
        snprintf(err, errlen, "ledger: %.300s", PQresultErrorMessage(res));
        PQclear(res);
        return DEMS_EDB;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0; /* a new log */
    }
    const char *note = PQgetvalue(res, 0, 0);
    struct dems_checkpoint c;
    int r = open_note(l, note, strlen(note), &c);
    if (r == 0)
        r = anchor_write(l->anchor_path, note, strlen(note));
    PQclear(res);
    if (r < 0) {
        snprintf(err, errlen,
                 r == DEMS_EIO ? "ledger: cannot write the checkpoint file %.300s"
                               : "ledger: the newest checkpoint in the database is not signed by "
                                 "this log's keys (checkpoint file %.300s missing)",
                 l->anchor_path);
        return r;
    }
    dems_log(DEMS_LOG_WARN, NULL, NULL,
             "ledger: no checkpoint file; starting from the database's newest checkpoint (%llu "
             "entries), now kept in %.300s",
             (unsigned long long)c.size, l->anchor_path);
    l->signed_cp = c;
    l->has_signed_cp = true;
    return 0;
}

int ledger_checkpoint_start(struct dems_ledger *l, char *err, size_t errlen)
{
    if (ledger_exec(l, "BEGIN", 0, NULL) < 0) {
        snprintf(err, errlen, "ledger: the database does not answer");
        return DEMS_EDB;
    }
    char why[400] = "";
    bool have_err = false;
    int r = ledger_lock_head(l);
    if (r < 0)
        snprintf(why, sizeof(why), "stored subtree hashes are missing or damaged");
    if (r == 0) {
        r = refresh_from_file(l, why, sizeof(why));
        if (r == DEMS_ENOTFOUND) {
            r = adopt_from_db(l, err, errlen);
            have_err = r < 0;
        }
    }
    if (r == 0)
        r = sign_locked(l, why, sizeof(why));
    if (r == 0)
        r = ledger_exec(l, "COMMIT", 0, NULL);
    else
        ledger_exec(l, "ROLLBACK", 0, NULL);
    l->checkpoint_ms = ledger_now_ms();
    if (r < 0 && !have_err)
        snprintf(err, errlen,
                 "ledger: %s. Refusing to start: demsd never signs a checkpoint inconsistent "
                 "with one it signed (see docs/operations.md, \"The checkpoint file\")",
                 why[0] != '\0' ? why : "cannot write a checkpoint");
    return r;
}
