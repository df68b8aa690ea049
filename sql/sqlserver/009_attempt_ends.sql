-- jobworker schema for SQL Server, version 9: throughput (attempts ended per minute by outcome,
-- over the last hour: the admin dashboard's overview) reads job_attempts by when they ended.
-- Attempts end in time order, so each new entry goes at the end of this index; it includes the
-- two columns the count reads, so the count reads nothing else.

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.job_attempts')
                 AND name = N'job_attempts_ended')
    CREATE INDEX job_attempts_ended ON __SCHEMA__.job_attempts (ended_at)
        INCLUDE (outcome, end_status);
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 9)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (9);
GO
