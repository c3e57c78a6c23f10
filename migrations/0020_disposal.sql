-- SPDX-License-Identifier: Apache-2.0
-- Disposal (docs/operations.md, "Retention and disposal"): an artefact whose
-- retention has ended is disposed of: its blob and its derivatives' blobs
-- are deleted, its row stays (so the ledger's entries about it still name a
-- known artefact) with the time of its DISPOSED entry. The first use is the
-- material of rejected public submissions (portal_reject_retention_days).

ALTER TABLE artefacts ADD COLUMN disposed_at timestamptz;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (disposed_at) ON artefacts TO %I', app);
END
$$;
