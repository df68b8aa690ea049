-- jobworker schema for PostgreSQL, version 6: job events.
--
-- jobs.event_seq is the sequence number of the job's newest event known to the database. A
-- statement that changes a job's status also sets event_seq to the number of the `lifecycle`
-- event recording the change (one more than before, or above the numbers the job's attempt
-- used on the live bus) and stores that event, in the same statement: a batch of changes
-- writes its events in one INSERT. (A trigger would do the same for every statement, but costs
-- twice as much per row on the claim and completion paths.) job_events.transient marks events
-- of kinds that are not kept (chunks, logs, metrics) stored only to carry them live when Redis
-- is not there; readers without Redis LISTEN on 'jobworker-events:<schema>'.

ALTER TABLE __SCHEMA__.jobs ADD COLUMN IF NOT EXISTS event_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE __SCHEMA__.job_events ADD COLUMN IF NOT EXISTS transient boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS job_events_transient
    ON __SCHEMA__.job_events (occurred_at) WHERE transient;

-- The payload of a lifecycle event: the status, the attempt, the error (of a failed, dead,
-- cancelled or re-queued job) and when a failed job runs again. Every statement that changes a
-- job's status stores its event in the same statement with this (inlined by the planner).
CREATE OR REPLACE FUNCTION __SCHEMA__.lifecycle_payload(
    p_status text, p_attempt integer, p_error text, p_run_at timestamptz
) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
    SELECT jsonb_build_object(
        'status', p_status,
        'attempt', p_attempt,
        'error', CASE WHEN p_status IN ('failed', 'dead', 'cancelled', 'queued') THEN p_error END,
        'retry_at', CASE WHEN p_status = 'failed' THEN p_run_at END)
$$;

-- The claim of version 3 (see 003_claim.sql for why it is a function), numbering each claimed
-- job's `running` event and returning that number. New name: a function's result columns
-- cannot change in place, and version 3's stays for workers of the previous release.
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
    , claimed AS (
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
            j.started_at, j.result_ttl, j.priority, j.run_at, j.event_seq
    ), events AS (
        INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload)
        SELECT c.id, c.event_seq, 'lifecycle', p_now,
            __SCHEMA__.lifecycle_payload('running', c.attempt, NULL, NULL)
        FROM claimed AS c
        ON CONFLICT DO NOTHING
    )
    SELECT * FROM claimed;
END
$$;

CREATE OR REPLACE FUNCTION __SCHEMA__.claim_batch(
    p_now timestamptz, p_queues text[], p_job_types text[], p_limit integer, p_owner text,
    p_lease_until timestamptz, p_capped_types text[], p_caps integer[]
) RETURNS TABLE (
    id uuid, job_type text, queue text, args jsonb, attempt integer, max_attempts integer,
    enqueued_at timestamptz, started_at timestamptz, result_ttl double precision,
    priority integer, run_at timestamptz, event_seq bigint
)
LANGUAGE plpgsql
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
            RETURN QUERY
            SELECT * FROM __SCHEMA__.claim_batch(
                p_now, p_queues, v_types, v_room, p_owner, p_lease_until);
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

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (6) ON CONFLICT (version) DO NOTHING;
