/* SPDX-License-Identifier: Apache-2.0 */
/* libpng: PNG_LIBPNG_VER_STRING and png_get_libpng_ver(). */
#include <png.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_libpng(struct dems_version_lib *ret)
{
    ret->name = "libpng";
    snprintf(ret->built, sizeof(ret->built), "%s", PNG_LIBPNG_VER_STRING);
    snprintf(ret->running, sizeof(ret->running), "%s", png_get_libpng_ver(NULL));
}
