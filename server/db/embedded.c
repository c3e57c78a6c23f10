/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default: a private PostgreSQL cluster under data_dir/pg that
 * listens only on a Unix socket in that directory (no TCP), created with
 * initdb on first start, started with demsd and stopped with it. PostgreSQL
 * refuses to run as root, so when demsd runs as root the cluster runs as the
 * "postgres" account that Debian's package creates. The postmaster gets
 * PR_SET_PDEATHSIG so it stops if demsd dies; should one survive anyway (a
 * crash between fork and prctl), the next start adopts it, and a stale
 * postmaster.pid whose process is gone is removed.
 */
#include <dirent.h>
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

struct dems_embedded {
    char pgdir[PATH_MAX];
    pid_t pid;
    bool is_child; /* we started it (else adopted) */
};

#define SUPERUSER "dems_super"

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Writes a libpq conninfo value in single quotes with \ and ' escaped. */
static void conninfo(char *out, size_t len, const char *dir, const char *db, const char *user)
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

/* In a forked child: become uid/gid, send output to logfd, exec argv. */
static void child_exec(uid_t uid, gid_t gid, int logfd, const char *const *argv, bool deathsig)
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
        child_exec(uid, gid, logfd, argv, false);
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
    const char *argv[] = {initdb,  "-D", pgdir,  "-U",         SUPERUSER,           "-A",
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

/* A postmaster.pid naming a live postgres is adopted; a stale one removed. */
static pid_t check_pidfile(const char *pgdir)
{
    char path[PATH_MAX + 32], line[64] = "";
    snprintf(path, sizeof(path), "%s/postmaster.pid", pgdir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(line, sizeof(line), f) == NULL)
        line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    uint64_t pid = 0;
    if (dems_parse_u64(line, strlen(line), INT_MAX, &pid) == 0 && pid > 1 &&
        kill((pid_t)pid, 0) == 0) {
        char exe[64], target[PATH_MAX];
        snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(exe, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            const char *base = strrchr(target, '/');
            if (base != NULL && strcmp(base + 1, "postgres") == 0)
                return (pid_t)pid;
        }
    }
    /* Stale: its process is gone, a zombie, or something else now. Remove
     * the pid file and the socket lock too, which postgres would otherwise
     * refuse to replace while the old pid still names a process. */
    unlink(path);
    snprintf(path, sizeof(path), "%s/.s.PGSQL.5432.lock", pgdir);
    unlink(path);
    return 0;
}

static bool alive(pid_t pid)
{
    char path[64], st[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(st, 1, sizeof(st) - 1, f);
    fclose(f);
    st[n] = '\0';
    const char *close_paren = strrchr(st, ')');
    return close_paren != NULL && close_paren[1] == ' ' && close_paren[2] != 'Z';
}

/*
 * A postmaster left by an earlier demsd is either still serving (adopt it)
 * or shutting down because its parent died (wait until it is gone, then
 * start our own). Decides within 30 s.
 */
static bool adoptable(struct dems_embedded *e)
{
    char ci[2 * PATH_MAX + 100];
    conninfo(ci, sizeof(ci), e->pgdir, "postgres", SUPERUSER);
    for (int i = 0; i < 300; i++) {
        if (!alive(e->pid))
            return false;
        if (PQping(ci) == PQPING_OK)
            return true;
        sleep_ms(100);
    }
    return true; /* still there: wait_ready reports on it */
}

/*
 * After a crash that killed the postmaster, its other processes (the
 * checkpointer finishing an immediate shutdown, backends noticing their
 * parent's death) can hold the old shared memory for a while, and a new
 * postmaster refuses to start while they do ("pre-existing shared memory
 * block is still in use"). PostgreSQL's processes run in the data
 * directory: wait, at most 30 s, until no live process has it as its
 * working directory.
 */
static void wait_old_processes(const char *pgdir)
{
    char want[PATH_MAX];
    if (realpath(pgdir, want) == NULL)
        return;
    for (int i = 0; i < 300; i++) {
        DIR *d = opendir("/proc");
        bool busy = false;
        struct dirent *de;
        while (d != NULL && !busy && (de = readdir(d)) != NULL) {
            uint64_t pid = 0;
            if (dems_parse_u64(de->d_name, strlen(de->d_name), INT_MAX, &pid) < 0 ||
                (pid_t)pid == getpid())
                continue;
            char link[64], cwd[PATH_MAX];
            snprintf(link, sizeof(link), "/proc/%llu/cwd", (unsigned long long)pid);
            ssize_t n = readlink(link, cwd, sizeof(cwd) - 1);
            if (n <= 0)
                continue;
            cwd[n] = '\0';
            busy = strcmp(cwd, want) == 0 && alive((pid_t)pid);
        }
        if (d != NULL)
            closedir(d);
        if (!busy)
            return;
        sleep_ms(100);
    }
}

static int wait_ready(struct dems_embedded *e, const char *logpath, char *err, size_t errlen)
{
    char ci[2 * PATH_MAX + 100];
    conninfo(ci, sizeof(ci), e->pgdir, "postgres", SUPERUSER);
    for (int i = 0; i < 600; i++) {
        if (PQping(ci) == PQPING_OK)
            return 0;
        if (e->is_child) {
            int status;
            if (waitpid(e->pid, &status, WNOHANG) == e->pid) {
                e->pid = 0;
                snprintf(err, errlen, "embedded database: PostgreSQL exited at start; see %s",
                         logpath);
                return DEMS_EIO;
            }
        }
        sleep_ms(100);
    }
    snprintf(err, errlen, "embedded database: PostgreSQL did not become ready; see %s", logpath);
    return DEMS_EIO;
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
static int bootstrap(const char *pgdir, char *err, size_t errlen)
{
    char ci[2 * PATH_MAX + 100];
    conninfo(ci, sizeof(ci), pgdir, "postgres", SUPERUSER);
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
    conninfo(ci, sizeof(ci), pgdir, "dems", SUPERUSER);
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

static int resolve_pgdir(const struct dems_config *cfg, char *pgdir, size_t len, char *err,
                         size_t errlen)
{
    char abs[PATH_MAX];
    if (realpath(cfg->data_dir, abs) == NULL) {
        snprintf(err, errlen, "data directory %s: %s", cfg->data_dir, strerror(errno));
        return DEMS_EIO;
    }
    snprintf(pgdir, len, "%s/pg", abs);
    struct sockaddr_un sun;
    if (strlen(pgdir) + sizeof("/.s.PGSQL.5432") > sizeof(sun.sun_path)) {
        snprintf(err, errlen,
                 "embedded database: data directory path %s is too long for a Unix socket; "
                 "use a shorter path",
                 abs);
        return DEMS_EINVAL;
    }
    return 0;
}

int dems_embedded_conninfo(const struct dems_config *cfg, char *owner_ci, char *app_ci, size_t len,
                           char *err, size_t errlen)
{
    char pgdir[PATH_MAX + 8];
    int r = resolve_pgdir(cfg, pgdir, sizeof(pgdir), err, errlen);
    if (r < 0)
        return r;
    conninfo(owner_ci, len, pgdir, "dems", DEMS_DB_OWNER_ROLE);
    conninfo(app_ci, len, pgdir, "dems", DEMS_DB_APP_ROLE);
    return 0;
}

static int start_postgres(const struct dems_config *cfg, struct dems_embedded *e, uid_t uid,
                          gid_t gid, int logfd)
{
    char postgres[PATH_MAX];
    snprintf(postgres, sizeof(postgres), "%s/postgres", cfg->pg_bin_dir);
    /* Unix socket only; no LLVM JIT (dems's queries are short, and the
     * systemd unit forbids writable executable memory). */
    const char *argv[] = {postgres,
                          "-D",
                          e->pgdir,
                          "-k",
                          e->pgdir,
                          "-c",
                          "listen_addresses=",
                          "-c",
                          "unix_socket_permissions=0700",
                          "-c",
                          "jit=off",
                          NULL};
    pid_t pid = fork();
    if (pid < 0)
        return DEMS_EIO;
    if (pid == 0)
        child_exec(uid, gid, logfd, argv, true);
    e->pid = pid;
    e->is_child = true;
    return 0;
}

int dems_embedded_start(const struct dems_config *cfg, struct dems_embedded **ret, char *owner_ci,
                        char *app_ci, size_t len, char *err, size_t errlen)
{
    struct dems_embedded *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return DEMS_ENOMEM;
    uid_t uid = 0;
    gid_t gid = 0;
    int r = resolve_pgdir(cfg, e->pgdir, sizeof(e->pgdir), err, errlen);
    if (r == 0)
        r = run_as(&uid, &gid, err, errlen);
    if (r < 0) {
        free(e);
        return r;
    }
    if (geteuid() == 0)
        chmod(cfg->data_dir, 0711); /* let the postgres account reach pg/ */
    char logpath[PATH_MAX + 32], vfile[PATH_MAX + 32];
    int logfd = open_log(cfg->data_dir, uid, logpath, sizeof(logpath));
    if (logfd < 0) {
        snprintf(err, errlen, "embedded database: cannot write %s", logpath);
        free(e);
        return DEMS_EIO;
    }
    snprintf(vfile, sizeof(vfile), "%s/PG_VERSION", e->pgdir);
    if (access(vfile, F_OK) != 0)
        r = do_initdb(cfg, e->pgdir, uid, gid, logfd, logpath, err, errlen);
    if (r == 0) {
        e->pid = check_pidfile(e->pgdir);
        if (e->pid > 0 && !adoptable(e))
            e->pid = check_pidfile(e->pgdir); /* it exited: clean up after it */
        if (e->pid == 0) {
            wait_old_processes(e->pgdir);
            r = start_postgres(cfg, e, uid, gid, logfd);
        }
    }
    close(logfd);
    if (r == 0)
        r = wait_ready(e, logpath, err, errlen);
    if (r == 0)
        r = bootstrap(e->pgdir, err, errlen);
    if (r < 0) {
        dems_embedded_stop(e);
        return r;
    }
    conninfo(owner_ci, len, e->pgdir, "dems", DEMS_DB_OWNER_ROLE);
    conninfo(app_ci, len, e->pgdir, "dems", DEMS_DB_APP_ROLE);
    *ret = e;
    return 0;
}

void dems_embedded_stop(struct dems_embedded *e)
{
    if (e == NULL)
        return;
    if (e->pid > 0) {
        kill(e->pid, SIGINT); /* fast shutdown: roll back, checkpoint, exit */
        for (int i = 0; i < 600; i++) {
            if (e->is_child) {
                if (waitpid(e->pid, NULL, WNOHANG) == e->pid)
                    break;
            } else if (kill(e->pid, 0) != 0) {
                break;
            }
            if (i == 300)
                kill(e->pid, SIGQUIT); /* immediate shutdown after 30 s */
            sleep_ms(100);
        }
    }
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
