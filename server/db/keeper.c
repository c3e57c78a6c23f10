/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded cluster's keeper: a small process forked by demsd (before it
 * has threads) that owns the postmaster. It runs as the cluster's account
 * (demsd started as root switches it to "postgres"), so it can start, signal
 * and restart the postmaster after demsd itself has dropped its privileges.
 *
 * If the postmaster dies (a crash, an OOM kill, kill -9) the keeper waits
 * until the old cluster's processes are gone, starts a new postmaster
 * (PostgreSQL recovers from its WAL) and keeps trying with a backoff —
 * 0.5 s doubling to 30 s, back to 0.5 s once the cluster has run for a
 * minute — until one accepts connections. demsd's connection pools
 * reconnect on their own; /readyz reads the keeper's state from a shared
 * page. The keeper stops the postmaster (fast shutdown, immediate after
 * 30 s) when demsd closes the control pipe or dies, and only then.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/str.h"
#include "demsd/log.h"

#include "embedded_int.h"

#define BACKOFF_MIN_MS   500
#define BACKOFF_MAX_MS   30000
#define HEALTHY_AFTER_MS 60000
#define NO_ANSWER_MAX_MS 60000 /* a live postmaster that never answers */

struct keeper {
    const struct emb_keeper_args *a;
    struct emb_shared *sh;
    int ctl;       /* read end of the control pipe: readable or closed = stop */
    pid_t pid;     /* the postmaster, 0 when none */
    int pidfd;     /* -1 when none (or pidfd_open failed: then we poll) */
    bool is_child; /* we started it (else adopted from a crashed demsd) */
    char how[128]; /* how the postmaster last ended */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_state(struct keeper *k, enum dems_embedded_state st)
{
    atomic_store(&k->sh->state, (int)st);
}

/* True when demsd asked us to stop (or is gone); waits up to ms for it. */
static bool stop_requested(const struct keeper *k, int ms)
{
    struct pollfd p = {.fd = k->ctl, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return r > 0;
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

/* A postmaster.pid naming a live postgres is adopted; a stale one removed. */
static pid_t check_pidfile(const char *pgdir, const char *sockdir)
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
    snprintf(path, sizeof(path), "%s/.s.PGSQL.5432.lock", sockdir);
    unlink(path);
    return 0;
}

/*
 * A postmaster left by an earlier demsd is either still serving (adopt it)
 * or shutting down because its parent died (wait until it is gone, then
 * start our own). Decides within 30 s.
 */
static bool adoptable(const struct keeper *k)
{
    char ci[2 * PATH_MAX + 100];
    emb_conninfo(ci, sizeof(ci), k->a->sockdir, "postgres", EMB_SUPERUSER);
    for (int i = 0; i < 300; i++) {
        if (!alive(k->pid))
            return false;
        if (PQping(ci) == PQPING_OK)
            return true;
        emb_sleep_ms(100);
    }
    return true; /* still there: wait_up reports on it */
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
        emb_sleep_ms(100);
    }
}

static void launch(struct keeper *k)
{
    char postgres[PATH_MAX];
    snprintf(postgres, sizeof(postgres), "%s/postgres", k->a->cfg->pg_bin_dir);
    char perms[48];
    snprintf(perms, sizeof(perms), "unix_socket_permissions=%s", k->a->socket_mode);
    /* Unix socket only; no LLVM JIT (dems's queries are short, and the
     * systemd unit forbids writable executable memory). */
    const char *argv[] = {postgres,      "-D", k->a->pgdir,         "-k",
                          k->a->sockdir, "-c", "listen_addresses=", "-c",
                          perms,         "-c", "jit=off",           NULL};
    pid_t pid = fork();
    if (pid == 0)
        emb_child_exec(k->a->uid, k->a->gid, k->a->logfd, argv, true);
    if (pid < 0) {
        snprintf(k->how, sizeof(k->how), "cannot fork: %s", strerror(errno));
        return;
    }
    k->pid = pid;
    k->is_child = true;
    k->pidfd = pidfd_open(pid, 0);
}

/* Adopts a postmaster a crashed demsd left serving, or starts one. */
static void adopt_or_launch(struct keeper *k)
{
    k->pid = check_pidfile(k->a->pgdir, k->a->sockdir);
    if (k->pid > 0 && !adoptable(k))
        k->pid = check_pidfile(k->a->pgdir, k->a->sockdir); /* it exited: clean up after it */
    if (k->pid > 0) {
        k->is_child = false;
        k->pidfd = pidfd_open(k->pid, 0);
        return;
    }
    wait_old_processes(k->a->pgdir);
    launch(k);
}

/* True (and the postmaster forgotten, k->how filled) once it has exited. */
static bool reap(struct keeper *k)
{
    if (k->pid <= 0)
        return true;
    if (k->is_child) {
        int st;
        if (waitpid(k->pid, &st, WNOHANG) != k->pid)
            return false;
        if (WIFSIGNALED(st))
            snprintf(k->how, sizeof(k->how), "killed by signal %d (%s)", WTERMSIG(st),
                     strsignal(WTERMSIG(st)));
        else
            snprintf(k->how, sizeof(k->how), "exited with status %d", WEXITSTATUS(st));
    } else {
        if (alive(k->pid))
            return false;
        snprintf(k->how, sizeof(k->how), "exited");
    }
    if (k->pidfd >= 0)
        close(k->pidfd);
    k->pidfd = -1;
    k->pid = 0;
    return true;
}

/* Fast shutdown, immediate after 30 s, SIGKILL after 60 s; waits for it. */
static void stop_postgres(struct keeper *k)
{
    if (k->pid <= 0)
        return;
    kill(k->pid, SIGINT);
    for (int i = 0; !reap(k); i++) {
        if (i == 300)
            kill(k->pid, SIGQUIT);
        if (i == 600)
            kill(k->pid, SIGKILL);
        emb_sleep_ms(100);
    }
}

/*
 * Waits until the postmaster accepts connections: 0; 1 when asked to stop;
 * -1 when it exited or never answered (k->how says which). A postmaster
 * that answers "starting up" (crash recovery replaying WAL) is waited for
 * as long as it takes.
 */
static int wait_up(struct keeper *k)
{
    char ci[2 * PATH_MAX + 100];
    emb_conninfo(ci, sizeof(ci), k->a->sockdir, "postgres", EMB_SUPERUSER);
    int64_t silent_since = now_ms();
    while (k->pid > 0) {
        PGPing p = PQping(ci);
        if (p == PQPING_OK)
            return 0;
        if (p != PQPING_NO_RESPONSE)
            silent_since = now_ms();
        if (reap(k))
            return -1;
        if (now_ms() - silent_since > NO_ANSWER_MAX_MS) {
            snprintf(k->how, sizeof(k->how), "did not accept connections within %d s",
                     NO_ANSWER_MAX_MS / 1000);
            stop_postgres(k);
            return -1;
        }
        if (stop_requested(k, 100))
            return 1;
    }
    return -1; /* launch failed */
}

static _Noreturn void finish(struct keeper *k)
{
    stop_postgres(k);
    set_state(k, DEMS_EMBEDDED_STOPPED);
    _exit(0);
}

/* After the postmaster died: start it again until it answers, or stop. */
static void restart(struct keeper *k, unsigned *backoff)
{
    for (;;) {
        if (stop_requested(k, (int)*backoff))
            finish(k);
        *backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
        adopt_or_launch(k);
        int r = wait_up(k);
        if (r == 1)
            finish(k);
        if (r == 0)
            return;
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s,s:i}", "event", "embedded_db_start_failed", "how", k->how,
                           "retry_in_ms", (int)*backoff),
                 "embedded PostgreSQL did not start again (%s; see %s): retrying in %u ms", k->how,
                 k->a->logpath, *backoff);
    }
}

static _Noreturn void run(struct keeper *k)
{
    adopt_or_launch(k);
    int r = wait_up(k);
    if (r == 1)
        finish(k);
    if (r < 0) {
        snprintf(k->sh->reason, sizeof(k->sh->reason),
                 "embedded database: PostgreSQL %s at start; see %s", k->how, k->a->logpath);
        set_state(k, DEMS_EMBEDDED_FAILED);
        _exit(1);
    }
    set_state(k, DEMS_EMBEDDED_UP);
    unsigned backoff = BACKOFF_MIN_MS;
    int64_t up_at = now_ms();
    for (;;) {
        struct pollfd p[2] = {{.fd = k->ctl, .events = POLLIN}, {.fd = k->pidfd, .events = POLLIN}};
        int n = poll(p, 2, k->pidfd >= 0 ? -1 : 1000);
        if (n < 0 && errno != EINTR)
            emb_sleep_ms(100);
        if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
            finish(k);
        if (!reap(k))
            continue;
        set_state(k, DEMS_EMBEDDED_DOWN);
        atomic_fetch_add(&k->sh->restarts, 1);
        if (now_ms() - up_at >= HEALTHY_AFTER_MS)
            backoff = BACKOFF_MIN_MS;
        dems_log(DEMS_LOG_ERROR, NULL,
                 json_pack("{s:s,s:s,s:i}", "event", "embedded_db_exited", "how", k->how,
                           "restart_in_ms", (int)backoff),
                 "embedded PostgreSQL %s (see %s): restarting it in %u ms", k->how, k->a->logpath,
                 backoff);
        restart(k, &backoff);
        set_state(k, DEMS_EMBEDDED_UP);
        up_at = now_ms();
        dems_log(DEMS_LOG_INFO, NULL,
                 json_pack("{s:s,s:i,s:i}", "event", "embedded_db_restarted", "pid", (int)k->pid,
                           "restarts", (int)atomic_load(&k->sh->restarts)),
                 "embedded PostgreSQL is back (pid %d)", (int)k->pid);
    }
}

/* Closes every descriptor above 2 but a and b. */
static void close_all_but(int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo > 3)
        close_range(3, (unsigned)lo - 1, 0);
    if (hi > lo + 1)
        close_range((unsigned)lo + 1, (unsigned)hi - 1, 0);
    close_range((unsigned)hi + 1, ~0U, 0);
}

pid_t emb_keeper_start(const struct emb_keeper_args *a, struct emb_shared *shared, int *ret_ctl)
{
    int ctl[2];
    if (pipe2(ctl, O_CLOEXEC) != 0)
        return -1;
    atomic_store(&shared->state, (int)DEMS_EMBEDDED_STARTING);
    pid_t pid = fork();
    if (pid != 0) {
        close(ctl[0]);
        if (pid < 0)
            close(ctl[1]);
        else
            *ret_ctl = ctl[1];
        return pid;
    }
    /* The keeper. Its own process group: a terminal's ^C reaches demsd,
     * which stops the cluster in order, not the cluster at once. */
    struct keeper k = {.a = a, .sh = shared, .ctl = ctl[0], .pidfd = -1};
    close(ctl[1]);
    close_all_but(ctl[0], a->logfd);
    setpgid(0, 0);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop, NULL); /* it stops when told, through the pipe */
    /* Started as root: no capability may come back to the cluster through a
     * set-user-ID program (a superuser's COPY ... TO PROGRAM could run one). */
    for (int c = 0; geteuid() == 0 && prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++)
        prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
    if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(a->gid) != 0 || setuid(a->uid) != 0)) {
        snprintf(shared->reason, sizeof(shared->reason),
                 "embedded database: cannot switch to the cluster's account: %s", strerror(errno));
        set_state(&k, DEMS_EMBEDDED_FAILED);
        _exit(1);
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    run(&k);
}
