/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsd: dispatches the first argument to a subcommand (server/cli/).
 */
#include <stdio.h>
#include <string.h>

#include "dems/version.h"
#include "demsd/cli.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"serve", dems_cli_serve, "serve the HTTPS API (embedded database by default)"},
    {"worker", dems_cli_worker, "run background jobs from the database's queue"},
    {"media-sandbox", dems_cli_media_sandbox, "internal: one sandboxed preview for a worker"},
    {"unpack-sandbox", dems_cli_unpack_sandbox,
     "internal: one sandboxed ZIP unpacking for a worker"},
    {"media-frames", dems_cli_media_frames,
     "internal: sampled frames of a video for a worker's face indexing"},
    {"migrate", dems_cli_migrate, "apply pending database schema migrations"},
    {"admin", dems_cli_admin, "administration: create-user, verify-blobs"},
    {"routes", dems_cli_routes, "print the HTTP route table as JSON lines"},
#ifdef DEMS_HAVE_FACE_CLI
    {"face", dems_cli_face, "face detection and descriptors: detect, embed"},
#endif
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: demsd COMMAND [options]\n"
               "       demsd --version | --help\n\n"
               "dems digital evidence management server.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun `demsd COMMAND --help` for a command's options.\n");
}

/* The libraries demsd links, headers against run time. */
static void version(void)
{
    struct dems_version_lib libs[20];
    size_t n = 0;
    dems_version_glibc(&libs[n++]);
    dems_version_openssl(&libs[n++]);
    dems_version_libevent(&libs[n++]);
    dems_version_libpq(&libs[n++]);
    dems_version_sodium(&libs[n++]);
    dems_version_jansson(&libs[n++]);
    dems_version_http_parser(&libs[n++]);
    n += dems_version_ffmpeg(&libs[n], 20 - n);
    dems_version_seccomp(&libs[n++]);
    dems_version_libarchive(&libs[n++]);
#ifdef DEMS_HAVE_FACE_CLI
    dems_version_libjpeg(&libs[n++]);
    dems_version_libpng(&libs[n++]);
#endif
    dems_version_print(stdout, "demsd", libs, n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        version();
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "demsd: unknown command %s (try demsd --help)\n", argv[1]);
    return 2;
}
