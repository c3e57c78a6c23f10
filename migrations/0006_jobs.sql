-- SPDX-License-Identifier: Apache-2.0
-- The job queue (docs/architecture.md, "Jobs"): background work such as
-- previews and blob re-verification, run by `demsd worker` processes that
-- claim rows with FOR UPDATE SKIP LOCKED and are woken by NOTIFY dems_jobs.
--
-- States:
--   queued   waiting to run once run_after has passed
--   running  claimed: lease_owner (host:pid:slot) holds it until lease_expires;
--            the worker renews the lease while the handler runs
--   failed   the last attempt failed (last_error says why) and the job waits
--            for its retry at run_after (exponential backoff); it is claimed
--            again like a queued job. Visible so an operator can see what is
--            struggling.
--   done     finished
--   dead     out of attempts, or a permanent failure: never retried unless
--            an administrator retries it (POST /v1/admin/jobs/{id}/retry);
--            last_error is kept
-- attempts counts claims, so a job whose worker died (lease expired) has used
-- an attempt. max_attempts NULL means the workers' job_max_attempts setting.
-- (kind, dedupe_key) is unique: enqueuing the same keyed job twice returns the
-- first one. Rows are never deleted by the application.

CREATE TABLE jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_-]{0,62}$'),
    payload jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(payload) = 'object' AND octet_length(payload::text) <= 65536),
    dedupe_key text CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'failed', 'done', 'dead')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer CHECK (max_attempts BETWEEN 1 AND 1000),
    run_after timestamptz NOT NULL DEFAULT now(),
    lease_owner text CHECK (length(lease_owner) <= 300),
    lease_expires timestamptz,
    last_error text CHECK (length(last_error) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobs_dedupe UNIQUE (kind, dedupe_key),
    CONSTRAINT jobs_lease CHECK ((state = 'running') = (lease_owner IS NOT NULL AND
                                                         lease_expires IS NOT NULL))
);

-- Claiming: the most urgent runnable job first (priority, then due time, then
-- age); the partial index holds only waiting jobs, so finished history does
-- not slow claims down.
CREATE INDEX jobs_claim ON jobs (priority DESC, run_after, id) WHERE state IN ('queued', 'failed');
-- When the next waiting job falls due (a worker sleeps until then).
CREATE INDEX jobs_due ON jobs (run_after) WHERE state IN ('queued', 'failed');
-- Expired leases of dead workers.
CREATE INDEX jobs_leases ON jobs (lease_expires) WHERE state = 'running';
-- The admin listing filters by state or kind, newest first.
CREATE INDEX jobs_state_id ON jobs (state, id);
CREATE INDEX jobs_kind_id ON jobs (kind, id);

-- Wakes the workers (LISTEN dems_jobs) whenever a job becomes queued: a new
-- job, a retry, a job released at shutdown. Delivered at commit, so a job
-- enqueued inside a longer transaction wakes nobody before it is visible.
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dems_jobs', NEW.kind);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION jobs_notify();

-- Enqueues a job and returns its id. With a dedupe key, a second call for the
-- same (kind, key) inserts nothing and returns the existing job's id, so a
-- retried transaction cannot queue the work twice. Callable inside any
-- transaction (the ingest transaction queues each artefact's preview):
--   SELECT dems_enqueue_job('preview', jsonb_build_object('evidence', $1), $1);
CREATE FUNCTION dems_enqueue_job(p_kind text, p_payload jsonb, p_dedupe_key text DEFAULT NULL,
                                 p_priority integer DEFAULT 0,
                                 p_max_attempts integer DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    INSERT INTO jobs (kind, payload, dedupe_key, priority, max_attempts)
        VALUES (p_kind, COALESCE(p_payload, '{}'), p_dedupe_key, p_priority, p_max_attempts)
        ON CONFLICT (kind, dedupe_key) DO NOTHING
        RETURNING id INTO v;
    IF v IS NULL THEN
        SELECT id INTO v FROM jobs WHERE kind = p_kind AND dedupe_key = p_dedupe_key;
    END IF;
    RETURN v;
END
$$;

DO $$
DECLARE
    app text := current_setting('dems.app_role');
BEGIN
    EXECUTE format('GRANT SELECT, INSERT ON jobs TO %I', app);
    EXECUTE format('GRANT UPDATE (state, attempts, run_after, lease_owner, lease_expires, '
                   'last_error, started_at, finished_at, updated_at) ON jobs TO %I', app);
    EXECUTE 'REVOKE ALL ON FUNCTION dems_enqueue_job(text, jsonb, text, integer, integer) '
            'FROM PUBLIC';
    EXECUTE format('GRANT EXECUTE ON FUNCTION dems_enqueue_job(text, jsonb, text, integer, '
                   'integer) TO %I', app);
END
$$;
