/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Structured logs: one JSON object per line on standard error, with a time,
 * a level, a message and the request id when there is one. Thread-safe.
 */
#ifndef DEMSD_LOG_H
#define DEMSD_LOG_H

#include <jansson.h>

enum dems_log_level { DEMS_LOG_DEBUG, DEMS_LOG_INFO, DEMS_LOG_WARN, DEMS_LOG_ERROR };

/* Sets the lowest level written ("debug", "info", "warn", "error"). */
void dems_log_set_level(const char *name);

/* Bytes of one logged string (a field) and of a message, before the mark. */
#define DEMS_LOG_STR_MAX 256
#define DEMS_LOG_MSG_MAX 1024

/*
 * Writes one line. request_id may be NULL. fields, when not NULL, is an
 * object whose members are added to the line; the reference is stolen. Every
 * string member, and the message, is escaped as dems_log_str does and
 * bounded (a member at DEMS_LOG_STR_MAX plus room for a mark, so what
 * dems_log_str made passes unchanged; the message at DEMS_LOG_MSG_MAX).
 * Untrusted bytes go in through dems_log_str, never json_string (which
 * refuses text that is not UTF-8, dropping the member).
 */
void dems_log(enum dems_log_level level, const char *request_id, json_t *fields, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));

/*
 * A JSON string (new reference; NULL on out of memory) for logging untrusted
 * bytes s[0..len), which need not be UTF-8 or NUL-terminated: bytes that are
 * not valid UTF-8, and C0/C1 control characters and DEL, are written as
 * \xHH; line separators and invisible reordering marks (U+2028..U+202E,
 * U+200E, U+200F, U+2066..U+2069, U+FEFF) as \uHHHH; a backslash is left as
 * it is (so escaping twice changes nothing). At most DEMS_LOG_STR_MAX bytes
 * are kept, whole characters only; a longer string ends with
 * "...[truncated, N bytes]", N its length in bytes.
 */
json_t *dems_log_str(const char *s, size_t len);

#endif
