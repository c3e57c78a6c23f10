/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by dems-verify's files: the exit codes (docs/ledger.md section 7),
 * the usage-error printer of main.c, and the subcommands kept in files of
 * their own.
 */
#ifndef DEMS_VERIFY_INT_H
#define DEMS_VERIFY_INT_H

#define EXIT_VERIFY_VALID   0
#define EXIT_VERIFY_INVALID 1 /* one "INVALID: ..." line on stdout */
#define EXIT_VERIFY_USAGE   2 /* usage or local I/O error, on stderr */
#define EXIT_VERIFY_NETWORK 3 /* monitor: the server unreachable or refusing, on stderr */

/* Prints "dems-verify: <message> (try dems-verify CMD --help)" to stderr; returns
 * EXIT_VERIFY_USAGE. */
int verify_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * dems-verify monitor URL --state FILE [--key VKEY] [--token T] [--cacert FILE]
 * [--watch TYPE[:ARTEFACT]]...: returns the exit code, or -2 when --help was asked.
 */
int verify_monitor(int argc, char **argv);

#endif
