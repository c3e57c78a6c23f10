/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsd as a witness: POST /add-checkpoint (C2SP tlog-witness,
 * https://c2sp.org/tlog-witness) and GET /v1/ledger/witness/key, the
 * witness's cosignature verifier key. The protocol's bodies are plain text,
 * not JSON (the one exception to docs/api.md's conventions): the request is
 * "old <size>", up to 63 base64 consistency-proof lines, a blank line and
 * the checkpoint note; a success answers the cosignature line; 409 answers
 * the size this witness holds (text/x.tlog.size); errors answer one line
 * of text. Nothing is stored unless the checkpoint extends what is stored:
 * the stored row advances by compare-and-swap on the size and root the proof
 * was checked from (migrations/0031_witness.sql), so of two submissions from
 * the same state one wins and the other gets 409 with the new size.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/buf.h"
#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define MAX_PROOF_LINES 63

struct submission {
    struct dems_buf body;
    uint64_t old;
    struct dems_merkle_proof proof;
    const char *note; /* inside body */
    size_t note_len, text_len;
    struct dems_checkpoint c;
    bool stored; /* witness_logs has a row for the origin */
    uint8_t stored_root[32];
};

static void submission_free(void *arg)
{
    struct submission *s = arg;
    dems_buf_done(&s->body);
    free(s);
}

static void answer_text(struct dems_req *req, int status, const char *text)
{
    char line[300];
    int n = snprintf(line, sizeof(line), "%s\n", text);
    if (n < 0 || (size_t)n >= sizeof(line)) /* cut, never read past the buffer */
        n = (int)sizeof(line) - 1;
    dems_resp_bytes(req, status, "text/plain; charset=utf-8", line, (size_t)n);
}

static void answer_size(struct dems_req *req, uint64_t size)
{
    char line[32];
    int n = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)size);
    dems_resp_bytes(req, 409, "text/x.tlog.size", line, (size_t)n);
}

int api_witness_body(struct dems_req *req, const uint8_t *data, size_t n)
{
    struct submission *s = dems_req_data(req);
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return DEMS_ENOMEM;
        dems_buf_init(&s->body, DEMS_WITNESS_MAX_BODY);
        dems_req_set_data(req, s, submission_free);
    }
    return dems_buf_append(&s->body, data, n);
}

/* One line from *pos (without its newline); false at the end or without a newline. */
static bool next_line(const struct dems_buf *b, size_t *pos, const char **ret, size_t *ret_len)
{
    const char *p = (const char *)b->data + *pos;
    const char *nl = *pos < b->len ? memchr(p, '\n', b->len - *pos) : NULL;
    if (nl == NULL)
        return false;
    *ret = p;
    *ret_len = (size_t)(nl - p);
    *pos += *ret_len + 1;
    return true;
}

/* The old size line and proof lines; the note after the blank line. Returns NULL or the fault. */
static const char *parse_request(struct submission *s)
{
    size_t pos = 0, len;
    const char *line;
    if (!next_line(&s->body, &pos, &line, &len) || len < 5 || memcmp(line, "old ", 4) != 0 ||
        (len > 5 && line[4] == '0') || dems_parse_u64(line + 4, len - 4, INT64_MAX, &s->old) < 0)
        return "the body must begin with \"old <size>\" (decimal, no leading zeros)";
    for (;;) {
        if (!next_line(&s->body, &pos, &line, &len))
            return "the proof lines must end with a blank line before the checkpoint";
        if (len == 0)
            break;
        if (s->proof.len == MAX_PROOF_LINES)
            return "more than 63 consistency proof lines";
        uint8_t h[33];
        size_t got = 0;
        if (len != 44 ||
            sodium_base642bin(h, sizeof(h), line, len, NULL, &got, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            got != 32)
            return "a consistency proof line is not one base64 SHA-256 hash";
        memcpy(s->proof.hash[s->proof.len++], h, 32);
    }
    s->note = (const char *)s->body.data + pos;
    s->note_len = s->body.len - pos;
    if (s->note_len == 0)
        return "no checkpoint after the blank line";
    return NULL;
}

static void cosign(struct dems_req *req, struct submission *s)
{
    struct dems_buf out;
    dems_buf_init(&out, 1024);
    time_t now = time(NULL);
    int r = dems_witness_cosign(dems_req_loop(req)->srv, s->note, s->text_len,
                                now > 0 ? (uint64_t)now : 0, &out);
    if (r == 0)
        dems_resp_bytes(req, 200, "text/plain; charset=utf-8", out.data, out.len);
    else
        dems_resp_err(req, r);
    dems_buf_done(&out);
}

static void on_reread(struct dems_req *req, const PGresult *res, int err)
{
    uint64_t size = 0;
    if (err < 0 || PQntuples(res) > 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    if (PQntuples(res) == 1) {
        const char *v = api_col(res, 0, "size");
        if (dems_parse_u64(v, strlen(v), INT64_MAX, &size) < 0) {
            api_db_error(req, res, DEMS_EDB);
            return;
        }
    }
    answer_size(req, size);
}

static void on_advanced(struct dems_req *req, const PGresult *res, int err)
{
    struct submission *s = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) == 1) {
        cosign(req, s);
        return;
    }
    /* Another submission advanced the log first: say where it stands now. */
    const char *p[] = {s->c.origin};
    int r = dems_db_req(req, "SELECT size FROM witness_logs WHERE origin = $1", 1, p, on_reread);
    if (r < 0)
        dems_resp_err(req, r);
}

/* Stores the checkpoint if the row is still what the proof was checked from. */
static void advance(struct dems_req *req, struct submission *s)
{
    char size[24], old[24], root[65], old_root[65];
    char *note = malloc(s->note_len + 1);
    if (note == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    memcpy(note, s->note, s->note_len);
    note[s->note_len] = '\0';
    snprintf(size, sizeof(size), "%llu", (unsigned long long)s->c.size);
    snprintf(old, sizeof(old), "%llu", (unsigned long long)s->old);
    dems_hex_encode(s->c.root, 32, root);
    dems_hex_encode(s->stored_root, 32, old_root);
    const char *p[] = {s->c.origin, size, root, note, old, old_root};
    int r = s->stored ? dems_db_req(req,
                                    "UPDATE witness_logs SET size = $2::bigint,"
                                    " root = decode($3, 'hex'), note = $4, updated_at = now()"
                                    " WHERE origin = $1 AND size = $5::bigint"
                                    " AND root = decode($6, 'hex') RETURNING size",
                                    6, p, on_advanced)
                      : dems_db_req(req,
                                    "INSERT INTO witness_logs (origin, size, root, note)"
                                    " VALUES ($1, $2::bigint, decode($3, 'hex'), $4)"
                                    " ON CONFLICT (origin) DO NOTHING RETURNING size",
                                    4, p, on_advanced);
    free(note);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_state(struct dems_req *req, const PGresult *res, int err)
{
    struct submission *s = dems_req_data(req);
    if (err < 0 || PQntuples(res) > 1) {
        api_db_error(req, res, err < 0 ? err : DEMS_EDB);
        return;
    }
    uint64_t size = 0;
    s->stored = PQntuples(res) == 1;
    if (s->stored) {
        const char *v = api_col(res, 0, "size");
        if (dems_parse_u64(v, strlen(v), INT64_MAX, &size) < 0 ||
            dems_hex_decode(api_col(res, 0, "root"), 64, s->stored_root, 32) < 0) {
            api_db_error(req, res, DEMS_EDB);
            return;
        }
    }
    /* tlog-witness: the old size must be the one this witness holds. */
    if (s->old != size) {
        answer_size(req, size);
        return;
    }
    if (s->stored && s->old == s->c.size && sodium_memcmp(s->stored_root, s->c.root, 32) != 0) {
        answer_size(req, size); /* same size, another root: a fork */
        return;
    }
    if (s->old == 0 && s->proof.len != 0) {
        answer_text(req, 422, "the consistency proof must be empty when the old size is 0");
        return;
    }
    if (s->stored && s->old > 0 &&
        dems_merkle_verify_consistency(s->old, s->c.size, s->stored_root, s->c.root, &s->proof) <
            0) {
        answer_text(req, 422,
                    "the consistency proof does not prove that the checkpoint extends the one "
                    "this witness holds");
        return;
    }
    advance(req, s);
}

/* POST /add-checkpoint */
void api_witness_add_checkpoint(struct dems_req *req)
{
    struct dems_server *srv = dems_req_loop(req)->srv;
    struct submission *s = dems_req_data(req);
    char vkey[DEMS_NOTE_VKEY_MAX];
    if (!dems_witness_vkey(srv, vkey)) {
        answer_text(req, 404, "this server witnesses no logs");
        return;
    }
    if (s == NULL) {
        answer_text(req, 400, "the body is empty");
        return;
    }
    const char *fault = parse_request(s);
    if (fault != NULL) {
        answer_text(req, 400, fault);
        return;
    }
    int r = dems_witness_open(srv, s->note, s->note_len, &s->c, &s->text_len);
    if (r == DEMS_ENOTFOUND) {
        answer_text(req, 404, "this witness does not know the checkpoint's log (origin)");
        return;
    }
    if (r == DEMS_ECRYPTO) {
        answer_text(req, 403,
                    "the checkpoint is not signed by a key this witness trusts for its log");
        return;
    }
    if (r < 0) {
        answer_text(req, 400, "the checkpoint is not a well-formed signed checkpoint note");
        return;
    }
    if (s->old > s->c.size) {
        answer_text(req, 400, "the old size is larger than the checkpoint's size");
        return;
    }
    const char *p[] = {s->c.origin};
    r = dems_db_req(req,
                    "SELECT size, encode(root, 'hex') AS root FROM witness_logs WHERE origin = $1",
                    1, p, on_state);
    if (r < 0)
        dems_resp_err(req, r);
}

/* GET /v1/ledger/witness/key */
void api_witness_key(struct dems_req *req)
{
    char text[DEMS_NOTE_VKEY_MAX + 1];
    if (!dems_witness_vkey(dems_req_loop(req)->srv, text)) {
        dems_resp_error(req, 404, "not_a_witness",
                        "this server is not a witness (witness_name is not set)");
        return;
    }
    size_t n = strlen(text);
    text[n++] = '\n';
    dems_resp_bytes(req, 200, "text/plain; charset=utf-8", text, n);
}
