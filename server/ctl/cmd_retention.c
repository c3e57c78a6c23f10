/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl retention: policies (/v1/admin/retention/policies) and the
 * policy of a case or an artefact (PUT /v1/admin/{cases,evidence}/{id}/retention).
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static int run_policies(int argc, char **argv, const struct ctl_cmd *self)
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
        {"days", "period_days"},
        {"from", "counted_from"},
        {"created_by", "created_by"},
        {"created", "created_at"},
        {"description", "description"},
        {0},
    };
    return ctl_one_list("/v1/admin/retention/policies", "policies", ctl_opt_get(opts, "limit"),
                        cols);
}

static int run_create(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {
        {"days", false, NULL}, {"from", false, NULL}, {"description", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the policy's name is required");
    int64_t days;
    const char *from = ctl_opt_get(opts, "from");
    if (ctl_opt_get(opts, "days") == NULL)
        return ctl_usage_error("--days is required (the retention period)");
    if (!ctl_int_arg("--days", ctl_opt_get(opts, "days"), 1, 1000000, &days))
        return CTL_USAGE;
    if (from == NULL)
        return ctl_usage_error("--from is required: ingestion or case_closure");
    json_t *body = json_pack("{s:s,s:I,s:s}", "name", pos[0], "period_days", (json_int_t)days,
                             "counted_from", from);
    if (ctl_opt_get(opts, "description") != NULL)
        json_object_set_new(body, "description", json_string(ctl_opt_get(opts, "description")));
    static const struct ctl_col cols[] = {{"id", "id"},
                                          {"name", "name"},
                                          {"period_days", "period_days"},
                                          {"counted_from", "counted_from"},
                                          {"description", "description"},
                                          {"created_by", "created_by"},
                                          {"created_at", "created_at"},
                                          {0}};
    return ctl_one("POST", "/v1/admin/retention/policies", body, cols, NULL);
}

/* set-case and set-evidence: PUT {"policy": id | null}. */
static int set_policy(int argc, char **argv, bool is_case)
{
    struct ctl_opt opts[] = {{0}};
    const char *pos[2];
    int n = ctl_parse(argc, argv, opts, pos, 2);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 2)
        return ctl_usage_error("give the %s and a policy id (or 'none')",
                               is_case ? "case id" : "evidence id");
    char path[160], ev[65];
    int64_t id = 0, policy = 0;
    if (is_case) {
        if (!ctl_id_arg("CASE", pos[0], &id))
            return CTL_USAGE;
        snprintf(path, sizeof(path), "/v1/admin/cases/%lld/retention", (long long)id);
    } else {
        if (!ctl_evidence_arg(pos[0], ev))
            return CTL_USAGE;
        snprintf(path, sizeof(path), "/v1/admin/evidence/%s/retention", ev);
    }
    bool none = strcmp(pos[1], "none") == 0;
    if (!none && !ctl_id_arg("POLICY", pos[1], &policy))
        return CTL_USAGE;
    json_t *body =
        none ? json_pack("{s:n}", "policy") : json_pack("{s:I}", "policy", (json_int_t)policy);
    static const struct ctl_col case_cols[] = {{"case", "case"},
                                               {"policy", "policy"},
                                               {"policy_name", "policy_name"},
                                               {"ledger entry", "seq"},
                                               {0}};
    static const struct ctl_col ev_cols[] = {{"evidence", "evidence"},
                                             {"policy", "policy"},
                                             {"policy_name", "policy_name"},
                                             {"ledger entry", "seq"},
                                             {0}};
    return ctl_one("PUT", path, body, is_case ? case_cols : ev_cols, NULL);
}

static int run_set_case(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    return set_policy(argc, argv, true);
}

static int run_set_evidence(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    return set_policy(argc, argv, false);
}

static const struct ctl_cmd cmds[] = {
    {"policies", "[--limit N]", "Lists the retention policies (GET /v1/admin/retention/policies).",
     run_policies},
    {"create-policy", "NAME --days N --from ingestion|case_closure [--description TEXT]",
     "Creates a retention policy (POST /v1/admin/retention/policies): material under it\n"
     "is due for disposal N days after its ingestion, or after its case was closed. A\n"
     "RETENTION_POLICY_CREATED ledger entry records it.",
     run_create},
    {"set-case", "CASE (POLICY | none)",
     "Sets the retention policy of a case, for its exhibits without one of their own\n"
     "(PUT /v1/admin/cases/{id}/retention; 'none' clears it; a RETENTION_SET entry).",
     run_set_case},
    {"set-evidence", "EVIDENCE (POLICY | none)",
     "Sets the retention policy of one artefact (PUT /v1/admin/evidence/{id}/retention;\n"
     "'none' clears it; a RETENTION_SET entry).",
     run_set_evidence},
};

const struct ctl_group ctl_group_retention = {
    "retention", "retention policies and what they apply to",
    "Retention policies (administrators only; docs/operations.md, \"Retention, holds and "
    "disposal\").",
    cmds, sizeof(cmds) / sizeof(cmds[0])};
