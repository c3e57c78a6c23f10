-- SPDX-License-Identifier: Apache-2.0
-- Cases, their members and exhibits, shares with prosecutors and disclosure
-- links for the defence (docs/api.md, "Cases"). Nothing here is ever deleted
-- by the application: a removed exhibit or member, a revoked share or link
-- keeps its row with the time and the actor, and every change is a ledger
-- entry as well (CASE_CREATED, EXHIBIT_ADDED, ...).

CREATE TABLE cases (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The force's own reference (format from the case_reference_pattern
    -- setting, checked by demsd), unique whatever its case.
    reference text NOT NULL CHECK (length(reference) BETWEEN 1 AND 64),
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    offence text CHECK (length(offence) BETWEEN 1 AND 200),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    officer_in_case bigint REFERENCES users (id),
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz,
    CONSTRAINT cases_closed CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE UNIQUE INDEX cases_reference ON cases (lower(reference));
CREATE INDEX cases_newest ON cases (updated_at DESC, id DESC);

-- Who works on a case: lead (manages members, shares, exhibits),
-- investigator (adds exhibits, requests bundles), viewer (reads).
CREATE TABLE case_members (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    user_id bigint NOT NULL REFERENCES users (id),
    role text NOT NULL CHECK (role IN ('lead', 'investigator', 'viewer')),
    added_by bigint NOT NULL REFERENCES users (id),
    added_at timestamptz NOT NULL DEFAULT now(),
    removed_by bigint REFERENCES users (id),
    removed_at timestamptz,
    CONSTRAINT case_members_removed CHECK ((removed_at IS NULL) = (removed_by IS NULL))
);
CREATE UNIQUE INDEX case_members_current ON case_members (case_id, user_id)
    WHERE removed_at IS NULL;
CREATE INDEX case_members_user ON case_members (user_id, case_id) WHERE removed_at IS NULL;

-- An artefact as an exhibit of a case; one artefact may be an exhibit of
-- several cases, once per case at a time.
CREATE TABLE exhibits (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    artefact text NOT NULL REFERENCES artefacts (id),
    reference text NOT NULL CHECK (length(reference) BETWEEN 1 AND 32),
    description text CHECK (length(description) BETWEEN 1 AND 2000),
    tags text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 32),
    added_by bigint NOT NULL REFERENCES users (id),
    added_at timestamptz NOT NULL DEFAULT now(),
    removed_by bigint REFERENCES users (id),
    removed_at timestamptz,
    CONSTRAINT exhibits_removed CHECK ((removed_at IS NULL) = (removed_by IS NULL))
);
CREATE UNIQUE INDEX exhibits_reference ON exhibits (case_id, lower(reference))
    WHERE removed_at IS NULL;
CREATE UNIQUE INDEX exhibits_artefact_once ON exhibits (case_id, artefact)
    WHERE removed_at IS NULL;
-- Visibility probes: the cases an artefact is an exhibit of.
CREATE INDEX exhibits_artefact ON exhibits (artefact) WHERE removed_at IS NULL;
CREATE INDEX exhibits_tags ON exhibits USING gin (tags) WHERE removed_at IS NULL;

-- A case, or chosen exhibits of it, shared with a prosecutor until a time.
CREATE TABLE shares (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    prosecutor bigint NOT NULL REFERENCES users (id),
    whole_case boolean NOT NULL,
    can_download boolean NOT NULL DEFAULT false,
    expires_at timestamptz NOT NULL,
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_by bigint REFERENCES users (id),
    revoked_at timestamptz,
    CONSTRAINT shares_revoked CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX shares_prosecutor ON shares (prosecutor, case_id);
CREATE INDEX shares_case ON shares (case_id, id);
CREATE TABLE share_exhibits (
    share_id bigint NOT NULL REFERENCES shares (id),
    exhibit_id bigint NOT NULL REFERENCES exhibits (id),
    PRIMARY KEY (share_id, exhibit_id)
);

-- Read-only links a prosecutor gives the defence: chosen exhibits, a
-- secret token (only its SHA-256 is kept) and optionally a passcode
-- given out of band (Argon2id, like passwords).
CREATE TABLE disclosures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    token_sha256 text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    passcode_hash text,
    label text CHECK (length(label) BETWEEN 1 AND 200),
    expires_at timestamptz NOT NULL,
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_by bigint REFERENCES users (id),
    revoked_at timestamptz,
    CONSTRAINT disclosures_revoked CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX disclosures_case ON disclosures (case_id, id);
CREATE TABLE disclosure_exhibits (
    disclosure_id bigint NOT NULL REFERENCES disclosures (id),
    exhibit_id bigint NOT NULL REFERENCES exhibits (id),
    PRIMARY KEY (disclosure_id, exhibit_id)
);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON cases, case_members, exhibits, shares, '
                   'share_exhibits, disclosures, disclosure_exhibits TO %I', app);
    EXECUTE format('GRANT UPDATE (title, offence, status, officer_in_case, updated_at, '
                   'closed_at) ON cases TO %I', app);
    EXECUTE format('GRANT UPDATE (role, removed_by, removed_at) ON case_members TO %I', app);
    EXECUTE format('GRANT UPDATE (description, tags, removed_by, removed_at) ON exhibits TO %I',
                   app);
    EXECUTE format('GRANT UPDATE (expires_at, revoked_by, revoked_at) ON shares TO %I', app);
    EXECUTE format('GRANT UPDATE (revoked_by, revoked_at) ON disclosures TO %I', app);
END
$$;
