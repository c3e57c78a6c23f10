/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /healthz: the process is alive and its loop answers.
 * GET /readyz: requests can succeed — the embedded cluster (when there is
 * one) is up and not restarting, the data volume has at least
 * min_free_space bytes free, the database answers and its schema is at this
 * binary's migration level — so a load balancer only sends traffic that can
 * succeed; and the ledger has not stopped (its log no longer extends a
 * checkpoint this server signed). Each 503 names its reason in the
 * problem's code.
 */
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "dems/err.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

void api_healthz(struct dems_req *req)
{
    dems_resp_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void on_migrations(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        dems_resp_error(req, 503, "database_unavailable", "the database does not answer");
        return;
    }
    const char *v = PQgetvalue(res, 0, 0);
    int64_t applied = api_id(v, strlen(v));
    if ((size_t)applied != dems_migrate_count()) {
        dems_resp_error(req, 503, "migrations_pending", "the database schema is not current");
        return;
    }
    dems_resp_json(req, 200,
                   json_pack("{s:s,s:I}", "status", "ready", "migrations", (json_int_t)applied));
}

/* Bytes an unprivileged writer may still use on dir's volume; false if unknown. */
static bool free_space(const char *dir, uint64_t *ret)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return false;
    *ret = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    return true;
}

void api_readyz(struct dems_req *req)
{
    const struct dems_server *srv = dems_req_loop(req)->srv;
    const char *fault = dems_ledger_fault(dems_req_loop(req)->srv);
    if (fault != NULL) {
        dems_resp_error(req, 503, "ledger_inconsistent", fault);
        return;
    }
    if (srv->embedded != NULL && dems_embedded_state(srv->embedded) != DEMS_EMBEDDED_UP) {
        dems_resp_error(req, 503, "database_restarting",
                        "the embedded database is down and being restarted");
        return;
    }
    uint64_t avail = 0;
    if (srv->cfg->min_free_space > 0 && free_space(srv->cfg->data_dir, &avail) &&
        avail < srv->cfg->min_free_space) {
        char detail[160];
        snprintf(detail, sizeof(detail),
                 "%llu bytes free on the data volume, below min_free_space (%llu)",
                 (unsigned long long)avail, (unsigned long long)srv->cfg->min_free_space);
        dems_resp_error(req, 503, "low_disk_space", detail);
        return;
    }
    int r = dems_db_req(req, "SELECT count(*) FROM schema_migrations", 0, NULL, on_migrations);
    if (r < 0)
        on_migrations(req, NULL, r);
}
