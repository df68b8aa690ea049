-- jobworker schema for PostgreSQL, version 4: continuations, cancellation, paused queues and
-- per-job-type concurrency caps enforced by the claim.

CREATE TABLE IF NOT EXISTS __SCHEMA__.queue_state (
    queue       text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Set (under the parent's row lock) when a continuation is enqueued, so that finishing a job
-- looks for continuations only when it has some.
ALTER TABLE __SCHEMA__.jobs ADD COLUMN IF NOT EXISTS has_continuations boolean NOT NULL DEFAULT false;

-- The claim (see 003_claim.sql for why it is a function with its own planner settings). An
-- overload of version 3's claim_jobs, which stays for workers of the previous release during a
-- rolling deploy.
-- p_job_types are claimed freely; each of p_capped_types may have at most the matching
-- p_caps entry running across the cluster: claims of one capped type are serialised by a
-- transaction-level advisory lock, and count the running ones before taking the rest.
CREATE OR REPLACE FUNCTION __SCHEMA__.claim_jobs(
    p_now timestamptz, p_queues text[], p_job_types text[], p_limit integer, p_owner text,
    p_lease_until timestamptz, p_capped_types text[], p_caps integer[]
) RETURNS TABLE (
    id uuid, job_type text, queue text, args jsonb, attempt integer, max_attempts integer,
    enqueued_at timestamptz, started_at timestamptz, result_ttl double precision,
    priority integer, run_at timestamptz
)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    v_types text[] := p_job_types;
    v_room integer := p_limit;
    v_claimed integer := 0;
    v_index integer := 0;
    v_count integer;
BEGIN
    LOOP
        IF v_room > 0 AND cardinality(v_types) > 0 THEN
            -- PL/pgSQL keeps this statement's plan for the session: planned once.
            RETURN QUERY
            WITH next AS (
                SELECT j.id FROM __SCHEMA__.jobs AS j
                WHERE j.status IN ('queued', 'scheduled', 'failed')
                  AND j.run_at <= p_now
                  AND j.queue = ANY(p_queues)
                  AND j.job_type = ANY(v_types)
                ORDER BY j.priority DESC, j.run_at
                LIMIT v_room
                FOR UPDATE SKIP LOCKED
            )
            UPDATE __SCHEMA__.jobs AS j
            SET status = 'running',
                attempt = j.attempt + 1,
                lease_owner = p_owner,
                lease_expires_at = p_lease_until,
                started_at = p_now
            FROM next
            WHERE j.id = next.id
            RETURNING j.id, j.job_type, j.queue, j.args, j.attempt, j.max_attempts,
                j.enqueued_at, j.started_at, j.result_ttl, j.priority, j.run_at;
            GET DIAGNOSTICS v_count = ROW_COUNT;
            v_claimed := v_claimed + v_count;
        END IF;
        v_index := v_index + 1;
        EXIT WHEN v_index > coalesce(cardinality(p_capped_types), 0) OR v_claimed >= p_limit;
        PERFORM pg_advisory_xact_lock(
            hashtextextended('__SCHEMA__:' || p_capped_types[v_index], 0));
        SELECT count(*) INTO v_count FROM __SCHEMA__.jobs AS r
        WHERE r.status = 'running' AND r.job_type = p_capped_types[v_index];
        v_types := ARRAY[p_capped_types[v_index]];
        v_room := least(p_limit - v_claimed, p_caps[v_index] - v_count);
    END LOOP;
END
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (4) ON CONFLICT (version) DO NOTHING;
