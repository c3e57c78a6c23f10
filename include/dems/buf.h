/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A growable byte buffer with a hard cap, for data that is not a socket
 * stream (headers being assembled, a JSON body). Every buffer names its cap
 * from dems/limits.h when it is initialised.
 */
#ifndef DEMS_BUF_H
#define DEMS_BUF_H

#include <stddef.h>
#include <stdint.h>

struct dems_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
};

/* Caller-owned storage; holds nothing until the first append. */
void dems_buf_init(struct dems_buf *b, size_t max);

/* Frees the contents; the buffer may be reused after another init. */
void dems_buf_done(struct dems_buf *b);

/*
 * Appends n bytes. Returns 0, DEMS_ETOOBIG when len + n would pass max (the
 * buffer is unchanged), or DEMS_ENOMEM.
 */
int dems_buf_append(struct dems_buf *b, const void *p, size_t n);

/* Appends s[0..len) HTML-escaped (& < > " ' as entities): 0 or as dems_buf_append. */
int dems_buf_html_escape(struct dems_buf *b, const char *s, size_t len);

/*
 * Appends s as one RFC 4180 CSV field (always quoted, quotes doubled); a
 * leading = + - @ gets a ' first so that a spreadsheet does not run it as a
 * formula. 0 or as dems_buf_append.
 */
int dems_buf_csv_field(struct dems_buf *b, const char *s);

/* Forgets the contents but keeps the allocation. */
void dems_buf_reset(struct dems_buf *b);

#endif
