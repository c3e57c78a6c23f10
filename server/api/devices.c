/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Docks and other devices (admin): enrol with a CSR, which the internal
 * device CA signs, or with a certificate to pin; list; rename; re-enrol with
 * a new certificate; revoke; the CA's certificate. Every change is ledgered
 * (DEVICE_ENROLLED, DEVICE_UPDATED, DEVICE_REVOKED) in the same transaction
 * as the change itself. A device then authenticates by its TLS
 * client certificate (server/auth/auth.c).
 */
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dems/err.h"
#include "demsd/auth.h"
#include "demsd/core.h"
#include "demsd/db.h"
#include "demsd/ledger.h"

#include "api_int.h"

#define PEM_MAX (32 * 1024)

static bool serial_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static char *ca_pem(const struct dems_server *srv)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b != NULL && PEM_write_bio_X509(b, srv->device_ca) == 1) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        /* The BIO's memory is not NUL-terminated: copy exactly n bytes. */
        out = n > 0 ? malloc((size_t)n + 1) : NULL;
        if (out != NULL) {
            memcpy(out, p, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

struct enrol {
    struct dems_req *req;
    json_t *answer;
};

static void on_enrolled(struct dems_ledger_item *item, void *arg)
{
    struct enrol *e = arg;
    if (!dems_req_is_aborted(e->req)) {
        if (item->err == DEMS_ECONFLICT) {
            dems_resp_error(e->req, 409, "device_exists",
                            "a device with that serial or certificate is already enrolled");
        } else if (item->err < 0) {
            dems_resp_err(e->req, item->err);
        } else {
            dems_resp_json(e->req, 201, json_incref(e->answer));
        }
    }
    json_decref(e->answer);
    dems_req_unref(e->req);
    free(e);
}

void api_devices_enrol(struct dems_req *req)
{
    const char *name, *serial, *csr, *cert;
    if (!api_get_str(req, "name", 100, true, &name) ||
        !api_get_str(req, "serial", 64, true, &serial) ||
        !api_get_str(req, "csr", PEM_MAX, false, &csr) ||
        !api_get_str(req, "certificate", PEM_MAX, false, &cert))
        return;
    if (!serial_ok(serial)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"serial\" must be 1-64 of A-Z a-z 0-9 . _ -");
        return;
    }
    if ((csr == NULL) == (cert == NULL)) {
        dems_resp_error(req, 400, "invalid_field",
                        "give exactly one of \"csr\" (to be signed) or \"certificate\" (to pin)");
        return;
    }
    struct dems_loop *loop = dems_req_loop(req);
    char sha[65], *pem = NULL;
    int r = csr != NULL ? dems_tls_issue_device_cert(loop->srv, csr, serial, &pem, sha)
                        : dems_tls_cert_sha256(cert, sha);
    if (r < 0) {
        dems_resp_error(req, 400, "invalid_field",
                        csr != NULL ? "field \"csr\" is not a valid, self-signed PEM CSR"
                                    : "field \"certificate\" is not a PEM certificate");
        return;
    }
    /* A pinned certificate must be usable now: the handshake would refuse it. */
    const char *problem = cert != NULL ? dems_tls_cert_problem(cert, time(NULL)) : NULL;
    if (problem != NULL) {
        dems_resp_error(req, 400, problem, dems_tls_cert_problem_text(problem));
        return;
    }
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_DEVICE_ENROLLED, DEMS_LEDGER_ACTOR_USER, who->username);
    struct enrol *e = calloc(1, sizeof(*e));
    char *ca = ca_pem(loop->srv);
    char uid[24];
    snprintf(uid, sizeof(uid), "%lld", (long long)who->user_id);
    const char *certificate = pem != NULL ? pem : cert;
    if (it == NULL || e == NULL || ca == NULL) {
        free(pem);
        free(ca);
        free(e);
        dems_ledger_item_free(it);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    e->req = req;
    e->answer =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:b}", "name", name, "serial", serial, "cert_sha256", sha,
                  "certificate", certificate, "ca_certificate", ca, "issued", csr != NULL);
    it->payload = json_pack("{s:s,s:s,s:s}", "serial", serial, "cert_sha256", sha, "mode",
                            csr != NULL ? "issued" : "pinned");
    it->pre_sql = strdup("INSERT INTO devices (name, serial, cert_sha256, certificate, issued,"
                         " enrolled_by) VALUES ($1, $2, $3, $4, $5::boolean, $6)");
    const char *vals[] = {name, serial, sha, certificate, csr != NULL ? "t" : "f", uid};
    it->pre_nparams = 6;
    for (int i = 0; i < 6; i++)
        it->pre_params[i] = strdup(vals[i]);
    it->done = on_enrolled;
    it->arg = e;
    free(pem);
    free(ca);
    dems_req_ref(req);
    if (dems_ledger_append(loop->srv, loop, it) < 0) {
        json_decref(e->answer);
        free(e);
        dems_req_unref(req);
        dems_resp_err(req, DEMS_EUNAVAIL);
    }
}

static json_t *device_json(struct dems_req *req, const PGresult *res, int row)
{
    (void)req;
    json_t *d = json_pack(
        "{s:I,s:s,s:s,s:s,s:b,s:s,s:o}", "id", (json_int_t)api_col_int(res, row, "id"), "name",
        api_col(res, row, "name"), "serial", api_col(res, row, "serial"), "cert_sha256",
        api_col(res, row, "cert_sha256"), "issued", api_col_bool(res, row, "issued"), "created_at",
        api_col(res, row, "created_at"), "assigned_to", api_col_json_str(res, row, "assigned_to"));
    if (d != NULL && !api_col_null(res, row, "revoked_at"))
        json_object_set_new(d, "revoked_at", json_string(api_col(res, row, "revoked_at")));
    return d;
}

static void on_devices(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    api_page_answer(req, res, "devices", "id", device_json);
}

/* GET /v1/admin/devices: every device in id order, a page at a time. */
void api_devices_list(struct dems_req *req)
{
    struct api_page page;
    char a[24], limit[24];
    if (!api_page_by_id(req, &page, a, limit))
        return;
    const char *params[] = {a, limit};
    int r = dems_db_req(
        req,
        "SELECT d.id, d.name, d.serial, d.cert_sha256, d.issued,"
        " " API_TS("d.created_at") " AS created_at,"
                                   " " API_TS(
                                       "d.revoked_at") " AS revoked_at, u.username AS assigned_to"
                                                       " FROM devices d LEFT JOIN users u ON u.id "
                                                       "= d.assigned_user"
                                                       " WHERE d.id > $1::bigint ORDER BY d.id "
                                                       "LIMIT $2::integer",
        2, params, on_devices);
    if (r < 0)
        dems_resp_err(req, r);
}

struct revoke {
    struct dems_req *req;
    char sha256[65];
    char serial[65];
};

static void on_revoked(struct dems_ledger_item *item, void *arg)
{
    struct revoke *rk = arg;
    /* Committed: this process refuses the device's handshakes from now on
     * (others within housekeeping_interval, or at its next request). */
    if (item->err == 0)
        dems_revoked_add(dems_req_loop(rk->req)->srv->revoked, rk->sha256, rk->serial);
    if (!dems_req_is_aborted(rk->req)) {
        if (item->err < 0)
            dems_resp_err(rk->req, item->err);
        else
            dems_resp_json(rk->req, 204, NULL);
    }
    dems_req_unref(rk->req);
    free(rk);
}

static void on_device_row(struct dems_req *req, const PGresult *res, int err)
{
    if (err < 0) {
        api_db_error(req, res, err);
        return;
    }
    if (PQntuples(res) != 1) {
        dems_resp_error(req, 404, "not_found", "no such device");
        return;
    }
    if (PQgetvalue(res, 0, PQfnumber(res, "revoked"))[0] == 't') {
        dems_resp_error(req, 409, "device_revoked", "the device is already revoked");
        return;
    }
    struct dems_loop *loop = dems_req_loop(req);
    const struct dems_principal *who = dems_req_principal(req);
    struct dems_ledger_item *it =
        dems_ledger_item_new(DEMS_LEDGER_DEVICE_REVOKED, DEMS_LEDGER_ACTOR_USER, who->username);
    struct revoke *rk = calloc(1, sizeof(*rk));
    if (it == NULL || rk == NULL) {
        dems_ledger_item_free(it);
        free(rk);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    const char *serial = PQgetvalue(res, 0, PQfnumber(res, "serial"));
    rk->req = req;
    snprintf(rk->serial, sizeof(rk->serial), "%s", serial);
    snprintf(rk->sha256, sizeof(rk->sha256), "%s",
             PQgetvalue(res, 0, PQfnumber(res, "cert_sha256")));
    it->payload = json_pack("{s:s}", "serial", serial);
    it->pre_sql = strdup("UPDATE devices SET revoked_at = now() WHERE id = $1");
    it->pre_nparams = 1;
    it->pre_params[0] = strdup(PQgetvalue(res, 0, PQfnumber(res, "id")));
    it->done = on_revoked;
    it->arg = rk;
    dems_req_ref(req);
    if (dems_ledger_append(loop->srv, loop, it) < 0) {
        free(rk);
        dems_req_unref(req);
        dems_resp_err(req, DEMS_EUNAVAIL);
    }
}

void api_devices_revoke(struct dems_req *req)
{
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "not_found", "no such device");
        return;
    }
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    const char *params[] = {ids};
    int r = dems_db_req(req,
                        "SELECT id, serial, cert_sha256, revoked_at IS NOT NULL AS revoked"
                        " FROM devices WHERE id = $1",
                        1, params, on_device_row);
    if (r < 0)
        dems_resp_err(req, r);
}

/* ---- the device CA, renaming, re-enrolment ---- */

/* GET /v1/admin/devices/ca: the internal device CA's certificate (PEM). */
void api_devices_ca(struct dems_req *req)
{
    char *ca = ca_pem(dems_req_loop(req)->srv);
    if (ca == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_header(req, "Content-Disposition", "attachment; filename=\"dems-device-ca.pem\"");
    dems_resp_bytes(req, 200, "application/x-pem-file", ca, strlen(ca));
    free(ca);
}

struct device_change {
    char id[24];
    char name[101];
    char *certificate; /* re-enrolment: the new certificate (PEM) */
    char sha[65];
    bool issued;
};

static void change_free(void *p)
{
    struct device_change *d = p;
    free(d->certificate);
    free(d);
}

static struct device_change *device_change_new(struct dems_req *req)
{
    struct dems_str p = dems_req_param(req, 0);
    int64_t id = api_id(p.ptr, p.len);
    if (id <= 0) {
        dems_resp_error(req, 404, "not_found", "no such device");
        return NULL;
    }
    struct device_change *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return NULL;
    }
    dems_req_set_data(req, d, change_free);
    snprintf(d->id, sizeof(d->id), "%lld", (long long)id);
    return d;
}

static void on_device_answer(struct dems_req *req, const PGresult *res, int err)
{
    if (!api_found(req, res, err, "not_found", "no such device"))
        return;
    json_t *o = device_json(req, res, 0);
    if (o != NULL) {
        json_object_set_new(o, "seq", json_integer(api_col_int(res, 0, "seq")));
        json_object_set_new(o, "certificate", json_string(api_col(res, 0, "certificate")));
    }
    dems_resp_json(req, 200, o);
}

static void on_device_changed(struct dems_ledger_item *item, void *arg)
{
    struct dems_req *req = arg;
    struct device_change *d = dems_req_data(req);
    if (!dems_req_is_aborted(req)) {
        if (item->err == DEMS_ECONFLICT) {
            dems_resp_error(req, 409, "device_exists",
                            "another device is enrolled with that certificate");
        } else if (item->err == DEMS_ENOTFOUND) {
            dems_resp_error(req, 409, "device_revoked", "the device is revoked");
        } else if (item->err < 0) {
            api_case_changed(req, item, "the device");
        } else {
            char seq[24];
            snprintf(seq, sizeof(seq), "%llu", (unsigned long long)item->seq);
            const char *params[] = {d->id, seq};
            int r = dems_db_req(
                req,
                "SELECT d.id, d.name, d.serial, d.cert_sha256, d.issued,"
                " " API_TS("d.created_at") " AS created_at, " API_TS(
                    "d.revoked_at") " AS"
                                    " revoked_at, u.username AS assigned_to, $2::bigint AS seq, "
                                    "d.certificate"
                                    " FROM devices d LEFT JOIN users u ON u.id = d.assigned_user"
                                    " WHERE d.id = $1::bigint",
                2, params, on_device_answer);
            if (r < 0)
                dems_resp_err(req, r);
        }
    }
    dems_req_unref(req);
}

static void on_rename_row(struct dems_req *req, const PGresult *res, int err)
{
    struct device_change *d = dems_req_data(req);
    if (!api_found(req, res, err, "not_found", "no such device"))
        return;
    json_t *payload = json_pack("{s:s}", "serial", api_col(res, 0, "serial"));
    if (payload != NULL) {
        json_t *ch = json_object();
        json_object_set_new(payload, "changes", ch);
        json_t *nm = json_object();
        json_object_set_new(ch, "name", nm);
        dems_ledger_payload_set_text(nm, "from", api_col(res, 0, "name"),
                                     strlen(api_col(res, 0, "name")), 100);
        dems_ledger_payload_set_text(nm, "to", d->name, strlen(d->name), 100);
    }
    const char *params[] = {d->id, d->name};
    struct dems_ledger_item *it = api_change_new(
        req, DEMS_LEDGER_DEVICE_UPDATED, NULL, payload,
        "UPDATE devices SET name = $2 WHERE id = $1::bigint AND name <> $2", 2, params);
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_device_changed);
}

/* PATCH /v1/admin/devices/{id}: {"name"} (DEVICE_UPDATED). */
void api_devices_update(struct dems_req *req)
{
    struct device_change *d = device_change_new(req);
    const char *name;
    if (d == NULL || !api_get_str(req, "name", 100, true, &name))
        return;
    if (!api_label_ok(name)) {
        dems_resp_error(req, 400, "invalid_field",
                        "field \"name\" must be 1-100 printable characters");
        return;
    }
    snprintf(d->name, sizeof(d->name), "%s", name);
    const char *params[] = {d->id};
    int r = dems_db_req(req, "SELECT serial, name FROM devices WHERE id = $1::bigint", 1, params,
                        on_rename_row);
    if (r < 0)
        dems_resp_err(req, r);
}

static void on_reenrol_row(struct dems_req *req, const PGresult *res, int err)
{
    struct device_change *d = dems_req_data(req);
    if (!api_found(req, res, err, "not_found", "no such device"))
        return;
    if (api_col_bool(res, 0, "revoked")) {
        dems_resp_error(req, 409, "device_revoked",
                        "the device is revoked: enrol it anew under another serial");
        return;
    }
    const char *serial = api_col(res, 0, "serial");
    if (d->issued) {
        /* The CA signs the CSR for this device's serial. */
        char *pem = NULL;
        if (dems_tls_issue_device_cert(dems_req_loop(req)->srv, d->certificate, serial, &pem,
                                       d->sha) < 0) {
            dems_resp_error(req, 400, "invalid_field",
                            "field \"csr\" is not a valid, self-signed PEM CSR");
            return;
        }
        free(d->certificate);
        d->certificate = pem;
    }
    json_t *payload = json_pack("{s:s,s:s,s:s,s:s,s:b}", "serial", serial, "cert_sha256", d->sha,
                                "mode", d->issued ? "issued" : "pinned", "previous_cert_sha256",
                                api_col(res, 0, "cert_sha256"), "reenrolled", 1);
    const char *params[] = {d->id, d->sha, d->certificate, d->issued ? "true" : "false"};
    struct dems_ledger_item *it =
        api_change_new(req, DEMS_LEDGER_DEVICE_ENROLLED, NULL, payload,
                       "UPDATE devices SET cert_sha256 = $2, certificate = $3, issued = $4::boolean"
                       " WHERE id = $1::bigint AND revoked_at IS NULL",
                       4, params);
    if (it == NULL)
        return;
    it->pre_must_change = true;
    api_ledger_submit(req, it, on_device_changed);
}

/*
 * POST /v1/admin/devices/{id}/reenrol: {"csr"} (the CA signs it) or
 * {"certificate"} (pinned): the device keeps its id, serial, name and
 * assignment; the old certificate no longer authenticates (DEVICE_ENROLLED
 * naming the one it replaces).
 */
void api_devices_reenrol(struct dems_req *req)
{
    struct device_change *d = device_change_new(req);
    const char *csr, *cert;
    if (d == NULL || !api_get_str(req, "csr", PEM_MAX, false, &csr) ||
        !api_get_str(req, "certificate", PEM_MAX, false, &cert))
        return;
    if ((csr == NULL) == (cert == NULL)) {
        dems_resp_error(req, 400, "invalid_field",
                        "give exactly one of \"csr\" (to be signed) or \"certificate\" (to pin)");
        return;
    }
    if (cert != NULL) {
        if (dems_tls_cert_sha256(cert, d->sha) < 0) {
            dems_resp_error(req, 400, "invalid_field",
                            "field \"certificate\" is not a PEM certificate");
            return;
        }
        const char *problem = dems_tls_cert_problem(cert, time(NULL));
        if (problem != NULL) {
            dems_resp_error(req, 400, problem, dems_tls_cert_problem_text(problem));
            return;
        }
    }
    d->issued = csr != NULL;
    d->certificate = strdup(csr != NULL ? csr : cert);
    if (d->certificate == NULL) {
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    const char *params[] = {d->id};
    int r = dems_db_req(req,
                        "SELECT serial, cert_sha256, revoked_at IS NOT NULL AS revoked"
                        " FROM devices WHERE id = $1::bigint",
                        1, params, on_reenrol_row);
    if (r < 0)
        dems_resp_err(req, r);
}
