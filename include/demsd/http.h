/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP for handlers: requests, responses, routes and roles.
 *
 * A request lives from its head until its response has been written (or its
 * connection died). Handlers run on the connection's loop thread and must
 * never block; they answer with dems_resp_* exactly once, now or later from
 * an async callback. If the connection dies first, dems_req_is_aborted()
 * turns true and dems_resp_* quietly do nothing; the request object stays
 * valid while someone holds a reference (dems_req_ref/unref).
 */
#ifndef DEMSD_HTTP_H
#define DEMSD_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/http.h"
#include "dems/str.h"

struct dems_loop;
struct dems_req;
struct dems_auth_fold;
struct pg_result; /* libpq's PGresult */

/* Roles as a bit set. A route lists those that may call it. */
enum {
    DEMS_ROLE_ADMIN = 1u << 0,
    DEMS_ROLE_OFFICER = 1u << 1,
    DEMS_ROLE_PROSECUTOR = 1u << 2,
    DEMS_ROLE_STAFF = DEMS_ROLE_ADMIN | DEMS_ROLE_OFFICER | DEMS_ROLE_PROSECUTOR,
    DEMS_ROLE_DEVICE = 1u << 3, /* an enrolled dock, by its TLS client certificate */
    /* The holder of a defence disclosure link, by its dems_disclosure cookie. */
    DEMS_ROLE_DISCLOSURE = 1u << 4,
    /* A member of the public handing in footage: the bearer token of their
     * submission (dems_ps_..., made by POST /v1/portal/submissions). */
    DEMS_ROLE_SUBMITTER = 1u << 5,
    /* No credentials needed (health, login). */
    DEMS_ROLE_PUBLIC = 1u << 30,
};

/* Parses "admin"/"officer"/"prosecutor"; 0 when unknown. */
unsigned dems_role_parse(const char *name);
/* The name of a single role bit; "unknown" otherwise. */
const char *dems_role_name(unsigned role);

/* Who is calling, once authenticated. */
struct dems_principal {
    int64_t user_id;
    int64_t token_id;
    unsigned role;         /* one DEMS_ROLE_* bit */
    char username[80];     /* for devices: "device:<serial>" */
    char token_kind[16];   /* "session", "api" or "device" */
    int64_t device_id;     /* devices only */
    char serial[65];       /* devices only */
    int64_t disclosure_id; /* disclosure link holders only (username "disclosure/<id>") */
    int64_t submission_id; /* submitters only (username "submission/<id>") */
    char csrf[65];         /* login sessions: the token's CSRF token (dems_auth_csrf) */
    bool face_search;      /* staff: an admin granted the face-search permission */
    bool totp_setup;       /* staff: TOTP is required and not set up: only the setup routes */
};

struct dems_route {
    enum dems_http_method method;
    const char *pattern; /* "/v1/me/tokens/{id}": {name} matches one segment */
    unsigned roles;      /* who may call it; 0 denies everyone */
    size_t max_body;     /* largest body accepted; 0 = none */
    void (*handle)(struct dems_req *req);
    /*
     * Streaming routes (body != NULL) get their body in chunks instead of a
     * parsed JSON object. begin (optional) runs after authorisation and
     * before any body byte is read: return 0 to read the body now,
     * DEMS_EAGAIN to read it after a later dems_req_continue(req), or answer
     * and return a negative DEMS_E*. body returns 0 or a negative DEMS_E*
     * (answered with that error unless the handler already answered).
     * handle then runs at the end of the message.
     */
    int (*begin)(struct dems_req *req);
    int (*body)(struct dems_req *req, const uint8_t *data, size_t n);
    /*
     * Optional: the handler's first read, folded into the lookup of a staff
     * token so that the request costs one statement, not two (demsd/auth.h,
     * struct dems_auth_fold). Runs before authentication, from the path and
     * query only; returns false when this request's read is not folded
     * (the handler then reads as usual). It must not answer.
     */
    bool (*fold)(struct dems_req *req, struct dems_auth_fold *ret);
};

/* Lets a streaming request whose begin returned DEMS_EAGAIN read its body. */
void dems_req_continue(struct dems_req *req);

/*
 * A streaming body handler that returns DEMS_EAGAIN (it waits for
 * something, e.g. a part going to the store) may also stop the connection's
 * reading with dems_req_hold; dems_req_resume reads on (and undoes a hold).
 */
void dems_req_hold(struct dems_req *req);
void dems_req_resume(struct dems_req *req);

/*
 * The row(s) of the route's folded read (route->fold), read with the
 * caller's token, or NULL when it was not folded (another kind of
 * credential, or no fold). Borrowed; valid while req is. Set (taking
 * ownership) by authentication only.
 */
const struct pg_result *dems_req_folded(const struct dems_req *req);
void dems_req_set_folded(struct dems_req *req, struct pg_result *res);

/* Per-route state a streaming handler keeps on its request (borrowed). */
void dems_req_set_data(struct dems_req *req, void *data, void (*free_fn)(void *data));
void *dems_req_data(const struct dems_req *req);

/* The route table (server/api/routes.c). */
extern const struct dems_route dems_routes[];
extern const size_t dems_nroutes;

/*
 * Finds the route for method and path. Returns the route and fills params
 * (DEMS_MAX_PATH_PARAMS values in pattern order, borrowed from path), or NULL
 * with *ret_status 404 (no path) or 405 (path exists, method does not; then
 * allow gets the allowed methods, comma-separated).
 */
const struct dems_route *dems_router_match(enum dems_http_method method, struct dems_str path,
                                           struct dems_str *params, size_t *ret_nparams,
                                           int *ret_status, char *allow, size_t allowlen);

/* Accessors (borrowed; valid for the life of the request). */
const struct dems_http_head *dems_req_head(const struct dems_req *req);
const char *dems_req_id(const struct dems_req *req);
const char *dems_req_peer(const struct dems_req *req);
struct dems_loop *dems_req_loop(const struct dems_req *req);
const struct dems_principal *dems_req_principal(const struct dems_req *req);
struct dems_str dems_req_param(const struct dems_req *req, size_t i);
bool dems_req_is_aborted(const struct dems_req *req);

/* SHA-256 (hex) of the TLS client certificate the connection presented, or NULL. */
const char *dems_req_peer_cert(struct dems_req *req);

/* The JSON body (an object), parsed; NULL when the route takes none. */
json_t *dems_req_json(const struct dems_req *req);

/*
 * A query-string parameter, decoded (percent-escapes and '+' as a space, see
 * dems_http_query_parse; the value is also NUL-terminated), borrowed for the
 * life of the request; false when absent. A malformed query string (bad
 * escape, NUL byte, repeated name) never reaches a handler: it is answered
 * 400 invalid_parameter before the route runs.
 */
bool dems_req_query(const struct dems_req *req, const char *name, struct dems_str *ret_value);

/* Every decoded query parameter, in order (borrowed for the life of the request). */
const struct dems_http_query *dems_req_query_all(const struct dems_req *req);

void dems_req_ref(struct dems_req *req);
void dems_req_unref(struct dems_req *req);

/* Adds a response header (both copied) before the response is sent. */
int dems_resp_header(struct dems_req *req, const char *name, const char *value);

/* Sends status with a JSON body (reference stolen; NULL sends no body). */
void dems_resp_json(struct dems_req *req, int status, json_t *body);

/* Sends {"error":{"code","message"}} with status. */
void dems_resp_error(struct dems_req *req, int status, const char *code, const char *message);

/* dems_resp_error with extension members (RFC 9457 section 3.2) from extra (stolen; may be NULL).
 */
void dems_resp_problem(struct dems_req *req, int status, const char *code, const char *message,
                       json_t *extra);

/* dems_resp_error for a DEMS_E* value, using the error table. */
void dems_resp_err(struct dems_req *req, int err);

/* Sends status with a body of the given type (copied). */
void dems_resp_bytes(struct dems_req *req, int status, const char *content_type, const void *data,
                     size_t len);

/* Periodic housekeeping (server/api): run on one loop about once a minute. */
void dems_api_periodic(struct dems_loop *loop);

/*
 * A response whose body is produced in pieces (downloads, exports): headers
 * now, then dems_resp_write as data is ready, then dems_resp_end. length is
 * the body's size, or UINT64_MAX for chunked transfer coding. on_drain runs
 * (on the loop) whenever the connection can take more — produce one piece
 * per call, or start async work and write when it is done. The connection's
 * queued output stays bounded as long as the producer checks
 * dems_resp_wants_more. Returns 0, or DEMS_EIO when already answered/aborted.
 */
int dems_resp_start(struct dems_req *req, int status, const char *content_type, uint64_t length,
                    void (*on_drain)(struct dems_req *req));
int dems_resp_write(struct dems_req *req, const void *data, size_t n);
void dems_resp_end(struct dems_req *req);
bool dems_resp_wants_more(const struct dems_req *req);

/* Cuts the connection: for a streamed body that cannot be completed. */
void dems_resp_abort(struct dems_req *req);

/* For server/core: connections on a loop. */
struct sockaddr;

/*
 * Takes ownership of an accepted socket and serves HTTPS on it, and of its
 * admission slot (key; given back when the connection closes, or at once
 * when it cannot be set up).
 */
struct dems_admit_key;
void dems_conn_accept(struct dems_loop *loop, int fd, const struct sockaddr *sa,
                      const struct dems_admit_key *key);

/* Closes idle connections and marks busy ones to close after their response. */
void dems_conn_drain_all(struct dems_loop *loop);

/* Closes every connection now (end of the shutdown grace period). */
void dems_conn_close_all(struct dems_loop *loop);

/* Frees connections closed earlier (runs outside their callbacks). */
void dems_conn_reap(struct dems_loop *loop);

#endif
