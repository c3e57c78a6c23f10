/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl's options: each command's own and the global ones (--server,
 * --ca, --config, --token-file, --timeout, --json), which may stand
 * anywhere on the line. Every bad input is one line on stderr naming it,
 * and exit status 2.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dems/str.h"

#include "ctl.h"

struct ctl_global ctl_global;

static char command[96];

void ctl_set_command(const char *words)
{
    snprintf(command, sizeof(command), "%s", words);
}

int ctl_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "demsctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try demsctl %s%s--help)\n", command, command[0] != '\0' ? " " : "");
    return CTL_USAGE;
}

int ctl_fail(int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "demsctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return code;
}

/* The global options, matched after the command's own. */
static struct ctl_opt globals[] = {
    {"server", false, NULL},
    {"ca", false, NULL},
    {"config", false, NULL},
    {"token-file", false, NULL},
    {"timeout", false, NULL},
    {"json", true, NULL},
    {0},
};

static struct ctl_opt *find(struct ctl_opt *opts, const char *name, size_t len)
{
    for (struct ctl_opt *p = opts; p != NULL && p->name != NULL; p++)
        if (strlen(p->name) == len && strncmp(p->name, name, len) == 0)
            return p;
    return NULL;
}

static void take_globals(void)
{
    ctl_global.server = globals[0].value != NULL ? globals[0].value : ctl_global.server;
    ctl_global.ca = globals[1].value != NULL ? globals[1].value : ctl_global.ca;
    ctl_global.config = globals[2].value != NULL ? globals[2].value : ctl_global.config;
    ctl_global.token_file = globals[3].value != NULL ? globals[3].value : ctl_global.token_file;
    ctl_global.timeout = globals[4].value != NULL ? globals[4].value : ctl_global.timeout;
    ctl_global.json = ctl_global.json || globals[5].value != NULL;
}

int ctl_parse(int argc, char **argv, struct ctl_opt *opts, const char **pos, int npos)
{
    int n = 0;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0))
            return CTL_HELP;
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (only_pos || strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (n >= npos) {
                ctl_usage_error("unexpected argument '%s'", a);
                return -CTL_USAGE;
            }
            pos[n++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq != NULL ? (size_t)(eq - a - 2) : strlen(a + 2);
        struct ctl_opt *o = find(opts, a + 2, len);
        if (o == NULL)
            o = find(globals, a + 2, len);
        if (o == NULL) {
            ctl_usage_error("unknown option '%.*s'", (int)(len + 2), a);
            return -CTL_USAGE;
        }
        if (o->is_flag) {
            if (eq != NULL) {
                ctl_usage_error("--%s takes no value", o->name);
                return -CTL_USAGE;
            }
            o->value = "1";
        } else if (eq != NULL) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            ctl_usage_error("--%s needs a value", o->name);
            return -CTL_USAGE;
        }
    }
    take_globals();
    return n;
}

const char *ctl_opt_get(const struct ctl_opt *opts, const char *name)
{
    for (const struct ctl_opt *p = opts; p->name != NULL; p++)
        if (strcmp(p->name, name) == 0)
            return p->value;
    return NULL;
}

bool ctl_int_arg(const char *what, const char *s, int64_t min, int64_t max, int64_t *ret)
{
    bool neg = s != NULL && s[0] == '-';
    uint64_t u;
    if (s == NULL || dems_parse_u64(s + neg, strlen(s + neg), UINT64_C(1) << 62, &u) < 0) {
        ctl_usage_error("%s: '%s' is not a whole number", what, s != NULL ? s : "");
        return false;
    }
    int64_t v = neg ? -(int64_t)u : (int64_t)u;
    if (v < min || v > max) {
        ctl_usage_error("%s: give %lld to %lld", what, (long long)min, (long long)max);
        return false;
    }
    *ret = v;
    return true;
}
