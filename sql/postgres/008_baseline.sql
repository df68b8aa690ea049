-- jobworker schema for PostgreSQL: the baseline, version 8. It states the whole schema; later
-- versions are numbered scripts after it. (Versions 1 to 7 were development versions, never
-- released: `jobworker migrate` refuses a schema that old.) Idempotent: every statement can run
-- again. A placeholder stands for the (validated, quoted) schema name; `jobworker sql` fills it in.

CREATE SCHEMA IF NOT EXISTS __SCHEMA__;

CREATE TABLE IF NOT EXISTS __SCHEMA__.jobworker_schema (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Jobs ---------------------------------------------------------------------------------------

-- event_seq is the number of the job's newest event known to the database: a statement that
-- changes a job's status sets it to the number of the `lifecycle` event recording the change.
-- has_continuations is set (under the parent's row lock) when a continuation is enqueued, so
-- that finishing a job looks for continuations only when it has some.
CREATE TABLE IF NOT EXISTS __SCHEMA__.jobs (
    id                uuid PRIMARY KEY,
    job_type          text NOT NULL,
    queue             text NOT NULL,
    priority          integer NOT NULL DEFAULT 0,
    status            text NOT NULL CHECK (status IN (
                          'queued', 'scheduled', 'awaiting', 'running',
                          'succeeded', 'failed', 'dead', 'cancelled')),
    args              jsonb NOT NULL,
    attempt           integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    enqueued_at       timestamptz NOT NULL,
    run_at            timestamptz NOT NULL,
    started_at        timestamptz,
    completed_at      timestamptz,
    lease_owner       text,
    lease_expires_at  timestamptz,
    idempotency_key   text,
    continues_job_id  uuid,
    result            jsonb,
    error             text,
    traceback         text,
    result_ttl        double precision,
    expires_at        timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    has_continuations boolean NOT NULL DEFAULT false,
    event_seq         bigint NOT NULL DEFAULT 0
);

-- The claim walks this index in priority order, skipping rows other workers hold.
CREATE INDEX IF NOT EXISTS jobs_claimable
    ON __SCHEMA__.jobs (priority DESC, run_at)
    WHERE status IN ('queued', 'scheduled', 'failed');

-- Lease rescue finds expired leases; running jobs are few (bounded by the workers' slots).
CREATE INDEX IF NOT EXISTS jobs_leases
    ON __SCHEMA__.jobs (lease_expires_at)
    WHERE status = 'running';

CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_key
    ON __SCHEMA__.jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX IF NOT EXISTS jobs_expires_at
    ON __SCHEMA__.jobs (expires_at) WHERE expires_at IS NOT NULL;

-- Every index on jobs costs an entry per status change, so there are few. Ids are UUIDv7
-- (time-ordered): listing newest first walks the primary key backwards. Listing by status uses
-- a partial index for the statuses that are rare and looked for (queued jobs are in
-- jobs_claimable, running ones in jobs_leases).
CREATE INDEX IF NOT EXISTS jobs_attention
    ON __SCHEMA__.jobs (status, id)
    WHERE status IN ('failed', 'dead', 'cancelled', 'awaiting');
CREATE INDEX IF NOT EXISTS jobs_continues
    ON __SCHEMA__.jobs (continues_job_id) WHERE continues_job_id IS NOT NULL;

-- Attempts are only ever read by job: one index, no primary key to maintain per row. An attempt's
-- row stands for the lifecycle events of its start and end (read_events derives them): the
-- number of its `running` event (start_seq), and its end's number (end_seq) with what
-- lifecycle_payload makes its payload of (the job's status, attempt, error and run_at after the
-- change; plain columns, because building a jsonb value per completed job costs the completion
-- more than storing four values). Stored as event rows they would be two more index insertions
-- per job on the two hottest statements, the claim and the completion.
CREATE TABLE IF NOT EXISTS __SCHEMA__.job_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    job_id      uuid NOT NULL,
    attempt     integer NOT NULL,
    worker      text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    outcome     text NOT NULL,
    error       text,
    traceback   text,
    start_seq   bigint,
    end_seq     bigint,
    end_status  text,
    end_attempt integer,
    end_error   text,
    end_run_at  timestamptz
);
CREATE INDEX IF NOT EXISTS job_attempts_job ON __SCHEMA__.job_attempts (job_id, id);

-- Events -------------------------------------------------------------------------------------

-- The events a job's handler emits, and the lifecycle events of changes other than an attempt's
-- start and end (cancelled while waiting, retried, a continuation promoted or cancelled), each
-- stored by the statement that makes the change. transient marks events of kinds that are not
-- kept (chunks, logs, metrics) stored only to carry them live when Redis is not there; readers
-- without Redis LISTEN on 'jobworker-events:<schema>'.
CREATE TABLE IF NOT EXISTS __SCHEMA__.job_events (
    job_id       uuid NOT NULL,
    seq          bigint NOT NULL,
    kind         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      jsonb NOT NULL,
    transient    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX IF NOT EXISTS job_events_transient
    ON __SCHEMA__.job_events (occurred_at) WHERE transient;

-- Queues, recurring jobs and leaders ---------------------------------------------------------

CREATE TABLE IF NOT EXISTS __SCHEMA__.recurring_jobs (
    name          text PRIMARY KEY,
    job_type      text NOT NULL,
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    args          jsonb NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    last_fire_at  timestamptz,
    next_fire_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS __SCHEMA__.queue_state (
    queue       text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Who holds a leader lease (beat without Redis). The lease itself is a session-level advisory
-- lock on a dedicated connection: it ends when that session does, so a leader that dies or loses
-- its connection gives it up at once. This table only records the current term.
CREATE TABLE IF NOT EXISTS __SCHEMA__.leader_terms (
    name    text PRIMARY KEY,
    holder  text NOT NULL,
    token   text NOT NULL,
    since   timestamptz NOT NULL
);

-- The beat leader's heartbeat, whatever its lease: the leader writes its term here at every
-- renewal; workers skip lease rescue and the janitor while it is alive, and `jobworker beat
-- --status` reads who leads.
CREATE TABLE IF NOT EXISTS __SCHEMA__.beat_leaders (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    mechanism   text NOT NULL,
    token       text NOT NULL,
    since       timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Routines -----------------------------------------------------------------------------------

-- Wake idle workers when jobs are enqueued: one NOTIFY per INSERT statement and queue (a batch of
-- 10,000 jobs sends one), on channel 'jobworker:<schema>' with the queue name as payload. Workers
-- poll as well, so a lost notification costs at most one poll interval.
CREATE OR REPLACE FUNCTION __SCHEMA__.notify_enqueued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobworker:' || TG_TABLE_SCHEMA, queues.queue)
    FROM (SELECT DISTINCT queue FROM inserted_jobs WHERE status = 'queued') AS queues;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER jobs_notify_enqueued
    AFTER INSERT ON __SCHEMA__.jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.notify_enqueued();

-- The payload of a lifecycle event: the status, the attempt, the error (of a failed, dead,
-- cancelled or re-queued job) and when a failed job runs again (inlined by the planner).
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

-- The claim: lock the most urgent due rows no other worker holds, lease them, count the attempt
-- and number its `running` event (returning that number; read_events derives the event).
--
-- It must walk jobs_claimable in (priority DESC, run_at) order and stop after `limit` rows it can
-- lock. On a table whose statistics lag behind a burst of enqueues (autovacuum has not analysed
-- it yet), the planner can prefer a bitmap scan of every due row followed by a sort: correct,
-- but it reads the whole backlog on every claim. Bitmap and sequential scans are turned off for
-- this one statement only, so the plan does not depend on the statistics; and PL/pgSQL keeps the
-- plan of this statement for the session: planned once, not per claim.
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

-- The claim with per-job-type concurrency caps. p_job_types are claimed freely, by the claim
-- above; each of p_capped_types may have at most the matching p_caps entry running across the
-- cluster: claims of one capped type are serialised by a transaction-level advisory lock, and
-- count the running ones before taking the rest (each group by the claim above: one claim
-- statement, one plan).
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

-- A page of a job's events after p_after: the stored rows (with the transient ones when
-- p_transient), and the lifecycle events an attempt's row stands for: its `running` event (from
-- the jobs row while it runs) and the event that ended it. With p_results, a succeeded job's
-- `result` event too, which is not stored as a row either: it is the job's result, one before
-- the `succeeded` event (when the attempt ended with it). A function for its planner settings, as the claim: a job can have a
-- hundred thousand events, and a page must be read along the primary key, not gathered and
-- sorted whole, whatever the table's statistics say.
CREATE OR REPLACE FUNCTION __SCHEMA__.read_events(
    p_job uuid, p_after bigint, p_limit integer, p_transient boolean, p_results boolean
) RETURNS TABLE (seq bigint, kind text, occurred_at timestamptz, payload jsonb)
LANGUAGE sql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    SELECT * FROM (
        (SELECT e.seq, e.kind, e.occurred_at, e.payload FROM __SCHEMA__.job_events AS e
         WHERE e.job_id = p_job AND e.seq > p_after AND (p_transient OR NOT e.transient)
         ORDER BY e.seq
         LIMIT p_limit)
        UNION ALL
        SELECT a.start_seq, 'lifecycle', a.started_at,
            __SCHEMA__.lifecycle_payload('running', a.attempt, NULL, NULL)
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
          -- Unless the attempt stored an event of that number (its result was not its last).
          AND NOT EXISTS (
              SELECT 1 FROM __SCHEMA__.job_events AS e
              WHERE e.job_id = p_job AND e.seq = a.end_seq - 1)
    ) AS page
    ORDER BY page.seq
    LIMIT p_limit
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (8) ON CONFLICT (version) DO NOTHING;
