-- Named statements of the SQLite backend. Each starts with a `-- name: <name>` line.
-- Parameters are named (:name); times are REAL epoch seconds passed in by the caller's clock.

-- name: database_now
-- The host's clock as SQLite reads it, in Unix seconds (milliseconds precise).
SELECT (julianday('now') - 2440587.5) * 86400.0;

-- name: schema_version
SELECT MAX(version) FROM jobworker_schema;

-- name: enqueue
INSERT INTO jobs (
    id, job_type, queue, priority, status, args, attempt, max_attempts,
    enqueued_at, run_at, updated_at, idempotency_key, continues_job_id, result_ttl, kind,
    trace_context
) VALUES (
    :id, :job_type, :queue, :priority, :status, :args, 0, :max_attempts,
    :enqueued_at, :run_at, :enqueued_at, :idempotency_key, :continues_job_id, :result_ttl, :kind,
    :trace_context
)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;

-- name: id_by_idempotency_key
SELECT id FROM jobs WHERE idempotency_key = :idempotency_key;

-- name: claim
-- One statement: pick the most urgent due jobs this worker can run, lease them, count the attempt.
-- A queue paused in queue_state gives nothing, whatever the worker last read of the pauses.
UPDATE jobs
SET status = 'running',
    attempt = attempt + 1,
    lease_owner = :owner,
    lease_expires_at = :lease_until,
    started_at = :now,
    updated_at = :now,
    event_seq = event_seq + 1  -- the number of the attempt's `running` event
WHERE rowid IN (
    SELECT rowid FROM jobs INDEXED BY jobs_claimable
    WHERE status IN ('queued', 'scheduled', 'failed')
      AND run_at <= :now
      AND queue IN (SELECT value FROM json_each(:queues)
                    WHERE value NOT IN (SELECT queue FROM queue_state WHERE paused = 1))
      AND job_type IN (SELECT value FROM json_each(:job_types))
    ORDER BY priority DESC, run_at
    LIMIT :limit
)
RETURNING id, job_type, queue, args, attempt, max_attempts, enqueued_at, started_at, result_ttl,
    priority, run_at, event_seq, trace_context;

-- name: claim_kinds
-- The claim with a limit per kind of handler: of the :limit most urgent due jobs, at most
-- :sync_limit of :sync_types (a worker's free threads) and :async_limit of the others; the rest
-- are left for the next claim.
UPDATE jobs
SET status = 'running',
    attempt = attempt + 1,
    lease_owner = :owner,
    lease_expires_at = :lease_until,
    started_at = :now,
    updated_at = :now,
    event_seq = event_seq + 1
WHERE rowid IN (
    SELECT picked FROM (
        SELECT picked, is_sync,
            row_number() OVER (PARTITION BY is_sync ORDER BY priority DESC, run_at) AS nth
        FROM (
            SELECT rowid AS picked, priority, run_at,
                job_type IN (SELECT value FROM json_each(:sync_types)) AS is_sync
            FROM jobs INDEXED BY jobs_claimable
            WHERE status IN ('queued', 'scheduled', 'failed')
              AND run_at <= :now
              AND queue IN (SELECT value FROM json_each(:queues)
                            WHERE value NOT IN (SELECT queue FROM queue_state WHERE paused = 1))
              AND job_type IN (SELECT value FROM json_each(:job_types))
            ORDER BY priority DESC, run_at
            LIMIT :limit))
    WHERE nth <= CASE WHEN is_sync THEN :sync_limit ELSE :async_limit END
)
RETURNING id, job_type, queue, args, attempt, max_attempts, enqueued_at, started_at, result_ttl,
    priority, run_at, event_seq, trace_context;

-- name: end_unreadable
-- A running row the claim or the lease rescue could not read (storage/rows.py) ends dead with
-- why, found by its id as stored (:id is that value, whatever its type).
UPDATE jobs
SET status = 'dead', error = :error, traceback = NULL, completed_at = :now,
    expires_at = :now + :default_ttl, lease_owner = NULL, lease_expires_at = NULL,
    updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND status = 'running'
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: extend_leases
-- :held: the (id, attempt) pairs the worker holds, as a JSON list of [id, attempt].
UPDATE jobs SET lease_expires_at = :lease_until, updated_at = :now
WHERE lease_owner = :owner AND status = 'running'
  AND (id, attempt) IN (
      SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:held))
RETURNING id;

-- name: end_attempt
-- The end of an attempt as `transitions` decided it for a job whose cancellation was requested
-- or not (:cancel_requested), fenced by the attempt's identity: an attempt that no longer holds
-- its lease changes nothing. :error_effect and :traceback_effect say whether the column is kept
-- ('keep'), set to the given value ('set') or cleared ('clear'). The end is numbered above the
-- attempt's own numbers (:seq_floor) and every stored one; a success takes two (:seq_step).
UPDATE jobs
SET status = :status,
    attempt = :new_attempt,
    started_at = CASE WHEN :new_attempt < attempt THEN NULL ELSE started_at END,
    result = CASE WHEN :status = 'succeeded' THEN :result ELSE result END,
    error = CASE :error_effect WHEN 'set' THEN :error WHEN 'clear' THEN NULL ELSE error END,
    traceback = CASE :traceback_effect
        WHEN 'set' THEN :traceback WHEN 'clear' THEN NULL ELSE traceback END,
    run_at = COALESCE(:run_at, run_at),
    completed_at = CASE WHEN :ends THEN :now ELSE completed_at END,
    expires_at = CASE WHEN :ends THEN :now + :result_ttl ELSE expires_at END,
    event_seq = max(event_seq, :seq_floor,
        COALESCE((SELECT max(e.seq) FROM job_events AS e WHERE e.job_id = jobs.id), 0)) + :seq_step,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND attempt = :attempt AND status = 'running'
  AND cancel_requested = :cancel_requested
RETURNING status, attempt, event_seq, error, run_at;

-- name: end_attempts
-- end_attempt for a batch of ends in one statement (:ends, a JSON list of
-- [id, owner, attempt, status, new_attempt, result, error_effect, error, traceback_effect,
-- traceback, run_at, ends, result_ttl, seq_floor, seq_step], the result as JSON text), each
-- fenced as end_attempt is, all for jobs whose cancellation was requested or not
-- (:cancel_requested). Returns the ends written, with their job's id.
UPDATE jobs
SET status = e.status,
    attempt = e.new_attempt,
    started_at = CASE WHEN e.new_attempt < jobs.attempt THEN NULL ELSE jobs.started_at END,
    result = CASE WHEN e.status = 'succeeded' THEN CAST(e.result AS BLOB) ELSE jobs.result END,
    error = CASE e.error_effect
        WHEN 'set' THEN e.error WHEN 'clear' THEN NULL ELSE jobs.error END,
    traceback = CASE e.traceback_effect
        WHEN 'set' THEN e.traceback WHEN 'clear' THEN NULL ELSE jobs.traceback END,
    run_at = COALESCE(e.run_at, jobs.run_at),
    completed_at = CASE WHEN e.ends THEN :now ELSE jobs.completed_at END,
    expires_at = CASE WHEN e.ends THEN :now + e.result_ttl ELSE jobs.expires_at END,
    event_seq = max(jobs.event_seq, e.seq_floor,
        COALESCE((SELECT max(s.seq) FROM job_events AS s WHERE s.job_id = jobs.id), 0))
        + e.seq_step,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS owner,
        json_extract(value, '$[2]') AS attempt, json_extract(value, '$[3]') AS status,
        json_extract(value, '$[4]') AS new_attempt, json_extract(value, '$[5]') AS result,
        json_extract(value, '$[6]') AS error_effect, json_extract(value, '$[7]') AS error,
        json_extract(value, '$[8]') AS traceback_effect,
        json_extract(value, '$[9]') AS traceback, json_extract(value, '$[10]') AS run_at,
        json_extract(value, '$[11]') AS ends, json_extract(value, '$[12]') AS result_ttl,
        json_extract(value, '$[13]') AS seq_floor, json_extract(value, '$[14]') AS seq_step
    FROM json_each(:ends)
) AS e
-- (+: the job is found by its id from each end, never by walking the status index)
WHERE jobs.id = e.id AND jobs.lease_owner = e.owner AND jobs.attempt = e.attempt
  AND +jobs.status = 'running' AND jobs.cancel_requested = :cancel_requested
RETURNING id, status, attempt, event_seq, error, run_at;

-- name: insert_attempts
-- insert_attempt for a batch (:rows, a JSON list of [job_id, attempt, worker, started_at,
-- ended_at, outcome, error, traceback, start_seq, end_seq, end_status, end_attempt, end_error,
-- end_run_at]) in one statement.
INSERT INTO job_attempts (job_id, attempt, worker, started_at, ended_at, outcome, error, traceback,
    start_seq, end_seq, end_status, end_attempt, end_error, end_run_at)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
    json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
    json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'),
    json_extract(value, '$[9]'), json_extract(value, '$[10]'), json_extract(value, '$[11]'),
    json_extract(value, '$[12]'), json_extract(value, '$[13]')
FROM json_each(:rows)
ORDER BY key;

-- name: insert_attempt
-- With the numbers of the attempt's `running` event and of its end's lifecycle event, and what
-- the end event says (read_events derives both events from the row).
INSERT INTO job_attempts (job_id, attempt, worker, started_at, ended_at, outcome, error, traceback,
    start_seq, end_seq, end_status, end_attempt, end_error, end_run_at)
VALUES (:job_id, :attempt, :worker, :started_at, :ended_at, :outcome, :error, :traceback,
    :start_seq, :end_seq, :end_status, :end_attempt, :end_error, :end_run_at);

-- name: leases_of_owner
SELECT id, attempt, max_attempts, lease_owner, started_at, cancel_requested, event_seq FROM jobs
WHERE lease_owner = :owner AND status = 'running';

-- name: expired_leases
-- A running row without a lease expiry (written by hand) counts as expired: nothing renews it.
SELECT id, attempt, max_attempts, lease_owner, started_at, cancel_requested, event_seq FROM jobs
WHERE status = 'running' AND (lease_expires_at < :now OR lease_expires_at IS NULL)
LIMIT :limit;

-- name: leased_job_ids
SELECT id FROM jobs
WHERE status = 'running'
  AND ((:owner IS NOT NULL AND lease_owner = :owner)
       OR (:owner IS NULL AND (lease_expires_at < :now OR lease_expires_at IS NULL)))
LIMIT :limit;

-- name: insert_event
-- An attempt's event (:owner, :attempt) is stored only while that attempt may still write (the
-- fence, see storage/event_log.py); the storage's own events (:owner NULL) are not fenced.
INSERT OR IGNORE INTO job_events (job_id, seq, kind, occurred_at, payload, transient)
SELECT :job_id, :seq, :kind, :occurred_at, :payload, :transient
WHERE :owner IS NULL OR EXISTS (
    SELECT 1 FROM jobs AS j
    WHERE j.id = :job_id AND j.attempt = :attempt
      AND (j.lease_owner IS NULL OR j.lease_owner = :owner)
      AND NOT EXISTS (
          SELECT 1 FROM job_attempts AS a
          WHERE a.job_id = :job_id AND a.attempt = :attempt AND a.outcome = 'lost'));

-- name: read_events
-- The stored rows of a job's events (with the expiring ones when :live).
SELECT job_id, seq, kind, occurred_at, payload FROM job_events
WHERE job_id = :job_id AND seq > :after_seq AND (:live OR transient = 0)
ORDER BY seq
LIMIT :limit;

-- name: attempt_events
-- What the job's attempt rows say of their `running` and end events (read_events derives them).
SELECT attempt, started_at, ended_at, start_seq, end_seq, end_status, end_attempt, end_error,
    end_run_at
FROM job_attempts
WHERE job_id = :job_id AND (start_seq > :after_seq OR end_seq > :after_seq);

-- name: job_events_marks
-- What the job's row says of its events: the running attempt's `running` event, its result.
SELECT status, attempt, started_at, event_seq, result FROM jobs WHERE id = :job_id;

-- name: purge_live_events
DELETE FROM job_events
WHERE (job_id, seq) IN (
    SELECT job_id, seq FROM job_events
    WHERE transient = 1 AND occurred_at < :before
    LIMIT :limit);

-- name: get_job
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM jobs WHERE id = :id;

-- name: list_jobs
-- Newest first by id (UUIDv7 text, ordered by time), walking the id index backwards from
-- :before (keyset paging; without it, from above every id: a text sorts below any BLOB, and
-- jobworker writes ids as text). :search_types is found in the lower-cased job type;
-- :search_ids, when given, in the id's text.
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM jobs
WHERE id < COALESCE(:before, x'ff')
  AND (:status IS NULL OR status = :status)
  AND (:kind IS NULL OR kind = :kind)
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:queue IS NULL OR queue = :queue)
  AND (:idempotency_key IS NULL OR idempotency_key = :idempotency_key)
  AND (:search_types IS NULL
       OR instr(lower(job_type), :search_types) > 0
       OR (:search_ids IS NOT NULL AND instr(id, :search_ids) > 0))
ORDER BY id DESC
LIMIT :limit OFFSET :offset;

-- name: list_jobs_walk
-- list_jobs with a scan limit: the rows below :before down to the :scan_limit-th (found on the
-- id index alone; '' sorts below every id when there are fewer), walked newest first and
-- filtered as list_jobs does, stopping once the page is full.
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM jobs
WHERE id < COALESCE(:before, x'ff')
  AND id >= COALESCE(
      (SELECT id FROM jobs WHERE id < COALESCE(:before, x'ff')
       ORDER BY id DESC LIMIT 1 OFFSET :scan_limit - 1), '')
  AND (:status IS NULL OR status = :status)
  AND (:kind IS NULL OR kind = :kind)
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:queue IS NULL OR queue = :queue)
  AND (:idempotency_key IS NULL OR idempotency_key = :idempotency_key)
  AND (:search_types IS NULL
       OR instr(lower(job_type), :search_types) > 0
       OR (:search_ids IS NOT NULL AND instr(id, :search_ids) > 0))
ORDER BY id DESC
LIMIT :limit OFFSET :offset;

-- name: walk_edge
-- The last row list_jobs_walk's walk reads (the :skip + 1-th below :before), if it reads that
-- many.
SELECT id FROM jobs WHERE id < COALESCE(:before, x'ff') ORDER BY id DESC LIMIT 1 OFFSET :skip;

-- name: throughput
-- Attempts that ended in [:since, :until), by bucket of :bucket seconds from :since and outcome
-- (a lost attempt is `dead` when its job died of it, else `failed`; released ones are left out),
-- read through job_attempts_ended.
SELECT CAST((ended_at - :since) / :bucket AS INTEGER) AS bucket,
    CASE WHEN outcome <> 'lost' THEN outcome
         WHEN end_status = 'dead' THEN 'dead'
         ELSE 'failed' END AS counted,
    COUNT(*)
FROM job_attempts
WHERE ended_at >= :since AND ended_at < :until
  AND outcome IN ('succeeded', 'failed', 'dead', 'cancelled', 'lost')
GROUP BY bucket, counted;

-- name: count_by_status
SELECT status, COUNT(*) FROM jobs GROUP BY status;

-- name: list_attempts
SELECT job_id, attempt, worker, started_at, ended_at, outcome, error, traceback
FROM job_attempts WHERE job_id = :job_id ORDER BY id;

-- name: expired_job_ids
SELECT id FROM jobs WHERE expires_at <= :now LIMIT :limit;

-- name: delete_job
DELETE FROM jobs WHERE id = :id;

-- name: delete_attempts
DELETE FROM job_attempts WHERE job_id = :id;

-- name: delete_events
DELETE FROM job_events WHERE job_id = :id;

-- name: job_state
SELECT status, attempt, max_attempts, cancel_requested, event_seq FROM jobs WHERE id = :id;

-- name: cancel_waiting
UPDATE jobs
SET status = 'cancelled', error = :reason, traceback = NULL, completed_at = :now,
    expires_at = :now + COALESCE(result_ttl, :default_ttl),
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND status IN ('queued', 'scheduled', 'awaiting', 'failed')
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: request_cancel
UPDATE jobs SET cancel_requested = 1, error = :reason, updated_at = :now
WHERE id = :id AND status = 'running';

-- name: cancel_requests
SELECT id FROM jobs WHERE lease_owner = :owner AND status = 'running' AND cancel_requested = 1;

-- name: promote_continuations
-- The parents (:ids, a JSON list) succeeded: their continuations may run.
UPDATE jobs
SET status = CASE WHEN run_at > :now THEN 'scheduled' ELSE 'queued' END, updated_at = :now,
    event_seq = event_seq + 1
WHERE continues_job_id IN (SELECT value FROM json_each(:ids)) AND status = 'awaiting'
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: cancel_continuations
-- The parent ended dead or cancelled: every continuation waiting on it, down the chain, is
-- cancelled with the reason.
WITH RECURSIVE doomed(id) AS (
    SELECT id FROM jobs WHERE continues_job_id = :id AND status = 'awaiting'
    UNION
    SELECT j.id FROM jobs AS j JOIN doomed AS d ON j.continues_job_id = d.id
    WHERE j.status = 'awaiting'
)
UPDATE jobs
SET status = 'cancelled', error = :reason, completed_at = :now,
    expires_at = :now + COALESCE(result_ttl, :default_ttl), updated_at = :now,
    event_seq = event_seq + 1
WHERE id IN (SELECT id FROM doomed)
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: orphaned_continuations
-- Awaiting jobs whose parent has ended (or is gone): the repair sweep settles them.
SELECT c.id, c.continues_job_id, p.status FROM jobs AS c
LEFT JOIN jobs AS p ON p.id = c.continues_job_id
WHERE c.status = 'awaiting'
  AND (p.id IS NULL OR p.status IN ('succeeded', 'dead', 'cancelled'))
LIMIT :limit;

-- name: cancel_one_continuation
UPDATE jobs
SET status = 'cancelled', error = :reason, completed_at = :now,
    expires_at = :now + COALESCE(result_ttl, :default_ttl), updated_at = :now,
    event_seq = event_seq + 1
WHERE id = :id AND status = 'awaiting'
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: promote_one_continuation
UPDATE jobs
SET status = CASE WHEN run_at > :now THEN 'scheduled' ELSE 'queued' END, updated_at = :now,
    event_seq = event_seq + 1
WHERE id = :id AND status = 'awaiting'
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: retry_dead
UPDATE jobs
SET status = 'queued', run_at = :now, max_attempts = MAX(max_attempts, attempt + 1),
    error = NULL, traceback = NULL, completed_at = NULL, expires_at = NULL,
    cancel_requested = 0, updated_at = :now, event_seq = event_seq + 1
WHERE id = :id AND status = 'dead'
RETURNING id, event_seq, status, attempt, error, run_at;

-- name: running_of_type
SELECT COUNT(*) FROM jobs WHERE status = 'running' AND job_type = :job_type;

-- name: set_queue_paused
INSERT INTO queue_state (queue, paused, updated_at) VALUES (:queue, :paused, :now)
ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at;

-- name: paused_queues
SELECT queue FROM queue_state WHERE paused = 1;

-- name: queue_counts
-- Grouped in the order of jobs_status_queue, which covers it.
SELECT queue, status, COUNT(*) FROM jobs GROUP BY status, queue;

-- name: queue_states
SELECT queue, paused FROM queue_state;

-- name: lease_acquire
-- Take the lease if nobody holds it or the holder's term has expired.
INSERT INTO leader_leases (name, holder, token, since, expires_at)
VALUES (:name, :holder, :token, :now, :until)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, token = excluded.token, since = excluded.since,
    expires_at = excluded.expires_at
WHERE leader_leases.expires_at < :now;

-- name: lease_renew
UPDATE leader_leases SET expires_at = :until
WHERE name = :name AND token = :token AND expires_at >= :now;

-- name: lease_release
DELETE FROM leader_leases WHERE name = :name AND token = :token;

-- name: lease_current
SELECT holder, token, since FROM leader_leases WHERE name = :name AND expires_at >= :now;

-- Beat: recurring definitions and the leader's heartbeat --------------------------------------

-- name: upsert_recurring
-- A definition from code: added, or its schedule and arguments updated. `enabled` and the firing
-- state are kept; a changed schedule is scheduled again from now (next_fire_at NULL).
INSERT INTO recurring_jobs (name, job_type, cron, timezone, args, enabled, updated_at)
VALUES (:name, :job_type, :cron, :timezone, :args, 1, :now)
ON CONFLICT (name) DO UPDATE
SET job_type = excluded.job_type, cron = excluded.cron, timezone = excluded.timezone,
    args = excluded.args, updated_at = excluded.updated_at,
    next_fire_at = CASE
        WHEN recurring_jobs.cron = excluded.cron AND recurring_jobs.timezone = excluded.timezone
        THEN recurring_jobs.next_fire_at END
WHERE recurring_jobs.job_type IS NOT excluded.job_type OR recurring_jobs.cron IS NOT excluded.cron
   OR recurring_jobs.timezone IS NOT excluded.timezone OR recurring_jobs.args IS NOT excluded.args;

-- name: list_recurring
SELECT name, job_type, cron, timezone, args, enabled, last_fire_at, next_fire_at, updated_at
FROM recurring_jobs ORDER BY name;

-- name: set_recurring_enabled
-- Enabling a disabled definition schedules it from now: the fires it missed are not caught up.
UPDATE recurring_jobs
SET next_fire_at = CASE WHEN :enabled AND NOT enabled THEN NULL ELSE next_fire_at END,
    enabled = :enabled, updated_at = :now
WHERE name = :name;

-- name: fire_recurring
-- The fire key's guard: last_fire_at only moves forward, so an instant is fired at most once.
UPDATE recurring_jobs SET last_fire_at = :instant, next_fire_at = :next_fire_at
WHERE name = :name AND enabled = 1 AND (last_fire_at IS NULL OR last_fire_at < :instant);

-- name: advance_recurring
UPDATE recurring_jobs SET next_fire_at = :next_fire_at
WHERE name = :name AND enabled = 1 AND (next_fire_at IS NULL OR next_fire_at < :next_fire_at);

-- name: record_beat_leader
-- A newer term replaces an older one; a stale leader (stalled, then resumed) cannot overwrite a
-- newer live term.
INSERT INTO beat_leaders (name, holder, mechanism, token, since, renewed_at, expires_at)
VALUES (:name, :holder, :mechanism, :token, :since, :now, :expires_at)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, mechanism = excluded.mechanism, token = excluded.token,
    since = excluded.since, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
WHERE beat_leaders.token = excluded.token OR beat_leaders.expires_at < :now
   OR beat_leaders.since < excluded.since;

-- name: clear_beat_leader
DELETE FROM beat_leaders WHERE name = :name AND token = :token;

-- name: beat_leader
SELECT holder, mechanism, token, since, renewed_at, expires_at FROM beat_leaders
WHERE name = :name AND expires_at >= :now;

-- Worker registry ------------------------------------------------------------------------------

-- name: register_worker
-- A row marked gone that registers again is live again.
INSERT INTO workers
    (id, parent, host, pid, role, module, queues, slots, running, started_at, last_heartbeat, gone)
VALUES (:id, :parent, :host, :pid, :role, :module, :queues, :slots, :running, :started_at, :now, 0)
ON CONFLICT (id) DO UPDATE
SET parent = excluded.parent, host = excluded.host, pid = excluded.pid, role = excluded.role,
    module = excluded.module, queues = excluded.queues, slots = excluded.slots,
    running = excluded.running, started_at = excluded.started_at,
    last_heartbeat = excluded.last_heartbeat, gone = 0;

-- name: worker_heartbeat
-- :figures NULL keeps what the row holds.
UPDATE workers SET last_heartbeat = :now, running = :running, figures = COALESCE(:figures, figures)
WHERE id = :id AND gone = 0;

-- name: live_worker_figures
SELECT id, figures FROM workers
WHERE gone = 0 AND figures IS NOT NULL AND (:parent IS NULL OR parent = :parent OR id = :parent)
ORDER BY id;

-- name: unregister_worker
DELETE FROM workers WHERE id = :id;

-- name: list_workers
SELECT id, parent, host, pid, role, module, queues, slots, running, started_at, last_heartbeat,
    gone
FROM workers WHERE gone = 0 OR :include_gone
ORDER BY host, started_at, id;

-- name: mark_workers_gone
UPDATE workers SET gone = 1 WHERE gone = 0 AND last_heartbeat < :before;

-- name: purge_gone_workers
DELETE FROM workers WHERE gone = 1 AND last_heartbeat < :before;

-- Job-type catalogue ---------------------------------------------------------------------------

-- name: upsert_job_types
-- :types: a JSON list of [name, kind, display_name, description, icon, queue, priority,
-- max_attempts, cron, timezone, is_async, args_schema, module], in name order. A row's
-- first_seen is kept; everything else is what the process that starts now declares.
INSERT INTO job_types (name, kind, display_name, description, icon, queue, priority,
    max_attempts, cron, timezone, is_async, args_schema, module, seen_by, first_seen, last_seen)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
    json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
    json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'),
    json_extract(value, '$[9]'), json_extract(value, '$[10]'), json_extract(value, '$[11]'),
    json_extract(value, '$[12]'), :seen_by, :now, :now
FROM json_each(:types) WHERE true
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
FROM job_types ORDER BY name;
