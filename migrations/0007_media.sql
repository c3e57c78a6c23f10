-- SPDX-License-Identifier: Apache-2.0
-- Media previews (docs/media.md): what probing an artefact found, the derived
-- files a preview job made from it, and who has viewed them.
--
-- A derivative is a separate, identified file: its own SHA-256 (= its blob id
-- in the encrypted blob store, like any evidence blob), its size and type,
-- and the exact parameters and FFmpeg library versions that made it, so an
-- independent party can reproduce it. The original is never changed. The
-- rows of one preview are inserted in the same transaction as the
-- PREVIEW_MADE ledger entry that records them (that entry is found by its
-- artefact and type).

ALTER TABLE artefacts ADD COLUMN media jsonb
    CHECK (media IS NULL OR jsonb_typeof(media) = 'object');

CREATE TABLE derivatives (
    artefact text NOT NULL REFERENCES artefacts (id),
    kind text NOT NULL CHECK (kind IN ('proxy', 'poster', 'sprite', 'sprite_vtt')),
    blob text NOT NULL CHECK (blob ~ '^[0-9a-f]{64}$'),
    size bigint NOT NULL CHECK (size >= 0),
    content_type text NOT NULL,
    params jsonb NOT NULL CHECK (jsonb_typeof(params) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (artefact, kind)
);

-- The first view of each derivative kind of an artefact by each user is
-- ledgered (VIEWED); later range requests of the same player are not.
CREATE TABLE evidence_views (
    artefact text NOT NULL REFERENCES artefacts (id),
    user_id bigint NOT NULL REFERENCES users (id),
    kind text NOT NULL CHECK (kind IN ('proxy', 'poster', 'sprite', 'sprite_vtt')),
    first_viewed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (artefact, user_id, kind)
);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (media) ON artefacts TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON derivatives TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON evidence_views TO %I', app);
END
$$;
