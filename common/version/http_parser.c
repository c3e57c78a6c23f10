/* SPDX-License-Identifier: Apache-2.0 */
/* http-parser: HTTP_PARSER_VERSION_* and http_parser_version(). */
#include <http_parser.h>
#include <stdio.h>

#include "dems/version.h"

void dems_version_http_parser(struct dems_version_lib *ret)
{
    unsigned long v = http_parser_version();
    ret->name = "http-parser";
    snprintf(ret->built, sizeof(ret->built), "%d.%d.%d", HTTP_PARSER_VERSION_MAJOR,
             HTTP_PARSER_VERSION_MINOR, HTTP_PARSER_VERSION_PATCH);
    snprintf(ret->running, sizeof(ret->running), "%lu.%lu.%lu", (v >> 16) & 255, (v >> 8) & 255,
             v & 255);
}
