-- SPDX-License-Identifier: Apache-2.0
-- Face search (docs/face-search.md): the permission, per-case indexing of
-- footage into tracks, custody-image galleries, and searches with their
-- results. Descriptors live here (the source of truth); the vector index
-- each worker keeps under the data directory is a cache rebuilt from them.

-- An admin grants the permission (ledgered USER_UPDATED); nobody has it by default.
ALTER TABLE users ADD COLUMN face_search boolean NOT NULL DEFAULT false;

-- Indexing is enabled per case by a holder of the permission (ledgered).
ALTER TABLE cases ADD COLUMN face_indexing_since timestamptz;
ALTER TABLE cases ADD COLUMN face_indexing_by bigint REFERENCES users (id);

-- One indexing of an artefact (whichever cases it belongs to).
CREATE TABLE face_index (
    artefact text PRIMARY KEY REFERENCES artefacts (id),
    -- A small number for the artefact: the vector cache's filter is a bitmap over it.
    n bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'done', 'skipped', 'failed')),
    error text CHECK (length(error) <= 1000),
    frames integer CHECK (frames >= 0),
    detections integer CHECK (detections >= 0),
    tracks integer CHECK (tracks >= 0),
    duration double precision,
    params jsonb,
    ledger_seq bigint,
    queued_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- A face followed through a video (or one face of an image).
CREATE TABLE face_tracks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    artefact text NOT NULL REFERENCES artefacts (id),
    t_first double precision NOT NULL,
    t_last double precision NOT NULL CHECK (t_last >= t_first),
    detections integer NOT NULL CHECK (detections > 0),
    best_t double precision NOT NULL,
    best_box jsonb NOT NULL,
    score real NOT NULL,
    quality real NOT NULL,
    crop_blob text CHECK (crop_blob ~ '^[0-9a-f]{64}$'),
    crop_size integer
);
CREATE INDEX face_tracks_artefact ON face_tracks (artefact, t_first);

CREATE TABLE face_galleries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text CHECK (length(description) BETWEEN 1 AND 2000),
    created_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX face_galleries_name ON face_galleries (lower(name));

-- Who may search a gallery (besides holding the permission).
CREATE TABLE face_gallery_users (
    gallery_id bigint NOT NULL REFERENCES face_galleries (id),
    user_id bigint NOT NULL REFERENCES users (id),
    granted_by bigint NOT NULL REFERENCES users (id),
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gallery_id, user_id)
);

-- An enrolled person: a reference (e.g. a custody record number) and one
-- image. Removal deletes the descriptors and the image and crop blobs; the
-- row stays as a tombstone naming the reference, as the ledger does.
CREATE TABLE face_subjects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gallery_id bigint NOT NULL REFERENCES face_galleries (id),
    reference text NOT NULL CHECK (length(reference) BETWEEN 1 AND 64),
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'enrolled', 'failed', 'removed')),
    error text CHECK (length(error) <= 1000),
    image_sha256 text NOT NULL CHECK (image_sha256 ~ '^[0-9a-f]{64}$'),
    image_blob text CHECK (image_blob ~ '^[0-9a-f]{64}$'),
    crop_blob text CHECK (crop_blob ~ '^[0-9a-f]{64}$'),
    crop_size integer,
    quality real,
    enrolled_by bigint NOT NULL REFERENCES users (id),
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    enrolled_seq bigint,
    removed_by bigint REFERENCES users (id),
    removed_at timestamptz,
    removed_reason text CHECK (length(removed_reason) BETWEEN 1 AND 500),
    CONSTRAINT face_subjects_removed CHECK ((state = 'removed') = (removed_at IS NOT NULL))
);
CREATE UNIQUE INDEX face_subjects_reference ON face_subjects (gallery_id, lower(reference))
    WHERE state <> 'removed';

-- 128 float32 (little-endian) of a track or a subject.
CREATE TABLE face_descriptors (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    track_id bigint REFERENCES face_tracks (id) ON DELETE CASCADE,
    subject_id bigint REFERENCES face_subjects (id) ON DELETE CASCADE,
    t double precision,
    vec bytea NOT NULL CHECK (octet_length(vec) = 512),
    CONSTRAINT face_descriptors_owner CHECK ((track_id IS NULL) <> (subject_id IS NULL))
);
CREATE INDEX face_descriptors_track ON face_descriptors (track_id) WHERE track_id IS NOT NULL;
CREATE INDEX face_descriptors_subject ON face_descriptors (subject_id)
    WHERE subject_id IS NOT NULL;

-- Every deletion of a descriptor, so a worker's cached index catches up
-- (removes it, compacts and rewrites its file) without rescanning.
CREATE TABLE face_descriptor_removals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    descriptor_id bigint NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION face_descriptor_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO face_descriptor_removals (descriptor_id) VALUES (OLD.id);
    RETURN OLD;
END
$$;
CREATE TRIGGER face_descriptors_removed AFTER DELETE ON face_descriptors
    FOR EACH ROW EXECUTE FUNCTION face_descriptor_removed();

-- Writers of descriptors take one transaction-scoped lock before their
-- first row gets its id, so descriptor (and removal) ids become visible in
-- increasing order: a cache that has read every id up to N never misses a
-- smaller one committed later.
CREATE FUNCTION face_descriptors_serialise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7361000001);
    RETURN NULL;
END
$$;
CREATE TRIGGER face_descriptors_order BEFORE INSERT OR DELETE ON face_descriptors
    FOR EACH STATEMENT EXECUTE FUNCTION face_descriptors_serialise();

-- Names this database's descriptors, so that a worker never takes a cache
-- file made from another database (a restore, a second installation) for its own.
CREATE TABLE face_cache_epoch (
    epoch text NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text)
);
INSERT INTO face_cache_epoch DEFAULT VALUES;

CREATE TABLE face_searches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES cases (id),
    user_id bigint NOT NULL REFERENCES users (id),
    scope text NOT NULL CHECK (scope IN ('footage', 'gallery')),
    gallery_id bigint REFERENCES face_galleries (id),
    probe_track bigint REFERENCES face_tracks (id),
    probe_sha256 text NOT NULL CHECK (probe_sha256 ~ '^[0-9a-f]{64}$'),
    probe_blob text CHECK (probe_blob ~ '^[0-9a-f]{64}$'),
    purpose text NOT NULL CHECK (length(purpose) BETWEEN 1 AND 500),
    legal_basis text NOT NULL CHECK (length(legal_basis) BETWEEN 1 AND 200),
    authorisation text NOT NULL CHECK (length(authorisation) BETWEEN 1 AND 200),
    threshold real NOT NULL CHECK (threshold > 0 AND threshold <= 1),
    max_results integer NOT NULL CHECK (max_results BETWEEN 1 AND 200),
    state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done', 'failed')),
    error text CHECK (length(error) <= 1000),
    results integer,
    ledger_seq bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT face_searches_gallery CHECK ((scope = 'gallery') = (gallery_id IS NOT NULL))
);
CREATE INDEX face_searches_case ON face_searches (case_id, id);

CREATE TABLE face_search_results (
    search_id bigint NOT NULL REFERENCES face_searches (id),
    rank integer NOT NULL CHECK (rank >= 1),
    score real NOT NULL,
    track_id bigint REFERENCES face_tracks (id),
    subject_id bigint REFERENCES face_subjects (id),
    t double precision,
    PRIMARY KEY (search_id, rank),
    CONSTRAINT face_search_results_owner CHECK ((track_id IS NULL) <> (subject_id IS NULL))
);

-- Queues the indexing of an artefact of a case whose indexing is enabled
-- (once per artefact, whichever case asks first).
CREATE FUNCTION dems_face_index_queue(p_artefact text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO face_index (artefact) VALUES (p_artefact) ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM dems_enqueue_job('face-index', jsonb_build_object('evidence', p_artefact),
                                 p_artefact);
    END IF;
END
$$;

-- New exhibits of an indexed case are indexed too, whichever route added them.
CREATE FUNCTION face_exhibit_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM cases c WHERE c.id = NEW.case_id
               AND c.face_indexing_since IS NOT NULL) THEN
        PERFORM dems_face_index_queue(NEW.artefact);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER exhibits_face_index AFTER INSERT ON exhibits
    FOR EACH ROW EXECUTE FUNCTION face_exhibit_added();

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT UPDATE (face_search) ON users TO %I', app);
    EXECUTE format('GRANT UPDATE (face_indexing_since, face_indexing_by) ON cases TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON face_index TO %I', app);
    EXECUTE format('GRANT UPDATE (state, error, frames, detections, tracks, duration, params,'
                   ' ledger_seq, queued_at, finished_at) ON face_index TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON face_tracks TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON face_galleries TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON face_gallery_users TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON face_subjects TO %I', app);
    EXECUTE format('GRANT UPDATE (state, error, image_blob, crop_blob, crop_size, quality, enrolled_seq,'
                   ' removed_by, removed_at, removed_reason) ON face_subjects TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON face_descriptors TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON face_descriptor_removals TO %I', app);
    EXECUTE format('GRANT SELECT ON face_cache_epoch TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON face_searches TO %I', app);
    EXECUTE format('GRANT UPDATE (state, error, results, ledger_seq, finished_at)'
                   ' ON face_searches TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON face_search_results TO %I', app);
END
$$;
