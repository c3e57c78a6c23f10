/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The job queue (server/jobs/): background work kept in PostgreSQL's jobs
 * table (migrations/0006_jobs.sql) and run by `demsd worker` processes.
 *
 * Enqueue from anywhere with SQL (DEMS_JOBS_ENQUEUE_SQL, also inside another
 * transaction) or dems_jobs_enqueue. Workers claim with FOR UPDATE SKIP
 * LOCKED, hold a lease they renew while the handler runs, and are woken by
 * NOTIFY dems_jobs. A failed attempt waits (state 'failed') for an
 * exponential backoff; out of attempts, or failed for good, the job is
 * 'dead' with its last error. A lease that expires (its worker died) counts
 * as a failed attempt.
 *
 * Adding a kind: write a handler (idempotent: it may run again after a crash
 * or a lost lease) and add one line to the table in server/jobs/kinds.c.
 *
 * Everything here blocks (blocking libpq, file I/O): worker processes and
 * command-line tools only, never an event loop.
 */
#ifndef DEMSD_JOBS_H
#define DEMSD_JOBS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct dems_config;

/* Longest kind name (the schema's CHECK allows 63 characters). */
#define DEMS_JOB_KIND_MAX 63
/* last_error is cut to this many bytes. */
#define DEMS_JOB_ERROR_MAX 2000

/*
 * Enqueues one job; usable on any connection and inside any transaction (the
 * job becomes visible, and workers are notified, when that transaction
 * commits). Parameters as text: $1 kind, $2 payload (a JSON object), $3 dedupe
 * key or NULL, $4 priority (-100..100, higher runs first; "0" normally), $5
 * max attempts or NULL (= the workers' job_max_attempts). Returns one row with
 * the job's id; when (kind, dedupe key) already exists nothing is inserted and
 * the existing job's id is returned. SQL does not know the kinds: check with
 * dems_job_check first (a job of a kind no worker runs stays queued).
 */
#define DEMS_JOBS_ENQUEUE_SQL "SELECT dems_enqueue_job($1, $2::jsonb, $3, $4::integer, $5::integer)"

/* ---- kinds and handlers (server/jobs/kinds.c) ---- */

enum dems_job_result {
    DEMS_JOB_OK,      /* done */
    DEMS_JOB_RETRY,   /* failed; retried after a backoff while attempts remain */
    DEMS_JOB_FAIL,    /* failed for good (bad payload, missing object): dead now */
    DEMS_JOB_RELEASE, /* not finished because the worker is stopping: queued again,
                         the attempt not counted */
};

/* A claimed job. */
struct dems_job {
    int64_t id;
    char kind[DEMS_JOB_KIND_MAX + 1];
    json_t *payload;  /* owned (an object); freed by dems_job_done */
    int attempt;      /* 1 on the first run */
    int max_attempts; /* the job's own or the workers' default */
};

/* Frees the job's payload. */
void dems_job_done(struct dems_job *job);

/* What a handler may use; all borrowed for the call. */
struct dems_job_ctx {
    const struct dems_config *cfg;
    const uint8_t *master_key; /* 32 bytes: opens blobs */
    PGconn *db;                /* this slot's connection (blocking, autocommit) */
    const char *conninfo;      /* the database, for handlers that need more connections */
    const atomic_bool *stop;   /* set when the worker is asked to stop */
};

/* True once the worker is stopping: a long handler should return RELEASE. */
bool dems_job_stopping(const struct dems_job_ctx *ctx);

/*
 * A handler runs one job. It must be idempotent. On failure it writes one
 * line into err (errlen bytes), kept as the job's last_error.
 */
typedef enum dems_job_result (*dems_job_fn)(const struct dems_job *job, struct dems_job_ctx *ctx,
                                            char *err, size_t errlen);

struct dems_job_kind {
    const char *name; /* [a-z][a-z0-9_-]* */
    dems_job_fn run;
    /* Checks a payload before it is queued: 0, or DEMS_EINVAL with err
     * naming the field. NULL accepts any JSON object. */
    int (*check)(const json_t *payload, char *err, size_t errlen);
};

/* The registry: every kind this binary runs. */
extern const struct dems_job_kind dems_job_kinds[];
extern const size_t dems_job_nkinds;

/* The kind called name, or NULL. */
const struct dems_job_kind *dems_job_kind_find(const char *name);

/*
 * Checks a job before it is queued: a known kind and a payload object its
 * check accepts. Returns 0, or DEMS_ENOTFOUND (unknown kind) or DEMS_EINVAL
 * with one line in err.
 */
int dems_job_check(const char *kind, const json_t *payload, char *err, size_t errlen);

/* verify-blob: re-reads one evidence blob ({"evidence": "<sha256 hex>"}). */
enum dems_job_result dems_job_verify_blob(const struct dems_job *job, struct dems_job_ctx *ctx,
                                          char *err, size_t errlen);
int dems_job_verify_blob_check(const json_t *payload, char *err, size_t errlen);

/*
 * preview: makes an artefact's proxy, poster and thumbnails in the media
 * sandbox and records them with a PREVIEW_MADE entry
 * ({"evidence": "<sha256 hex>"}; server/jobs/preview.c).
 */
enum dems_job_result dems_job_preview(const struct dems_job *job, struct dems_job_ctx *ctx,
                                      char *err, size_t errlen);

/*
 * bundle: writes a court bundle ({"bundle": <bundles.id>}; server/jobs/bundle.c)
 * into the blob store and records it with a BUNDLE_MADE entry.
 */
enum dems_job_result dems_job_bundle(const struct dems_job *job, struct dems_job_ctx *ctx,
                                     char *err, size_t errlen);
int dems_job_bundle_check(const json_t *payload, char *err, size_t errlen);

/*
 * unpack: unpacks a ZIP archive from the public in the media sandbox
 * ({"evidence": "<sha256 hex>", "submission": <id>}; server/jobs/unpack.c):
 * each member kept becomes an artefact derived from it, with an INGESTED
 * entry and its preview job; the members left out are listed with why.
 */
enum dems_job_result dems_job_unpack(const struct dems_job *job, struct dems_job_ctx *ctx,
                                     char *err, size_t errlen);
int dems_job_unpack_check(const json_t *payload, char *err, size_t errlen);

/* ---- media runners (server/jobs/media_runner.c) ---- */

struct dems_media_error;

/* Most fds a runner is given (on 3, 4, ...). */
#define DEMS_MEDIA_RUNNER_MAX_FDS 8

/*
 * Starts `demsd SUBCOMMAND EXTRA_ARGS... --timeout T --memory M
 * [--sandbox-user U]` (T, M, U from cfg's media_timeout, media_memory and
 * sandbox_user) with posix_spawn of /proc/self/exe: a fresh single-threaded
 * process (whose media sandbox may fork safely) in its own process group,
 * with an empty signal mask and SIGCHLD, SIGPIPE and SIGTERM at their
 * defaults. fds[i] becomes its fd 3 + i (-1: that number is closed, e.g. a
 * skipped output); nfds <= DEMS_MEDIA_RUNNER_MAX_FDS; extra_args is
 * NULL-terminated (at most 32 words; NULL for none). The caller's fds are
 * borrowed (duplicated for the child): close your copy of a pipe's write
 * end after this returns, or its reader never sees EOF. Returns 0 with
 * *ret_pid and *ret_answer_fd (the read end of the runner's stdout,
 * O_CLOEXEC; owned, closed by dems_media_runner_finish), or DEMS_EINVAL,
 * DEMS_ENOMEM or DEMS_EINTERNAL with one line in err. Blocking but quick.
 *
 * For face indexing (docs/media.md, "Frame sampling for face indexing"):
 *   int fp[2]; pipe2(fp, O_CLOEXEC);
 *   const char *args[] = {"--fps", "2", "--max-pixels", px, ..., NULL};
 *   dems_media_runner_spawn(cfg, "media-frames", args, (int[]){in_fd, fp[1]}, 2,
 *                           &pid, &answer, err, errlen);
 *   close(fp[1]);
 *   double deadline = dems_media_runner_deadline(cfg);
 *   while ((r = dems_media_frame_read(fp[0], &frame, 1920, e, sizeof(e))) > 0) { detect... }
 *   if (r < 0) dems_media_runner_kill(pid);      (a broken stream: stop the child)
 *   close(fp[0]);
 *   rc = dems_media_runner_finish(pid, answer, deadline, ctx, &result, &me);
 * When both fail, the runner's error names the cause (a child that died
 * mid-frame leaves a truncated stream).
 */
int dems_media_runner_spawn(const struct dems_config *cfg, const char *subcommand,
                            const char *const *extra_args, const int *fds, int nfds, pid_t *ret_pid,
                            int *ret_answer_fd, char *err, size_t errlen);

/*
 * Reads the runner's answer until EOF, kills its process group at deadline
 * (seconds on dems_media_runner_clock) or as soon as the worker is stopping
 * (ctx may be NULL: no such check), closes answer_fd and reaps pid, always.
 * Returns 0 with *ret_result (owned; json_decref), the runner's media error
 * as dems_media_code_err(me->code) with *me filled, DEMS_EUNAVAIL when it
 * was killed because the worker is stopping (the job should be released),
 * or DEMS_EINTERNAL (me: media_internal, "the media runner was killed: no
 * answer in time", "... was killed by a signal", "... gave no answer").
 * Blocking: until the runner ends or the deadline.
 */
int dems_media_runner_finish(pid_t pid, int answer_fd, double deadline,
                             const struct dems_job_ctx *ctx, json_t **ret_result,
                             struct dems_media_error *me);

/* Kills the runner's process group (it and its sandboxed child). */
void dems_media_runner_kill(pid_t pid);

/* CLOCK_MONOTONIC in seconds, the clock of the deadlines. */
double dems_media_runner_clock(void);

/* The usual deadline: now + cfg->media_timeout (enforced by the runner
 * itself) + 60 s. */
double dems_media_runner_deadline(const struct dems_config *cfg);
/*
 * Face search (server/jobs/face_*.c; docs/face-search.md):
 * face-index ({"evidence": "<sha256>"}) finds and tracks the faces of an
 * artefact of a case with face indexing on; face-enrol ({"subject": id})
 * computes a gallery subject's descriptor; face-search ({"search": id})
 * runs a search; face-import ({"import": id}) turns a ZIP of images with a
 * manifest into pending subjects of a gallery. Each records its ledger entry.
 */
enum dems_job_result dems_job_face_index(const struct dems_job *job, struct dems_job_ctx *ctx,
                                         char *err, size_t errlen);
enum dems_job_result dems_job_face_enrol(const struct dems_job *job, struct dems_job_ctx *ctx,
                                         char *err, size_t errlen);
enum dems_job_result dems_job_face_search(const struct dems_job *job, struct dems_job_ctx *ctx,
                                          char *err, size_t errlen);
enum dems_job_result dems_job_face_import(const struct dems_job *job, struct dems_job_ctx *ctx,
                                          char *err, size_t errlen);
/*
 * Disposal of a batch ({"batch": id}; server/jobs/disposal.c, docs/operations.md
 * "Retention, holds and disposal"): lists what is due, soft-deletes an approved
 * batch, crypto-erases it once its recovery window has passed.
 */
enum dems_job_result dems_job_disposal(const struct dems_job *job, struct dems_job_ctx *ctx,
                                       char *err, size_t errlen);
int dems_job_disposal_check(const json_t *payload, char *err, size_t errlen);
/* Checks {"subject": id}, {"search": id} or {"import": id}: a positive integer. */
int dems_job_face_id_check(const json_t *payload, char *err, size_t errlen);

/* ---- the worker's ledger appender (server/jobs/job_ledger.c) ---- */

struct dems_ledger_item;

/*
 * Starts this process's ledger appender thread on first use (later calls
 * return at once). Returns 0, or an error with one line in err.
 */
int dems_job_ledger_start(const struct dems_job_ctx *ctx, char *err, size_t errlen);

/*
 * Appends item (ownership moves) after dems_job_ledger_start and waits until
 * it is durable or failed: 0 with its seq, or the item's error
 * (DEMS_ECONFLICT for a unique violation in its pre-statement, ...).
 */
int dems_job_ledger_append(struct dems_ledger_item *item, uint64_t *ret_seq);

/* ---- the queue (server/jobs/queue.c) ---- */

/* A worker's settings, from the configuration. */
struct dems_jobs_opts {
    uint64_t lease;        /* seconds */
    uint64_t backoff_base; /* seconds */
    uint64_t backoff_max;  /* seconds */
    uint64_t max_attempts; /* for jobs without their own */
    char kinds[1024];      /* the kinds this worker runs, as a text[] literal */
};

/* Fills o from cfg and the registry. */
void dems_jobs_opts_init(struct dems_jobs_opts *o, const struct dems_config *cfg);

/* Seconds to wait before retrying after failed attempt number attempt (1, 2, ...):
 * base * 2^(attempt-1), at most cap. Pure. */
uint64_t dems_jobs_backoff(uint64_t base, uint64_t cap, int attempt);

/*
 * Enqueues (DEMS_JOBS_ENQUEUE_SQL) after dems_job_check. payload is borrowed;
 * dedupe_key may be NULL. Returns 0 with the id, DEMS_ENOTFOUND / DEMS_EINVAL
 * (refused, err says why) or DEMS_EDB.
 */
int dems_jobs_enqueue(PGconn *db, const char *kind, const json_t *payload, const char *dedupe_key,
                      int priority, int64_t *ret_id, char *err, size_t errlen);

/*
 * Claims the most urgent runnable job of the worker's kinds for owner
 * ("host:pid:slot"): state running, one more attempt, lease until now +
 * o->lease. Returns 0 with *ret_job filled (free with dems_job_done),
 * DEMS_ENOTFOUND when nothing is runnable, DEMS_EDB.
 */
int dems_jobs_claim(PGconn *db, const struct dems_jobs_opts *o, const char *owner,
                    struct dems_job *ret_job);

/* Extends a running job's lease. Returns 0, DEMS_ENOTFOUND (the lease was
 * lost: expired and reclaimed) or DEMS_EDB. */
int dems_jobs_renew(PGconn *db, const struct dems_jobs_opts *o, const char *owner,
                    const struct dems_job *job);

/*
 * Records a handler's result: done; failed with a retry at now + backoff;
 * dead (a permanent failure, or the last attempt failed); or queued again
 * (RELEASE). error (may be NULL for OK) becomes last_error. *ret_state
 * (static string) is the new state. Returns 0, DEMS_ENOTFOUND (the lease was
 * lost, nothing recorded) or DEMS_EDB.
 */
int dems_jobs_finish(PGconn *db, const struct dems_jobs_opts *o, const char *owner,
                     const struct dems_job *job, enum dems_job_result result, const char *error,
                     const char **ret_state);

/*
 * Returns running jobs whose lease expired to the queue (failed, retried
 * after the backoff) or, out of attempts, makes them dead; last_error
 * "lease expired (worker died?)". Returns the number of jobs reaped, or
 * DEMS_EDB.
 */
int dems_jobs_reap(PGconn *db, const struct dems_jobs_opts *o);

/* Seconds until the next waiting job of the worker's kinds is due (<= 0:
 * now). Returns 0, DEMS_ENOTFOUND (none waiting) or DEMS_EDB. */
int dems_jobs_next_due(PGconn *db, const struct dems_jobs_opts *o, double *ret_seconds);

/* ---- the worker process (server/jobs/worker.c) ---- */

/*
 * Runs cfg->worker_slots job slots against conninfo until SIGTERM or SIGINT,
 * then lets running jobs finish (or release themselves) and returns 0. The
 * caller has blocked SIGTERM and SIGINT in every thread. master_key (32
 * bytes) is borrowed. Returns 1 when it cannot start.
 */
int dems_worker_run(const struct dems_config *cfg, const char *conninfo,
                    const uint8_t master_key[static 32]);

/* ---- supervision by demsd serve (server/jobs/supervisor.c) ---- */

struct dems_supervisor;

/*
 * Starts n worker processes: /proc/self/exe worker ARGS... (args: NULL-
 * terminated, copied) with this process's environment plus env ("KEY=VALUE"
 * strings, NULL-terminated, copied; they replace variables of the same
 * name), each in its own process group with PR_SET_PDEATHSIG, and restarts
 * one that exits, with a backoff from 1 s to 60 s. Returns owned (stop with
 * dems_supervisor_stop), or NULL when out of memory.
 */
struct dems_supervisor *dems_supervisor_start(unsigned n, const char *const *args,
                                              const char *const *env);

/* Sends SIGTERM to every worker, waits up to timeout seconds for them to
 * exit, SIGKILLs the rest, reaps them and frees s. Accepts NULL. */
void dems_supervisor_stop(struct dems_supervisor *s, unsigned timeout);

#endif
