/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsd's subcommands. main.c dispatches argv[1] to one of these; each takes
 * the remaining arguments (argv[0] is the subcommand's name), prints its own
 * --help, and returns the process exit status (0 ok, 1 failure, 2 usage or
 * configuration error).
 */
#ifndef DEMSD_CLI_H
#define DEMSD_CLI_H

int dems_cli_serve(int argc, char **argv);
int dems_cli_worker(int argc, char **argv);
int dems_cli_media_sandbox(int argc, char **argv);
int dems_cli_unpack_sandbox(int argc, char **argv);
int dems_cli_media_frames(int argc, char **argv);
int dems_cli_migrate(int argc, char **argv);
int dems_cli_admin(int argc, char **argv);
int dems_cli_routes(int argc, char **argv);

/*
 * Shared option handling: maps getopt codes 'd' (--data), 'l' (--listen),
 * 't' (--threads), 's' (--set KEY=VALUE) to KEY=VALUE flags (at most 16) and
 * 'c' (--config) to *config_file. Returns 0, or -1 for an unknown option.
 */
#include <stddef.h>
int dems_cli_common_opt(int opt, const char *arg, char **flags, size_t *nflags,
                        const char **config_file);

/*
 * getopt_long over a subcommand's arguments (optind must be set first) for
 * `demsd CMD`. Returns the option code, -1 at the end, or '?' after printing
 * one line on stderr for an unknown option or a missing value; the caller
 * then exits with status 2 and prints nothing more.
 */
struct option;
int dems_cli_getopt(int argc, char **argv, const struct option *opts, const char *cmd);

/* server/cli/face.c: `demsd face detect|embed IMAGE...` (built when present). */
int dems_cli_face(int argc, char **argv);

#endif
