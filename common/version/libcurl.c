/* SPDX-License-Identifier: Apache-2.0 */
/* libcurl: LIBCURL_VERSION and curl_version_info()->version. */
#include <curl/curl.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_libcurl(struct dems_version_lib *ret)
{
    const curl_version_info_data *d = curl_version_info(CURLVERSION_NOW);
    ret->name = "libcurl";
    snprintf(ret->built, sizeof(ret->built), "%s", LIBCURL_VERSION);
    snprintf(ret->running, sizeof(ret->running), "%s", d != NULL ? d->version : "");
}
