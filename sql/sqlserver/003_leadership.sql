-- jobworker schema for SQL Server, version 3: leader leases (beat's leadership without Redis),
-- as a row with an expiry that a new holder may take once it has passed.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
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

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 3)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (3);
GO
