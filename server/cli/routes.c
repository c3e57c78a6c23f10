/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `demsd routes`: prints the route table (server/api/routes.c) as JSON, one
 * route per line: {"method", "path", "roles": [...], "max_body",
 * "streaming"}. Tests check it against their own tables (the authorisation
 * matrix fails when a route has no row), and operators can see what a build
 * serves without reading its source.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demsd/cli.h"
#include "demsd/http.h"

static const char *method_name(enum dems_http_method m)
{
    static const char *const names[] = {
        [DEMS_HTTP_OTHER] = "OTHER",   [DEMS_HTTP_GET] = "GET",         [DEMS_HTTP_HEAD] = "HEAD",
        [DEMS_HTTP_POST] = "POST",     [DEMS_HTTP_PUT] = "PUT",         [DEMS_HTTP_PATCH] = "PATCH",
        [DEMS_HTTP_DELETE] = "DELETE", [DEMS_HTTP_OPTIONS] = "OPTIONS",
    };
    return (size_t)m < sizeof(names) / sizeof(names[0]) ? names[m] : "OTHER";
}

static json_t *roles_json(unsigned roles)
{
    static const struct {
        unsigned bit;
        const char *name;
    } bits[] = {{DEMS_ROLE_PUBLIC, "public"},      {DEMS_ROLE_ADMIN, "admin"},
                {DEMS_ROLE_OFFICER, "officer"},    {DEMS_ROLE_PROSECUTOR, "prosecutor"},
                {DEMS_ROLE_DEVICE, "device"},      {DEMS_ROLE_DISCLOSURE, "disclosure"},
                {DEMS_ROLE_SUBMITTER, "submitter"}};
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < sizeof(bits) / sizeof(bits[0]); i++) {
        if (roles & bits[i].bit)
            json_array_append_new(a, json_string(bits[i].name));
    }
    return a;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: demsd routes\n\n"
               "Prints every route demsd serves as one JSON object per line:\n"
               "{\"method\", \"path\", \"roles\", \"max_body\", \"streaming\"}.\n"
               "A path's {name} matches one segment; roles \"public\" needs no credentials.\n");
}

int dems_cli_routes(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while ((opt = dems_cli_getopt(argc, argv, opts, "routes")) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 0;
        }
        return 2; /* dems_cli_getopt said why, in one line */
    }
    if (optind != argc) {
        fprintf(stderr, "demsd routes: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    for (size_t i = 0; i < dems_nroutes; i++) {
        const struct dems_route *r = &dems_routes[i];
        json_t *o = json_pack("{s:s,s:s,s:o,s:I,s:b}", "method", method_name(r->method), "path",
                              r->pattern, "roles", roles_json(r->roles), "max_body",
                              (json_int_t)(r->max_body == SIZE_MAX ? -1 : (json_int_t)r->max_body),
                              "streaming", r->body != NULL);
        char *line = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (line == NULL) {
            fprintf(stderr, "demsd routes: out of memory\n");
            return 1;
        }
        printf("%s\n", line);
        free(line);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
