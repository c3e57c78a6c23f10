-- SPDX-License-Identifier: Apache-2.0
-- Resumable uploads (tus 1.0.0). Bytes live in staging files under the data
-- directory; this table holds each upload's declared length, validated
-- metadata, owner, state and, once complete, the SHA-256 of exactly the bytes
-- received. Rows are never deleted by the application: a terminated or
-- expired upload keeps its row with its state.

CREATE TABLE uploads (
    id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    owner_user_id bigint NOT NULL REFERENCES users (id),
    length bigint NOT NULL CHECK (length >= 0),
    metadata jsonb NOT NULL,
    declared_sha256 text CHECK (declared_sha256 ~ '^[0-9a-f]{64}$'),
    state text NOT NULL DEFAULT 'receiving'
        CHECK (state IN ('receiving', 'complete', 'rejected', 'terminated', 'expired')),
    reason text,
    sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX uploads_receiving_expiry ON uploads (expires_at) WHERE state = 'receiving';

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON uploads TO %I', app);
    EXECUTE format('GRANT UPDATE (state, reason, sha256, updated_at) ON uploads TO %I', app);
END
$$;
