-- SPDX-License-Identifier: Apache-2.0
-- Which ledger entries name which case. A court bundle carries every entry
-- about its case (docs/bundle.md); ledger_entries has no case column, so
-- finding them meant reading every entry's bytes. This index is derived
-- from the entries themselves: a trigger adds a row for each appended entry
-- whose canonical bytes have a top-level "case" member, and the rows of the
-- entries already in the log are added here. The application role may only
-- read it; ledger_append (which runs as the tables' owner) fills it.

CREATE TABLE ledger_case_entries (
    case_ref text NOT NULL,
    seq bigint NOT NULL REFERENCES ledger_entries (seq),
    PRIMARY KEY (case_ref, seq)
);

CREATE FUNCTION ledger_index_case() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    v_case text;
BEGIN
    IF position(convert_to('"case":', 'UTF8') IN NEW.bytes) > 0 THEN
        v_case := convert_from(NEW.bytes, 'UTF8')::jsonb ->> 'case';
        IF v_case IS NOT NULL THEN
            INSERT INTO public.ledger_case_entries (case_ref, seq) VALUES (v_case, NEW.seq);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_entries_case_index AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_index_case();

INSERT INTO ledger_case_entries (case_ref, seq)
    SELECT x.c, e.seq FROM ledger_entries e
    CROSS JOIN LATERAL (SELECT convert_from(e.bytes, 'UTF8')::jsonb ->> 'case' AS c) AS x
    WHERE position(convert_to('"case":', 'UTF8') IN e.bytes) > 0 AND x.c IS NOT NULL;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT ON ledger_case_entries TO %I', app);
END
$$;
