/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `demsd worker`: runs job slots against the database until SIGTERM. demsd
 * serve starts these itself (config key workers); run it by hand to add
 * workers, also on other machines (database_url, and the same blob store
 * and master key under data_dir, e.g. on shared storage). A worker takes no
 * data-directory lock: any number may share one directory. With no
 * database_url it uses the embedded cluster of the demsd serving data_dir and
 * waits for it when it is not up.
 */
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dems/crypto.h"
#include "demsd/cli.h"
#include "demsd/db.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"
#include "demsd/log.h"
#include "demsd/setup.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: demsd worker --data DIR [--config FILE] [--set KEY=VALUE]...\n"
               "\n"
               "Runs background jobs (worker_slots at a time) from the database's job queue\n"
               "until SIGTERM or SIGINT, then finishes the running jobs and exits. demsd serve\n"
               "starts `workers` of these itself; start more by hand, on this machine or\n"
               "another. Elsewhere, set database_url and give the worker the same data_dir\n"
               "contents (blobs/ and keys/master.key, e.g. on shared storage).\n"
               "\n"
               "Options:\n"
               "  --data DIR        data directory (blob store, master key)\n"
               "  --config FILE     configuration file\n"
               "  --set KEY=VALUE   set a configuration key (repeatable)\n"
               "  --help            show this help\n");
    if (f == stdout) {
        printf("\nJob kinds this worker runs:");
        for (size_t i = 0; i < dems_job_nkinds; i++)
            printf(" %s", dems_job_kinds[i].name);
        printf("\n");
        dems_setup_print_keys();
    }
}

/* The master key must already exist: a worker never creates one. */
static int load_master(const struct dems_config *cfg, uint8_t *master)
{
    char path[4200], err[1024];
    if (cfg->master_key_file[0] != '\0')
        snprintf(path, sizeof(path), "%s", cfg->master_key_file);
    else
        snprintf(path, sizeof(path), "%s/keys/master.key", cfg->data_dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr,
                "demsd worker: no master key at %s: a worker needs the server's master key "
                "(master_key_file) and blob store (data_dir/blobs)\n",
                path);
        return 1;
    }
    if (dems_master_key_load(path, master, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd worker: %s\n", err);
        return 1;
    }
    return 0;
}

int dems_cli_worker(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *flags[16];
    size_t nflags = 0;
    const char *config_file = NULL;
    int opt;
    optind = 1;
    while ((opt = dems_cli_getopt(argc, argv, opts, "worker")) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 0;
        }
        if (dems_cli_common_opt(opt, optarg, flags, &nflags, &config_file) < 0)
            return 2; /* dems_cli_getopt or dems_cli_common_opt said why */
    }
    if (optind < argc) {
        fprintf(stderr, "demsd worker: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    /* Stop signals are read from a signalfd by the main thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct dems_setup s = {0};
    int rc = dems_setup_config(&s, config_file, flags, nflags);
    if (rc != 0)
        return rc;
    dems_log_set_level(s.cfg.log_level);
    char app[2048], owner[2048], err[1024];
    /* Started as root (by hand): become the service account first. */
    rc = dems_account_resolve(&s.cfg, &s.account);
    if (rc == 0 && dems_account_drop(&s.account, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd worker: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && dems_crypto_init() < 0) {
        fprintf(stderr, "demsd worker: libsodium failed to initialise\n");
        rc = 1;
    }
    if (rc == 0 && s.cfg.database_url[0] != '\0') {
        snprintf(app, sizeof(app), "%s", s.cfg.database_url);
    } else if (rc == 0 &&
               dems_embedded_conninfo(&s.cfg, owner, app, sizeof(app), err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd worker: %s\n", err);
        rc = 1;
    }
    uint8_t *master = rc == 0 ? sodium_malloc(32) : NULL;
    if (rc == 0 && master == NULL) {
        fprintf(stderr, "demsd worker: out of memory\n");
        rc = 1;
    }
    if (rc == 0)
        rc = load_master(&s.cfg, master);
    if (rc == 0)
        rc = dems_setup_blob_store(&s.cfg, "demsd worker");
    if (rc == 0) {
        sodium_mprotect_readonly(master);
        rc = dems_worker_run(&s.cfg, app, master);
    }
    if (master != NULL)
        sodium_free(master);
    dems_setup_blob_store_done();
    dems_config_done(&s.cfg);
    return rc;
}
