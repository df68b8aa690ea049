-- jobworker schema for SQL Server, version 4: job events.
--
-- jobs.event_seq is the sequence number of the job's newest event known to the database. A
-- statement that changes a job's status also sets event_seq to the number of the `lifecycle`
-- event recording the change (one more than before, or above the numbers the job's attempt
-- used on the live bus); the trigger below stores those events, one INSERT per statement.
-- job_events.transient marks events of kinds that are not kept (chunks, logs, metrics) stored
-- only to carry them live when Redis is not there; they expire after the stream TTL.
--
-- A column added in a batch cannot be referenced by that same batch (it is compiled first), so
-- each step below is a batch of its own.

-- The session options that filtered indexes need (sqlcmd starts with QUOTED_IDENTIFIER OFF).
SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
SET QUOTED_IDENTIFIER ON;
GO

IF COL_LENGTH(N'__SCHEMA__.jobs', N'event_seq') IS NULL
    ALTER TABLE __SCHEMA__.jobs
        ADD event_seq bigint NOT NULL CONSTRAINT jobs_event_seq_default DEFAULT 0;
GO

IF COL_LENGTH(N'__SCHEMA__.job_events', N'transient') IS NULL
    ALTER TABLE __SCHEMA__.job_events
        ADD transient bit NOT NULL CONSTRAINT job_events_transient_default DEFAULT 0;
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_events')
                 AND name = N'job_events_transient')
    CREATE INDEX job_events_transient ON __SCHEMA__.job_events (occurred_at)
        WHERE transient = 1;
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

-- Version 2's procedure, now numbering the lifecycle event of every continuation it promotes or
-- cancels. It counts the jobs it changed from OUTPUT rows rather than @@ROWCOUNT, which is not
-- relied on after an UPDATE of jobs now that such an UPDATE fires a trigger.
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

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 4)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (4);
GO
