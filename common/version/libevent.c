/* SPDX-License-Identifier: Apache-2.0 */
/* libevent: LIBEVENT_VERSION and event_get_version(). */
#include <event2/event.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_libevent(struct dems_version_lib *ret)
{
    ret->name = "libevent";
    snprintf(ret->built, sizeof(ret->built), "%s", LIBEVENT_VERSION);
    snprintf(ret->running, sizeof(ret->running), "%s", event_get_version());
}
