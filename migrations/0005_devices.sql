-- SPDX-License-Identifier: Apache-2.0
-- Docks (body-worn-camera docking stations) and other devices. A device
-- authenticates with a TLS client certificate: either one dems's internal
-- device CA issued from the device's CSR, or one an administrator pinned. The
-- certificate's SHA-256 fingerprint identifies it; revoking a device refuses
-- its next request (and that refusal is ledgered).

CREATE TABLE devices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    serial text NOT NULL UNIQUE CHECK (serial ~ '^[A-Za-z0-9._-]{1,64}$'),
    cert_sha256 text NOT NULL UNIQUE CHECK (cert_sha256 ~ '^[0-9a-f]{64}$'),
    certificate text NOT NULL,
    issued boolean NOT NULL, -- true: issued by the device CA; false: pinned
    enrolled_by bigint NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Uploads and artefacts come from a user or from a device.
ALTER TABLE uploads ALTER COLUMN owner_user_id DROP NOT NULL;
ALTER TABLE uploads ADD COLUMN owner_device_id bigint REFERENCES devices (id);
ALTER TABLE uploads ADD CONSTRAINT uploads_one_owner
    CHECK ((owner_user_id IS NULL) <> (owner_device_id IS NULL));
ALTER TABLE artefacts ALTER COLUMN uploaded_by DROP NOT NULL;
ALTER TABLE artefacts ADD COLUMN uploaded_by_device bigint REFERENCES devices (id);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON devices TO %I', app);
    EXECUTE format('GRANT UPDATE (revoked_at) ON devices TO %I', app);
END
$$;
