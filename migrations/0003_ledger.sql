-- SPDX-License-Identifier: Apache-2.0
-- The custody ledger (docs/ledger.md): append-only entries with their
-- canonical bytes, RFC 6962 leaf hashes and Ed25519 signatures; the complete
-- subtree hashes that make every proof O(log N) reads; signed checkpoints;
-- the log's signing keys (seed sealed with the master key kept outside the
-- database). Append-only is enforced here, not by politeness: triggers refuse
-- UPDATE, DELETE and TRUNCATE for everyone, and the application role only has
-- SELECT and INSERT. ledger_head is the one-row counter whose row lock
-- serialises appends, so sequence numbers are gapless.

CREATE TABLE ledger_keys (
    id integer PRIMARY KEY,
    name text NOT NULL,
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    sealed_seed bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    type text NOT NULL,
    artefact text CHECK (artefact ~ '^[0-9a-f]{64}$'),
    key_id integer NOT NULL REFERENCES ledger_keys (id),
    bytes bytea NOT NULL,
    leaf_hash bytea NOT NULL CHECK (length(leaf_hash) = 32),
    signature bytea NOT NULL CHECK (length(signature) = 64),
    appended_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_artefact ON ledger_entries (artefact) WHERE artefact IS NOT NULL;

-- Hash of the complete subtree of leaves [start, start + 2^level).
CREATE TABLE ledger_subtrees (
    level smallint NOT NULL CHECK (level >= 0 AND level < 63),
    start bigint NOT NULL CHECK (start >= 0),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, start)
);

CREATE TABLE ledger_checkpoints (
    size bigint PRIMARY KEY CHECK (size >= 0),
    root bytea NOT NULL CHECK (length(root) = 32),
    key_id integer NOT NULL REFERENCES ledger_keys (id),
    note text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    size bigint NOT NULL CHECK (size >= 0)
);
INSERT INTO ledger_head (size) VALUES (0);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the custody ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_subtrees_append_only BEFORE UPDATE OR DELETE ON ledger_subtrees
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_subtrees_no_truncate BEFORE TRUNCATE ON ledger_subtrees
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_keys_append_only BEFORE UPDATE OR DELETE ON ledger_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_keys_no_truncate BEFORE TRUNCATE ON ledger_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
-- The head only ever grows.
CREATE FUNCTION ledger_head_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size < OLD.size THEN
        RAISE EXCEPTION 'the custody ledger cannot shrink' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_head_only_grows BEFORE UPDATE ON ledger_head
    FOR EACH ROW EXECUTE FUNCTION ledger_head_grows();
CREATE TRIGGER ledger_head_no_delete BEFORE DELETE OR TRUNCATE ON ledger_head
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON ledger_keys, ledger_entries, ledger_subtrees, '
                   'ledger_checkpoints TO %I', app);
    EXECUTE format('GRANT SELECT, UPDATE (size) ON ledger_head TO %I', app);
END
$$;
