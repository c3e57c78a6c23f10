/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the object-store client (include/demsd/objstore.h), shared by
 * the dispatcher (objstore.c), the HTTP layer (obj_http.c) and the two
 * backends (obj_azure.c, obj_s3.c). Nothing outside server/store includes it.
 */
#ifndef DEMSD_OBJ_INT_H
#define DEMSD_OBJ_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "demsd/objstore.h"

struct curl_slist;

/* Backend operations; each returns 0 or a DEMS_E* code (see objstore.h). */
struct obj_ops {
    int (*prepare)(struct dems_objstore *s, char *err, size_t errlen);
    int (*put)(struct dems_objstore *s, const char *key, const void *data, size_t len);
    int (*get)(struct dems_objstore *s, const char *key, uint64_t offset, void *buf, size_t len,
               size_t *ret_n);
    int (*head)(struct dems_objstore *s, const char *key, uint64_t *ret_size);
    int (*del)(struct dems_objstore *s, const char *key);
    int (*list)(struct dems_objstore *s, const char *prefix, struct dems_objstore_entry **ret,
                size_t *ret_n);
    int (*stage_begin)(struct dems_objstore *s, const char *key, struct dems_objstore_stage *st);
    int (*stage_put)(struct dems_objstore *s, const struct dems_objstore_stage *st, unsigned part,
                     const void *data, size_t len, char tag[static DEMS_OBJSTORE_TAG_MAX]);
    int (*stage_commit)(struct dems_objstore *s, const struct dems_objstore_stage *st,
                        unsigned nparts, char (*tags)[DEMS_OBJSTORE_TAG_MAX]);
    int (*stage_abort)(struct dems_objstore *s, const struct dems_objstore_stage *st);
    /* A server-side copy of src to dst, for objects up to copy_max bytes. */
    int (*copy)(struct dems_objstore *s, const char *src, const char *dst);
    uint64_t copy_max;
    size_t part_min;
};

#define OBJ_POOL 8

struct dems_objstore {
    enum dems_objstore_kind kind;
    const struct obj_ops *ops;
    /* Parsed endpoint: scheme://host[:port] with no trailing slash. */
    char scheme[8];
    char host[256];        /* host[:port] as sent in Host */
    char path_prefix[160]; /* the endpoint's path without a trailing '/' ("" or "/account") */
    char container[64];
    char account[128];
    uint8_t key[128]; /* Azure: the decoded account key; S3: the secret key */
    size_t keylen;
    char access_key[128]; /* S3 */
    char sas[1024];       /* Azure SAS query string without '?' ("" = SharedKey) */
    char region[64];      /* S3 */
    bool virtual_host;    /* S3: bucket.host rather than host/bucket */
    char ca_file[512];    /* "" = the system's trust store */
    unsigned retries;
    long timeout; /* seconds for one request */
    size_t block_size;
    char where[640];

    pthread_mutex_t lock; /* the idle curl handles */
    void *idle[OBJ_POOL];
    unsigned nidle;
};

/*
 * One HTTP request. The backend fills method, url, headers (owned list; the
 * HTTP layer adds nothing but what the backend signs), a body (from memory)
 * and, for reading, a buffer; sign() is called before every attempt (a
 * retry gets a fresh date and signature).
 */
struct obj_req {
    const char *op;  /* "put", "get", ... for the failure log line */
    const char *key; /* for the failure log line */
    const char *method;
    char url[4096];
    struct curl_slist *headers;
    const uint8_t *body;
    size_t body_len;
    /* The response body: into out (outcap bytes; more is an error unless
     * out_grow) or, with out_grow, a growing heap buffer in *grow. */
    uint8_t *out;
    size_t outcap;
    bool out_grow;
    uint8_t *grow;
    size_t out_len;
    /* Called before each attempt to (re)build signed headers. */
    int (*sign)(struct dems_objstore *s, struct obj_req *r);
    void *sign_arg;
    /* Statuses that are answers, not failures (e.g. 404 on HEAD): not logged. */
    int quiet_status[4];
    /* Filled in by obj_http_do. */
    long status;
    char err_code[64];          /* the store's error code from the body or x-ms-error-code */
    uint64_t content_length;    /* from the response, when given */
    uint64_t content_range_len; /* total from Content-Range: bytes a-b/TOTAL */
    char etag[128];
    char copy_status[16]; /* Azure: x-ms-copy-status */
    char request_id[128];
    struct curl_slist *sent; /* the signed headers of the last attempt (owned) */
};

void obj_req_init(struct obj_req *r, const char *op, const char *key, const char *method);
/* Adds "Name: value" to r->headers; DEMS_ENOMEM on failure. */
int obj_req_header(struct obj_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void obj_req_done(struct obj_req *r);

/*
 * Runs r with retries. Returns 0 for a 2xx answer (r->status set), or maps
 * the final answer: 404 → DEMS_ENOTFOUND, 401/403 → DEMS_EAUTH, transient
 * after the last retry → DEMS_EUNAVAIL, anything else → DEMS_EIO. A status
 * in r->quiet_status is returned as 0 with r->status set for the caller to
 * judge, and not logged.
 */
int obj_http_do(struct dems_objstore *s, struct obj_req *r);

/* Sleeps before retry number attempt + 1 (the backoff obj_http_do uses). */
void obj_backoff(unsigned attempt);

/* Logs one objstore_failed line for r (status, store error code, request id). */
void obj_log_failure(struct dems_objstore *s, const struct obj_req *r, int err);

/*
 * Percent-encodes src into dst (RFC 3986 unreserved kept; '/' kept when
 * keep_slash). Returns the length, or DEMS_ETOOBIG.
 */
int obj_escape(const char *src, bool keep_slash, char *dst, size_t dstlen);

/*
 * A minimal scanner for the stores' XML answers (flat, known shapes): finds
 * the next <tag>...</tag> in [p, end) and sets *val and *vlen to its raw text;
 * returns a pointer past the closing tag or NULL. obj_xml_text copies the
 * text with the five predefined entities decoded (DEMS_ETOOBIG if it does
 * not fit).
 */
const char *obj_xml_find(const char *p, const char *end, const char *tag, const char **val,
                         size_t *vlen);
int obj_xml_text(const char *val, size_t vlen, char *dst, size_t dstlen);

/* Parses an RFC 1123 date or an ISO 8601 UTC time into Unix seconds; -1 if neither. */
int64_t obj_parse_time(const char *s, size_t n);

/* A growing list of listed objects (both backends' listings). */
struct obj_entries {
    struct dems_objstore_entry *e;
    size_t n, cap;
};

/*
 * Adds an entry whose key is the XML text (entities decoded) of [key,
 * key + keylen): 0, DEMS_EIO (bad text) or DEMS_ENOMEM.
 */
int obj_entries_add(struct obj_entries *l, const char *key, size_t keylen, uint64_t size,
                    int64_t mtime);
void obj_entries_free(struct obj_entries *l);

/*
 * One page of a listing, as the store answered it (untrusted bytes, n of
 * them, not NUL-terminated): the objects go into l and the continuation
 * (Azure's NextMarker, S3's NextContinuationToken) into next, "" on the
 * last page. 0, DEMS_EIO (malformed) or DEMS_ENOMEM; l keeps what was
 * added either way.
 */
int obj_azure_list_page(const char *p, size_t n, struct obj_entries *l, char *next, size_t nextlen);
int obj_s3_list_page(const char *p, size_t n, struct obj_entries *l, char *next, size_t nextlen);

/* Base64 helpers (standard alphabet, padded). Return length or DEMS_ETOOBIG/DEMS_EINVAL. */
int obj_b64_encode(const uint8_t *src, size_t n, char *dst, size_t dstlen);
int obj_b64_decode(const char *src, uint8_t *dst, size_t dstlen);

/* Lowercase hex SHA-256 of n bytes. */
void obj_sha256_hex(const void *p, size_t n, char out[static 65]);

/*
 * A secret setting's value: the text itself or, written "@FILE", the first
 * line of FILE with surrounding white space removed. err names key.
 */
int obj_read_secret(const char *value, const char *key, char *out, size_t cap, char *err,
                    size_t errlen);

/* The backends' tables and settings checks (called by dems_objstore_new). */
extern const struct obj_ops obj_azure_ops;
extern const struct obj_ops obj_s3_ops;
int obj_azure_init(struct dems_objstore *s, const struct dems_config *cfg, char *err,
                   size_t errlen);
int obj_s3_init(struct dems_objstore *s, const struct dems_config *cfg, char *err, size_t errlen);

/*
 * S3 Signature Version 4 (exposed for its unit test with AWS's published
 * example): the Authorization header value for a request whose canonical
 * headers are given already lowercased, trimmed and sorted.
 */
struct obj_s3_signing {
    const char *method;
    const char *canonical_uri;     /* already escaped */
    const char *canonical_query;   /* already sorted and escaped */
    const char *canonical_headers; /* "name:value\n" lines */
    const char *signed_headers;    /* "name;name" */
    const char *payload_hash;      /* hex SHA-256 or UNSIGNED-PAYLOAD */
    const char *amz_date;          /* YYYYMMDDTHHMMSSZ */
    const char *region;
    const char *service; /* "s3" */
    const char *access_key;
    const uint8_t *secret;
    size_t secretlen;
};
int obj_s3_authorization(const struct obj_s3_signing *g, char *out, size_t outlen);

/*
 * Azure SharedKey (exposed for its unit test): the string to sign and the
 * Authorization header value ("SharedKey account:signature") of a request.
 * The Date header is not used (x-ms-date is among the headers).
 */
struct obj_azure_param {
    const char *name;
    const char *value; /* raw, not percent-encoded */
};
struct obj_azure_signing {
    const char *method;
    uint64_t content_length;    /* of the body; 0 is signed as empty */
    const char *const *headers; /* "Name: value" lines as sent, any order */
    size_t nheaders;
    const char *account;
    const char *path;                    /* the URL's path as sent (escaped) */
    const struct obj_azure_param *query; /* any order, each name once */
    size_t nquery;
};
/* Returns the length written (NUL-terminated) or DEMS_ETOOBIG. */
int obj_azure_string_to_sign(const struct obj_azure_signing *g, char *out, size_t outlen);
/* Returns 0, DEMS_ETOOBIG or DEMS_EINTERNAL (HMAC failed). */
int obj_azure_authorization(const struct obj_azure_signing *g, const uint8_t *key, size_t keylen,
                            char *out, size_t outlen);

#endif
