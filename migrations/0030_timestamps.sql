-- SPDX-License-Identifier: Apache-2.0
-- RFC 3161 timestamp tokens over signed checkpoints (docs/ledger.md,
-- "Timestamps"): one row per checkpoint and Time-Stamping Authority, written
-- in the transaction that appends its TIMESTAMPED entry (seq), after demsd
-- checked the token (status, imprint, nonce, the TSA's chain and key usage).
-- The token is the DER TimeStampToken over SHA-256 of the checkpoint's note
-- exactly as ledger_checkpoints holds it. Append-only like the ledger: the
-- application role may read and insert, and triggers refuse every change.

CREATE TABLE ledger_timestamps (
    size bigint NOT NULL REFERENCES ledger_checkpoints (size),
    tsa text NOT NULL CHECK (length(tsa) BETWEEN 1 AND 1024),
    token bytea NOT NULL CHECK (length(token) BETWEEN 1 AND 65536),
    token_sha256 bytea NOT NULL CHECK (length(token_sha256) = 32),
    gen_time timestamptz NOT NULL,
    seq bigint NOT NULL UNIQUE REFERENCES ledger_entries (seq) DEFERRABLE INITIALLY DEFERRED,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, tsa)
);
CREATE INDEX ledger_timestamps_tsa ON ledger_timestamps (tsa, size);

CREATE TRIGGER ledger_timestamps_append_only BEFORE UPDATE OR DELETE ON ledger_timestamps
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_timestamps_no_truncate BEFORE TRUNCATE ON ledger_timestamps
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON ledger_timestamps TO %I', app);
END
$$;
