-- SPDX-License-Identifier: Apache-2.0
-- A public submission's receipt (docs/api.md, "Receipts") proves its
-- SUBMITTED entry: the entry's sequence number is kept with the row, set in
-- the transaction that appends the entry.

ALTER TABLE submissions ADD COLUMN submitted_seq bigint;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (submitted_seq) ON submissions TO %I', app);
END
$$;
