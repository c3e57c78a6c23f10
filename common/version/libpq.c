/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libpq: the PostgreSQL release of the headers (pg_config.h, shipped with
 * libpq's headers) and PQlibVersion() (major * 10000 + minor since 10).
 */
#include <libpq-fe.h>
#include <pg_config.h>
#include <stdio.h>
#include <string.h>

#include "dems/version.h"

void dems_version_libpq(struct dems_version_lib *ret)
{
    int v = PQlibVersion();
    ret->name = "libpq";
    /* PG_VERSION may carry a packager's suffix: "15.18 (Debian 15.18-0+deb12u1)". */
    snprintf(ret->built, sizeof(ret->built), "%.*s", (int)strcspn(PG_VERSION, " "), PG_VERSION);
    snprintf(ret->running, sizeof(ret->running), "%d.%d", v / 10000, v % 10000);
}
