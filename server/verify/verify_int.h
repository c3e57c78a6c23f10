/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by dems-verify's files: the exit codes (docs/ledger.md section 7),
 * the usage-error printer of main.c, and the subcommands kept in files of
 * their own.
 */
#ifndef DEMS_VERIFY_INT_H
#define DEMS_VERIFY_INT_H

#include <stddef.h>

#include "dems/ledger.h"

#define EXIT_VERIFY_VALID   0
#define EXIT_VERIFY_INVALID 1 /* one "INVALID: ..." line on stdout */
#define EXIT_VERIFY_USAGE   2 /* usage or local I/O error, on stderr */
#define EXIT_VERIFY_NETWORK 3 /* monitor: the server unreachable or refusing, on stderr */

/* Prints "dems-verify: <message> (try dems-verify CMD --help)" to stderr; returns
 * EXIT_VERIFY_USAGE. */
int verify_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A witness policy from --witness VKEY (repeatable) and --quorum N (policy.c). */
struct verify_policy {
    const char *vkeys[DEMS_COSIG_MAX_POLICY];
    size_t n;
    struct dems_note_verifier keys[DEMS_COSIG_MAX_POLICY];
    struct dems_witness_policy p;
};

/*
 * Takes every "--witness VKEY" (or "--witness=VKEY") out of argv into pol
 * (the option parsers take one value per option). Returns the remaining
 * argc, or -1 after a usage error (printed).
 */
int verify_policy_take(int argc, char **argv, struct verify_policy *pol);

/* What verify_policy_get returns after a usage error (printed). */
extern const struct dems_witness_policy verify_bad_policy;

/*
 * The policy from the --witness keys taken and --quorum q (may be NULL):
 * NULL when neither was given, &verify_bad_policy after a usage error.
 */
const struct dems_witness_policy *verify_policy_get(struct verify_policy *pol, const char *q);

/*
 * dems-verify monitor URL --state FILE [--key VKEY] [--token T] [--cacert FILE]
 * [--watch TYPE[:ARTEFACT]]... [--witness VKEY ... --quorum N]: returns the exit code, or -2 when
 * --help was asked.
 */
int verify_monitor(int argc, char **argv);

#endif
