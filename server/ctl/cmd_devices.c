/* SPDX-License-Identifier: Apache-2.0 */
/* demsctl devices: docks (/v1/admin/devices: list, enrol, rename, re-enrol, revoke, assign, ca). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define MAX_PEM (60 * 1024)

static int run_list(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"limit", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    static const struct ctl_col cols[] = {
        {"id", "id"},
        {"name", "name"},
        {"serial", "serial"},
        {"assigned_to", "assigned_to"},
        {"issued", "issued"},
        {"revoked", "revoked_at"},
        {"created", "created_at"},
        {"cert_sha256", "cert_sha256"},
        {0},
    };
    return ctl_one_list("/v1/admin/devices", "devices", ctl_opt_get(opts, "limit"), cols);
}

/* A PEM file's text; owned, or NULL after a usage error. */
static char *read_pem(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        ctl_usage_error("%s: cannot open %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_PEM + 1);
    size_t n = buf != NULL ? fread(buf, 1, MAX_PEM + 1, f) : 0;
    bool err = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || err || n > MAX_PEM || n == 0) {
        free(buf);
        ctl_usage_error("%s: cannot read %s (empty, unreadable or over 60 KiB)", what, path);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    bool ok = f != NULL && fputs(text, f) >= 0;
    if (f != NULL)
        ok = fclose(f) == 0 && ok;
    if (!ok)
        ctl_fail(CTL_USAGE, "cannot write %s: %s", path, strerror(errno));
    return ok;
}

/*
 * Sends body (stolen) to path and writes the certificate the answer holds to
 * cert_out (else prints it after the summary) and the CA's to ca_out.
 */
static int send_cert(const char *path, json_t *body, const char *cert_out, const char *ca_out,
                     const struct ctl_col *cols)
{
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK) {
        json_decref(body);
        return r;
    }
    json_t *answer = NULL;
    r = ctl_call(&h, "POST", path, body, &answer);
    json_decref(body);
    if (r == CTL_OK) {
        const char *c = json_string_value(json_object_get(answer, "certificate"));
        const char *ca = json_string_value(json_object_get(answer, "ca_certificate"));
        if (cert_out != NULL && c != NULL && !write_text(cert_out, c))
            r = CTL_USAGE;
        if (ca_out != NULL && ca != NULL && !write_text(ca_out, ca))
            r = CTL_USAGE;
        ctl_print_object(answer, cols);
        if (!ctl_global.json && cert_out == NULL && c != NULL)
            printf("%s", c);
    }
    json_decref(answer);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static int run_enrol(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"name", false, NULL},
                             {"serial", false, NULL},
                             {"csr", false, NULL},
                             {"certificate", false, NULL},
                             {"cert-out", false, NULL},
                             {"ca-out", false, NULL},
                             {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    const char *name = ctl_opt_get(opts, "name"), *serial = ctl_opt_get(opts, "serial");
    const char *csr = ctl_opt_get(opts, "csr"), *cert = ctl_opt_get(opts, "certificate");
    if (name == NULL || serial == NULL)
        return ctl_usage_error("--name and --serial are required");
    if ((csr == NULL) == (cert == NULL))
        return ctl_usage_error("give exactly one of --csr FILE and --certificate FILE");
    char *pem = read_pem(csr != NULL ? "--csr" : "--certificate", csr != NULL ? csr : cert);
    if (pem == NULL)
        return CTL_USAGE;
    json_t *body = json_pack("{s:s,s:s,s:s}", "name", name, "serial", serial,
                             csr != NULL ? "csr" : "certificate", pem);
    free(pem);
    static const struct ctl_col cols[] = {{"name", "name"},
                                          {"serial", "serial"},
                                          {"issued", "issued"},
                                          {"cert_sha256", "cert_sha256"},
                                          {0}};
    return send_cert("/v1/admin/devices", body, ctl_opt_get(opts, "cert-out"),
                     ctl_opt_get(opts, "ca-out"), cols);
}

static int run_rename(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{0}};
    const char *pos[2];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 2);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 2)
        return ctl_usage_error("give the device id and its new name");
    if (!ctl_id_arg("DEVICE", pos[0], &id))
        return CTL_USAGE;
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/devices/%lld", (long long)id);
    static const struct ctl_col cols[] = {
        {"id", "id"}, {"name", "name"}, {"serial", "serial"}, {"ledger entry", "seq"}, {0}};
    return ctl_one("PATCH", path, json_pack("{s:s}", "name", pos[1]), cols, NULL);
}

static int run_reenrol(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {
        {"csr", false, NULL}, {"certificate", false, NULL}, {"cert-out", false, NULL}, {0}};
    const char *pos[1];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    const char *csr = ctl_opt_get(opts, "csr"), *cert = ctl_opt_get(opts, "certificate");
    if (n != 1)
        return ctl_usage_error("the device id is required");
    if (!ctl_id_arg("DEVICE", pos[0], &id))
        return CTL_USAGE;
    if ((csr == NULL) == (cert == NULL))
        return ctl_usage_error("give exactly one of --csr FILE and --certificate FILE");
    char *pem = read_pem(csr != NULL ? "--csr" : "--certificate", csr != NULL ? csr : cert);
    if (pem == NULL)
        return CTL_USAGE;
    json_t *body = json_pack("{s:s}", csr != NULL ? "csr" : "certificate", pem);
    free(pem);
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/devices/%lld/reenrol", (long long)id);
    static const struct ctl_col cols[] = {{"id", "id"},
                                          {"serial", "serial"},
                                          {"issued", "issued"},
                                          {"cert_sha256", "cert_sha256"},
                                          {"ledger entry", "seq"},
                                          {0}};
    return send_cert(path, body, ctl_opt_get(opts, "cert-out"), NULL, cols);
}

static int run_revoke(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{0}};
    const char *pos[1];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the device id is required");
    if (!ctl_id_arg("DEVICE", pos[0], &id))
        return CTL_USAGE;
    char path[64], done[64];
    snprintf(path, sizeof(path), "/v1/admin/devices/%lld/revoke", (long long)id);
    snprintf(done, sizeof(done), "Device %lld revoked", (long long)id);
    return ctl_one("POST", path, NULL, NULL, done);
}

static int run_assign(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"none", true, NULL}, {0}};
    const char *pos[2];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 2);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    bool none = ctl_opt_get(opts, "none") != NULL;
    if (n < 1 || (n == 2) == none)
        return ctl_usage_error("give the device id and an officer's username, or --none");
    if (!ctl_id_arg("DEVICE", pos[0], &id))
        return CTL_USAGE;
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/devices/%lld/assign", (long long)id);
    json_t *body = none ? json_pack("{s:n}", "username") : json_pack("{s:s}", "username", pos[1]);
    static const struct ctl_col cols[] = {
        {"id", "id"}, {"assigned_to", "assigned_to"}, {"ledger entry", "seq"}, {0}};
    return ctl_one("POST", path, body, cols, NULL);
}

static const struct ctl_cmd cmds[] = {
    {"list", "[--limit N]", "Lists the enrolled docks (GET /v1/admin/devices).", run_list},
    {"enrol",
     "--name NAME --serial SERIAL (--csr FILE | --certificate FILE) "
     "[--cert-out FILE] [--ca-out FILE]",
     "Enrols a dock (POST /v1/admin/devices). With --csr (PEM PKCS#10) the server's\n"
     "device CA issues its client certificate; with --certificate that certificate is\n"
     "pinned as it is. The issued certificate is written to --cert-out (else printed)\n"
     "and the device CA's to --ca-out. A DEVICE_ENROLLED ledger entry records it.",
     run_enrol},
    {"rename", "DEVICE NAME",
     "Renames a dock (PATCH /v1/admin/devices/{id}; a DEVICE_UPDATED ledger entry).", run_rename},
    {"reenrol", "DEVICE (--csr FILE | --certificate FILE) [--cert-out FILE]",
     "Gives a dock a new certificate under the same id and serial (POST\n"
     "/v1/admin/devices/{id}/reenrol): the CA signs --csr, or --certificate is pinned.\n"
     "The old certificate stops authenticating at once. A DEVICE_ENROLLED entry names\n"
     "the certificate it replaced.",
     run_reenrol},
    {"revoke", "DEVICE",
     "Revokes a dock (POST /v1/admin/devices/{id}/revoke): its certificate is refused\n"
     "from then on. A DEVICE_REVOKED ledger entry records it.",
     run_revoke},
    {"assign", "DEVICE (USERNAME | --none)",
     "Assigns a dock to an officer, or takes it from its officer with --none (POST\n"
     "/v1/admin/devices/{id}/assign; a DEVICE_ASSIGNED ledger entry).",
     run_assign},
};

const struct ctl_group ctl_group_devices = {"devices",
                                            "enrol, rename, re-enrol, revoke, assign docks",
                                            "Docks that upload with mutual TLS (administrators "
                                            "only).",
                                            cmds, sizeof(cmds) / sizeof(cmds[0])};
