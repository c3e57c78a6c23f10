/*
 * Authentication and accounts: bearer tokens (login sessions and API tokens,
 * stored only as SHA-256), Argon2id passwords verified on the work pool,
 * TOTP for staff, and login throttling per account and per address, kept in
 * PostgreSQL so every demsd instance sees the same counts.
 */
#ifndef DEMSD_AUTH_H
#define DEMSD_AUTH_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "demsd/http.h"

/*
 * Starts authenticating req from its "Authorization: Bearer" header, or —
 * without one — from its TLS client certificate (an enrolled device) into
 * *out. A revoked device gets DEMS_EFORBIDDEN (and an ACCESS_DENIED entry). Returns DEMS_EAUTH at
 * once (done never runs) when the header is missing or malformed; otherwise returns 0 and calls
 * done(req, err) once, with err 0, DEMS_EAUTH (unknown, revoked or expired token) or DEMS_EDB.
 */
int dems_auth_begin(struct dems_req *req, struct dems_principal *out,
                    void (*done)(struct dems_req *req, int err));

/*
 * Creates a user synchronously (command-line bootstrap). role is one of
 * admin, officer, prosecutor. Returns 0, DEMS_ECONFLICT (name taken),
 * DEMS_EINVAL (bad name/role/password) or DEMS_EDB; err gets one line.
 */
int dems_auth_create_user_sync(PGconn *db, const char *username, const char *role,
                               const char *password, char *err, size_t errlen);

/*
 * Appends an ACCESS_DENIED ledger entry for req (who, what path, why); does
 * not wait for it. Devices are named by serial, users by username.
 */
void dems_auth_denied(struct dems_req *req, const char *reason);

/* Validates a username: 1..64 of [A-Za-z0-9._@-]. */
bool dems_auth_username_ok(const char *name);

#endif
