/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Structured logs: one JSON object per line on standard error, with a time,
 * a level, a message and the request id when there is one. Thread-safe.
 */
#ifndef DEMSD_LOG_H
#define DEMSD_LOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

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

/*
 * Rate-limited lines, for events a client can cause at any rate (refused
 * connections, accept failures at the fd limit, timeouts): each call site
 * writes at most DEMS_LOG_BURST lines per DEMS_LOG_INTERVAL seconds; the
 * rest are dropped unformatted (fields freed) and counted, and the next line
 * from that site after the interval, or dems_log_flush, first writes one
 * "suppressed N similar lines" summary (event log_suppressed, with the
 * site's file and line). Use as dems_log:
 *     DEMS_LOG_LIMITED(DEMS_LOG_WARN, NULL, fields, "accept failed: %s", why);
 */
#define DEMS_LOG_BURST    10
#define DEMS_LOG_INTERVAL 10 /* seconds */

/* One call site's limiter state (static storage, zero-initialised). */
struct dems_log_site {
    const char *file;
    int line;
    enum dems_log_level level;
    bool registered;
    int64_t start_ms; /* the current interval */
    unsigned count;   /* lines written in it */
    uint64_t suppressed;
    struct dems_log_site *next;
};

/* True when the site may write a line now (see DEMS_LOG_LIMITED). */
bool dems_log_admit(struct dems_log_site *site);

/* Writes the summaries of sites whose interval is over; call every few seconds. */
void dems_log_flush(void);

/* Changes the limiter's burst and interval (tests). */
void dems_log_set_limit(unsigned burst, unsigned interval_ms);

#define DEMS_LOG_LIMITED(level_, request_id_, fields_, ...)                                        \
    do {                                                                                           \
        static struct dems_log_site site_ = {                                                      \
            .file = __FILE__, .line = __LINE__, .level = (level_)};                                \
        json_t *fields_once_ = (fields_);                                                          \
        if (dems_log_admit(&site_))                                                                \
            dems_log((level_), (request_id_), fields_once_, __VA_ARGS__);                          \
        else                                                                                       \
            json_decref(fields_once_);                                                             \
    } while (0)

#endif
