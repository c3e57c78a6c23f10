/* SPDX-License-Identifier: Apache-2.0 */
/* libarchive: ARCHIVE_VERSION_ONLY_STRING and archive_version_string(). */
#include <archive.h>
#include <stdio.h>
#include <string.h>

#include "dems/version.h"

void dems_version_libarchive(struct dems_version_lib *ret)
{
    const char *run = archive_version_string(); /* "libarchive 3.6.2" */
    const char *sp = strchr(run, ' ');
    ret->name = "libarchive";
    snprintf(ret->built, sizeof(ret->built), "%s", ARCHIVE_VERSION_ONLY_STRING);
    snprintf(ret->running, sizeof(ret->running), "%s", sp != NULL ? sp + 1 : run);
}
