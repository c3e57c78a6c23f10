-- SPDX-License-Identifier: Apache-2.0
-- The public submission portal (docs/api.md, "Public submissions"): links an
-- officer sends to a member of the public (a request: one submission) or
-- publishes for an incident (an appeal: many), the submissions made through
-- them, and the uploads a submitter owns. Tokens are stored only as their
-- SHA-256. A submission's material is evidence (artefacts, INGESTED) but not
-- an exhibit until an officer of the case accepts it in triage.

CREATE TABLE submission_links (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    kind text NOT NULL CHECK (kind IN ('request', 'appeal')),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    message text NOT NULL CHECK (length(message) <= 4000),
    -- A request may name whom it is for; the submitter sees it, to confirm.
    submitter_name text CHECK (length(submitter_name) <= 200),
    submitter_contact text CHECK (length(submitter_contact) <= 200),
    contact_required boolean NOT NULL DEFAULT false,
    -- Limits of one submission, and of the link as a whole.
    max_files integer NOT NULL CHECK (max_files BETWEEN 1 AND 1000),
    max_bytes bigint NOT NULL CHECK (max_bytes > 0),
    max_submissions integer NOT NULL CHECK (max_submissions BETWEEN 1 AND 100000),
    link_max_bytes bigint NOT NULL CHECK (link_max_bytes > 0),
    daily_max_bytes bigint NOT NULL CHECK (daily_max_bytes > 0),
    max_concurrent integer NOT NULL CHECK (max_concurrent BETWEEN 1 AND 1000),
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_by bigint REFERENCES users (id),
    CHECK (kind = 'appeal' OR max_submissions = 1)
);
CREATE INDEX submission_links_case ON submission_links (case_id);

CREATE TABLE submissions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_id bigint NOT NULL REFERENCES submission_links (id),
    reference text NOT NULL UNIQUE CHECK (reference ~ '^S-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$'),
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    -- The statement, as the submitter gave it (lengths bounded by demsd too).
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 4000),
    location text NOT NULL CHECK (length(location) BETWEEN 1 AND 500),
    recorded_from timestamptz,
    recorded_to timestamptz,
    clock_offset_seconds integer CHECK (abs(clock_offset_seconds) <= 7 * 86400),
    contact_name text CHECK (length(contact_name) <= 200),
    contact_email text CHECK (length(contact_email) <= 254),
    contact_phone text CHECK (length(contact_phone) <= 40),
    declared_at timestamptz NOT NULL,
    address text NOT NULL CHECK (length(address) <= 64),
    state text NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'submitted', 'accepted', 'rejected', 'disposed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    submitted_at timestamptz,
    decided_by bigint REFERENCES users (id),
    decided_at timestamptz,
    reason text CHECK (length(reason) <= 1000),
    dispose_after timestamptz,
    disposed_at timestamptz
);
CREATE INDEX submissions_link ON submissions (link_id);
CREATE INDEX submissions_dispose ON submissions (dispose_after)
    WHERE state = 'rejected' AND disposed_at IS NULL;

-- A submitter's uploads; exactly one owner per upload.
ALTER TABLE uploads ADD COLUMN owner_submission_id bigint REFERENCES submissions (id);
ALTER TABLE uploads DROP CONSTRAINT uploads_one_owner;
ALTER TABLE uploads ADD CONSTRAINT uploads_one_owner
    CHECK (num_nonnulls(owner_user_id, owner_device_id, owner_submission_id) = 1);
CREATE INDEX uploads_submission ON uploads (owner_submission_id)
    WHERE owner_submission_id IS NOT NULL;
ALTER TABLE artefacts ADD COLUMN uploaded_by_submission bigint REFERENCES submissions (id);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON submission_links, submissions TO %I', app);
    EXECUTE format('GRANT UPDATE (revoked_at, revoked_by) ON submission_links TO %I', app);
    EXECUTE format('GRANT UPDATE (state, submitted_at, decided_by, decided_at, reason,'
                   ' dispose_after, disposed_at) ON submissions TO %I', app);
    -- Creating takes the row's id first, to name it in the ledger entry.
    EXECUTE format('GRANT USAGE ON SEQUENCE submission_links_id_seq, submissions_id_seq TO %I',
                   app);
END
$$;
