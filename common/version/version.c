/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dems version string and the --version layout shared by every program;
 * the C library's version, which every program has.
 */
#include "dems/version.h"

#include <gnu/libc-version.h>
#include <stdio.h>

#include "dems_version_config.h"

const char dems_version[] = DEMS_PROJECT_VERSION;

#define STR_(x) #x
#define STR(x)  STR_(x)

void dems_version_glibc(struct dems_version_lib *ret)
{
    ret->name = "glibc";
    snprintf(ret->built, sizeof(ret->built), "%s.%s", STR(__GLIBC__), STR(__GLIBC_MINOR__));
    snprintf(ret->running, sizeof(ret->running), "%s", gnu_get_libc_version());
}

void dems_version_print(FILE *f, const char *program, const struct dems_version_lib *libs, size_t n)
{
    fprintf(f, "%s (dems) %s\n", program, dems_version);
    if (n == 0)
        return;
    fprintf(f, "%-14s %-24s %s\n", "library", "built with", "running");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%-14s %-24s %s\n", libs[i].name, libs[i].built,
                libs[i].running[0] != '\0' ? libs[i].running : "-");
}
