-- jobworker schema for PostgreSQL, version 9: the one event model. Every event the storage
-- makes is built by jobworker itself (storage/event_log.py), with its own clock: no SQL builds an
-- event's payload. An attempt's row keeps the marks of its `running` event and of its end (as
-- version 8); a status change outside an attempt is stored as a row whose payload jobworker
-- built. Reading a job's events selects the plain rows (event_rows) and builds the events they
-- imply in Python. Idempotent, as the baseline.

-- lifecycle_payload built payloads in SQL, and read_events built a page of events with it.
DROP FUNCTION IF EXISTS __SCHEMA__.read_events(uuid, bigint, integer, boolean, boolean);
DROP FUNCTION IF EXISTS __SCHEMA__.lifecycle_payload(text, integer, text, timestamptz);

-- The rows a page of a job's events after p_after is made of, in one snapshot (one statement):
--   source 'event':   a stored row (the transient ones too when p_transient), at most p_limit,
--                     the first after p_after: seq, kind, occurred_at, payload;
--   source 'attempt': an attempt's row with a mark after p_after: seq (its `running` event's
--                     number, start_seq), occurred_at (started_at), attempt, ended_at, and its
--                     end's end_seq, end_status, end_attempt, end_error, end_run_at;
--   source 'job':     the job's row: seq (event_seq), status, attempt, occurred_at (started_at)
--                     and, when a succeeded attempt's `result` event falls in the page, payload
--                     (the job's result).
-- A function for its planner settings, as the claim: a job can have a hundred thousand events,
-- and a page must be read along the primary key, not gathered and sorted whole, whatever the
-- table's statistics say.
CREATE OR REPLACE FUNCTION __SCHEMA__.event_rows(
    p_job uuid, p_after bigint, p_limit integer, p_transient boolean
) RETURNS TABLE (
    source text, seq bigint, kind text, occurred_at timestamptz, payload jsonb, status text,
    attempt integer, ended_at timestamptz, end_seq bigint, end_status text, end_attempt integer,
    end_error text, end_run_at timestamptz
)
LANGUAGE sql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    (SELECT 'event', e.seq, e.kind, e.occurred_at, e.payload, NULL::text, NULL::integer,
         NULL::timestamptz, NULL::bigint, NULL::text, NULL::integer, NULL::text,
         NULL::timestamptz
     FROM __SCHEMA__.job_events AS e
     WHERE e.job_id = p_job AND e.seq > p_after AND (p_transient OR NOT e.transient)
     ORDER BY e.seq
     LIMIT p_limit)
    UNION ALL
    SELECT 'attempt', a.start_seq, NULL, a.started_at, NULL, NULL, a.attempt, a.ended_at,
        a.end_seq, a.end_status, a.end_attempt, a.end_error, a.end_run_at
    FROM __SCHEMA__.job_attempts AS a
    WHERE a.job_id = p_job AND (a.start_seq > p_after OR a.end_seq > p_after)
    UNION ALL
    SELECT 'job', j.event_seq, NULL, j.started_at,
        CASE WHEN j.status = 'succeeded' AND EXISTS (
                 SELECT 1 FROM __SCHEMA__.job_attempts AS a
                 WHERE a.job_id = p_job AND a.end_status = 'succeeded'
                   AND a.end_seq - 1 > p_after)
             THEN j.result END,
        j.status, j.attempt, NULL, NULL, NULL, NULL, NULL, NULL
    FROM __SCHEMA__.jobs AS j
    WHERE j.id = p_job
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (9) ON CONFLICT (version) DO NOTHING;
