/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a file is, from its first bytes (magic numbers), never from its name
 * or the type a client claims. The public portal takes only what this
 * recognises as video, image, audio or an archive (docs/api.md, "Public
 * submissions"); the rest of dems uses the name to explain what a file
 * appears to be when no preview can be made of it. Pure; no I/O.
 */
#ifndef DEMS_SNIFF_H
#define DEMS_SNIFF_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of a file's head that dems_sniff may look at (more are ignored). */
#define DEMS_SNIFF_HEAD 512

enum dems_sniff_kind {
    DEMS_SNIFF_UNKNOWN = 0, /* nothing recognised */
    DEMS_SNIFF_VIDEO,
    DEMS_SNIFF_IMAGE,
    DEMS_SNIFF_AUDIO,
    DEMS_SNIFF_ARCHIVE,
    DEMS_SNIFF_OTHER, /* recognised, but not media (e.g. a program) */
};

struct dems_sniffed {
    enum dems_sniff_kind kind;
    const char *format;    /* short stable name, e.g. "mp4", "dahua-dav", "zip" */
    const char *label;     /* for people, e.g. "Dahua DAV (CCTV) video" */
    const char *mime_type; /* a MIME type for it ("application/octet-stream" if none) */
};

/*
 * Classifies a file from its first n bytes (all of it when shorter than
 * DEMS_SNIFF_HEAD). Never fails: an unrecognised head gives kind
 * DEMS_SNIFF_UNKNOWN with format "unknown".
 */
struct dems_sniffed dems_sniff(const uint8_t *head, size_t n);

/* The kind's name: "video", "image", "audio", "archive", "other", "unknown". */
const char *dems_sniff_kind_name(enum dems_sniff_kind kind);

/* True for the kinds the public portal accepts (video, image, audio, archive). */
int dems_sniff_portal_allowed(enum dems_sniff_kind kind);

#endif
