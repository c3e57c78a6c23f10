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
#include <sys/types.h>

#include "dems/config.h"

struct dems_embedded;

/* The service account serve and workers switch to when started as root. */
struct dems_account {
    bool active; /* started as root with a user configured: switch */
    uid_t uid;
    gid_t gid;
    char name[64];
};

/* Common options: --data, --config, --listen, --threads, --set KEY=VALUE. */
struct dems_setup {
    struct dems_config cfg;
    const char *config_file;
    int lock_fd;
    struct dems_embedded *embedded;
    struct dems_account account; /* filled by dems_setup_database */
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

/*
 * The service account (server/cli/account.c). dems_account_resolve: when
 * running as root, looks up cfg->user (active), or warns when it is empty
 * (inactive); not root: inactive. Prints one line and returns 1 when the
 * account is missing or is root. dems_account_own_data gives data_dir's
 * files (not the embedded cluster's) to the account. dems_account_drop
 * switches to it for good (groups, gid, uid, capabilities, no_new_privs) and
 * checks that root cannot come back. Both: 0, or -1 with err. No-ops when
 * inactive. Drop before any thread exists.
 */
int dems_account_resolve(const struct dems_config *cfg, struct dems_account *ret);
int dems_account_own_data(const struct dems_account *a, const char *data_dir, char *err,
                          size_t errlen);
int dems_account_drop(const struct dems_account *a, char *err, size_t errlen);

/*
 * Points the blob store at the object store the configuration names (store
 * = azure | s3: checks it answers and the credentials work, creating the
 * container when missing); store = local leaves data_dir/blobs. Prints one
 * line prefixed with prog and returns 1 on failure. _done frees the client.
 */
int dems_setup_blob_store(const struct dems_config *cfg, const char *prog);
void dems_setup_blob_store_done(void);

/* Prints the config keys for --help. */
void dems_setup_print_keys(void);

#endif
