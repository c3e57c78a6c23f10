-- SPDX-License-Identifier: Apache-2.0
-- ledger_append (migration 0011) makes the same checks at a lower cost
-- (issue 17; docs/ledger.md section 8 has the measurements). In a batch of
-- 28 entries and their 55 subtrees, 0011's checks cost about 44 us of CPU
-- per entry beside the inserts' 30: each entry's row read back from the
-- table and its JSON parsed, and each subtree's halves (or leaf) looked up
-- through index probes of ledger_subtrees and ledger_entries. Now they cost
-- about 19 (the call 74 -> 49 us per entry):
--
--   * each entry is checked from the batch's arrays before it is inserted,
--     its bytes decoded and parsed once (the OFFSET 0s keep PostgreSQL from
--     inlining the subqueries, which would repeat the parse for every
--     field read);
--   * each subtree's halves are read from the batch itself (a jsonb object
--     keyed "level:start", and the leaves keyed by seq), and ledger_subtrees
--     is read only for a left half that ends at or before the old head.
--
-- The checks are the same ones, on the same values: sequence numbers that
-- continue the head without a gap; a signing key no older than the last
-- entry's; entry bytes that are a JSON object (v 1, actor and payload
-- objects, a time string) naming the seq, type and artefact of their row;
-- leaf hashes that are SHA-256(0x00 || bytes); exactly the complete subtrees
-- the batch finishes, each the hash of its two halves (level 0: its entry's
-- leaf hash). The entries and subtrees are inserted after they passed, so the
-- tables' constraints (primary keys, the key's foreign key, the CHECKs)
-- apply to exactly what is stored. Arrays are read only with unnest (never
-- subscripted), so their bounds do not matter, as before.

CREATE OR REPLACE FUNCTION ledger_append(p_seq bigint[], p_type text[], p_artefact text[],
                                         p_key_id integer, p_bytes text[], p_leaf text[],
                                         p_sig text[], p_level smallint[], p_start bigint[],
                                         p_hash text[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_old bigint;
    v_new bigint;
    v_n integer := coalesce(cardinality(p_seq), 0);
    v_want bigint;
    v_bad bigint;
BEGIN
    SELECT size INTO v_old FROM public.ledger_head FOR UPDATE;
    IF v_n = 0 OR cardinality(p_type) IS DISTINCT FROM v_n
       OR cardinality(p_artefact) IS DISTINCT FROM v_n OR cardinality(p_bytes) IS DISTINCT FROM v_n
       OR cardinality(p_leaf) IS DISTINCT FROM v_n OR cardinality(p_sig) IS DISTINCT FROM v_n
       OR coalesce(cardinality(p_level), 0) <> coalesce(cardinality(p_start), 0)
       OR coalesce(cardinality(p_level), 0) <> coalesce(cardinality(p_hash), 0) THEN
        RAISE EXCEPTION 'ledger_append: arrays of different lengths' USING ERRCODE = 'data_exception';
    END IF;
    v_new := v_old + v_n;
    -- Sequence numbers continue the head, in order, without a gap.
    SELECT u.s INTO v_bad FROM unnest(p_seq) WITH ORDINALITY AS u (s, i)
        WHERE u.s IS DISTINCT FROM v_old + u.i - 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger_append: entry % is not the next (the log has % entries)', v_bad, v_old
            USING ERRCODE = 'data_exception';
    END IF;
    -- Keys only move forward.
    IF p_key_id < coalesce((SELECT e.key_id FROM public.ledger_entries e WHERE e.seq = v_old - 1), 1)
    THEN
        RAISE EXCEPTION 'ledger_append: key % is older than the last entry''s', p_key_id
            USING ERRCODE = 'data_exception';
    END IF;
    -- Each entry: its leaf hash, and bytes that name its seq, type and
    -- artefact. The OFFSET 0s keep each entry's bytes decoded and parsed
    -- once (see above).
    SELECT u.s INTO v_bad FROM unnest(p_seq, p_type, p_artefact, p_bytes, p_leaf) AS u (s, t, a, b, h)
        CROSS JOIN LATERAL (SELECT decode(u.b, 'hex') AS raw OFFSET 0) AS d
        CROSS JOIN LATERAL (SELECT convert_from(d.raw, 'UTF8')::jsonb AS j OFFSET 0) AS x
        WHERE decode(u.h, 'hex') IS DISTINCT FROM sha256('\x00'::bytea || d.raw)
           OR jsonb_typeof(x.j) IS DISTINCT FROM 'object'
           OR (x.j ->> 'v') IS DISTINCT FROM '1'
           OR jsonb_typeof(x.j -> 'actor') IS DISTINCT FROM 'object'
           OR jsonb_typeof(x.j -> 'payload') IS DISTINCT FROM 'object'
           OR jsonb_typeof(x.j -> 'time') IS DISTINCT FROM 'string'
           OR (x.j ->> 'seq') IS DISTINCT FROM u.s::text
           OR (x.j ->> 'type') IS DISTINCT FROM u.t
           OR (x.j ->> 'artefact') IS DISTINCT FROM u.a
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger_append: entry % does not match its bytes or leaf hash', v_bad
            USING ERRCODE = 'data_exception';
    END IF;
    -- Exactly the complete subtrees the batch finishes: level l has one for
    -- every multiple of 2^l in (v_old, v_new] ...
    SELECT sum((v_new >> l) - (v_old >> l)) INTO v_want FROM generate_series(0, 62) AS l;
    IF coalesce(cardinality(p_level), 0) <> v_want OR EXISTS (
        SELECT 1 FROM unnest(p_level, p_start) AS u (v, s)
        WHERE u.v IS NULL OR u.s IS NULL OR u.v < 0 OR u.v > 62
           OR u.s % (1::bigint << u.v) <> 0 OR u.s + (1::bigint << u.v) <= v_old
           OR u.s + (1::bigint << u.v) > v_new) THEN
        RAISE EXCEPTION 'ledger_append: not the subtrees entries % to % complete', v_old, v_new - 1
            USING ERRCODE = 'data_exception';
    END IF;
    -- ... each the hash of its two halves (level 0: the entry's leaf hash).
    -- Every subtree in the batch ends after v_old (checked just above) and
    -- every stored one at or before it, so a half that ends after v_old can
    -- only be in the batch, and one that ends at or before it only stored:
    -- the right half is always in the batch, the left one is read from
    -- ledger_subtrees only when it ends at or before v_old. A subtree given
    -- twice is either refused here (its copies cannot both match the same
    -- halves unless they are equal) or by the primary key when inserted.
    WITH b AS (
        SELECT u.v, u.s, decode(u.h, 'hex') AS h FROM unnest(p_level, p_start, p_hash) AS u (v, s, h)
    ), m AS (
        SELECT jsonb_object_agg(u.v || ':' || u.s, u.h) AS sub,
               (SELECT jsonb_object_agg(v_old + l.i - 1, l.h)
                FROM unnest(p_leaf) WITH ORDINALITY AS l (h, i)) AS leaf
        FROM unnest(p_level, p_start, p_hash) AS u (v, s, h)
    )
    SELECT b.s INTO v_bad FROM b, m
        WHERE b.h IS NULL
           OR b.h IS DISTINCT FROM CASE
               WHEN b.v = 0 THEN decode(m.leaf ->> b.s::text, 'hex')
               ELSE sha256('\x01'::bytea
                           || coalesce(decode(m.sub ->> ((b.v - 1) || ':' || b.s), 'hex'),
                                       (SELECT t.hash FROM public.ledger_subtrees t
                                        WHERE t.level = b.v - 1 AND t.start = b.s
                                          AND b.s + (1::bigint << (b.v - 1)) <= v_old))
                           || decode(m.sub ->> ((b.v - 1) || ':' || (b.s + (1::bigint << (b.v - 1)))),
                                     'hex')) END
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger_append: the subtree hash at % does not match its leaves', v_bad
            USING ERRCODE = 'data_exception';
    END IF;
    INSERT INTO public.ledger_entries (seq, type, artefact, key_id, bytes, leaf_hash, signature)
        SELECT s, t, a, p_key_id, decode(b, 'hex'), decode(h, 'hex'), decode(g, 'hex')
        FROM unnest(p_seq, p_type, p_artefact, p_bytes, p_leaf, p_sig) AS u (s, t, a, b, h, g);
    INSERT INTO public.ledger_subtrees (level, start, hash)
        SELECT v, s, decode(h, 'hex') FROM unnest(p_level, p_start, p_hash) AS u (v, s, h);
    UPDATE public.ledger_head SET size = v_new;
    RETURN v_new;
END
$$;

-- May user p_uid (an administrator when p_all) download artefact p_id: the
-- visibility rule of include/demsd/access.h (DEMS_SEES_SQL) with share_cond
-- "vs.can_download", which must be changed with it. A download asks this in
-- its one statement (server/api/evidence.c). Inline, as DEMS_SEES_SQL, the
-- rule's nine subplans were set up on every execution of that prepared
-- statement, even for an administrator, who needs none of them: about 40 us
-- of PostgreSQL's CPU per download. Here an administrator is answered at
-- once, and anyone else by the same conditions, in the same order, under
-- the calling statement's snapshot (the function is STABLE) and with the
-- caller's privileges (not SECURITY DEFINER).
CREATE FUNCTION dems_may_download(p_id text, p_uid bigint, p_all boolean) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_all THEN
        RETURN true;
    END IF;
    RETURN p_all
        OR EXISTS (SELECT 1 FROM public.uploads vu WHERE vu.evidence_id = p_id
                   AND (vu.owner_user_id = p_uid OR vu.owner_device_id IN
                        (SELECT vd.id FROM public.devices vd WHERE vd.assigned_user = p_uid)))
        OR EXISTS (SELECT 1 FROM public.exhibits vx WHERE vx.artefact = p_id
                   AND vx.removed_at IS NULL
                   AND (EXISTS (SELECT 1 FROM public.case_members vm
                                WHERE vm.case_id = vx.case_id AND vm.user_id = p_uid
                                  AND vm.removed_at IS NULL)
                        OR EXISTS (SELECT 1 FROM public.shares vs
                                   WHERE vs.case_id = vx.case_id AND vs.prosecutor = p_uid
                                     AND vs.revoked_at IS NULL AND vs.expires_at > now()
                                     AND (vs.can_download)
                                     AND (vs.whole_case OR EXISTS (
                                         SELECT 1 FROM public.share_exhibits vse
                                         WHERE vse.share_id = vs.id AND vse.exhibit_id = vx.id)))))
        OR EXISTS (SELECT 1 FROM public.submission_viewers vp
                   WHERE vp.artefact = p_id AND vp.user_id = p_uid);
END
$$;
