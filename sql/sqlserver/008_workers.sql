-- jobworker schema for SQL Server, version 8: the worker registry. A row per live supervisor,
-- worker process and beat, refreshed by its heartbeat; a process that stops cleanly deletes its
-- row, and the janitor marks the rows whose heartbeat went stale as gone, then deletes them
-- later. `queues` is a JSON array of queue names; `parent` is a worker process's supervisor.

IF OBJECT_ID(N'__SCHEMA__.workers', N'U') IS NULL
    CREATE TABLE __SCHEMA__.workers (
        id              nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL
                        CONSTRAINT workers_pkey PRIMARY KEY,
        parent          nvarchar(400) COLLATE Latin1_General_100_BIN2 NULL,
        host            nvarchar(255) NOT NULL,
        pid             int NOT NULL,
        role            nvarchar(32) NOT NULL,
        module          nvarchar(400) NOT NULL,
        queues          nvarchar(max) NOT NULL,
        slots           int NOT NULL,
        running         int NOT NULL CONSTRAINT workers_running_default DEFAULT 0,
        started_at      datetime2(6) NOT NULL,
        last_heartbeat  datetime2(6) NOT NULL,
        gone            bit NOT NULL CONSTRAINT workers_gone_default DEFAULT 0
    );
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 8)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (8);
GO
