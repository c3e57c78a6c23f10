/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The S3 backend: AWS Signature Version 4 over host, range (when sent),
 * x-amz-content-sha256 (the payload's real SHA-256: the store checks the
 * body it got) and x-amz-date; path-style (https://host/bucket/key) or
 * virtual-host-style (https://bucket.host/key) addressing; multipart upload
 * for staged writes (parts of at least 5 MiB but the last, at most 10,000).
 *
 * A staged upload's state is its UploadId alone: commit lists the parts the
 * store holds (their ETags) rather than remembering them, so another process
 * can finish an upload this one began.
 */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"

#include "obj_int.h"

#define S3_PART_MIN (5u << 20)

struct s3_sign {
    char uri[1200];   /* canonical URI, escaped */
    char query[2048]; /* canonical query, sorted and escaped */
    char host[330];
    char payload[65];
    char range[64];         /* "bytes=a-b" or "" */
    char copy_source[1200]; /* x-amz-copy-source (CopyObject) or "" */
};

static void hmac(const void *key, size_t keylen, const void *msg, size_t n, uint8_t out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)keylen, msg, n, out, &len);
}

int obj_s3_authorization(const struct obj_s3_signing *g, char *out, size_t outlen)
{
    char creq_hash[65];
    char date[9];
    memcpy(date, g->amz_date, 8);
    date[8] = '\0';
    size_t cap = strlen(g->method) + strlen(g->canonical_uri) + strlen(g->canonical_query) +
                 strlen(g->canonical_headers) + strlen(g->signed_headers) +
                 strlen(g->payload_hash) + 8;
    char *creq = malloc(cap);
    if (creq == NULL)
        return DEMS_ENOMEM;
    int n = snprintf(creq, cap, "%s\n%s\n%s\n%s\n%s\n%s", g->method, g->canonical_uri,
                     g->canonical_query, g->canonical_headers, g->signed_headers, g->payload_hash);
    obj_sha256_hex(creq, (size_t)n, creq_hash);
    free(creq);
    char scope[160];
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, g->region, g->service);
    char sts[320];
    int sl =
        snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", g->amz_date, scope, creq_hash);
    if (sl < 0 || (size_t)sl >= sizeof(sts))
        return DEMS_ETOOBIG;
    uint8_t k[32];
    uint8_t secret[4 + 128];
    if (g->secretlen > 128)
        return DEMS_EINVAL;
    memcpy(secret, "AWS4", 4);
    memcpy(secret + 4, g->secret, g->secretlen);
    hmac(secret, 4 + g->secretlen, date, 8, k);
    hmac(k, 32, g->region, strlen(g->region), k);
    hmac(k, 32, g->service, strlen(g->service), k);
    hmac(k, 32, "aws4_request", 12, k);
    uint8_t sig[32];
    hmac(k, 32, sts, (size_t)sl, sig);
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), sig, sizeof(sig));
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(k, sizeof(k));
    n = snprintf(out, outlen, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                 g->access_key, scope, g->signed_headers, hex);
    return n < 0 || (size_t)n >= outlen ? DEMS_ETOOBIG : 0;
}

static int s3_sign(struct dems_objstore *s, struct obj_req *r)
{
    struct s3_sign *sg = r->sign_arg;
    char amz_date[17];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
    /* Canonical headers, sorted: host, range, x-amz-content-sha256,
     * x-amz-copy-source, x-amz-date (those present). */
    char canon[2600], names[128];
    bool range = sg->range[0] != '\0', copy = sg->copy_source[0] != '\0';
    int n = snprintf(canon, sizeof(canon),
                     "host:%s\n%s%s%sx-amz-content-sha256:%s\n%s%s%s"
                     "x-amz-date:%s\n",
                     sg->host, range ? "range:" : "", range ? sg->range : "", range ? "\n" : "",
                     sg->payload, copy ? "x-amz-copy-source:" : "", copy ? sg->copy_source : "",
                     copy ? "\n" : "", amz_date);
    if (n < 0 || (size_t)n >= sizeof(canon))
        return DEMS_ETOOBIG;
    snprintf(names, sizeof(names), "host;%sx-amz-content-sha256;%sx-amz-date",
             range ? "range;" : "", copy ? "x-amz-copy-source;" : "");
    const char *signed_headers = names;
    struct obj_s3_signing g = {
        .method = r->method,
        .canonical_uri = sg->uri,
        .canonical_query = sg->query,
        .canonical_headers = canon,
        .signed_headers = signed_headers,
        .payload_hash = sg->payload,
        .amz_date = amz_date,
        .region = s->region,
        .service = "s3",
        .access_key = s->access_key,
        .secret = s->key,
        .secretlen = s->keylen,
    };
    char auth[512];
    int rc = obj_s3_authorization(&g, auth, sizeof(auth));
    if (rc < 0)
        return rc;
    const char *lines[6];
    char l_date[64], l_sha[100], l_range[80], l_auth[540], l_copy[1240];
    size_t k = 0;
    snprintf(l_date, sizeof(l_date), "x-amz-date: %s", amz_date);
    snprintf(l_sha, sizeof(l_sha), "x-amz-content-sha256: %s", sg->payload);
    snprintf(l_auth, sizeof(l_auth), "Authorization: %s", auth);
    lines[k++] = l_date;
    lines[k++] = l_sha;
    if (range) {
        snprintf(l_range, sizeof(l_range), "Range: %s", sg->range);
        lines[k++] = l_range;
    }
    if (copy) {
        snprintf(l_copy, sizeof(l_copy), "x-amz-copy-source: %s", sg->copy_source);
        lines[k++] = l_copy;
    }
    lines[k++] = l_auth;
    for (size_t i = 0; i < k; i++) {
        struct curl_slist *l = curl_slist_append(r->sent, lines[i]);
        if (l == NULL)
            return DEMS_ENOMEM;
        r->sent = l;
    }
    return 0;
}

/*
 * Builds the request's URL and signing context for key (NULL: the bucket
 * itself) and a canonical query (already sorted and escaped, "" for none).
 */
static int s3_target(struct dems_objstore *s, struct obj_req *r, struct s3_sign *sg,
                     const char *key, const char *query)
{
    char ekey[1024] = "";
    sg->range[0] = '\0';
    sg->copy_source[0] = '\0';
    if (key != NULL && obj_escape(key, true, ekey, sizeof(ekey)) < 0)
        return DEMS_ETOOBIG;
    int n;
    if (s->virtual_host) {
        n = snprintf(sg->host, sizeof(sg->host), "%s.%s", s->container, s->host);
        if (n < 0 || (size_t)n >= sizeof(sg->host))
            return DEMS_ETOOBIG;
        n = snprintf(sg->uri, sizeof(sg->uri), "%s/%s", s->path_prefix, ekey);
    } else {
        snprintf(sg->host, sizeof(sg->host), "%s", s->host);
        n = key != NULL
                ? snprintf(sg->uri, sizeof(sg->uri), "%s/%s/%s", s->path_prefix, s->container, ekey)
                : snprintf(sg->uri, sizeof(sg->uri), "%s/%s", s->path_prefix, s->container);
    }
    if (n < 0 || (size_t)n >= sizeof(sg->uri))
        return DEMS_ETOOBIG;
    n = snprintf(sg->query, sizeof(sg->query), "%s", query);
    if (n < 0 || (size_t)n >= sizeof(sg->query))
        return DEMS_ETOOBIG;
    n = snprintf(r->url, sizeof(r->url), "%s://%s%s%s%s", s->scheme, sg->host, sg->uri,
                 query[0] != '\0' ? "?" : "", query);
    if (n < 0 || (size_t)n >= sizeof(r->url))
        return DEMS_ETOOBIG;
    obj_sha256_hex(r->body != NULL ? (const void *)r->body : "", r->body_len, sg->payload);
    r->sign = s3_sign;
    r->sign_arg = sg;
    return 0;
}

int obj_s3_init(struct dems_objstore *s, const struct dems_config *cfg, char *err, size_t errlen)
{
    char secret[sizeof(s->key) + 1];
    int r = obj_read_secret(cfg->store_key, "store_key", secret, sizeof(secret), err, errlen);
    if (r < 0)
        return r;
    if ((r = obj_read_secret(cfg->store_access_key, "store_access_key", s->access_key,
                             sizeof(s->access_key), err, errlen)) < 0)
        goto out;
    if (secret[0] == '\0' || s->access_key[0] == '\0') {
        snprintf(err, errlen,
                 "config: store_access_key and store_key: both required when "
                 "store = s3");
        r = DEMS_EINVAL;
        goto out;
    }
    if (strlen(secret) > sizeof(s->key)) {
        snprintf(err, errlen, "config: store_key: too long");
        r = DEMS_EINVAL;
        goto out;
    }
    s->keylen = strlen(secret);
    memcpy(s->key, secret, s->keylen);
    if (cfg->store_region[0] == '\0' || strlen(cfg->store_region) >= sizeof(s->region) ||
        strcspn(cfg->store_region, "/ \n") != strlen(cfg->store_region)) {
        snprintf(err, errlen, "config: store_region: required, a plain name");
        r = DEMS_EINVAL;
        goto out;
    }
    snprintf(s->region, sizeof(s->region), "%s", cfg->store_region);
    s->virtual_host = strcmp(cfg->store_addressing, "virtual") == 0;
    r = 0;
out:
    sodium_memzero(secret, sizeof(secret));
    return r;
}

static int s3_prepare(struct dems_objstore *s, char *err, size_t errlen)
{
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "prepare", "", "HEAD");
    r.quiet_status[0] = 404;
    int rc = s3_target(s, &r, &sg, NULL, "");
    if (rc == 0)
        rc = obj_http_do(s, &r);
    long st = r.status;
    obj_req_done(&r);
    if (rc == 0 && st == 404) {
        char body[256] = "";
        if (strcmp(s->region, "us-east-1") != 0)
            snprintf(body, sizeof(body),
                     "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                     "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                     s->region);
        obj_req_init(&r, "create_bucket", "", "PUT");
        r.body = (const uint8_t *)body;
        r.body_len = strlen(body);
        r.quiet_status[0] = 409; /* BucketAlreadyOwnedByYou: another node was first */
        rc = s3_target(s, &r, &sg, NULL, "");
        if (rc == 0)
            rc = obj_http_do(s, &r);
        if (rc == 0 && r.status == 409 && strcmp(r.err_code, "BucketAlreadyOwnedByYou") != 0) {
            obj_req_done(&r);
            snprintf(err, errlen,
                     "store: %s: the bucket name is taken by another account (%s); choose "
                     "another store_container",
                     s->where, r.err_code);
            return DEMS_EIO;
        }
        obj_req_done(&r);
    }
    if (rc == DEMS_EAUTH)
        snprintf(err, errlen, "store: %s: the access key or secret was refused (HTTP 403)",
                 s->where);
    else if (rc < 0)
        snprintf(err, errlen, "store: %s: not reachable or refused the bucket (%s)", s->where,
                 dems_strerror(rc));
    return rc;
}

/*
 * x-amz-checksum-sha256: the body's SHA-256 (already computed for the
 * signature), which S3 checks against what it received and which buckets
 * with Object Lock require of every write (or a Content-MD5, which would
 * cost a second pass over the bytes).
 */
static int s3_checksum(struct obj_req *r, const struct s3_sign *sg, char b64[static 48])
{
    uint8_t raw[32];
    if (sodium_hex2bin(raw, sizeof(raw), sg->payload, 64, NULL, NULL, NULL) != 0 ||
        obj_b64_encode(raw, sizeof(raw), b64, 48) < 0)
        return DEMS_EINTERNAL;
    return obj_req_header(r, "x-amz-checksum-sha256: %s", b64);
}

static int s3_put(struct dems_objstore *s, const char *key, const void *data, size_t len)
{
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "put", key, "PUT");
    r.body = data;
    r.body_len = len;
    int rc = s3_target(s, &r, &sg, key, "");
    if (rc == 0)
        rc = obj_req_header(&r, "Content-Type: application/octet-stream");
    char sum[48];
    if (rc == 0)
        rc = s3_checksum(&r, &sg, sum);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    obj_req_done(&r);
    return rc;
}

static int s3_head(struct dems_objstore *s, const char *key, uint64_t *ret_size)
{
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "head", key, "HEAD");
    r.quiet_status[0] = 404;
    int rc = s3_target(s, &r, &sg, key, "");
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && r.status == 404)
        rc = DEMS_ENOTFOUND;
    if (rc == 0)
        *ret_size = r.content_length;
    obj_req_done(&r);
    return rc;
}

static int s3_get(struct dems_objstore *s, const char *key, uint64_t offset, void *buf, size_t len,
                  size_t *ret_n)
{
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "get", key, "GET");
    r.out = buf;
    r.outcap = len;
    r.quiet_status[0] = 416; /* at or past the end */
    if (len - 1 > UINT64_MAX - offset)
        return DEMS_EINVAL;
    int rc = s3_target(s, &r, &sg, key, "");
    snprintf(sg.range, sizeof(sg.range), "bytes=%llu-%llu", (unsigned long long)offset,
             (unsigned long long)(offset + len - 1));
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && r.status == 416) {
        uint64_t size;
        rc = s3_head(s, key, &size); /* a missing object, or an offset past its end */
        if (rc == 0 && offset < size) {
            snprintf(r.err_code, sizeof(r.err_code), "range refused inside the object");
            obj_log_failure(s, &r, rc = DEMS_EIO);
        }
        r.out_len = 0;
    } else if (rc == 0 && r.status == 200 && offset > 0) {
        rc = DEMS_EIO; /* the store ignored the range */
    }
    *ret_n = rc == 0 ? r.out_len : 0;
    obj_req_done(&r);
    return rc;
}

static int s3_del(struct dems_objstore *s, const char *key)
{
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "delete", key, "DELETE");
    r.quiet_status[0] = 404;
    int rc = s3_target(s, &r, &sg, key, "");
    if (rc == 0)
        rc = obj_http_do(s, &r);
    obj_req_done(&r);
    return rc;
}

static uint64_t text_u64(const char *v, size_t n, bool *ok)
{
    uint64_t x = 0;
    *ok = n > 0 && n <= 19;
    for (size_t i = 0; i < n && *ok; i++) {
        *ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    return x;
}

int obj_s3_list_page(const char *b, size_t n, struct obj_entries *l, char *next, size_t nextlen)
{
    const char *end = b + n;
    const char *v;
    size_t vl;
    next[0] = '\0';
    if (obj_xml_find(b, end, "ListBucketResult", &v, &vl) == NULL)
        return DEMS_EIO; /* not a listing (a proxy's page?) */
    end = v + vl;
    b = v;
    for (const char *p = b; (p = obj_xml_find(p, end, "Contents", &v, &vl)) != NULL;) {
        const char *f, *k;
        size_t fl, kl;
        bool ok = true;
        uint64_t size = 0;
        int64_t mtime = -1;
        if (obj_xml_find(v, v + vl, "Key", &k, &kl) == NULL)
            return DEMS_EIO;
        if (obj_xml_find(v, v + vl, "Size", &f, &fl) != NULL)
            size = text_u64(f, fl, &ok);
        if (obj_xml_find(v, v + vl, "LastModified", &f, &fl) != NULL)
            mtime = obj_parse_time(f, fl);
        if (!ok || mtime < 0)
            return DEMS_EIO;
        int rc = obj_entries_add(l, k, kl, size, mtime);
        if (rc < 0)
            return rc;
    }
    bool more = obj_xml_find(b, end, "IsTruncated", &v, &vl) != NULL && vl == 4 &&
                memcmp(v, "true", 4) == 0;
    if (more && (obj_xml_find(b, end, "NextContinuationToken", &v, &vl) == NULL ||
                 obj_xml_text(v, vl, next, nextlen) <= 0))
        return DEMS_EIO; /* truncated, and no way to go on */
    return 0;
}

static int s3_list(struct dems_objstore *s, const char *prefix, struct dems_objstore_entry **ret,
                   size_t *ret_n)
{
    char eprefix[600];
    char token[1024] = "";
    struct obj_entries l = {0};
    if (obj_escape(prefix, false, eprefix, sizeof(eprefix)) < 0)
        return DEMS_ETOOBIG;
    int rc;
    char prev[1024] = "";
    do {
        if (token[0] != '\0' && strcmp(token, prev) == 0) {
            rc = DEMS_EIO; /* the same page again: the store would keep us here */
            break;
        }
        memcpy(prev, token, sizeof(prev));
        char etok[1100] = "";
        char query[2048];
        if (token[0] != '\0' && obj_escape(token, false, etok, sizeof(etok)) < 0) {
            rc = DEMS_ETOOBIG;
            break;
        }
        int qn = token[0] != '\0'
                     ? snprintf(query, sizeof(query), "continuation-token=%s&list-type=2&prefix=%s",
                                etok, eprefix)
                     : snprintf(query, sizeof(query), "list-type=2&prefix=%s", eprefix);
        if (qn < 0 || (size_t)qn >= sizeof(query)) {
            rc = DEMS_ETOOBIG;
            break;
        }
        struct obj_req r;
        struct s3_sign sg;
        obj_req_init(&r, "list", prefix, "GET");
        r.out_grow = true;
        rc = s3_target(s, &r, &sg, NULL, query);
        if (rc == 0)
            rc = obj_http_do(s, &r);
        if (rc == 0) {
            rc = obj_s3_list_page(r.grow != NULL ? (const char *)r.grow : "", r.out_len, &l, token,
                                  sizeof(token));
            if (rc == DEMS_EIO)
                obj_log_failure(s, &r, rc);
        }
        obj_req_done(&r);
    } while (rc == 0 && token[0] != '\0');
    if (rc < 0) {
        obj_entries_free(&l);
        return rc;
    }
    *ret = l.e;
    *ret_n = l.n;
    return 0;
}

static int s3_stage_begin(struct dems_objstore *s, const char *key, struct dems_objstore_stage *st)
{
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "stage_begin", key, "POST");
    r.out_grow = true;
    int rc = s3_target(s, &r, &sg, key, "uploads=");
    if (rc == 0)
        rc = obj_req_header(&r, "Content-Type: application/octet-stream");
    if (rc == 0) /* each part then carries its SHA-256, checked by S3 */
        rc = obj_req_header(&r, "x-amz-checksum-algorithm: SHA256");
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0) {
        const char *b = r.grow != NULL ? (const char *)r.grow : "";
        const char *v;
        size_t vl;
        if (obj_xml_find(b, b + r.out_len, "UploadId", &v, &vl) == NULL ||
            obj_xml_text(v, vl, st->id, sizeof(st->id)) <= 0) {
            snprintf(r.err_code, sizeof(r.err_code), "no UploadId");
            obj_log_failure(s, &r, DEMS_EIO);
            rc = DEMS_EIO;
        }
    }
    obj_req_done(&r);
    return rc;
}

static int upload_query(const struct dems_objstore_stage *st, const char *before, char *q,
                        size_t cap)
{
    char eid[700];
    if (obj_escape(st->id, false, eid, sizeof(eid)) < 0)
        return DEMS_ETOOBIG;
    int n = snprintf(q, cap, "%suploadId=%s", before, eid);
    return n < 0 || (size_t)n >= cap ? DEMS_ETOOBIG : 0;
}

static int s3_stage_put(struct dems_objstore *s, const struct dems_objstore_stage *st,
                        unsigned part, const void *data, size_t len,
                        char tag[static DEMS_OBJSTORE_TAG_MAX])
{
    char before[32], q[800];
    snprintf(before, sizeof(before), "partNumber=%u&", part);
    int rc = upload_query(st, before, q, sizeof(q));
    if (rc < 0)
        return rc;
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "stage_put", st->key, "PUT");
    r.body = data;
    r.body_len = len;
    rc = s3_target(s, &r, &sg, st->key, q);
    char sum[48];
    if (rc == 0)
        rc = s3_checksum(&r, &sg, sum);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0) {
        /* The tag: "PART ETAG SHA256", all named again at the completion. */
        size_t n = strlen(r.etag);
        int k = snprintf(tag, DEMS_OBJSTORE_TAG_MAX, "%u %s %s", part, r.etag, sum);
        if (n == 0 || k < 0 || k >= DEMS_OBJSTORE_TAG_MAX || strcspn(r.etag, "<>& ") != n) {
            tag[0] = '\0';
            snprintf(r.err_code, sizeof(r.err_code), "no usable ETag");
            obj_log_failure(s, &r, rc = DEMS_EIO);
        }
    }
    obj_req_done(&r);
    return rc;
}

/*
 * S3 may answer 200 to a completion or a copy and report a failure in the
 * body, after the fact: true when it did (its Code in r->err_code).
 */
static bool error_in_body(struct obj_req *r)
{
    const char *b = r->grow != NULL ? (const char *)r->grow : "";
    const char *v, *c;
    size_t vl, cl;
    if (obj_xml_find(b, b + r->out_len, "Error", &v, &vl) == NULL)
        return false;
    if (obj_xml_find(v, v + vl, "Code", &c, &cl) != NULL)
        (void)obj_xml_text(c, cl, r->err_code, sizeof(r->err_code));
    return true;
}

/*
 * One CompleteMultipartUpload. S3 may answer 200 and report a failure in the
 * body, after the fact: *again when that failure is one to retry
 * (InternalError, SlowDown, ServiceUnavailable).
 */
static int commit_once(struct dems_objstore *s, const struct dems_objstore_stage *st, const char *q,
                       const char *xml, size_t len, bool *again)
{
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "stage_commit", st->key, "POST");
    r.body = (const uint8_t *)xml;
    r.body_len = len;
    r.out_grow = true;
    r.quiet_status[0] = 404;
    int rc = s3_target(s, &r, &sg, st->key, q);
    if (rc == 0)
        rc = obj_req_header(&r, "Content-Type: application/xml");
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && r.status == 404) {
        /* NoSuchUpload: an earlier attempt whose answer was lost may have completed it. */
        uint64_t size;
        rc = s3_head(s, st->key, &size);
        if (rc == DEMS_ENOTFOUND)
            obj_log_failure(s, &r, rc = DEMS_EIO);
    } else if (rc == 0 && error_in_body(&r)) {
        *again = strcmp(r.err_code, "InternalError") == 0 || strcmp(r.err_code, "SlowDown") == 0 ||
                 strcmp(r.err_code, "ServiceUnavailable") == 0;
        rc = *again ? DEMS_EUNAVAIL : DEMS_EIO;
        obj_log_failure(s, &r, rc);
    }
    obj_req_done(&r);
    return rc;
}

static int s3_stage_commit(struct dems_objstore *s, const struct dems_objstore_stage *st,
                           unsigned nparts, char (*tags)[DEMS_OBJSTORE_TAG_MAX])
{
    size_t cap = (size_t)nparts * (DEMS_OBJSTORE_TAG_MAX + 100) + 64;
    char *xml = malloc(cap);
    int rc = DEMS_ENOMEM;
    if (xml == NULL)
        goto out;
    size_t o = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
    unsigned last = 0;
    for (unsigned i = 0; i < nparts; i++) {
        /* "PART ETAG SHA256"; S3 wants the parts in ascending order. */
        uint64_t part = 0;
        const char *sp = strchr(tags[i], ' ');
        const char *sp2 = sp != NULL ? strchr(sp + 1, ' ') : NULL;
        if (strcspn(tags[i], "<>&") != strlen(tags[i]) || sp2 == NULL || strchr(sp2 + 1, ' ') ||
            dems_parse_u64(tags[i], (size_t)(sp - tags[i]), 10000, &part) < 0 || part <= last)
            goto bad_tag;
        last = (unsigned)part;
        o += (size_t)snprintf(xml + o, cap - o,
                              "<Part><PartNumber>%u</PartNumber><ETag>%.*s</ETag>"
                              "<ChecksumSHA256>%s</ChecksumSHA256></Part>",
                              last, (int)(sp2 - sp - 1), sp + 1, sp2 + 1);
    }
    o += (size_t)snprintf(xml + o, cap - o, "</CompleteMultipartUpload>");
    char q[800];
    rc = upload_query(st, "", q, sizeof(q));
    for (unsigned attempt = 0; rc == 0; attempt++) {
        bool again = false;
        rc = commit_once(s, st, q, xml, o, &again);
        if (!again || attempt >= s->retries)
            break;
        obj_backoff(attempt);
        rc = 0;
    }
out:
    free(xml);
    return rc;
bad_tag:
    free(xml);
    return DEMS_EINVAL;
}

static int s3_stage_abort(struct dems_objstore *s, const struct dems_objstore_stage *st)
{
    if (st->id[0] == '\0')
        return 0;
    char q[800];
    int rc = upload_query(st, "", q, sizeof(q));
    if (rc < 0)
        return rc;
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "stage_abort", st->key, "DELETE");
    r.quiet_status[0] = 404;
    rc = s3_target(s, &r, &sg, st->key, q);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    obj_req_done(&r);
    return rc;
}

/*
 * CopyObject (server-side, up to 5 GiB: objstore.c copies larger objects
 * through this process). S3 may answer 200 and report a failure in the
 * body, as for a completion.
 */
static int s3_copy(struct dems_objstore *s, const char *src, const char *dst)
{
    char esrc[1024];
    if (obj_escape(src, true, esrc, sizeof(esrc)) < 0)
        return DEMS_ETOOBIG;
    struct obj_req r;
    struct s3_sign sg;
    obj_req_init(&r, "copy", dst, "PUT");
    r.out_grow = true;
    int rc = s3_target(s, &r, &sg, dst, "");
    int n = snprintf(sg.copy_source, sizeof(sg.copy_source), "/%s/%s", s->container, esrc);
    if (rc == 0 && (n < 0 || (size_t)n >= sizeof(sg.copy_source)))
        rc = DEMS_ETOOBIG;
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && error_in_body(&r))
        obj_log_failure(s, &r, rc = DEMS_EUNAVAIL);
    obj_req_done(&r);
    return rc;
}

const struct obj_ops obj_s3_ops = {
    .prepare = s3_prepare,
    .put = s3_put,
    .get = s3_get,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .stage_begin = s3_stage_begin,
    .stage_put = s3_stage_put,
    .stage_commit = s3_stage_commit,
    .stage_abort = s3_stage_abort,
    .copy = s3_copy,
    .copy_max = 5ull << 30,
    .part_min = S3_PART_MIN,
};
