/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The service account. demsd started as root needs root only to bind a
 * low port, to start the embedded PostgreSQL as its own account and to hand
 * the data directory to the service account; serve and workers then switch
 * to that account (config key user, default "dems") for good: supplementary
 * groups, gid and uid (real, effective and saved), an empty capability
 * bounding set, no ambient capabilities and PR_SET_NO_NEW_PRIVS, checked
 * afterwards (setuid(0) must fail and every capability set be empty).
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dems/config.h"
#include "demsd/log.h"
#include "demsd/setup.h"

int dems_account_resolve(const struct dems_config *cfg, struct dems_account *ret)
{
    *ret = (struct dems_account){.active = false};
    if (geteuid() != 0)
        return 0; /* already unprivileged (e.g. User=dems under systemd) */
    if (cfg->user[0] == '\0') {
        dems_log(DEMS_LOG_WARN, NULL, json_pack("{s:s}", "event", "running_as_root"),
                 "user is empty: demsd keeps running as root (not recommended)");
        return 0;
    }
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL) {
        fprintf(stderr,
                "demsd: started as root, but the account '%s' (config key user) does not exist: "
                "create it (deploy/install-deps does: useradd --system --user-group %s) or set "
                "user to an existing unprivileged account\n",
                cfg->user, cfg->user);
        return 1;
    }
    if (pw->pw_uid == 0 || pw->pw_gid == 0) {
        fprintf(stderr, "demsd: user '%s' is root: name an unprivileged account\n", cfg->user);
        return 1;
    }
    *ret = (struct dems_account){.active = true, .uid = pw->pw_uid, .gid = pw->pw_gid};
    snprintf(ret->name, sizeof(ret->name), "%s", cfg->user);
    return 0;
}

/* ---- the data directory ---- */

static const struct dems_account *walk_account; /* nftw has no context argument */
static int walk_errno;

static int give(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag;
    (void)ftw;
    if ((st->st_uid != walk_account->uid || st->st_gid != walk_account->gid) &&
        lchown(path, walk_account->uid, walk_account->gid) != 0 && walk_errno == 0)
        walk_errno = errno;
    return 0;
}

/*
 * Gives data_dir's contents to the account, except what belongs to the
 * embedded cluster (pg/, run/, postgresql.log). Small directories where an
 * operator may put files as root (keys/, tls/, ledger/) are checked every
 * start;
 * the others (blobs/ can be large) only when the directory itself is not
 * the account's yet — the first start after running as root.
 */
int dems_account_own_data(const struct dems_account *a, const char *data_dir, char *err,
                          size_t errlen)
{
    static const char *const skip[] = {"pg", "run", "postgresql.log", NULL};
    static const char *const always[] = {"keys", "tls", "ledger", NULL};
    if (!a->active)
        return 0;
    walk_account = a;
    walk_errno = 0;
    char path[4200];
    struct dirent **names = NULL;
    int n = scandir(data_dir, &names, NULL, alphasort);
    if (n < 0) {
        snprintf(err, errlen, "data directory %s: %s", data_dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *e = names[i]->d_name;
        bool skipped = strcmp(e, ".") == 0 || strcmp(e, "..") == 0;
        for (size_t k = 0; skip[k] != NULL && !skipped; k++)
            skipped = strcmp(e, skip[k]) == 0;
        bool check = false;
        for (size_t k = 0; always[k] != NULL && !check; k++)
            check = strcmp(e, always[k]) == 0;
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", data_dir, e);
        if (!skipped && lstat(path, &st) == 0 && (check || st.st_uid != a->uid))
            nftw(path, give, 16, FTW_PHYS | FTW_MOUNT);
        free(names[i]);
    }
    free(names);
    /* Last: the directory itself (0711 so the cluster's account reaches pg/). */
    struct stat st;
    if (lstat(data_dir, &st) == 0 && (st.st_uid != a->uid || st.st_gid != a->gid) &&
        chown(data_dir, a->uid, a->gid) != 0 && walk_errno == 0)
        walk_errno = errno;
    if (walk_errno != 0) {
        snprintf(err, errlen, "data directory %s: cannot give it to the account %s: %s", data_dir,
                 a->name, strerror(walk_errno));
        return -1;
    }
    return 0;
}

/* ---- the switch ---- */

/* True when every capability set (effective, permitted, inheritable) is empty. */
static bool no_capabilities(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {{0}};
    if (syscall(SYS_capget, &h, d) != 0)
        return false;
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
        if (d[i].effective != 0 || d[i].permitted != 0 || d[i].inheritable != 0)
            return false;
    return true;
}

int dems_account_drop(const struct dems_account *a, char *err, size_t errlen)
{
    if (!a->active)
        return 0;
    /* While we may: no capability can ever come back through exec. */
    for (int c = 0; prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++) {
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
            snprintf(err, errlen, "cannot drop capability %d: %s", c, strerror(errno));
            return -1;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
        snprintf(err, errlen, "cannot clear ambient capabilities: %s", strerror(errno));
        return -1;
    }
    if (initgroups(a->name, a->gid) != 0 || setresgid(a->gid, a->gid, a->gid) != 0 ||
        setresuid(a->uid, a->uid, a->uid) != 0) {
        snprintf(err, errlen, "cannot switch to the account %s: %s", a->name, strerror(errno));
        return -1;
    }
    /* Verify: no way back to root, no capability left. */
    uid_t r, e, s;
    if (setuid(0) == 0 || seteuid(0) == 0 || getresuid(&r, &e, &s) != 0 || r != a->uid ||
        e != a->uid || s != a->uid || getegid() != a->gid || !no_capabilities()) {
        snprintf(err, errlen, "switching to the account %s did not drop every privilege", a->name);
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
        return -1;
    }
    /* Changing uid made the process non-dumpable, which also stops
     * same-account tools (and LeakSanitizer) from reading it; that is what
     * a process started as this account would be. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    dems_log(DEMS_LOG_INFO, NULL,
             json_pack("{s:s,s:s,s:i,s:i}", "event", "privileges_dropped", "user", a->name, "uid",
                       (int)a->uid, "gid", (int)a->gid),
             "running as %s (uid %d), without capabilities", a->name, (int)a->uid);
    return 0;
}
