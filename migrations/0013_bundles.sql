-- SPDX-License-Identifier: Apache-2.0
-- Court bundles (docs/bundle.md, docs/api.md "Bundles"): a request for one
-- self-verifying ZIP of a case's exhibits, made by a "bundle" job in a
-- worker into the encrypted blob store. The row is the job's progress and
-- result; a done bundle names its blob (result_sha256) and the BUNDLE_MADE
-- ledger entry that recorded it. Rows are never deleted.

CREATE TABLE bundles (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    requested_by bigint NOT NULL REFERENCES users (id),
    -- The exhibits chosen (exhibits.id, ascending), fixed at the request.
    exhibits bigint[] NOT NULL CHECK (cardinality(exhibits) BETWEEN 1 AND 10000),
    include_previews boolean NOT NULL DEFAULT false,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    bytes_done bigint NOT NULL DEFAULT 0 CHECK (bytes_done >= 0),
    bytes_total bigint NOT NULL DEFAULT 0 CHECK (bytes_total >= 0),
    error text CHECK (length(error) <= 2000),
    job_id bigint REFERENCES jobs (id),
    result_sha256 text CHECK (result_sha256 ~ '^[0-9a-f]{64}$'),
    result_size bigint CHECK (result_size >= 0),
    made_seq bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    CONSTRAINT bundles_done CHECK ((state = 'done') =
        (result_sha256 IS NOT NULL AND result_size IS NOT NULL AND finished_at IS NOT NULL))
);
CREATE INDEX bundles_case ON bundles (case_id, id);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON bundles TO %I', app);
    -- POST takes the id first, to name it in the job queued with the row.
    EXECUTE format('GRANT USAGE ON SEQUENCE bundles_id_seq TO %I', app);
    EXECUTE format('GRANT UPDATE (state, bytes_done, bytes_total, error, job_id, result_sha256, '
                   'result_size, made_seq, started_at, finished_at) ON bundles TO %I', app);
END
$$;
