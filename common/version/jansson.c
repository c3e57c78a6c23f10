/* SPDX-License-Identifier: Apache-2.0 */
/* jansson: JANSSON_VERSION and jansson_version_str(). */
#include <jansson.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_jansson(struct dems_version_lib *ret)
{
    ret->name = "jansson";
    snprintf(ret->built, sizeof(ret->built), "%s", JANSSON_VERSION);
    snprintf(ret->running, sizeof(ret->running), "%s", jansson_version_str());
}
