/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared start-up for the subcommands: configuration from its four sources,
 * the data-directory lock, and the database (embedded or configured).
 */
#include "demsd/setup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"
#include "demsd/blobs.h"
#include "demsd/db.h"
#include "demsd/objstore.h"

extern char **environ;

int dems_setup_config(struct dems_setup *s, const char *config_file, char **flags, size_t nflags)
{
    char err[512];
    s->lock_fd = -1;
    s->config_file = config_file;
    if (dems_config_init(&s->cfg) < 0) {
        fprintf(stderr, "demsd: out of memory\n");
        return 1;
    }
    if (config_file != NULL && dems_config_load_file(&s->cfg, config_file, err, sizeof(err)) < 0)
        goto bad;
    if (dems_config_load_env(&s->cfg, environ, err, sizeof(err)) < 0)
        goto bad;
    for (size_t i = 0; i < nflags; i++) {
        char *eq = strchr(flags[i], '=');
        if (eq == NULL) {
            snprintf(err, sizeof(err), "--set %s: expected KEY=VALUE", flags[i]);
            goto bad;
        }
        *eq = '\0';
        int r = dems_config_set(&s->cfg, flags[i], eq + 1, err, sizeof(err));
        *eq = '=';
        if (r < 0)
            goto bad;
    }
    if (dems_config_check(&s->cfg, err, sizeof(err)) < 0)
        goto bad;
    return 0;
bad:
    fprintf(stderr, "demsd: %s\n", err);
    dems_config_done(&s->cfg);
    return 2;
}

int dems_setup_database(struct dems_setup *s, bool attach_ok)
{
    char err[1024];
    struct dems_config *cfg = &s->cfg;
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "demsd: cannot create data directory %s: %s\n", cfg->data_dir,
                strerror(errno));
        return 1;
    }
    s->lock_fd = dems_datadir_lock(cfg->data_dir, err, sizeof(err));
    if (s->lock_fd >= 0 && s->account.active) {
        /* Started as root: the directory goes to the service account. */
        if (fchown(s->lock_fd, s->account.uid, s->account.gid) != 0 ||
            dems_account_own_data(&s->account, cfg->data_dir, err, sizeof(err)) < 0) {
            fprintf(stderr, "demsd: %s\n", err);
            return 1;
        }
    }
    if (cfg->database_url[0] != '\0') {
        /* A configured database: the lock only guards local files. */
        snprintf(s->app_conninfo, sizeof(s->app_conninfo), "%s", cfg->database_url);
        snprintf(s->owner_conninfo, sizeof(s->owner_conninfo), "%s",
                 cfg->database_owner_url[0] != '\0' ? cfg->database_owner_url : cfg->database_url);
        if (s->lock_fd < 0 && !attach_ok) {
            fprintf(stderr, "demsd: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (s->lock_fd < 0) {
        if (!attach_ok) {
            fprintf(stderr, "demsd: %s\n", err);
            return 1;
        }
        /* Another demsd runs the embedded cluster: use it. */
        if (dems_embedded_conninfo(cfg, s->owner_conninfo, s->app_conninfo, sizeof(s->app_conninfo),
                                   err, sizeof(err)) < 0) {
            fprintf(stderr, "demsd: %s\n", err);
            return 1;
        }
        return 0;
    }
    int client_gid = s->account.active ? (int)s->account.gid : -1;
    if (dems_embedded_start(cfg, client_gid, &s->embedded, s->owner_conninfo, s->app_conninfo,
                            sizeof(s->app_conninfo), err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        return 1;
    }
    return 0;
}

void dems_setup_done(struct dems_setup *s)
{
    dems_embedded_stop(s->embedded);
    s->embedded = NULL;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->lock_fd = -1;
    dems_config_done(&s->cfg);
}

int dems_setup_blob_store(const struct dems_config *cfg, const char *prog)
{
    if (strcmp(cfg->store, "local") == 0)
        return 0;
    char err[1024];
    struct dems_objstore *os;
    snprintf(err, sizeof(err), "out of memory");
    int r = dems_objstore_new(cfg, &os, err, sizeof(err));
    if (r == 0 && (r = dems_objstore_prepare(os, err, sizeof(err))) < 0)
        dems_objstore_free(os);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    dems_blob_use_store(os);
    return 0;
}

void dems_setup_blob_store_done(void)
{
    struct dems_objstore *os = dems_blob_store();
    dems_blob_use_store(NULL);
    dems_objstore_free(os);
}

static void print_key(const char *key, const char *def, const char *help, void *arg)
{
    (void)arg;
    printf("  %-32s %s (default: %s)\n", key, help, def[0] != '\0' ? def : "none");
}

void dems_setup_print_keys(void)
{
    printf("\nConfiguration keys (config file `key = value`, environment DEMS_<KEY>,\n"
           "or --set key=value; later sources win):\n");
    dems_config_describe(print_key, NULL);
}
