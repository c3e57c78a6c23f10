/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming HTTP/1.1 request parsing over Debian's http-parser, with dems's
 * limits. The caller feeds bytes as they arrive; the parser reports the
 * request head once, then body chunks (never buffered here), then the end of
 * the message. Any callback may pause the parser (backpressure, or waiting
 * for authentication); the caller resumes and feeds the rest later.
 */
#ifndef DEMS_HTTP_H
#define DEMS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/limits.h"
#include "dems/str.h"

enum dems_http_method {
    DEMS_HTTP_OTHER = 0, /* parsed but not implemented by dems (501) */
    DEMS_HTTP_GET,
    DEMS_HTTP_HEAD,
    DEMS_HTTP_POST,
    DEMS_HTTP_PUT,
    DEMS_HTTP_PATCH,
    DEMS_HTTP_DELETE,
    DEMS_HTTP_OPTIONS,
};

struct dems_http_header {
    struct dems_str name;
    struct dems_str value;
};

/* A parsed request head. Borrowed: valid until the next message begins. */
struct dems_http_head {
    enum dems_http_method method;
    const char *method_name; /* e.g. "GET"; static */
    struct dems_str target;  /* the request target as sent */
    struct dems_str path;    /* target up to '?', not percent-decoded */
    struct dems_str query;   /* after '?', may be empty */
    struct dems_http_header headers[DEMS_MAX_HEADERS];
    size_t nheaders;
    unsigned http_major;
    unsigned http_minor;
    bool keep_alive;
    bool has_length;         /* Content-Length was sent */
    uint64_t content_length; /* valid when has_length */
    bool chunked;
    bool expect_continue;
};

/*
 * Callbacks return 0 to go on, DEMS_EAGAIN to pause the parser after this
 * event, or another negative DEMS_E* to stop with that error.
 */
struct dems_http_parser_cb {
    int (*on_head)(void *arg, const struct dems_http_head *head);
    int (*on_body)(void *arg, const uint8_t *data, size_t n);
    int (*on_end)(void *arg);
};

struct dems_http_parser;

/* Returns owned; free with dems_http_parser_free. NULL on out of memory. */
struct dems_http_parser *dems_http_parser_new(const struct dems_http_parser_cb *cb, void *arg);

void dems_http_parser_free(struct dems_http_parser *p);

/*
 * Parses up to n bytes. Returns how many were consumed; fewer than n means
 * the parser paused or failed (see dems_http_parser_state). Feeding a failed
 * parser consumes nothing.
 */
size_t dems_http_parser_feed(struct dems_http_parser *p, const uint8_t *data, size_t n);

enum dems_http_parser_state {
    DEMS_HTTP_PARSING, /* wants more bytes */
    DEMS_HTTP_PAUSED,  /* a callback paused it; resume before feeding */
    DEMS_HTTP_FAILED,  /* see dems_http_parser_error */
};

enum dems_http_parser_state dems_http_parser_state(const struct dems_http_parser *p);

/* Un-pauses a paused parser. */
void dems_http_parser_resume(struct dems_http_parser *p);

/*
 * For a failed parser: the HTTP status to answer (400, 413, 431, 501 or the
 * status of a callback's error), a stable code and a message (static).
 */
void dems_http_parser_error(const struct dems_http_parser *p, int *ret_status,
                            const char **ret_code, const char **ret_message);

/* True while a message is in progress (some bytes of it were consumed). */
bool dems_http_parser_in_message(const struct dems_http_parser *p);

/* Finds a header by name (ASCII case-insensitive); NULL when absent. */
const struct dems_str *dems_http_head_get(const struct dems_http_head *h, const char *name);

/* One decoded query parameter; name and value are also NUL-terminated. */
struct dems_http_param {
    struct dems_str name;
    struct dems_str value;
};

/* A decoded query string. Clear with dems_http_query_done. */
struct dems_http_query {
    struct dems_http_param params[DEMS_MAX_QUERY_PARAMS];
    size_t nparams;
    char *text; /* owned: the decoded names and values */
};

/*
 * Decodes a raw query string (the part after '?') as
 * application/x-www-form-urlencoded: pairs split at '&' (empty pairs are
 * skipped), name and value at the first '=' (a pair without one has an empty
 * value), '+' becomes a space and %XX the byte XX, in names and values alike.
 * Strict: a malformed escape (%zz, a truncated %), a decoded NUL byte, a
 * repeated name or more than DEMS_MAX_QUERY_PARAMS pairs are refused with
 * DEMS_EINVAL and one line in err naming the parameter when it can; DEMS_ENOMEM
 * on out of memory. On error q is left empty (dems_http_query_done is safe).
 * Borrows raw only for the call.
 */
int dems_http_query_parse(struct dems_http_query *q, struct dems_str raw, char *err, size_t errlen);

void dems_http_query_done(struct dems_http_query *q);

/* The decoded value of a parameter (borrowed from q), or NULL when absent. */
const struct dems_str *dems_http_query_get(const struct dems_http_query *q, const char *name);

/*
 * True when name[0..len) is valid UTF-8 with no character a displayed file
 * name must not carry: C0/C1 controls, DEL, or bidirectional embeddings,
 * overrides and isolates (U+202A-U+202E, U+2066-U+2069). Directional marks
 * (U+200E, U+200F, U+061C) are allowed: right-to-left names use them.
 */
bool dems_http_filename_ok(const char *name, size_t len);

/*
 * Formats a Content-Disposition value (RFC 6266) into out: type
 * ("attachment" or "inline"), then filename="..." holding an ASCII fallback
 * (non-ASCII characters, quotes and backslashes as '_'), and, when the name
 * is not plain ASCII, filename*=UTF-8''... (RFC 8187) holding it exactly.
 * name is untrusted UTF-8: invalid bytes, controls and bidirectional
 * characters (and directional marks) are dropped from both; a name left empty becomes fallback
 * (trusted ASCII, e.g. the evidence id). Returns 0, or DEMS_ETOOBIG when
 * outlen is too small (3 * strlen(name) + strlen(fallback) + 64 suffices).
 */
int dems_http_content_disposition(const char *type, const char *name, const char *fallback,
                                  char *out, size_t outlen);

/*
 * The Content-Type to serve a stored original as: the declared type's
 * media type (parameters dropped, case ignored) when it is on the allow-list
 * of evidence formats (video, image, audio, PDF, plain text), otherwise
 * "application/octet-stream". Returns a static string.
 */
const char *dems_http_served_type(const char *declared);

#endif
