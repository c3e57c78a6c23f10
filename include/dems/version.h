/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --version for every dems program: the dems version (meson's project
 * version) and, per library a program links, the version of the headers it
 * was compiled against and, where the library can say, the version running.
 *
 * Each dems_version_<library> function lives in its own file of the
 * dems_version static library, so a program links only the libraries whose
 * functions it calls.
 */
#ifndef DEMS_VERSION_H
#define DEMS_VERSION_H

#include <stddef.h>
#include <stdio.h>

/* The dems release, e.g. "0.1.0". */
extern const char dems_version[];

struct dems_version_lib {
    const char *name;
    char built[48];   /* from the headers at compile time */
    char running[48]; /* from the library at run time; "" when it cannot tell */
};

/* Each fills *ret for one library (the C library is always there). */
void dems_version_glibc(struct dems_version_lib *ret);
void dems_version_openssl(struct dems_version_lib *ret);
void dems_version_sodium(struct dems_version_lib *ret);
void dems_version_jansson(struct dems_version_lib *ret);
void dems_version_http_parser(struct dems_version_lib *ret);
void dems_version_libevent(struct dems_version_lib *ret);
void dems_version_libpq(struct dems_version_lib *ret);
void dems_version_seccomp(struct dems_version_lib *ret);
void dems_version_libjpeg(struct dems_version_lib *ret);
void dems_version_libpng(struct dems_version_lib *ret);
void dems_version_libarchive(struct dems_version_lib *ret);
void dems_version_libcurl(struct dems_version_lib *ret);

/* FFmpeg: the release, then libavformat, libavcodec, libavutil, libswscale,
 * libswresample; fills up to cap entries and returns how many (6). */
size_t dems_version_ffmpeg(struct dems_version_lib *ret, size_t cap);

/*
 * Prints "PROGRAM (dems) VERSION", then one line per library: name, built
 * with, running. Borrows everything for the call.
 */
void dems_version_print(FILE *f, const char *program, const struct dems_version_lib *libs,
                        size_t n);

#endif
