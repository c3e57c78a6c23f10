-- SPDX-License-Identifier: Apache-2.0
-- Who may see what, and one spelling per account.
--
-- Usernames are compared and stored case-folded (ASCII lower case: names are
-- [A-Za-z0-9._@-]), so "OFFICERA" can no longer sit beside "officera" as a
-- look-alike account. Existing names are folded here; if two accounts would
-- fold to the same name the migration stops and names them, because which
-- of the two is the real officer is an administrator's decision.
DO $$
DECLARE
    clash text;
BEGIN
    SELECT string_agg(names, '; ') INTO clash FROM (
        SELECT string_agg(username, ', ' ORDER BY id) AS names
        FROM users GROUP BY lower(username) HAVING count(*) > 1) c;
    IF clash IS NOT NULL THEN
        RAISE EXCEPTION 'usernames that differ only in case: %', clash
            USING HINT = 'rename or remove one of each (as the database owner), then start again';
    END IF;
END
$$;
UPDATE users SET username = lower(username) WHERE username <> lower(username);
ALTER TABLE users ADD CONSTRAINT users_username_folded CHECK (username = lower(username));
DELETE FROM login_throttle WHERE key LIKE 'u:%' AND key <> lower(key);

-- A dock assigned to an officer: the officer sees what it uploads.
ALTER TABLE devices ADD COLUMN assigned_user bigint REFERENCES users (id);
CREATE INDEX devices_assigned_user ON devices (assigned_user) WHERE assigned_user IS NOT NULL;

-- Visibility is decided through the uploads that produced an artefact (an
-- artefact uploaded twice is visible to both uploaders): these make that a
-- short index probe per artefact and per officer.
CREATE INDEX uploads_evidence ON uploads (evidence_id) WHERE evidence_id IS NOT NULL;
CREATE INDEX uploads_owner_user_evidence ON uploads (owner_user_id, evidence_id)
    WHERE evidence_id IS NOT NULL;
CREATE INDEX uploads_owner_device_evidence ON uploads (owner_device_id, evidence_id)
    WHERE evidence_id IS NOT NULL;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (assigned_user) ON devices TO %I', app);
END
$$;
