-- jobworker schema for PostgreSQL, version 3: the claim, as a function with its own planner
-- settings.
--
-- The claim must walk jobs_claimable in (priority DESC, run_at) order and stop after `limit`
-- rows it can lock. On a table whose statistics lag behind a burst of enqueues (autovacuum has
-- not analysed it yet), the planner can prefer a bitmap scan of every due row followed by a sort:
-- correct, but it reads the whole backlog on every claim. Bitmap and sequential scans are turned
-- off for this one statement only, so the plan does not depend on the statistics.

CREATE OR REPLACE FUNCTION __SCHEMA__.claim_jobs(
    p_now timestamptz, p_queues text[], p_job_types text[], p_limit integer, p_owner text,
    p_lease_until timestamptz
) RETURNS TABLE (
    id uuid, job_type text, queue text, args jsonb, attempt integer, max_attempts integer,
    enqueued_at timestamptz, started_at timestamptz, result_ttl double precision,
    priority integer, run_at timestamptz
)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
    -- PL/pgSQL keeps the plan of this statement for the session: planned once, not per claim.
    RETURN QUERY
    WITH next AS (
        SELECT j.id FROM __SCHEMA__.jobs AS j
        WHERE j.status IN ('queued', 'scheduled', 'failed')
          AND j.run_at <= p_now
          AND j.queue = ANY(p_queues)
          AND j.job_type = ANY(p_job_types)
        ORDER BY j.priority DESC, j.run_at
        LIMIT p_limit
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
    RETURNING j.id, j.job_type, j.queue, j.args, j.attempt, j.max_attempts, j.enqueued_at,
        j.started_at, j.result_ttl, j.priority, j.run_at;
END
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (3) ON CONFLICT (version) DO NOTHING;
