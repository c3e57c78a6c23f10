/* SPDX-License-Identifier: Apache-2.0 */
/* OpenSSL: OPENSSL_VERSION_STR and OpenSSL_version(OPENSSL_VERSION_STRING). */
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_openssl(struct dems_version_lib *ret)
{
    ret->name = "OpenSSL";
    snprintf(ret->built, sizeof(ret->built), "%s", OPENSSL_VERSION_STR);
    snprintf(ret->running, sizeof(ret->running), "%s", OpenSSL_version(OPENSSL_VERSION_STRING));
}
