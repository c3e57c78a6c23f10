/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsctl audit: reports from the custody ledger. custody lists every
 * ledger entry naming one artefact (GET /v1/evidence/{id}/custody).
 */
#include <stdio.h>

#include "ctl.h"

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

static const struct ctl_cmd cmds[] = {
    {"custody", "EVIDENCE [--limit N]",
     "The chain of custody of one artefact: every ledger entry naming it, oldest first\n"
     "(GET /v1/evidence/{id}/custody): who did what, when. --json gives the entries as\n"
     "the server sends them (each entry's canonical bytes parsed; docs/ledger.md).",
     run_custody},
};

const struct ctl_group ctl_group_audit = {"audit", "reports from the custody ledger",
                                          "Audit reports from the custody ledger.", cmds,
                                          sizeof(cmds) / sizeof(cmds[0])};
