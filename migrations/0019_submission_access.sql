-- SPDX-License-Identifier: Apache-2.0
-- Who may see what the public submitted (docs/api.md, "Who sees what"): the
-- current members of the case whose link it came through, until it is
-- disposed of. A view, so the access condition in every evidence query
-- stays short and the planner inlines it.

CREATE VIEW submission_viewers AS
    SELECT u.evidence_id AS artefact, m.user_id
    FROM uploads u
    JOIN submissions s ON s.id = u.owner_submission_id
    JOIN submission_links l ON l.id = s.link_id
    JOIN case_members m ON m.case_id = l.case_id AND m.removed_at IS NULL
    WHERE u.evidence_id IS NOT NULL AND s.state <> 'disposed';

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT ON submission_viewers TO %I', app);
END
$$;
