/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsd's configuration: one table of keys with types, ranges and defaults.
 * Values come from (lowest first) the defaults, the config file, DEMS_<KEY>
 * environment variables, then command-line flags. A bad value yields one line
 * naming the key; callers print it and exit with status 2.
 *
 * File format: UTF-8 text, one `key = value` per line; blank lines and lines
 * starting with '#' are ignored; values run to the end of the line with
 * surrounding spaces removed and may be wrapped in double quotes.
 */
#ifndef DEMS_CONFIG_H
#define DEMS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dems_config {
    char *data_dir;
    char *user;              /* account serve and workers switch to when started as root */
    uint64_t min_free_space; /* bytes free on data_dir's volume for /readyz */
    char *listen;            /* HOST:PORT */
    uint64_t threads;
    char *tls_cert;
    char *tls_key;
    uint64_t hsts_max_age;
    char *database_url;
    char *database_owner_url;
    char *pg_bin_dir;
    uint64_t db_pool_size;
    bool auto_migrate;
    uint64_t header_timeout;
    uint64_t idle_timeout;
    uint64_t body_timeout;
    uint64_t body_min_rate;               /* bytes/s averaged over body_rate_window; 0 = off */
    uint64_t body_rate_window;            /* seconds */
    uint64_t max_connections;             /* 0 = derived from RLIMIT_NOFILE */
    uint64_t max_connections_per_address; /* 0 = no cap */
    uint64_t shutdown_timeout;
    uint64_t session_ttl;
    uint64_t login_max_failures;
    uint64_t login_window;
    uint64_t login_max_failures_per_address;
    uint64_t refusal_max_per_principal; /* ACCESS_DENIED entries per refusal_window */
    uint64_t refusal_max_per_address;
    uint64_t refusal_window;         /* seconds */
    uint64_t public_rate_per_minute; /* unauthenticated requests per client address (buckets) */
    uint64_t public_rate_burst;
    uint64_t portal_link_rate_per_minute; /* submissions a link may start (buckets) */
    uint64_t portal_link_burst;
    uint64_t portal_link_days;     /* a public submission link's default life */
    uint64_t portal_link_max_days; /* and its longest */
    uint64_t portal_reject_retention_days;
    uint64_t disposal_recover_days; /* soft-deleted before crypto-erasure (docs/operations.md) */
    uint64_t upload_max_size;
    uint64_t upload_expiry;
    uint64_t upload_max_unfinished_per_user;
    uint64_t upload_max_unfinished_per_device;
    uint64_t housekeeping_interval;
    char *case_reference_pattern; /* POSIX extended regex a case reference must match */
    uint64_t share_max_days;      /* longest share or disclosure link */
    char *ledger_origin;

    /* Witnesses (docs/ledger.md, "Witnesses"; docs/configuration.md). */
    char *witness_name;       /* this server's cosignature key name ("" = not a witness) */
    char *witness_logs;       /* verifier keys of the logs it witnesses */
    char *witnesses;          /* "URL VKEY" pairs, comma-separated: witnesses of this log */
    uint64_t witness_quorum;  /* cosignatures that publish a checkpoint */
    char *witness_ca_file;    /* trust store for the witnesses' TLS ("" = the system's) */
    uint64_t witness_timeout; /* seconds per submission */
    char *master_key_file;
    uint64_t blob_verify_interval;
    uint64_t workers;      /* job worker processes serve supervises */
    uint64_t worker_slots; /* jobs per worker process at once */
    uint64_t job_max_attempts;
    uint64_t job_lease; /* seconds */
    uint64_t job_backoff_base;
    uint64_t job_backoff_max;
    uint64_t job_poll_interval;
    uint64_t media_max_pixels;       /* preview: largest frame, width x height */
    uint64_t media_max_total_pixels; /* preview: frames x pixels per job */
    uint64_t media_max_duration;     /* seconds */
    uint64_t media_timeout;          /* sandbox wall clock, seconds */
    uint64_t media_memory;           /* sandbox RLIMIT_AS, bytes */
    char *sandbox_user;              /* the decoder's account when its runner is root */
    char *log_level;

    /* A submitted ZIP archive's unpacking (docs/media.md, "Unpacking archives"). */
    uint64_t unpack_max_members;      /* entries at most */
    uint64_t unpack_max_member_bytes; /* one member's bytes (larger: skipped) */
    uint64_t unpack_max_total_bytes;  /* bytes unpacked from one archive */
    uint64_t unpack_max_ratio;        /* bytes unpacked per byte of the archive */

    /* Face search (docs/face-search.md). */
    char *face_models;      /* the networks' directory ("" = the usual places) */
    double face_sample_fps; /* frames sampled per second of video */
    uint64_t face_max_side; /* sampled frames' longer side, pixels */
    double face_threshold;  /* lowest candidate score (1 - distance) */
    char *face_legal_bases; /* "|"-separated */

    /* Where blobs live (docs/configuration.md, "Object stores"). */
    char *store;            /* "local", "azure" or "s3" */
    char *store_endpoint;   /* https://host[:port][/account] */
    char *store_container;  /* Azure container or S3 bucket */
    char *store_account;    /* Azure account name */
    char *store_key;        /* Azure account key (base64) or S3 secret key; or @FILE */
    char *store_access_key; /* S3 access key id */
    char *store_sas;        /* Azure SAS token (instead of store_key) */
    char *store_region;     /* S3 signing region */
    char *store_addressing; /* S3: "path" or "virtual" */
    char *store_ca_file;    /* trust store for the endpoint ("" = the system's) */
    uint64_t store_retries;
    uint64_t store_timeout;    /* seconds per request */
    uint64_t store_block_size; /* bytes per staged block or part */

    /* RFC 3161 timestamps of checkpoints (docs/ledger.md, "Timestamps"). */
    char *tsa_urls;        /* TSA URLs separated by spaces or commas; "" = off */
    char *tsa_ca_file;     /* PEM certificate authorities the TSAs' signers chain to */
    uint64_t tsa_interval; /* seconds between rounds */
    uint64_t tsa_timeout;  /* seconds one TSA request may take */
};

/* Fills c with defaults. Strings are owned; free with dems_config_done. */
int dems_config_init(struct dems_config *c);

void dems_config_done(struct dems_config *c);

/*
 * Sets key to the textual value. On error returns DEMS_EINVAL (unknown key
 * or bad value) and writes one line of explanation into err (size errlen).
 */
int dems_config_set(struct dems_config *c, const char *key, const char *value, char *err,
                    size_t errlen);

/* Reads a config file (see format above); errors name the file and line. */
int dems_config_load_file(struct dems_config *c, const char *path, char *err, size_t errlen);

/* Applies DEMS_<KEY> variables from envp (NULL-terminated). */
int dems_config_load_env(struct dems_config *c, char *const *envp, char *err, size_t errlen);

/* Checks cross-key rules (e.g. cert and key together); err as above. */
int dems_config_check(const struct dems_config *c, char *err, size_t errlen);

/*
 * Splits "HOST:PORT" or "[V6]:PORT" into host (hostlen bytes) and port.
 * Returns 0 or DEMS_EINVAL.
 */
int dems_config_split_hostport(const char *s, char *host, size_t hostlen, uint16_t *ret_port);

/* At most this many TSA URLs, each at most DEMS_CONFIG_TSA_URL_MAX bytes. */
#define DEMS_CONFIG_TSA_MAX     8
#define DEMS_CONFIG_TSA_URL_MAX 1024

/*
 * Splits c->tsa_urls (separated by spaces or commas) into urls; each is
 * http:// or https://, with no control characters. Returns how many (0:
 * timestamps are off) or DEMS_EINVAL with one line in err.
 */
int dems_config_tsa_urls(const struct dems_config *c,
                         char urls[static DEMS_CONFIG_TSA_MAX][DEMS_CONFIG_TSA_URL_MAX + 1],
                         char *err, size_t errlen);

/* For --help: calls fn once per key with its default and description. */
void dems_config_describe(void (*fn)(const char *key, const char *def, const char *help, void *arg),
                          void *arg);

#endif
