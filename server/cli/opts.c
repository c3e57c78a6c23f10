/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Option parsing shared by demsd's subcommands: getopt_long with its own
 * messages off, so that a bad option gives exactly one line on stderr that
 * names the option and the way to the help.
 */
#include <getopt.h>
#include <stdio.h>

#include "demsd/cli.h"

int dems_cli_getopt(int argc, char **argv, const struct option *opts, const char *cmd)
{
    opterr = 0;
    /* A leading ':' makes a missing value ':' rather than '?'. */
    int opt = getopt_long(argc, argv, ":", opts, NULL);
    if (opt != '?' && opt != ':')
        return opt;
    const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    if (opt == ':')
        fprintf(stderr, "demsd %s: option %s needs a value (try demsd %s --help)\n", cmd, arg, cmd);
    else if (optopt != 0)
        fprintf(stderr, "demsd %s: unknown option -%c (try demsd %s --help)\n", cmd, optopt, cmd);
    else
        fprintf(stderr, "demsd %s: unknown option %s (try demsd %s --help)\n", cmd, arg, cmd);
    return '?';
}
