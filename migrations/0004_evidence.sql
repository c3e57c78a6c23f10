-- SPDX-License-Identifier: Apache-2.0
-- Evidence: one row per distinct artefact (id = SHA-256 of the plaintext, so
-- identical content is stored once). The bytes live encrypted in the blob
-- store (data_dir/blobs), each with its own key wrapped by the master key in
-- the blob's header; nothing secret is in this table. Every upload that
-- produced an artefact points at it; each such ingest has its own INGESTED
-- ledger entry.

CREATE TABLE artefacts (
    id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    size bigint NOT NULL CHECK (size >= 0),
    content_type text,
    filename text,
    metadata jsonb NOT NULL,
    uploaded_by bigint NOT NULL REFERENCES users (id),
    upload_id text NOT NULL REFERENCES uploads (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE uploads ADD COLUMN evidence_id text REFERENCES artefacts (id);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON artefacts TO %I', app);
    EXECUTE format('GRANT UPDATE (evidence_id) ON uploads TO %I', app);
END
$$;
