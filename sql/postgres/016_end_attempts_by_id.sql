-- jobworker schema for PostgreSQL, version 16: attempts end through a function that finds each
-- job by its primary key. Idempotent, as the baseline.
--
-- The end_attempts statement (queries.sql) joined its outcomes to jobs on the job's id, lease,
-- attempt and `status = 'running'`. That status test matches jobs_leases' predicate, and a
-- table whose statistics lag (running rows come and go faster than ANALYZE) looks as if it had
-- a handful of running rows: the planner read EVERY running job, of every worker, through a
-- bitmap scan of jobs_leases and hashed the batch against them. Its cost grew with the jobs
-- running across the cluster, not with the batch (docs/performance.md has the figures).
--
-- Here the same statement reads jobs by id only: the jobs of the batch, `j.id = ANY(p_ids)`,
-- found in jobs_pkey, and its status test is written with COLLATE "C" (the same comparison,
-- which the planner cannot prove implies jobs_leases' predicate). It runs with bitmap and
-- sequential scans, nested loops and merge joins turned off (as claim_batch turns off what it
-- must not do, for its one statement), so what is left is one plan: the batch's jobs read from
-- jobs_pkey, a lookup per outcome, and hashed against the batch. (A nested loop could take
-- the jobs first and read the whole batch again for each; a merge join could walk all of
-- jobs_pkey.) PL/pgSQL keeps the plan for the session, a generic one: no call plans the
-- statement again for its values, which the statement in queries.sql did on every call. The
-- attempt rows take their outcome's values from what the update returns, rather than joining
-- the batch to the updated rows again.
--
-- Nothing else changes: the same fences (lease owner, attempt, cancel request, running), the
-- same events, attempt rows and notification; see end_attempts in queries.sql.
CREATE OR REPLACE FUNCTION __SCHEMA__.end_attempts(
    p_ids uuid[], p_owners text[], p_attempts integer[], p_asked boolean[],
    p_decisions integer[], p_errors text[], p_tracebacks text[], p_results jsonb[],
    p_run_ats timestamptz[], p_result_ttls double precision[], p_seq_floors bigint[],
    p_started_ats timestamptz[], p_ended_ats timestamptz[], p_start_seqs bigint[],
    p_statuses text[], p_attempt_changes integer[], p_recorded text[], p_error_effects text[],
    p_traceback_effects text[], p_ends boolean[], p_seq_steps integer[], p_now timestamptz,
    p_event_job_ids uuid[], p_event_seqs bigint[], p_event_kinds text[],
    p_event_times timestamptz[], p_event_payloads jsonb[], p_event_transient boolean[],
    p_channel text, p_event_owners text[], p_event_attempts integer[]
) RETURNS TABLE (
    id uuid, settle boolean, status text, attempt integer, event_seq bigint, error text,
    run_at timestamptz, notified bigint
)
LANGUAGE plpgsql
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH done AS (
        SELECT d.*,
            p_statuses[d.decision] AS status, p_attempt_changes[d.decision] AS attempt_change,
            p_recorded[d.decision] AS recorded, p_error_effects[d.decision] AS error_effect,
            p_traceback_effects[d.decision] AS traceback_effect, p_ends[d.decision] AS ends,
            p_seq_steps[d.decision] AS seq_step
        FROM unnest(
            p_ids, p_owners, p_attempts, p_asked, p_decisions, p_errors, p_tracebacks,
            p_results, p_run_ats, p_result_ttls, p_seq_floors, p_started_ats, p_ended_ats,
            p_start_seqs
        ) AS d(id, owner, attempt, asked, decision, error, traceback, result, run_at,
               result_ttl, seq_floor, started_at, ended_at, start_seq)), events AS (
        -- Each event only while the attempt that emitted it may still write (event_log.py).
        INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload, transient)
        SELECT e.job_id, e.seq, e.kind, e.occurred_at, e.payload, e.transient
        FROM unnest(
            p_event_job_ids, p_event_seqs, p_event_kinds, p_event_times, p_event_payloads,
            p_event_transient, p_event_owners, p_event_attempts
        ) AS e(job_id, seq, kind, occurred_at, payload, transient, owner, attempt)
        WHERE e.owner IS NULL OR EXISTS (
            SELECT 1 FROM __SCHEMA__.jobs AS j
            WHERE j.id = e.job_id AND j.attempt = e.attempt
              AND (j.lease_owner IS NULL OR j.lease_owner = e.owner)
              AND NOT EXISTS (
                  SELECT 1 FROM __SCHEMA__.job_attempts AS a
                  WHERE a.job_id = e.job_id AND a.attempt = e.attempt AND a.outcome = 'lost'))
        ON CONFLICT DO NOTHING
    ), updated AS (
        UPDATE __SCHEMA__.jobs AS j
        SET status = d.status,
            attempt = j.attempt + d.attempt_change,
            started_at = CASE WHEN d.attempt_change < 0 THEN NULL ELSE j.started_at END,
            result = CASE WHEN d.status = 'succeeded' THEN d.result ELSE j.result END,
            error = CASE d.error_effect WHEN 'set' THEN d.error WHEN 'clear' THEN NULL
                        ELSE j.error END,
            traceback = CASE d.traceback_effect WHEN 'set' THEN d.traceback WHEN 'clear' THEN NULL
                            ELSE j.traceback END,
            run_at = COALESCE(d.run_at, j.run_at),
            completed_at = CASE WHEN d.ends THEN p_now END,
            expires_at = CASE WHEN d.ends
                              THEN p_now + make_interval(secs => d.result_ttl) END,
            lease_owner = NULL,
            lease_expires_at = NULL,
            event_seq = greatest(j.event_seq, d.seq_floor) + d.seq_step
        FROM done AS d
        WHERE j.id = ANY(p_ids) AND j.id = d.id AND j.cancel_requested = d.asked AND j.lease_owner = d.owner
          AND j.attempt = d.attempt AND j.status COLLATE "C" = 'running'
        RETURNING j.id, j.has_continuations AND d.ends AS settle, j.status, j.attempt,
            j.event_seq, j.error, j.run_at, d.owner AS worker, d.attempt AS ended_attempt,
            d.started_at, d.ended_at, d.recorded, d.error AS attempt_error,
            d.traceback AS attempt_traceback, d.start_seq
    ), attempts AS (
        INSERT INTO __SCHEMA__.job_attempts
            (job_id, attempt, worker, started_at, ended_at, outcome, error, traceback,
             start_seq, end_seq, end_status, end_attempt, end_error, end_run_at)
        SELECT u.id, u.ended_attempt, u.worker, u.started_at, u.ended_at, u.recorded,
            u.attempt_error, u.attempt_traceback,
            COALESCE(NULLIF(u.start_seq, 0),
                     (SELECT j.event_seq FROM __SCHEMA__.jobs AS j WHERE j.id = u.id)),
            u.event_seq, u.status, u.attempt, u.error, u.run_at
        FROM updated AS u
    ), touched AS (
        -- p_channel: the one that wakes readers without Redis (NULL: the caller publishes).
        SELECT string_agg(DISTINCT t.id::text, ',') AS ids
        FROM (SELECT unnest(p_event_job_ids) AS id UNION ALL SELECT u.id FROM updated AS u) AS t
        WHERE p_channel IS NOT NULL
    )
    SELECT u.id, u.settle, u.status, u.attempt, u.event_seq, u.error, u.run_at,
        (SELECT count(pg_notify(p_channel, CASE WHEN length(t.ids) < 7000 THEN t.ids ELSE '*' END))
         FROM touched AS t WHERE t.ids IS NOT NULL)
    FROM updated AS u;
END
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (16) ON CONFLICT (version) DO NOTHING;
