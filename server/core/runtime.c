/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Settings that change at run time (demsd/runtime.h). The base is the
 * configuration as loaded; overrides come from the database's settings
 * table and are parsed with the configuration module itself
 * (dems_config_set on a scratch configuration), so a value means the same
 * in a file, a flag or the API.
 */
#include "demsd/runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "demsd/log.h"

const char *const dems_runtime_keys[] = {"face_legal_bases",      "face_threshold",
                                         "disposal_recover_days", "portal_reject_retention_days",
                                         "share_max_days",        "portal_link_max_days"};
const size_t dems_runtime_nkeys = sizeof(dems_runtime_keys) / sizeof(dems_runtime_keys[0]);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct dems_runtime base, current;

bool dems_runtime_key(const char *key)
{
    for (size_t i = 0; i < dems_runtime_nkeys; i++)
        if (strcmp(key, dems_runtime_keys[i]) == 0)
            return true;
    return false;
}

static void from_config(struct dems_runtime *r, const struct dems_config *cfg)
{
    snprintf(r->face_legal_bases, sizeof(r->face_legal_bases), "%s",
             cfg->face_legal_bases != NULL ? cfg->face_legal_bases : "");
    r->face_threshold = cfg->face_threshold;
    r->disposal_recover_days = cfg->disposal_recover_days;
    r->portal_reject_retention_days = cfg->portal_reject_retention_days;
    r->share_max_days = cfg->share_max_days;
    r->portal_link_max_days = cfg->portal_link_max_days;
}

void dems_runtime_init(const struct dems_config *cfg)
{
    pthread_mutex_lock(&mu);
    from_config(&base, cfg);
    current = base;
    pthread_mutex_unlock(&mu);
}

void dems_runtime_get(struct dems_runtime *out)
{
    pthread_mutex_lock(&mu);
    *out = current;
    pthread_mutex_unlock(&mu);
}

static bool text_of(const struct dems_runtime *r, const char *key, char *out, size_t len)
{
    if (strcmp(key, "face_legal_bases") == 0)
        snprintf(out, len, "%s", r->face_legal_bases);
    else if (strcmp(key, "face_threshold") == 0)
        snprintf(out, len, "%g", r->face_threshold);
    else if (strcmp(key, "disposal_recover_days") == 0)
        snprintf(out, len, "%llu", (unsigned long long)r->disposal_recover_days);
    else if (strcmp(key, "portal_reject_retention_days") == 0)
        snprintf(out, len, "%llu", (unsigned long long)r->portal_reject_retention_days);
    else if (strcmp(key, "share_max_days") == 0)
        snprintf(out, len, "%llu", (unsigned long long)r->share_max_days);
    else if (strcmp(key, "portal_link_max_days") == 0)
        snprintf(out, len, "%llu", (unsigned long long)r->portal_link_max_days);
    else
        return false;
    return true;
}

bool dems_runtime_base_text(const char *key, char *out, size_t len)
{
    pthread_mutex_lock(&mu);
    bool ok = text_of(&base, key, out, len);
    pthread_mutex_unlock(&mu);
    return ok;
}

bool dems_runtime_text(const char *key, char *out, size_t len)
{
    pthread_mutex_lock(&mu);
    bool ok = text_of(&current, key, out, len);
    pthread_mutex_unlock(&mu);
    return ok;
}

/* Parses value for key into r (a scratch configuration does the parsing). */
static int parse_into(struct dems_runtime *r, const char *key, const char *value, char *err,
                      size_t errlen)
{
    if (!dems_runtime_key(key)) {
        snprintf(err, errlen, "%.80s is not a setting that changes at run time", key);
        return DEMS_EINVAL;
    }
    if (strlen(value) >= DEMS_RUNTIME_TEXT_MAX) {
        snprintf(err, errlen, "the value of %s is longer than %d bytes", key,
                 DEMS_RUNTIME_TEXT_MAX - 1);
        return DEMS_EINVAL;
    }
    struct dems_config c;
    if (dems_config_init(&c) < 0) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    int rc = dems_config_set(&c, key, value, err, errlen);
    if (rc == 0 && strcmp(key, "face_legal_bases") == 0) {
        /* Each basis: not empty, no control characters. */
        const char *p = c.face_legal_bases != NULL ? c.face_legal_bases : "";
        bool ok = *p != '\0';
        for (const char *q = p; ok && *q != '\0'; q++)
            ok = !((unsigned char)*q < 0x20 || *q == 0x7f ||
                   (*q == '|' && (q == p || q[1] == '\0' || q[1] == '|')));
        if (!ok) {
            snprintf(err, errlen,
                     "face_legal_bases must be one or more bases separated by |, none empty,"
                     " no control characters");
            rc = DEMS_EINVAL;
        }
    }
    if (rc == 0) {
        struct dems_runtime parsed;
        from_config(&parsed, &c);
        if (strcmp(key, "face_legal_bases") == 0)
            memcpy(r->face_legal_bases, parsed.face_legal_bases, sizeof(r->face_legal_bases));
        else if (strcmp(key, "face_threshold") == 0)
            r->face_threshold = parsed.face_threshold;
        else if (strcmp(key, "disposal_recover_days") == 0)
            r->disposal_recover_days = parsed.disposal_recover_days;
        else if (strcmp(key, "share_max_days") == 0)
            r->share_max_days = parsed.share_max_days;
        else if (strcmp(key, "portal_link_max_days") == 0)
            r->portal_link_max_days = parsed.portal_link_max_days;
        else
            r->portal_reject_retention_days = parsed.portal_reject_retention_days;
    }
    dems_config_done(&c);
    return rc;
}

int dems_runtime_check(const char *key, const char *value, char *err, size_t errlen)
{
    struct dems_runtime scratch;
    memset(&scratch, 0, sizeof(scratch));
    return parse_into(&scratch, key, value, err, errlen);
}

void dems_runtime_apply(const char *const *keys, const char *const *values, size_t n)
{
    struct dems_runtime next;
    pthread_mutex_lock(&mu);
    next = base;
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < n; i++) {
        char err[256];
        if (parse_into(&next, keys[i], values[i], err, sizeof(err)) < 0)
            dems_log(DEMS_LOG_WARN, NULL, NULL, "settings: %.80s from the database ignored: %s",
                     keys[i], err);
    }
    pthread_mutex_lock(&mu);
    current = next;
    pthread_mutex_unlock(&mu);
}
