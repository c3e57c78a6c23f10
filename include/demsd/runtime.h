/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Settings that change at run time (docs/configuration.md, "Settings at run
 * time"; server/core/runtime.c): a few configuration keys an administrator
 * may change by API without a restart. Their values are the configuration's
 * unless the database's settings table overrides them; serve loads the
 * overrides at start, applies a change at once in the process that made it,
 * and refreshes every housekeeping interval (other nodes). Readers take a
 * consistent copy (a mutex; they are read once per request that needs them).
 */
#ifndef DEMSD_RUNTIME_H
#define DEMSD_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/config.h"

#define DEMS_RUNTIME_TEXT_MAX 4096

struct dems_runtime {
    char face_legal_bases[DEMS_RUNTIME_TEXT_MAX]; /* "|"-separated */
    double face_threshold;
    uint64_t disposal_recover_days;
    uint64_t portal_reject_retention_days;
    uint64_t share_max_days;       /* a limit: how far ahead a share may end */
    uint64_t portal_link_max_days; /* a limit: how far ahead a public link may end */
};

/* The keys that may change at run time, and how many. */
extern const char *const dems_runtime_keys[];
extern const size_t dems_runtime_nkeys;

/* True when key is one of them. */
bool dems_runtime_key(const char *key);

/* Takes the configured values as the base (once, before the loops run). */
void dems_runtime_init(const struct dems_config *cfg);

/* A consistent copy of the values in force. */
void dems_runtime_get(struct dems_runtime *out);

/* The configured (base) value of key as text into out; false for an unknown key. */
bool dems_runtime_base_text(const char *key, char *out, size_t len);

/* The value in force of key as text into out; false for an unknown key. */
bool dems_runtime_text(const char *key, char *out, size_t len);

/*
 * Checks value for key exactly as the configuration file would (and the
 * runtime limits): 0, or DEMS_EINVAL with one line in err.
 */
int dems_runtime_check(const char *key, const char *value, char *err, size_t errlen);

/*
 * Puts in force the base values overridden by the n (key, value) pairs (the
 * database's settings table: a key not there has its configured value).
 * Pairs that fail dems_runtime_check are skipped (and logged).
 */
void dems_runtime_apply(const char *const *keys, const char *const *values, size_t n);

#endif
