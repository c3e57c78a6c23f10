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
#include <time.h>

#include "dems/ledger.h"
#include "demsd/db.h"
#include "demsd/http.h"

/*
 * The lookup of a staff token (login session or API token) by the SHA-256
 * of its text, $1 in hex: the account, its role and the token, for a token
 * neither revoked nor expired of an account not disabled.
 */
#define DEMS_AUTH_TOKEN_SQL                                                                        \
    "SELECT u.id AS user_id, u.username, u.role, u.face_search, t.id AS token_id,"                 \
    " t.kind, u.totp_required AND NOT u.totp_enabled AS totp_setup"                                \
    " FROM auth_tokens t JOIN users u ON u.id = t.user_id"                                         \
    " WHERE t.token_hash = decode($1, 'hex') AND t.revoked_at IS NULL"                             \
    " AND t.expires_at > now() AND NOT u.disabled"

/*
 * A route's first read folded into the token lookup, so that a request
 * costs one statement where it cost two (the lookup, then the read). read
 * is a SELECT whose parameters are $2, $3, ...; it names the caller as
 * DEMS_AUTH_FOLD_UID (the account id) and DEMS_AUTH_FOLD_ALL (true for an
 * administrator: what api_viewer's sees_all says). The statement gives no
 * row for a token that is not found, as the lookup alone does; otherwise the
 * lookup's columns beside read's, one row per row of read, or one with
 * read's columns NULL when read finds nothing (read should have a column
 * that is never NULL, to tell). Authorisation is unchanged: the route's
 * roles and the TOTP rule are checked on the lookup's columns before the
 * handler runs, and read applies the same access conditions to the same
 * caller as the handler's own read would.
 */
#define DEMS_AUTH_FOLD_SQL(read)                                                                   \
    "SELECT * FROM (" DEMS_AUTH_TOKEN_SQL ") p LEFT JOIN LATERAL (" read ") f ON true"
#define DEMS_AUTH_FOLD_UID "p.user_id"
#define DEMS_AUTH_FOLD_ALL "(p.role = 'admin')"
#define DEMS_AUTH_FOLD_MAX 3

/* What a route's fold hook (struct dems_route) fills in. */
struct dems_auth_fold {
    struct dems_db_stmt *stmt;              /* DEMS_AUTH_FOLD_SQL(read), nparams 1 + nparams */
    int nparams;                            /* read's own: $2.. */
    const char *params[DEMS_AUTH_FOLD_MAX]; /* borrowed until dems_auth_begin returns */
    char text[72];                          /* room for one parameter, if params[i] points here */
};

/*
 * Starts authenticating req from its "Authorization: Bearer" header; without
 * one, for GET and HEAD only, from its dems_session cookie (a login session
 * token, for media elements that cannot send headers); otherwise from its TLS
 * client certificate (an enrolled device) into *out. A revoked device is
 * answered 403 device_revoked: at once, returning DEMS_EFORBIDDEN, when this
 * process knows (the revoked set, no database or ledger work); otherwise after
 * the lookup, with one ACCESS_DENIED entry as this process learns of it, and
 * done runs with DEMS_EFORBIDDEN. A device whose certificate is outside its
 * validity window is answered 401 (certificate_expired or
 * certificate_not_yet_valid) before done runs with DEMS_EAUTH. Returns
 * DEMS_EAUTH at once (done never runs) when the credentials are missing or
 * malformed; otherwise returns 0 and calls done(req, err) once, with err 0,
 * DEMS_EAUTH (unknown, revoked or expired token) or DEMS_EDB.
 *
 * fold (or NULL; borrowed for the call) is the route's read to fold into a
 * staff token's lookup (DEMS_AUTH_FOLD_SQL). It is used only when the
 * credential is such a token; then, before done runs with 0, its rows are
 * left on the request (dems_req_folded).
 */
int dems_auth_begin(struct dems_req *req, struct dems_principal *out,
                    const struct dems_auth_fold *fold, void (*done)(struct dems_req *req, int err));

/*
 * True for the routes an account that must set up TOTP first may reach
 * (its own /v1/me, the TOTP setup, sign-out); every other route answers it
 * 403 totp_setup_required.
 */
bool dems_auth_totp_setup_route(const struct dems_route *route);

/*
 * Creates a user synchronously (command-line bootstrap). role is one of
 * admin, officer, prosecutor. Returns 0, DEMS_ECONFLICT (name taken),
 * DEMS_EINVAL (bad name/role/password) or DEMS_EDB; err gets one line.
 */
int dems_auth_create_user_sync(PGconn *db, const char *username, const char *role,
                               const char *password, char *err, size_t errlen);

/*
 * Accounts for req being refused, without waiting: appends an ACCESS_DENIED
 * ledger entry (who, what path, why; devices named by serial, users by
 * username), or, once its principal or address is past its refusal bound
 * for the window (refusal_max_per_principal, refusal_max_per_address per
 * refusal_window), only counts it into the window's ACCESS_DENIED_SUMMARY
 * entry. artefact (32 bytes, or NULL) names the evidence refused, so the
 * refusal is found with the artefact's other entries. Returns 0 (an entry
 * was queued) or DEMS_ETHROTTLED (counted). A caller whose answer must not
 * differ (an evidence id hidden as unknown) answers the same either way;
 * others use dems_auth_refuse.
 */
int dems_auth_denied(struct dems_req *req, const char *reason, const uint8_t *artefact);

/*
 * Refuses req: dems_auth_denied, then answers status with code and detail
 * when the refusal was ledgered, or 429 too_many_refusals with Retry-After
 * (seconds until the window ends) when it was only counted.
 */
void dems_auth_refuse(struct dems_req *req, const char *reason, int status, const char *code,
                      const char *detail);

/* As dems_auth_refuse, for an actor the request has no principal for yet
 * (a disclosure link whose passcode was wrong: DEMS_LEDGER_ACTOR_LINK). */
void dems_auth_refuse_as(struct dems_req *req, enum dems_ledger_actor kind, const char *actor_id,
                         const char *reason, int status, const char *code, const char *detail);

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
 * The CSRF token of a login session: SHA-256("dems-csrf" NUL token), as 64
 * lower-case hex digits. The page reads it from /v1/me or the login
 * answer and sends it as X-CSRF-Token; with it (and only with it) the
 * session cookie also authorises requests that change state. A cross-site
 * page can neither read it nor send a custom header without a CORS
 * preflight, which demsd never grants.
 */
#define DEMS_CSRF_HEADER "x-csrf-token"
void dems_auth_csrf(const char *token, size_t len, char out[static 65]);

/* The prefix of a submitter's bearer token (dems_token_new kind "ps"). */
#define DEMS_SUBMITTER_TOKEN_PREFIX "dems_ps_"

/* The disclosure session cookie (a defence link holder's, docs/api.md). */
#define DEMS_DISCLOSURE_COOKIE "dems_disclosure"

/* As dems_auth_cookie_token for the cookie called name. */
int dems_auth_cookie_named(const struct dems_http_head *h, const char *name,
                           struct dems_str *ret_token);

/*
 * Formats the Set-Cookie value for token (Path=/v1/; Secure; HttpOnly;
 * SameSite=Strict; Max-Age=max_age); an empty token with max_age 0 clears
 * the cookie. Returns 0 or DEMS_ETOOBIG when out is too small (128 bytes
 * suffice).
 */
int dems_auth_cookie_format(const char *token, uint64_t max_age, char *out, size_t outlen);

/* The same for the disclosure cookie (Path=/v1/disclosure). */
int dems_auth_disclosure_cookie_format(const char *token, uint64_t max_age, char *out,
                                       size_t outlen);

/*
 * The revoked device certificates (server/auth/revoked.c): SHA-256
 * fingerprints (hex) with their devices' serials, one set per process shared
 * by every loop thread. Entries are only ever added (revocation is final).
 */
struct dems_revoked;
struct dems_loop;

/* Returns owned (empty); free with dems_revoked_free. NULL: out of memory. */
struct dems_revoked *dems_revoked_new(void);
void dems_revoked_free(struct dems_revoked *rv);

/* Adds a fingerprint: 1 when it was new, 0 when known, DEMS_ENOMEM/EINVAL. */
int dems_revoked_add(struct dems_revoked *rv, const char *sha256, const char *serial);

/* Whether a fingerprint is revoked (false for a NULL set). */
bool dems_revoked_has(struct dems_revoked *rv, const char *sha256);

/* Refused handshakes of one revoked device are logged at most this often. */
#define DEMS_REVOKED_LOG_INTERVAL 60

struct dems_revoked_refusal {
    char serial[65];
    uint64_t refused; /* refusals since the last logged one, this one included */
    bool log_due;     /* DEMS_REVOKED_LOG_INTERVAL has passed: log this one */
};

/*
 * Counts a refusal of a revoked fingerprint: returns true and fills *ret
 * when sha256 is revoked, false (ret untouched) when it is not.
 */
bool dems_revoked_refuse(struct dems_revoked *rv, const char *sha256, time_t now,
                         struct dems_revoked_refusal *ret);

/* Adds every revoked device in the database (synchronous; at start). */
int dems_revoked_load(struct dems_revoked *rv, const char *conninfo, char *err, size_t errlen);

/* Adds revocations made elsewhere (async on loop; housekeeping). */
void dems_revoked_refresh(struct dems_loop *loop);

/* Validates a username: 1..64 of [A-Za-z0-9._@-]. */
bool dems_auth_username_ok(const char *name);

/*
 * Folds a username to the form it is stored and compared in (ASCII lower
 * case), in place: "OfficerA" and "officera" are one account.
 */
void dems_auth_username_fold(char *name);

#endif
