/* SPDX-License-Identifier: Apache-2.0 */
/* demsctl holds: legal holds (/v1/admin/holds: list, place, release). */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static const struct ctl_col hold_cols[] = {
    {"id", "id"},
    {"active", "active"},
    {"case", "case"},
    {"case_reference", "case_reference"},
    {"evidence", "evidence"},
    {"reason", "reason"},
    {"placed_by", "placed_by"},
    {"placed_at", "placed_at"},
    {"placed_seq", "placed_seq"},
    {"released_by", "released_by"},
    {"released_at", "released_at"},
    {"release_reason", "release_reason"},
    {"released_seq", "released_seq"},
    {0},
};

static int run_list(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {
        {"limit", false, NULL}, {"active", true, NULL}, {"released", true, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    bool active = ctl_opt_get(opts, "active") != NULL;
    bool released = ctl_opt_get(opts, "released") != NULL;
    if (active && released)
        return ctl_usage_error("give --active or --released, not both");
    const char *path = active     ? "/v1/admin/holds?active=true"
                       : released ? "/v1/admin/holds?active=false"
                                  : "/v1/admin/holds";
    static const struct ctl_col cols[] = {
        {"id", "id"},
        {"active", "active"},
        {"case", "case_reference"},
        {"evidence", "evidence"},
        {"placed_by", "placed_by"},
        {"placed_at", "placed_at"},
        {"reason", "reason"},
        {0},
    };
    return ctl_one_list(path, "holds", ctl_opt_get(opts, "limit"), cols);
}

static int run_place(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {
        {"case", false, NULL}, {"evidence", false, NULL}, {"reason", false, NULL}, {0}};
    const char *pos[1];
    int n = ctl_parse(argc, argv, opts, pos, 0);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    const char *c = ctl_opt_get(opts, "case"), *e = ctl_opt_get(opts, "evidence");
    const char *reason = ctl_opt_get(opts, "reason");
    if ((c == NULL) == (e == NULL))
        return ctl_usage_error("give exactly one of --case ID and --evidence ID");
    if (reason == NULL)
        return ctl_usage_error("--reason is required (why the material must be kept)");
    json_t *body;
    if (c != NULL) {
        int64_t id;
        if (!ctl_id_arg("--case", c, &id))
            return CTL_USAGE;
        body = json_pack("{s:I,s:s}", "case", (json_int_t)id, "reason", reason);
    } else {
        char ev[65];
        if (!ctl_evidence_arg(e, ev))
            return CTL_USAGE;
        body = json_pack("{s:s,s:s}", "evidence", ev, "reason", reason);
    }
    return ctl_one("POST", "/v1/admin/holds", body, hold_cols, NULL);
}

static int run_release(int argc, char **argv, const struct ctl_cmd *self)
{
    (void)self;
    struct ctl_opt opts[] = {{"reason", false, NULL}, {0}};
    const char *pos[1];
    int64_t id;
    int n = ctl_parse(argc, argv, opts, pos, 1);
    if (n < 0)
        return n == CTL_HELP ? CTL_HELP : CTL_USAGE;
    if (n != 1)
        return ctl_usage_error("the hold id is required");
    if (!ctl_id_arg("HOLD", pos[0], &id))
        return CTL_USAGE;
    if (ctl_opt_get(opts, "reason") == NULL)
        return ctl_usage_error("--reason is required (why the hold ends)");
    char path[64];
    snprintf(path, sizeof(path), "/v1/admin/holds/%lld/release", (long long)id);
    return ctl_one("POST", path, json_pack("{s:s}", "reason", ctl_opt_get(opts, "reason")),
                   hold_cols, NULL);
}

static const struct ctl_cmd cmds[] = {
    {"list", "[--active | --released] [--limit N]",
     "Lists legal holds (GET /v1/admin/holds), all of them or only the active or the\n"
     "released ones.",
     run_list},
    {"place", "(--case ID | --evidence ID) --reason TEXT",
     "Places a legal hold on a case (its exhibits) or on one artefact (POST\n"
     "/v1/admin/holds): nothing held is disposed of. A HOLD_PLACED ledger entry records\n"
     "it.",
     run_place},
    {"release", "HOLD --reason TEXT",
     "Releases a hold (POST /v1/admin/holds/{id}/release; a HOLD_RELEASED ledger entry).",
     run_release},
};

const struct ctl_group ctl_group_holds = {"holds", "place and release legal holds",
                                          "Legal holds (administrators only; docs/operations.md, "
                                          "\"Retention, holds and disposal\").",
                                          cmds, sizeof(cmds) / sizeof(cmds[0])};
