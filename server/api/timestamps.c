/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/ledger/timestamps: the RFC 3161 tokens stored for a checkpoint
 * (docs/ledger.md, "Timestamps"), with the checkpoint's note they cover, so
 * that anyone can check them with the TSA's certificate alone (`openssl ts
 * -verify -token_in -data NOTE`, or `dems-verify timestamp`). Public, as the
 * checkpoint itself is.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"
#include "demsd/db.h"
#include "demsd/http.h"

#include "api_int.h"

/* The checkpoint (of size $1, or the newest with a token) left-joined with its tokens. */
#define TIMESTAMPS_SQL(WHERE)                                                                      \
    "SELECT c.size, encode(c.root, 'hex') AS root, c.note, t.tsa,"                                 \
    " translate(encode(t.token, 'base64'), E'\\n', '') AS token,"                                  \
    " encode(t.token_sha256, 'hex') AS token_sha256,"                                              \
    " to_char(t.gen_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS gen_time,"    \
    " t.seq FROM ledger_checkpoints c LEFT JOIN ledger_timestamps t ON t.size = c.size"            \
    " WHERE " WHERE " ORDER BY t.tsa"

static json_t *token_json(const PGresult *res, int row)
{
    return json_pack("{s:o,s:o,s:o,s:o,s:I}", "tsa", api_col_json_str(res, row, "tsa"), "token",
                     api_col_json_str(res, row, "token"), "token_sha256",
                     api_col_json_str(res, row, "token_sha256"), "gen_time",
                     api_col_json_str(res, row, "gen_time"), "seq",
                     (json_int_t)api_col_int(res, row, "seq"));
}

static void on_timestamps(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "checkpoint_not_found",
                   "no checkpoint of that size (without size: none has a timestamp)"))
        return;
    const char *note = api_col(res, 0, "note");
    uint8_t imprint[32];
    char hex[65];
    crypto_hash_sha256(imprint, (const uint8_t *)note, strlen(note));
    dems_hex_encode(imprint, 32, hex);
    json_t *list = json_array();
    for (int i = 0; list != NULL && i < PQntuples(res); i++) {
        if (api_col_null(res, i, "tsa"))
            continue; /* a checkpoint without tokens: the join's one empty row */
        if (json_array_append_new(list, token_json(res, i)) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *body = list != NULL ? json_pack("{s:I,s:s,s:s,s:s,s:o}", "size",
                                            (json_int_t)api_col_int(res, 0, "size"), "root",
                                            api_col(res, 0, "root"), "checkpoint", note,
                                            "checkpoint_sha256", hex, "timestamps", list)
                                : NULL;
    if (body == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_json(req, 200, body);
}

/*
 * ?size=N: the checkpoint of N entries and its tokens (an empty list when it
 * has none); without it, the newest checkpoint that has a token. 404 when
 * there is no such checkpoint.
 */
void api_ledger_timestamps(struct dems_req *req)
{
    struct dems_str v;
    if (!dems_req_query(req, "size", &v)) {
        int r =
            dems_db_req(req, TIMESTAMPS_SQL("c.size = (SELECT max(size) FROM ledger_timestamps)"),
                        0, NULL, on_timestamps);
        if (r < 0)
            dems_resp_err(req, r);
        return;
    }
    uint64_t size;
    if (dems_parse_u64(v.ptr, v.len, DEMS_MERKLE_MAX_SIZE, &size) < 0) {
        api_bad_param(req, "size", "must be a whole number (a checkpoint's tree size)");
        return;
    }
    char s[24];
    snprintf(s, sizeof(s), "%llu", (unsigned long long)size);
    const char *p[] = {s};
    int r = dems_db_req(req, TIMESTAMPS_SQL("c.size = $1::bigint"), 1, p, on_timestamps);
    if (r < 0)
        dems_resp_err(req, r);
}
