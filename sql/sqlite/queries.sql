-- Named statements of the SQLite backend. Each starts with a `-- name: <name>` line.
-- Parameters are named (:name); times are REAL epoch seconds passed in by the caller's clock.

-- name: schema_version
SELECT MAX(version) FROM jobworker_schema;

-- name: enqueue
INSERT INTO jobs (
    id, job_type, queue, priority, status, args, attempt, max_attempts,
    enqueued_at, run_at, updated_at, idempotency_key, continues_job_id, result_ttl
) VALUES (
    :id, :job_type, :queue, :priority, :status, :args, 0, :max_attempts,
    :enqueued_at, :run_at, :enqueued_at, :idempotency_key, :continues_job_id, :result_ttl
)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;

-- name: id_by_idempotency_key
SELECT id FROM jobs WHERE idempotency_key = :idempotency_key;

-- name: claim
-- One statement: pick the most urgent due jobs this worker can run, lease them, count the attempt.
UPDATE jobs
SET status = 'running',
    attempt = attempt + 1,
    lease_owner = :owner,
    lease_expires_at = :lease_until,
    started_at = :now,
    updated_at = :now
WHERE rowid IN (
    SELECT rowid FROM jobs INDEXED BY jobs_claimable
    WHERE status IN ('queued', 'scheduled', 'failed')
      AND run_at <= :now
      AND queue IN (SELECT value FROM json_each(:queues))
      AND job_type IN (SELECT value FROM json_each(:job_types))
    ORDER BY priority DESC, run_at
    LIMIT :limit
)
RETURNING id, job_type, queue, args, attempt, max_attempts, enqueued_at, started_at, result_ttl,
    priority, run_at;

-- name: extend_leases
UPDATE jobs SET lease_expires_at = :lease_until, updated_at = :now
WHERE lease_owner = :owner AND status = 'running';

-- name: complete_succeeded
UPDATE jobs
SET status = 'succeeded', result = :result, error = NULL, traceback = NULL,
    completed_at = :now, expires_at = :now + :result_ttl,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND attempt = :attempt AND status = 'running';

-- name: complete_failed
UPDATE jobs
SET status = 'failed', run_at = :retry_at, error = :error, traceback = :traceback,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND attempt = :attempt AND status = 'running';

-- name: complete_dead
UPDATE jobs
SET status = 'dead', error = :error, traceback = :traceback,
    completed_at = :now, expires_at = :now + :result_ttl,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND attempt = :attempt AND status = 'running';

-- name: insert_attempt
INSERT INTO job_attempts (job_id, attempt, worker, started_at, ended_at, outcome, error, traceback)
VALUES (:job_id, :attempt, :worker, :started_at, :ended_at, :outcome, :error, :traceback);

-- name: leases_of_owner
SELECT id, attempt, max_attempts, lease_owner, started_at FROM jobs
WHERE lease_owner = :owner AND status = 'running';

-- name: expired_leases
SELECT id, attempt, max_attempts, lease_owner, started_at FROM jobs
WHERE status = 'running' AND lease_expires_at < :now
LIMIT :limit;

-- name: lost_to_queued
UPDATE jobs
SET status = 'queued', run_at = :now, error = :error, traceback = NULL,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND attempt = :attempt AND status = 'running';

-- name: lost_to_dead
UPDATE jobs
SET status = 'dead', error = :error, traceback = NULL,
    completed_at = :now, expires_at = :now + :result_ttl,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND attempt = :attempt AND status = 'running';

-- name: released_to_queued
UPDATE jobs
SET status = 'queued', attempt = attempt - 1, started_at = NULL,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND attempt = :attempt AND status = 'running';

-- name: get_job
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at
FROM jobs WHERE id = :id;

-- name: list_jobs
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at
FROM jobs
WHERE (:status IS NULL OR status = :status)
  AND (:job_type IS NULL OR job_type = :job_type)
  AND (:queue IS NULL OR queue = :queue)
  AND (:idempotency_key IS NULL OR idempotency_key = :idempotency_key)
ORDER BY enqueued_at DESC, rowid DESC
LIMIT :limit OFFSET :offset;

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
