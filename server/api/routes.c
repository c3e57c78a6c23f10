/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The route table: every endpoint with the roles that may call it and the
 * largest body it accepts. Anything not listed here is 404; a route whose
 * roles are 0 is denied to all. Keep docs/api.md and docs/openapi.yaml (the
 * contract, checked by tests/integration/test_openapi.py) in step with this table.
 */
#include <stdint.h>

#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define J 4096 /* small JSON bodies */

#define ROUTE(m, p, r, max, h)                                                                     \
    {                                                                                              \
        .method = (m), .pattern = (p), .roles = (r), .max_body = (max), .handle = (h)              \
    }

/* A streaming route: body chunks go to body, begin runs before reading. */
#define STREAM(m, p, r, max, b, h)                                                                 \
    {                                                                                              \
        .method = (m), .pattern = (p), .roles = (r), .max_body = (max), .begin = (b),              \
        .body = api_uploads_body, .handle = (h)                                                    \
    }

#define UPLOADERS        (DEMS_ROLE_ADMIN | DEMS_ROLE_OFFICER | DEMS_ROLE_DEVICE | DEMS_ROLE_SUBMITTER)
#define EVIDENCE_READERS (DEMS_ROLE_ADMIN | DEMS_ROLE_OFFICER | DEMS_ROLE_PROSECUTOR)
#define CASE_CREATORS    (DEMS_ROLE_ADMIN | DEMS_ROLE_OFFICER)
/* A JSON body carrying a base64 image of up to 10 MiB. */
#define FACE_IMAGE_BODY ((size_t)(10u << 20) / 3 * 4 + 64 * 1024)
#define NO_LIMIT        SIZE_MAX /* bounded by each upload's Upload-Length instead */

const struct dems_route dems_routes[] = {
    ROUTE(DEMS_HTTP_GET, "/healthz", DEMS_ROLE_PUBLIC, 0, api_healthz),
    ROUTE(DEMS_HTTP_GET, "/readyz", DEMS_ROLE_PUBLIC, 0, api_readyz),
    /* The API contract, docs/openapi.yaml: every route below is in it (test_openapi.py). */
    ROUTE(DEMS_HTTP_GET, "/v1/openapi.json", DEMS_ROLE_PUBLIC, 0, api_openapi),
    ROUTE(DEMS_HTTP_GET, "/", DEMS_ROLE_PUBLIC, 0, api_staff_redirect),
    ROUTE(DEMS_HTTP_GET, "/staff", DEMS_ROLE_PUBLIC, 0, api_staff_redirect),
    ROUTE(DEMS_HTTP_GET, "/staff/", DEMS_ROLE_PUBLIC, 0, api_staff_index),
    ROUTE(DEMS_HTTP_GET, "/staff/{file}", DEMS_ROLE_PUBLIC, 0, api_staff_file),
    ROUTE(DEMS_HTTP_POST, "/v1/auth/login", DEMS_ROLE_PUBLIC, J, api_login),
    ROUTE(DEMS_HTTP_POST, "/v1/auth/logout", DEMS_ROLE_STAFF, 0, api_logout),
    ROUTE(DEMS_HTTP_GET, "/v1/me", DEMS_ROLE_STAFF, 0, api_me),
    ROUTE(DEMS_HTTP_POST, "/v1/me/totp", DEMS_ROLE_STAFF, 0, api_totp_enrol),
    ROUTE(DEMS_HTTP_POST, "/v1/me/totp/confirm", DEMS_ROLE_STAFF, J, api_totp_confirm),
    ROUTE(DEMS_HTTP_GET, "/v1/me/tokens", DEMS_ROLE_STAFF, 0, api_tokens_list),
    ROUTE(DEMS_HTTP_POST, "/v1/me/tokens", DEMS_ROLE_STAFF, J, api_tokens_create),
    ROUTE(DEMS_HTTP_DELETE, "/v1/me/tokens/{id}", DEMS_ROLE_STAFF, 0, api_tokens_revoke),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/users", DEMS_ROLE_ADMIN, 0, api_admin_users_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/users", DEMS_ROLE_ADMIN, J, api_admin_users_create),
    ROUTE(DEMS_HTTP_PATCH, "/v1/admin/users/{id}", DEMS_ROLE_ADMIN, J, api_admin_users_update),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/users/{id}/password", DEMS_ROLE_ADMIN, J,
          api_admin_users_password),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/lockouts", DEMS_ROLE_ADMIN, 0, api_lockouts_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/lockouts/lift", DEMS_ROLE_ADMIN, J, api_lockouts_lift),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/key", DEMS_ROLE_PUBLIC, 0, api_ledger_key),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/keys", DEMS_ROLE_PUBLIC, 0, api_ledger_keys),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/ledger/rotate-key", DEMS_ROLE_ADMIN, J, api_ledger_rotate_key),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/checkpoint", DEMS_ROLE_PUBLIC, 0, api_ledger_checkpoint),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/witness/key", DEMS_ROLE_PUBLIC, 0, api_witness_key),
    /* C2SP tlog-witness: the path and the plain-text bodies are the protocol's (docs/api.md). */
    {.method = DEMS_HTTP_POST,
     .pattern = "/add-checkpoint",
     .roles = DEMS_ROLE_PUBLIC,
     .max_body = DEMS_WITNESS_MAX_BODY,
     .body = api_witness_body,
     .handle = api_witness_add_checkpoint},
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/timestamps", DEMS_ROLE_PUBLIC, 0, api_ledger_timestamps),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/entries", DEMS_ROLE_STAFF, 0, api_ledger_entries),
    {.method = DEMS_HTTP_GET,
     .pattern = "/v1/ledger/proof/inclusion",
     .roles = DEMS_ROLE_STAFF,
     .handle = api_ledger_inclusion,
     .fold = api_ledger_inclusion_fold},
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/proof/consistency", DEMS_ROLE_PUBLIC, 0,
          api_ledger_consistency),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/export", DEMS_ROLE_STAFF, 0, api_ledger_export),
    /* The log as C2SP tlog-tiles (tiles.c); entry bundles before hash tiles,
     * whose {tile*} would match them too. Bundles are entries: staff. */
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/tlog/checkpoint", DEMS_ROLE_PUBLIC, 0, api_tiles_checkpoint),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/tlog/tile/entries/{bundle*}", DEMS_ROLE_STAFF, 0,
          api_tiles_entries),
    ROUTE(DEMS_HTTP_GET, "/v1/ledger/tlog/tile/{tile*}", DEMS_ROLE_PUBLIC, 0, api_tiles_tile),
    ROUTE(DEMS_HTTP_GET, "/v1/evidence", EVIDENCE_READERS, 0, api_evidence_list),
    ROUTE(DEMS_HTTP_GET, "/v1/evidence/{id}", EVIDENCE_READERS, 0, api_evidence_get),
    {.method = DEMS_HTTP_GET,
     .pattern = "/v1/evidence/{id}/content",
     .roles = EVIDENCE_READERS,
     .handle = api_evidence_content,
     .fold = api_evidence_content_fold},
    ROUTE(DEMS_HTTP_GET, "/v1/evidence/{id}/custody", EVIDENCE_READERS, 0, api_evidence_custody),
    ROUTE(DEMS_HTTP_GET, "/v1/evidence/{id}/preview", EVIDENCE_READERS, 0, api_evidence_preview),
    ROUTE(DEMS_HTTP_GET, "/v1/evidence/{id}/poster", EVIDENCE_READERS, 0, api_evidence_poster),
    /* The WebVTT index's cues name "sprite.jpg#xywh=...", relative to it. */
    ROUTE(DEMS_HTTP_GET, "/v1/evidence/{id}/thumbnails", EVIDENCE_READERS, 0,
          api_evidence_thumbnails),
    ROUTE(DEMS_HTTP_GET, "/v1/evidence/{id}/sprite.jpg", EVIDENCE_READERS, 0, api_evidence_sprite),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/devices", DEMS_ROLE_ADMIN, 0, api_devices_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/devices", DEMS_ROLE_ADMIN, 64 * 1024, api_devices_enrol),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/devices/ca", DEMS_ROLE_ADMIN, 0, api_devices_ca),
    ROUTE(DEMS_HTTP_PATCH, "/v1/admin/devices/{id}", DEMS_ROLE_ADMIN, J, api_devices_update),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/devices/{id}/reenrol", DEMS_ROLE_ADMIN, 64 * 1024,
          api_devices_reenrol),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/devices/{id}/revoke", DEMS_ROLE_ADMIN, 0, api_devices_revoke),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/devices/{id}/assign", DEMS_ROLE_ADMIN, J, api_devices_assign),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/jobs", DEMS_ROLE_ADMIN, 0, api_jobs_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/jobs", DEMS_ROLE_ADMIN, 64 * 1024 + J, api_jobs_create),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/jobs/{id}", DEMS_ROLE_ADMIN, 0, api_jobs_get),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/jobs/{id}/retry", DEMS_ROLE_ADMIN, 0, api_jobs_retry),
    ROUTE(DEMS_HTTP_POST, "/v1/cases", CASE_CREATORS, J, api_cases_create),
    ROUTE(DEMS_HTTP_GET, "/v1/cases", DEMS_ROLE_STAFF, 0, api_cases_list),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}", DEMS_ROLE_STAFF, 0, api_cases_get),
    ROUTE(DEMS_HTTP_PATCH, "/v1/cases/{id}", CASE_CREATORS, J, api_cases_update),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/close", CASE_CREATORS, J, api_cases_close),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/reopen", CASE_CREATORS, J, api_cases_reopen),
    ROUTE(DEMS_HTTP_GET, "/v1/exhibits", DEMS_ROLE_STAFF, 0, api_exhibits_search),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/exhibits", DEMS_ROLE_STAFF, 0, api_exhibits_list),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/exhibits", CASE_CREATORS, J, api_exhibits_add),
    ROUTE(DEMS_HTTP_PATCH, "/v1/cases/{id}/exhibits/{xid}", CASE_CREATORS, J, api_exhibits_update),
    ROUTE(DEMS_HTTP_DELETE, "/v1/cases/{id}/exhibits/{xid}", CASE_CREATORS, J, api_exhibits_remove),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/members", DEMS_ROLE_STAFF, 0, api_members_list),
    ROUTE(DEMS_HTTP_PUT, "/v1/cases/{id}/members/{username}", CASE_CREATORS, J, api_members_set),
    ROUTE(DEMS_HTTP_DELETE, "/v1/cases/{id}/members/{username}", CASE_CREATORS, 0,
          api_members_remove),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/shares", DEMS_ROLE_STAFF, 0, api_shares_list),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/shares", CASE_CREATORS, J, api_shares_create),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/shares/{sid}/revoke", CASE_CREATORS, J,
          api_shares_revoke),
    ROUTE(DEMS_HTTP_GET, "/v1/me/shares", DEMS_ROLE_STAFF, 0, api_shares_mine),
    ROUTE(DEMS_HTTP_POST, "/v1/qr", DEMS_ROLE_STAFF, 2 * 1024, api_qr),
    /* Bundles: the handler decides by case role (bundles.c). */
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/bundles", DEMS_ROLE_STAFF, J, api_bundles_create),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/bundles", DEMS_ROLE_STAFF, 0, api_bundles_list),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/bundles/{bid}", DEMS_ROLE_STAFF, 0, api_bundles_get),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/bundles/{bid}/content", DEMS_ROLE_STAFF, 0,
          api_bundles_content),
    /* Disclosure links: issued by a prosecutor (the handler checks the share), revoked
     * by them or the case's lead; used by the holder's session (disclosure.c). */
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/disclosures", DEMS_ROLE_STAFF, J, api_disclosures_create),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/disclosures", DEMS_ROLE_STAFF, 0, api_disclosures_list),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/disclosures/{did}/revoke", DEMS_ROLE_STAFF, J,
          api_disclosures_revoke),
    ROUTE(DEMS_HTTP_GET, "/disclosure/", DEMS_ROLE_PUBLIC, 0, api_disclosure_page),
    ROUTE(DEMS_HTTP_POST, "/v1/disclosure/open", DEMS_ROLE_PUBLIC, J, api_disclosure_open),
    ROUTE(DEMS_HTTP_GET, "/v1/disclosure", DEMS_ROLE_DISCLOSURE, 0, api_disclosure_get),
    ROUTE(DEMS_HTTP_GET, "/v1/disclosure/bundle", DEMS_ROLE_DISCLOSURE, 0, api_disclosure_bundle),
    ROUTE(DEMS_HTTP_GET, "/v1/disclosure/bundle/content", DEMS_ROLE_DISCLOSURE, 0,
          api_disclosure_bundle_content),
    ROUTE(DEMS_HTTP_GET, "/v1/disclosure/exhibits/{xid}/preview", DEMS_ROLE_DISCLOSURE, 0,
          api_disclosure_preview),
    ROUTE(DEMS_HTTP_GET, "/v1/disclosure/exhibits/{xid}/poster", DEMS_ROLE_DISCLOSURE, 0,
          api_disclosure_poster),
    ROUTE(DEMS_HTTP_GET, "/v1/disclosure/exhibits/{xid}/thumbnails", DEMS_ROLE_DISCLOSURE, 0,
          api_disclosure_thumbnails),
    ROUTE(DEMS_HTTP_GET, "/v1/disclosure/exhibits/{xid}/sprite.jpg", DEMS_ROLE_DISCLOSURE, 0,
          api_disclosure_sprite),
    /* Public submissions: officers' links (submission_links.c), the portal (portal.c). */
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/submission-links", CASE_CREATORS, J,
          api_submission_links_create),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/submission-links", CASE_CREATORS, 0,
          api_submission_links_list),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/submission-links/{lid}/revoke", CASE_CREATORS, J,
          api_submission_links_revoke),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/submissions", CASE_CREATORS, 0, api_submissions_list),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/submissions/{sid}/accept", CASE_CREATORS, J,
          api_submissions_accept),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/submissions/{sid}/reject", CASE_CREATORS, J,
          api_submissions_reject),
    ROUTE(DEMS_HTTP_GET, "/portal/", DEMS_ROLE_PUBLIC, 0, api_portal_page),
    ROUTE(DEMS_HTTP_GET, "/portal/{file}", DEMS_ROLE_PUBLIC, 0, api_portal_file),
    ROUTE(DEMS_HTTP_POST, "/v1/portal/open", DEMS_ROLE_PUBLIC, 4 * 1024, api_portal_open),
    ROUTE(DEMS_HTTP_POST, "/v1/portal/submissions", DEMS_ROLE_PUBLIC, 32 * 1024, api_portal_submit),
    ROUTE(DEMS_HTTP_GET, "/v1/portal/submission", DEMS_ROLE_SUBMITTER, 0, api_portal_submission),
    ROUTE(DEMS_HTTP_POST, "/v1/portal/submission/finish", DEMS_ROLE_SUBMITTER, J,
          api_portal_finish),
    ROUTE(DEMS_HTTP_GET, "/v1/portal/receipt", DEMS_ROLE_SUBMITTER, 0, api_portal_receipt),
    ROUTE(DEMS_HTTP_OPTIONS, "/v1/uploads", DEMS_ROLE_PUBLIC, 0, api_uploads_options),
    STREAM(DEMS_HTTP_POST, "/v1/uploads", UPLOADERS, NO_LIMIT, api_uploads_create_begin,
           api_uploads_patch_end),
    STREAM(DEMS_HTTP_PATCH, "/v1/uploads/{id}", UPLOADERS, NO_LIMIT, api_uploads_patch_begin,
           api_uploads_patch_end),
    ROUTE(DEMS_HTTP_GET, "/v1/uploads/{id}", UPLOADERS, 0, api_uploads_get),
    ROUTE(DEMS_HTTP_DELETE, "/v1/uploads/{id}", UPLOADERS, 0, api_uploads_delete),
    /* Face search (docs/face-search.md): the permission is checked by the handlers. */
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/face", CASE_CREATORS, 0, api_face_case_status),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/face/indexing", CASE_CREATORS, J, api_face_case_indexing),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/face/tracks", CASE_CREATORS, 0, api_face_case_tracks),
    ROUTE(DEMS_HTTP_GET, "/v1/face/tracks/{id}/crop", CASE_CREATORS, 0, api_face_track_crop),
    ROUTE(DEMS_HTTP_POST, "/v1/cases/{id}/face/searches", CASE_CREATORS, FACE_IMAGE_BODY,
          api_face_searches_create),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/face/searches", CASE_CREATORS, 0, api_face_searches_list),
    ROUTE(DEMS_HTTP_GET, "/v1/cases/{id}/face/searches/{sid}", CASE_CREATORS, 0,
          api_face_searches_get),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/face/searches", DEMS_ROLE_ADMIN, 0,
          api_face_searches_oversight),
    ROUTE(DEMS_HTTP_GET, "/v1/face/galleries", CASE_CREATORS, 0, api_face_galleries_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/face/galleries", DEMS_ROLE_ADMIN, J,
          api_face_galleries_create),
    ROUTE(DEMS_HTTP_PUT, "/v1/admin/face/galleries/{id}/users/{username}", DEMS_ROLE_ADMIN, 0,
          api_face_gallery_users_set),
    ROUTE(DEMS_HTTP_DELETE, "/v1/admin/face/galleries/{id}/users/{username}", DEMS_ROLE_ADMIN, 0,
          api_face_gallery_users_set),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/face/galleries/{id}/subjects", DEMS_ROLE_ADMIN, 0,
          api_face_subjects_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/face/galleries/{id}/subjects", DEMS_ROLE_ADMIN,
          FACE_IMAGE_BODY, api_face_subjects_create),
    ROUTE(DEMS_HTTP_DELETE, "/v1/admin/face/galleries/{id}/subjects/{sid}", DEMS_ROLE_ADMIN, J,
          api_face_subjects_remove),
    ROUTE(DEMS_HTTP_GET, "/v1/face/subjects/{id}/crop", CASE_CREATORS, 0, api_face_subject_crop),
    /* Settings that change at run time (docs/configuration.md). */
    ROUTE(DEMS_HTTP_GET, "/v1/admin/settings", DEMS_ROLE_ADMIN, 0, api_settings_list),
    ROUTE(DEMS_HTTP_PUT, "/v1/admin/settings/{key}", DEMS_ROLE_ADMIN, 8192, api_settings_put),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/settings/{key}/history", DEMS_ROLE_ADMIN, 0,
          api_settings_history),
    /* Prometheus metrics (docs/operations.md, "Metrics and alerts"). */
    ROUTE(DEMS_HTTP_GET, "/metrics", DEMS_ROLE_ADMIN, 0, api_metrics),
    /* Audit reports from the ledger (docs/api.md, "Audit reports"). */
    ROUTE(DEMS_HTTP_GET, "/v1/admin/audit/evidence/{id}", DEMS_ROLE_ADMIN, 0, api_audit_evidence),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/audit/cases/{id}", DEMS_ROLE_ADMIN, 0, api_audit_case),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/audit/users/{username}", DEMS_ROLE_ADMIN, 0, api_audit_user),
    /* Retention, holds and disposal (docs/operations.md). */
    ROUTE(DEMS_HTTP_GET, "/v1/admin/retention/policies", DEMS_ROLE_ADMIN, 0,
          api_retention_policies_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/retention/policies", DEMS_ROLE_ADMIN, J,
          api_retention_policies_create),
    ROUTE(DEMS_HTTP_PUT, "/v1/admin/cases/{id}/retention", DEMS_ROLE_ADMIN, J,
          api_retention_case_set),
    ROUTE(DEMS_HTTP_PUT, "/v1/admin/evidence/{id}/retention", DEMS_ROLE_ADMIN, J,
          api_retention_evidence_set),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/holds", DEMS_ROLE_ADMIN, 0, api_holds_list),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/holds", DEMS_ROLE_ADMIN, J, api_holds_create),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/holds/{id}/release", DEMS_ROLE_ADMIN, J, api_holds_release),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/disposal/due", DEMS_ROLE_ADMIN, 0, api_disposal_due),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/disposal/batches", DEMS_ROLE_ADMIN, 0,
          api_disposal_batches_create),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/disposal/batches", DEMS_ROLE_ADMIN, 0,
          api_disposal_batches_list),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/disposal/batches/{id}", DEMS_ROLE_ADMIN, 0,
          api_disposal_batches_get),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/disposal/batches/{id}/items", DEMS_ROLE_ADMIN, 0,
          api_disposal_batch_items),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/disposal/batches/{id}/approve", DEMS_ROLE_ADMIN, J,
          api_disposal_batches_approve),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/disposal/batches/{id}/cancel", DEMS_ROLE_ADMIN, J,
          api_disposal_batches_cancel),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/evidence/{id}/recover", DEMS_ROLE_ADMIN, J,
          api_disposal_recover),
    ROUTE(DEMS_HTTP_POST, "/v1/admin/face/galleries/{id}/imports", DEMS_ROLE_ADMIN, J,
          api_face_imports_create),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/face/galleries/{id}/imports", DEMS_ROLE_ADMIN, 0,
          api_face_imports_list),
    ROUTE(DEMS_HTTP_GET, "/v1/admin/face/galleries/{id}/imports/{iid}", DEMS_ROLE_ADMIN, 0,
          api_face_imports_get),
};

const size_t dems_nroutes = sizeof(dems_routes) / sizeof(dems_routes[0]);

void dems_api_periodic(struct dems_loop *loop)
{
    /* The first run is at start (loop.c); the sweep keeps its first run one
     * interval later, as before, so a start is not a full read of the store. */
    static bool started; /* loop 0 only */
    api_uploads_expire(loop);
    api_rate_prune(loop->db, loop->srv->cfg);
    api_disposal_run(loop);
    api_disposals_run(loop);
    api_settings_refresh(loop);
    upload_record_housekeeping(loop, !started);
    if (started)
        api_evidence_sweep(loop);
    dems_revoked_refresh(loop);
    started = true;
}
