/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON log lines. Each line is formatted in full, then written with one
 * fwrite under stdio's lock, so lines from different threads never mix.
 *
 * Strings in a line are bounded and escaped (dems_log_str): a client can put
 * 32 KiB of path, terminal escape sequences or bytes that are not UTF-8 into
 * a request, and none of that should reach a log reader as it came (a 32 KiB
 * line per request fills a disk; an escape sequence rewrites an operator's
 * terminal; invalid UTF-8 made jansson drop the field without a word).
 *
 * Lines a client can cause at any rate (refused connections, accept
 * failures at the fd limit, timeouts) go through a limiter per call site
 * (DEMS_LOG_LIMITED): DEMS_LOG_BURST lines per DEMS_LOG_INTERVAL seconds,
 * then silence, then one summary line saying how many were suppressed.
 */
#include "demsd/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "dems/str.h"

static enum dems_log_level min_level = DEMS_LOG_INFO;

/* The limiter's sites (each registered on first use) and their state. */
static pthread_mutex_t limit_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dems_log_site *sites;
static unsigned limit_burst = DEMS_LOG_BURST;
static int64_t limit_interval_ms = DEMS_LOG_INTERVAL * 1000;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void dems_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0)
            min_level = (enum dems_log_level)i;
    }
}

/* Room after the bound for the truncation mark. */
#define MARK_ROOM 48

/* Code points shown escaped: controls (C0, DEL, C1), line and paragraph
 * separators, and the invisible marks that reorder text (bidi controls, BOM). */
static bool is_hidden(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/*
 * Writes the escaped form of s[0..len) into out (max + MARK_ROOM bytes):
 * at most max bytes of it, then a truncation mark when it did not fit.
 * Returns the length written.
 */
static size_t escape(const char *s, size_t len, size_t max, char *out)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t o = 0, i = 0;
    while (i < len) {
        uint32_t cp = 0;
        size_t n = dems_utf8_next(u + i, len - i, &cp);
        char piece[16];
        size_t plen;
        if (n == 0 || (is_hidden(cp) && cp < 0x100 && n == 1)) {
            plen = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", u[i]);
            n = 1;
        } else if (is_hidden(cp)) {
            plen = (size_t)snprintf(piece, sizeof(piece), "\\u%04x", (unsigned)cp);
        } else {
            memcpy(piece, s + i, n);
            plen = n;
        }
        if (plen > max - o)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += n;
    }
    if (i < len)
        o += (size_t)snprintf(out + o, MARK_ROOM, "...[truncated, %zu bytes]", len);
    return o;
}

/* A JSON string of s[0..len) escaped and bounded to max bytes. */
static json_t *log_string(const char *s, size_t len, size_t max)
{
    char *buf = malloc(max + MARK_ROOM);
    if (buf == NULL)
        return NULL;
    size_t n = escape(s, len, max, buf);
    json_t *j = json_stringn(buf, n);
    free(buf);
    return j;
}

json_t *dems_log_str(const char *s, size_t len)
{
    return log_string(s != NULL ? s : "", s != NULL ? len : 0, DEMS_LOG_STR_MAX);
}

/*
 * Copies fields into o, every string member escaped and bounded. The bound
 * leaves room for a mark, so a value dems_log_str made already (escaped,
 * bounded and marked) passes through unchanged.
 */
static void add_fields(json_t *o, json_t *fields)
{
    const char *key;
    json_t *value;
    json_object_foreach(fields, key, value)
    {
        if (json_is_string(value))
            json_object_set_new(o, key,
                                log_string(json_string_value(value), json_string_length(value),
                                           DEMS_LOG_STR_MAX + MARK_ROOM));
        else
            json_object_set(o, key, value);
    }
}

void dems_log(enum dems_log_level level, const char *request_id, json_t *fields, const char *fmt,
              ...)
{
    if (level < min_level) {
        json_decref(fields);
        return;
    }
    char msg[DEMS_LOG_MSG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

    json_t *o = json_object();
    if (o == NULL) {
        json_decref(fields);
        return;
    }
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_names[level]));
    json_object_set_new(o, "msg", log_string(msg, strlen(msg), DEMS_LOG_MSG_MAX));
    if (request_id != NULL)
        json_object_set_new(o, "request_id", json_string(request_id));
    if (fields != NULL)
        add_fields(o, fields);
    json_decref(fields);
    char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (line == NULL)
        return;
    size_t len = strlen(line);
    line[len] = '\n'; /* replaces the NUL; write exactly len + 1 bytes */
    flockfile(stderr);
    fwrite(line, 1, len + 1, stderr);
    fflush(stderr);
    funlockfile(stderr);
    free(line);
}

/* ---- the limiter for lines clients can cause at any rate ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dems_log_set_limit(unsigned burst, unsigned interval_ms)
{
    pthread_mutex_lock(&limit_mu);
    limit_burst = burst;
    limit_interval_ms = interval_ms;
    pthread_mutex_unlock(&limit_mu);
}

/* Writes a site's summary line; called with limit_mu held. */
static void write_summary(struct dems_log_site *site, uint64_t suppressed, int64_t ms)
{
    const char *file = site->file;
    while (strncmp(file, "../", 3) == 0)
        file += 3; /* __FILE__ as the build directory saw it */
    dems_log(site->level, NULL,
             json_pack("{s:s,s:I,s:s,s:i}", "event", "log_suppressed", "suppressed",
                       (json_int_t)suppressed, "site", file, "line", site->line),
             "suppressed %llu similar lines from %s:%d in the last %lld ms",
             (unsigned long long)suppressed, file, site->line, (long long)ms);
}

/*
 * Starts a new interval for the site when its current one is over, writing
 * the summary of what the old one suppressed. Called with limit_mu held.
 */
static void roll(struct dems_log_site *site, int64_t now)
{
    if (!site->registered) {
        site->registered = true;
        site->next = sites;
        sites = site;
        site->start_ms = now;
    }
    if (now - site->start_ms < limit_interval_ms)
        return;
    uint64_t suppressed = site->suppressed;
    int64_t ms = now - site->start_ms;
    site->start_ms = now;
    site->count = 0;
    site->suppressed = 0;
    if (suppressed > 0)
        write_summary(site, suppressed, ms);
}

bool dems_log_admit(struct dems_log_site *site)
{
    if (site->level < min_level)
        return false;
    pthread_mutex_lock(&limit_mu);
    roll(site, now_ms());
    bool ok = site->count < limit_burst;
    if (ok)
        site->count++;
    else
        site->suppressed++;
    pthread_mutex_unlock(&limit_mu);
    return ok;
}

void dems_log_flush(void)
{
    int64_t now = now_ms();
    pthread_mutex_lock(&limit_mu);
    for (struct dems_log_site *s = sites; s != NULL; s = s->next)
        roll(s, now);
    pthread_mutex_unlock(&limit_mu);
}
