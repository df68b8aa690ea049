-- jobworker schema for SQL Server (2016 or later, database compatibility level 130 or more),
-- version 1. Idempotent: every batch checks before it creates, so the script can run again.
--
-- Batches are separated by GO lines, as sqlcmd and SSMS expect; `jobworker migrate` splits the
-- script on them and runs every batch in one transaction. A placeholder stands for the
-- (validated, bracket-quoted) schema name; `jobworker sql --dialect sqlserver` fills it in.
--
-- Times are UTC in datetime2(6). Ids are uniqueidentifier. Arguments and results are JSON text
-- in nvarchar(max). Names, queues, statuses, lease owners and idempotency keys use a binary
-- collation, so they compare exactly (case- and accent-sensitive) as on the other backends,
-- whatever the database's default collation is.

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
        CONSTRAINT job_events_pkey PRIMARY KEY (job_id, seq)
    );
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

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 1)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (1);
GO
