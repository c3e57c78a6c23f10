-- SPDX-License-Identifier: Apache-2.0
-- Witnesses (docs/ledger.md, "Witnesses"; C2SP tlog-witness and
-- tlog-cosignature). Two roles:
--
-- As a witness for other logs, demsd keeps its own cosignature key (the seed
-- sealed with the master key, like ledger_keys) and, per witnessed log (its
-- origin), the latest checkpoint it verified and cosigned. That row only
-- moves forward: its size never shrinks and at one size its root never
-- changes (triggers), and demsd advances it by compare-and-swap on the size
-- and root it checked the consistency proof from, so two submissions cannot
-- both advance it.
--
-- As a log, demsd keeps the cosignatures witnesses returned for its
-- checkpoints and marks a checkpoint published once a quorum of them is held.
-- Both tables are append-only. ledger_checkpoint_notes gives each checkpoint
-- note with its cosignature lines appended (signed-note format allows extra
-- signature lines).

CREATE TABLE witness_keys (
    name text PRIMARY KEY,
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    sealed_seed bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE witness_logs (
    origin text PRIMARY KEY,
    size bigint NOT NULL CHECK (size >= 0),
    root bytea NOT NULL CHECK (length(root) = 32),
    note text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION witness_logs_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.origin <> OLD.origin OR NEW.size < OLD.size
       OR (NEW.size = OLD.size AND NEW.root <> OLD.root) THEN
        RAISE EXCEPTION 'a witnessed log''s checkpoint only moves forward'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER witness_logs_only_forward BEFORE UPDATE ON witness_logs
    FOR EACH ROW EXECUTE FUNCTION witness_logs_forward();
CREATE TRIGGER witness_logs_no_delete BEFORE DELETE OR TRUNCATE ON witness_logs
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER witness_keys_append_only BEFORE UPDATE OR DELETE ON witness_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER witness_keys_no_truncate BEFORE TRUNCATE ON witness_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- One row per checkpoint and witness (its verifier key): the signature line
-- as the witness returned it (no newline), checked before it was stored.
CREATE TABLE ledger_cosignatures (
    size bigint NOT NULL REFERENCES ledger_checkpoints (size),
    witness text NOT NULL,
    line text NOT NULL CHECK (line LIKE chr(8212) || ' % %' AND position(E'\n' IN line) = 0),
    cosigned_at bigint NOT NULL CHECK (cosigned_at >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, witness)
);

CREATE TABLE ledger_published (
    size bigint PRIMARY KEY REFERENCES ledger_checkpoints (size),
    cosignatures integer NOT NULL CHECK (cosignatures > 0),
    published_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER ledger_cosignatures_append_only BEFORE UPDATE OR DELETE ON ledger_cosignatures
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_cosignatures_no_truncate BEFORE TRUNCATE ON ledger_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_published_append_only BEFORE UPDATE OR DELETE ON ledger_published
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_published_no_truncate BEFORE TRUNCATE ON ledger_published
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Each checkpoint's note with its cosignature lines (ordered by witness).
CREATE VIEW ledger_checkpoint_notes AS
SELECT c.size, c.root, c.key_id, c.created_at,
       c.note || coalesce((SELECT string_agg(s.line || E'\n', '' ORDER BY s.witness)
                           FROM ledger_cosignatures s WHERE s.size = c.size), '') AS note,
       p.size IS NOT NULL AS published
FROM ledger_checkpoints c LEFT JOIN ledger_published p ON p.size = c.size;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON witness_keys, ledger_cosignatures, '
                   'ledger_published TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE (size, root, note, updated_at) '
                   'ON witness_logs TO %I', app);
    EXECUTE format('GRANT SELECT ON ledger_checkpoint_notes TO %I', app);
END
$$;
