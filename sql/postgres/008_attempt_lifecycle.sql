-- jobworker schema for PostgreSQL, version 8: the lifecycle events of an attempt's start and end
-- are read from its job_attempts row instead of being stored as job_events rows.
--
-- Every attempt begins with a `running` event and most end with one more lifecycle event (the
-- job succeeded, failed, died, was cancelled or released). Stored as rows, they were two more
-- index insertions per job on the two hottest statements, the claim and the completion. The
-- claim now only numbers the `running` event (jobs.event_seq, as before); the statement that
-- ends the attempt records that number in job_attempts.start_seq, and the completion records
-- its own end event: its number (end_seq) and what lifecycle_payload makes its payload of (the
-- job's status, attempt, error and run_at after the change; plain columns, because building a
-- jsonb value per completed job costs the completion more than storing four values).
-- read_events puts them back in sequence among the stored events (and derives the running
-- attempt's `running` event from the jobs row). Events stored as rows by earlier versions stay
-- rows; a derived event never repeats one.

ALTER TABLE __SCHEMA__.job_attempts ADD COLUMN IF NOT EXISTS start_seq bigint;
ALTER TABLE __SCHEMA__.job_attempts ADD COLUMN IF NOT EXISTS end_seq bigint;
ALTER TABLE __SCHEMA__.job_attempts ADD COLUMN IF NOT EXISTS end_status text;
ALTER TABLE __SCHEMA__.job_attempts ADD COLUMN IF NOT EXISTS end_attempt integer;
ALTER TABLE __SCHEMA__.job_attempts ADD COLUMN IF NOT EXISTS end_error text;
ALTER TABLE __SCHEMA__.job_attempts ADD COLUMN IF NOT EXISTS end_run_at timestamptz;

-- The claim of version 6, without storing the `running` events.
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
        started_at = p_now,
        event_seq = j.event_seq + 1
    FROM next
    WHERE j.id = next.id
    RETURNING j.id, j.job_type, j.queue, j.args, j.attempt, j.max_attempts, j.enqueued_at,
        j.started_at, j.result_ttl, j.priority, j.run_at, j.event_seq;
END
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (8) ON CONFLICT (version) DO NOTHING;
