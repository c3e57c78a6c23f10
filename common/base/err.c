/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The error table: one row per DEMS_E* code with its stable JSON code, text
 * and HTTP status. Keeping them in one place keeps the API's error codes
 * stable across modules.
 */
#include "dems/err.h"

struct err_row {
    const char *code;
    const char *text;
    int status;
};

static const struct err_row rows[] = {
    [0] = {"ok", "success", 200},
    [1] = {"out_of_memory", "out of memory", 503},
    [2] = {"invalid_request", "malformed input", 400},
    [3] = {"too_large", "size limit exceeded", 413},
    [4] = {"io_error", "input/output error", 500},
    [5] = {"not_found", "no such object", 404},
    [6] = {"try_again", "resource temporarily unavailable", 503},
    [7] = {"unauthorized", "missing or invalid credentials", 401},
    [8] = {"forbidden", "not allowed", 403},
    [9] = {"conflict", "conflicts with the current state", 409},
    [10] = {"database_unavailable", "database unavailable", 503},
    [11] = {"too_many_attempts", "too many attempts; try again later", 429},
    [12] = {"unavailable", "service unavailable", 503},
    [13] = {"internal_error", "internal error", 500},
    [14] = {"verification_failed", "verification failed", 400},
    [15] = {"totp_required", "a valid one-time code is required", 401},
    [16] = {"disk_full", "no space left on the data volume", 507},
};

static const struct err_row *row(int err)
{
    if (err > 0 || err < DEMS_E_LAST)
        return &rows[13];
    return &rows[-err];
}

const char *dems_err_code(int err)
{
    return row(err)->code;
}

const char *dems_strerror(int err)
{
    return row(err)->text;
}

int dems_err_http_status(int err)
{
    return row(err)->status;
}
