-- SPDX-License-Identifier: Apache-2.0
-- ZIP archives the public submits are unpacked (docs/media.md, "Unpacking
-- archives"): the archive stays the original evidence; each member kept is
-- an artefact of its own (content-addressed as any other), recorded as
-- derived from the archive with its path there, and each member left out is
-- listed with why. An artefact may be in several archives, or uploaded on
-- its own too, so the derivation is a table rather than a column.
--
-- Any artefact also gets the format its first bytes show (dems_sniff), and
-- is marked as needing conversion when no decoder could read it.

ALTER TABLE artefacts ADD COLUMN format text CHECK (format ~ '^[a-z0-9][a-z0-9-]{0,31}$');
ALTER TABLE artefacts ADD COLUMN needs_conversion boolean NOT NULL DEFAULT false;

-- The outcome of unpacking one archive, written once when it ends: done
-- (members extracted or listed), refused (a bound passed: nothing kept) or
-- failed (no readable ZIP). While the unpack job runs there is no row.
CREATE TABLE archive_unpacks (
    archive text PRIMARY KEY REFERENCES artefacts (id),
    state text NOT NULL CHECK (state IN ('done', 'refused', 'failed')),
    entries integer NOT NULL CHECK (entries >= 0),
    extracted integer NOT NULL CHECK (extracted >= 0),
    skipped integer NOT NULL CHECK (skipped >= 0),
    bytes bigint NOT NULL CHECK (bytes >= 0),
    error text CHECK (length(error) <= 1000),
    libarchive text CHECK (length(libarchive) <= 100),
    finished_at timestamptz NOT NULL DEFAULT now()
);

-- Each member of an archive that is not a directory, by its place in the
-- archive: extracted (artefact set, inserted with its INGESTED entry) or
-- skipped (the reason and a detail). path is the member's name, or its
-- printable form (escapes) when it was unsafe.
CREATE TABLE archive_members (
    archive text NOT NULL REFERENCES artefacts (id),
    idx integer NOT NULL CHECK (idx >= 0),
    path text NOT NULL CHECK (length(path) BETWEEN 1 AND 1100),
    artefact text REFERENCES artefacts (id),
    size bigint CHECK (size >= 0),
    format text CHECK (format ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    kind text CHECK (kind IN ('video', 'image', 'audio', 'archive', 'other', 'unknown')),
    skipped text CHECK (skipped IN ('symlink', 'hardlink', 'device', 'encrypted',
                                    'nested_archive', 'unsafe_name', 'too_large', 'unreadable')),
    detail text CHECK (length(detail) <= 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (archive, idx),
    CHECK ((artefact IS NULL) = (skipped IS NOT NULL))
);
CREATE INDEX archive_members_artefact ON archive_members (artefact) WHERE artefact IS NOT NULL;

-- What the public submitted is seen by the case's members (0019): the
-- members extracted from a submitted archive as well.
CREATE OR REPLACE VIEW submission_viewers AS
    SELECT u.evidence_id AS artefact, m.user_id
    FROM uploads u
    JOIN submissions s ON s.id = u.owner_submission_id
    JOIN submission_links l ON l.id = s.link_id
    JOIN case_members m ON m.case_id = l.case_id AND m.removed_at IS NULL
    WHERE u.evidence_id IS NOT NULL AND s.state <> 'disposed'
    UNION ALL
    SELECT am.artefact, m.user_id
    FROM archive_members am
    JOIN uploads u ON u.evidence_id = am.archive
    JOIN submissions s ON s.id = u.owner_submission_id
    JOIN submission_links l ON l.id = s.link_id
    JOIN case_members m ON m.case_id = l.case_id AND m.removed_at IS NULL
    WHERE am.artefact IS NOT NULL AND s.state <> 'disposed';

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (format, needs_conversion) ON artefacts TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON archive_unpacks, archive_members TO %I', app);
END
$$;
