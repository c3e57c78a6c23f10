-- SPDX-License-Identifier: Apache-2.0
-- Disclosure links for the defence (docs/api.md, "Disclosure to the
-- defence"): the link table of 0012 gains its court bundle, the count of
-- wrong passcodes and the time it locked; a link holder who opens the link
-- gets a session (the dems_disclosure cookie, stored only as its SHA-256);
-- the first view of each preview kind of an exhibit through a link is
-- ledgered once, like evidence_views for staff.

ALTER TABLE disclosures
    ADD COLUMN bundle_id bigint REFERENCES bundles (id),
    ADD COLUMN passcode_failures integer NOT NULL DEFAULT 0 CHECK (passcode_failures >= 0),
    ADD COLUMN locked_at timestamptz;

CREATE TABLE disclosure_sessions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    disclosure_id bigint NOT NULL REFERENCES disclosures (id),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    address text NOT NULL CHECK (length(address) <= 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX disclosure_sessions_link ON disclosure_sessions (disclosure_id);

CREATE TABLE disclosure_views (
    disclosure_id bigint NOT NULL REFERENCES disclosures (id),
    artefact text NOT NULL REFERENCES artefacts (id),
    kind text NOT NULL CHECK (kind IN ('proxy', 'poster', 'sprite', 'sprite_vtt')),
    first_viewed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (disclosure_id, artefact, kind)
);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON disclosure_sessions, disclosure_views TO %I', app);
    EXECUTE format('GRANT UPDATE (passcode_failures, locked_at) ON disclosures TO %I', app);
    -- POST takes the link's and its bundle's ids first, to name them in the DISCLOSED entry.
    EXECUTE format('GRANT USAGE ON SEQUENCE disclosures_id_seq TO %I', app);
END
$$;
