/* SPDX-License-Identifier: Apache-2.0 */
/* Field readers and error answers shared by the handlers (see api_int.h). */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"

#include "api_int.h"

static void bad_field(struct dems_req *req, const char *key, const char *why)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "field \"%s\" %s", key, why);
    dems_resp_error(req, 400, "invalid_field", msg);
}

bool api_get_str(struct dems_req *req, const char *key, size_t max, bool required, const char **ret)
{
    json_t *body = dems_req_json(req);
    json_t *v = body != NULL ? json_object_get(body, key) : NULL;
    if (v == NULL) {
        if (required) {
            bad_field(req, key, "is required");
            return false;
        }
        *ret = NULL;
        return true;
    }
    if (!json_is_string(v)) {
        bad_field(req, key, "must be a string");
        return false;
    }
    size_t len = json_string_length(v);
    if (len == 0 || len > max || strlen(json_string_value(v)) != len) {
        char why[64];
        snprintf(why, sizeof(why), "must be 1 to %zu characters", max);
        bad_field(req, key, why);
        return false;
    }
    *ret = json_string_value(v);
    return true;
}

bool api_get_int(struct dems_req *req, const char *key, int64_t min, int64_t max, int64_t def,
                 int64_t *ret)
{
    json_t *body = dems_req_json(req);
    json_t *v = body != NULL ? json_object_get(body, key) : NULL;
    if (v == NULL) {
        *ret = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char why[96];
        snprintf(why, sizeof(why), "must be a whole number from %lld to %lld", (long long)min,
                 (long long)max);
        bad_field(req, key, why);
        return false;
    }
    *ret = json_integer_value(v);
    return true;
}

void api_db_error(struct dems_req *req, const PGresult *res, int err)
{
    (void)res;
    dems_resp_err(req, err == DEMS_EDB && res != NULL ? DEMS_EINTERNAL : DEMS_EDB);
}

int64_t api_id(const char *s, size_t len)
{
    uint64_t v = 0;
    if (dems_parse_u64(s, len, INT64_MAX, &v) < 0)
        return 0;
    return (int64_t)v;
}
