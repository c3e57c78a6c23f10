/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The evidence visibility rule as SQL, shared by the API (server/api) and
 * the jobs that act for a user (a face search): one definition, so a search
 * never touches footage its searcher could not open.
 */
#ifndef DEMSD_ACCESS_H
#define DEMSD_ACCESS_H

/*
 * Who sees which evidence (docs/api.md, "Who sees what"): an SQL condition,
 * true when the caller may see the artefact whose id is the expression id.
 * Parameter all is 'true' for administrators, who see everything. Anyone
 * else (user id in parameter uid) sees:
 *  - what they or a dock assigned to them uploaded (any upload that produced
 *    the artefact counts, so two officers who upload the same file both see it);
 *  - exhibits of the cases they are a current member of (any case role);
 *  - exhibits a live share gives them (a prosecutor: not revoked, not expired,
 *    the whole case or that exhibit), when the share also satisfies share_cond
 *    (an SQL condition on the share "vs", e.g. "vs.can_download");
 *  - material the public submitted through a link of a case they are a
 *    current member of (triage), until it is disposed of.
 * Removed exhibits and members give nothing.
 * The same rule with share_cond "vs.can_download" is the SQL function
 * dems_may_download (migrations/0029_ledger_append_fast.sql, used by
 * downloads): a change here is made there too.
 */
#define DEMS_SEES_SQL(id, uid, all, share_cond)                                                    \
    "(" all "::boolean OR EXISTS (SELECT 1 FROM uploads vu WHERE vu.evidence_id = " id             \
    " AND (vu.owner_user_id = " uid "::bigint OR vu.owner_device_id IN"                            \
    " (SELECT vd.id FROM devices vd WHERE vd.assigned_user = " uid "::bigint)))"                   \
    " OR EXISTS (SELECT 1 FROM exhibits vx WHERE vx.artefact = " id " AND vx.removed_at IS NULL"   \
    " AND (EXISTS (SELECT 1 FROM case_members vm WHERE vm.case_id = vx.case_id"                    \
    " AND vm.user_id = " uid "::bigint AND vm.removed_at IS NULL)"                                 \
    " OR EXISTS (SELECT 1 FROM shares vs WHERE vs.case_id = vx.case_id"                            \
    " AND vs.prosecutor = " uid "::bigint AND vs.revoked_at IS NULL AND vs.expires_at > now()"     \
    " AND (" share_cond ") AND (vs.whole_case OR EXISTS (SELECT 1 FROM share_exhibits vse"         \
    " WHERE vse.share_id = vs.id AND vse.exhibit_id = vx.id)))))"                                  \
    " OR EXISTS (SELECT 1 FROM submission_viewers vp WHERE vp.artefact = " id                      \
    " AND vp.user_id = " uid "::bigint))"

#endif
