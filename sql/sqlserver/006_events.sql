-- jobworker schema for SQL Server, version 6: one event model for every backend (the rule is
-- stated in jobworker/storage/event_log.py). Idempotent, as the baseline: every batch checks
-- before it changes, and routines use CREATE OR ALTER.
--
-- The storage's own events are no longer built in SQL, nor timed by the server's clock:
-- - the trigger jobs_record_lifecycle, which stored a row for every status change, is dropped;
-- - an attempt's `running` event and the lifecycle event that ended it are read from its
--   job_attempts row, which records their numbers (start_seq, end_seq) and what the end says
--   (end_status, end_attempt, end_error, end_run_at); while it runs, from the jobs row; a
--   succeeded attempt's `result` event (numbered end_seq - 1) from the job's result;
-- - every other status change (cancelled while waiting, retried, a continuation queued or
--   cancelled) numbers its event event_seq + 1 and answers the change; the backend builds the
--   event's payload, timed by its own clock, and stores it as a row in the same transaction.
-- Rows the trigger stored stay as they are and are read as before; an attempt row written
-- before this version (no marks) implies nothing.

-- The session options that filtered indexes need (sqlcmd starts with QUOTED_IDENTIFIER OFF):
-- a procedure keeps those it was created with.
SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'__SCHEMA__.jobs_record_lifecycle', N'TR') IS NOT NULL
    DROP TRIGGER __SCHEMA__.jobs_record_lifecycle;
GO

IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts') AND name = N'start_seq')
    ALTER TABLE __SCHEMA__.job_attempts ADD start_seq bigint NULL;
IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts') AND name = N'end_seq')
    ALTER TABLE __SCHEMA__.job_attempts ADD end_seq bigint NULL;
IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts') AND name = N'end_status')
    ALTER TABLE __SCHEMA__.job_attempts
        ADD end_status nvarchar(16) COLLATE Latin1_General_100_BIN2 NULL;
IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts') AND name = N'end_attempt')
    ALTER TABLE __SCHEMA__.job_attempts ADD end_attempt int NULL;
IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts') AND name = N'end_error')
    ALTER TABLE __SCHEMA__.job_attempts ADD end_error nvarchar(max) NULL;
IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts') AND name = N'end_run_at')
    ALTER TABLE __SCHEMA__.job_attempts ADD end_run_at datetime2(6) NULL;
GO

-- Continuations of parents that have ended: promoted (queued, or scheduled when their run_at is
-- still ahead) when the parent succeeded; cancelled, down the whole chain, with the reason, when
-- it ended dead or cancelled or no longer exists; each change numbers its event (event_seq + 1).
-- @parents: a JSON array of {"id": ...}; parents that have not ended are ignored. Runs in the
-- caller's transaction. @changes: the changes made, a JSON array of {"id", "event_seq",
-- "status", "attempt", "error", "run_at"} (NULL: none), which the caller answers with; the
-- backend stores their events.
CREATE OR ALTER PROCEDURE __SCHEMA__.settle_continuations
    @parents nvarchar(max),
    @now datetime2(6),
    @default_ttl float,
    @changes nvarchar(max) OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;
    DECLARE @ended TABLE (
        id      uniqueidentifier NOT NULL PRIMARY KEY,
        status  nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL
    );
    DECLARE @changed TABLE (
        id         uniqueidentifier NOT NULL,
        event_seq  bigint NOT NULL,
        status     nvarchar(16) NOT NULL,
        attempt    int NOT NULL,
        error      nvarchar(max) NULL,
        run_at     datetime2(6) NOT NULL
    );
    SET @changes = NULL;
    INSERT INTO @ended (id, status)
    SELECT DISTINCT g.id, COALESCE(j.status, N'missing')
    FROM OPENJSON(@parents) WITH (id uniqueidentifier '$.id') AS g
    LEFT JOIN __SCHEMA__.jobs AS j ON j.id = g.id
    WHERE g.id IS NOT NULL
      AND COALESCE(j.status, N'missing') IN (N'succeeded', N'dead', N'cancelled', N'missing');

    UPDATE c
    SET status = CASE WHEN c.run_at > @now THEN N'scheduled' ELSE N'queued' END,
        event_seq = c.event_seq + 1
    OUTPUT inserted.id, inserted.event_seq, inserted.status, inserted.attempt, inserted.error,
        inserted.run_at
    INTO @changed (id, event_seq, status, attempt, error, run_at)
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
    OUTPUT inserted.id, inserted.event_seq, inserted.status, inserted.attempt, inserted.error,
        inserted.run_at
    INTO @changed (id, event_seq, status, attempt, error, run_at)
    FROM __SCHEMA__.jobs AS c
    JOIN doomed AS d ON c.id = d.id
    OPTION (MAXRECURSION 0);
    SET @changes = (SELECT id, event_seq, status, attempt, error, run_at FROM @changed
                    FOR JSON PATH);
END;
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 6)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (6);
GO
