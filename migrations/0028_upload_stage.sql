-- SPDX-License-Identifier: Apache-2.0
-- Uploads staged in an object store, continued by any node
-- (server/api/upload_stage.c; docs/architecture.md, "Uploads across nodes").
-- With the local store these stay at their defaults.

ALTER TABLE uploads
    -- Claims: every request that writes an upload takes the next number, and
    -- its later statements are fenced by it.
    ADD COLUMN stage_gen bigint NOT NULL DEFAULT 0,
    -- The claim whose state is committed below (0: none yet).
    ADD COLUMN stage_ver bigint NOT NULL DEFAULT 0,
    -- Bytes the committed state holds: what HEAD answers.
    ADD COLUMN stage_offset bigint NOT NULL DEFAULT 0 CHECK (stage_offset >= 0),
    -- Parts of the committed state staged in the store; their tags are
    -- stage_tags[1..stage_parts] (later entries are parts not committed).
    ADD COLUMN stage_parts integer NOT NULL DEFAULT 0 CHECK (stage_parts >= 0),
    ADD COLUMN stage_tags text[] NOT NULL DEFAULT '{}',
    -- The last part number handed out (the stores number parts up to 10,000).
    ADD COLUMN stage_next integer NOT NULL DEFAULT 0 CHECK (stage_next BETWEEN 0 AND 10000),
    -- The store's stage: S3's UploadId or the Azure block-id nonce.
    ADD COLUMN stage_handle text CHECK (length(stage_handle) < 512),
    -- The committed state, sealed under a key derived from the master key
    -- and bound to the upload and stage_ver (server/store/staging_remote.c).
    ADD COLUMN stage_state bytea CHECK (length(stage_state) < 70000);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (stage_gen, stage_ver, stage_offset, stage_parts, stage_tags,'
                   ' stage_next, stage_handle, stage_state) ON uploads TO %I', app);
END
$$;
