/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A public submitter's receipt (docs/api.md, "Receipts"):
 *
 *   GET /v1/portal/receipt    the submitter (bearer dems_ps_...)
 *
 * Once the submission is finished and a signed checkpoint covers its
 * entries, the receipt holds each file's name, size and SHA-256, the
 * INGESTED entry that recorded it and the SUBMITTED entry, each entry's
 * canonical bytes with its RFC 9162 inclusion proof, and the signed
 * checkpoint the proofs lead to with the verifier key that signed it.
 * `dems-verify receipt FILE` checks all of it offline, and against a
 * checkpoint fetched later with a consistency proof. Until then the answer
 * is 202 {"state": "pending"} with Retry-After.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/db.h"

#include "api_int.h"

#define MAX_FILES 10000

struct receipt {
    json_t *doc;   /* the receipt being built */
    json_t *files; /* borrowed from doc */
    size_t n;      /* entries proven: files, then SUBMITTED */
    uint64_t *seq;
    struct api_prover *prover;
};

static void receipt_free(void *p)
{
    struct receipt *r = p;
    json_decref(r->doc);
    free(r->seq);
    api_prover_free(r->prover);
    free(r);
}

static void pending(struct dems_req *req, const char *why)
{
    dems_resp_header(req, "Retry-After", "2");
    dems_resp_json(req, 202, json_pack("{s:s,s:s}", "state", "pending", "detail", why));
}

static json_t *b64(const uint8_t *p, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    json_t *s = json_string(out);
    free(out);
    return s;
}

/* The entries' bytes: the receipt's "entries", each with its proof. */
static void on_entries(struct dems_req *req, const PGresult *res, int err)
{
    struct receipt *r = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    json_t *entries = json_array();
    struct dems_merkle_proof *proof = malloc(sizeof(*proof));
    int e = entries == NULL || proof == NULL ? DEMS_ENOMEM : 0;
    for (size_t i = 0; e == 0 && i < r->n; i++) {
        int row = -1;
        for (int k = 0; k < PQntuples(res); k++) {
            if ((uint64_t)api_col_int(res, k, "seq") == r->seq[i])
                row = k;
        }
        if (row < 0) {
            e = DEMS_EDB;
            break;
        }
        size_t blen = 0;
        unsigned char *bytes =
            PQunescapeBytea((const unsigned char *)api_col(res, row, "bytes"), &blen);
        e = bytes == NULL ? DEMS_ENOMEM : api_prover_prove(r->prover, i, proof);
        json_t *hashes = json_array();
        for (size_t h = 0; e == 0 && h < proof->len; h++)
            json_array_append_new(hashes, b64(proof->hash[h], 32));
        if (e == 0)
            json_array_append_new(entries,
                                  json_pack("{s:I,s:o,s:o}", "index", (json_int_t)r->seq[i],
                                            "entry", b64(bytes, blen), "proof", hashes));
        else
            json_decref(hashes);
        PQfreemem(bytes);
    }
    free(proof);
    if (e < 0) {
        json_decref(entries);
        dems_resp_err(req, e == DEMS_ENOTFOUND ? DEMS_EDB : e);
        return;
    }
    json_object_set_new(r->doc, "entries", entries);
    dems_resp_json(req, 200, json_incref(r->doc));
}

static void on_subtrees(struct dems_req *req, const PGresult *res, int err)
{
    struct receipt *r = dems_req_data(req);
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_prover_feed(r->prover, res);
    /* Seqs are plain numbers: the literal needs no quoting. */
    char *lit = malloc(r->n * 21 + 3);
    if (lit == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    size_t o = 0;
    lit[o++] = '{';
    for (size_t i = 0; i < r->n; i++)
        o += (size_t)snprintf(lit + o, 22, "%s%llu", i ? "," : "", (unsigned long long)r->seq[i]);
    snprintf(lit + o, 2, "}");
    const char *params[] = {lit};
    int e = dems_db_req(req, "SELECT seq, bytes FROM ledger_entries WHERE seq = ANY ($1::bigint[])",
                        1, params, on_entries);
    free(lit);
    if (e < 0)
        dems_resp_err(req, e);
}

/* Reads the files' INGESTED indexes and the SUBMITTED one into r->seq:
 * 0, DEMS_ENOMEM, or DEMS_EAGAIN when a file's entry is not there yet. */
static int collect(struct receipt *r, uint64_t submitted, uint64_t *ret_max)
{
    size_t nfiles = json_array_size(r->files);
    r->n = nfiles + 1;
    r->seq = malloc(r->n * sizeof(*r->seq));
    if (r->seq == NULL)
        return DEMS_ENOMEM;
    uint64_t max = submitted;
    for (size_t i = 0; i < nfiles; i++) {
        json_t *idx = json_object_get(json_array_get(r->files, i), "ledger_index");
        if (!json_is_integer(idx))
            return DEMS_EAGAIN;
        r->seq[i] = (uint64_t)json_integer_value(idx);
        if (r->seq[i] > max)
            max = r->seq[i];
    }
    r->seq[nfiles] = submitted;
    *ret_max = max;
    return 0;
}

static void on_submission(struct dems_req *req, const PGresult *res, int err)
{
    struct receipt *r = dems_req_data(req);
    if (!api_found(req, res, err, "submission_not_found", "no such submission"))
        return;
    if (strcmp(api_col(res, 0, "state"), "open") == 0) {
        dems_resp_error(req, 409, "submission_open",
                        "the submission is not finished: finish it to get its receipt");
        return;
    }
    if (api_col_int(res, 0, "unrecorded") > 0 || api_col_null(res, 0, "submitted_seq")) {
        pending(req, "the files are being recorded in the ledger");
        return;
    }
    json_error_t jerr;
    json_t *files = json_loads(api_col(res, 0, "files"), 0, &jerr);
    if (!json_is_array(files) || json_array_size(files) > MAX_FILES) {
        json_decref(files);
        dems_resp_err(req, DEMS_EDB);
        return;
    }
    r->files = files;
    uint64_t max = 0;
    int c = collect(r, (uint64_t)api_col_int(res, 0, "submitted_seq"), &max);
    if (c < 0) {
        json_decref(files);
        if (c == DEMS_EAGAIN)
            pending(req, "the files are being recorded in the ledger");
        else
            dems_resp_err(req, c);
        return;
    }
    uint64_t size = (uint64_t)api_col_int(res, 0, "checkpoint_size");
    char vkey[DEMS_NOTE_VKEY_MAX];
    if (api_col_null(res, 0, "checkpoint_size") || size <= max) {
        json_decref(files);
        pending(req, "the ledger has not yet signed a checkpoint covering the submission");
        return;
    }
    if (!api_vkey(api_col(res, 0, "key_name"), api_col(res, 0, "key_hex"), vkey)) {
        json_decref(files);
        dems_resp_err(req, DEMS_EDB);
        return;
    }
    r->doc = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:o,s:I}", "dems_receipt", 1, "reference",
                       api_col(res, 0, "reference"), "title", api_col(res, 0, "title"),
                       "submitted_at", api_col(res, 0, "submitted_at"), "vkey", vkey, "checkpoint",
                       api_col(res, 0, "note"), "files", files, "submitted_index",
                       (json_int_t)api_col_int(res, 0, "submitted_seq"));
    if (r->doc == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    api_prover_fetch(req, size, r->seq, r->n, &r->prover, on_subtrees);
}

/* $1 submission id. A file's INGESTED entry is the one naming its upload. */
/* clang-format off */
#define RECEIPT_SQL                                                                                \
    "SELECT s.reference, s.state, s.submitted_seq, " API_TS("s.submitted_at") " AS submitted_at,"  \
    " l.title, (SELECT count(*) FROM uploads u WHERE u.owner_submission_id = s.id"                  \
    "  AND u.state = 'complete' AND u.evidence_id IS NULL) AS unrecorded,"                         \
    " (SELECT coalesce(json_agg(json_build_object('name', f.name, 'size', f.length,"               \
    "  'sha256', f.evidence_id, 'ledger_index', f.seq) ORDER BY f.created_at, f.id), '[]')"         \
    "  FROM (SELECT u.id, u.created_at, u.metadata->>'filename' AS name, u.length, u.evidence_id," \
    "  (SELECT e.seq FROM ledger_entries e WHERE e.artefact = u.evidence_id"                       \
    "   AND e.type = 'INGESTED' AND position(convert_to('\"upload\":\"' || u.id || '\"', 'UTF8')"  \
    "   IN e.bytes) > 0 ORDER BY e.seq LIMIT 1) AS seq"                                            \
    "  FROM uploads u WHERE u.owner_submission_id = s.id AND u.state = 'complete'"                 \
    "  AND u.evidence_id IS NOT NULL) f)::text AS files,"                                          \
    " c.size AS checkpoint_size, c.note, k.name AS key_name,"                                      \
    " encode(k.public_key, 'hex') AS key_hex"                                                      \
    " FROM submissions s JOIN submission_links l ON l.id = s.link_id"                              \
    " LEFT JOIN LATERAL (SELECT size, note, key_id FROM ledger_checkpoint_notes"                   \
    "  WHERE published OR NOT $2::boolean ORDER BY size DESC LIMIT 1) c ON true LEFT JOIN ledger_keys k ON k.id = c.key_id"           \
    " WHERE s.id = $1::bigint"
/* clang-format on */

void api_portal_receipt(struct dems_req *req)
{
    struct receipt *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_req_set_data(req, r, receipt_free);
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)dems_req_principal(req)->submission_id);
    /* With witnesses, the newest checkpoint a quorum of them cosigned, with their lines. */
    const char *params[] = {id, dems_req_loop(req)->srv->cfg->witnesses[0] != '\0' ? "t" : "f"};
    int e = dems_db_req(req, RECEIPT_SQL, 2, params, on_submission);
    if (e < 0)
        dems_resp_err(req, e);
}
