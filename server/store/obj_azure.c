/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Azure Blob Storage backend of the object-store client (objstore.h):
 * block blobs in one container, authorised by SharedKey (an HMAC-SHA256 of
 * the request under the account key, re-signed with a fresh x-ms-date before
 * every attempt) or by a shared access signature appended to every URL.
 *
 * Endpoints are host-style (https://ACCOUNT.blob.core.windows.net) or, for
 * an emulator such as Azurite, path-style (http://127.0.0.1:10000/ACCOUNT):
 * the endpoint's path is kept in s->path_prefix and begins every request's
 * path (and so its SharedKey canonicalized resource, which then names the
 * account twice, as the SDKs do).
 *
 * Staged writing is Put Block / Put Block List: a part's block id (its tag)
 * is derived from its number alone, so the stage has no remote state to
 * create, and a part put again simply replaces the uncommitted block of that
 * id.
 *
 * REST reference: learn.microsoft.com/rest/api/storageservices ("Blob
 * service REST API", "Authorize with Shared Key").
 */
#include <ctype.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"

#include "obj_int.h"

#define AZURE_VERSION "2021-10-04"
/* Blobs per List Blobs answer (the service's maximum). */
#define AZURE_LIST_PAGE 1000
/* Committed blocks per blob (the service's maximum). */
#define AZURE_MAX_BLOCKS 50000u
/* Header lines one request may carry into the signature. */
#define AZURE_MAX_HEADERS 16
/* Query parameters of one request. */
#define AZURE_MAX_PARAMS 8
/* The string to sign: a short header block plus the resource (path < 2 KiB). */
#define AZURE_STS_MAX 8192

/*
 * One call's addressing, kept for the sign callback: the URL's path as sent
 * and its query parameters (raw values), from which the canonicalized
 * resource is built before every attempt.
 */
struct azure_call {
    char path[2048];
    const struct obj_azure_param *q;
    size_t nq;
};

/* ---- The string to sign ------------------------------------------------ */

/* A bounded string builder: appends until full, then remembers the overflow. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool over;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->over || n >= b->cap - b->len) {
        b->over = true;
        return;
    }
    if (n > 0) /* s may be NULL then (an absent header) */
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_lower(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        sb_add(b, &c, 1);
    }
}

/*
 * A header value as Azure canonicalizes it: leading and trailing white
 * space dropped, each inner run of white space one space.
 */
static void sb_value(struct sbuf *b, const char *v, size_t n)
{
    struct dems_str t = dems_str_trim((struct dems_str){v, n});
    bool space = false;
    for (size_t i = 0; i < t.len; i++) {
        if (t.ptr[i] == ' ' || t.ptr[i] == '\t') {
            space = true;
            continue;
        }
        if (space)
            sb_add(b, " ", 1);
        space = false;
        sb_add(b, &t.ptr[i], 1);
    }
}

/* A "Name: value" line split in two; false when it has no colon. */
struct hline {
    const char *name;
    size_t nlen;
    const char *val;
    size_t vlen;
};

static bool split_line(const char *line, struct hline *h)
{
    const char *colon = strchr(line, ':');
    if (colon == NULL)
        return false;
    struct dems_str name = dems_str_trim((struct dems_str){line, (size_t)(colon - line)});
    h->name = name.ptr;
    h->nlen = name.len;
    h->val = colon + 1;
    h->vlen = strlen(colon + 1);
    return true;
}

/* The value of the standard header name among g's lines, or "". */
static void sb_std_header(struct sbuf *b, const struct obj_azure_signing *g, const char *name)
{
    for (size_t i = 0; i < g->nheaders; i++) {
        struct hline h;
        if (split_line(g->headers[i], &h) &&
            dems_str_eq_ci((struct dems_str){h.name, h.nlen}, name)) {
            sb_value(b, h.val, h.vlen);
            break;
        }
    }
    sb_add(b, "\n", 1);
}

static int cmp_hline(const void *a, const void *b)
{
    const struct hline *x = a, *y = b;
    size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = strncasecmp(x->name, y->name, n);
    if (c != 0)
        return c;
    return (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

/* CanonicalizedHeaders: every x-ms-* header, lowercased, sorted, "name:value\n". */
static void sb_ms_headers(struct sbuf *b, const struct obj_azure_signing *g)
{
    struct hline h[AZURE_MAX_HEADERS];
    size_t n = 0;
    for (size_t i = 0; i < g->nheaders; i++) {
        struct hline one;
        if (!split_line(g->headers[i], &one) || one.nlen < 5 ||
            strncasecmp(one.name, "x-ms-", 5) != 0)
            continue;
        if (n == AZURE_MAX_HEADERS) {
            b->over = true;
            return;
        }
        h[n++] = one;
    }
    qsort(h, n, sizeof h[0], cmp_hline);
    for (size_t i = 0; i < n; i++) {
        sb_lower(b, h[i].name, h[i].nlen);
        sb_add(b, ":", 1);
        sb_value(b, h[i].val, h[i].vlen);
        sb_add(b, "\n", 1);
    }
}

static int cmp_param(const void *a, const void *b)
{
    const struct obj_azure_param *x = a, *y = b;
    return strcasecmp(x->name, y->name);
}

/*
 * CanonicalizedResource (version 2009-09-19 and later): "/account/path",
 * then each query parameter as "\nname:value", names lowercased and sorted,
 * values decoded.
 */
static void sb_resource(struct sbuf *b, const struct obj_azure_signing *g)
{
    sb_add(b, "/", 1);
    sb_str(b, g->account);
    sb_str(b, g->path);
    struct obj_azure_param q[AZURE_MAX_PARAMS];
    if (g->nquery > AZURE_MAX_PARAMS) {
        b->over = true;
        return;
    }
    if (g->nquery == 0)
        return;
    memcpy(q, g->query, g->nquery * sizeof q[0]);
    qsort(q, g->nquery, sizeof q[0], cmp_param);
    for (size_t i = 0; i < g->nquery; i++) {
        sb_add(b, "\n", 1);
        sb_lower(b, q[i].name, strlen(q[i].name));
        sb_add(b, ":", 1);
        sb_str(b, q[i].value);
    }
}

int obj_azure_string_to_sign(const struct obj_azure_signing *g, char *out, size_t outlen)
{
    if (outlen == 0)
        return DEMS_ETOOBIG;
    struct sbuf b = {.p = out, .cap = outlen};
    out[0] = '\0';
    sb_str(&b, g->method);
    sb_add(&b, "\n", 1);
    sb_std_header(&b, g, "Content-Encoding");
    sb_std_header(&b, g, "Content-Language");
    /* Since version 2015-02-21 a zero length is signed as an empty string. */
    if (g->content_length > 0) {
        char len[24];
        int n = snprintf(len, sizeof len, "%" PRIu64, g->content_length);
        sb_add(&b, len, (size_t)n);
    }
    sb_add(&b, "\n", 1);
    static const char *const rest[] = {"Content-MD5",         "Content-Type", "Date",
                                       "If-Modified-Since",   "If-Match",     "If-None-Match",
                                       "If-Unmodified-Since", "Range"};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        sb_std_header(&b, g, rest[i]);
    sb_ms_headers(&b, g);
    sb_resource(&b, g);
    if (b.over)
        return DEMS_ETOOBIG;
    return (int)b.len;
}

int obj_azure_authorization(const struct obj_azure_signing *g, const uint8_t *key, size_t keylen,
                            char *out, size_t outlen)
{
    char *sts = malloc(AZURE_STS_MAX);
    if (sts == NULL)
        return DEMS_ENOMEM;
    int n = obj_azure_string_to_sign(g, sts, AZURE_STS_MAX);
    if (n < 0) {
        free(sts);
        return n;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    const uint8_t *ok =
        HMAC(EVP_sha256(), key, (int)keylen, (const uint8_t *)sts, (size_t)n, mac, &maclen);
    free(sts);
    if (ok == NULL)
        return DEMS_EINTERNAL;
    char sig[64];
    int slen = obj_b64_encode(mac, maclen, sig, sizeof sig);
    sodium_memzero(mac, sizeof mac);
    if (slen < 0)
        return DEMS_EINTERNAL;
    int w = snprintf(out, outlen, "SharedKey %s:%s", g->account, sig);
    if (w < 0 || (size_t)w >= outlen)
        return DEMS_ETOOBIG;
    return 0;
}

/* ---- Requests ------------------------------------------------------------ */

/* An RFC 1123 date in English whatever the locale (x-ms-date). */
static void http_date(time_t t, char out[static 80])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 80, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * The sign callback (SharedKey): before every attempt, a fresh x-ms-date
 * and the Authorization computed over it and the backend's headers are
 * added to r->sent.
 */
static int sign_shared_key(struct dems_objstore *s, struct obj_req *r)
{
    const struct azure_call *c = r->sign_arg;
    char date[80], dateline[96];
    http_date(time(NULL), date);
    snprintf(dateline, sizeof dateline, "x-ms-date: %s", date);

    const char *lines[AZURE_MAX_HEADERS];
    size_t n = 0;
    for (const struct curl_slist *h = r->headers; h != NULL; h = h->next) {
        if (n == AZURE_MAX_HEADERS - 1)
            return DEMS_EINTERNAL;
        lines[n++] = h->data;
    }
    lines[n++] = dateline;

    const struct obj_azure_signing g = {
        .method = r->method,
        .content_length = r->body_len,
        .headers = lines,
        .nheaders = n,
        .account = s->account,
        .path = c->path,
        .query = c->q,
        .nquery = c->nq,
    };
    char auth[400], authline[420];
    int rc = obj_azure_authorization(&g, s->key, s->keylen, auth, sizeof auth);
    if (rc < 0)
        return rc;
    snprintf(authline, sizeof authline, "Authorization: %s", auth);

    /* r->sent already holds a copy of r->headers (obj_http_do). */
    struct curl_slist *l = curl_slist_append(r->sent, dateline);
    if (l == NULL)
        return DEMS_ENOMEM;
    r->sent = l;
    l = curl_slist_append(r->sent, authline);
    if (l == NULL)
        return DEMS_ENOMEM;
    r->sent = l;
    return 0;
}

/*
 * Addresses r: the container (key NULL) or a blob, with query parameters
 * q (raw values; borrowed until the request is done). Fills r->url and c,
 * adds x-ms-version and installs the signing (SharedKey) or appends the SAS.
 */
static int azure_target(struct dems_objstore *s, struct obj_req *r, struct azure_call *c,
                        const char *key, const struct obj_azure_param *q, size_t nq)
{
    char esc[1024];
    int n = snprintf(c->path, sizeof c->path, "%s/%s", s->path_prefix, s->container);
    if (n < 0 || (size_t)n >= sizeof c->path)
        return DEMS_ETOOBIG;
    if (key != NULL) {
        if (obj_escape(key, true, esc, sizeof esc) < 0)
            return DEMS_ETOOBIG;
        int m = snprintf(c->path + n, sizeof c->path - (size_t)n, "/%s", esc);
        if (m < 0 || (size_t)m >= sizeof c->path - (size_t)n)
            return DEMS_ETOOBIG;
    }
    c->q = q;
    c->nq = nq;

    struct sbuf u = {.p = r->url, .cap = sizeof r->url};
    r->url[0] = '\0';
    sb_str(&u, s->scheme);
    sb_str(&u, "://");
    sb_str(&u, s->host);
    sb_str(&u, c->path);
    for (size_t i = 0; i < nq; i++) {
        if (obj_escape(q[i].value, false, esc, sizeof esc) < 0)
            return DEMS_ETOOBIG;
        sb_str(&u, i == 0 ? "?" : "&");
        sb_str(&u, q[i].name);
        sb_str(&u, "=");
        sb_str(&u, esc);
    }
    if (s->sas[0] != '\0') {
        sb_str(&u, nq == 0 ? "?" : "&");
        sb_str(&u, s->sas);
    }
    if (u.over)
        return DEMS_ETOOBIG;

    if (s->sas[0] == '\0') {
        r->sign = sign_shared_key;
        r->sign_arg = c;
    }
    return obj_req_header(r, "x-ms-version: %s", AZURE_VERSION);
}

/* ---- Operations -------------------------------------------------------- */

/* The one-line explanation of a failed prepare step. */
static void prepare_error(const struct dems_objstore *s, const struct obj_req *r, int rc,
                          const char *what, char *err, size_t errlen)
{
    const char *code = r->err_code[0] != '\0' ? r->err_code : "no error code";
    /* A bad key or SAS signature is AuthenticationFailed (Azurite says
     * AuthorizationFailure); a valid credential without the right is an
     * Authorization*Mismatch. */
    bool refused = r->status == 401 || strstr(r->err_code, "Mismatch") == NULL;
    if (rc == DEMS_EAUTH && refused)
        snprintf(err, errlen, "store: azure: the account key or SAS was refused (%ld %s)",
                 r->status, code);
    else if (rc == DEMS_EAUTH && strcmp(what, "create") == 0)
        snprintf(err, errlen,
                 "store: azure: container %s does not exist and the credentials may not create "
                 "it (%ld %s)",
                 s->container, r->status, code);
    else if (rc == DEMS_EAUTH)
        snprintf(err, errlen, "store: azure: the credentials may not %s container %s (%ld %s)",
                 what, s->container, r->status, code);
    else if (rc == DEMS_EUNAVAIL)
        snprintf(err, errlen, "store: %s did not answer (%s container: %ld %s)", s->where, what,
                 r->status, code);
    else if (rc == DEMS_ENOMEM)
        snprintf(err, errlen, "store: azure: out of memory");
    else
        snprintf(err, errlen, "store: azure: %s container %s failed (%ld %s)", what, s->container,
                 r->status, code);
}

static int create_container(struct dems_objstore *s, char *err, size_t errlen)
{
    static const struct obj_azure_param q[] = {{"restype", "container"}};
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "prepare", "", "PUT");
    /* A container another process created meanwhile is as good. */
    r.quiet_status[0] = 409;
    int rc = azure_target(s, &r, &c, NULL, q, 1);
    if (rc == 0)
        rc = obj_req_header(&r, "Content-Type: application/octet-stream");
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && r.status == 409 && strcmp(r.err_code, "ContainerAlreadyExists") != 0)
        rc = DEMS_EIO;
    if (rc != 0)
        prepare_error(s, &r, rc, "create", err, errlen);
    obj_req_done(&r);
    return rc;
}

/*
 * Lists one blob (a read needing only list rights, which a container SAS may
 * grant) to check the credentials; creates the container when it is missing.
 */
static int azure_prepare(struct dems_objstore *s, char *err, size_t errlen)
{
    static const struct obj_azure_param q[] = {
        {"restype", "container"}, {"comp", "list"}, {"maxresults", "1"}};
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "prepare", "", "GET");
    r.out_grow = true;
    r.quiet_status[0] = 404;
    int rc = azure_target(s, &r, &c, NULL, q, 3);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && r.status == 404) {
        obj_req_done(&r);
        return create_container(s, err, errlen);
    }
    if (rc != 0)
        prepare_error(s, &r, rc, "list", err, errlen);
    obj_req_done(&r);
    return rc;
}

static int azure_put(struct dems_objstore *s, const char *key, const void *data, size_t len)
{
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "put", key, "PUT");
    int rc = azure_target(s, &r, &c, key, NULL, 0);
    if (rc == 0)
        rc = obj_req_header(&r, "x-ms-blob-type: BlockBlob");
    if (rc == 0)
        rc = obj_req_header(&r, "Content-Type: application/octet-stream");
    r.body = data;
    r.body_len = len;
    if (rc == 0)
        rc = obj_http_do(s, &r);
    obj_req_done(&r);
    return rc;
}

static int azure_head(struct dems_objstore *s, const char *key, uint64_t *ret_size)
{
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "head", key, "HEAD");
    r.quiet_status[0] = 404;
    int rc = azure_target(s, &r, &c, key, NULL, 0);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && r.status == 404)
        rc = DEMS_ENOTFOUND;
    if (rc == 0)
        *ret_size = r.content_length;
    obj_req_done(&r);
    return rc;
}

/*
 * A range starting at or past the end is refused with 416 (InvalidRange),
 * also for an empty blob: a HEAD then tells the end of the object (0 bytes
 * read) from a missing one.
 */
static int azure_get(struct dems_objstore *s, const char *key, uint64_t offset, void *buf,
                     size_t len, size_t *ret_n)
{
    if (len == 0) {
        *ret_n = 0;
        return 0;
    }
    if (offset > UINT64_MAX - len)
        return DEMS_EINVAL;
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "get", key, "GET");
    r.out = buf;
    r.outcap = len;
    r.quiet_status[0] = 416;
    int rc = azure_target(s, &r, &c, key, NULL, 0);
    if (rc == 0)
        rc = obj_req_header(&r, "x-ms-range: bytes=%" PRIu64 "-%" PRIu64, offset, offset + len - 1);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    long status = r.status;
    size_t got = r.out_len;
    if (rc == 0 && status == 200 && offset != 0) {
        /* The range was ignored: what came is not what was asked. */
        rc = DEMS_EIO;
        obj_log_failure(s, &r, rc);
    }
    obj_req_done(&r);
    if (rc != 0)
        return rc;
    if (status == 416) {
        uint64_t size;
        rc = azure_head(s, key, &size);
        if (rc != 0)
            return rc;
        if (offset < size)
            return DEMS_EIO; /* refused a range inside the object */
        got = 0;
    }
    *ret_n = got;
    return 0;
}

static int azure_del(struct dems_objstore *s, const char *key)
{
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "delete", key, "DELETE");
    r.quiet_status[0] = 404;
    int rc = azure_target(s, &r, &c, key, NULL, 0);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    obj_req_done(&r);
    return rc;
}

/* ---- Listing ------------------------------------------------------------- */

/* Adds one <Blob> element's name, size and modification time. */
static int add_blob(struct obj_entries *l, const char *p, const char *end)
{
    const char *name, *len, *mod;
    size_t nlen, llen, mlen;
    if (obj_xml_find(p, end, "Name", &name, &nlen) == NULL ||
        obj_xml_find(p, end, "Content-Length", &len, &llen) == NULL ||
        obj_xml_find(p, end, "Last-Modified", &mod, &mlen) == NULL)
        return DEMS_EIO;
    uint64_t size;
    int64_t mtime = obj_parse_time(mod, mlen);
    if (dems_parse_u64(len, llen, UINT64_MAX, &size) != 0 || mtime < 0)
        return DEMS_EIO;
    return obj_entries_add(l, name, nlen, size, mtime);
}

int obj_azure_list_page(const char *p, size_t n, struct obj_entries *l, char *marker,
                        size_t markerlen)
{
    const char *end = p + n, *val, *blobs;
    size_t vlen, blen;
    marker[0] = '\0';
    if (obj_xml_find(p, end, "EnumerationResults", &val, &vlen) == NULL)
        return DEMS_EIO; /* not a listing (a proxy's page?) */
    p = val;
    end = val + vlen;
    if (obj_xml_find(p, end, "Blobs", &blobs, &blen) != NULL) {
        const char *q = blobs, *bend = blobs + blen;
        while ((q = obj_xml_find(q, bend, "Blob", &val, &vlen)) != NULL) {
            int rc = add_blob(l, val, val + vlen);
            if (rc != 0)
                return rc;
        }
        p = bend;
    }
    /* An empty marker may come as <NextMarker /> or <NextMarker></NextMarker>. */
    if (obj_xml_find(p, end, "NextMarker", &val, &vlen) != NULL && vlen > 0 &&
        obj_xml_text(val, vlen, marker, markerlen) < 0)
        return DEMS_EIO;
    return 0;
}

static int list_page(struct dems_objstore *s, const char *prefix, const char *marker,
                     struct obj_entries *l, char *next, size_t nextlen)
{
    char page[16];
    snprintf(page, sizeof page, "%d", AZURE_LIST_PAGE);
    const struct obj_azure_param q[] = {{"restype", "container"},
                                        {"comp", "list"},
                                        {"prefix", prefix},
                                        {"maxresults", page},
                                        {"marker", marker}};
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "list", prefix, "GET");
    r.out_grow = true;
    int rc = azure_target(s, &r, &c, NULL, q, marker[0] != '\0' ? 5 : 4);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0) {
        rc = obj_azure_list_page(r.grow == NULL ? "" : (const char *)r.grow, r.out_len, l, next,
                                 nextlen);
        if (rc == DEMS_EIO)
            obj_log_failure(s, &r, rc);
    }
    obj_req_done(&r);
    return rc;
}

static int azure_list(struct dems_objstore *s, const char *prefix, struct dems_objstore_entry **ret,
                      size_t *ret_n)
{
    struct obj_entries l = {0};
    char marker[1024] = "", next[1024];
    int rc;
    do {
        rc = list_page(s, prefix, marker, &l, next, sizeof next);
        if (rc == 0 && next[0] != '\0' && strcmp(next, marker) == 0)
            rc = DEMS_EIO; /* the same page again: the store would keep us here */
        memcpy(marker, next, sizeof marker);
    } while (rc == 0 && marker[0] != '\0');
    if (rc != 0) {
        obj_entries_free(&l);
        return rc;
    }
    *ret = l.e;
    *ret_n = l.n;
    return 0;
}

/* ---- Staged writing ------------------------------------------------------ */

/*
 * A block id: base64 of the stage's nonce (12 hex digits, random per stage)
 * and the part number, "NNNNNNNNNNNN-%08u": the same length for every block
 * (Azure requires it of one blob's blocks), and different for two stages of
 * the same key at once — two uploads of identical content (the key is the
 * content's hash, the encrypted bytes differ) must not replace each other's
 * uncommitted blocks and commit a mixture.
 */
static int block_id(const struct dems_objstore_stage *st, unsigned part, char out[static 32])
{
    char raw[24];
    int n = snprintf(raw, sizeof raw, "%.12s-%08u", st->id, part);
    if (n != 21 || strlen(st->id) != 12)
        return DEMS_EINVAL;
    return obj_b64_encode((const uint8_t *)raw, (size_t)n, out, 32);
}

static int azure_stage_begin(struct dems_objstore *s, const char *key,
                             struct dems_objstore_stage *st)
{
    (void)s;
    size_t n = strlen(key);
    if (n == 0 || n >= sizeof st->key)
        return DEMS_EINVAL;
    memcpy(st->key, key, n + 1);
    uint8_t nonce[6];
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2hex(st->id, sizeof st->id, nonce, sizeof nonce);
    return 0;
}

static int azure_stage_put(struct dems_objstore *s, const struct dems_objstore_stage *st,
                           unsigned part, const void *data, size_t len,
                           char tag[static DEMS_OBJSTORE_TAG_MAX])
{
    char id[32];
    if (part == 0 || part > AZURE_MAX_BLOCKS || block_id(st, part, id) < 0)
        return DEMS_EINVAL;
    const struct obj_azure_param q[] = {{"comp", "block"}, {"blockid", id}};
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "stage_put", st->key, "PUT");
    int rc = azure_target(s, &r, &c, st->key, q, 2);
    if (rc == 0)
        rc = obj_req_header(&r, "Content-Type: application/octet-stream");
    r.body = data;
    r.body_len = len;
    if (rc == 0)
        rc = obj_http_do(s, &r);
    obj_req_done(&r);
    if (rc == 0)
        memcpy(tag, id, strlen(id) + 1);
    return rc;
}

/* True when tag is a block id this backend could have made (base64 only). */
static bool is_block_id(const char *tag)
{
    size_t n = strnlen(tag, DEMS_OBJSTORE_TAG_MAX);
    return n > 0 && n < DEMS_OBJSTORE_TAG_MAX &&
           strspn(tag, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == n;
}

/* The Put Block List body naming the given blocks in order (the latest of each). */
static char *block_list(unsigned nparts, char (*tags)[DEMS_OBJSTORE_TAG_MAX], size_t *ret_len)
{
    static const char head[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
    static const char tail[] = "</BlockList>";
    size_t cap = sizeof head + sizeof tail + (size_t)nparts * (DEMS_OBJSTORE_TAG_MAX + 20);
    char *body = malloc(cap);
    if (body == NULL)
        return NULL;
    struct sbuf b = {.p = body, .cap = cap};
    sb_str(&b, head);
    for (unsigned i = 0; i < nparts; i++) {
        sb_str(&b, "<Latest>");
        sb_str(&b, tags[i]);
        sb_str(&b, "</Latest>");
    }
    sb_str(&b, tail);
    if (b.over) {
        free(body);
        return NULL;
    }
    *ret_len = b.len;
    return body;
}

static int azure_stage_commit(struct dems_objstore *s, const struct dems_objstore_stage *st,
                              unsigned nparts, char (*tags)[DEMS_OBJSTORE_TAG_MAX])
{
    if (nparts > AZURE_MAX_BLOCKS)
        return DEMS_EINVAL;
    for (unsigned i = 0; i < nparts; i++) {
        if (!is_block_id(tags[i]))
            return DEMS_EINVAL;
    }
    size_t blen;
    char *body = block_list(nparts, tags, &blen);
    if (body == NULL)
        return DEMS_ENOMEM;
    static const struct obj_azure_param q[] = {{"comp", "blocklist"}};
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "stage_commit", st->key, "PUT");
    /* Never over a committed blob: the key names its content, so one that
     * exists (another upload of the same bytes was first) is the same. */
    r.quiet_status[0] = 409;
    int rc = azure_target(s, &r, &c, st->key, q, 1);
    if (rc == 0)
        rc = obj_req_header(&r, "Content-Type: application/xml");
    if (rc == 0)
        rc = obj_req_header(&r, "x-ms-blob-content-type: application/octet-stream");
    if (rc == 0)
        rc = obj_req_header(&r, "If-None-Match: *");
    r.body = (const uint8_t *)body;
    r.body_len = blen;
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0 && r.status == 409 && strcmp(r.err_code, "BlobAlreadyExists") != 0) {
        rc = DEMS_EIO;
        obj_log_failure(s, &r, rc);
    }
    obj_req_done(&r);
    free(body);
    return rc;
}

/*
 * Nothing to do: uncommitted blocks are not part of any blob, are dropped
 * when the blob is next committed, and the service garbage-collects them
 * after seven days. Deleting the blob instead would destroy the object
 * a failed overwrite must leave intact.
 */
static int azure_stage_abort(struct dems_objstore *s, const struct dems_objstore_stage *st)
{
    (void)s;
    (void)st;
    return 0;
}

/* x-ms-copy-status of a copy's destination: "success", "pending", ... */
static int copy_status(struct dems_objstore *s, const char *dst, char out[static 16])
{
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "copy_status", dst, "HEAD");
    int rc = azure_target(s, &r, &c, dst, NULL, 0);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    if (rc == 0)
        snprintf(out, 16, "%s", r.copy_status);
    obj_req_done(&r);
    return rc;
}

/*
 * Copy Blob within the account. The service may finish at once (status
 * success) or in the background (pending): then the destination's status
 * is polled until it settles, for at most the store's request timeout per
 * retry allowed.
 */
static int azure_copy(struct dems_objstore *s, const char *src, const char *dst)
{
    char esrc[1024], url[4096];
    if (obj_escape(src, true, esrc, sizeof esrc) < 0)
        return DEMS_ETOOBIG;
    int n = snprintf(url, sizeof url, "%s://%s%s/%s/%s%s%s", s->scheme, s->host, s->path_prefix,
                     s->container, esrc, s->sas[0] != '\0' ? "?" : "", s->sas);
    if (n < 0 || (size_t)n >= sizeof url)
        return DEMS_ETOOBIG;
    struct obj_req r;
    struct azure_call c;
    obj_req_init(&r, "copy", dst, "PUT");
    int rc = azure_target(s, &r, &c, dst, NULL, 0);
    if (rc == 0)
        rc = obj_req_header(&r, "x-ms-copy-source: %s", url);
    if (rc == 0)
        rc = obj_http_do(s, &r);
    char status[16];
    snprintf(status, sizeof status, "%s", r.copy_status);
    obj_req_done(&r);
    long waited_ms = 0, limit_ms = s->timeout * 1000L * (long)(s->retries + 1);
    while (rc == 0 && strcmp(status, "pending") == 0 && waited_ms < limit_ms) {
        struct timespec ts = {.tv_nsec = 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited_ms += 200;
        rc = copy_status(s, dst, status);
    }
    if (rc == 0 && strcmp(status, "success") != 0) {
        obj_req_init(&r, "copy", dst, "PUT");
        snprintf(r.err_code, sizeof r.err_code, "copy %s", status[0] != '\0' ? status : "unknown");
        obj_log_failure(s, &r, rc = strcmp(status, "pending") == 0 ? DEMS_EUNAVAIL : DEMS_EIO);
        obj_req_done(&r);
    }
    return rc;
}

const struct obj_ops obj_azure_ops = {
    .prepare = azure_prepare,
    .put = azure_put,
    .get = azure_get,
    .head = azure_head,
    .del = azure_del,
    .list = azure_list,
    .stage_begin = azure_stage_begin,
    .stage_put = azure_stage_put,
    .stage_commit = azure_stage_commit,
    .stage_abort = azure_stage_abort,
    .copy = azure_copy,
    .copy_max = UINT64_MAX,
    .part_min = 1,
};

/* ---- Settings ------------------------------------------------------------ */

/*
 * The account when store_account is empty: the endpoint's first path
 * segment (path-style) or the first label of ACCOUNT.blob.core.windows.net.
 */
static void guess_account(struct dems_objstore *s)
{
    const char *p = s->path_prefix[0] == '/' ? s->path_prefix + 1 : NULL;
    size_t n = p != NULL ? strcspn(p, "/") : 0;
    if (p == NULL) {
        const char *dot = strchr(s->host, '.');
        if (dot == NULL || strncmp(dot, ".blob.", 6) != 0)
            return;
        p = s->host;
        n = (size_t)(dot - s->host);
    }
    if (n > 0 && n < sizeof s->account) {
        memcpy(s->account, p, n);
        s->account[n] = '\0';
    }
}

static int init_key(struct dems_objstore *s, const struct dems_config *cfg, char *err,
                    size_t errlen)
{
    char text[256];
    int rc = obj_read_secret(cfg->store_key, "store_key", text, sizeof text, err, errlen);
    if (rc != 0)
        return rc;
    int n = obj_b64_decode(text, s->key, sizeof s->key);
    sodium_memzero(text, sizeof text);
    if (n <= 0) {
        snprintf(err, errlen, "config: store_key: not a base64 account key");
        return DEMS_EINVAL;
    }
    s->keylen = (size_t)n;
    if (s->account[0] == '\0') {
        snprintf(err, errlen,
                 "config: store_account: required with store_key (the account "
                 "could not be read from store_endpoint)");
        return DEMS_EINVAL;
    }
    return 0;
}

static int init_sas(struct dems_objstore *s, const struct dems_config *cfg, char *err,
                    size_t errlen)
{
    char text[sizeof s->sas + 1];
    int rc = obj_read_secret(cfg->store_sas, "store_sas", text, sizeof text, err, errlen);
    if (rc != 0)
        return rc;
    const char *t = text[0] == '?' ? text + 1 : text;
    size_t n = strlen(t);
    if (n == 0 || n >= sizeof s->sas || strchr(t, '#') != NULL || strchr(t, ' ') != NULL) {
        sodium_memzero(text, sizeof text);
        snprintf(err, errlen, "config: store_sas: %s",
                 n == 0 ? "empty" : "not a query string (sv=...&sig=...)");
        return DEMS_EINVAL;
    }
    memcpy(s->sas, t, n + 1);
    sodium_memzero(text, sizeof text);
    return 0;
}

int obj_azure_init(struct dems_objstore *s, const struct dems_config *cfg, char *err, size_t errlen)
{
    const char *key = cfg->store_key != NULL ? cfg->store_key : "";
    const char *sas = cfg->store_sas != NULL ? cfg->store_sas : "";
    if (cfg->store_account != NULL && cfg->store_account[0] != '\0') {
        size_t n = strlen(cfg->store_account);
        if (n >= sizeof s->account) {
            snprintf(err, errlen, "config: store_account: too long");
            return DEMS_EINVAL;
        }
        memcpy(s->account, cfg->store_account, n + 1);
    } else {
        guess_account(s);
    }
    if ((key[0] != '\0') == (sas[0] != '\0')) {
        snprintf(err, errlen,
                 key[0] != '\0' ? "config: store_sas: give store_key or store_sas, not both"
                                : "config: store_key: required when store = azure (or store_sas)");
        return DEMS_EINVAL;
    }
    s->sas[0] = '\0';
    return key[0] != '\0' ? init_key(s, cfg, err, errlen) : init_sas(s, cfg, err, errlen);
}
