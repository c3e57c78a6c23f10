/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON log lines. Each line is formatted in full, then written with one
 * fwrite under stdio's lock, so lines from different threads never mix.
 */
#include "demsd/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum dems_log_level min_level = DEMS_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void dems_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0)
            min_level = (enum dems_log_level)i;
    }
}

void dems_log(enum dems_log_level level, const char *request_id, json_t *fields, const char *fmt,
              ...)
{
    if (level < min_level) {
        json_decref(fields);
        return;
    }
    char msg[1024];
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
    json_object_set_new(o, "msg", json_string(msg));
    if (request_id != NULL)
        json_object_set_new(o, "request_id", json_string(request_id));
    if (fields != NULL)
        json_object_update(o, fields);
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
