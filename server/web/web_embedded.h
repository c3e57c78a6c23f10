/* SPDX-License-Identifier: Apache-2.0 */
/* The staff page's files compiled into demsd, generated from server/web/. */
#ifndef DEMS_WEB_EMBEDDED_H
#define DEMS_WEB_EMBEDDED_H

#include <stddef.h>

struct dems_web_file {
    const char *name;         /* "app.js" */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const char *etag;         /* "\"<sha256 hex>\"" */
    const unsigned char *data;
    size_t len;
};

extern const struct dems_web_file dems_web_files[];
extern const unsigned long dems_nweb_files;

#endif
