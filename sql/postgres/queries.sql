-- Named statements of the PostgreSQL backend. Each starts with a `-- name: <name>` line.
-- A placeholder is replaced by the validated, quoted schema name. Times are passed in by the
-- caller's clock. Arrays + unnest make every batch one round trip.

-- name: schema_version
SELECT max(version) FROM __SCHEMA__.jobworker_schema;

-- name: enqueue
INSERT INTO __SCHEMA__.jobs (
    id, job_type, queue, priority, status, args, max_attempts, enqueued_at, run_at,
    idempotency_key, continues_job_id, result_ttl
)
SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::jsonb[], $7::integer[],
    $8::timestamptz[], $9::timestamptz[], $10::text[], $11::uuid[], $12::double precision[]
)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: ids_by_idempotency_keys
SELECT idempotency_key, id FROM __SCHEMA__.jobs WHERE idempotency_key = ANY($1::text[]);

-- name: claim
-- Lock the most urgent due rows no other worker holds, lease them, count the attempt
-- (see 003_claim.sql for why this is a function).
SELECT * FROM __SCHEMA__.claim_jobs($1, $2::text[], $3::text[], $4, $5, $6);

-- name: extend_leases
UPDATE __SCHEMA__.jobs SET lease_expires_at = $2
WHERE lease_owner = $1 AND status = 'running';

-- name: complete
-- Many outcomes in one statement: update the jobs whose lease is still ours, and record one
-- attempt row for each of them.
WITH done AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::integer[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[],
        $8::timestamptz[], $9::double precision[], $10::timestamptz[], $11::timestamptz[]
    ) AS d(id, attempt, owner, outcome, result, error, traceback, retry_at, result_ttl,
           started_at, ended_at)
), updated AS (
    UPDATE __SCHEMA__.jobs AS j
    SET status = CASE d.outcome WHEN 'released' THEN 'queued' ELSE d.outcome END,
        attempt = CASE d.outcome WHEN 'released' THEN j.attempt - 1 ELSE j.attempt END,
        started_at = CASE d.outcome WHEN 'released' THEN NULL ELSE j.started_at END,
        result = CASE d.outcome WHEN 'succeeded' THEN d.result ELSE j.result END,
        error = CASE d.outcome WHEN 'released' THEN j.error ELSE d.error END,
        traceback = CASE d.outcome WHEN 'released' THEN j.traceback ELSE d.traceback END,
        run_at = COALESCE(d.retry_at, j.run_at),
        completed_at = CASE WHEN d.outcome IN ('succeeded', 'dead') THEN $12::timestamptz END,
        expires_at = CASE WHEN d.outcome IN ('succeeded', 'dead')
                          THEN $12::timestamptz + make_interval(secs => d.result_ttl) END,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM done AS d
    WHERE j.id = d.id AND j.lease_owner = d.owner AND j.attempt = d.attempt
      AND j.status = 'running'
    RETURNING j.id
)
INSERT INTO __SCHEMA__.job_attempts
    (job_id, attempt, worker, started_at, ended_at, outcome, error, traceback)
SELECT d.id, d.attempt, d.owner, d.started_at, d.ended_at, d.outcome, d.error, d.traceback
FROM done AS d JOIN updated AS u ON u.id = d.id;

-- name: end_leases
-- Leases of one owner ($1), or every expired lease ($1 NULL), end. $3: lost (the attempt counts,
-- out of attempts means dead) or not (released: the attempt does not count).
WITH ended AS (
    SELECT id, attempt, max_attempts, lease_owner, started_at FROM __SCHEMA__.jobs
    WHERE status = 'running'
      AND (($1::text IS NOT NULL AND lease_owner = $1::text)
           OR ($1::text IS NULL AND lease_expires_at < $2::timestamptz))
    LIMIT $5::integer
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE __SCHEMA__.jobs AS j
    SET status = CASE WHEN $3::boolean AND e.attempt >= e.max_attempts THEN 'dead' ELSE 'queued' END,
        attempt = CASE WHEN $3 THEN j.attempt ELSE j.attempt - 1 END,
        started_at = CASE WHEN $3 THEN j.started_at END,
        run_at = CASE WHEN $3 THEN $2 ELSE j.run_at END,
        error = CASE WHEN $3 THEN $4::text || ' (worker ' || e.lease_owner || ')' ELSE j.error END,
        traceback = CASE WHEN $3 THEN NULL ELSE j.traceback END,
        completed_at = CASE WHEN $3 AND e.attempt >= e.max_attempts THEN $2 END,
        expires_at = CASE WHEN $3 AND e.attempt >= e.max_attempts
                          THEN $2::timestamptz + make_interval(secs => $6::double precision) END,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM ended AS e
    WHERE j.id = e.id
    RETURNING j.id, e.attempt, e.lease_owner, e.started_at
)
INSERT INTO __SCHEMA__.job_attempts
    (job_id, attempt, worker, started_at, ended_at, outcome, error)
SELECT id, attempt, lease_owner, COALESCE(started_at, $2), $2,
       CASE WHEN $3 THEN 'lost' ELSE 'released' END, $4 || ' (worker ' || lease_owner || ')'
FROM updated;

-- name: get_job
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at
FROM __SCHEMA__.jobs WHERE id = $1;

-- name: list_jobs
-- Newest first: ids are UUIDv7, ordered by time.
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at
FROM __SCHEMA__.jobs
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR job_type = $2)
  AND ($3::text IS NULL OR queue = $3)
  AND ($4::text IS NULL OR idempotency_key = $4)
ORDER BY id DESC
LIMIT $5 OFFSET $6;

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
