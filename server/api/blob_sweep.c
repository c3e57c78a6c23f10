/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The periodic integrity sweep (housekeeping, loop 0, every
 * blob_verify_interval): every artefact's blob is re-read end to end on the
 * work pool (authenticated decryption and SHA-256 against its id), one at a
 * time, and a missing or altered one is logged (blob_integrity_failure).
 * Then the store is walked for orphans: files that no artefact, derivative
 * or upload being recorded names (blob_orphan), such as the blob of an
 * upload whose recording was lost. The store is walked before the database
 * is read, so a blob that arrives meanwhile is named by then (an upload is
 * complete before its file moves in); files changed within ORPHAN_GRACE are
 * left for the next sweep, because a preview job stores its outputs a
 * moment before it records them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/blobs.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/log.h"

#include "api_int.h"

#define ORPHAN_GRACE 3600 /* seconds */

/* Everything the store may hold: evidence, derivatives, uploads being recorded. */
#define REFERENCED_SQL                                                                             \
    "SELECT id FROM artefacts UNION ALL SELECT blob FROM derivatives"                              \
    " UNION ALL SELECT sha256 FROM uploads WHERE state = 'complete' AND evidence_id IS NULL"       \
    " UNION ALL SELECT result_sha256 FROM bundles WHERE result_sha256 IS NOT NULL"

struct sweep {
    struct dems_loop *loop;
    char (*ids)[65];
    size_t n, i;
    size_t bad;
    int err;
    int64_t started;
    char **names; /* files in the store (then: the orphans among them) */
    size_t nnames;
    size_t orphans;
};

static bool sweep_running;
static int64_t sweep_last;

static void sweep_end(struct sweep *sw)
{
    dems_log(DEMS_LOG_INFO, NULL,
             json_pack("{s:s,s:I,s:I,s:I}", "event", "blob_integrity_sweep", "checked",
                       (json_int_t)sw->i, "bad", (json_int_t)sw->bad, "orphans",
                       (json_int_t)sw->orphans),
             "integrity sweep: %zu blobs checked, %zu bad, %zu orphans", sw->i, sw->bad,
             sw->orphans);
    dems_blob_list_free(sw->names, sw->nnames);
    free(sw->ids);
    free(sw);
    sweep_running = false;
}

static void on_referenced(void *arg, const PGresult *res, int err)
{
    struct sweep *sw = arg;
    size_t nref = err == 0 ? (size_t)PQntuples(res) : 0;
    char **ref = err == 0 ? calloc(nref + 1, sizeof(*ref)) : NULL;
    if (ref == NULL) {
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "blob_integrity_sweep"),
                 "integrity sweep: cannot list what the blob store should hold: %s",
                 dems_strerror(err < 0 ? err : DEMS_ENOMEM));
        sweep_end(sw);
        return;
    }
    for (size_t i = 0; i < nref; i++)
        ref[i] = PQgetvalue(res, (int)i, 0);
    sw->nnames = dems_blob_orphans(sw->names, sw->nnames, ref, nref);
    free(ref);
    sw->orphans = sw->nnames;
    for (size_t i = 0; i < sw->nnames; i++)
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s}", "event", "blob_orphan", "blob", sw->names[i]),
                 "integrity sweep: blob %s is in the store but no evidence, derivative or"
                 " upload names it",
                 sw->names[i]);
    sweep_end(sw);
}

static void walk_work(void *arg)
{
    struct sweep *sw = arg;
    sw->err = dems_blob_list(sw->loop->srv->cfg->data_dir, sw->started - ORPHAN_GRACE, &sw->names,
                             &sw->nnames);
}

static void walk_done(void *arg)
{
    struct sweep *sw = arg;
    if (sw->err < 0)
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "blob_integrity_sweep"),
                 "integrity sweep: cannot list the blob store: %s", dems_strerror(sw->err));
    if (sw->err < 0 || sw->loop->draining ||
        dems_db_query(sw->loop->db, REFERENCED_SQL, 0, NULL, on_referenced, sw) < 0)
        sweep_end(sw);
}

static void sweep_next(struct sweep *sw);

static void verify_work(void *arg)
{
    struct sweep *sw = arg;
    const struct dems_server *srv = sw->loop->srv;
    sw->err = dems_blob_verify(srv->cfg->data_dir, srv->master_key, sw->ids[sw->i]);
}

static void verify_done(void *arg)
{
    struct sweep *sw = arg;
    if (sw->err < 0) {
        sw->bad++;
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s,s:s}", "event", "blob_integrity_failure", "evidence",
                           sw->ids[sw->i], "problem", dems_strerror(sw->err)),
                 "integrity sweep: evidence %s failed its check (%s)", sw->ids[sw->i],
                 sw->err == DEMS_ENOTFOUND ? "missing" : "altered or unreadable");
    }
    sw->i++;
    sweep_next(sw);
}

static void sweep_next(struct sweep *sw)
{
    if (sw->loop->draining) {
        sweep_end(sw);
        return;
    }
    if (sw->i < sw->n) {
        if (dems_work_submit(sw->loop, verify_work, verify_done, sw) < 0)
            sweep_end(sw);
        return;
    }
    if (dems_work_submit(sw->loop, walk_work, walk_done, sw) < 0)
        sweep_end(sw);
}

static void on_sweep_ids(void *arg, const PGresult *res, int err)
{
    struct dems_loop *loop = arg;
    if (err < 0)
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "blob_integrity_sweep"),
                 "integrity sweep: cannot list the evidence: %s", dems_strerror(err));
    struct sweep *sw = err == 0 ? calloc(1, sizeof(*sw)) : NULL;
    size_t n = sw != NULL ? (size_t)PQntuples(res) : 0;
    if (sw != NULL)
        sw->ids = calloc(n + 1, sizeof(*sw->ids));
    if (sw == NULL || sw->ids == NULL) {
        free(sw);
        sweep_running = false;
        return;
    }
    sw->loop = loop;
    sw->n = n;
    sw->started = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++)
        snprintf(sw->ids[i], 65, "%s", PQgetvalue(res, (int)i, 0));
    sweep_next(sw);
}

void api_evidence_sweep(struct dems_loop *loop)
{
    uint64_t every = loop->srv->cfg->blob_verify_interval;
    int64_t now = (int64_t)time(NULL);
    if (every == 0 || sweep_running || now - sweep_last < (int64_t)every)
        return;
    sweep_last = now;
    sweep_running = true;
    int r =
        dems_db_query(loop->db, "SELECT id FROM artefacts WHERE disposed_at IS NULL ORDER BY id", 0,
                      NULL, on_sweep_ids, loop);
    if (r < 0) {
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "blob_integrity_sweep"),
                 "integrity sweep: cannot list the evidence: %s", dems_strerror(r));
        sweep_running = false;
    }
}
