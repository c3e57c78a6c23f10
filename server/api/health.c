/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /healthz: the process is alive and its loop answers.
 * GET /readyz: the database answers and its schema is at this binary's
 * migration level, so a load balancer only sends traffic that can succeed;
 * and the ledger has not stopped (its log no longer extends a checkpoint
 * this server signed).
 */
#include <string.h>

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

void api_readyz(struct dems_req *req)
{
    const char *fault = dems_ledger_fault(dems_req_loop(req)->srv);
    if (fault != NULL) {
        dems_resp_error(req, 503, "ledger_inconsistent", fault);
        return;
    }
    int r = dems_db_req(req, "SELECT count(*) FROM schema_migrations", 0, NULL, on_migrations);
    if (r < 0)
        on_migrations(req, NULL, r);
}
