/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl disposal: what is due, batches (propose, show, items, approve,
 * cancel) and recovery of a soft-deleted artefact (/v1/admin/disposal/...,
 * /v1/admin/evidence/{id}/recover).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

static const struct ctl_col batch_cols[] = {
    {"id", "id"},
    {"state", "state"},
    {"proposed", "items.proposed"},
    {"soft_deleted", "items.soft_deleted"},
    {"recovered", "items.recovered"},
    {"skipped", "items.skipped"},
    {"destroyed", "items.destroyed"},
    {"created_by", "created_by"},
    {"created_at", "created_at"},
    {"listed_at", "listed_at"},
    {"approved_by", "approved_by"},
    {"approved_at", "approved_at"},
    {"reason", "reason"},
    {"recover_days", "recover_days"},
    {"recover_until", "recover_until"},
    {"finished_at", "finished_at"},
    {"error", "error"},
    {0},
};

static int no_args_list(int argc, char **argv, const char *path, const char *key,
                        const struct ctl_col *cols)
{
    struct ctl_opt opts[] = {{"limit", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    return ctl_one_list(path, key, ctl_opt_get(opts, "limit"), cols);
}

static int run_due(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    static const struct ctl_col cols[] = {
        {"evidence", "evidence"}, {"due_at", "due_at"},     {"ingested_at", "ingested_at"},
        {"size", "size"},         {"filename", "filename"}, {0},
    };
    return no_args_list(argc, argv, "/v1/admin/disposal/due", "due", cols);
}

/*
 * Polls the batch until its state is none of busy (NULL-terminated), for up
 * to the request timeout. *ret_batch owns the last answer.
 */
static int wait_batch(struct ctl_http *h, int64_t id, const char *const *busy, json_t **ret_batch)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/disposal/batches/%lld", (long long)id);
    time_t deadline = time(NULL) + h->cfg->timeout;
    for (;;) {
        json_t *b;
        int r = ctl_call(h, "GET", path, NULL, &b);
        if (r != CTL_OK)
            return r;
        const char *state = json_string_value(json_object_get(b, "state"));
        bool still = false;
        for (size_t i = 0; state != NULL && busy[i] != NULL; i++)
            still = still || strcmp(state, busy[i]) == 0;
        if (!still) {
            *ret_batch = b;
            return CTL_OK;
        }
        json_decref(b);
        if (time(NULL) >= deadline)
            return ctl_fail(CTL_REFUSED, "batch %lld is still %s after %ld s (--timeout)",
                            (long long)id, state, h->cfg->timeout);
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Sends a batch request; with wait, polls until it leaves the busy states. */
static int batch_call(const char *method, const char *path, json_t *body, bool wait,
                      const char *const *busy)
{
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK) {
        json_decref(body);
        return r;
    }
    json_t *b = NULL;
    r = ctl_call(&h, method, path, body, &b);
    json_decref(body);
    if (r == CTL_OK && wait) {
        int64_t id = (int64_t)json_integer_value(json_object_get(b, "id"));
        json_decref(b);
        b = NULL;
        r = wait_batch(&h, id, busy, &b);
    }
    if (r == CTL_OK)
        ctl_print_object(b, batch_cols);
    json_decref(b);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

static int run_propose(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"wait", true, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    static const char *const busy[] = {"listing", NULL};
    return batch_call("POST", "/v1/admin/disposal/batches", NULL, ctl_opt_get(opts, "wait") != NULL,
                      busy);
}

static int run_show(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"limit", false, NULL}, {0}};
    const char *pos[1];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n == 0) {
        static const struct ctl_col cols[] = {
            {"id", "id"},
            {"state", "state"},
            {"proposed", "items.proposed"},
            {"destroyed", "items.destroyed"},
            {"created_by", "created_by"},
            {"created_at", "created_at"},
            {"approved_by", "approved_by"},
            {"reason", "reason"},
            {0},
        };
        return ctl_one_list("/v1/admin/disposal/batches", "batches", ctl_opt_get(opts, "limit"),
                            cols);
    }
    if (!ctl_id_arg("BATCH", pos[0], &id))
        return CTL_USAGE;
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/disposal/batches/%lld", (long long)id);
    return ctl_one("GET", path, NULL, batch_cols, NULL);
}

static int run_items(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"limit", false, NULL}, {0}};
    const char *pos[1];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the batch id is required");
    if (!ctl_id_arg("BATCH", pos[0], &id))
        return CTL_USAGE;
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/disposal/batches/%lld/items", (long long)id);
    static const struct ctl_col cols[] = {
        {"evidence", "evidence"},
        {"state", "state"},
        {"due_at", "due_at"},
        {"approved_seq", "approved_seq"},
        {"disposed_seq", "disposed_seq"},
        {"filename", "filename"},
        {"detail", "detail"},
        {0},
    };
    return ctl_one_list(path, "items", ctl_opt_get(opts, "limit"), cols);
}

static int run_approve(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {
        {"reason", false, NULL}, {"recover-days", false, NULL}, {"wait", true, NULL}, {0}};
    const char *pos[1];
    int64_t id, days;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the batch id is required");
    if (!ctl_id_arg("BATCH", pos[0], &id))
        return CTL_USAGE;
    if (ctl_opt_get(opts, "reason") == NULL)
        return ctl_usage_error("--reason is required (recorded with every disposal)");
    json_t *body = json_pack("{s:s}", "reason", ctl_opt_get(opts, "reason"));
    if (ctl_opt_get(opts, "recover-days") != NULL) {
        if (!ctl_int_arg("--recover-days", ctl_opt_get(opts, "recover-days"), 0, 3650, &days)) {
            json_decref(body);
            return CTL_USAGE;
        }
        json_object_set_new(body, "recover_days", json_integer(days));
    }
    char path[80];
    snprintf(path, sizeof(path), "/v1/admin/disposal/batches/%lld/approve", (long long)id);
    static const char *const busy[] = {"approved", NULL};
    return batch_call("POST", path, body, ctl_opt_get(opts, "wait") != NULL, busy);
}

static int run_cancel(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"reason", false, NULL}, {0}};
    const char *pos[1];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the batch id is required");
    if (!ctl_id_arg("BATCH", pos[0], &id))
        return CTL_USAGE;
    if (ctl_opt_get(opts, "reason") == NULL)
        return ctl_usage_error("--reason is required");
    char path[80];
    snprintf(path, sizeof(path), "/v1/admin/disposal/batches/%lld/cancel", (long long)id);
    return ctl_one("POST", path, json_pack("{s:s}", "reason", ctl_opt_get(opts, "reason")),
                   batch_cols, NULL);
}

static int run_recover(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"reason", false, NULL}, {0}};
    const char *pos[1];
    char ev[65];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the evidence id is required");
    if (!ctl_evidence_arg(pos[0], ev))
        return CTL_USAGE;
    if (ctl_opt_get(opts, "reason") == NULL)
        return ctl_usage_error("--reason is required");
    char path[128];
    snprintf(path, sizeof(path), "/v1/admin/evidence/%s/recover", ev);
    static const struct ctl_col cols[] = {
        {"evidence", "evidence"}, {"recovered", "recovered"}, {"ledger entry", "seq"}, {0}};
    return ctl_one("POST", path, json_pack("{s:s}", "reason", ctl_opt_get(opts, "reason")), cols,
                   NULL);
}

static const struct ctl_cmd cmds[] = {
    {"due", "[--limit N]",
     "Lists the artefacts due for disposal now, held ones left out (GET\n"
     "/v1/admin/disposal/due).",
     run_due},
    {"propose", "[--wait]",
     "Proposes a disposal batch of what is due (POST /v1/admin/disposal/batches). The\n"
     "server lists it in the background; --wait waits until it is listed (at most\n"
     "--timeout seconds) and shows it.",
     run_propose},
    {"show", "[BATCH] [--limit N]",
     "Shows one batch (GET /v1/admin/disposal/batches/{id}), or lists the batches.", run_show},
    {"items", "BATCH [--limit N]",
     "Lists a batch's artefacts and what became of each (GET\n"
     "/v1/admin/disposal/batches/{id}/items).",
     run_items},
    {"approve", "BATCH --reason TEXT [--recover-days N] [--wait]",
     "Approves a proposed batch (POST /v1/admin/disposal/batches/{id}/approve): its\n"
     "artefacts are soft-deleted (DISPOSAL_APPROVED entries), recoverable for\n"
     "--recover-days (default: the server's disposal_recover_days), then crypto-erased\n"
     "(DISPOSED entries). 0 erases at once. --wait waits until the batch is\n"
     "soft-deleted or done (at most --timeout seconds).",
     run_approve},
    {"cancel", "BATCH --reason TEXT",
     "Cancels a proposed batch (POST /v1/admin/disposal/batches/{id}/cancel).", run_cancel},
    {"recover", "EVIDENCE --reason TEXT",
     "Brings back a soft-deleted artefact within its recovery window (POST\n"
     "/v1/admin/evidence/{id}/recover; a DISPOSAL_RECOVERED entry).",
     run_recover},
};

const struct ctl_group ctl_group_disposal = {
    "disposal", "dispose of what retention says is due",
    "Disposal by approved batches (administrators only; docs/operations.md, \"Retention, "
    "holds and disposal\").",
    cmds, sizeof(cmds) / sizeof(cmds[0])};
