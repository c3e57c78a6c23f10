/* SPDX-License-Identifier: Apache-2.0 */
/* libsodium: SODIUM_VERSION_STRING and sodium_version_string(). */
#include <sodium.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_sodium(struct dems_version_lib *ret)
{
    ret->name = "libsodium";
    snprintf(ret->built, sizeof(ret->built), "%s", SODIUM_VERSION_STRING);
    snprintf(ret->running, sizeof(ret->running), "%s", sodium_version_string());
}
