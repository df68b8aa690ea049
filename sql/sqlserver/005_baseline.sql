-- jobworker schema for SQL Server (2016 or later, database compatibility level 130 or more):
-- the baseline, version 5. It states the whole schema as it stands; later versions are scripts
-- numbered after it. It is numbered 5 because the development scripts 001-005 that it replaces
-- produced this same schema: a database they created is current, and one they left at an older
-- version is refused by `jobworker migrate` (nothing was released before the baseline).
-- Idempotent: every batch checks before it creates, so the script can run again.
--
-- Batches are separated by GO lines, as sqlcmd and SSMS expect; `jobworker migrate` splits the
-- script on them and runs every batch in one transaction. A placeholder stands for the
-- (validated, bracket-quoted) schema name; `jobworker sql --dialect sqlserver` fills it in.
--
-- Times are UTC in datetime2(6). Ids are uniqueidentifier. Arguments and results are JSON text
-- in nvarchar(max). Names, queues, statuses, lease owners and idempotency keys use a binary
-- collation, so they compare exactly (case- and accent-sensitive) as on the other backends,
-- whatever the database's default collation is.
--
-- Events: jobs.event_seq is the sequence number of the job's newest event known to the
-- database. A statement that changes a job's status also sets event_seq to the number of the
-- `lifecycle` event recording the change (one more than before, or above the numbers the job's
-- attempt used on the live bus); the trigger jobs_record_lifecycle stores those events, one
-- INSERT per statement. job_events.transient marks events of kinds that are not kept (chunks,
-- logs, metrics) stored only to carry them live when Redis is not there; they expire after the
-- stream TTL.

-- The session options that filtered indexes need (sqlcmd starts with QUOTED_IDENTIFIER OFF).
SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
SET QUOTED_IDENTIFIER ON;
GO

IF SCHEMA_ID(PARSENAME(N'__SCHEMA__', 1)) IS NULL
    EXEC (N'CREATE SCHEMA __SCHEMA__');
GO

IF OBJECT_ID(N'__SCHEMA__.jobworker_schema', N'U') IS NULL
    CREATE TABLE __SCHEMA__.jobworker_schema (
        version     int NOT NULL CONSTRAINT jobworker_schema_pkey PRIMARY KEY,
        applied_at  datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME()
    );
GO

-- Ids are UUIDv7, but SQL Server orders uniqueidentifier by its last bytes first, so they are
-- not time-ordered here: the rows are clustered on an identity column instead (inserts append),
-- the id is a non-clustered primary key, and listing orders by enqueued_at, then seq.
IF OBJECT_ID(N'__SCHEMA__.jobs', N'U') IS NULL
    CREATE TABLE __SCHEMA__.jobs (
        seq               bigint IDENTITY(1, 1) NOT NULL,
        id                uniqueidentifier NOT NULL,
        job_type          nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
        queue             nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL,
        priority          int NOT NULL DEFAULT 0,
        status            nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL
                              CONSTRAINT jobs_status_check CHECK (status IN (
                                  N'queued', N'scheduled', N'awaiting', N'running',
                                  N'succeeded', N'failed', N'dead', N'cancelled')),
        args              nvarchar(max) NOT NULL,
        attempt           int NOT NULL DEFAULT 0,
        max_attempts      int NOT NULL,
        enqueued_at       datetime2(6) NOT NULL,
        run_at            datetime2(6) NOT NULL,
        started_at        datetime2(6) NULL,
        completed_at      datetime2(6) NULL,
        lease_owner       nvarchar(400) COLLATE Latin1_General_100_BIN2 NULL,
        lease_expires_at  datetime2(6) NULL,
        idempotency_key   nvarchar(850) COLLATE Latin1_General_100_BIN2 NULL,
        continues_job_id  uniqueidentifier NULL,
        result            nvarchar(max) NULL,
        error             nvarchar(max) NULL,
        traceback         nvarchar(max) NULL,
        result_ttl        float NULL,
        expires_at        datetime2(6) NULL,
        cancel_requested  bit NOT NULL DEFAULT 0,
        -- Set (under the parent's row lock) when a continuation is enqueued, so that finishing
        -- a job looks for continuations only when it has some.
        has_continuations bit NOT NULL DEFAULT 0,
        event_seq         bigint NOT NULL CONSTRAINT jobs_event_seq_default DEFAULT 0,
        CONSTRAINT jobs_pkey PRIMARY KEY NONCLUSTERED (id),
        CONSTRAINT jobs_seq UNIQUE CLUSTERED (seq)
    );
GO

-- The claim walks this index in priority order, skipping rows other workers hold (READPAST),
-- and stops after TOP (n) rows; queue and job type are checked in the index itself.
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_claimable')
    CREATE INDEX jobs_claimable ON __SCHEMA__.jobs (priority DESC, run_at)
        INCLUDE (queue, job_type)
        WHERE status IN (N'queued', N'scheduled', N'failed');
GO

-- Lease renewal, release and rescue, cancel requests, and counting the running jobs of a
-- capped type; running jobs are few (bounded by the workers' slots).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_leases')
    CREATE INDEX jobs_leases ON __SCHEMA__.jobs (lease_expires_at)
        INCLUDE (lease_owner, job_type, cancel_requested)
        WHERE status = N'running';
GO

-- Idempotency keys collapse duplicate enqueues: this unique index is the backstop.
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_idempotency_key')
    CREATE UNIQUE INDEX jobs_idempotency_key ON __SCHEMA__.jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_expires_at')
    CREATE INDEX jobs_expires_at ON __SCHEMA__.jobs (expires_at)
        WHERE expires_at IS NOT NULL;
GO

-- Listing newest first, and listing the statuses that are rare and looked for.
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_enqueued')
    CREATE INDEX jobs_enqueued ON __SCHEMA__.jobs (enqueued_at, seq);
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_attention')
    CREATE INDEX jobs_attention ON __SCHEMA__.jobs (status, enqueued_at, seq)
        WHERE status IN (N'failed', N'dead', N'cancelled', N'awaiting');
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_continues')
    CREATE INDEX jobs_continues ON __SCHEMA__.jobs (continues_job_id)
        WHERE continues_job_id IS NOT NULL;
GO

IF OBJECT_ID(N'__SCHEMA__.job_attempts', N'U') IS NULL
    CREATE TABLE __SCHEMA__.job_attempts (
        id          bigint IDENTITY(1, 1) NOT NULL CONSTRAINT job_attempts_pkey PRIMARY KEY,
        job_id      uniqueidentifier NOT NULL,
        attempt     int NOT NULL,
        worker      nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
        started_at  datetime2(6) NOT NULL,
        ended_at    datetime2(6) NOT NULL,
        outcome     nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL,
        error       nvarchar(max) NULL,
        traceback   nvarchar(max) NULL
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts')
                 AND name = N'job_attempts_job')
    CREATE INDEX job_attempts_job ON __SCHEMA__.job_attempts (job_id, id);
GO

IF OBJECT_ID(N'__SCHEMA__.job_events', N'U') IS NULL
    CREATE TABLE __SCHEMA__.job_events (
        job_id       uniqueidentifier NOT NULL,
        seq          bigint NOT NULL,
        kind         nvarchar(32) COLLATE Latin1_General_100_BIN2 NOT NULL,
        occurred_at  datetime2(6) NOT NULL,
        payload      nvarchar(max) NOT NULL,
        transient    bit NOT NULL CONSTRAINT job_events_transient_default DEFAULT 0,
        CONSTRAINT job_events_pkey PRIMARY KEY (job_id, seq)
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_events')
                 AND name = N'job_events_transient')
    CREATE INDEX job_events_transient ON __SCHEMA__.job_events (occurred_at)
        WHERE transient = 1;
GO

IF OBJECT_ID(N'__SCHEMA__.recurring_jobs', N'U') IS NULL
    CREATE TABLE __SCHEMA__.recurring_jobs (
        name          nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL
                          CONSTRAINT recurring_jobs_pkey PRIMARY KEY,
        job_type      nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
        cron          nvarchar(200) NOT NULL,
        timezone      nvarchar(64) NOT NULL DEFAULT N'UTC',
        args          nvarchar(max) NOT NULL,
        enabled       bit NOT NULL DEFAULT 1,
        last_fire_at  datetime2(6) NULL,
        next_fire_at  datetime2(6) NULL,
        updated_at    datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME()
    );
GO

IF OBJECT_ID(N'__SCHEMA__.queue_state', N'U') IS NULL
    CREATE TABLE __SCHEMA__.queue_state (
        queue       nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL
                        CONSTRAINT queue_state_pkey PRIMARY KEY,
        paused      bit NOT NULL DEFAULT 0,
        updated_at  datetime2(6) NOT NULL DEFAULT SYSUTCDATETIME()
    );
GO

IF OBJECT_ID(N'__SCHEMA__.leader_leases', N'U') IS NULL
    CREATE TABLE __SCHEMA__.leader_leases (
        name        nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL
                    CONSTRAINT leader_leases_pkey PRIMARY KEY,
        holder      nvarchar(400) NOT NULL,
        token       nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
        since       datetime2(6) NOT NULL,
        expires_at  datetime2(6) NOT NULL
    );
GO

IF OBJECT_ID(N'__SCHEMA__.beat_leaders', N'U') IS NULL
    CREATE TABLE __SCHEMA__.beat_leaders (
        name        nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL
                    CONSTRAINT beat_leaders_pkey PRIMARY KEY,
        holder      nvarchar(400) NOT NULL,
        mechanism   nvarchar(64) NOT NULL,
        token       nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
        since       datetime2(6) NOT NULL,
        renewed_at  datetime2(6) NOT NULL,
        expires_at  datetime2(6) NOT NULL
    );
GO

-- A time plus a number of seconds (fractions included), for result TTLs computed in SQL.
-- DATEADD takes whole numbers only, so whole seconds and microseconds are added in turn;
-- a TTL of more than about 63 years means "kept for ever" (the largest datetime2).
CREATE OR ALTER FUNCTION __SCHEMA__.add_seconds(@t datetime2(6), @seconds float)
RETURNS datetime2(6)
AS
BEGIN
    IF @t IS NULL OR @seconds IS NULL
        RETURN NULL;
    IF @seconds >= 2000000000.0
        RETURN CAST(N'9999-12-31T23:59:59.999999' AS datetime2(6));
    RETURN DATEADD(microsecond, CAST(ROUND((@seconds - FLOOR(@seconds)) * 1000000.0, 0) AS int),
                   DATEADD(second, CAST(FLOOR(@seconds) AS int), @t));
END;
GO

-- Every row whose event_seq went up gets its lifecycle event, numbered event_seq, with the
-- payload the other backends write: {"status", "attempt", "error", "retry_at"}, all four keys
-- always present. An event already stored under that number is kept as it is. The jobs row
-- stays locked by the updating statement until it commits, so two changes of one job never
-- number their events at the same time.
-- retry_at is built as text ("yyyy-mm-ddThh:mi:ss.ffffffZ"): FOR JSON would write a datetime2
-- without a zone, which readers would take as local time.
CREATE OR ALTER TRIGGER __SCHEMA__.jobs_record_lifecycle
ON __SCHEMA__.jobs
AFTER UPDATE
AS
BEGIN
    IF NOT UPDATE(event_seq)
        RETURN;
    SET NOCOUNT ON;
    INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload, transient)
    SELECT n.id, n.event_seq, N'lifecycle', SYSUTCDATETIME(),
        (SELECT n.status AS [status],
            n.attempt AS [attempt],
            CASE WHEN n.status IN (N'failed', N'dead', N'cancelled', N'queued')
                 THEN n.error END AS [error],
            CASE WHEN n.status = N'failed'
                 THEN CONVERT(nvarchar(19), n.run_at, 126) + N'.'
                      + RIGHT(N'000000' + CONVERT(nvarchar(6), DATEPART(microsecond, n.run_at)), 6)
                      + N'Z' END AS [retry_at]
         FOR JSON PATH, INCLUDE_NULL_VALUES, WITHOUT_ARRAY_WRAPPER),
        0
    FROM inserted AS n
    JOIN deleted AS o ON o.id = n.id
    WHERE n.event_seq > o.event_seq
      AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.job_events AS e
                      WHERE e.job_id = n.id AND e.seq = n.event_seq);
END;
GO

-- Continuations of parents that have ended: promoted (queued, or scheduled when their run_at is
-- still ahead) when the parent succeeded; cancelled, down the whole chain, with the reason, when
-- it ended dead or cancelled or no longer exists; each numbers its lifecycle event. @parents: a
-- JSON array of {"id": ...}; parents that have not ended are ignored. Runs in the caller's
-- transaction; @settled: jobs changed, counted from OUTPUT rows (@@ROWCOUNT is not relied on
-- after an UPDATE of jobs, which fires the trigger).
CREATE OR ALTER PROCEDURE __SCHEMA__.settle_continuations
    @parents nvarchar(max),
    @now datetime2(6),
    @default_ttl float,
    @settled int OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;
    DECLARE @ended TABLE (
        id      uniqueidentifier NOT NULL PRIMARY KEY,
        status  nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL
    );
    DECLARE @changed TABLE (id uniqueidentifier NOT NULL);
    SET @settled = 0;
    INSERT INTO @ended (id, status)
    SELECT DISTINCT g.id, COALESCE(j.status, N'missing')
    FROM OPENJSON(@parents) WITH (id uniqueidentifier '$.id') AS g
    LEFT JOIN __SCHEMA__.jobs AS j ON j.id = g.id
    WHERE g.id IS NOT NULL
      AND COALESCE(j.status, N'missing') IN (N'succeeded', N'dead', N'cancelled', N'missing');

    UPDATE c
    SET status = CASE WHEN c.run_at > @now THEN N'scheduled' ELSE N'queued' END,
        event_seq = c.event_seq + 1
    OUTPUT inserted.id INTO @changed (id)
    FROM __SCHEMA__.jobs AS c
    JOIN @ended AS p ON c.continues_job_id = p.id
    WHERE p.status = N'succeeded' AND c.status = N'awaiting';

    WITH doomed AS (
        SELECT c.id, p.id AS root, p.status AS root_status
        FROM __SCHEMA__.jobs AS c
        JOIN @ended AS p ON c.continues_job_id = p.id
        WHERE p.status <> N'succeeded' AND c.status = N'awaiting'
        UNION ALL
        SELECT j.id, d.root, d.root_status
        FROM __SCHEMA__.jobs AS j
        JOIN doomed AS d ON j.continues_job_id = d.id
        WHERE j.status = N'awaiting'
    )
    UPDATE c
    SET status = N'cancelled',
        error = N'parent job ' + LOWER(CONVERT(nvarchar(36), d.root))
              + CASE d.root_status WHEN N'missing' THEN N' no longer exists'
                                   ELSE N' ended ' + d.root_status END,
        completed_at = @now,
        expires_at = __SCHEMA__.add_seconds(@now, COALESCE(c.result_ttl, @default_ttl)),
        event_seq = c.event_seq + 1
    OUTPUT inserted.id INTO @changed (id)
    FROM __SCHEMA__.jobs AS c
    JOIN doomed AS d ON c.id = d.id
    OPTION (MAXRECURSION 0);
    SET @settled = (SELECT COUNT(*) FROM @changed);
END;
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 5)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (5);
GO
