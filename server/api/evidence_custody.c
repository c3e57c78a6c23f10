/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/evidence/{id}/custody: the custody history of one artefact, read
 * from the ledger — every entry naming it (INGESTED, VIEWED, DOWNLOADED,
 * PREVIEW_MADE, EXHIBIT_ADDED, ACCESS_DENIED, ...), oldest first, a page at
 * a time by sequence number (the list convention of api_int.h). Each item
 * is the entry itself (its canonical bytes, parsed) with its sequence
 * number, so what the staff page shows is what a verifier checks; the
 * inclusion proof of any of them is GET /v1/ledger/proof/inclusion.
 * Who sees the evidence sees its custody; others are answered as for
 * unknown evidence (404, ledgered).
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/db.h"

#include "api_int.h"

/* $1 artefact, $2 user id, $3 sees all, $4 after seq, $5 limit. */
/* clang-format off */
#define CUSTODY_SQL                                                                                \
    "SELECT $1::text AS artefact, v.found, v.visible, v.lapsed, e.seq,"                            \
    " convert_from(e.bytes, 'UTF8') AS body"                                                       \
    " FROM (SELECT EXISTS (SELECT 1 FROM artefacts WHERE id = $1) AS found,"                       \
    " " API_VISIBLE_SQL("$1", "$2", "$3") " AS visible,"                                           \
    " " API_LAPSED_SQL("$1", "$2") " AS lapsed) v"                                                 \
    " LEFT JOIN LATERAL (SELECT seq, bytes FROM ledger_entries WHERE artefact = $1"                \
    " AND seq > $4::bigint ORDER BY seq LIMIT $5::integer) e ON v.found AND v.visible"             \
    " ORDER BY e.seq"
/* clang-format on */

static json_t *entry_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_error_t jerr;
    json_t *body = json_loads(api_col(res, row, "body"), 0, &jerr);
    if (body == NULL)
        return NULL;
    return json_pack("{s:I,s:o}", "seq", (json_int_t)api_col_int(res, row, "seq"), "entry", body);
}

static void on_custody(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such evidence"))
        return;
    if (!api_col_bool(res, 0, "found")) {
        dems_resp_error(req, 404, "not_found", "no such evidence");
        return;
    }
    if (!api_col_bool(res, 0, "visible")) {
        api_evidence_hidden(req, res, api_col(res, 0, "artefact"), "not_found", "no such evidence");
        return;
    }
    if (api_col_null(res, 0, "seq")) { /* no (more) entries */
        api_page_send(req, "entries", json_array(), NULL);
        return;
    }
    api_page_answer(req, res, "entries", "seq", entry_json);
}

void api_evidence_custody(struct dems_req *req)
{
    char id[65], after[24], limit[24];
    struct api_page page;
    if (!api_evidence_id(req, id) || !api_page_by_id(req, &page, after, limit))
        return;
    if (!page.has_cursor)
        snprintf(after, sizeof(after), "-1"); /* the ledger starts at seq 0 */
    struct api_viewer who;
    api_viewer(req, &who);
    const char *params[] = {id, who.user_id, who.sees_all, after, limit};
    int r = dems_db_req(req, CUSTODY_SQL, 5, params, on_custody);
    if (r < 0)
        dems_resp_err(req, r);
}
