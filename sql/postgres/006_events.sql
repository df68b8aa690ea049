-- jobworker schema for PostgreSQL, version 6: job events.
--
-- jobs.event_seq is the sequence number of the job's newest event known to the database. A
-- statement that changes a job's status also sets event_seq to the number of the `lifecycle`
-- event recording the change (one more than before, or above the numbers the job's attempt
-- used on the live bus); the statement-level trigger below stores those events, so a batch of
-- changes writes its events in one INSERT. job_events.transient marks events of kinds that are
-- not kept (chunks, logs, metrics) stored only to carry them live when Redis is not there.

ALTER TABLE __SCHEMA__.jobs ADD COLUMN IF NOT EXISTS event_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE __SCHEMA__.job_events ADD COLUMN IF NOT EXISTS transient boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS job_events_transient
    ON __SCHEMA__.job_events (occurred_at) WHERE transient;

CREATE OR REPLACE FUNCTION __SCHEMA__.record_lifecycle() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload)
    SELECT n.id, n.event_seq, 'lifecycle', clock_timestamp(),
        jsonb_build_object(
            'status', n.status,
            'attempt', n.attempt,
            'error', CASE WHEN n.status IN ('failed', 'dead', 'cancelled', 'queued')
                          THEN n.error END,
            'retry_at', CASE WHEN n.status = 'failed' THEN n.run_at END)
    FROM new_jobs AS n JOIN old_jobs AS o ON o.id = n.id
    WHERE n.event_seq > o.event_seq
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER jobs_record_lifecycle
    AFTER UPDATE ON __SCHEMA__.jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.record_lifecycle();

-- Readers following a job without Redis LISTEN on 'jobworker-events:<schema>': one NOTIFY per
-- INSERT statement, naming the jobs ('*' when the list would not fit a notification).
CREATE OR REPLACE FUNCTION __SCHEMA__.notify_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_ids text;
BEGIN
    SELECT string_agg(DISTINCT job_id::text, ',') INTO v_ids FROM new_events;
    IF v_ids IS NOT NULL THEN
        PERFORM pg_notify('jobworker-events:' || TG_TABLE_SCHEMA,
                          CASE WHEN length(v_ids) > 7000 THEN '*' ELSE v_ids END);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER job_events_notify
    AFTER INSERT ON __SCHEMA__.job_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.notify_events();

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
