/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsd serve's worker processes: a supervisor thread forks and execs
 * /proc/self/exe worker ... for each, watches them through pidfds, and
 * restarts one that exits with a backoff (1 s, doubling to 60 s; back to 1 s
 * once a worker has run for a minute). Each child runs in its own process
 * group, so a terminal's ^C reaches only serve, which stops the workers in
 * order; and with PR_SET_PDEATHSIG it gets SIGTERM if serve dies without
 * stopping it (the signal follows the forking thread, which is why this
 * thread lives until dems_supervisor_stop). Only pids this supervisor forked
 * are waited for, never -1: the embedded PostgreSQL is serve's child too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "demsd/jobs.h"
#include "demsd/log.h"
#include "demsd/metrics.h"

extern char **environ;

#define MAX_WORKERS      64
#define RESTART_MIN_MS   1000
#define RESTART_MAX_MS   60000
#define HEALTHY_AFTER_MS 60000

struct child {
    pid_t pid; /* 0 while waiting for a restart */
    int pidfd;
    int64_t started_ms;
    int64_t restart_at_ms;
    unsigned backoff_ms;
};

struct dems_supervisor {
    pthread_t thread;
    int stop_pipe[2];
    unsigned n;
    struct child child[MAX_WORKERS];
    char **argv; /* "demsd", "worker", args..., NULL */
    char **envp; /* environ with the extra variables */
    int devnull;
    bool stopping; /* no more restarts */
    uint64_t restarts;
};

/* What GET /metrics says about the workers. */
static void publish(const struct dems_supervisor *s)
{
    unsigned alive = 0;
    for (unsigned i = 0; i < s->n; i++)
        alive += s->child[i].pid > 0;
    dems_metrics_workers(alive, s->n, s->restarts);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Between fork and exec: async-signal-safe calls only. */
static void exec_child(struct dems_supervisor *s, pid_t parent)
{
    /* Stop signals stay blocked through exec: one that arrives while the
     * worker starts waits for its signalfd instead of killing it. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_SETMASK, &stop, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
        _exit(1); /* serve is already gone */
    setpgid(0, 0);
    dup2(s->devnull, STDIN_FILENO);
    close_range(3, ~0U, 0);
    execve("/proc/self/exe", s->argv, s->envp);
    _exit(127);
}

static void spawn(struct dems_supervisor *s, unsigned i)
{
    struct child *c = &s->child[i];
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        exec_child(s, parent);
    int64_t t = now_ms();
    if (pid < 0) {
        dems_log(DEMS_LOG_ERROR, NULL, json_pack("{s:s}", "event", "worker_spawn_failed"),
                 "cannot start a worker process: %s", strerror(errno));
        c->restart_at_ms = t + c->backoff_ms;
        return;
    }
    c->pid = pid;
    c->pidfd = pidfd_open(pid, 0);
    c->started_ms = t;
    publish(s);
    dems_log(
        DEMS_LOG_INFO, NULL,
        json_pack("{s:s,s:i,s:i}", "event", "worker_spawned", "pid", (int)pid, "worker", (int)i),
        "started worker process %d", (int)pid);
}

/* Reaps child i if it exited; schedules its restart. */
static void check_exit(struct dems_supervisor *s, unsigned i)
{
    struct child *c = &s->child[i];
    int status;
    if (c->pid <= 0 || waitpid(c->pid, &status, WNOHANG) != c->pid)
        return;
    int64_t t = now_ms();
    if (t - c->started_ms >= HEALTHY_AFTER_MS)
        c->backoff_ms = RESTART_MIN_MS;
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    if (s->stopping)
        dems_log(
            DEMS_LOG_INFO, NULL,
            json_pack("{s:s,s:i,s:s}", "event", "worker_stopped", "pid", (int)c->pid, "how", how),
            "worker process %d %s", (int)c->pid, how);
    else
        dems_log(DEMS_LOG_WARN, NULL,
                 json_pack("{s:s,s:i,s:s,s:i}", "event", "worker_exited", "pid", (int)c->pid, "how",
                           how, "restart_in_ms", (int)c->backoff_ms),
                 "worker process %d %s; restarting in %u ms", (int)c->pid, how, c->backoff_ms);
    if (c->pidfd >= 0)
        close(c->pidfd);
    c->pidfd = -1;
    c->pid = 0;
    if (!s->stopping)
        s->restarts++;
    publish(s);
    c->restart_at_ms = t + c->backoff_ms;
    c->backoff_ms = c->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : c->backoff_ms * 2;
}

static void *supervise(void *arg)
{
    struct dems_supervisor *s = arg;
    for (unsigned i = 0; i < s->n; i++)
        spawn(s, i);
    for (;;) {
        struct pollfd pfd[MAX_WORKERS + 1] = {{.fd = s->stop_pipe[0], .events = POLLIN}};
        int64_t t = now_ms(), wait = -1;
        for (unsigned i = 0; i < s->n; i++) {
            struct child *c = &s->child[i];
            pfd[i + 1].fd = c->pid > 0 ? c->pidfd : -1;
            pfd[i + 1].events = POLLIN;
            if (c->pid > 0 && c->pidfd < 0)
                wait = wait < 0 || wait > 1000 ? 1000 : wait; /* no pidfd: check each second */
            if (c->pid <= 0) {
                int64_t d = c->restart_at_ms > t ? c->restart_at_ms - t : 0;
                wait = wait < 0 || d < wait ? d : wait;
            }
        }
        int r = poll(pfd, s->n + 1, (int)wait);
        if (r < 0 && errno != EINTR)
            break;
        if ((pfd[0].revents & POLLIN) != 0)
            break;
        t = now_ms();
        for (unsigned i = 0; i < s->n; i++) {
            check_exit(s, i);
            if (s->child[i].pid <= 0 && t >= s->child[i].restart_at_ms)
                spawn(s, i);
        }
    }
    return NULL;
}

static void free_list(char **l)
{
    for (size_t i = 0; l != NULL && l[i] != NULL; i++)
        free(l[i]);
    free(l);
}

/* A NULL-terminated copy of a then b (both NULL-terminated; b may be NULL). */
static char **copy_list(const char *const *a, const char *const *b)
{
    size_t na = 0, nb = 0;
    while (a[na] != NULL)
        na++;
    while (b != NULL && b[nb] != NULL)
        nb++;
    char **out = calloc(na + nb + 1, sizeof(char *));
    for (size_t i = 0; out != NULL && i < na + nb; i++) {
        out[i] = strdup(i < na ? a[i] : b[i - na]);
        if (out[i] == NULL) {
            free_list(out);
            return NULL;
        }
    }
    return out;
}

/* environ without the variables env sets, then env. */
static char **build_env(const char *const *env)
{
    size_t n = 0, k = 0;
    while (environ[n] != NULL)
        n++;
    const char **keep = calloc(n + 1, sizeof(char *));
    if (keep == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (size_t j = 0; env[j] != NULL && !replaced; j++) {
            size_t len = strcspn(env[j], "=") + 1;
            replaced = strncmp(environ[i], env[j], len) == 0;
        }
        if (!replaced)
            keep[k++] = environ[i];
    }
    char **out = copy_list(keep, env);
    free(keep);
    return out;
}

struct dems_supervisor *dems_supervisor_start(unsigned n, const char *const *args,
                                              const char *const *env)
{
    struct dems_supervisor *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->n = n < MAX_WORKERS ? n : MAX_WORKERS;
    s->stop_pipe[0] = s->stop_pipe[1] = s->devnull = -1;
    const char *head[] = {"demsd", "worker", NULL};
    s->argv = copy_list(head, args);
    s->envp = build_env(env);
    bool ok = s->argv != NULL && s->envp != NULL;
    ok = ok && pipe2(s->stop_pipe, O_CLOEXEC) == 0;
    ok = ok && (s->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;
    for (unsigned i = 0; i < s->n; i++)
        s->child[i] = (struct child){.pidfd = -1, .backoff_ms = RESTART_MIN_MS};
    if (!ok || pthread_create(&s->thread, NULL, supervise, s) != 0) {
        s->n = 0;
        dems_supervisor_stop(s, 0);
        return NULL;
    }
    return s;
}

/* Waits until every child exited or deadline (ms, monotonic) passed. */
static void wait_children(struct dems_supervisor *s, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd[MAX_WORKERS];
        unsigned live = 0;
        for (unsigned i = 0; i < s->n; i++) {
            check_exit(s, i);
            struct child *c = &s->child[i];
            pfd[i] = (struct pollfd){.fd = c->pid > 0 ? c->pidfd : -1, .events = POLLIN};
            live += c->pid > 0;
        }
        int64_t left = deadline - now_ms();
        if (live == 0 || left <= 0)
            return;
        poll(pfd, s->n, left < 100 ? (int)left : 100);
    }
}

void dems_supervisor_stop(struct dems_supervisor *s, unsigned timeout)
{
    if (s == NULL)
        return;
    if (s->n > 0) {
        (void)!write(s->stop_pipe[1], "x", 1);
        pthread_join(s->thread, NULL);
        s->stopping = true;
        unsigned live = 0;
        for (unsigned i = 0; i < s->n; i++) {
            if (s->child[i].pid > 0) {
                kill(s->child[i].pid, SIGTERM);
                live++;
            }
        }
        if (live > 0)
            dems_log(DEMS_LOG_INFO, NULL,
                     json_pack("{s:s,s:i}", "event", "workers_stopping", "workers", (int)live),
                     "stopping %u worker process(es)", live);
        wait_children(s, now_ms() + (int64_t)timeout * 1000);
        for (unsigned i = 0; i < s->n; i++) {
            struct child *c = &s->child[i];
            if (c->pid > 0) {
                dems_log(DEMS_LOG_WARN, NULL,
                         json_pack("{s:s,s:i}", "event", "worker_killed", "pid", (int)c->pid),
                         "worker process %d did not stop in time: SIGKILL", (int)c->pid);
                kill(c->pid, SIGKILL);
                waitpid(c->pid, NULL, 0);
                if (c->pidfd >= 0)
                    close(c->pidfd);
            }
        }
    }
    free_list(s->argv);
    free_list(s->envp);
    if (s->stop_pipe[0] >= 0)
        close(s->stop_pipe[0]);
    if (s->stop_pipe[1] >= 0)
        close(s->stop_pipe[1]);
    if (s->devnull >= 0)
        close(s->devnull);
    free(s);
}
