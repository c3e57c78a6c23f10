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

/*
 * Writes one line. request_id may be NULL. fields, when not NULL, is an
 * object whose members are added to the line; the reference is stolen.
 */
void dems_log(enum dems_log_level level, const char *request_id, json_t *fields, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));

#endif
