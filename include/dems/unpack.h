/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unpacking ZIP archives that the public submits (docs/media.md, "Unpacking
 * archives"). The archive is read with libarchive's ZIP reader in the media
 * sandbox (a forked child with rlimits, seccomp, no capabilities: see
 * dems/media.h), and every regular member is sent back as frames on a pipe;
 * the caller hashes and stores each one. Nothing is ever written to a file
 * system by a member's name.
 *
 * The pure parts (common/media/unpack_name.c, in the common library) are
 * used on both sides of the pipe: the checks of a member's path, its
 * printable form, the skip reasons and the frame format. The reader
 * (common/media/unpack.c, in the media library) runs in the child.
 *
 * Frames: an 8-byte head (type, three zero bytes, payload length as a
 * little-endian u32 of at most DEMS_UNPACK_FRAME_MAX), then the payload.
 *   'M' a member begins:   u32 index (LE), its path (UTF-8, checked)
 *   'D' the member's data: 1..DEMS_UNPACK_DATA_MAX bytes
 *   'E' the member ends:   u64 size (LE), the bytes sent in its 'D' frames
 *   'A' it was abandoned:  reason, NUL, detail (its data is to be dropped)
 *   'S' a member skipped:  u32 index (LE), reason, NUL, detail, NUL, name
 * A detail (at most DEMS_UNPACK_DETAIL_MAX bytes: why, a link's target,
 * libarchive's message) and a skipped member's name (as UTF-8 or code page
 * 437 made UTF-8, cut at DEMS_UNPACK_DISPLAY_MAX bytes) are sent as they
 * are: the reader of the frames makes them printable.
 * Members come in archive order, each index greater than the last. The
 * child's summary (or error) comes back separately, as the sandbox's JSON.
 * The reader of the frames must treat them as hostile: they were written
 * by code that parsed the archive.
 */
#ifndef DEMS_UNPACK_H
#define DEMS_UNPACK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dems_media_limits;
struct dems_media_error;

/* Longest member path, in bytes of UTF-8, and longest component. */
#define DEMS_UNPACK_NAME_MAX      1024
#define DEMS_UNPACK_COMPONENT_MAX 255
/* Longest printable form of a path (escapes included; cut with "..."). */
#define DEMS_UNPACK_DISPLAY_MAX 1100
/* Longest detail of a skip reason, in bytes. */
#define DEMS_UNPACK_DETAIL_MAX 200
/* Frame sizes. */
#define DEMS_UNPACK_FRAME_HEAD 8
#define DEMS_UNPACK_DATA_MAX   65536
#define DEMS_UNPACK_FRAME_MAX  DEMS_UNPACK_DATA_MAX

enum dems_unpack_frame {
    DEMS_UNPACK_BEGIN = 'M',
    DEMS_UNPACK_DATA = 'D',
    DEMS_UNPACK_END = 'E',
    DEMS_UNPACK_ABANDON = 'A',
    DEMS_UNPACK_SKIP = 'S',
};

/* Why a member was not extracted; dems_unpack_reason_str gives the stable name. */
enum dems_unpack_reason {
    DEMS_UNPACK_SYMLINK = 1, /* "symlink" */
    DEMS_UNPACK_HARDLINK,    /* "hardlink" */
    DEMS_UNPACK_DEVICE,      /* "device": character or block device, FIFO, socket */
    DEMS_UNPACK_ENCRYPTED,   /* "encrypted" */
    DEMS_UNPACK_NESTED,      /* "nested_archive": an archive inside the archive */
    DEMS_UNPACK_UNSAFE_NAME, /* "unsafe_name": see enum dems_unpack_name_fault */
    DEMS_UNPACK_TOO_LARGE,   /* "too_large": over the bytes allowed for one member */
    DEMS_UNPACK_UNREADABLE,  /* "unreadable": its data could not be decompressed */
};

/* "symlink", ...; NULL when out of range. */
const char *dems_unpack_reason_str(enum dems_unpack_reason reason);

/* The reason called name[0..len); 0 when unknown. */
enum dems_unpack_reason dems_unpack_reason_parse(const char *name, size_t len);

/* What is wrong with a member's path. */
enum dems_unpack_name_fault {
    DEMS_UNPACK_NAME_OK = 0,
    DEMS_UNPACK_NAME_EMPTY,          /* "empty name" */
    DEMS_UNPACK_NAME_TOO_LONG,       /* "name too long" (DEMS_UNPACK_NAME_MAX) */
    DEMS_UNPACK_NAME_COMPONENT_LONG, /* "path component too long" */
    DEMS_UNPACK_NAME_ENCODING,       /* "not UTF-8" */
    DEMS_UNPACK_NAME_CONTROL,        /* "control character" (C0, DEL, C1, NUL) */
    DEMS_UNPACK_NAME_BIDI,           /* "bidirectional override" */
    DEMS_UNPACK_NAME_ABSOLUTE,       /* "absolute path" (leading "/") */
    DEMS_UNPACK_NAME_DRIVE,          /* "drive or device prefix" ("C:", "c:foo") */
    DEMS_UNPACK_NAME_BACKSLASH,      /* "backslash" (a Windows separator) */
    DEMS_UNPACK_NAME_DOTDOT,         /* "parent directory (..)" */
    DEMS_UNPACK_NAME_DOT,            /* "empty or '.' component" ("a//b", "./a", "a/") */
};

/*
 * Checks a member's path, UTF-8 as the archive gives it (after
 * dems_unpack_name_utf8), without changing it: 1 to DEMS_UNPACK_NAME_MAX
 * bytes of valid UTF-8, "/"-separated components of at most
 * DEMS_UNPACK_COMPONENT_MAX bytes, none empty, "." or "..", no leading "/",
 * no backslash, no drive prefix ("X:" at the start of the first component),
 * no control character and no bidirectional override or isolate. Pure.
 */
enum dems_unpack_name_fault dems_unpack_name_check(const char *name, size_t len);

/* "absolute path", ...; never NULL. */
const char *dems_unpack_name_fault_str(enum dems_unpack_name_fault fault);

/*
 * A member's raw name as UTF-8: valid UTF-8 is copied as it is; anything
 * else is read as code page 437 (the ZIP format's default for names
 * without its UTF-8 flag). Writes at most cap - 1 bytes and a NUL; returns
 * the length, or cap when the name does not fit (out is then cut).
 */
size_t dems_unpack_name_utf8(const uint8_t *raw, size_t len, char *out, size_t cap);

/*
 * A printable form of any name, for lists and messages: valid UTF-8 is
 * kept, except that control characters, bidirectional controls and bytes
 * that are not UTF-8 become \xNN (\u{NNNN} for code points) and a
 * backslash becomes "\\". At most DEMS_UNPACK_DISPLAY_MAX bytes (cut with
 * "..." at a character boundary) and a NUL; returns the length. An empty
 * name gives "(no name)".
 */
size_t dems_unpack_name_display(const uint8_t *raw, size_t len,
                                char out[static DEMS_UNPACK_DISPLAY_MAX + 1]);

/*
 * dems_unpack_name_display for a detail: at most DEMS_UNPACK_DETAIL_MAX
 * bytes (cut with "..."); an empty text stays empty. Returns the length.
 */
size_t dems_unpack_detail_display(const uint8_t *raw, size_t len,
                                  char out[static DEMS_UNPACK_DETAIL_MAX + 1]);

/* Writes a frame head for type and a payload of len bytes (len <= DEMS_UNPACK_FRAME_MAX). */
void dems_unpack_frame_head(uint8_t out[static DEMS_UNPACK_FRAME_HEAD], enum dems_unpack_frame type,
                            uint32_t len);

/*
 * Reads a frame head: 0 with the type and payload length, or DEMS_EINVAL
 * (unknown type, non-zero reserved bytes, length over DEMS_UNPACK_FRAME_MAX
 * or wrong for the type: a BEGIN of 4 to 4 + DEMS_UNPACK_NAME_MAX bytes,
 * DATA of at least 1, END of exactly 8).
 */
int dems_unpack_frame_parse(const uint8_t head[static DEMS_UNPACK_FRAME_HEAD],
                            enum dems_unpack_frame *ret_type, uint32_t *ret_len);

/* Bounds of one unpacking. A bound passed fails the whole archive. */
struct dems_unpack_limits {
    uint64_t max_members;      /* entries of any kind (directories too) */
    uint64_t max_member_bytes; /* one member's bytes; a larger one is skipped (too_large) */
    uint64_t max_total_bytes;  /* bytes decompressed in all */
    uint64_t max_ratio;        /* bytes decompressed per byte of the archive */
    uint64_t archive_size;     /* the archive's size in bytes, for max_ratio */
};

/*
 * Reads the ZIP archive on in_fd (a regular file, read with its central
 * directory: only that names symlinks) in this process and writes its
 * members to out_fd as frames (see above): each regular member with a safe
 * name, not encrypted and not itself an archive, is sent whole; the others
 * are listed (SKIP) with the reason. Directories are counted, not listed.
 * Returns 0 and *ret_summary (owned): {"entries", "directories",
 * "extracted", "skipped", "bytes" (decompressed), "libarchive"} or fails
 * with err: media_too_large when a bound of lim is passed (too many
 * members, more bytes than max_total_bytes or max_ratio allow),
 * media_invalid when the file is no readable ZIP archive, media_output_failed
 * when out_fd cannot be written. For the sandbox child: use
 * dems_unpack_sandboxed for untrusted archives.
 */
int dems_unpack(int in_fd, int out_fd, const struct dems_unpack_limits *lim, json_t **ret_summary,
                struct dems_media_error *err);

/*
 * dems_unpack in the media sandbox (dems_media_sandbox_run: fork, rlimits
 * of mlim, seccomp, no capabilities; see dems/media.h for the contract of a
 * caller: single-threaded, SIGCHLD not ignored). Blocking, up to
 * mlim->timeout seconds. out_fd should be a pipe whose reader keeps up;
 * the child writes to it directly.
 */
int dems_unpack_sandboxed(int in_fd, int out_fd, const struct dems_unpack_limits *lim,
                          const struct dems_media_limits *mlim, json_t **ret_summary,
                          struct dems_media_error *err);

#endif
