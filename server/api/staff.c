/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The staff page: GET /staff/ (index.html) and GET /staff/{file} serve the
 * static files of server/web/, compiled into demsd by server/web/embed.py;
 * GET / and GET /staff redirect to /staff/; GET /disclosure/ is the defence
 * link holder's page (disclosure.html: the link's token stays in the URL
 * fragment, which browsers never send); GET /portal/ and /portal/{file} the
 * public submission portal (portal.html and the few files it loads). Public routes: the files hold
 * no data (everything comes from the API after login). Every answer carries a strict
 * Content-Security-Policy (same origin only, no inline script or style), an ETag (the file's
 * SHA-256) and Cache-Control: no-cache, so browsers revalidate and get 304 until demsd is upgraded.
 * GET /v1/openapi.json serves the API contract (docs/openapi.yaml, converted to JSON at build time
 * by server/api/openapi_embed.py) the same way: public like these files, as it holds no data.
 */
#include <string.h>

#include "dems/str.h"
#include "demsd/http.h"

#include "api_int.h"
#include "web_embedded.h"

#define CSP                                                                                        \
    "default-src 'self'; media-src 'self'; img-src 'self'; style-src 'self'; script-src 'self';"   \
    " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* If-None-Match: "*" or a comma-separated list of (possibly weak) tags. */
static bool etag_listed(struct dems_str inm, const char *etag)
{
    while (inm.len > 0) {
        const char *comma = memchr(inm.ptr, ',', inm.len);
        size_t n = comma != NULL ? (size_t)(comma - inm.ptr) : inm.len;
        struct dems_str t = dems_str_trim((struct dems_str){inm.ptr, n});
        if (t.len >= 2 && t.ptr[0] == 'W' && t.ptr[1] == '/') {
            t.ptr += 2;
            t.len -= 2;
        }
        if (dems_str_eq(t, dems_str_from("*")) || dems_str_eq(t, dems_str_from(etag)))
            return true;
        if (comma == NULL)
            break;
        inm.ptr += n + 1;
        inm.len -= n + 1;
    }
    return false;
}

static void send_file(struct dems_req *req, const struct dems_web_file *f)
{
    dems_resp_header(req, "ETag", f->etag);
    dems_resp_header(req, "Cache-Control", "no-cache");
    dems_resp_header(req, "Content-Security-Policy", CSP);
    dems_resp_header(req, "Referrer-Policy", "no-referrer");
    dems_resp_header(req, "X-Frame-Options", "DENY");
    const struct dems_str *inm = dems_http_head_get(dems_req_head(req), "if-none-match");
    if (inm != NULL && etag_listed(*inm, f->etag)) {
        dems_resp_json(req, 304, NULL);
        return;
    }
    dems_resp_bytes(req, 200, f->content_type, f->data, f->len);
}

static const struct dems_web_file *find(struct dems_str name)
{
    for (unsigned long i = 0; i < dems_nweb_files; i++) {
        if (dems_str_eq(name, dems_str_from(dems_web_files[i].name)))
            return &dems_web_files[i];
    }
    return NULL;
}

void api_staff_index(struct dems_req *req)
{
    const struct dems_web_file *f = find(dems_str_from("index.html"));
    if (f == NULL) {
        dems_resp_error(req, 404, "not_found", "this demsd was built without the staff page");
        return;
    }
    send_file(req, f);
}

void api_disclosure_page(struct dems_req *req)
{
    const struct dems_web_file *f = find(dems_str_from("disclosure.html"));
    if (f == NULL) {
        dems_resp_error(req, 404, "not_found", "this demsd was built without the disclosure page");
        return;
    }
    send_file(req, f);
}

void api_staff_file(struct dems_req *req)
{
    const struct dems_web_file *f = find(dems_req_param(req, 0));
    if (f == NULL) {
        dems_resp_error(req, 404, "not_found", "no such file");
        return;
    }
    send_file(req, f);
}

/* The public portal's page: the same files, but only those the portal needs
 * (a member of the public has no business with the staff application's). */
void api_portal_page(struct dems_req *req)
{
    const struct dems_web_file *f = find(dems_str_from("portal.html"));
    if (f == NULL) {
        dems_resp_error(req, 404, "not_found", "this demsd was built without the portal page");
        return;
    }
    send_file(req, f);
}

void api_portal_file(struct dems_req *req)
{
    static const char *const portal[] = {"portal.js", "portal.css", "upload-kit.js", "licenses.txt",
                                         "favicon.svg"};
    struct dems_str name = dems_req_param(req, 0);
    for (size_t i = 0; i < sizeof(portal) / sizeof(portal[0]); i++) {
        const struct dems_web_file *f =
            dems_str_eq(name, dems_str_from(portal[i])) ? find(name) : NULL;
        if (f != NULL) {
            send_file(req, f);
            return;
        }
    }
    dems_resp_error(req, 404, "not_found", "no such file");
}

extern const struct dems_web_file dems_openapi_file; /* openapi_embedded.c */

void api_openapi(struct dems_req *req)
{
    send_file(req, &dems_openapi_file);
}

void api_staff_redirect(struct dems_req *req)
{
    static const char body[] = "The staff page is at /staff/\n";
    dems_resp_header(req, "Location", "/staff/");
    dems_resp_bytes(req, 302, "text/plain; charset=utf-8", body, sizeof(body) - 1);
}
