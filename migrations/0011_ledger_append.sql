-- SPDX-License-Identifier: Apache-2.0
-- Writes to the custody ledger only through functions that check them.
--
-- Until now the application role could INSERT any row into the ledger's
-- tables: one junk row at the head's sequence number jammed every later
-- append until a superuser removed it. Now it has no INSERT or UPDATE on
-- them at all, only these SECURITY DEFINER functions (owned by the schema
-- owner, search_path fixed, tables named in full):
--
--   ledger_lock_head()         locks the head row (the lock that serialises
--                              appends) and returns the size and the newest
--                              signing key's id
--   ledger_append(...)         appends a batch of entries and their complete
--                              subtree hashes, and moves the head
--   ledger_add_key(...)        adds the next signing key (a rotation)
--   ledger_add_checkpoint(...) records a signed checkpoint
--
-- ledger_append assigns nothing the caller did not compute, but accepts only
-- what is consistent with the log: sequence numbers that continue the head
-- without a gap, entry bytes that are a JSON entry (v 1, actor, time,
-- payload) naming that seq and the type and artefact of their row, leaf
-- hashes that are SHA-256(0x00 || bytes), and
-- exactly the complete subtrees the batch finishes, each the hash of its two
-- halves (level 0: the leaf). A key row must be named, in the same
-- transaction, by the KEY_ROTATED entry that ends the batch (or be key 1);
-- a checkpoint's root must be the root of the stored tree at its size. What
-- PostgreSQL cannot check is an Ed25519 signature: a forged signature is
-- named by dems-verify, but no longer blocks the log.

CREATE FUNCTION ledger_lock_head(OUT size bigint, OUT key_id integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    SELECT h.size INTO size FROM public.ledger_head h FOR UPDATE;
    SELECT coalesce(max(k.id), 0) INTO key_id FROM public.ledger_keys k;
END
$$;

CREATE FUNCTION ledger_append(p_seq bigint[], p_type text[], p_artefact text[], p_key_id integer,
                              p_bytes text[], p_leaf text[], p_sig text[], p_level smallint[],
                              p_start bigint[], p_hash text[]) RETURNS bigint
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
    INSERT INTO public.ledger_entries (seq, type, artefact, key_id, bytes, leaf_hash, signature)
        SELECT s, t, a, p_key_id, decode(b, 'hex'), decode(h, 'hex'), decode(g, 'hex')
        FROM unnest(p_seq, p_type, p_artefact, p_bytes, p_leaf, p_sig) AS u (s, t, a, b, h, g);
    -- Each entry: its leaf hash, and bytes that name its seq, type and artefact.
    SELECT e.seq INTO v_bad FROM public.ledger_entries e
        CROSS JOIN LATERAL (SELECT convert_from(e.bytes, 'UTF8')::jsonb AS j) AS x
        WHERE e.seq >= v_old AND e.seq < v_new
          AND (e.leaf_hash <> sha256('\x00'::bytea || e.bytes)
               OR jsonb_typeof(x.j) IS DISTINCT FROM 'object'
               OR (x.j ->> 'v') IS DISTINCT FROM '1'
               OR jsonb_typeof(x.j -> 'actor') IS DISTINCT FROM 'object'
               OR jsonb_typeof(x.j -> 'payload') IS DISTINCT FROM 'object'
               OR jsonb_typeof(x.j -> 'time') IS DISTINCT FROM 'string'
               OR (x.j ->> 'seq') IS DISTINCT FROM e.seq::text
               OR (x.j ->> 'type') IS DISTINCT FROM e.type
               OR (x.j ->> 'artefact') IS DISTINCT FROM e.artefact)
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
    INSERT INTO public.ledger_subtrees (level, start, hash)
        SELECT v, s, decode(h, 'hex') FROM unnest(p_level, p_start, p_hash) AS u (v, s, h);
    -- ... each the hash of its two halves (level 0: the entry's leaf hash).
    SELECT t.start INTO v_bad FROM unnest(p_level, p_start) AS u (v, s)
        JOIN public.ledger_subtrees t ON t.level = u.v AND t.start = u.s
        LEFT JOIN public.ledger_entries e ON u.v = 0 AND e.seq = u.s
        LEFT JOIN public.ledger_subtrees lh ON u.v > 0 AND lh.level = u.v - 1 AND lh.start = u.s
        LEFT JOIN public.ledger_subtrees rh ON u.v > 0 AND rh.level = u.v - 1
            AND rh.start = u.s + (1::bigint << (u.v - 1))
        WHERE t.hash IS DISTINCT FROM CASE WHEN u.v = 0 THEN e.leaf_hash
                                           ELSE sha256('\x01'::bytea || lh.hash || rh.hash) END
        LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger_append: the subtree hash at % does not match its leaves', v_bad
            USING ERRCODE = 'data_exception';
    END IF;
    UPDATE public.ledger_head SET size = v_new;
    RETURN v_new;
END
$$;

-- The root of the stored tree of p_size leaves (RFC 9162 MTH), folded from
-- the complete subtrees of p_size's binary decomposition, right to left.
CREATE FUNCTION ledger_root(p_size bigint) RETURNS bytea
LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
DECLARE
    v_parts bytea[] := '{}';
    v_start bigint := 0;
    v_hash bytea;
    v_root bytea;
BEGIN
    IF p_size = 0 THEN
        RETURN sha256(''::bytea);
    END IF;
    FOR l IN REVERSE 62..0 LOOP
        IF (p_size >> l) & 1 = 1 THEN
            SELECT t.hash INTO v_hash FROM public.ledger_subtrees t
                WHERE t.level = l AND t.start = v_start;
            IF NOT FOUND THEN
                RETURN NULL;
            END IF;
            v_parts := v_parts || v_hash;
            v_start := v_start + (1::bigint << l);
        END IF;
    END LOOP;
    v_root := v_parts[cardinality(v_parts)];
    FOR i IN REVERSE cardinality(v_parts) - 1..1 LOOP
        v_root := sha256('\x01'::bytea || v_parts[i] || v_root);
    END LOOP;
    RETURN v_root;
END
$$;

-- Adds signing key p_id: key 1 on a new log (true; false when another
-- process added it first), or the next key, which the KEY_ROTATED entry
-- ending the same transaction's batch must name (checked at commit).
CREATE FUNCTION ledger_add_key(p_id integer, p_name text, p_public_key text, p_sealed_seed text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_max integer;
BEGIN
    SELECT coalesce(max(id), 0) INTO v_max FROM public.ledger_keys;
    IF p_id = 1 AND v_max >= 1 THEN
        RETURN false;
    END IF;
    IF p_id <> v_max + 1 THEN
        RAISE EXCEPTION 'ledger_add_key: the next key is %, not %', v_max + 1, p_id
            USING ERRCODE = 'data_exception';
    END IF;
    IF p_id > 1 AND p_name IS DISTINCT FROM (SELECT name FROM public.ledger_keys WHERE id = 1) THEN
        RAISE EXCEPTION 'ledger_add_key: a key of another log' USING ERRCODE = 'data_exception';
    END IF;
    IF length(decode(p_sealed_seed, 'hex')) <> 72 THEN
        RAISE EXCEPTION 'ledger_add_key: not a sealed seed' USING ERRCODE = 'data_exception';
    END IF;
    INSERT INTO public.ledger_keys (id, name, public_key, sealed_seed)
        VALUES (p_id, p_name, decode(p_public_key, 'hex'), decode(p_sealed_seed, 'hex'));
    RETURN true;
END
$$;

-- At commit: a key after the first is named by the KEY_ROTATED entry that
-- ends the log (its payload's vkey, "<name>+<hex key hash>+<base64(0x01 || key)>",
-- carries the key; the name has no '+', base64 may).
CREATE FUNCTION ledger_key_is_announced() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.id > 1 AND NOT EXISTS (
        SELECT 1 FROM public.ledger_entries e, public.ledger_head h
        WHERE e.seq = h.size - 1 AND e.type = 'KEY_ROTATED' AND e.key_id = NEW.id - 1
          AND decode(substring(convert_from(e.bytes, 'UTF8')::jsonb -> 'payload' ->> 'vkey'
                               FROM '^[^+]*\+[0-9a-f]{8}\+(.*)$'), 'base64')
              = '\x01'::bytea || NEW.public_key) THEN
        RAISE EXCEPTION 'signing key % is not announced by a KEY_ROTATED entry', NEW.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ledger_keys_announced AFTER INSERT ON ledger_keys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_key_is_announced();

-- Records a signed checkpoint of p_size entries whose root is the stored
-- tree's; the note's text must say that size and root.
CREATE FUNCTION ledger_add_checkpoint(p_size bigint, p_root text, p_key_id integer, p_note text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_root bytea := decode(p_root, 'hex');
BEGIN
    IF p_size > (SELECT size FROM public.ledger_head)
       OR v_root IS DISTINCT FROM public.ledger_root(p_size)
       OR split_part(p_note, E'\n', 2) <> p_size::text
       OR split_part(p_note, E'\n', 3) <> encode(v_root, 'base64') THEN
        RAISE EXCEPTION 'ledger_add_checkpoint: not a checkpoint of the stored tree at %', p_size
            USING ERRCODE = 'data_exception';
    END IF;
    INSERT INTO public.ledger_checkpoints (size, root, key_id, note)
        VALUES (p_size, v_root, p_key_id, p_note) ON CONFLICT (size) DO NOTHING;
    RETURN FOUND;
END
$$;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('REVOKE INSERT ON ledger_keys, ledger_entries, ledger_subtrees, '
                   'ledger_checkpoints FROM %I', app);
    EXECUTE format('REVOKE UPDATE ON ledger_head FROM %I', app);
    EXECUTE format('REVOKE UPDATE (size) ON ledger_head FROM %I', app);
    EXECUTE 'REVOKE ALL ON FUNCTION ledger_lock_head(), ledger_append(bigint[], text[], text[], '
            'integer, text[], text[], text[], smallint[], bigint[], text[]), ledger_root(bigint), '
            'ledger_add_key(integer, text, text, text), ledger_key_is_announced(), '
            'ledger_add_checkpoint(bigint, text, integer, text) FROM PUBLIC';
    EXECUTE format('GRANT EXECUTE ON FUNCTION ledger_lock_head(), ledger_append(bigint[], text[], '
                   'text[], integer, text[], text[], text[], smallint[], bigint[], text[]), '
                   'ledger_root(bigint), ledger_add_key(integer, text, text, text), '
                   'ledger_add_checkpoint(bigint, text, integer, text) TO %I', app);
END
$$;
