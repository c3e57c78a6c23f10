/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Route matching. Patterns are literal segments and {name} placeholders that
 * match exactly one non-empty segment; a last placeholder {name*} matches the
 * rest of the path (non-empty, slashes included: the tlog tile paths, whose
 * handler parses them). HEAD is served by GET routes. A path
 * that some route matches with another method gives 405 and the Allow list;
 * otherwise 404. Roles live on each route (server/api/routes.c); a route that
 * names none is denied to everyone.
 */
#include <stdio.h>
#include <string.h>

#include "dems/limits.h"
#include "demsd/http.h"

static const char *const role_names[] = {"admin", "officer", "prosecutor"};

unsigned dems_role_parse(const char *name)
{
    for (unsigned i = 0; i < 3; i++) {
        if (strcmp(name, role_names[i]) == 0)
            return 1u << i;
    }
    return 0;
}

const char *dems_role_name(unsigned role)
{
    if (role == DEMS_ROLE_DEVICE)
        return "device";
    if (role == DEMS_ROLE_DISCLOSURE)
        return "disclosure";
    if (role == DEMS_ROLE_SUBMITTER)
        return "submitter";
    for (unsigned i = 0; i < 3; i++) {
        if (role == 1u << i)
            return role_names[i];
    }
    return "unknown";
}

/* Matches path against pattern, filling params. */
static bool match(const char *pattern, struct dems_str path, struct dems_str *params, size_t *ret_n)
{
    size_t n = 0;
    const char *p = pattern;
    size_t i = 0;
    while (*p != '\0') {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            bool rest = close != NULL && close > p + 1 && close[-1] == '*' && close[1] == '\0';
            size_t start = i;
            while (i < path.len && (rest || path.ptr[i] != '/'))
                i++;
            if (i == start || n == DEMS_MAX_PATH_PARAMS || close == NULL)
                return false;
            params[n++] = (struct dems_str){path.ptr + start, i - start};
            p = close + 1;
            continue;
        }
        if (i >= path.len || path.ptr[i] != *p)
            return false;
        i++;
        p++;
    }
    if (i != path.len)
        return false;
    *ret_n = n;
    return true;
}

static const char *method_name(enum dems_http_method m)
{
    static const char *const names[] = {"",    "GET",   "HEAD",   "POST",
                                        "PUT", "PATCH", "DELETE", "OPTIONS"};
    return names[m];
}

const struct dems_route *dems_router_match(enum dems_http_method method, struct dems_str path,
                                           struct dems_str *params, size_t *ret_nparams,
                                           int *ret_status, char *allow, size_t allowlen)
{
    struct dems_str tmp[DEMS_MAX_PATH_PARAMS];
    size_t n;
    bool path_known = false;
    size_t used = 0;
    allow[0] = '\0';
    enum dems_http_method want = method == DEMS_HTTP_HEAD ? DEMS_HTTP_GET : method;
    for (size_t r = 0; r < dems_nroutes; r++) {
        const struct dems_route *rt = &dems_routes[r];
        if (!match(rt->pattern, path, tmp, &n))
            continue;
        if (rt->method == want) {
            memcpy(params, tmp, n * sizeof(tmp[0]));
            *ret_nparams = n;
            return rt;
        }
        path_known = true;
        int w = snprintf(allow + used, allowlen - used, "%s%s", used > 0 ? ", " : "",
                         method_name(rt->method));
        if (w > 0 && (size_t)w < allowlen - used)
            used += (size_t)w;
        if (rt->method == DEMS_HTTP_GET && allowlen - used > 6) {
            memcpy(allow + used, ", HEAD", 7);
            used += 6;
        }
    }
    *ret_status = path_known ? 405 : 404;
    return NULL;
}
