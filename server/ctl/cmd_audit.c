/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl audit: reports from the custody ledger (docs/api.md, "Audit
 * reports"). evidence and case fetch a report (GET
 * /v1/admin/audit/{evidence,cases}/{id}) and check it before showing it:
 * the checkpoint's signature (by the pinned key, or the report's own),
 * every entry's canonical bytes against the body shown, and every proof of
 * inclusion against the checkpoint's root. user writes a user's activity as
 * CSV; custody lists an artefact's entries as the staff API pages them.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/ledger.h"

#include "ctl.h"

static int invalid(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int invalid(const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return ctl_fail(CTL_REFUSED, "audit report INVALID: %s", detail);
}

/* Base64 (standard alphabet) to bytes; owned, NULL when malformed. */
static uint8_t *unbase64(const char *s, size_t *ret_len)
{
    size_t len = s != NULL ? strlen(s) : 0;
    uint8_t *out = s != NULL ? malloc(len / 4 * 3 + 3) : NULL;
    if (out == NULL || sodium_base642bin(out, len / 4 * 3 + 3, s, len, NULL, ret_len, NULL,
                                         sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* One entry of a report: bytes, body and proof checked. */
static int check_entry(const json_t *e, const struct dems_checkpoint *cp, bool has_cp,
                       size_t *proved, size_t *pending)
{
    json_int_t index = json_integer_value(json_object_get(e, "index"));
    size_t len = 0;
    uint8_t *bytes = unbase64(json_string_value(json_object_get(e, "entry")), &len);
    json_t *root = NULL;
    struct dems_ledger_entry ent;
    int r = CTL_OK;
    if (bytes == NULL || dems_ledger_entry_decode(bytes, len, &root, &ent) != 0)
        r = invalid("entry %lld: its bytes are not a canonical ledger entry", (long long)index);
    else if (index < 0 || ent.seq != (uint64_t)index)
        r = invalid("entry %lld: its bytes say entry %llu", (long long)index,
                    (unsigned long long)ent.seq);
    else if (!json_equal(root, json_object_get(e, "body")))
        r = invalid("entry %lld: the body shown differs from the entry's bytes", (long long)index);
    const json_t *proof = json_object_get(e, "proof");
    if (r == CTL_OK && (json_is_null(proof) || proof == NULL)) {
        if (has_cp && (uint64_t)index < cp->size)
            r = invalid("entry %lld is covered by the checkpoint but has no proof",
                        (long long)index);
        (*pending)++;
    } else if (r == CTL_OK) {
        struct dems_merkle_proof *p = malloc(sizeof(*p));
        size_t i;
        const json_t *h;
        bool ok = p != NULL && has_cp && json_is_array(proof) &&
                  json_array_size(proof) <= DEMS_MERKLE_MAX_PROOF;
        if (ok) {
            p->len = 0;
            json_array_foreach(proof, i, h)
            {
                size_t hl = 0;
                uint8_t *hb = unbase64(json_string_value(h), &hl);
                ok = ok && hb != NULL && hl == 32;
                if (ok)
                    memcpy(p->hash[p->len++], hb, 32);
                free(hb);
            }
        }
        uint8_t leaf[32];
        dems_merkle_leaf_hash(bytes, len, leaf);
        if (!ok || dems_merkle_verify_inclusion(leaf, (uint64_t)index, cp->size, p, cp->root) != 0)
            r = invalid("entry %lld: its inclusion proof does not verify against the checkpoint "
                        "of size %llu",
                        (long long)index, (unsigned long long)cp->size);
        else
            (*proved)++;
        free(p);
    }
    json_decref(root);
    free(bytes);
    return r;
}

/* Checks a whole report; prints its summary line(s) for people. */
static int check_report(const json_t *rep, const char *pin)
{
    const char *note = json_string_value(json_object_get(rep, "checkpoint"));
    const char *vkey = pin != NULL ? pin : json_string_value(json_object_get(rep, "vkey"));
    struct dems_checkpoint cp = {0};
    struct dems_note_verifier v;
    bool has_cp = note != NULL;
    if (has_cp) {
        if (vkey == NULL || dems_note_verifier_parse(vkey, strlen(vkey), &v) != 0)
            return invalid("the report's verifier key does not parse");
        if (dems_checkpoint_open(note, strlen(note), &v, NULL, &cp) != 0)
            return invalid("the checkpoint is not signed by %s%s", vkey,
                           pin != NULL ? " (the pinned key)" : "");
        if ((json_int_t)cp.size != json_integer_value(json_object_get(rep, "checkpoint_size")))
            return invalid("checkpoint_size differs from the checkpoint's size %llu",
                           (unsigned long long)cp.size);
    }
    const json_t *entries = json_object_get(rep, "entries");
    size_t i, proved = 0, pending = 0;
    const json_t *e;
    if (!json_is_array(entries))
        return invalid("the report has no entries list");
    json_array_foreach(entries, i, e)
    {
        int r = check_entry(e, &cp, has_cp, &proved, &pending);
        if (r != CTL_OK)
            return r;
    }
    if (ctl_global.json)
        return CTL_OK;
    char *title = ctl_value_text(rep, "title");
    printf("%s\n", title != NULL ? title : "");
    free(title);
    if (has_cp)
        printf("%zu entries: %zu proven included in the checkpoint of size %llu signed by %s "
               "(%s)%s\n",
               json_array_size(entries), proved, (unsigned long long)cp.size, vkey,
               pin != NULL ? "pinned" : "the report's key: pin it with --key",
               pending > 0 ? ", the rest appended after it" : "");
    else
        printf("%zu entries; no signed checkpoint yet, so nothing is proven\n",
               json_array_size(entries));
    return CTL_OK;
}

/* Writes a GET's answer to path ("-": stdout). */
static int save_answer(struct ctl_http *h, const char *url, const char *path)
{
    bool to_stdout = strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (f == NULL)
        return ctl_fail(CTL_USAGE, "cannot write %s: %s", path, strerror(errno));
    struct ctl_resp resp;
    int r = ctl_http_download(h, url, f, &resp);
    if (r == CTL_OK) {
        r = ctl_check(&resp);
        ctl_resp_done(&resp);
    }
    if ((to_stdout ? fflush(f) : fclose(f)) != 0 && r == CTL_OK)
        r = ctl_fail(CTL_USAGE, "writing %s failed: %s", path, strerror(errno));
    return r;
}

static int report(int argc, char **argv, bool is_case)
{
    struct ctl_opt opts[] = {{"key", false, NULL}, {"html", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the %s is required", is_case ? "case id" : "evidence id");
    char path[160], ev[65];
    int64_t id;
    if (is_case && !ctl_id_arg("CASE", pos[0], &id))
        return CTL_USAGE;
    if (!is_case && !ctl_evidence_arg(pos[0], ev))
        return CTL_USAGE;
    if (is_case)
        snprintf(path, sizeof(path), "/v1/admin/audit/cases/%lld", (long long)id);
    else
        snprintf(path, sizeof(path), "/v1/admin/audit/evidence/%s", ev);
    const char *pin = ctl_opt_get(opts, "key");
    struct dems_note_verifier v;
    if (pin != NULL && dems_note_verifier_parse(pin, strlen(pin), &v) != 0)
        return ctl_usage_error("--key: not a note verifier key (name+hash+base64)");
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK)
        return r;
    if (pin == NULL && cfg.ledger_key != NULL &&
        dems_note_verifier_parse(cfg.ledger_key, strlen(cfg.ledger_key), &v) == 0)
        pin = cfg.ledger_key;
    json_t *rep = NULL;
    const char *html = ctl_opt_get(opts, "html");
    if (html != NULL) {
        size_t pl = strlen(path);
        snprintf(path + pl, sizeof(path) - pl, "?format=html");
        r = save_answer(&h, path, html);
    } else {
        r = ctl_call(&h, "GET", path, NULL, &rep);
        if (r == CTL_OK)
            r = check_report(rep, pin);
        if (r == CTL_OK && ctl_global.json) {
            ctl_print_json(rep);
        } else if (r == CTL_OK) {
            static const struct ctl_col cols[] = {
                {"index", "index"},
                {"time", "body.time"},
                {"type", "body.type"},
                {"actor", "body.actor.id"},
                {"evidence", "body.artefact"},
                {"case", "body.case"},
                {"payload", "body.payload"},
                {0},
            };
            printf("\n");
            ctl_print_list(rep, "entries", cols);
        }
    }
    json_decref(rep);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static int run_evidence(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    return report(argc, argv, false);
}

static int run_case(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    return report(argc, argv, true);
}

static int run_user(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {
        {"from", false, NULL}, {"to", false, NULL}, {"output", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the username is required");
    if (ctl_opt_get(opts, "from") == NULL || ctl_opt_get(opts, "to") == NULL)
        return ctl_usage_error("--from and --to are required (RFC 3339 times)");
    char *user = ctl_escape(pos[0]);
    char path[1024];
    if (user == NULL || strlen(user) > 300) {
        free(user);
        return ctl_usage_error("the username is too long");
    }
    snprintf(path, sizeof(path), "/v1/admin/audit/users/%s", user);
    free(user);
    if (!ctl_query_add(path, sizeof(path), "from", ctl_opt_get(opts, "from")) ||
        !ctl_query_add(path, sizeof(path), "to", ctl_opt_get(opts, "to")))
        return CTL_USAGE;
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK)
        return r;
    const char *out = ctl_opt_get(opts, "output");
    r = save_answer(&h, path, out != NULL ? out : "-");
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static int run_custody(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"limit", false, NULL}, {0}};
    const char *pos[1];
    char ev[65];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the evidence id is required");
    if (!ctl_evidence_arg(pos[0], ev))
        return CTL_USAGE;
    char path[128];
    snprintf(path, sizeof(path), "/v1/evidence/%s/custody", ev);
    static const struct ctl_col cols[] = {
        {"seq", "seq"},
        {"time", "entry.time"},
        {"type", "entry.type"},
        {"actor", "entry.actor.id"},
        {"kind", "entry.actor.kind"},
        {"case", "entry.case"},
        {"payload", "entry.payload"},
        {0},
    };
    return ctl_one_list(path, "entries", ctl_opt_get(opts, "limit"), cols);
}

#define REPORT_HELP                                                                                \
    "Checks the report before showing it: the checkpoint's signature (by --key, or\n"              \
    "'ledger_key' in the config file, which must be the key signing checkpoints now;\n"            \
    "else by the report's own key), that every entry's canonical bytes are those of\n"             \
    "the entry shown, and every inclusion proof against the checkpoint's root (entries\n"          \
    "appended after the checkpoint have none yet). Anything that does not verify is\n"             \
    "exit 1 with one line. --json prints the report as the server sent it (each entry\n"           \
    "checks offline with dems-verify inclusion); --html FILE writes the printable page\n"          \
    "instead ('-': standard output), unchecked."

static const struct ctl_cmd cmds[] = {
    {"evidence", "EVIDENCE [--key VKEY] [--html FILE]",
     "The custody report of one artefact (GET /v1/admin/audit/evidence/{id}): every\n"
     "ledger entry naming it, each with its inclusion proof.\n\n" REPORT_HELP,
     run_evidence},
    {"case", "CASE [--key VKEY] [--html FILE]",
     "The custody report of a case (GET /v1/admin/audit/cases/{id}): the entries naming\n"
     "the case and those naming any artefact ever its exhibit.\n\n" REPORT_HELP,
     run_case},
    {"user", "USERNAME --from TIME --to TIME [--output FILE]",
     "A user's activity as CSV (GET /v1/admin/audit/users/{username}): the entries\n"
     "they made (as actor) whose time is in [--from, --to) (RFC 3339; at most 366\n"
     "days), with each entry's leaf hash. Written to standard output or --output.",
     run_user},
    {"custody", "EVIDENCE [--limit N]",
     "The chain of custody of one artefact as the staff API pages it (GET\n"
     "/v1/evidence/{id}/custody; no proofs): who did what, when, oldest first.",
     run_custody},
};

const struct ctl_group ctl_group_audit = {"audit", "custody reports from the ledger",
                                          "Audit reports from the custody ledger (administrators "
                                          "only; docs/api.md, \"Audit reports\").",
                                          cmds, sizeof(cmds) / sizeof(cmds[0])};
