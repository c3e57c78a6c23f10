-- SPDX-License-Identifier: Apache-2.0
-- Gallery imports (docs/face-search.md, "Importing a gallery"): an admin
-- uploads a ZIP of images with a manifest.json by tus (an artefact like any
-- upload, so its INGESTED entry proves what was imported) and asks for it to
-- be imported into a gallery. A face-import job unpacks it in the sandbox,
-- checks the manifest, and in the transaction of its FACE_GALLERY_IMPORTED
-- entry inserts one pending subject (and its face-enrol job) per accepted
-- line; each enrolment is then ledgered as FACE_ENROLLED as for one image.

CREATE TABLE face_imports (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gallery_id bigint NOT NULL REFERENCES face_galleries (id),
    archive text NOT NULL REFERENCES artefacts (id),
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'done', 'failed', 'refused')),
    error text CHECK (length(error) <= 1000),
    entries integer CHECK (entries >= 0),  -- lines of the manifest
    accepted integer CHECK (accepted >= 0), -- subjects inserted (pending enrolment)
    rejected integer CHECK (rejected >= 0),
    -- The lines refused: [{"line", "file", "reference", "reason", "detail"}].
    rejections jsonb,
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    ledger_seq bigint
);
CREATE INDEX face_imports_gallery ON face_imports (gallery_id, id);

ALTER TABLE face_subjects ADD COLUMN import_id bigint REFERENCES face_imports (id);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON face_imports TO %I', app);
    EXECUTE format('GRANT UPDATE (state, error, entries, accepted, rejected, rejections,'
                   ' finished_at, ledger_seq) ON face_imports TO %I', app);
END
$$;
