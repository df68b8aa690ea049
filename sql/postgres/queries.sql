-- Named statements of the PostgreSQL backend. Each starts with a `-- name: <name>` line.
-- A placeholder is replaced by the validated, quoted schema name. Times are passed in by the
-- caller's clock. Arrays + unnest make every batch one round trip.
-- A `-- params: a, b, c` line names $1, $2, $3 in order: the statement is bound by name (checked
-- when loaded: every $n named, every name used). Statements without one are bound by position.

-- name: database_now
SELECT clock_timestamp();

-- name: schema_version
SELECT max(version) FROM __SCHEMA__.jobworker_schema;

-- name: enqueue
-- params: ids, job_types, queues, priorities, statuses, job_args, max_attempts, enqueued_ats,
--     run_ats, idempotency_keys, continues_job_ids, result_ttls, kinds, trace_contexts
INSERT INTO __SCHEMA__.jobs (
    id, job_type, queue, priority, status, args, max_attempts, enqueued_at, run_at,
    idempotency_key, continues_job_id, result_ttl, kind, trace_context
)
SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::jsonb[], $7::integer[],
    $8::timestamptz[], $9::timestamptz[], $10::text[], $11::uuid[], $12::double precision[],
    $13::text[], $14::text[]
)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: ids_by_idempotency_keys
SELECT idempotency_key, id FROM __SCHEMA__.jobs WHERE idempotency_key = ANY($1::text[]);

-- name: claim
-- params: now, queues, job_types, limit, owner, lease_until, sync_types, sync_limit, async_limit
-- Lock the most urgent due rows no other worker holds, lease them, count the attempt and number
-- its `running` event (claim_batch in the schema says why this is a function), at most
-- sync_limit of sync_types and async_limit of the others (NULL: no limit but limit).
SELECT * FROM __SCHEMA__.claim_batch(
    $1, $2::text[], $3::text[], $4, $5, $6, $7::text[], $8::integer, $9::integer);

-- name: claim_capped
-- params: now, queues, job_types, limit, owner, lease_until, capped_types, caps, sync_types,
--     sync_limit, async_limit
-- The same, when some job types have a cluster-wide concurrency cap.
SELECT * FROM __SCHEMA__.claim_batch(
    $1, $2::text[], $3::text[], $4, $5, $6, $7::text[], $8::integer[], $9::text[], $10::integer,
    $11::integer);

-- name: claim_traced
-- params: now, queues, job_types, limit, owner, lease_until, sync_types, sync_limit, async_limit
-- The claim, and each job's trace context (for a worker that traces): read by its primary key
-- per claimed row (a subquery, not a join: the planner expects a function to return 1000 rows
-- and would hash-join a scan of jobs), from the rows as the statement began, which the claim
-- does not change. A job committed while the statement ran may be claimed by the function and
-- not seen by that read: its trace context is NULL and its attempt starts a trace of its own.
SELECT c.*, (SELECT t.trace_context FROM __SCHEMA__.jobs AS t WHERE t.id = c.id)
FROM __SCHEMA__.claim_batch(
    $1, $2::text[], $3::text[], $4, $5, $6, $7::text[], $8::integer, $9::integer) AS c;

-- name: claim_capped_traced
-- params: now, queues, job_types, limit, owner, lease_until, capped_types, caps, sync_types,
--     sync_limit, async_limit
-- claim_capped, and each job's trace context, as claim_traced reads it.
SELECT c.*, (SELECT t.trace_context FROM __SCHEMA__.jobs AS t WHERE t.id = c.id)
FROM __SCHEMA__.claim_batch(
    $1, $2::text[], $3::text[], $4, $5, $6, $7::text[], $8::integer[], $9::text[], $10::integer,
    $11::integer) AS c;

-- name: extend_leases
-- params: owner, ids, attempts, lease_until
-- Only the leases the worker holds (ids/attempts): a job leased to it that it never received (a
-- claim whose reply was lost) is left to expire.
UPDATE __SCHEMA__.jobs AS j SET lease_expires_at = $4
FROM unnest($2::uuid[], $3::integer[]) AS h(id, attempt)
WHERE j.id = h.id AND j.attempt = h.attempt AND j.lease_owner = $1 AND j.status = 'running'
RETURNING j.id;

-- name: end_attempts
-- params: ids, owners, attempts, asked, decisions, errors, tracebacks, results, run_ats,
--     result_ttls, seq_floors, started_ats, ended_ats, start_seqs, statuses, attempt_changes,
--     recorded, error_effects, traceback_effects, ends, seq_steps, now, event_job_ids,
--     event_seqs, event_kinds, event_times, event_payloads, event_transient, channel,
--     event_owners, event_attempts
-- Attempts end as storage/attempt_ends.py decided (nothing here decides a status): store the
-- attempts' events (event_transient: those of kinds the history does not keep, which expire),
-- then apply to each job still leased to the attempt, if its cancel request is `asked`, the
-- decision it was given (`decisions`: an index into the batch's distinct decisions, the arrays
-- from statuses to seq_steps), numbered above the attempt's numbers (seq_floors), and record
-- the attempt's row with the number of its `running` event (start_seqs; 0: jobs.event_seq
-- before this statement, as every part of a statement sees the rows as they were) and what its
-- end's lifecycle event says (storage/event_log.py reads both events from the row, and a
-- success's result event from jobs.result). A function (in the schema, version 16) for its
-- planner settings: each outcome's job is looked up by its primary key, whatever the number of
-- jobs running.
SELECT * FROM __SCHEMA__.end_attempts(
    $1::uuid[], $2::text[], $3::integer[], $4::boolean[], $5::integer[], $6::text[],
    $7::text[], $8::jsonb[], $9::timestamptz[], $10::double precision[], $11::bigint[],
    $12::timestamptz[], $13::timestamptz[], $14::bigint[], $15::text[], $16::integer[],
    $17::text[], $18::text[], $19::text[], $20::boolean[], $21::integer[], $22::timestamptz,
    $23::uuid[], $24::bigint[], $25::text[], $26::timestamptz[], $27::jsonb[], $28::boolean[],
    $29::text, $30::text[], $31::integer[]);

-- name: leases_to_end
-- params: owner, now, limit
-- The leases of one owner, or every expired lease (owner NULL), locked for ending them, with the
-- last number of an event the job has stored (its attempt's, that its worker may not report).
-- A running row without a lease expiry (written by hand) counts as expired: nothing renews it.
SELECT id, attempt, max_attempts, lease_owner, started_at, cancel_requested, event_seq,
    COALESCE((SELECT max(e.seq) FROM __SCHEMA__.job_events AS e WHERE e.job_id = jobs.id), 0)
FROM __SCHEMA__.jobs
WHERE status = 'running'
  AND (($1::text IS NOT NULL AND lease_owner = $1::text)
       OR ($1::text IS NULL
           AND (lease_expires_at < $2::timestamptz OR lease_expires_at IS NULL)))
LIMIT $3::integer
FOR UPDATE SKIP LOCKED;

-- name: settle_continuations
-- params: parents, now, default_ttl, channel
-- Continuations of parents that have ended: promoted when the parent succeeded, cancelled
-- (down the chain) when it ended dead or cancelled, or no longer exists. Returns each changed
-- job as its lifecycle event says it (the caller stores the events, in the same transaction).
WITH RECURSIVE parents AS (
    SELECT given.id, COALESCE(j.status, 'missing') AS status
    FROM unnest($1::uuid[]) AS given(id)
    LEFT JOIN __SCHEMA__.jobs AS j ON j.id = given.id
    WHERE COALESCE(j.status, 'missing') IN ('succeeded', 'dead', 'cancelled', 'missing')
), promoted AS (
    UPDATE __SCHEMA__.jobs AS c
    SET status = CASE WHEN c.run_at > $2 THEN 'scheduled' ELSE 'queued' END,
        event_seq = c.event_seq + 1
    FROM parents AS p
    WHERE c.continues_job_id = p.id AND p.status = 'succeeded' AND c.status = 'awaiting'
    RETURNING c.id, pg_notify($4::text, c.queue), c.event_seq, c.status, c.attempt, c.error,
        c.run_at
), doomed(id, root, root_status) AS (
    SELECT c.id, p.id, p.status
    FROM __SCHEMA__.jobs AS c JOIN parents AS p ON c.continues_job_id = p.id
    WHERE p.status <> 'succeeded' AND c.status = 'awaiting'
    UNION
    SELECT j.id, d.root, d.root_status
    FROM __SCHEMA__.jobs AS j JOIN doomed AS d ON j.continues_job_id = d.id
    WHERE j.status = 'awaiting'
), cancelled AS (
    UPDATE __SCHEMA__.jobs AS c
    SET status = 'cancelled',
        error = CASE d.root_status WHEN 'missing'
                    THEN 'parent job ' || d.root || ' no longer exists'
                    ELSE 'parent job ' || d.root || ' ended ' || d.root_status END,
        completed_at = $2,
        expires_at = $2::timestamptz + make_interval(secs => COALESCE(c.result_ttl, $3)),
        event_seq = c.event_seq + 1
    FROM doomed AS d
    WHERE c.id = d.id
    RETURNING c.id, c.event_seq, c.status, c.attempt, c.error, c.run_at
)
SELECT id, event_seq, status, attempt, error, run_at FROM promoted
UNION ALL
SELECT id, event_seq, status, attempt, error, run_at FROM cancelled;

-- name: lock_parents
-- Enqueueing continuations: lock each parent row and mark it, so that a parent finishing at the
-- same moment either sees the continuation or is seen by it (never neither).
UPDATE __SCHEMA__.jobs SET has_continuations = true
WHERE id = ANY($1::uuid[])
RETURNING id, status;

-- name: orphaned_parents
SELECT DISTINCT c.continues_job_id
FROM __SCHEMA__.jobs AS c
LEFT JOIN __SCHEMA__.jobs AS p ON p.id = c.continues_job_id
WHERE c.status = 'awaiting'
  AND (p.id IS NULL OR p.status IN ('succeeded', 'dead', 'cancelled'))
LIMIT $1;

-- name: cancel
-- params: job_id, reason, now, default_ttl, channel
-- A waiting job is cancelled at once (returned as its lifecycle event says it: the caller stores
-- the event, in the same transaction); a running one is flagged and its worker notified.
WITH target AS (
    SELECT id, status FROM __SCHEMA__.jobs WHERE id = $1 FOR UPDATE
), waiting AS (
    UPDATE __SCHEMA__.jobs AS j
    SET status = 'cancelled', error = $2, traceback = NULL, completed_at = $3,
        expires_at = $3::timestamptz + make_interval(secs => COALESCE(j.result_ttl, $4)),
        lease_owner = NULL, lease_expires_at = NULL, event_seq = j.event_seq + 1
    FROM target AS t
    WHERE j.id = t.id AND t.status IN ('queued', 'scheduled', 'awaiting', 'failed')
    RETURNING j.id, j.event_seq, j.status, j.attempt, j.error, j.run_at
), running AS (
    UPDATE __SCHEMA__.jobs AS j
    SET cancel_requested = true, error = $2
    FROM target AS t
    WHERE j.id = t.id AND t.status = 'running'
    RETURNING j.id, pg_notify($5::text, 'cancel:' || j.id::text)
)
SELECT t.status AS found, w.id, w.event_seq, w.status, w.attempt, w.error, w.run_at,
    EXISTS (SELECT 1 FROM running) AS requested
FROM target AS t LEFT JOIN waiting AS w ON w.id = t.id;

-- name: end_unreadable
-- params: id, error, now, default_ttl, owner
-- A job the claim leased, or the lease rescue locked, but could not read (storage/rows.py) ends
-- dead with why, returned as its lifecycle event says it (the caller stores the event, in the
-- same transaction). The owner is the claim's, or the locked row's (NULL in a row so broken).
UPDATE __SCHEMA__.jobs
SET status = 'dead', error = $2, traceback = NULL, completed_at = $3,
    expires_at = $3::timestamptz + make_interval(secs => $4), lease_owner = NULL,
    lease_expires_at = NULL, event_seq = event_seq + 1
WHERE id = $1 AND status = 'running' AND lease_owner IS NOT DISTINCT FROM $5
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: cancel_requests
SELECT id FROM __SCHEMA__.jobs
WHERE lease_owner = $1 AND status = 'running' AND cancel_requested;

-- name: retry_dead
-- A dead job queued again, returned as its lifecycle event says it (the caller stores the
-- event, in the same transaction).
WITH target AS (
    SELECT id, status FROM __SCHEMA__.jobs WHERE id = $1 FOR UPDATE
), retried AS (
    UPDATE __SCHEMA__.jobs AS j
    SET status = 'queued', run_at = $2, max_attempts = greatest(j.max_attempts, j.attempt + 1),
        error = NULL, traceback = NULL, completed_at = NULL, expires_at = NULL,
        cancel_requested = false, event_seq = j.event_seq + 1
    FROM target AS t
    WHERE j.id = t.id AND t.status = 'dead'
    RETURNING j.id, pg_notify($3::text, j.queue), j.event_seq, j.status, j.attempt, j.error,
        j.run_at
)
SELECT t.status AS found, r.id, r.event_seq, r.status, r.attempt, r.error, r.run_at
FROM target AS t LEFT JOIN retried AS r ON r.id = t.id;

-- name: delete_job
WITH target AS (
    SELECT id, status FROM __SCHEMA__.jobs WHERE id = $1 FOR UPDATE
), deletable AS (
    SELECT id FROM target WHERE status <> 'running'
), attempts AS (
    DELETE FROM __SCHEMA__.job_attempts WHERE job_id IN (SELECT id FROM deletable)
), events AS (
    DELETE FROM __SCHEMA__.job_events WHERE job_id IN (SELECT id FROM deletable)
), deleted AS (
    DELETE FROM __SCHEMA__.jobs WHERE id IN (SELECT id FROM deletable) RETURNING id
)
SELECT t.status, EXISTS (SELECT 1 FROM deleted) FROM target AS t;

-- name: leased_job_ids
SELECT id FROM __SCHEMA__.jobs
WHERE status = 'running'
  AND (($1::text IS NOT NULL AND lease_owner = $1::text)
       OR ($1::text IS NULL
           AND (lease_expires_at < $2::timestamptz OR lease_expires_at IS NULL)))
LIMIT $3;

-- name: event_rows
-- params: job_id, after_seq, limit, transient
-- The rows a page of the job's events is made of (the event_rows function of the schema).
SELECT * FROM __SCHEMA__.event_rows($1, $2, $3, $4);

-- name: store_events
-- params: job_ids, seqs, kinds, times, payloads, transient, channel, owners, attempts
-- Events as rows (one already stored is left as it is); transient: of a kind the history does
-- not keep, it expires. An attempt's event (owners/attempts) only while that attempt may still
-- write (storage/event_log.py); the storage's own (owner NULL) as they are. channel: wake
-- readers without Redis for these jobs (NULL: none).
WITH stored AS (
    INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload, transient)
    SELECT e.job_id, e.seq, e.kind, e.occurred_at, e.payload, e.transient
    FROM unnest(
        $1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::boolean[],
        $8::text[], $9::integer[]
    ) AS e(job_id, seq, kind, occurred_at, payload, transient, owner, attempt)
    WHERE e.owner IS NULL OR EXISTS (
        SELECT 1 FROM __SCHEMA__.jobs AS j
        WHERE j.id = e.job_id AND j.attempt = e.attempt
          AND (j.lease_owner IS NULL OR j.lease_owner = e.owner)
          AND NOT EXISTS (
              SELECT 1 FROM __SCHEMA__.job_attempts AS a
              WHERE a.job_id = e.job_id AND a.attempt = e.attempt AND a.outcome = 'lost'))
    ON CONFLICT DO NOTHING
), touched AS (
    SELECT string_agg(DISTINCT id::text, ',') AS ids FROM unnest($1::uuid[]) AS given(id)
)
SELECT pg_notify($7::text, CASE WHEN length(ids) < 7000 THEN ids ELSE '*' END)
FROM touched WHERE $7::text IS NOT NULL AND ids IS NOT NULL;

-- name: purge_live
-- Rows of events the history does not keep, stored to carry them live, once they have expired.
DELETE FROM __SCHEMA__.job_events
WHERE (job_id, seq) IN (
    SELECT job_id, seq FROM __SCHEMA__.job_events
    WHERE transient AND occurred_at < $1
    LIMIT $2);

-- name: notify_events
-- Wake readers without Redis: the jobs whose events were stored ('*': maybe any).
SELECT pg_notify($1::text, $2::text);

-- name: set_queue_paused
INSERT INTO __SCHEMA__.queue_state (queue, paused, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at;

-- name: paused_queues
SELECT queue FROM __SCHEMA__.queue_state WHERE paused;

-- name: queue_counts
SELECT queue, status, count(*) FROM __SCHEMA__.jobs GROUP BY queue, status;

-- name: queue_states
SELECT queue, paused FROM __SCHEMA__.queue_state;

-- name: get_job
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM __SCHEMA__.jobs WHERE id = $1;

-- name: list_jobs
-- params: status, kind, job_type, queue, idempotency_key, search_types, search_ids, before,
--     limit, offset
-- Newest first: ids are UUIDv7, ordered by time. A page walks the primary key backwards from
-- `before` (keyset paging) and stops after limit + offset rows that pass the filters. The bound is
-- always a condition on the index (the max UUID, never a job's, stands for no bound): written as
-- `before IS NULL OR id < before`, a plan made for any value (PostgreSQL's generic plan of a
-- prepared statement) could only filter on it, and would read every row newer than the page.
-- `search_types` is found in the lower-cased job type; `search_ids`, when given, in the id's text.
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM __SCHEMA__.jobs
WHERE id < coalesce($8::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff')
  AND ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR job_type = $3)
  AND ($4::text IS NULL OR queue = $4)
  AND ($5::text IS NULL OR idempotency_key = $5)
  AND ($6::text IS NULL
       OR strpos(lower(job_type), $6) > 0
       OR ($7::text IS NOT NULL AND strpos(id::text, $7) > 0))
ORDER BY id DESC
LIMIT $9 OFFSET $10;

-- name: list_jobs_walk
-- params: status, kind, job_type, queue, idempotency_key, search_types, search_ids, before,
--     limit, offset, scan_limit, walk_status, walk_kind, walk_idempotency_key
-- list_jobs with a scan limit: the inner query walks at most `scan_limit` rows below `before`,
-- newest first, of those matching the walk_* filters (the ones an index serves: none, and the
-- walk is the primary key's); the outer one keeps those passing every filter, and stops reading
-- the walk once the page is full. Run with plan_cache_mode = force_custom_plan, so that a null
-- walk_* filter is folded away and a given one can pick its partial index.
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM (
    SELECT * FROM __SCHEMA__.jobs
    WHERE id < coalesce($8::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff')
      AND ($12::text IS NULL OR status = $12)
      AND ($13::text IS NULL OR kind = $13)
      AND ($14::text IS NULL OR idempotency_key = $14)
    ORDER BY id DESC
    LIMIT $11
) AS walked
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR job_type = $3)
  AND ($4::text IS NULL OR queue = $4)
  AND ($5::text IS NULL OR idempotency_key = $5)
  AND ($6::text IS NULL
       OR strpos(lower(job_type), $6) > 0
       OR ($7::text IS NOT NULL AND strpos(id::text, $7) > 0))
ORDER BY id DESC
LIMIT $9 OFFSET $10;

-- name: walk_edge
-- params: before, skip, walk_status, walk_kind, walk_idempotency_key
-- The last row list_jobs_walk's walk would read (the `skip + 1`-th), if it reads that many.
SELECT id FROM __SCHEMA__.jobs
WHERE id < coalesce($1::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff')
  AND ($3::text IS NULL OR status = $3)
  AND ($4::text IS NULL OR kind = $4)
  AND ($5::text IS NULL OR idempotency_key = $5)
ORDER BY id DESC
OFFSET $2 LIMIT 1;

-- name: estimate_rows
-- The planner's estimate of the jobs in a status (and a queue, when given), as EXPLAIN's JSON.
EXPLAIN (FORMAT JSON)
SELECT 1 FROM __SCHEMA__.jobs WHERE status = $1 AND ($2::text IS NULL OR queue = $2);

-- name: count_capped
-- The jobs of one status, counting at most $2 (through the status's partial index, under
-- force_custom_plan: an index-only scan where the visibility map allows).
SELECT count(*) FROM (SELECT 1 FROM __SCHEMA__.jobs WHERE status = $1 LIMIT $2) AS capped;

-- name: status_queues
-- The jobs of one status by queue (a status already counted as few: this reads each row).
SELECT queue, count(*) FROM __SCHEMA__.jobs WHERE status = $1 GROUP BY queue;

-- name: common_queues
-- The queues the planner's statistics name as the most common values of jobs.queue; NULL when
-- the table has no statistics yet (it was never analysed).
SELECT coalesce(most_common_vals::text::text[], '{}') FROM pg_stats
WHERE schemaname = $1 AND tablename = 'jobs' AND attname = 'queue';

-- name: distinct_queues
-- Every queue with jobs: read only while the table has no statistics (a new, small table).
SELECT DISTINCT queue FROM __SCHEMA__.jobs;

-- name: throughput
-- Attempts that ended in [$1, $2), by bucket of $3 seconds from $1 and outcome (a lost attempt
-- is `dead` when its job died of it, else `failed`: it runs again; released ones are left out).
-- The range is read through job_attempts_ended (BRIN).
SELECT floor(extract(epoch FROM a.ended_at - $1::timestamptz)::double precision
             / $3::double precision)::integer AS bucket,
    CASE WHEN a.outcome <> 'lost' THEN a.outcome
         WHEN a.end_status = 'dead' THEN 'dead'
         ELSE 'failed' END AS outcome,
    count(*)
FROM __SCHEMA__.job_attempts AS a
WHERE a.ended_at >= $1::timestamptz AND a.ended_at < $2::timestamptz
  AND a.outcome IN ('succeeded', 'failed', 'dead', 'cancelled', 'lost')
GROUP BY 1, 2;

-- name: count_by_status
SELECT status, count(*) FROM __SCHEMA__.jobs GROUP BY status;

-- name: list_attempts
SELECT job_id, attempt, worker, started_at, ended_at, outcome, error, traceback
FROM __SCHEMA__.job_attempts WHERE job_id = $1 ORDER BY id;

-- name: purge_expired
WITH doomed AS (
    SELECT id FROM __SCHEMA__.jobs
    WHERE expires_at <= $1
    ORDER BY expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), attempts AS (
    DELETE FROM __SCHEMA__.job_attempts WHERE job_id IN (SELECT id FROM doomed)
), events AS (
    DELETE FROM __SCHEMA__.job_events WHERE job_id IN (SELECT id FROM doomed)
)
DELETE FROM __SCHEMA__.jobs WHERE id IN (SELECT id FROM doomed);

-- name: lease_try_lock
SELECT pg_try_advisory_lock(hashtextextended($1::text, 0));

-- name: lease_unlock
SELECT pg_advisory_unlock(hashtextextended($1::text, 0));

-- name: lease_record_term
-- params: lease, holder, token, since
INSERT INTO __SCHEMA__.leader_terms (name, holder, token, since) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, token = excluded.token, since = excluded.since;

-- name: lease_current
-- The recorded term, if a session still holds the lease's advisory lock.
SELECT t.holder, t.token, t.since FROM __SCHEMA__.leader_terms AS t
WHERE t.name = $1
  AND EXISTS (
      SELECT 1 FROM pg_locks AS l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($2::text, 0)
  );

-- Beat: recurring definitions and the leader's heartbeat --------------------------------------

-- name: upsert_recurring
-- params: names, job_types, crons, timezones, job_args, now
-- Definitions from code: added, or their schedule and arguments updated. `enabled` and the
-- firing state are kept; a changed schedule is scheduled again from now (next_fire_at NULL).
INSERT INTO __SCHEMA__.recurring_jobs AS r (name, job_type, cron, timezone, args, updated_at)
SELECT n, j, c, t, a, $6::timestamptz
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[]) AS u(n, j, c, t, a)
ON CONFLICT (name) DO UPDATE
SET job_type = excluded.job_type, cron = excluded.cron, timezone = excluded.timezone,
    args = excluded.args, updated_at = excluded.updated_at,
    next_fire_at = CASE WHEN r.cron = excluded.cron AND r.timezone = excluded.timezone
                        THEN r.next_fire_at END
WHERE (r.job_type, r.cron, r.timezone, r.args)
      IS DISTINCT FROM (excluded.job_type, excluded.cron, excluded.timezone, excluded.args);

-- name: list_recurring
SELECT name, job_type, cron, timezone, args, enabled, last_fire_at, next_fire_at, updated_at
FROM __SCHEMA__.recurring_jobs ORDER BY name;

-- name: set_recurring_enabled
-- Enabling a disabled definition schedules it from now: the fires it missed are not caught up.
UPDATE __SCHEMA__.recurring_jobs
SET next_fire_at = CASE WHEN $2 AND NOT enabled THEN NULL ELSE next_fire_at END,
    enabled = $2, updated_at = $3
WHERE name = $1;

-- name: fire_recurring
-- The fire key's guard: last_fire_at only moves forward, so an instant is fired at most once.
UPDATE __SCHEMA__.recurring_jobs SET last_fire_at = $2, next_fire_at = $3
WHERE name = $1 AND enabled AND (last_fire_at IS NULL OR last_fire_at < $2);

-- name: advance_recurring
UPDATE __SCHEMA__.recurring_jobs SET next_fire_at = $2
WHERE name = $1 AND enabled AND (next_fire_at IS NULL OR next_fire_at < $2);

-- name: record_beat_leader
-- params: lease, holder, mechanism, token, since, now, expires_at
-- A newer term replaces an older one; a stale leader (stalled, then resumed) cannot overwrite a
-- newer live term.
INSERT INTO __SCHEMA__.beat_leaders AS b
    (name, holder, mechanism, token, since, renewed_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, mechanism = excluded.mechanism, token = excluded.token,
    since = excluded.since, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
WHERE b.token = excluded.token OR b.expires_at < excluded.renewed_at OR b.since < excluded.since;

-- name: clear_beat_leader
DELETE FROM __SCHEMA__.beat_leaders WHERE name = $1 AND token = $2;

-- name: beat_leader
SELECT holder, mechanism, token, since, renewed_at, expires_at FROM __SCHEMA__.beat_leaders
WHERE name = $1 AND expires_at >= $2;

-- Worker registry ------------------------------------------------------------------------------

-- name: register_worker
-- params: id, parent, host, pid, role, module, queues, slots, running, started_at, now
-- A row marked gone that registers again is live again.
INSERT INTO __SCHEMA__.workers
    (id, parent, host, pid, role, module, queues, slots, running, started_at, last_heartbeat, gone)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, false)
ON CONFLICT (id) DO UPDATE
SET parent = excluded.parent, host = excluded.host, pid = excluded.pid, role = excluded.role,
    module = excluded.module, queues = excluded.queues, slots = excluded.slots,
    running = excluded.running, started_at = excluded.started_at,
    last_heartbeat = excluded.last_heartbeat, gone = false;

-- name: worker_heartbeat
-- $4 (figures) NULL keeps what the row holds.
UPDATE __SCHEMA__.workers SET last_heartbeat = $3, running = $2, figures = COALESCE($4, figures)
WHERE id = $1 AND NOT gone;

-- name: live_worker_figures
SELECT id, figures FROM __SCHEMA__.workers
WHERE NOT gone AND figures IS NOT NULL AND ($1::text IS NULL OR parent = $1::text OR id = $1::text)
ORDER BY id;

-- name: unregister_worker
DELETE FROM __SCHEMA__.workers WHERE id = $1;

-- name: list_workers
SELECT id, parent, host, pid, role, module, queues, slots, running, started_at, last_heartbeat,
    gone
FROM __SCHEMA__.workers WHERE NOT gone OR $1
ORDER BY host, started_at, id;

-- name: mark_workers_gone
UPDATE __SCHEMA__.workers SET gone = true WHERE NOT gone AND last_heartbeat < $1;

-- name: purge_gone_workers
DELETE FROM __SCHEMA__.workers WHERE gone AND last_heartbeat < $1;

-- Job-type catalogue ---------------------------------------------------------------------------

-- name: upsert_job_types
-- params: names, kinds, display_names, descriptions, icons, queues, priorities, max_attempts,
-- crons, timezones, is_async, args_schemas, modules, seen_by, now
-- One row per type, in name order (two processes that start at once lock the rows in the same
-- order). A row's first_seen is kept; everything else is what the process starting now declares.
INSERT INTO __SCHEMA__.job_types AS t (name, kind, display_name, description, icon, queue,
    priority, max_attempts, cron, timezone, is_async, args_schema, module, seen_by, first_seen,
    last_seen)
SELECT u.*, $14::text, $15::timestamptz, $15::timestamptz
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::integer[], $8::integer[], $9::text[], $10::text[], $11::boolean[], $12::text[],
            $13::text[]) AS u
ORDER BY 1
ON CONFLICT (name) DO UPDATE
SET kind = excluded.kind, display_name = excluded.display_name,
    description = excluded.description, icon = excluded.icon, queue = excluded.queue,
    priority = excluded.priority, max_attempts = excluded.max_attempts, cron = excluded.cron,
    timezone = excluded.timezone, is_async = excluded.is_async,
    args_schema = excluded.args_schema, module = excluded.module, seen_by = excluded.seen_by,
    last_seen = excluded.last_seen;

-- name: list_job_types
SELECT name, kind, display_name, description, icon, queue, priority, max_attempts, cron,
    timezone, is_async, args_schema, module, seen_by, first_seen, last_seen
FROM __SCHEMA__.job_types ORDER BY name;
