-- SPDX-License-Identifier: Apache-2.0
-- The CPU one ledger_append call costs in PostgreSQL, per entry, on a real
-- log (not part of tests/run; docs/ledger.md section 8). As a superuser, in
-- one transaction that is rolled back at the end: the log's last K entries
-- and the subtrees they completed are taken out (triggers bypassed), then
-- put back by ledger_append N times, each call undone in a subtransaction.
-- Prints the wall and CPU time (the backend's own, /proc/self/schedstat)
-- per entry. Against a bench server's database (tests/bench/ledger-server/
-- start-demsd; after some appends, e.g. dems-ledger-appender-bench):
--
--   PGOPTIONS='-c bench.n=300' psql -X -q 'host=DATA/run dbname=dems user=dems_super' \
--       -f tests/bench/ledger-server/append-cost.sql
--
-- To compare two bodies of the function, CREATE OR REPLACE one, run this,
-- then the other, alternately (the database is left as it was; the head is
-- locked meanwhile, so a running demsd waits to append).
\set K 28
BEGIN;
SET LOCAL session_replication_role = replica;
CREATE TEMP TABLE b ON COMMIT DROP AS
  SELECT e.* FROM ledger_entries e, ledger_head h WHERE e.seq >= h.size - :K ORDER BY e.seq;
CREATE TEMP TABLE bs ON COMMIT DROP AS
  SELECT t.* FROM ledger_subtrees t, ledger_head h WHERE t.start + (1::bigint << t.level) > h.size - :K
  ORDER BY (t.start + (1::bigint << t.level)), t.level;
DELETE FROM ledger_case_entries WHERE seq >= (SELECT min(seq) FROM b);
DELETE FROM ledger_entries WHERE seq >= (SELECT min(seq) FROM b);
DELETE FROM ledger_subtrees t USING bs WHERE t.level = bs.level AND t.start = bs.start;
UPDATE ledger_head SET size = (SELECT min(seq) FROM b);
SET LOCAL session_replication_role = origin;
DO $$
DECLARE
  a bigint[]; ty text[]; ar text[]; k int; bt text[]; lf text[]; sg text[]; lv smallint[]; st bigint[]; hs text[];
  t0 timestamptz; tot interval := '0'; c0 bigint; c1 bigint; n int := current_setting('bench.n')::int;
BEGIN
  SELECT array_agg(seq ORDER BY seq), array_agg(type ORDER BY seq), array_agg(artefact ORDER BY seq), max(key_id),
         array_agg(encode(bytes,'hex') ORDER BY seq), array_agg(encode(leaf_hash,'hex') ORDER BY seq), array_agg(encode(signature,'hex') ORDER BY seq)
    INTO a, ty, ar, k, bt, lf, sg FROM b;
  SELECT array_agg(level ORDER BY start + (1::bigint << level), level), array_agg(start ORDER BY start + (1::bigint << level), level),
         array_agg(encode(hash,'hex') ORDER BY start + (1::bigint << level), level) INTO lv, st, hs FROM bs;
  c0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
  FOR i IN 1..n LOOP
    BEGIN
      t0 := clock_timestamp();
      PERFORM ledger_append(a, ty, ar, k, bt, lf, sg, lv, st, hs);
      tot := tot + (clock_timestamp() - t0);
      RAISE EXCEPTION 'undo' USING ERRCODE = 'P0001';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
  END LOOP;
  c1 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
  RAISE NOTICE '% entries, % subtrees: wall % us per entry; CPU % us per entry', cardinality(a), cardinality(lv),
    round(extract(epoch FROM tot) * 1e6 / n / cardinality(a), 1), round((c1 - c0) / 1e3 / n / cardinality(a), 1);
END
$$;
ROLLBACK;
