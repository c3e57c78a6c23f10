/* SPDX-License-Identifier: Apache-2.0 */
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
#include <stddef.h>
#include <stdint.h>

#include "demsd/http.h"

/*
 * Starts authenticating req from its "Authorization: Bearer" header; without
 * one, for GET and HEAD only, from its dems_session cookie (a login session
 * token, for media elements that cannot send headers); otherwise from its TLS
 * client certificate (an enrolled device) into *out. A revoked device gets
 * DEMS_EFORBIDDEN (and an ACCESS_DENIED entry); a device whose certificate is
 * outside its validity window is answered 401 (certificate_expired or
 * certificate_not_yet_valid) before done runs with DEMS_EAUTH. Returns
 * DEMS_EAUTH at once (done never runs) when the credentials are missing or
 * malformed; otherwise
 * returns 0 and calls done(req, err) once, with err 0, DEMS_EAUTH (unknown,
 * revoked or expired token) or DEMS_EDB.
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

/* The session cookie's name. */
#define DEMS_SESSION_COOKIE "dems_session"

/*
 * Finds the dems_session cookie among h's Cookie headers. Returns 0 with
 * *ret_token borrowed from h, DEMS_ENOTFOUND when there is none, or
 * DEMS_EAUTH when it is there more than once or its value is not a token's
 * text (1 to 63 of A-Z a-z 0-9 _ -).
 */
int dems_auth_cookie_token(const struct dems_http_head *h, struct dems_str *ret_token);

/*
 * Formats the Set-Cookie value for token (Path=/v1/; Secure; HttpOnly;
 * SameSite=Strict; Max-Age=max_age); an empty token with max_age 0 clears
 * the cookie. Returns 0 or DEMS_ETOOBIG when out is too small (128 bytes
 * suffice).
 */
int dems_auth_cookie_format(const char *token, uint64_t max_age, char *out, size_t outlen);

/* Validates a username: 1..64 of [A-Za-z0-9._@-]. */
bool dems_auth_username_ok(const char *name);

/*
 * Folds a username to the form it is stored and compared in (ASCII lower
 * case), in place: "OfficerA" and "officera" are one account.
 */
void dems_auth_username_fold(char *name);

#endif
