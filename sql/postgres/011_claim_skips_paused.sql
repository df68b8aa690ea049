-- jobworker schema for PostgreSQL, version 11: a claim takes nothing from a paused queue. The
-- claim read only the queues its worker passed, and a worker reads the paused queues every poll
-- interval (and a NOTIFY wakes it before that): a job enqueued just after a pause could still
-- run. The claim now leaves out the queues paused in queue_state, read by the claim's own
-- statement, so a pause committed before a claim begins holds for that claim. The paused queues
-- are taken out of p_queues once per statement (an InitPlan): the walk of jobs_claimable in
-- (priority DESC, run_at) order and its planner settings are those of version 8. The claim with
-- concurrency caps calls this one for each group, so it skips paused queues too.
CREATE OR REPLACE FUNCTION __SCHEMA__.claim_batch(
    p_now timestamptz, p_queues text[], p_job_types text[], p_limit integer, p_owner text,
    p_lease_until timestamptz
) RETURNS TABLE (
    id uuid, job_type text, queue text, args jsonb, attempt integer, max_attempts integer,
    enqueued_at timestamptz, started_at timestamptz, result_ttl double precision,
    priority integer, run_at timestamptz, event_seq bigint
)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH next AS (
        SELECT j.id FROM __SCHEMA__.jobs AS j
        WHERE j.status IN ('queued', 'scheduled', 'failed')
          AND j.run_at <= p_now
          AND j.queue = ANY(ARRAY(
              SELECT q.name FROM unnest(p_queues) AS q(name)
              WHERE NOT EXISTS (
                  SELECT 1 FROM __SCHEMA__.queue_state AS s
                  WHERE s.queue = q.name AND s.paused)))
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
        started_at = p_now,
        event_seq = j.event_seq + 1
    FROM next
    WHERE j.id = next.id
    RETURNING j.id, j.job_type, j.queue, j.args, j.attempt, j.max_attempts, j.enqueued_at,
        j.started_at, j.result_ttl, j.priority, j.run_at, j.event_seq;
END
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (11) ON CONFLICT (version) DO NOTHING;
