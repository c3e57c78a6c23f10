-- SPDX-License-Identifier: Apache-2.0
-- Token buckets for rate limits that every demsd node must share (several
-- nodes on one PostgreSQL: docs/architecture.md): one row per key (e.g.
-- "disclosure-open:<address>"), its tokens and when they were last counted.
-- A request takes a token in one INSERT ... ON CONFLICT DO UPDATE, which
-- refills the bucket for the time passed, so concurrent requests on any node
-- serialise on the row. Idle buckets are full again and are pruned by the
-- housekeeping task.

CREATE TABLE rate_buckets (
    key text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 200),
    tokens double precision NOT NULL,
    granted boolean NOT NULL,
    updated_at timestamptz NOT NULL
);

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON rate_buckets TO %I', app);
END
$$;
