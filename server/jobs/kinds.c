/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry of job kinds: one line per kind, naming its handler and the
 * check its payload must pass before it is queued. A worker claims only the
 * kinds in this table, so a job of a kind an older worker does not know
 * waits for a worker that does instead of failing.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/jobs.h"

const struct dems_job_kind dems_job_kinds[] = {
    {"verify-blob", dems_job_verify_blob, dems_job_verify_blob_check},
    {"preview", dems_job_preview, dems_job_verify_blob_check},
    {"bundle", dems_job_bundle, dems_job_bundle_check},
    {"unpack", dems_job_unpack, dems_job_unpack_check},
    {"face-index", dems_job_face_index, dems_job_verify_blob_check},
    {"face-enrol", dems_job_face_enrol, dems_job_face_id_check},
    {"face-search", dems_job_face_search, dems_job_face_id_check},
    {"face-import", dems_job_face_import, dems_job_face_id_check},
    {"disposal", dems_job_disposal, dems_job_disposal_check},
};

const size_t dems_job_nkinds = sizeof(dems_job_kinds) / sizeof(dems_job_kinds[0]);

const struct dems_job_kind *dems_job_kind_find(const char *name)
{
    for (size_t i = 0; i < dems_job_nkinds; i++) {
        if (strcmp(dems_job_kinds[i].name, name) == 0)
            return &dems_job_kinds[i];
    }
    return NULL;
}

int dems_job_check(const char *kind, const json_t *payload, char *err, size_t errlen)
{
    const struct dems_job_kind *k = dems_job_kind_find(kind);
    if (k == NULL) {
        char known[512] = "";
        size_t n = 0;
        for (size_t i = 0; i < dems_job_nkinds && n < sizeof(known); i++) {
            int w = snprintf(known + n, sizeof(known) - n, "%s%s", i > 0 ? ", " : "",
                             dems_job_kinds[i].name);
            n += w > 0 ? (size_t)w : 0;
        }
        snprintf(err, errlen, "unknown job kind \"%.64s\" (known: %s)", kind, known);
        return DEMS_ENOTFOUND;
    }
    if (!json_is_object(payload)) {
        snprintf(err, errlen, "field \"payload\" must be a JSON object");
        return DEMS_EINVAL;
    }
    return k->check != NULL ? k->check(payload, err, errlen) : 0;
}
