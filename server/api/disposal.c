/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disposal of rejected public submissions (housekeeping, loop 0; docs/
 * operations.md, "Retention, holds and disposal"). A submission rejected in triage
 * is kept until its dispose_after (portal_reject_retention_days); then each
 * of its artefacts that nothing else holds (no upload by anyone else, never
 * an exhibit, not disposed of already), and what was extracted from its
 * archives that nothing else holds, is disposed of (once no unpack job of
 * its archives is still to run): a DISPOSED entry by
 * the system actor "retention" marks the artefact (disposed_at, in the
 * entry's transaction), and only once that entry is durable are the
 * artefact's blob and its derivatives' blobs (those no other artefact
 * names) deleted. When every such artefact is disposed of the submission
 * becomes "disposed". A failure leaves the rest for the next run, which
 * picks up where this one stopped; a blob already gone is not an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/log.h"
#include "demsd/runtime.h"

#include "api_int.h"

/* One submission being disposed of. */
struct sub {
    struct dems_loop *loop;
    char id[24];
    char reference[24];
    char case_ref[65];
    json_t *artefacts; /* [{"id", "blobs": [derivative blobs to delete]}] */
    size_t pending;
    int failed;
};

/* One artefact's blobs, deleted on the work pool after its entry. */
struct purge {
    struct sub *s;
    char id[65];
    json_t *blobs;
    int err;
};

static void sub_free(struct sub *s)
{
    json_decref(s->artefacts);
    free(s);
}

static void on_noop(void *arg, const PGresult *res, int err)
{
    (void)arg;
    (void)res;
    (void)err;
}

/* After the last artefact: the submission is disposed of when none failed. */
static void sub_done(struct sub *s)
{
    if (s->failed == 0) {
        const char *params[] = {s->id};
        dems_db_query(s->loop->db,
                      "UPDATE submissions SET state = 'disposed', disposed_at = now()"
                      " WHERE id = $1::bigint AND state = 'rejected'",
                      1, params, on_noop, NULL);
        dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s}", "submission", s->reference),
                 "disposal: rejected submission %s disposed of", s->reference);
    }
    sub_free(s);
}

static void purge_work(void *arg)
{
    struct purge *p = arg;
    const char *dir = p->s->loop->srv->cfg->data_dir;
    p->err = dems_blob_erase(dir, p->id);
    for (size_t i = 0; p->err == 0 && i < json_array_size(p->blobs); i++)
        p->err = dems_blob_erase(dir, json_string_value(json_array_get(p->blobs, i)));
}

static void purge_done(void *arg)
{
    struct purge *p = arg;
    struct sub *s = p->s;
    if (p->err < 0) {
        s->failed++;
        dems_log(DEMS_LOG_ERROR, NULL, json_pack("{s:s}", "artefact", p->id),
                 "disposal: the blobs of %.64s could not all be deleted: %s (marked disposed;"
                 " the orphan sweep reports what is left)",
                 p->id, dems_strerror(p->err));
    }
    json_decref(p->blobs);
    free(p);
    if (--s->pending == 0)
        sub_done(s);
}

static void on_disposed(struct dems_ledger_item *item, void *arg)
{
    struct purge *p = arg;
    struct sub *s = p->s;
    if (item->err < 0) {
        /* Not marked (the ledger refused or the row changed): nothing deleted. */
        s->failed++;
        if (item->err != DEMS_ENOTFOUND)
            dems_log(DEMS_LOG_WARN, NULL, NULL, "disposal: %.64s not disposed of now: %s", p->id,
                     dems_strerror(item->err));
        json_decref(p->blobs);
        free(p);
        if (--s->pending == 0)
            sub_done(s);
        return;
    }
    if (dems_work_submit(s->loop, purge_work, purge_done, p) < 0) {
        p->err = DEMS_ENOMEM;
        purge_done(p);
    }
}

static int dispose_one(struct sub *s, const json_t *a, uint64_t keep_days)
{
    struct purge *p = calloc(1, sizeof(*p));
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_DISPOSED, DEMS_LEDGER_ACTOR_SYSTEM, "retention");
    if (p == NULL || it == NULL) {
        free(p);
        dems_ledger_item_free(it);
        return DEMS_ENOMEM;
    }
    p->s = s;
    snprintf(p->id, sizeof(p->id), "%s", json_string_value(json_object_get(a, "id")));
    p->blobs = json_incref(json_object_get(a, "blobs"));
    it->has_artefact = true;
    dems_hex_decode(p->id, 64, it->artefact, 32);
    snprintf(it->case_id, sizeof(it->case_id), "%s", s->case_ref);
    it->payload = json_pack("{s:s,s:I,s:s,s:I}", "reason", "rejected public submission",
                            "submission", (json_int_t)api_id(s->id, strlen(s->id)), "reference",
                            s->reference, "kept_days", (json_int_t)keep_days);
    it->pre_sql = strdup("UPDATE artefacts SET disposed_at = now() WHERE id = $1"
                         " AND disposed_at IS NULL");
    it->pre_nparams = 1;
    it->pre_must_change = true;
    it->pre_params[0] = strdup(p->id);
    it->done = on_disposed;
    it->arg = p;
    if (it->payload == NULL || it->pre_sql == NULL || it->pre_params[0] == NULL) {
        dems_ledger_item_free(it);
        json_decref(p->blobs);
        free(p);
        return DEMS_ENOMEM;
    }
    return dems_ledger_append(s->loop->srv, s->loop, it); /* frees it on failure */
}

static void start_sub(struct dems_loop *loop, const PGresult *res, int row)
{
    struct sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return;
    s->loop = loop;
    snprintf(s->id, sizeof(s->id), "%s", api_col(res, row, "id"));
    snprintf(s->reference, sizeof(s->reference), "%s", api_col(res, row, "reference"));
    snprintf(s->case_ref, sizeof(s->case_ref), "%s", api_col(res, row, "case_reference"));
    json_error_t jerr;
    s->artefacts = json_loads(api_col(res, row, "artefacts"), 0, &jerr);
    size_t n = json_array_size(s->artefacts);
    if (!json_is_array(s->artefacts) || n == 0) {
        sub_done(s); /* nothing of its own to dispose of */
        return;
    }
    struct dems_runtime *rt = malloc(sizeof(*rt));
    uint64_t keep = loop->srv->cfg->portal_reject_retention_days;
    if (rt != NULL) {
        dems_runtime_get(rt);
        keep = rt->portal_reject_retention_days;
        free(rt);
    }
    s->pending = n + 1; /* held while the items are queued */
    for (size_t i = 0; i < n; i++) {
        if (dispose_one(s, json_array_get(s->artefacts, i), keep) < 0) {
            s->failed++;
            s->pending--;
        }
    }
    if (--s->pending == 0)
        sub_done(s);
}

static void on_due(void *arg, const PGresult *res, int err)
{
    struct dems_loop *loop = arg;
    if (err < 0)
        return;
    for (int i = 0; i < PQntuples(res); i++)
        start_sub(loop, res, i);
}

/*
 * Due submissions and, for each, the artefacts it alone holds (its uploads
 * nobody else uploaded, and what was extracted from those archives that no
 * other archive or upload holds), never an exhibit, with the derivative
 * blobs only they name.
 */
/* clang-format off */
#define DUE_SQL                                                                                    \
    "SELECT s.id, s.reference, c.reference AS case_reference,"                                     \
    " (WITH own AS (SELECT DISTINCT u.evidence_id AS id FROM uploads u"                            \
    "  WHERE u.owner_submission_id = s.id AND u.evidence_id IS NOT NULL"                           \
    "  AND NOT EXISTS (SELECT 1 FROM uploads o WHERE o.evidence_id = u.evidence_id"                \
    "  AND o.owner_submission_id IS DISTINCT FROM s.id)),"                                         \
    "  mem AS (SELECT DISTINCT am.artefact AS id FROM archive_members am"                          \
    "  WHERE am.archive IN (SELECT id FROM own) AND am.artefact IS NOT NULL"                       \
    "  AND NOT EXISTS (SELECT 1 FROM uploads o WHERE o.evidence_id = am.artefact)"                 \
    "  AND NOT EXISTS (SELECT 1 FROM archive_members a2 WHERE a2.artefact = am.artefact"           \
    "  AND a2.archive NOT IN (SELECT id FROM own)))"                                               \
    "  SELECT coalesce(json_agg(json_build_object('id', a.id, 'blobs', (SELECT"                    \
    "  coalesce(json_agg(DISTINCT d.blob), '[]') FROM derivatives d WHERE d.artefact = a.id"        \
    "  AND NOT EXISTS (SELECT 1 FROM derivatives o JOIN artefacts oa ON oa.id = o.artefact"        \
    "  WHERE o.blob = d.blob AND o.artefact <> a.id AND oa.disposed_at IS NULL)"                   \
    "  AND NOT EXISTS (SELECT 1 FROM artefacts b WHERE b.id = d.blob))) ORDER BY a.id), '[]')"      \
    "  FROM artefacts a WHERE a.disposed_at IS NULL"                                               \
    "  AND a.id IN (SELECT id FROM own UNION SELECT id FROM mem)"                                  \
    "  AND NOT EXISTS (SELECT 1 FROM exhibits x WHERE x.artefact = a.id))::text AS artefacts"       \
    " FROM submissions s JOIN submission_links l ON l.id = s.link_id"                              \
    " JOIN cases c ON c.id = l.case_id"                                                            \
    " WHERE s.state = 'rejected' AND s.dispose_after <= now()"                                     \
    " AND NOT EXISTS (SELECT 1 FROM uploads u JOIN jobs j ON j.kind = 'unpack'"                    \
    " AND j.dedupe_key = 'unpack-' || u.evidence_id WHERE u.owner_submission_id = s.id"            \
    " AND j.state IN ('queued', 'running', 'failed'))"                                             \
    " ORDER BY s.dispose_after LIMIT 5"
/* clang-format on */

void api_disposal_run(struct dems_loop *loop)
{
    dems_db_query(loop->db, DUE_SQL, 0, NULL, on_due, loop);
}
