/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the handlers in server/api/: JSON field readers that answer 400
 * themselves, the timestamp format, and every handler's prototype (the route
 * table in routes.c names them).
 */
#ifndef DEMS_API_INT_H
#define DEMS_API_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "demsd/http.h"

/* SQL that renders a timestamptz column as RFC 3339 UTC. */
#define API_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/*
 * Reads a string member of the request body. On a missing (when required),
 * non-string, empty or longer-than-max value it answers 400 naming the field
 * and returns false. An absent optional field gives *ret NULL and true.
 */
bool api_get_str(struct dems_req *req, const char *key, size_t max, bool required,
                 const char **ret);

/* Reads an optional integer member in [min, max]; def when absent. */
bool api_get_int(struct dems_req *req, const char *key, int64_t min, int64_t max, int64_t def,
                 int64_t *ret);

/* Answers 503/500 for a failed query. */
void api_db_error(struct dems_req *req, const PGresult *res, int err);

/* Parses a decimal id from a column or path segment; 0 when not one. */
int64_t api_id(const char *s, size_t len);

/* Routes are attached in routes.c. */
void api_healthz(struct dems_req *req);
void api_readyz(struct dems_req *req);
void api_login(struct dems_req *req);
void api_logout(struct dems_req *req);
void api_me(struct dems_req *req);
void api_totp_enrol(struct dems_req *req);
void api_totp_confirm(struct dems_req *req);
void api_tokens_create(struct dems_req *req);
void api_tokens_list(struct dems_req *req);
void api_tokens_revoke(struct dems_req *req);
void api_admin_users_create(struct dems_req *req);
void api_admin_users_list(struct dems_req *req);
void api_uploads_options(struct dems_req *req);
int api_uploads_create_begin(struct dems_req *req);
int api_uploads_patch_begin(struct dems_req *req);
int api_uploads_body(struct dems_req *req, const uint8_t *data, size_t n);
void api_uploads_patch_end(struct dems_req *req);
void api_uploads_get(struct dems_req *req);
void api_uploads_delete(struct dems_req *req);

void api_ledger_key(struct dems_req *req);
void api_ledger_keys(struct dems_req *req);
void api_ledger_rotate_key(struct dems_req *req);
void api_ledger_checkpoint(struct dems_req *req);
void api_ledger_entries(struct dems_req *req);
void api_ledger_inclusion(struct dems_req *req);
void api_ledger_consistency(struct dems_req *req);
void api_ledger_export(struct dems_req *req);
void api_evidence_get(struct dems_req *req);
void api_evidence_list(struct dems_req *req);
void api_staff_index(struct dems_req *req);
void api_staff_file(struct dems_req *req);
void api_staff_redirect(struct dems_req *req);
void api_devices_list(struct dems_req *req);
void api_devices_enrol(struct dems_req *req);
void api_devices_revoke(struct dems_req *req);
void api_evidence_content(struct dems_req *req);
void api_evidence_preview(struct dems_req *req);
void api_evidence_poster(struct dems_req *req);
void api_evidence_thumbnails(struct dems_req *req);
void api_evidence_sprite(struct dems_req *req);
void api_jobs_list(struct dems_req *req);
void api_jobs_get(struct dems_req *req);
void api_jobs_create(struct dems_req *req);
void api_jobs_retry(struct dems_req *req);

/* Marks abandoned uploads expired and deletes their staged bytes. */
struct dems_db_pool;
void api_uploads_expire(struct dems_db_pool *db);

/* Starts the blob integrity sweep when blob_verify_interval has passed. */
struct dems_loop;
void api_evidence_sweep(struct dems_loop *loop);

#endif
