/* SPDX-License-Identifier: Apache-2.0 */
/* demsctl jobs: background work (/v1/admin/jobs: list, show, retry, enqueue). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const struct ctl_col job_cols[] = {
    {"id", "id"},
    {"kind", "kind"},
    {"state", "state"},
    {"attempts", "attempts"},
    {"max_attempts", "max_attempts"},
    {"priority", "priority"},
    {"payload", "payload"},
    {"dedupe_key", "dedupe_key"},
    {"lease_owner", "lease_owner"},
    {"run_after", "run_after"},
    {"created", "created_at"},
    {"started", "started_at"},
    {"finished", "finished_at"},
    {"last_error", "last_error"},
    {0},
};

static int run_list(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {
        {"limit", false, NULL}, {"state", false, NULL}, {"kind", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    /* The server checks the values; here they only need escaping. */
    char path[512] = "/v1/admin/jobs";
    const char *names[] = {"state", "kind"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = ctl_opt_get(opts, names[i]);
        if (v != NULL && !ctl_query_add(path, sizeof(path), names[i], v))
            return CTL_USAGE;
    }
    static const struct ctl_col cols[] = {
        {"id", "id"},
        {"kind", "kind"},
        {"state", "state"},
        {"attempts", "attempts"},
        {"created", "created_at"},
        {"payload", "payload"},
        {"last_error", "last_error"},
        {0},
    };
    return ctl_one_list(path, "jobs", ctl_opt_get(opts, "limit"), cols);
}

static int one_job(int argc, char **argv, const char *method, const char *suffix)
{
    struct ctl_opt opts[] = {{0}};
    const char *pos[1];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the job id is required");
    if (!ctl_id_arg("JOB", pos[0], &id))
        return CTL_USAGE;
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/jobs/%lld%s", (long long)id, suffix);
    return ctl_one(method, path, NULL, job_cols, NULL);
}

static int run_show(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    return one_job(argc, argv, "GET", "");
}

static int run_retry(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    return one_job(argc, argv, "POST", "/retry");
}

static int run_enqueue(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"payload", false, NULL},      {"evidence", false, NULL},
                             {"dedupe-key", false, NULL},   {"priority", false, NULL},
                             {"max-attempts", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the job kind is required (e.g. verify-blob)");
    const char *payload = ctl_opt_get(opts, "payload");
    const char *evidence = ctl_opt_get(opts, "evidence");
    if (payload != NULL && evidence != NULL)
        return ctl_usage_error("give --payload or --evidence, not both");
    json_t *body = json_pack("{s:s}", "kind", pos[0]);
    if (payload != NULL) {
        json_error_t err;
        json_t *p = json_loads(payload, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(p)) {
            json_decref(p);
            json_decref(body);
            return ctl_usage_error("--payload: not a JSON object (%s)", err.text);
        }
        json_object_set_new(body, "payload", p);
    }
    if (evidence != NULL) {
        char ev[65];
        if (!ctl_evidence_arg(evidence, ev)) {
            json_decref(body);
            return CTL_USAGE;
        }
        json_object_set_new(body, "payload", json_pack("{s:s}", "evidence", ev));
    }
    if (ctl_opt_get(opts, "dedupe-key") != NULL)
        json_object_set_new(body, "dedupe_key", json_string(ctl_opt_get(opts, "dedupe-key")));
    const char *ints[][2] = {{"priority", "priority"}, {"max-attempts", "max_attempts"}};
    for (size_t i = 0; i < 2; i++) {
        int64_t v;
        const char *s = ctl_opt_get(opts, ints[i][0]);
        if (s == NULL)
            continue;
        char what[32];
        snprintf(what, sizeof(what), "--%s", ints[i][0]);
        if (!ctl_int_arg(what, s, -100000, 100000, &v)) {
            json_decref(body);
            return CTL_USAGE;
        }
        json_object_set_new(body, ints[i][1], json_integer(v));
    }
    return ctl_one("POST", "/v1/admin/jobs", body, job_cols, NULL);
}

static const struct ctl_cmd cmds[] = {
    {"list", "[--state STATE] [--kind KIND] [--limit N]",
     "Lists jobs, newest first (GET /v1/admin/jobs). --state is queued, running,\n"
     "failed, done or dead; --kind a job kind (e.g. verify-blob).",
     run_list},
    {"show", "JOB", "Shows one job (GET /v1/admin/jobs/{id}), its last error included.", run_show},
    {"retry", "JOB",
     "Sets a failed or dead job back to queued, due now (POST /v1/admin/jobs/{id}/retry).",
     run_retry},
    {"enqueue",
     "KIND [--evidence ID | --payload JSON] [--dedupe-key KEY] [--priority N] "
     "[--max-attempts N]",
     "Queues a job (POST /v1/admin/jobs). KIND is one the workers run: verify-blob\n"
     "(--evidence ID re-reads that evidence blob; the same as --payload\n"
     "'{\"evidence\":\"ID\"}'). --priority -100..100 (higher first), --max-attempts\n"
     "1-1000; a --dedupe-key already used answers the first job instead.",
     run_enqueue},
};

const struct ctl_group ctl_group_jobs = {"jobs", "watch and steer background jobs",
                                         "Background jobs run by the workers (administrators "
                                         "only).",
                                         cmds, sizeof(cmds) / sizeof(cmds[0])};
