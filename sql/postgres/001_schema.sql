-- jobworker schema for PostgreSQL, version 1. Idempotent: every statement can run again.
-- A placeholder stands for the (validated, quoted) schema name; `jobworker sql` fills it in.

CREATE SCHEMA IF NOT EXISTS __SCHEMA__;

CREATE TABLE IF NOT EXISTS __SCHEMA__.jobworker_schema (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

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
    cancel_requested  boolean NOT NULL DEFAULT false
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

-- Attempts are only ever read by job: one index, no primary key to maintain per row.
CREATE TABLE IF NOT EXISTS __SCHEMA__.job_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    job_id      uuid NOT NULL,
    attempt     integer NOT NULL,
    worker      text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    outcome     text NOT NULL,
    error       text,
    traceback   text
);
CREATE INDEX IF NOT EXISTS job_attempts_job ON __SCHEMA__.job_attempts (job_id, id);

CREATE TABLE IF NOT EXISTS __SCHEMA__.job_events (
    job_id       uuid NOT NULL,
    seq          bigint NOT NULL,
    kind         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      jsonb NOT NULL,
    PRIMARY KEY (job_id, seq)
);

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

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
