-- jobworker schema for SQL Server, version 5: the beat leader's heartbeat. The leader writes its
-- term here at every renewal; workers skip lease rescue and the janitor while it is alive, and
-- `jobworker beat --status` reads who leads. (Version 4 belongs to the event columns.)

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
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

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 5)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (5);
GO
