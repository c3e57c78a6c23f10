/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every subcommand that touches the database does first: read the
 * configuration from defaults, file, environment and flags; take the data
 * directory; start or reach the database. Used by server/cli/.
 */
#ifndef DEMSD_SETUP_H
#define DEMSD_SETUP_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "dems/config.h"

struct dems_embedded;

/* Common options: --data, --config, --listen, --threads, --set KEY=VALUE. */
struct dems_setup {
    struct dems_config cfg;
    const char *config_file;
    int lock_fd;
    struct dems_embedded *embedded;
    char owner_conninfo[2048];
    char app_conninfo[2048];
};

/*
 * Builds the configuration. flags holds "key=value" strings from the command
 * line (applied last). Prints one line and returns 2 on a bad value.
 */
int dems_setup_config(struct dems_setup *s, const char *config_file, char **flags, size_t nflags);

/*
 * Takes the data directory and reaches the database. With the embedded
 * default, starts the private cluster — or, when attach_ok and another demsd
 * holds the directory, uses the cluster that demsd runs. Prints one line and
 * returns 1 on failure.
 */
int dems_setup_database(struct dems_setup *s, bool attach_ok);

/* Stops what setup started (the embedded cluster, the lock). */
void dems_setup_done(struct dems_setup *s);

/* Prints the config keys for --help. */
void dems_setup_print_keys(void);

#endif
