/*
 * demsd's subcommands. main.c dispatches argv[1] to one of these; each takes
 * the remaining arguments (argv[0] is the subcommand's name), prints its own
 * --help, and returns the process exit status (0 ok, 1 failure, 2 usage or
 * configuration error).
 */
#ifndef DEMSD_CLI_H
#define DEMSD_CLI_H

int dems_cli_serve(int argc, char **argv);
int dems_cli_migrate(int argc, char **argv);
int dems_cli_admin(int argc, char **argv);

/* server/cli/face.c: `demsd face detect|embed IMAGE...` (built when present). */
int dems_cli_face(int argc, char **argv);

#endif
