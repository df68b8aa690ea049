-- jobworker schema for SQLite, version 1. Idempotent: every statement can run again.
-- Timestamps are REAL seconds since the Unix epoch, UTC; ids are canonical UUID text.

CREATE TABLE IF NOT EXISTS jobworker_schema (
    version     INTEGER PRIMARY KEY,
    applied_at  REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    id                TEXT NOT NULL UNIQUE,
    job_type          TEXT NOT NULL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL,
    args              BLOB NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    enqueued_at       REAL NOT NULL,
    run_at            REAL NOT NULL,
    started_at        REAL,
    completed_at      REAL,
    updated_at        REAL NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  REAL,
    idempotency_key   TEXT,
    continues_job_id  TEXT,
    result            BLOB,
    error             TEXT,
    traceback         TEXT,
    result_ttl        REAL,
    expires_at        REAL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0
);

-- The claim walks this index in priority order and stops at its LIMIT.
CREATE INDEX IF NOT EXISTS jobs_claimable
    ON jobs (priority DESC, run_at)
    WHERE status IN ('queued', 'scheduled', 'failed');

CREATE INDEX IF NOT EXISTS jobs_leases
    ON jobs (lease_owner, lease_expires_at)
    WHERE status = 'running';

CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_key
    ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX IF NOT EXISTS jobs_expires_at ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_status_enqueued ON jobs (status, enqueued_at);
CREATE INDEX IF NOT EXISTS jobs_type_enqueued ON jobs (job_type, enqueued_at);
CREATE INDEX IF NOT EXISTS jobs_continues ON jobs (continues_job_id) WHERE continues_job_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS job_attempts (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL NOT NULL,
    outcome     TEXT NOT NULL,
    error       TEXT,
    traceback   TEXT
);
CREATE INDEX IF NOT EXISTS job_attempts_job ON job_attempts (job_id, id);

CREATE TABLE IF NOT EXISTS job_events (
    job_id       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    occurred_at  REAL NOT NULL,
    payload      BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS recurring_jobs (
    name         TEXT PRIMARY KEY,
    job_type     TEXT NOT NULL,
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL DEFAULT 'UTC',
    args         BLOB NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    last_fire_at REAL,
    next_fire_at REAL,
    updated_at   REAL NOT NULL
);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at) VALUES (1, (julianday('now') - 2440587.5) * 86400.0);
