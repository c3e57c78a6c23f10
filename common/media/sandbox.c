/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The decoding sandbox: a forked child (no exec) with only its input,
 * outputs and a result pipe open, an unprivileged account (it switches to
 * lim->uid/gid when it starts as root, and refuses to run as root), no
 * capabilities at all (bounding set emptied when it can, ambient, effective,
 * permitted and inheritable cleared), no_new_privs, no core dumps,
 * CPU/address-space/file-size/fd rlimits and a seccomp allow-list,
 * reporting back as one JSON document on the pipe. The parent enforces the wall-clock timeout and
 * turns every way the child can end into a struct dems_media_error.
 *
 * Seccomp policy (docs/media.md): the default action is SECCOMP_RET_TRAP, and
 * the child's SIGSYS handler writes the offending syscall number to the pipe
 * and exits with EXIT_SECCOMP, so the parent can name it. Calls that libc or
 * FFmpeg make on optional paths (open, stat by path, ioctl, prctl) fail
 * softly with EPERM/ENOTTY instead, so nothing can read a file but nothing
 * breaks because it tried. Threads are allowed (clone with CLONE_THREAD
 * only; clone3 answers ENOSYS so glibc falls back to clone, whose flags a
 * filter can see); fork, exec, sockets and ptrace are not.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libavutil/log.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dems/err.h"
#include "dems/media.h"

#include "media_int.h"

/* AddressSanitizer reserves terabytes of virtual memory, so RLIMIT_AS would
 * stop it at once: ASan builds skip that one limit. */
#if defined(__SANITIZE_ADDRESS__)
#define MEDIA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEDIA_ASAN 1
#endif
#endif
#ifndef MEDIA_ASAN
#define MEDIA_ASAN 0
#endif

#define EXIT_SECCOMP 125
#define EXIT_SETUP   124
#define EXIT_PRIVS   123
#define RESULT_MAX   (16u << 20)
#define MAX_KEEP     16

static int result_fd = -1;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_log[160];

/* --- child ------------------------------------------------------------- */

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

/* Async-signal-safe: formats the number by hand. */
static void on_sigsys(int sig, siginfo_t *si, void *uctx)
{
    char buf[48] = "{\"seccomp_syscall\":";
    size_t len = strlen(buf);
    char digits[12];
    int n = 0, nr = si->si_syscall;

    (void)sig;
    (void)uctx;
    do {
        digits[n++] = (char)('0' + nr % 10);
        nr /= 10;
    } while (nr > 0 && n < 11);
    while (n > 0)
        buf[len++] = digits[--n];
    buf[len++] = '}';
    write_all(result_fd, buf, len);
    _exit(EXIT_SECCOMP);
}

/* Keeps FFmpeg's last error line for the failure message (stderr is closed). */
static void on_av_log(void *avcl, int level, const char *fmt, va_list vl)
{
    char line[sizeof(last_log)];
    int prefix = 1;

    if (level > AV_LOG_ERROR)
        return;
    av_log_format_line(avcl, level, fmt, vl, line, sizeof(line), &prefix);
    line[strcspn(line, "\n")] = '\0';
    pthread_mutex_lock(&log_lock);
    memcpy(last_log, line, sizeof(last_log));
    pthread_mutex_unlock(&log_lock);
}

static void reset_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigset_t all;

    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL);
    sa = (struct sigaction){.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    sigaction(SIGSYS, &sa, NULL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Closes every fd but keep[0..n). */
static void close_others(int *keep, int n)
{
    unsigned lo = 0;

    qsort(keep, (size_t)n, sizeof(int), cmp_int);
    for (int i = 0; i <= n; i++) {
        unsigned hi = i < n ? (unsigned)keep[i] : ~0u;
        if (hi > lo && close_range(lo, hi - 1, 0) < 0) {
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            for (unsigned fd = lo; fd < hi && fd < rl.rlim_cur; fd++)
                close((int)fd);
        }
        lo = i < n ? (unsigned)keep[i] + 1 : lo;
    }
}

/* glibc types the resource as an enum under _GNU_SOURCE. */
#ifdef __GLIBC__
typedef __rlimit_resource_t rlimit_resource;
#else
typedef int rlimit_resource;
#endif

static int set_limit(rlimit_resource res, rlim_t soft, rlim_t hard)
{
    struct rlimit rl;

    if (getrlimit(res, &rl) < 0)
        return -1;
    if (rl.rlim_max != RLIM_INFINITY && hard > rl.rlim_max)
        hard = rl.rlim_max;
    rl.rlim_cur = soft < hard ? soft : hard;
    rl.rlim_max = hard;
    return setrlimit(res, &rl);
}

static int set_limits(const struct dems_media_limits *lim, int max_fd)
{
    int r = 0;

    r |= set_limit(RLIMIT_CORE, 0, 0);
    /* SIGXCPU at the soft limit, SIGKILL two seconds later. */
    r |= set_limit(RLIMIT_CPU, lim->cpu_seconds, (rlim_t)lim->cpu_seconds + 2);
    r |= set_limit(RLIMIT_FSIZE, lim->output_bytes, lim->output_bytes);
    r |= set_limit(RLIMIT_NOFILE, (rlim_t)max_fd + 1, (rlim_t)max_fd + 1);
    if (!MEDIA_ASAN)
        r |= set_limit(RLIMIT_AS, lim->memory, lim->memory);
    return r;
}

static int rule(scmp_filter_ctx ctx, uint32_t action, const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    /* A name this architecture lacks (e.g. "open" elsewhere) is no hole. */
    return nr == __NR_SCMP_ERROR ? 0 : seccomp_rule_add(ctx, action, nr, 0);
}

static int load_filter(void)
{
    static const char *const allow[] = {"read",
                                        "write",
                                        "readv",
                                        "writev",
                                        "pread64",
                                        "pwrite64",
                                        "lseek",
                                        "close",
                                        "fstat",
                                        "ftruncate",
                                        "fsync",
                                        "fdatasync",
                                        "fcntl",
                                        "mmap",
                                        "munmap",
                                        "mprotect",
                                        "mremap",
                                        "madvise",
                                        "brk",
                                        "futex",
                                        "set_robust_list",
                                        "get_robust_list",
                                        "rseq",
                                        "rt_sigaction",
                                        "rt_sigprocmask",
                                        "rt_sigreturn",
                                        "sigaltstack",
                                        "exit",
                                        "exit_group",
                                        "getpid",
                                        "gettid",
                                        "clock_gettime",
                                        "clock_getres",
                                        "gettimeofday",
                                        "clock_nanosleep",
                                        "nanosleep",
                                        "sched_yield",
                                        "sched_getaffinity",
                                        "getrandom",
                                        "getrusage",
                                        "sysinfo",
                                        "restart_syscall",
                                        "uname",
                                        "getuid",
                                        "geteuid",
                                        "getgid",
                                        "getegid",
                                        "getresuid",
                                        "getresgid",
                                        "getgroups",
                                        "capget",
                                        NULL};
    static const char *const soft[] = {
        "open",  "openat",   "creat",      "access", "faccessat", "faccessat2",        "stat",
        "lstat", "readlink", "readlinkat", "statx",  "prctl",     "sched_setaffinity", NULL};
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    int r = ctx == NULL ? -ENOMEM : 0;

    for (size_t i = 0; r == 0 && allow[i] != NULL; i++)
        r = rule(ctx, SCMP_ACT_ALLOW, allow[i]);
    for (size_t i = 0; r == 0 && soft[i] != NULL; i++)
        r = rule(ctx, SCMP_ACT_ERRNO(EPERM), soft[i]);
    if (r == 0)
        r = rule(ctx, SCMP_ACT_ERRNO(ENOTTY), "ioctl");
    if (r == 0)
        r = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "openat2");
    if (r == 0)
        r = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3");
    /* Threads, not processes. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    /* fstat(fd) is newfstatat(fd, "", AT_EMPTY_PATH); a stat by path fails. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                             SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(newfstatat), 1,
                             SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, 0));
    /* Reading its own limits is fine; changing them is not. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 2,
                             SCMP_A0(SCMP_CMP_EQ, 0, 0), SCMP_A2(SCMP_CMP_EQ, 0, 0));
    /* Signals to its own threads only (abort() uses tgkill); the workers and
     * demsd run as the same user, and kill() is not allowed at all. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0));
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    return r;
}

/* Empties the capability sets this process may change; false on failure. */
static bool clear_capabilities(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {{0}};

    if (syscall(SYS_capset, &h, d) != 0 || syscall(SYS_capget, &h, d) != 0)
        return false;
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
        if (d[i].effective != 0 || d[i].permitted != 0 || d[i].inheritable != 0)
            return false;
    return true;
}

/*
 * The child never decodes as root or with any capability: started as root
 * it empties the bounding set and becomes lim->uid/gid (no supplementary
 * groups); then, whoever it is, it clears every capability set and sets
 * no_new_privs. Returns 0, or -1 when any step failed.
 */
static int drop_privileges(const struct dems_media_limits *lim)
{
    uid_t u = (uid_t)lim->uid;
    gid_t g = (gid_t)lim->gid;
    uid_t r, e, s;

    if (geteuid() == 0 || getuid() == 0) {
        if (u == 0 || g == 0)
            return -1;
        for (int c = 0; prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++)
            if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
                return -1;
        if (setgroups(0, NULL) != 0 || setresgid(g, g, g) != 0 || setresuid(u, u, u) != 0)
            return -1;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return -1;
    if (!clear_capabilities() || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    if (getresuid(&r, &e, &s) != 0 || r == 0 || e == 0 || s == 0 || setuid(0) == 0)
        return -1;
    return 0;
}

static void report(json_t *res, int r, const struct dems_media_error *e,
                   const struct dems_media_limits *lim)
{
    json_t *doc;
    char msg[sizeof(e->message) + sizeof(last_log) + 16];
    char *text;

    if (r == 0) {
        doc = json_pack("{s:o}", "result", res);
    } else {
        if (e->code == DEMS_MEDIA_OUT_OF_MEMORY && !MEDIA_ASAN)
            snprintf(msg, sizeof(msg), "out of memory (address-space limit %llu MiB): %s",
                     (unsigned long long)(lim->memory >> 20), e->message);
        else if ((e->code == DEMS_MEDIA_INVALID || e->code == DEMS_MEDIA_UNSUPPORTED) &&
                 last_log[0] != '\0')
            snprintf(msg, sizeof(msg), "%s (ffmpeg: %s)", e->message, last_log);
        else
            snprintf(msg, sizeof(msg), "%s", e->message);
        doc = json_pack("{s:{s:s, s:s}}", "error", "code", dems_media_code_str(e->code), "message",
                        msg);
    }
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (text != NULL)
        write_all(result_fd, text, strlen(text));
    free(text);
    json_decref(doc);
}

static _Noreturn void child(int *keep, int nkeep, const struct dems_media_limits *lim,
                            int (*fn)(void *, json_t **, struct dems_media_error *), void *arg,
                            pid_t parent)
{
    struct dems_media_error e = {0};
    json_t *res = NULL;
    int max_fd = result_fd, r;

    reset_signals();
    /* First: a change of credentials would reset the death signal. */
    if (drop_privileges(lim) < 0)
        _exit(EXIT_PRIVS);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(EXIT_SETUP);
    prctl(PR_SET_DUMPABLE, 0);
    for (int i = 0; i < nkeep; i++)
        max_fd = keep[i] > max_fd ? keep[i] : max_fd;
    keep[nkeep++] = result_fd;
    close_others(keep, nkeep);
    av_log_set_callback(on_av_log);
    if (set_limits(lim, max_fd) < 0 || load_filter() < 0)
        _exit(EXIT_SETUP);
    r = fn(arg, &res, &e);
    report(res, r, &e, lim);
    _exit(0);
}

/* --- parent ------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct outcome {
    char *buf;
    size_t len;
    bool timed_out, too_big;
    int status;
    struct rusage ru;
};

/* Reads the child's report until EOF, the deadline or the cap. */
static void collect(int fd, pid_t pid, int64_t deadline, struct outcome *o)
{
    size_t cap = 0;

    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0) {
            o->timed_out = true;
            break;
        }
        int pr = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        if (o->len + 65536 > cap) {
            size_t ncap = cap == 0 ? 65536 : cap * 2;
            char *nb = ncap <= RESULT_MAX + 65536 ? realloc(o->buf, ncap + 1) : NULL;
            if (nb == NULL) {
                o->too_big = true;
                break;
            }
            o->buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, o->buf + o->len, cap - o->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        o->len += (size_t)n;
    }
    if (o->buf != NULL)
        o->buf[o->len] = '\0';
    /* EOF: the child is exiting; give it until the deadline to finish. */
    while (!o->timed_out && !o->too_big) {
        pid_t w = wait4(pid, &o->status, WNOHANG, &o->ru);
        if (w == pid || (w < 0 && errno != EINTR))
            return;
        if (now_ms() >= deadline)
            o->timed_out = true;
        else
            poll(NULL, 0, 5);
    }
    kill(pid, SIGKILL);
    while (wait4(pid, &o->status, 0, &o->ru) < 0 && errno == EINTR)
        ;
}

static int seccomp_number(const char *buf)
{
    const char *p = buf != NULL ? strstr(buf, "{\"seccomp_syscall\":") : NULL;
    int nr = 0;

    if (p == NULL)
        return -1;
    for (p += 19; *p >= '0' && *p <= '9' && nr < 100000; p++)
        nr = nr * 10 + (*p - '0');
    return nr;
}

static enum dems_media_code code_of(const char *s)
{
    for (int c = DEMS_MEDIA_INVALID; c <= DEMS_MEDIA_INTERNAL; c++)
        if (strcmp(s, dems_media_code_str((enum dems_media_code)c)) == 0)
            return (enum dems_media_code)c;
    return DEMS_MEDIA_INTERNAL;
}

static int from_report(const struct outcome *o, json_t **ret, struct dems_media_error *err)
{
    json_t *doc = o->buf != NULL ? json_loads(o->buf, 0, NULL) : NULL;
    json_t *res = json_object_get(doc, "result");
    const char *code = NULL, *msg = NULL;
    int r;

    if (json_is_object(res)) {
        *ret = json_incref(res);
        json_decref(doc);
        return 0;
    }
    if (json_unpack(doc, "{s:{s:s, s:s}}", "error", "code", &code, "message", &msg) == 0)
        r = media_fail(err, code_of(code), "%s", msg);
    else
        r = media_fail(err, DEMS_MEDIA_INTERNAL, "sandbox: unreadable result");
    json_decref(doc);
    return r;
}

static int interpret(const struct outcome *o, const struct dems_media_limits *lim, json_t **ret,
                     struct dems_media_error *err)
{
    double cpu = (double)o->ru.ru_utime.tv_sec + (double)o->ru.ru_stime.tv_sec +
                 (double)(o->ru.ru_utime.tv_usec + o->ru.ru_stime.tv_usec) / 1e6;

    if (o->too_big)
        return media_fail(err, DEMS_MEDIA_INTERNAL, "sandbox: result larger than %u bytes",
                          RESULT_MAX);
    if (o->timed_out)
        return media_fail(err, DEMS_MEDIA_TIMEOUT, "timed out after %u s", lim->timeout);
    if (WIFSIGNALED(o->status)) {
        int sig = WTERMSIG(o->status);
        if (sig == SIGXCPU || (sig == SIGKILL && cpu >= lim->cpu_seconds))
            return media_fail(err, DEMS_MEDIA_LIMIT, "CPU limit (%u s) exceeded", lim->cpu_seconds);
        if (sig == SIGXFSZ)
            return media_fail(err, DEMS_MEDIA_LIMIT, "file size limit (%llu bytes) exceeded",
                              (unsigned long long)lim->output_bytes);
        if (sig == SIGSYS)
            return media_fail(err, DEMS_MEDIA_SECCOMP, "seccomp violation");
        return media_fail(err, DEMS_MEDIA_CRASHED, "crashed (signal %d, %s)", sig, strsignal(sig));
    }
    int code = WIFEXITED(o->status) ? WEXITSTATUS(o->status) : -1;
    if (code == EXIT_SECCOMP) {
        int nr = seccomp_number(o->buf);
        char *name = nr >= 0 ? seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr) : NULL;
        int r = media_fail(err, DEMS_MEDIA_SECCOMP, "seccomp violation (syscall %s, %d)",
                           name != NULL ? name : "?", nr);
        free(name);
        return r;
    }
    if (code == EXIT_SETUP)
        return media_fail(err, DEMS_MEDIA_INTERNAL, "sandbox: setting limits or seccomp failed");
    if (code == EXIT_PRIVS)
        return media_fail(err, DEMS_MEDIA_INTERNAL,
                          "sandbox: dropping privileges failed (it never decodes as root, "
                          "uid %u)",
                          (unsigned)lim->uid);
    if (code != 0)
        return media_fail(err, DEMS_MEDIA_CRASHED, "crashed (exit status %d)", code);
    return from_report(o, ret, err);
}

int dems_media_sandbox_run(const int *keep, int nkeep, const struct dems_media_limits *lim,
                           int (*fn)(void *arg, json_t **ret_result, struct dems_media_error *err),
                           void *arg, json_t **ret_result, struct dems_media_error *err)
{
    struct dems_media_error local = {0};
    struct outcome o = {0};
    int fds[2], kept[MAX_KEEP + 1];
    pid_t parent = getpid(), pid;
    int r;

    err = err != NULL ? err : &local;
    if (nkeep < 0 || nkeep > MAX_KEEP)
        return media_fail(err, DEMS_MEDIA_INTERNAL, "sandbox: too many fds");
    if (nkeep > 0)
        memcpy(kept, keep, sizeof(int) * (size_t)nkeep);
    if (pipe2(fds, O_CLOEXEC) < 0)
        return media_fail(err, DEMS_MEDIA_INTERNAL, "sandbox: pipe: %s", strerror(errno));
    int64_t deadline = now_ms() + (int64_t)lim->timeout * 1000;
    pid = fork();
    if (pid < 0) {
        r = errno;
        close(fds[0]);
        close(fds[1]);
        return media_fail(err, DEMS_MEDIA_INTERNAL, "sandbox: fork: %s", strerror(r));
    }
    if (pid == 0) {
        result_fd = fds[1];
        child(kept, nkeep, lim, fn, arg, parent);
    }
    close(fds[1]);
    collect(fds[0], pid, deadline, &o);
    close(fds[0]);
    r = interpret(&o, lim, ret_result, err);
    free(o.buf);
    return r;
}

/* --- previews ---------------------------------------------------------- */

struct preview_args {
    int in_fd;
    const struct dems_media_outputs *out;
    const struct dems_media_params *p;
    const struct dems_media_limits *lim;
};

static int preview_child(void *arg, json_t **ret, struct dems_media_error *err)
{
    const struct preview_args *a = arg;

    if (a->out == NULL)
        return dems_media_probe(a->in_fd, a->lim, ret, err);
    return dems_media_preview(a->in_fd, a->out, a->p, a->lim, ret, err);
}

int dems_media_preview_sandboxed(int in_fd, const struct dems_media_outputs *out,
                                 const struct dems_media_params *p,
                                 const struct dems_media_limits *lim, json_t **ret_result,
                                 struct dems_media_error *err)
{
    struct preview_args a = {.in_fd = in_fd, .out = out, .p = p, .lim = lim};
    int keep[5] = {in_fd}, n = 1;

    if (out != NULL) {
        const int fds[4] = {out->proxy_fd, out->poster_fd, out->sprite_fd, out->index_fd};
        for (int i = 0; i < 4; i++)
            if (fds[i] >= 0)
                keep[n++] = fds[i];
    }
    return dems_media_sandbox_run(keep, n, lim, preview_child, &a, ret_result, err);
}

int dems_media_probe_sandboxed(int in_fd, const struct dems_media_limits *lim, json_t **ret_probe,
                               struct dems_media_error *err)
{
    return dems_media_preview_sandboxed(in_fd, NULL, NULL, lim, ret_probe, err);
}
