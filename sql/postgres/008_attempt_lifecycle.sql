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

-- A page of a job's events after p_after: the stored rows (with the transient ones when
-- p_transient), and the lifecycle events an attempt's row stands for: its `running` event (from
-- the jobs row while it runs) and the event that ended it. With p_results, a succeeded job's
-- `result` event too, which is not stored as a row either: it is the job's result, one before
-- the `succeeded` event. A derived event never repeats a stored row (events stored by earlier
-- versions). A function for its planner settings, as the claim (003_claim.sql): a job can have
-- a hundred thousand events, and a page must be read along the primary key, not gathered and
-- sorted whole, whatever the table's statistics say.
CREATE OR REPLACE FUNCTION __SCHEMA__.read_events(
    p_job uuid, p_after bigint, p_limit integer, p_transient boolean, p_results boolean
) RETURNS TABLE (seq bigint, kind text, occurred_at timestamptz, payload jsonb)
LANGUAGE sql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    WITH derived AS (
        SELECT a.start_seq AS seq, 'lifecycle' AS kind, a.started_at AS occurred_at,
            __SCHEMA__.lifecycle_payload('running', a.attempt, NULL, NULL) AS payload
        FROM __SCHEMA__.job_attempts AS a
        WHERE a.job_id = p_job AND a.start_seq > p_after
        UNION ALL
        SELECT a.end_seq, 'lifecycle', a.ended_at,
            __SCHEMA__.lifecycle_payload(a.end_status, a.end_attempt, a.end_error, a.end_run_at)
        FROM __SCHEMA__.job_attempts AS a
        WHERE a.job_id = p_job AND a.end_seq > p_after
        UNION ALL
        SELECT j.event_seq, 'lifecycle', j.started_at,
            __SCHEMA__.lifecycle_payload('running', j.attempt, NULL, NULL)
        FROM __SCHEMA__.jobs AS j
        WHERE j.id = p_job AND j.status = 'running' AND j.event_seq > p_after
        UNION ALL
        SELECT a.end_seq - 1, 'result', a.ended_at, jsonb_build_object('value', j.result)
        FROM __SCHEMA__.job_attempts AS a
        JOIN __SCHEMA__.jobs AS j ON j.id = a.job_id
        WHERE p_results AND a.job_id = p_job AND a.end_seq - 1 > greatest(p_after, a.start_seq)
          AND a.end_status = 'succeeded' AND j.status = 'succeeded'
        UNION ALL
        -- A job that succeeded under an earlier version: its `succeeded` row is its last event.
        SELECT j.event_seq - 1, 'result', e.occurred_at, jsonb_build_object('value', j.result)
        FROM __SCHEMA__.jobs AS j
        JOIN __SCHEMA__.job_events AS e ON e.job_id = j.id AND e.seq = j.event_seq
        WHERE p_results AND j.id = p_job AND j.status = 'succeeded' AND j.event_seq - 1 > p_after
          AND e.kind = 'lifecycle' AND e.payload ->> 'status' = 'succeeded'
    )
    SELECT * FROM (
        (SELECT e.seq, e.kind, e.occurred_at, e.payload FROM __SCHEMA__.job_events AS e
         WHERE e.job_id = p_job AND e.seq > p_after AND (p_transient OR NOT e.transient)
         ORDER BY e.seq
         LIMIT p_limit)
        UNION ALL
        SELECT d.seq, d.kind, d.occurred_at, d.payload FROM derived AS d
        WHERE NOT EXISTS (
            SELECT 1 FROM __SCHEMA__.job_events AS e WHERE e.job_id = p_job AND e.seq = d.seq)
    ) AS page
    ORDER BY page.seq
    LIMIT p_limit
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (8) ON CONFLICT (version) DO NOTHING;
