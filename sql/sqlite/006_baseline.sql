-- jobworker schema for SQLite: the baseline, version 6 (what every database of this version
-- has). Later changes are numbered migrations after it. A file created by an unreleased
-- development version before the baseline (versions 1 to 5) is refused, not upgraded.
--
-- Timestamps are REAL seconds since the Unix epoch, UTC; ids are canonical UUID text.

CREATE TABLE IF NOT EXISTS jobworker_schema (
    version     INTEGER PRIMARY KEY,
    applied_at  REAL NOT NULL
);

-- event_seq: the number of the job's newest event known to the database (see the trigger).
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
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    event_seq         INTEGER NOT NULL DEFAULT 0
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

-- An attempt's end. start_seq and end_seq are the numbers of its `running` event and of the
-- lifecycle event that ended it; end_status, end_attempt, end_error and end_run_at are what that
-- event says (the job's status, attempt, error and run_at after it). Neither event is stored
-- as a job_events row: reading a job's events derives them from this row.
CREATE TABLE IF NOT EXISTS job_attempts (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL NOT NULL,
    outcome     TEXT NOT NULL,
    error       TEXT,
    traceback   TEXT,
    start_seq   INTEGER,
    end_seq     INTEGER,
    end_status  TEXT,
    end_attempt INTEGER,
    end_error   TEXT,
    end_run_at  REAL
);
CREATE INDEX IF NOT EXISTS job_attempts_job ON job_attempts (job_id, id);

-- transient: an event of a kind that is not kept (chunks, logs, metrics), stored only to carry
-- it live when Redis is not there; it expires after the stream TTL.
CREATE TABLE IF NOT EXISTS job_events (
    job_id       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    occurred_at  REAL NOT NULL,
    payload      BLOB NOT NULL,
    transient    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_events_transient ON job_events (occurred_at) WHERE transient = 1;

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

CREATE TABLE IF NOT EXISTS queue_state (
    queue       TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL
);

-- Beat's leadership without Redis.
CREATE TABLE IF NOT EXISTS leader_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       TEXT NOT NULL,
    since       REAL NOT NULL,
    expires_at  REAL NOT NULL
);

-- The beat leader's heartbeat: the leader writes its term here at every renewal; workers skip
-- lease rescue and the janitor while it is alive, and `jobworker beat --status` reads who leads.
CREATE TABLE IF NOT EXISTS beat_leaders (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    mechanism   TEXT NOT NULL,
    token       TEXT NOT NULL,
    since       REAL NOT NULL,
    renewed_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);

-- Every status change other than an attempt's start and end (a cancel, a retry, a continuation
-- settled) stores a `lifecycle` event: the trigger gives it the next number (above any event
-- already stored, and above what the changing statement set event_seq to) and stores it. The
-- claim and the end of an attempt number their events themselves (see job_attempts).
CREATE TRIGGER IF NOT EXISTS jobs_lifecycle_event AFTER UPDATE OF status ON jobs
WHEN NEW.status IS NOT OLD.status
    AND OLD.status IS NOT 'running' AND NEW.status IS NOT 'running'
BEGIN
    UPDATE jobs
    SET event_seq = max(
        NEW.event_seq,
        COALESCE((SELECT max(seq) FROM job_events WHERE job_id = NEW.id), 0)) + 1
    WHERE id = NEW.id;
    INSERT OR IGNORE INTO job_events (job_id, seq, kind, occurred_at, payload, transient)
    SELECT NEW.id, j.event_seq, 'lifecycle', NEW.updated_at,
        CAST(json_object(
            'status', NEW.status,
            'attempt', NEW.attempt,
            'error', CASE WHEN NEW.status IN ('failed', 'dead', 'cancelled', 'queued')
                          THEN NEW.error END,
            'retry_at', CASE WHEN NEW.status = 'failed' THEN printf(
                '%s.%06dZ',
                strftime('%Y-%m-%dT%H:%M:%S', CAST(NEW.run_at AS INTEGER), 'unixepoch'),
                min(999999, CAST((NEW.run_at - CAST(NEW.run_at AS INTEGER)) * 1000000 + 0.5
                                 AS INTEGER))) END
        ) AS BLOB),
        0
    FROM jobs AS j WHERE j.id = NEW.id;
END;

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (6, (julianday('now') - 2440587.5) * 86400.0);
