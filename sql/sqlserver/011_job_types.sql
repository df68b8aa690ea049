-- jobworker schema for SQL Server, version 11: the job-type catalogue. A row per job type a
-- worker process or beat has declared (`@job(...)`: its kind, display name, description, icon,
-- resolved queue, priority and attempts, cron, whether it is async, the JSON Schema of its
-- arguments), written by every worker process and beat when it starts. `seen_by` is the process
-- that wrote it last (a worker id or a beat holder), `module` the Python module that defines the
-- job. Rows are never deleted: a type gone from the code keeps its name for the jobs it left.
-- Idempotent, as the baseline.

IF OBJECT_ID(N'__SCHEMA__.job_types', N'U') IS NULL
    CREATE TABLE __SCHEMA__.job_types (
        name          nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL
                      CONSTRAINT job_types_pkey PRIMARY KEY,
        kind          nvarchar(16) NOT NULL,
        display_name  nvarchar(400) NOT NULL,
        description   nvarchar(max) NOT NULL,
        icon          nvarchar(64) NULL,
        queue         nvarchar(200) NOT NULL,
        priority      int NOT NULL,
        max_attempts  int NOT NULL,
        cron          nvarchar(200) NULL,
        timezone      nvarchar(64) NULL,
        is_async      bit NOT NULL,
        args_schema   nvarchar(max) NULL,
        module        nvarchar(400) NOT NULL,
        seen_by       nvarchar(400) NOT NULL,
        first_seen    datetime2(6) NOT NULL,
        last_seen     datetime2(6) NOT NULL
    );
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 11)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (11);
GO
