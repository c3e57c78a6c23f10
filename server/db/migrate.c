/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Schema migrations. The SQL files in migrations/ are compiled in (see
 * migrations/embed.py), so `demsd migrate` and /readyz need no paths. Each
 * migration runs in its own transaction as the owner role, under an advisory
 * lock so two migrators never race, and is recorded with its SHA-256 in
 * schema_migrations. An applied migration whose text has changed, or a
 * database newer than this binary, refuses start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"
#include "demsd/db.h"

#include "migrations_embedded.h"

/* Any constant works; it only has to be the same for every demsd. */
#define MIGRATE_LOCK_KEY "7215447301"

size_t dems_migrate_count(void)
{
    return dems_nmigrations;
}

static int exec_ok(PGconn *db, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(res);
    int r = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : DEMS_EDB;
    if (r < 0)
        snprintf(err, errlen, "migrate: %.300s", PQresultErrorMessage(res));
    PQclear(res);
    return r;
}

/* Checks applied rows against the embedded list; counts the applied ones. */
static int check_applied(PGconn *db, size_t *ret_applied, char *err, size_t errlen)
{
    PGresult *res = PQexec(db, "SELECT version, sha256 FROM schema_migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "migrate: %.300s", PQresultErrorMessage(res));
        PQclear(res);
        return DEMS_EDB;
    }
    int rows = PQntuples(res);
    int r = 0;
    for (int i = 0; i < rows && r == 0; i++) {
        const char *text = PQgetvalue(res, i, 0);
        uint64_t v = 0;
        if (dems_parse_u64(text, strlen(text), 1000000, &v) < 0 || v < 1 || v > dems_nmigrations) {
            snprintf(err, errlen,
                     "migrate: the database has migration %s, newer than this demsd knows "
                     "(%lu); upgrade demsd",
                     text, dems_nmigrations);
            r = DEMS_ECONFLICT;
        } else if (strcmp(PQgetvalue(res, i, 1), dems_migrations[v - 1].sha256) != 0) {
            snprintf(err, errlen,
                     "migrate: migration %04d_%s was changed after it was applied "
                     "(checksum mismatch)",
                     dems_migrations[v - 1].version, dems_migrations[v - 1].name);
            r = DEMS_ECONFLICT;
        }
    }
    *ret_applied = (size_t)rows;
    PQclear(res);
    return r;
}

static int apply_one(PGconn *db, const struct dems_migration *m, const char *app_role, char *err,
                     size_t errlen)
{
    int r = exec_ok(db, "BEGIN", err, errlen);
    if (r < 0)
        return r;
    const char *p1[] = {app_role};
    PGresult *res = PQexecParams(db, "SELECT set_config('dems.app_role', $1, true)", 1, NULL, p1,
                                 NULL, NULL, 0);
    r = PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : DEMS_EDB;
    PQclear(res);
    if (r == 0) {
        res = PQexec(db, m->sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(err, errlen, "migrate: %04d_%s failed: %.300s", m->version, m->name,
                     PQresultErrorMessage(res));
            r = DEMS_EDB;
        }
        PQclear(res);
    }
    if (r == 0) {
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", m->version);
        const char *p[] = {ver, m->name, m->sha256};
        res = PQexecParams(db,
                           "INSERT INTO schema_migrations (version, name, sha256) "
                           "VALUES ($1, $2, $3)",
                           3, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            snprintf(err, errlen, "migrate: recording %04d failed: %.300s", m->version,
                     PQresultErrorMessage(res));
            r = DEMS_EDB;
        }
        PQclear(res);
    }
    char ignored[8];
    exec_ok(db, r == 0 ? "COMMIT" : "ROLLBACK", r == 0 ? err : ignored,
            r == 0 ? errlen : sizeof(ignored));
    return r;
}

int dems_migrate_run(PGconn *db, const char *app_role, char *err, size_t errlen)
{
    int r = exec_ok(db, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen);
    if (r < 0)
        return r;
    r = exec_ok(db,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                err, errlen);
    if (r == 0) {
        /* /readyz, running as the application role, reads this table. */
        char *role = PQescapeIdentifier(db, app_role, strlen(app_role));
        char sql[256];
        snprintf(sql, sizeof(sql), "GRANT SELECT ON schema_migrations TO %s",
                 role != NULL ? role : "\"\"");
        PQfreemem(role);
        r = exec_ok(db, sql, err, errlen);
    }
    size_t applied = 0;
    if (r == 0)
        r = check_applied(db, &applied, err, errlen);
    for (size_t i = applied; r == 0 && i < dems_nmigrations; i++)
        r = apply_one(db, &dems_migrations[i], app_role, err, errlen);
    char ignored[8];
    exec_ok(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignored, sizeof(ignored));
    return r;
}

char *dems_migrate_status(PGconn *db)
{
    char err[512];
    size_t applied = 0;
    PGresult *res = PQexec(db, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    bool exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                  PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!exists)
        return strdup("no migrations applied");
    if (check_applied(db, &applied, err, sizeof(err)) < 0)
        return strdup(err);
    if (applied < dems_nmigrations) {
        snprintf(err, sizeof(err), "%zu of %lu migrations applied", applied, dems_nmigrations);
        return strdup(err);
    }
    return NULL;
}
