-- SPDX-License-Identifier: Apache-2.0
-- Unfinished uploads are capped per owner (upload_max_unfinished_per_user,
-- upload_max_unfinished_per_device): each creation counts its owner's
-- receiving uploads, and the first two partial indexes make that count a
-- short probe. Housekeeping retries uploads that are complete but not yet
-- recorded as evidence (a ledger or database failure at that moment); the
-- third finds them without reading the whole table.
CREATE INDEX uploads_receiving_user ON uploads (owner_user_id) WHERE state = 'receiving';
CREATE INDEX uploads_receiving_device ON uploads (owner_device_id) WHERE state = 'receiving';
CREATE INDEX uploads_unrecorded ON uploads (updated_at)
    WHERE state = 'complete' AND evidence_id IS NULL;
