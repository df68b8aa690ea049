-- Version 10: throughput (attempts ended per minute by outcome, over the last hour: the admin
-- dashboard's overview) reads job_attempts by when they ended. One B-tree entry per attempt, at
-- the end of the index (attempts end in time order): what SQLite has instead of PostgreSQL's
-- BRIN index, at a cost small beside the completion's own writes at SQLite's scale.
--
-- The overview counts jobs by status and by queue and status: jobs_status_enqueued (status,
-- enqueued_at), which no statement reads by enqueued_at, becomes jobs_status_queue (status,
-- queue), which covers both counts (an index scan instead of reading every row). As many
-- indexes as before: a status change writes the same number of entries.
BEGIN IMMEDIATE;

CREATE INDEX IF NOT EXISTS job_attempts_ended ON job_attempts (ended_at);
DROP INDEX IF EXISTS jobs_status_enqueued;
CREATE INDEX IF NOT EXISTS jobs_status_queue ON jobs (status, queue);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (10, (julianday('now') - 2440587.5) * 86400.0);

COMMIT;
