/* SPDX-License-Identifier: Apache-2.0 */
/* libseccomp: SCMP_VER_* and seccomp_version(). */
#include <seccomp.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_seccomp(struct dems_version_lib *ret)
{
    const struct scmp_version *v = seccomp_version();
    ret->name = "libseccomp";
    snprintf(ret->built, sizeof(ret->built), "%d.%d.%d", SCMP_VER_MAJOR, SCMP_VER_MINOR,
             SCMP_VER_MICRO);
    if (v != NULL)
        snprintf(ret->running, sizeof(ret->running), "%u.%u.%u", v->major, v->minor, v->micro);
    else
        ret->running[0] = '\0';
}
