/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libjpeg-turbo: LIBJPEG_TURBO_VERSION (an unquoted token in jconfig.h) and
 * the libjpeg API level; the library has no run-time version call.
 */
#include <stddef.h>
#include <stdio.h>
/* jpeglib.h needs stdio.h and stddef.h first. */
#include <jpeglib.h>

#include "dems/version.h"

#define STR_(x) #x
#define STR(x)  STR_(x)

void dems_version_libjpeg(struct dems_version_lib *ret)
{
    ret->name = "libjpeg-turbo";
#ifdef LIBJPEG_TURBO_VERSION
    snprintf(ret->built, sizeof(ret->built), "%s (API %d)", STR(LIBJPEG_TURBO_VERSION),
             JPEG_LIB_VERSION);
#else
    snprintf(ret->built, sizeof(ret->built), "API %d", JPEG_LIB_VERSION);
#endif
    ret->running[0] = '\0';
}
