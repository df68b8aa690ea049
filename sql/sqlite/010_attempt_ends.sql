-- Version 10: throughput (attempts ended per minute by outcome, over the last hour: the admin
-- dashboard's overview) reads job_attempts by when they ended. One B-tree entry per attempt, at
-- the end of the index (attempts end in time order): what SQLite has instead of PostgreSQL's
-- BRIN index, at a cost small beside the completion's own writes at SQLite's scale.
BEGIN IMMEDIATE;

CREATE INDEX IF NOT EXISTS job_attempts_ended ON job_attempts (ended_at);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (10, (julianday('now') - 2440587.5) * 86400.0);

COMMIT;
