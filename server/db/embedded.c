/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default: a private PostgreSQL cluster under data_dir/pg that
 * listens only on a Unix socket (no TCP), created with initdb on first
 * start, started with demsd and stopped with it. PostgreSQL refuses to run
 * as root, so when demsd runs as root the cluster runs as the "postgres"
 * account that Debian's package creates. A keeper process (keeper.c) owns
 * the postmaster: it restarts it if it dies and stops it when demsd stops or
 * dies. This file prepares the cluster (initdb, roles, the database) and
 * talks to the keeper.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/db.h"

#include "embedded_int.h"

struct dems_embedded {
    char pgdir[PATH_MAX];     /* DATA/pg: the cluster */
    char sockdir[PATH_MAX];   /* DATA/run: its Unix socket */
    pid_t keeper;             /* our child; runs and restarts the postmaster */
    int ctl;                  /* closing it tells the keeper to stop the cluster */
    struct emb_shared *state; /* shared with the keeper */
};

void emb_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Writes a libpq conninfo value in single quotes with \ and ' escaped. */
void emb_conninfo(char *out, size_t len, const char *dir, const char *db, const char *user)
{
    char q[2 * PATH_MAX];
    size_t o = 0;
    for (const char *p = dir; *p != '\0' && o + 2 < sizeof(q); p++) {
        if (*p == '\\' || *p == '\'')
            q[o++] = '\\';
        q[o++] = *p;
    }
    q[o] = '\0';
    snprintf(out, len, "host='%s' dbname=%s user=%s connect_timeout=10", q, db, user);
}

/* The account the cluster runs as: ourselves, or "postgres" when root. */
static int run_as(uid_t *ret_uid, gid_t *ret_gid, char *err, size_t errlen)
{
    if (geteuid() != 0) {
        *ret_uid = geteuid();
        *ret_gid = getegid();
        return 0;
    }
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL) {
        snprintf(err, errlen,
                 "embedded database: running as root needs the 'postgres' account "
                 "(apt-get install postgresql) or run demsd as an ordinary user");
        return DEMS_EINVAL;
    }
    *ret_uid = pw->pw_uid;
    *ret_gid = pw->pw_gid;
    return 0;
}

_Noreturn void emb_child_exec(uid_t uid, gid_t gid, int logfd, const char *const *argv,
                              bool deathsig)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* demsd blocks SIGTERM/SIGINT */
    dup2(logfd, STDOUT_FILENO);
    dup2(logfd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    if (geteuid() == 0 && getuid() != uid) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
            dprintf(STDERR_FILENO, "demsd: cannot switch to the postgres account\n");
            _exit(127);
        }
    }
    if (deathsig)
        prctl(PR_SET_PDEATHSIG, SIGINT); /* fast shutdown if demsd dies */
    if (access(argv[2], X_OK) != 0 && errno == EACCES) {
        dprintf(STDERR_FILENO,
                "demsd: the postgres account cannot reach %s: make its parent "
                "directories searchable (chmod o+x)\n",
                argv[2]);
        _exit(127);
    }
    char *copy[16];
    size_t i = 0;
    for (; argv[i] != NULL && i < 15; i++)
        copy[i] = strdup(argv[i]); /* execv wants non-const strings */
    copy[i] = NULL;
    execv(copy[0], copy);
    dprintf(STDERR_FILENO, "demsd: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int open_log(const char *data_dir, uid_t uid, char *path, size_t len)
{
    snprintf(path, len, "%s/postgresql.log", data_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0 && geteuid() == 0)
        (void)!fchown(fd, uid, (gid_t)-1);
    return fd;
}

/* Runs a program to completion; returns its exit status or -1. */
static int run_wait(uid_t uid, gid_t gid, int logfd, const char *const *argv)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        emb_child_exec(uid, gid, logfd, argv, false);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int do_initdb(const struct dems_config *cfg, const char *pgdir, uid_t uid, gid_t gid,
                     int logfd, const char *logpath, char *err, size_t errlen)
{
    if (mkdir(pgdir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "embedded database: cannot create %s: %s", pgdir, strerror(errno));
        return DEMS_EIO;
    }
    if (geteuid() == 0 && chown(pgdir, uid, gid) != 0) {
        snprintf(err, errlen, "embedded database: cannot chown %s", pgdir);
        return DEMS_EIO;
    }
    char initdb[PATH_MAX];
    snprintf(initdb, sizeof(initdb), "%s/initdb", cfg->pg_bin_dir);
    const char *argv[] = {initdb,  "-D", pgdir,  "-U",         EMB_SUPERUSER,       "-A",
                          "trust", "-E", "UTF8", "--locale=C", "--no-instructions", NULL};
    if (access(initdb, X_OK) != 0) {
        snprintf(err, errlen,
                 "embedded database: %s not found (apt-get install postgresql, or set "
                 "pg_bin_dir)",
                 initdb);
        return DEMS_EINVAL;
    }
    if (run_wait(uid, gid, logfd, argv) != 0) {
        snprintf(err, errlen, "embedded database: initdb failed; see %s", logpath);
        return DEMS_EIO;
    }
    return 0;
}

static int exec_sql(PGconn *db, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(db, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(err, errlen, "embedded database: %.300s", PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : DEMS_EDB;
}

/* Roles and database, idempotently: owner owns the schema, app may only use it. */
static int bootstrap(const char *sockdir, char *err, size_t errlen)
{
    char ci[2 * PATH_MAX + 100];
    emb_conninfo(ci, sizeof(ci), sockdir, "postgres", EMB_SUPERUSER);
    PGconn *db = dems_db_connect_sync(ci, err, errlen);
    if (db == NULL)
        return DEMS_EDB;
    int r = exec_sql(db,
                     "DO $$ BEGIN "
                     "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dems_owner') THEN "
                     "CREATE ROLE dems_owner LOGIN; END IF; "
                     "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dems_app') THEN "
                     "CREATE ROLE dems_app LOGIN; END IF; END $$",
                     err, errlen);
    PGresult *res = r == 0 ? PQexec(db, "SELECT 1 FROM pg_database WHERE datname = 'dems'") : NULL;
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0)
        r = exec_sql(db, "CREATE DATABASE dems OWNER dems_owner", err, errlen);
    PQclear(res);
    PQfinish(db);
    if (r < 0)
        return r;
    emb_conninfo(ci, sizeof(ci), sockdir, "dems", EMB_SUPERUSER);
    db = dems_db_connect_sync(ci, err, errlen);
    if (db == NULL)
        return DEMS_EDB;
    r = exec_sql(db,
                 "ALTER SCHEMA public OWNER TO dems_owner;"
                 "REVOKE ALL ON SCHEMA public FROM PUBLIC;"
                 "GRANT USAGE ON SCHEMA public TO dems_app;"
                 "REVOKE ALL ON DATABASE dems FROM PUBLIC;"
                 "GRANT CONNECT ON DATABASE dems TO dems_owner, dems_app",
                 err, errlen);
    PQfinish(db);
    return r;
}

/* DATA/pg (the cluster) and DATA/run (its socket), absolute. */
static int resolve_dirs(const struct dems_config *cfg, char *pgdir, char *sockdir, size_t len,
                        char *err, size_t errlen)
{
    char abs[PATH_MAX];
    if (realpath(cfg->data_dir, abs) == NULL) {
        snprintf(err, errlen, "data directory %s: %s", cfg->data_dir, strerror(errno));
        return DEMS_EIO;
    }
    snprintf(pgdir, len, "%s/pg", abs);
    snprintf(sockdir, len, "%s/run", abs);
    struct sockaddr_un sun;
    if (strlen(sockdir) + sizeof("/.s.PGSQL.5432") > sizeof(sun.sun_path)) {
        snprintf(err, errlen,
                 "embedded database: data directory path %s is too long for a Unix socket; "
                 "use a shorter path",
                 abs);
        return DEMS_EINVAL;
    }
    return 0;
}

/*
 * The socket's directory. Run by root for a service account (client_gid):
 * the cluster's account owns it and the service account's group may enter
 * it (0750), which is the only gate — the socket itself is 0777. Otherwise
 * it is private to the account running everything (0700, socket 0700).
 */
static int make_sockdir(const char *sockdir, uid_t uid, gid_t gid, int client_gid, char *err,
                        size_t errlen)
{
    if (mkdir(sockdir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "embedded database: cannot create %s: %s", sockdir, strerror(errno));
        return DEMS_EIO;
    }
    bool shared = geteuid() == 0 && client_gid >= 0;
    if (geteuid() == 0 && chown(sockdir, uid, shared ? (gid_t)client_gid : gid) != 0) {
        snprintf(err, errlen, "embedded database: cannot chown %s: %s", sockdir, strerror(errno));
        return DEMS_EIO;
    }
    if (chmod(sockdir, shared ? 0750 : 0700) != 0) {
        snprintf(err, errlen, "embedded database: cannot chmod %s: %s", sockdir, strerror(errno));
        return DEMS_EIO;
    }
    return 0;
}

int dems_embedded_conninfo(const struct dems_config *cfg, char *owner_ci, char *app_ci, size_t len,
                           char *err, size_t errlen)
{
    char pgdir[PATH_MAX + 8], sockdir[PATH_MAX + 8];
    int r = resolve_dirs(cfg, pgdir, sockdir, sizeof(pgdir), err, errlen);
    if (r < 0)
        return r;
    emb_conninfo(owner_ci, len, sockdir, "dems", DEMS_DB_OWNER_ROLE);
    emb_conninfo(app_ci, len, sockdir, "dems", DEMS_DB_APP_ROLE);
    return 0;
}

/*
 * Waits for the keeper's first start: 0 once the cluster answers, or an
 * error (the keeper exited; its reason, or how it ended).
 */
static int wait_first_start(struct dems_embedded *e, char *err, size_t errlen)
{
    for (;;) {
        int st = atomic_load(&e->state->state);
        if (st == DEMS_EMBEDDED_UP)
            return 0;
        int status;
        pid_t w = st == DEMS_EMBEDDED_FAILED ? waitpid(e->keeper, &status, 0)
                                             : waitpid(e->keeper, &status, WNOHANG);
        if (w == e->keeper) {
            e->keeper = 0;
            if (e->state->reason[0] != '\0')
                snprintf(err, errlen, "%s", e->state->reason);
            else
                snprintf(err, errlen, "embedded database: its keeper process %s",
                         WIFSIGNALED(status) ? "was killed" : "exited");
            return DEMS_EIO;
        }
        emb_sleep_ms(20);
    }
}

enum dems_embedded_state dems_embedded_state(const struct dems_embedded *e)
{
    return (enum dems_embedded_state)atomic_load(&e->state->state);
}

int dems_embedded_start(const struct dems_config *cfg, int client_gid, struct dems_embedded **ret,
                        char *owner_ci, char *app_ci, size_t len, char *err, size_t errlen)
{
    struct dems_embedded *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return DEMS_ENOMEM;
    e->ctl = -1;
    e->state =
        mmap(NULL, sizeof(*e->state), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (e->state == MAP_FAILED) {
        free(e);
        return DEMS_ENOMEM;
    }
    uid_t uid = 0;
    gid_t gid = 0;
    int r = resolve_dirs(cfg, e->pgdir, e->sockdir, sizeof(e->pgdir), err, errlen);
    if (r == 0)
        r = run_as(&uid, &gid, err, errlen);
    if (r == 0)
        r = make_sockdir(e->sockdir, uid, gid, client_gid, err, errlen);
    if (r < 0) {
        dems_embedded_stop(e);
        return r;
    }
    if (geteuid() == 0)
        chmod(cfg->data_dir, 0711); /* let the postgres account reach pg/ */
    char logpath[PATH_MAX + 32], vfile[PATH_MAX + 32];
    int logfd = open_log(cfg->data_dir, uid, logpath, sizeof(logpath));
    if (logfd < 0) {
        snprintf(err, errlen, "embedded database: cannot write %s", logpath);
        dems_embedded_stop(e);
        return DEMS_EIO;
    }
    snprintf(vfile, sizeof(vfile), "%s/PG_VERSION", e->pgdir);
    if (access(vfile, F_OK) != 0)
        r = do_initdb(cfg, e->pgdir, uid, gid, logfd, logpath, err, errlen);
    if (r == 0) {
        struct emb_keeper_args a = {.cfg = cfg,
                                    .pgdir = e->pgdir,
                                    .sockdir = e->sockdir,
                                    .socket_mode =
                                        geteuid() == 0 && client_gid >= 0 ? "0777" : "0700",
                                    .logpath = logpath,
                                    .logfd = logfd,
                                    .uid = uid,
                                    .gid = gid};
        e->keeper = emb_keeper_start(&a, e->state, &e->ctl);
        if (e->keeper < 0) {
            e->keeper = 0;
            snprintf(err, errlen, "embedded database: cannot fork: %s", strerror(errno));
            r = DEMS_EIO;
        }
    }
    close(logfd);
    if (r == 0)
        r = wait_first_start(e, err, errlen);
    if (r == 0)
        r = bootstrap(e->sockdir, err, errlen);
    if (r < 0) {
        dems_embedded_stop(e);
        return r;
    }
    emb_conninfo(owner_ci, len, e->sockdir, "dems", DEMS_DB_OWNER_ROLE);
    emb_conninfo(app_ci, len, e->sockdir, "dems", DEMS_DB_APP_ROLE);
    *ret = e;
    return 0;
}

void dems_embedded_stop(struct dems_embedded *e)
{
    if (e == NULL)
        return;
    /* The keeper stops the postmaster when its control pipe closes. */
    if (e->ctl >= 0)
        close(e->ctl);
    if (e->keeper > 0)
        while (waitpid(e->keeper, NULL, 0) < 0 && errno == EINTR)
            ;
    if (e->state != MAP_FAILED && e->state != NULL)
        munmap(e->state, sizeof(*e->state));
    free(e);
}

int dems_datadir_lock(const char *data_dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/demsd.lock", data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "data directory %s: cannot open lock file: %s", data_dir,
                 strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "another demsd (pid %s) is already using data directory %s",
                 pid[0] != '\0' ? pid : "?", data_dir);
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "data directory %s: cannot write lock file", data_dir);
        close(fd);
        return -1;
    }
    return fd;
}
