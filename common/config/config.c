/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configuration table and its three sources (file, environment, flags).
 * Every key is declared once below with its type, range, default and help
 * text; --help, the docs and the parser all read the same table.
 */
#include "dems/config.h"

#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/limits.h"
#include "dems/str.h"

enum kind { K_STR, K_U64, K_BOOL, K_HOSTPORT, K_LEVEL, K_REAL };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    uint64_t min, max; /* K_U64; K_REAL: a value v must lie in (min, max] */
    const char *def;
    const char *help;
};

#define OFF(f) offsetof(struct dems_config, f)

static const struct key keys[] = {
    {"data_dir", K_STR, OFF(data_dir), 0, 0, "",
     "directory for the embedded database, keys, TLS files and blobs (required)"},
    {"user", K_STR, OFF(user), 0, 0, "dems",
     "account demsd serve and its workers switch to when started as root, after binding the "
     "listening socket and starting the embedded database (empty = stay root)"},
    {"min_free_space", K_U64, OFF(min_free_space), 0, 1ULL << 60, "1073741824",
     "bytes that must stay free on data_dir's volume for /readyz to answer ready (0 = no "
     "check)"},
    {"listen", K_HOSTPORT, OFF(listen), 0, 0, "127.0.0.1:8443", "HTTPS listen address HOST:PORT"},
    {"threads", K_U64, OFF(threads), 0, 256, "0", "event-loop threads (0 = one per CPU core)"},
    {"tls_cert", K_STR, OFF(tls_cert), 0, 0, "",
     "PEM certificate chain (empty = self-signed, generated under data_dir)"},
    {"tls_key", K_STR, OFF(tls_key), 0, 0, "", "PEM private key for tls_cert"},
    {"hsts_max_age", K_U64, OFF(hsts_max_age), 0, 63072000, "31536000",
     "Strict-Transport-Security max-age in seconds"},
    {"database_url", K_STR, OFF(database_url), 0, 0, "",
     "libpq URL of the application role (empty = private embedded PostgreSQL)"},
    {"database_owner_url", K_STR, OFF(database_owner_url), 0, 0, "",
     "libpq URL of the schema owner role, used for migrations (empty = database_url)"},
    {"pg_bin_dir", K_STR, OFF(pg_bin_dir), 0, 0, "/usr/lib/postgresql/15/bin",
     "PostgreSQL server binaries for the embedded cluster"},
    {"db_pool_size", K_U64, OFF(db_pool_size), 1, 64, "4",
     "database connections per event-loop thread"},
    {"auto_migrate", K_BOOL, OFF(auto_migrate), 0, 0, "true",
     "apply pending migrations when serve starts"},
    {"header_timeout", K_U64, OFF(header_timeout), 1, 3600, "10",
     "seconds a client has to send a complete request head"},
    {"idle_timeout", K_U64, OFF(idle_timeout), 1, 86400, "60",
     "seconds an idle keep-alive connection is kept"},
    {"body_timeout", K_U64, OFF(body_timeout), 1, 86400, "30",
     "seconds a request body may go without receiving a byte"},
    {"body_min_rate", K_U64, OFF(body_min_rate), 0, 1ULL << 30, "500",
     "bytes per second a request body must average over each body_rate_window (0 = no minimum)"},
    {"body_rate_window", K_U64, OFF(body_rate_window), 1, 3600, "20",
     "seconds over which body_min_rate is measured"},
    {"max_connections", K_U64, OFF(max_connections), 0, 10000000, "0",
     "open client connections at most (0 = derived from the open-file limit at start)"},
    {"max_connections_per_address", K_U64, OFF(max_connections_per_address), 0, 10000000, "256",
     "open connections from one client address at most (IPv6: one /64); 0 = no per-address cap"},
    {"shutdown_timeout", K_U64, OFF(shutdown_timeout), 0, 3600, "30",
     "seconds in-flight requests get to finish on SIGTERM"},
    {"session_ttl", K_U64, OFF(session_ttl), 60, 2592000, "43200",
     "lifetime of a login session token in seconds"},
    {"login_max_failures", K_U64, OFF(login_max_failures), 1, 1000, "5",
     "failed logins per account within login_window before it is throttled"},
    {"login_window", K_U64, OFF(login_window), 1, 86400, "300",
     "seconds over which failed logins are counted"},
    {"login_max_failures_per_address", K_U64, OFF(login_max_failures_per_address), 1, 100000, "20",
     "failed logins per client address within login_window"},
    {"public_rate_per_minute", K_U64, OFF(public_rate_per_minute), 1, 1000000, "30",
     "requests a client address may make per minute to the public routes that take secrets "
     "(opening a disclosure link), held in PostgreSQL token buckets shared by every demsd"},
    {"public_rate_burst", K_U64, OFF(public_rate_burst), 1, 1000000, "30",
     "how many of those requests an address may make at once before the rate applies"},
    {"portal_link_rate_per_minute", K_U64, OFF(portal_link_rate_per_minute), 1, 1000000, "120",
     "submissions one public submission link may start per minute, from all addresses"},
    {"portal_link_burst", K_U64, OFF(portal_link_burst), 1, 1000000, "120",
     "how many of those may start at once before the rate applies"},
    {"portal_link_days", K_U64, OFF(portal_link_days), 1, 30, "3",
     "days a public submission link lasts when the officer gives no expiry"},
    {"portal_link_max_days", K_U64, OFF(portal_link_max_days), 1, 365, "30",
     "the longest a public submission link may last, in days"},
    {"disposal_recover_days", K_U64, OFF(disposal_recover_days), 0, 3650, "7",
     "days an approved disposal can be undone before the artefact is crypto-erased"},
    {"portal_reject_retention_days", K_U64, OFF(portal_reject_retention_days), 0, 3650, "90",
     "days material of a rejected public submission is kept before it is disposed of"},
    {"refusal_max_per_principal", K_U64, OFF(refusal_max_per_principal), 1, 1000000, "30",
     "refused requests per user or device within refusal_window ledgered one by one"},
    {"refusal_max_per_address", K_U64, OFF(refusal_max_per_address), 1, 1000000, "60",
     "refused requests per client address within refusal_window ledgered one by one"},
    {"refusal_window", K_U64, OFF(refusal_window), 1, 3600, "60",
     "seconds over which refusals are counted; the rest are summarised per window"},
    {"upload_max_size", K_U64, OFF(upload_max_size), 0, 1ULL << 44, "274877906944",
     "largest resumable upload accepted, in bytes (Tus-Max-Size)"},
    {"upload_expiry", K_U64, OFF(upload_expiry), 60, 2592000, "86400",
     "seconds an unfinished upload is kept before it expires"},
    {"upload_max_unfinished_per_user", K_U64, OFF(upload_max_unfinished_per_user), 1, 1000000,
     "100", "unfinished uploads one user may have at once (more: 429)"},
    {"upload_max_unfinished_per_device", K_U64, OFF(upload_max_unfinished_per_device), 1, 1000000,
     "1000", "unfinished uploads one device (dock) may have at once (more: 429)"},
    {"housekeeping_interval", K_U64, OFF(housekeeping_interval), 1, 3600, "60",
     "seconds between housekeeping runs (expiring abandoned uploads, recording completed ones)"},
    {"case_reference_pattern", K_STR, OFF(case_reference_pattern), 0, 0,
     "^[A-Za-z0-9][A-Za-z0-9/._-]{0,63}$",
     "POSIX extended regular expression every case reference must match (e.g. "
     "^[0-9]{2}/[0-9]{6}/[0-9]{2}$ for 01/123456/26)"},
    {"share_max_days", K_U64, OFF(share_max_days), 1, 3650, "365",
     "longest a share with a prosecutor or a disclosure link may last, in days"},
    {"ledger_origin", K_STR, OFF(ledger_origin), 0, 0, "dems.localhost/ledger",
     "origin line of the ledger's signed checkpoints (a unique name for this log)"},
    {"witness_name", K_STR, OFF(witness_name), 0, 0, "",
     "this server's key name as a witness for other logs (e.g. witness.example.org/dems); "
     "empty = not a witness"},
    {"witness_logs", K_STR, OFF(witness_logs), 0, 0, "",
     "verifier keys (as GET /v1/ledger/key gives) of the logs this server witnesses, separated "
     "by spaces or commas; each key's name is its log's origin"},
    {"witnesses", K_STR, OFF(witnesses), 0, 0, "",
     "witnesses of this log: comma-separated \"URL VKEY\" pairs (the witness's submission "
     "prefix and its cosignature verifier key); empty = checkpoints are published unwitnessed"},
    {"witness_quorum", K_U64, OFF(witness_quorum), 1, 16, "1",
     "valid cosignatures from distinct witnesses that publish a checkpoint"},
    {"witness_ca_file", K_STR, OFF(witness_ca_file), 0, 0, "",
     "PEM file of certificate authorities for the witnesses' TLS (empty = the system's)"},
    {"witness_timeout", K_U64, OFF(witness_timeout), 1, 300, "10",
     "seconds one submission to a witness may take"},
    {"master_key_file", K_STR, OFF(master_key_file), 0, 0, "",
     "file holding the 32-byte master key (empty = data_dir/keys/master.key)"},
    {"blob_verify_interval", K_U64, OFF(blob_verify_interval), 0, 2592000, "86400",
     "seconds between integrity sweeps over every stored blob (0 = never)"},
    {"workers", K_U64, OFF(workers), 0, 64, "1",
     "job worker processes demsd serve starts and supervises (0 = none)"},
    {"worker_slots", K_U64, OFF(worker_slots), 1, 64, "1",
     "jobs each worker process runs at once (one database connection each)"},
    {"job_max_attempts", K_U64, OFF(job_max_attempts), 1, 1000, "5",
     "attempts a job gets before it is dead (unless the job sets its own)"},
    {"job_lease", K_U64, OFF(job_lease), 3, 86400, "300",
     "seconds a claimed job is leased; renewed every third of it while it runs"},
    {"job_backoff_base", K_U64, OFF(job_backoff_base), 1, 86400, "10",
     "seconds before the first retry of a failed job; doubled for each attempt"},
    {"job_backoff_max", K_U64, OFF(job_backoff_max), 1, 604800, "3600",
     "longest wait between retries, in seconds"},
    {"job_poll_interval", K_U64, OFF(job_poll_interval), 1, 3600, "5",
     "seconds an idle worker waits before looking for jobs without a notification"},
    {"media_max_pixels", K_U64, OFF(media_max_pixels), 1, 1ULL << 30, "35389440",
     "largest video frame (width x height) a preview job decodes; larger streams are refused"},
    {"media_max_total_pixels", K_U64, OFF(media_max_total_pixels), 1, 1ULL << 50, "1099511627776",
     "pixels (frames x width x height) one preview job may decode"},
    {"media_max_duration", K_U64, OFF(media_max_duration), 1, 31 * 86400ULL, "86400",
     "longest media, in seconds, a preview job accepts"},
    {"media_timeout", K_U64, OFF(media_timeout), 1, 86400, "3600",
     "wall-clock seconds before a preview's sandboxed decoder is killed"},
    {"media_memory", K_U64, OFF(media_memory), 64ULL << 20, 1ULL << 40, "4294967296",
     "address-space limit, in bytes, of the sandboxed decoder"},
    {"unpack_max_members", K_U64, OFF(unpack_max_members), 1, 1000000, "10000",
     "entries (files, directories, links) a submitted ZIP archive may have; more: it is refused"},
    {"unpack_max_member_bytes", K_U64, OFF(unpack_max_member_bytes), 1, 1ULL << 46, "68719476736",
     "bytes one member of a submitted ZIP archive may unpack to; a larger one is "
     "left in the archive and listed (too_large)"},
    {"unpack_max_total_bytes", K_U64, OFF(unpack_max_total_bytes), 1, 1ULL << 46, "274877906944",
     "bytes one submitted ZIP archive may unpack to in all; more: it is refused"},
    {"unpack_max_ratio", K_U64, OFF(unpack_max_ratio), 1, 1000000, "100",
     "bytes a submitted ZIP archive may unpack to per byte of its own size; more: it is refused "
     "(a ZIP bomb)"},
    {"sandbox_user", K_STR, OFF(sandbox_user), 0, 0, "dems-sandbox",
     "account the media decoder switches to when its runner runs as root (otherwise it keeps "
     "the worker's unprivileged account)"},
    {"face_models", K_STR, OFF(face_models), 0, 0, "",
     "directory of the face networks (empty = found as `demsd face` finds them: DEMS_MODELS, "
     ".models/ of the checkout, /usr/share/dems/face-models)"},
    {"face_sample_fps", K_REAL, OFF(face_sample_fps), 0, 30, "2",
     "frames per second a face-index job samples from a video"},
    {"face_max_side", K_U64, OFF(face_max_side), 64, 8192, "1920",
     "sampled frames are scaled down so their longer side is at most this many pixels"},
    {"face_threshold", K_REAL, OFF(face_threshold), 0, 1, "0.5",
     "default and lowest score (1 - descriptor distance) a face-search candidate must reach; "
     "a searcher may only raise it (docs/face.md, \"Matching threshold\")"},
    {"face_legal_bases", K_STR, OFF(face_legal_bases), 0, 0,
     "DPA 2018 s.35 law enforcement processing|PACE 1984 s.64A custody images|"
     "Common law: prevention and detection of crime",
     "the legal bases a face search may name, separated by |"},
    {"store", K_STR, OFF(store), 0, 0, "local",
     "where blobs are kept: local (data_dir/blobs), azure (Azure Blob Storage) or s3"},
    {"store_endpoint", K_STR, OFF(store_endpoint), 0, 0, "",
     "the object store's base URL, e.g. https://ACCOUNT.blob.core.windows.net or "
     "https://s3.eu-west-2.amazonaws.com (an emulator: http://127.0.0.1:10000/ACCOUNT)"},
    {"store_container", K_STR, OFF(store_container), 0, 0, "dems",
     "Azure container or S3 bucket holding the blobs (created when missing)"},
    {"store_account", K_STR, OFF(store_account), 0, 0, "", "Azure storage account name"},
    {"store_key", K_STR, OFF(store_key), 0, 0, "",
     "Azure account key (base64) or S3 secret access key; @FILE reads it from FILE"},
    {"store_access_key", K_STR, OFF(store_access_key), 0, 0, "", "S3 access key id"},
    {"store_sas", K_STR, OFF(store_sas), 0, 0, "",
     "Azure shared access signature (query string) used instead of store_key; @FILE reads it"},
    {"store_region", K_STR, OFF(store_region), 0, 0, "us-east-1", "S3 signing region"},
    {"store_addressing", K_STR, OFF(store_addressing), 0, 0, "path",
     "S3 addressing: path (https://host/bucket/key) or virtual (https://bucket.host/key)"},
    {"store_ca_file", K_STR, OFF(store_ca_file), 0, 0, "",
     "PEM file of certificate authorities for the store's TLS (empty = the system's)"},
    {"store_retries", K_U64, OFF(store_retries), 0, 20, "6",
     "retries of an object-store request after a transient failure (with exponential backoff)"},
    {"store_timeout", K_U64, OFF(store_timeout), 1, 3600, "120",
     "seconds one object-store request may take"},
    {"store_block_size", K_U64, OFF(store_block_size), 1ULL << 20, 1ULL << 30, "8388608",
     "bytes per staged block (Azure) or part (S3); larger objects are sent in blocks"},
    {"tsa_urls", K_STR, OFF(tsa_urls), 0, 0, "",
     "RFC 3161 Time-Stamping Authorities (http:// or https:// URLs separated by spaces or "
     "commas) asked to timestamp each new checkpoint (empty = off)"},
    {"tsa_ca_file", K_STR, OFF(tsa_ca_file), 0, 0, "",
     "PEM file of the certificate authorities the TSAs' signing certificates must chain to "
     "(required with tsa_urls)"},
    {"tsa_interval", K_U64, OFF(tsa_interval), 1, 86400, "600",
     "seconds between timestamp rounds; a round asks only when the log grew"},
    {"tsa_timeout", K_U64, OFF(tsa_timeout), 1, 600, "30", "seconds one request to a TSA may take"},
    {"log_level", K_LEVEL, OFF(log_level), 0, 0, "info", "debug, info, warn or error"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void *field(struct dems_config *c, const struct key *k)
{
    return (char *)c + k->off;
}

static const struct key *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

static int bad(char *err, size_t errlen, const char *key, const char *why, const char *value)
{
    snprintf(err, errlen, "config: %s: %s (got \"%.64s\")", key, why, value);
    return DEMS_EINVAL;
}

static int set_string(char **slot, const char *value)
{
    char *s = strdup(value);
    if (s == NULL)
        return DEMS_ENOMEM;
    free(*slot);
    *slot = s;
    return 0;
}

static int set_key(struct dems_config *c, const struct key *k, const char *value, char *err,
                   size_t errlen)
{
    char why[96];
    switch (k->kind) {
    case K_U64: {
        uint64_t v;
        int r = dems_parse_u64(value, strlen(value), k->max, &v);
        if (r < 0 || v < k->min) {
            snprintf(why, sizeof(why), "expected a whole number from %llu to %llu",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return bad(err, errlen, k->name, why, value);
        }
        *(uint64_t *)field(c, k) = v;
        return 0;
    }
    case K_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0) {
            *(bool *)field(c, k) = true;
        } else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                   strcmp(value, "0") == 0) {
            *(bool *)field(c, k) = false;
        } else {
            return bad(err, errlen, k->name, "expected true or false", value);
        }
        return 0;
    case K_HOSTPORT: {
        char host[256];
        uint16_t port;
        if (dems_config_split_hostport(value, host, sizeof(host), &port) < 0)
            return bad(err, errlen, k->name, "expected HOST:PORT with a port from 0 to 65535",
                       value);
        break;
    }
    case K_LEVEL:
        if (strcmp(value, "debug") != 0 && strcmp(value, "info") != 0 &&
            strcmp(value, "warn") != 0 && strcmp(value, "error") != 0)
            return bad(err, errlen, k->name, "expected debug, info, warn or error", value);
        break;
    case K_REAL: {
        char *end = NULL;
        double v = strtod(value, &end);
        if (value[0] == '\0' || end == NULL || *end != '\0' || !(v > (double)k->min) ||
            !(v <= (double)k->max)) {
            snprintf(why, sizeof(why), "expected a number above %llu and at most %llu",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return bad(err, errlen, k->name, why, value);
        }
        *(double *)field(c, k) = v;
        return 0;
    }
    case K_STR:
        break;
    }
    if (set_string((char **)field(c, k), value) < 0) {
        snprintf(err, errlen, "config: out of memory");
        return DEMS_ENOMEM;
    }
    return 0;
}

int dems_config_init(struct dems_config *c)
{
    *c = (struct dems_config){0};
    char err[256];
    for (size_t i = 0; i < NKEYS; i++) {
        int r = set_key(c, &keys[i], keys[i].def, err, sizeof(err));
        if (r < 0) {
            dems_config_done(c);
            return r;
        }
    }
    return 0;
}

void dems_config_done(struct dems_config *c)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].kind != K_U64 && keys[i].kind != K_BOOL && keys[i].kind != K_REAL) {
            char **slot = (char **)field(c, &keys[i]);
            free(*slot);
            *slot = NULL;
        }
    }
}

int dems_config_set(struct dems_config *c, const char *key, const char *value, char *err,
                    size_t errlen)
{
    const struct key *k = find_key(key);
    if (k == NULL) {
        snprintf(err, errlen, "config: unknown key \"%.64s\"", key);
        return DEMS_EINVAL;
    }
    return set_key(c, k, value, err, errlen);
}

/* Handles one line of a config file, modified in place. */
static int load_line(struct dems_config *c, char *line, const char *path, unsigned lineno,
                     char *err, size_t errlen)
{
    char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    if (n == 0 || s[0] == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "config: %s:%u: expected key = value", path, lineno);
        return DEMS_EINVAL;
    }
    char *kend = eq;
    while (kend > s && (kend[-1] == ' ' || kend[-1] == '\t'))
        kend--;
    *kend = '\0';
    char *v = eq + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vlen = strlen(v);
    if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
        v[vlen - 1] = '\0';
        v++;
    }
    char inner[256];
    int r = dems_config_set(c, s, v, inner, sizeof(inner));
    if (r < 0)
        snprintf(err, errlen, "%s:%u: %s", path, lineno, inner);
    return r;
}

int dems_config_load_file(struct dems_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "config: cannot open %s", path);
        return DEMS_EIO;
    }
    char line[4096];
    unsigned lineno = 0;
    size_t total = 0;
    int r = 0;
    while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        total += n;
        if (total > DEMS_MAX_CONFIG_BYTES || (n == sizeof(line) - 1 && line[n - 1] != '\n')) {
            snprintf(err, errlen, "config: %s:%u: line or file too long", path, lineno);
            r = DEMS_ETOOBIG;
            break;
        }
        r = load_line(c, line, path, lineno, err, errlen);
    }
    fclose(f);
    return r;
}

int dems_config_load_env(struct dems_config *c, char *const *envp, char *err, size_t errlen)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char var[64] = "DEMS_";
        size_t o = 5;
        for (const char *p = keys[i].name; *p != '\0' && o + 1 < sizeof(var); p++)
            var[o++] = (char)toupper((unsigned char)*p);
        var[o] = '\0';
        for (char *const *e = envp; e != NULL && *e != NULL; e++) {
            if (strncmp(*e, var, o) == 0 && (*e)[o] == '=') {
                int r = set_key(c, &keys[i], *e + o + 1, err, errlen);
                if (r < 0)
                    return r;
            }
        }
    }
    return 0;
}

int dems_config_check(const struct dems_config *c, char *err, size_t errlen)
{
    if (c->data_dir[0] == '\0') {
        snprintf(err, errlen, "config: data_dir: required (use --data DIR)");
        return DEMS_EINVAL;
    }
    if ((c->tls_cert[0] == '\0') != (c->tls_key[0] == '\0')) {
        snprintf(err, errlen, "config: tls_cert and tls_key must be set together");
        return DEMS_EINVAL;
    }
    if (c->job_backoff_max < c->job_backoff_base) {
        snprintf(err, errlen, "config: job_backoff_max must be at least job_backoff_base");
        return DEMS_EINVAL;
    }
    if (strcmp(c->store, "local") != 0 && strcmp(c->store, "azure") != 0 &&
        strcmp(c->store, "s3") != 0) {
        snprintf(err, errlen, "config: store: must be local, azure or s3 (got \"%.32s\")",
                 c->store);
        return DEMS_EINVAL;
    }
    if (strcmp(c->store_addressing, "path") != 0 && strcmp(c->store_addressing, "virtual") != 0) {
        snprintf(err, errlen, "config: store_addressing: must be path or virtual");
        return DEMS_EINVAL;
    }
    if (strcmp(c->store, "local") != 0 && c->store_endpoint[0] == '\0') {
        snprintf(err, errlen, "config: store_endpoint: required when store = %s", c->store);
        return DEMS_EINVAL;
    }
    char urls[DEMS_CONFIG_TSA_MAX][DEMS_CONFIG_TSA_URL_MAX + 1];
    int n = dems_config_tsa_urls(c, urls, err, errlen);
    if (n < 0)
        return n;
    if (n > 0 && c->tsa_ca_file[0] == '\0') {
        snprintf(err, errlen, "config: tsa_ca_file: required with tsa_urls");
        return DEMS_EINVAL;
    }
    regex_t re;
    int rc = regcomp(&re, c->case_reference_pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror(rc, &re, why, sizeof(why));
        snprintf(err, errlen, "config: case_reference_pattern: %s", why);
        return DEMS_EINVAL;
    }
    regfree(&re);
    return 0;
}

int dems_config_tsa_urls(const struct dems_config *c,
                         char urls[static DEMS_CONFIG_TSA_MAX][DEMS_CONFIG_TSA_URL_MAX + 1],
                         char *err, size_t errlen)
{
    int n = 0;
    const char *p = c->tsa_urls;
    for (;;) {
        p += strspn(p, " ,\t");
        size_t len = strcspn(p, " ,\t");
        if (len == 0)
            return n;
        if (n == DEMS_CONFIG_TSA_MAX) {
            snprintf(err, errlen, "config: tsa_urls: at most %d URLs", DEMS_CONFIG_TSA_MAX);
            return DEMS_EINVAL;
        }
        bool scheme = (len > 7 && strncmp(p, "http://", 7) == 0) ||
                      (len > 8 && strncmp(p, "https://", 8) == 0);
        bool clean = true;
        for (size_t i = 0; i < len; i++)
            clean = clean && (unsigned char)p[i] > 0x20 && p[i] != 0x7f;
        if (!scheme || !clean || len > DEMS_CONFIG_TSA_URL_MAX) {
            snprintf(err, errlen,
                     "config: tsa_urls: \"%.*s\" is not an http:// or https:// URL of at most "
                     "%d bytes",
                     (int)(len < 64 ? len : 64), p, DEMS_CONFIG_TSA_URL_MAX);
            return DEMS_EINVAL;
        }
        memcpy(urls[n], p, len);
        urls[n][len] = '\0';
        n++;
        p += len;
    }
}

int dems_config_split_hostport(const char *s, char *host, size_t hostlen, uint16_t *ret_port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return DEMS_EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return DEMS_EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return DEMS_EINVAL;
    uint64_t port;
    if (dems_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) < 0)
        return DEMS_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *ret_port = (uint16_t)port;
    return 0;
}

void dems_config_describe(void (*fn)(const char *key, const char *def, const char *help, void *arg),
                          void *arg)
{
    for (size_t i = 0; i < NKEYS; i++)
        fn(keys[i].name, keys[i].def, keys[i].help, arg);
}
