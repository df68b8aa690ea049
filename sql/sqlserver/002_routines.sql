-- jobworker schema for SQL Server, version 2: the routines the named statements call.
-- CREATE OR ALTER (SQL Server 2016 SP1 or later) makes the script safe to run again.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
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

-- Continuations of parents that have ended: promoted (queued, or scheduled when their run_at is
-- still ahead) when the parent succeeded; cancelled, down the whole chain, with the reason, when
-- it ended dead or cancelled or no longer exists. @parents: a JSON array of {"id": ...}; parents
-- that have not ended are ignored. Runs in the caller's transaction; @settled: jobs changed.
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
    SET @settled = 0;
    INSERT INTO @ended (id, status)
    SELECT DISTINCT g.id, COALESCE(j.status, N'missing')
    FROM OPENJSON(@parents) WITH (id uniqueidentifier '$.id') AS g
    LEFT JOIN __SCHEMA__.jobs AS j ON j.id = g.id
    WHERE g.id IS NOT NULL
      AND COALESCE(j.status, N'missing') IN (N'succeeded', N'dead', N'cancelled', N'missing');

    UPDATE c
    SET status = CASE WHEN c.run_at > @now THEN N'scheduled' ELSE N'queued' END
    FROM __SCHEMA__.jobs AS c
    JOIN @ended AS p ON c.continues_job_id = p.id
    WHERE p.status = N'succeeded' AND c.status = N'awaiting';
    SET @settled = @@ROWCOUNT;

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
        expires_at = __SCHEMA__.add_seconds(@now, COALESCE(c.result_ttl, @default_ttl))
    FROM __SCHEMA__.jobs AS c
    JOIN doomed AS d ON c.id = d.id
    OPTION (MAXRECURSION 0);
    SET @settled = @settled + @@ROWCOUNT;
END;
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 2)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (2);
GO
