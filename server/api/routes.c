/*
 * The route table: every endpoint with the roles that may call it and the
 * largest body it accepts. Anything not listed here is 404; a route whose
 * roles are 0 is denied to all. Keep docs/api.md in step with this table.
 */
#include "api_int.h"

#define J 4096 /* small JSON bodies */

#define ROUTE(m, p, r, max, h)                                                                     \
    {                                                                                              \
        .method = (m), .pattern = (p), .roles = (r), .max_body = (max), .handle = (h)              \
    }

const struct dems_route dems_routes[] = {
    ROUTE(DEMS_HTTP_GET, "/healthz", DEMS_ROLE_PUBLIC, 0, api_healthz),
    ROUTE(DEMS_HTTP_GET, "/readyz", DEMS_ROLE_PUBLIC, 0, api_readyz),
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
};

const size_t dems_nroutes = sizeof(dems_routes) / sizeof(dems_routes[0]);
