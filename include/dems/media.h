/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Media previews with FFmpeg's libraries (libavformat, libavcodec, libavutil,
 * libswscale, libswresample): a probe of any container/codec FFmpeg reads,
 * and from one input an H.264 + AAC MP4 proxy (at most 720p, upright,
 * faststart), a poster JPEG and a thumbnail sprite with a WebVTT index; and
 * for face indexing, upright RGB24 frames sampled at a few per second and
 * streamed to the worker over a pipe, with the reader for that stream.
 *
 * Everything is fd-based: the caller opens the input (any readable fd; a
 * regular file is read with pread, a pipe or socket is read once, without
 * seeking) and the outputs, and gets back a jansson result describing the
 * probe, the outputs, the exact encoding parameters and the library versions,
 * so an independent party can reproduce a preview (docs/media.md).
 *
 * Untrusted media must go through dems_media_preview_sandboxed(): a forked
 * child with resource limits, a seccomp allow-list and no file system or
 * network access decodes it, and every failure, including a crash, a hang or
 * memory exhaustion of the child, comes back as a struct dems_media_error with
 * a stable code. The in-process functions (dems_media_probe,
 * dems_media_preview, dems_media_frames) are for the child, for tools and
 * for trusted input.
 *
 * Limits are refused before decoding where the container declares them
 * (frame size, duration) and enforced again on every decoded frame (a stream
 * may change size mid-way) and over the whole job (frames x pixels).
 */
#ifndef DEMS_MEDIA_H
#define DEMS_MEDIA_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Stable failure codes: the server stores dems_media_code_str(code). */
enum dems_media_code {
    DEMS_MEDIA_OK = 0,
    DEMS_MEDIA_INVALID,       /* "media_invalid": not decodable media, empty, truncated */
    DEMS_MEDIA_UNSUPPORTED,   /* "media_unsupported": no decoder, no audio/video stream */
    DEMS_MEDIA_TOO_LARGE,     /* "media_too_large": pixel, total-pixel or duration budget */
    DEMS_MEDIA_TIMEOUT,       /* "media_timeout": the sandbox's wall-clock limit */
    DEMS_MEDIA_CRASHED,       /* "media_crashed": the child died of a signal */
    DEMS_MEDIA_SECCOMP,       /* "media_seccomp_violation": a forbidden system call */
    DEMS_MEDIA_OUT_OF_MEMORY, /* "media_out_of_memory": allocation failed under RLIMIT_AS */
    DEMS_MEDIA_LIMIT,         /* "media_limit": CPU-seconds or output file-size rlimit */
    DEMS_MEDIA_OUTPUT,        /* "media_output_failed": writing an output failed */
    DEMS_MEDIA_INTERNAL,      /* "media_internal": a bug, fork/pipe failure, encoder error */
};

/* A failure: the stable code and one line of text naming the cause, e.g.
 * "pixel budget exceeded: 16000x16000 > 8192x4320 (35389440 px)" or
 * "crashed (signal 11)". */
struct dems_media_error {
    enum dems_media_code code;
    char message[256];
};

/* Limits; dems_media_limits_init sets the defaults shown. */
struct dems_media_limits {
    uint64_t max_pixels;       /* width x height of one frame: 8192 x 4320 (35.4 Mpx) */
    uint32_t max_side;         /* largest width or height: 16384 */
    uint64_t max_total_pixels; /* sum of w x h over decoded frames: 2^40 (~4.4 h of 1080p30) */
    double max_duration;       /* seconds, declared or decoded: 86400 (24 h) */
    int64_t probesize;         /* bytes read to identify streams: 16 MiB */
    int64_t analyzeduration;   /* microseconds analysed by stream probing: 15 s */
    /* Sandbox only: */
    uint32_t timeout;      /* wall-clock seconds before the child is killed: 3600 */
    uint32_t cpu_seconds;  /* RLIMIT_CPU: 7200 */
    uint64_t memory;       /* RLIMIT_AS bytes: 4 GiB (not applied in ASan builds) */
    uint64_t output_bytes; /* RLIMIT_FSIZE: largest output file, 8 GiB */
    /* The account the child becomes when it starts as root (never 0):
     * 65534/65534 (nobody/nogroup). Otherwise it keeps its unprivileged
     * uid; either way it ends with no capabilities and no_new_privs. */
    uint32_t uid;
    uint32_t gid;
};

/* Encoding parameters; dems_media_params_init sets the defaults shown. */
struct dems_media_params {
    int max_width;          /* proxy fits in max_width x max_height: 1280 */
    int max_height;         /* (transposed for portrait video): 720 */
    int crf;                /* x264 constant rate factor: 23 */
    const char *preset;     /* x264 preset, borrowed: "veryfast" */
    double gop_seconds;     /* keyframe interval: 2 s at the average frame rate */
    int threads;            /* x264 and decoder threads; 0: online CPUs, at most 8 */
    int audio_bitrate;      /* AAC bit/s: 128000 */
    double poster_fraction; /* poster at this fraction of the duration: 0.1 */
    double thumb_interval;  /* seconds between thumbnails (at least): 10 */
    int tile_width;         /* thumbnail width in px: 160 */
    int tile_columns;       /* sprite columns: 10 */
    int max_tiles;          /* the interval grows so that at most this many: 360 */
    int jpeg_quality;       /* MJPEG qscale, 2 (best) .. 31: 3 */
};

/* Output files, each an fd or -1 to skip it. Regular files opened for
 * reading and writing (O_RDWR); they are truncated first. The proxy must be
 * seekable and readable: faststart moves the moov atom to the front by
 * reading the file back. The fds stay the caller's. */
struct dems_media_outputs {
    int proxy_fd;  /* MP4: H.264 High, yuv420p, AAC-LC (when the input has audio) */
    int poster_fd; /* JPEG at the proxy's size (none for audio-only input) */
    int sprite_fd; /* JPEG grid of tile_width-wide thumbnails, tile_columns per row */
    int index_fd;  /* WebVTT: one cue per thumbnail, "sprite.jpg#xywh=x,y,w,h" */
};

void dems_media_limits_init(struct dems_media_limits *lim);
void dems_media_params_init(struct dems_media_params *p);

/* Stable snake_case string for code (e.g. "media_too_large"); never NULL. */
const char *dems_media_code_str(enum dems_media_code code);

/* The DEMS_E* value a failure with this code is returned as:
 * DEMS_EINVAL (invalid, unsupported, crashed, seccomp), DEMS_ETOOBIG (too
 * large, timeout, out of memory, limit), DEMS_EIO (output), DEMS_EINTERNAL. */
int dems_media_code_err(enum dems_media_code code);

/*
 * FFmpeg library versions (compile-time LIB*_IDENT, run-time *_version(),
 * av_version_info(), avcodec_configuration()). Returns owned; json_decref.
 * NULL only when out of memory.
 */
json_t *dems_media_versions(void);

/*
 * Probes in_fd in this process: container, duration, bit rate, creation
 * time, device make/model, GPS location, and per stream codec, dimensions,
 * frame rates (avg and r, as numbers and fractions), rotation, sample rate
 * and channels. Reads in_fd from its current offset (regular files: with
 * pread from offset 0). Returns 0 and *ret_probe (owned; json_decref), or a
 * negative DEMS_E* with err filled. Blocking; FFmpeg state is per call, so
 * any thread may call it.
 */
int dems_media_probe(int in_fd, const struct dems_media_limits *lim, json_t **ret_probe,
                     struct dems_media_error *err);

/*
 * Makes the preview of in_fd in this process (no sandbox: trusted input or
 * inside the sandbox child). Any of out's fds may be -1. Returns 0 and
 * *ret_result (owned; json_decref):
 *   {"probe": {...}, "outputs": {"proxy": {...}, "poster": {...},
 *    "sprite": {...}, "index": {...}, "thumbnails": [{"t","x","y","w","h"}]},
 *    "params": {...exact encoding parameters...}, "limits": {...},
 *    "ffmpeg": {...versions...}}
 * or a negative DEMS_E* (dems_media_code_err(err->code)) with err filled.
 * Outputs may hold partial data after a failure; the caller discards them.
 * Parameters out of range (see struct dems_media_params) fail with
 * media_internal. Blocking; any thread may call it.
 */
int dems_media_preview(int in_fd, const struct dems_media_outputs *out,
                       const struct dems_media_params *p, const struct dems_media_limits *lim,
                       json_t **ret_result, struct dems_media_error *err);

/*
 * dems_media_preview in a sandboxed child process. fork() (no exec), then in
 * the child: all fds closed except in_fd, out's fds and a result pipe; no
 * core dumps; RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE; then a
 * seccomp allow-list (no open, exec, socket, fork, ptrace, ...; see
 * docs/media.md) before any byte of the input is parsed. The parent kills
 * the child after lim->timeout seconds, reads the result from the pipe and
 * reaps it; every way the child can fail becomes err with a stable code:
 * "timed out after N s", "crashed (signal 11)", "seccomp violation (syscall
 * socket)", "CPU limit (N s) exceeded", "file size limit (N MiB) exceeded",
 * "out of memory (address-space limit N MiB)", or the decoder's own error.
 *
 * in_fd should be opened read-only. The outputs are written by code that
 * parsed hostile input: treat them as untrusted too (serve them with their
 * own Content-Type and nosniff, never parse them with more privilege).
 *
 * Contract for the caller: call it from a single-threaded process (a dems
 * worker), or at least one where no other thread can hold a lock the child
 * needs (glibc malloc is fork-safe; FFmpeg and jansson keep no global locks
 * we use). The child inherits nothing else it uses. SIGCHLD must not be
 * ignored or reaped by a handler for waitpid(-1). Blocking: up to
 * lim->timeout seconds.
 */
int dems_media_preview_sandboxed(int in_fd, const struct dems_media_outputs *out,
                                 const struct dems_media_params *p,
                                 const struct dems_media_limits *lim, json_t **ret_result,
                                 struct dems_media_error *err);

/* dems_media_probe in the same sandbox (no outputs). */
int dems_media_probe_sandboxed(int in_fd, const struct dems_media_limits *lim, json_t **ret_probe,
                               struct dems_media_error *err);

/*
 * The sandbox itself, for any untrusted decoding: runs fn(arg, ...) in a
 * child process set up as above, keeping only the nkeep fds in keep (plus
 * the result pipe) open. fn returns 0 and an owned result, or a negative
 * DEMS_E* with err filled; either crosses back to the parent as JSON.
 * Tests use it to check how crashes and forbidden system calls are reported.
 */
int dems_media_sandbox_run(const int *keep, int nkeep, const struct dems_media_limits *lim,
                           int (*fn)(void *arg, json_t **ret_result, struct dems_media_error *err),
                           void *arg, json_t **ret_result, struct dems_media_error *err);

/* --- frame sampling for face indexing (common/media/frames.c) ------------ */

/*
 * The frame stream: each frame is a DEMS_MEDIA_FRAME_HEAD-byte header, all
 * integers little-endian,
 *   0  "DFRM"           magic
 *   4  u32 version      DEMS_MEDIA_FRAME_VERSION (1)
 *   8  i64 t_us         presentation time in microseconds from the stream's start
 *   16 u32 width
 *   20 u32 height
 *   24 u32 stride       bytes per row: always width * 3
 *   28 u32 index        0, 1, 2, ... in the order written
 * followed by height * stride bytes of RGB24 (R, G, B per pixel, top row
 * first, upright). Times strictly increase. The stream ends (EOF) after the
 * last whole frame; docs/media.md, "Frame sampling for face indexing".
 */
#define DEMS_MEDIA_FRAME_HEAD    32
#define DEMS_MEDIA_FRAME_VERSION 1

/* Sampling parameters; dems_media_frames_params_init sets the defaults shown. */
struct dems_media_frames_params {
    double fps;        /* frames per second of video kept, 0 < fps <= 30: 2 */
    uint32_t max_side; /* longer side of a frame written, 16 .. 16384: 1920 (never upscaled) */
    bool skip_nonref;  /* the decoder skips non-reference frames (AVDISCARD_NONREF): true */
    int threads;       /* decoder (and scaler) threads, 1 .. 16: 1 */
};

void dems_media_frames_params_init(struct dems_media_frames_params *p);

/*
 * Decodes the best video stream of in_fd in this process (no sandbox: trusted
 * input or inside the sandbox child) and writes sampled frames to out_fd (a
 * pipe, or any writable fd) in the frame format above: for each multiple of
 * 1/p->fps seconds, the first decoded frame whose presentation time (from
 * the stream's start) is at or after it, once each (a gap in the video
 * yields one frame, not copies). Frames are made upright (display matrix or
 * "rotate" tag, multiples of 90 degrees, as the proxy), given square pixels,
 * scaled with swscale (bicubic) so that the longer side is at most
 * p->max_side, and converted to RGB24 with the stream's YUV matrix and range. A still image (JPEG,
 * PNG, ... read by an image demuxer) gives one frame at t = 0. Every limit of lim applies (declared
 * and decoded frame size, total decoded pixels, duration).
 *
 * Returns 0 and *ret_result (owned; json_decref):
 *   {"frames": n, "decoded": n, "duration": s, "width": w, "height": h,
 *    "source": {"codec", "width", "height", "fps", "rotation", "still"},
 *    "params": {"fps", "max_side", "skip_nonref", "threads", "pix_fmt": "rgb24",
 *               "scale": "bicubic", "yuv_matrix", "rotation_applied", "format": "DFRM",
 *               "version", "sampling"},
 *    "limits": {...}, "ffmpeg": {...versions...}}
 * (width and height of the first frame written; 0 when none), or a negative
 * DEMS_E* (dems_media_code_err(err->code)) with err filled: the decoding
 * codes of dems_media_preview, media_unsupported for input without video,
 * and media_output_failed when out_fd cannot be written, notably a pipe
 * whose reader has gone ("frame pipe closed by the reader"): SIGPIPE is
 * blocked in the calling thread for the call, and one raised by our write
 * is discarded, so that ends the call, never the process. Parameters out
 * of range fail with media_internal. Blocking; any thread may call it.
 */
int dems_media_frames(int in_fd, int out_fd, const struct dems_media_frames_params *p,
                      const struct dems_media_limits *lim, json_t **ret_result,
                      struct dems_media_error *err);

/*
 * dems_media_frames in the sandbox of dems_media_preview_sandboxed (same
 * contract: single-threaded caller, SIGCHLD not ignored, blocking up to
 * lim->timeout). The child keeps in_fd and out_fd; it writes frames while
 * the caller's reader takes them, so the caller must read out_fd from
 * another process or thread, or the child blocks on a full pipe until the
 * timeout: lim->timeout covers the reader's pace too. out_fd stays open
 * in the caller: close it after the call so that the reader sees EOF.
 */
int dems_media_frames_sandboxed(int in_fd, int out_fd, const struct dems_media_frames_params *p,
                                const struct dems_media_limits *lim, json_t **ret_result,
                                struct dems_media_error *err);

/*
 * One frame read back from a frame stream. Initialise with
 * dems_media_frame_init; dems_media_frame_read fills it, reusing and
 * growing rgb (cap bytes); free with dems_media_frame_done. next_index is
 * the reader's state (the index the next frame must carry).
 */
struct dems_media_frame {
    int64_t t_us;    /* microseconds from the stream's start */
    uint32_t index;  /* 0, 1, 2, ... */
    uint32_t width;  /* pixels, 1 .. max_side */
    uint32_t height; /* pixels, 1 .. max_side */
    size_t stride;   /* width * 3 */
    uint8_t *rgb;    /* height * stride bytes of RGB24; owned by the struct */
    size_t cap;      /* bytes allocated at rgb */
    uint32_t next_index;
};

void dems_media_frame_init(struct dems_media_frame *f);

/*
 * Reads the next frame of a frame stream from fd, which was written by code
 * that parsed hostile input: every header field is checked before anything
 * is allocated. Returns 1 with the frame in f; 0 at a clean end of the
 * stream (EOF before the first byte of a header); or a negative DEMS_E*
 * with one line in err (errlen bytes), after which the stream is not to be
 * read further: DEMS_EINVAL for a bad magic or version, a zero side, a
 * stride other than width * 3, an index out of sequence, a time not after
 * the previous one (or negative), or a frame cut short by EOF;
 * DEMS_ETOOBIG for a side over max_side or a size that overflows;
 * DEMS_ENOMEM; DEMS_EIO when read fails. Blocks until a whole frame has
 * arrived (a non-blocking fd is polled); to wait with a timeout, poll fd
 * for input first: once a frame has begun, the rest follows as fast as the
 * writer writes, and a writer that dies closes the pipe.
 */
int dems_media_frame_read(int fd, struct dems_media_frame *f, uint32_t max_side, char *err,
                          size_t errlen);

/* Frees f's pixel buffer and zeroes f. */
void dems_media_frame_done(struct dems_media_frame *f);

#endif
