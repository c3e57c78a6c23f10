/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The verify-blob job: re-reads one evidence blob end to end (authenticated
 * decryption and the SHA-256 of the plaintext against its id) with the same
 * dems_blob_verify that `demsd admin verify-blobs` and the periodic sweep
 * use. Read-only, so running it twice is harmless. A missing or altered blob
 * is retried (shared storage may be briefly unreachable, a read may fail
 * once) and ends dead with the reason; a payload naming no evidence is dead
 * at once.
 */
#include <stdio.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/blobs.h"
#include "demsd/jobs.h"

static bool is_sha256_hex(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

int dems_job_verify_blob_check(const json_t *payload, char *err, size_t errlen)
{
    const json_t *v = json_object_get(payload, "evidence");
    if (!json_is_string(v) || !is_sha256_hex(json_string_value(v))) {
        snprintf(err, errlen,
                 "field \"payload.evidence\" must be an evidence id (64 lower-case hex digits)");
        return DEMS_EINVAL;
    }
    if (json_object_size(payload) != 1) {
        snprintf(err, errlen, "field \"payload\" takes only \"evidence\"");
        return DEMS_EINVAL;
    }
    return 0;
}

enum dems_job_result dems_job_verify_blob(const struct dems_job *job, struct dems_job_ctx *ctx,
                                          char *err, size_t errlen)
{
    if (dems_job_verify_blob_check(job->payload, err, errlen) < 0)
        return DEMS_JOB_FAIL;
    const char *id = json_string_value(json_object_get(job->payload, "evidence"));
    const char *params[] = {id};
    PGresult *res = PQexecParams(ctx->db, "SELECT 1 FROM artefacts WHERE id = $1", 1, NULL, params,
                                 NULL, NULL, 0);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rows = st == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    PQclear(res);
    if (rows < 0) {
        snprintf(err, errlen, "database: cannot look up evidence %s", id);
        return DEMS_JOB_RETRY;
    }
    if (rows == 0) {
        snprintf(err, errlen, "no evidence with id %s", id);
        return DEMS_JOB_FAIL;
    }
    int r = dems_blob_verify(ctx->cfg->data_dir, ctx->master_key, id);
    switch (r) {
    case 0:
        return DEMS_JOB_OK;
    case DEMS_ENOTFOUND:
        snprintf(err, errlen, "blob %s is missing from the blob store", id);
        break;
    case DEMS_ECRYPTO:
        snprintf(err, errlen, "blob %s is altered: decryption or SHA-256 check failed", id);
        break;
    default:
        snprintf(err, errlen, "blob %s is unreadable: %s", id, dems_strerror(r));
        break;
    }
    return DEMS_JOB_RETRY;
}
