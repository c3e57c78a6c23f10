-- SPDX-License-Identifier: Apache-2.0
-- Retention policies, legal holds and disposal by batch (docs/operations.md,
-- "Retention, holds and disposal").
--
-- A policy (e.g. "no further action", "charged", "convicted - serious")
-- keeps material for period_days counted from its ingestion or from the
-- closure of its case. It is set on a case (for its exhibits) or on an
-- artefact. An artefact is due when every policy that applies to it has run
-- out (the longest wins; a closure-counted policy of a case still open never
-- runs out), and never while a hold is on it or on a case it is or was an
-- exhibit of. An artefact no policy applies to is kept.
--
-- Disposal: a batch lists the artefacts due at that moment; an admin approves
-- it; each artefact is then soft-deleted (DISPOSAL_APPROVED; its content
-- answers 410 and it may be recovered until recover_until, DISPOSAL_RECOVERED);
-- then destroyed by crypto-erasure (DISPOSED; the blob's wrapped key
-- overwritten and the file removed). The artefact row stays as a tombstone.

CREATE TABLE retention_policies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text CHECK (length(description) <= 500),
    period_days integer NOT NULL CHECK (period_days BETWEEN 1 AND 36600),
    counted_from text NOT NULL CHECK (counted_from IN ('ingestion', 'case_closure')),
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_seq bigint
);
CREATE UNIQUE INDEX retention_policies_name ON retention_policies (lower(name));

ALTER TABLE cases ADD COLUMN retention_policy_id bigint REFERENCES retention_policies (id);
ALTER TABLE artefacts ADD COLUMN retention_policy_id bigint REFERENCES retention_policies (id);
-- Soft deletion (recoverable until delete_until) and the DISPOSED entry's index.
ALTER TABLE artefacts ADD COLUMN deleted_at timestamptz;
ALTER TABLE artefacts ADD COLUMN recover_until timestamptz;
ALTER TABLE artefacts ADD COLUMN disposed_seq bigint;
ALTER TABLE artefacts ADD CONSTRAINT artefacts_soft_deleted
    CHECK ((deleted_at IS NULL) = (recover_until IS NULL));

CREATE TABLE legal_holds (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint REFERENCES cases (id),
    artefact text REFERENCES artefacts (id),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    placed_by bigint NOT NULL REFERENCES users (id),
    placed_at timestamptz NOT NULL DEFAULT now(),
    released_by bigint REFERENCES users (id),
    released_at timestamptz,
    release_reason text CHECK (length(release_reason) <= 500),
    placed_seq bigint,
    released_seq bigint,
    CONSTRAINT legal_holds_target CHECK ((case_id IS NULL) <> (artefact IS NULL)),
    CONSTRAINT legal_holds_released CHECK ((released_at IS NULL) = (released_by IS NULL))
);
CREATE INDEX legal_holds_case ON legal_holds (case_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_artefact ON legal_holds (artefact) WHERE released_at IS NULL;

CREATE TABLE disposal_batches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state text NOT NULL DEFAULT 'listing'
        CHECK (state IN ('listing', 'proposed', 'approved', 'soft_deleted', 'done', 'cancelled')),
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    listed_at timestamptz,
    approved_by bigint REFERENCES users (id),
    approved_at timestamptz,
    reason text CHECK (length(reason) <= 500),
    recover_days integer CHECK (recover_days BETWEEN 0 AND 3650),
    recover_until timestamptz,
    finished_at timestamptz,
    error text CHECK (length(error) <= 1000)
);

CREATE TABLE disposal_items (
    batch_id bigint NOT NULL REFERENCES disposal_batches (id),
    artefact text NOT NULL REFERENCES artefacts (id),
    due_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'proposed'
        CHECK (state IN ('proposed', 'soft_deleted', 'recovered', 'skipped', 'destroyed')),
    detail text CHECK (length(detail) <= 300),
    approved_seq bigint,
    disposed_seq bigint,
    PRIMARY KEY (batch_id, artefact)
);
CREATE INDEX disposal_items_artefact ON disposal_items (artefact);

-- Whether a legal hold is on artefact a now: on it, or on a case it is or
-- was an exhibit of.
CREATE FUNCTION dems_artefact_held(a text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL
                   AND (h.artefact = a OR h.case_id IN
                        (SELECT x.case_id FROM exhibits x WHERE x.artefact = a)))
$$;

-- When each artefact not disposed of falls due (NULL: kept), and whether a
-- hold is on it now. One rule for the list, the batch and the erasure.
CREATE VIEW artefact_retention AS
SELECT a.id AS artefact,
       CASE WHEN bool_or(p.due IS NULL) THEN NULL ELSE max(p.due) END AS due_at,
       dems_artefact_held(a.id) AS held
FROM artefacts a
JOIN LATERAL (
    -- The artefact's own policy; counted from closure: of every case it is
    -- an exhibit of (all closed, the last closure), else not yet.
    SELECT CASE rp.counted_from WHEN 'ingestion' THEN a.created_at
           ELSE (SELECT CASE WHEN count(*) > 0 AND bool_and(c.closed_at IS NOT NULL)
                 THEN max(c.closed_at) END
                 FROM exhibits x JOIN cases c ON c.id = x.case_id
                 WHERE x.artefact = a.id AND x.removed_at IS NULL)
           END + make_interval(days => rp.period_days) AS due
    FROM retention_policies rp WHERE rp.id = a.retention_policy_id
    UNION ALL
    -- The policy of each case it is an exhibit of.
    SELECT CASE rp.counted_from WHEN 'ingestion' THEN a.created_at
           ELSE c.closed_at END + make_interval(days => rp.period_days)
    FROM exhibits x JOIN cases c ON c.id = x.case_id
    JOIN retention_policies rp ON rp.id = c.retention_policy_id
    WHERE x.artefact = a.id AND x.removed_at IS NULL
) AS p ON true
WHERE a.disposed_at IS NULL
GROUP BY a.id;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON retention_policies, legal_holds, disposal_batches,'
                   ' disposal_items TO %I', app);
    EXECUTE format('GRANT SELECT ON artefact_retention TO %I', app);
    EXECUTE format('GRANT EXECUTE ON FUNCTION dems_artefact_held(text) TO %I', app);
    EXECUTE format('GRANT UPDATE (retention_policy_id) ON cases TO %I', app);
    EXECUTE format('GRANT UPDATE (retention_policy_id, deleted_at, recover_until, disposed_seq)'
                   ' ON artefacts TO %I', app);
    EXECUTE format('GRANT UPDATE (released_by, released_at, release_reason, released_seq) ON legal_holds TO %I',
                   app);
    EXECUTE format('GRANT UPDATE (state, listed_at, approved_by, approved_at, reason, recover_days,'
                   ' recover_until, finished_at, error) ON disposal_batches TO %I', app);
    EXECUTE format('GRANT UPDATE (state, detail, approved_seq, disposed_seq) ON disposal_items'
                   ' TO %I', app);
    EXECUTE format('GRANT UPDATE (crop_blob) ON face_tracks TO %I', app);
END
$$;
