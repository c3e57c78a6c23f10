/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `demsd serve`: start-up in order — configuration, data directory lock,
 * database (embedded or configured), migrations, first administrator, TLS,
 * work pool, event loops — then serve until SIGTERM/SIGINT and undo it all
 * in reverse.
 */
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/blobs.h"
#include "demsd/cli.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/jobs.h"
#include "demsd/ledger.h"
#include "demsd/log.h"
#include "demsd/metrics.h"
#include "demsd/runtime.h"
#include "demsd/setup.h"
#include "demsd/store.h"
#include "demsd/timestamp.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: demsd serve --data DIR [--listen HOST:PORT] [--config FILE] [options]\n"
            "\n"
            "Serves the dems HTTPS API. With no database_url it runs a private PostgreSQL\n"
            "under DIR; with no TLS files it generates a self-signed certificate there.\n"
            "\n"
            "Options:\n"
            "  --data DIR           data directory (config key data_dir)\n"
            "  --listen HOST:PORT   address to serve on (default 127.0.0.1:8443; port 0 picks\n"
            "                       a free port, logged at start)\n"
            "  --config FILE        read configuration from FILE (see deploy/dems.conf.example)\n"
            "  --threads N          event-loop threads (default: one per CPU core)\n"
            "  --set KEY=VALUE      set any configuration key (repeatable)\n"
            "  --help               show this help\n");
    if (f == stdout)
        dems_setup_print_keys();
}

int dems_cli_common_opt(int opt, const char *arg, char **flags, size_t *nflags,
                        const char **config_file)
{
    static char buf[16][1024];
    if (opt == '?')
        return -1;
    if (*nflags >= 16) {
        fprintf(stderr, "demsd: at most 16 --set, --data, --listen and --threads options\n");
        return -1;
    }
    const char *key = NULL;
    switch (opt) {
    case 'd':
        key = "data_dir";
        break;
    case 'l':
        key = "listen";
        break;
    case 't':
        key = "threads";
        break;
    case 'c':
        *config_file = arg;
        return 0;
    case 's':
        snprintf(buf[*nflags], sizeof(buf[0]), "%s", arg);
        flags[*nflags] = buf[*nflags];
        (*nflags)++;
        return 0;
    default:
        return -1;
    }
    snprintf(buf[*nflags], sizeof(buf[0]), "%s=%s", key, arg);
    flags[*nflags] = buf[*nflags];
    (*nflags)++;
    return 0;
}

/*
 * The first administrator's password never goes into the log (which systemd
 * keeps in its journal) nor to stdout. It is written to
 * DATA/initial-admin-password, readable only by the account demsd runs as,
 * and printed on stderr only when stderr is a terminal (./deploy/run). The
 * log says where the file is.
 */
static void announce_admin(const char *data_dir, const char *pw)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/initial-admin-password", data_dir);
    /* A fresh file: never write through a link or into someone else's file. */
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    bool saved = fd >= 0 && dprintf(fd, "%s\n", pw) > 0 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!saved)
        unlink(path);
    bool tty = isatty(STDERR_FILENO) == 1;
    if (tty) {
        flockfile(stderr);
        fprintf(stderr,
                "\ndems: first administrator created (shown once; %s)\n"
                "  username: admin\n  password: %s\n\n",
                saved ? "also in DATA/initial-admin-password" : "store it now", pw);
        fflush(stderr);
        funlockfile(stderr);
    }
    if (saved)
        dems_log(DEMS_LOG_WARN, NULL,
                 json_pack("{s:s,s:s,s:s}", "event", "admin_created", "username", "admin",
                           "password_file", path),
                 "first administrator 'admin' created; its password is in %s (mode 0600): "
                 "sign in, then delete the file",
                 path);
    else
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s,s:b}", "event", "admin_created", "username", "admin",
                           "password_file_written", 0),
                 "first administrator 'admin' created, but its password could not be saved in "
                 "%s%s",
                 path,
                 tty ? " (it was shown on the terminal)"
                     : ": create another administrator with `demsd admin create-user --role "
                       "admin`");
}

static int migrate_and_bootstrap(struct dems_setup *s, struct dems_server *srv)
{
    char err[1024];
    PGconn *owner = dems_db_connect_sync(s->owner_conninfo, err, sizeof(err));
    if (owner == NULL) {
        fprintf(stderr, "demsd: %s\n", err);
        return 1;
    }
    int r = 0;
    if (s->cfg.auto_migrate) {
        r = dems_migrate_run(owner, DEMS_DB_APP_ROLE, err, sizeof(err));
    } else {
        srv->migrations_status = dems_migrate_status(owner);
        if (srv->migrations_status != NULL)
            dems_log(DEMS_LOG_WARN, NULL, NULL, "database schema not current: %s",
                     srv->migrations_status);
    }
    PQfinish(owner);
    if (r < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        return 1;
    }
    PGconn *app = dems_db_connect_sync(s->app_conninfo, err, sizeof(err));
    if (app == NULL) {
        fprintf(stderr, "demsd: %s\n", err);
        return 1;
    }
    PGresult *res = PQexec(app, "SELECT count(*) FROM users");
    bool empty = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "0") == 0;
    PQclear(res);
    if (empty) {
        /* First start: make an administrator so the system is usable. */
        uint8_t raw[18];
        char pw[32];
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2base64(pw, sizeof(pw), raw, sizeof(raw),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        r = dems_auth_create_user_sync(app, "admin", "admin", pw, err, sizeof(err));
        if (r == 0)
            announce_admin(s->cfg.data_dir, pw);
        sodium_memzero(pw, sizeof(pw));
    }
    PQfinish(app);
    if (r < 0) {
        fprintf(stderr, "demsd: creating the first administrator: %s\n", err);
        return 1;
    }
    return 0;
}

/* The master key (outside the database) and the ledger's appender. */
static int start_ledger(struct dems_setup *s, struct dems_server *srv)
{
    char path[4200], err[1024];
    if (s->cfg.master_key_file[0] != '\0')
        snprintf(path, sizeof(path), "%s", s->cfg.master_key_file);
    else
        snprintf(path, sizeof(path), "%s/keys/master.key", s->cfg.data_dir);
    uint8_t *master = sodium_malloc(32);
    int r = master != NULL ? dems_master_key_load(path, master, err, sizeof(err)) : DEMS_ENOMEM;
    if (r == 0)
        r = dems_witness_start(srv, s->app_conninfo, master, err, sizeof(err));
    if (r == 0) {
        r = dems_ledger_start(srv, s->app_conninfo, master, err, sizeof(err));
        if (r < 0)
            dems_witness_stop(srv);
    }
    if (r == 0) {
        sodium_mprotect_readonly(master);
        srv->master_key = master; /* freed when serve ends */
    } else if (master != NULL) {
        sodium_free(master);
    }
    if (r < 0) {
        fprintf(stderr, "demsd: %s\n", r == DEMS_ENOMEM ? "out of memory" : err);
        return 1;
    }
    return 0;
}

/*
 * The job workers (config key workers): `demsd worker` with serve's own
 * configuration sources, and the embedded cluster's address when serve runs
 * one. NULL when there are none (or no memory: serve carries on without).
 */
static struct dems_supervisor *start_workers(struct dems_setup *s, char **flags, size_t nflags)
{
    if (s->cfg.workers == 0)
        return NULL;
    const char *args[2 * 16 + 3], *env[2] = {NULL, NULL};
    char dburl[2100];
    size_t n = 0;
    if (s->config_file != NULL) {
        args[n++] = "--config";
        args[n++] = s->config_file;
    }
    for (size_t i = 0; i < nflags; i++) {
        args[n++] = "--set";
        args[n++] = flags[i];
    }
    args[n] = NULL;
    if (s->cfg.database_url[0] == '\0') {
        /* In the environment: flags (at most 16) may all be taken. */
        snprintf(dburl, sizeof(dburl), "DEMS_DATABASE_URL=%s", s->app_conninfo);
        env[0] = dburl;
    }
    struct dems_supervisor *sup = dems_supervisor_start((unsigned)s->cfg.workers, args, env);
    if (sup == NULL)
        dems_log(DEMS_LOG_ERROR, NULL, json_pack("{s:s}", "event", "workers_not_started"),
                 "cannot start the job workers: out of memory");
    return sup;
}

/* The settings that change at run time: the configuration, then the database's overrides. */
static int load_settings(struct dems_setup *s, char *err, size_t errlen)
{
    dems_runtime_init(&s->cfg);
    PGconn *db = dems_db_connect_sync(s->app_conninfo, err, errlen);
    if (db == NULL)
        return DEMS_EDB;
    PGresult *res = PQexec(db, "SELECT key, value FROM settings");
    int n = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    const char **keys = n >= 0 ? calloc((size_t)n + 1, sizeof(*keys)) : NULL;
    const char **values = n >= 0 ? calloc((size_t)n + 1, sizeof(*values)) : NULL;
    int r = keys != NULL && values != NULL ? 0 : DEMS_EDB;
    for (int i = 0; r == 0 && i < n; i++) {
        keys[i] = PQgetvalue(res, i, 0);
        values[i] = PQgetvalue(res, i, 1);
    }
    if (r == 0)
        dems_runtime_apply(keys, values, (size_t)n);
    else
        snprintf(err, errlen, "cannot read the settings table: %s", PQerrorMessage(db));
    free(keys);
    free(values);
    PQclear(res);
    PQfinish(db);
    return r;
}

int dems_cli_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"config", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *flags[16];
    size_t nflags = 0;
    const char *config_file = NULL;
    int opt;
    optind = 1;
    while ((opt = dems_cli_getopt(argc, argv, opts, "serve")) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 0;
        }
        if (dems_cli_common_opt(opt, optarg, flags, &nflags, &config_file) < 0)
            return 2; /* dems_cli_getopt or dems_cli_common_opt said why */
    }
    if (optind < argc) {
        fprintf(stderr, "demsd serve: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    /* Block the stop signals before any thread or child exists; the main
     * thread takes them with sigwait once the loops run. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Measured: with glibc's default trim threshold each loop thread's arena
     * shrank and regrew its heap on almost every request (madvise + page
     * faults, ~15% of CPU under load). Keep freed memory for reuse instead. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    /* Loops are woken from other threads (work pool, shutdown). */
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "demsd: libevent has no pthreads support\n");
        return 1;
    }

    struct dems_setup s = {0};
    int rc = dems_setup_config(&s, config_file, flags, nflags);
    if (rc != 0)
        return rc;
    dems_log_set_level(s.cfg.log_level);
    if (dems_crypto_init() < 0) {
        fprintf(stderr, "demsd: libsodium failed to initialise\n");
        dems_config_done(&s.cfg);
        return 1;
    }
    rc = dems_account_resolve(&s.cfg, &s.account);
    if (rc == 0)
        rc = dems_setup_database(&s, false);
    struct dems_server srv = {.cfg = &s.cfg, .listen_fd = -1, .embedded = s.embedded};
    char err[1024];
    /* Root is needed only for the port, the cluster's account and the data
     * directory's owner: bind, then become the service account. */
    if (rc == 0 && dems_listen_open(&srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && dems_account_drop(&s.account, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (rc == 0)
        rc = migrate_and_bootstrap(&s, &srv);
    if (rc == 0)
        rc = dems_setup_blob_store(&s.cfg, "demsd");
    if (rc == 0)
        rc = start_ledger(&s, &srv);
    if (rc == 0 && dems_timestamps_start(&srv, s.app_conninfo, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && dems_staging_init(s.cfg.data_dir, srv.master_key) < 0) {
        fprintf(stderr, "demsd: cannot create %s/staging\n", s.cfg.data_dir);
        rc = 1;
    }
    if (rc == 0 && dems_blob_store() != NULL)
        dems_staging_set_remote(dems_blob_store()); /* uploads continue on any node */
    if (rc == 0 && dems_tls_init(&srv, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && dems_revoked_load(srv.revoked, s.app_conninfo, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && load_settings(&s, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && dems_metrics_init(dems_nroutes) < 0) {
        fprintf(stderr, "demsd: out of memory\n");
        rc = 1;
    }
    if (rc == 0) {
        snprintf(srv.db_conninfo, sizeof(srv.db_conninfo), "%s", s.app_conninfo);
        struct dems_supervisor *workers = start_workers(&s, flags, nflags);
        /* Object-store calls wait on the network for seconds (retries, a slow
         * store) on work-pool threads: more of them, so that logins and other
         * short work do not queue behind blob transfers. */
        unsigned pool = strcmp(s.cfg.store, "local") == 0 ? 2 : 8;
        if (dems_work_start(&srv, pool) < 0 || dems_loops_run(&srv) < 0)
            rc = 1;
        srv.listen_fd = -1; /* dems_loops_run closed it */
        dems_supervisor_stop(workers, (unsigned)s.cfg.shutdown_timeout);
        if (srv.workers != NULL)
            dems_work_stop(&srv);
    }
    if (srv.listen_fd >= 0)
        close(srv.listen_fd);
    dems_timestamps_stop();
    dems_ledger_stop(&srv);
    dems_witness_stop(&srv);
    if (srv.master_key != NULL)
        sodium_free(srv.master_key);
    dems_staging_done();
    dems_setup_blob_store_done();
    dems_tls_done(&srv);
    free(srv.migrations_status);
    dems_setup_done(&s);
    if (rc == 0)
        dems_log(DEMS_LOG_INFO, NULL, json_pack("{s:s}", "event", "stopped"), "demsd stopped");
    return rc;
}
