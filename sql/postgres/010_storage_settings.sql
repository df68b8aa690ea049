-- jobworker schema for PostgreSQL, version 10: storage settings of the three hot tables, so that
-- autovacuum keeps pace with their churn (docs/operations.md explains each one). Idempotent, as
-- the baseline. ALTER TABLE ... SET (...) of these parameters takes a SHARE UPDATE EXCLUSIVE lock:
-- it does not block workers' reads and writes, and it rewrites nothing. No fillfactor: every
-- update of a job changes an indexed column (status, the lease), so none can be HOT, and the
-- room would stay empty in the pages of finished jobs kept for their TTL.

-- jobs: every job is inserted, updated two or three times within seconds (claim, lease renewal,
-- end), then deleted by the janitor. Vacuum (and analyze: the share of each status changes as
-- fast) is due after 50 dead rows plus 2 % of the table, not the default 20 %: a table holding
-- a day of finished jobs would otherwise gather a fifth of its size in dead rows, and dead
-- entries in the claim's index, before autovacuum visits it.
ALTER TABLE __SCHEMA__.jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- job_attempts and job_events: rows are inserted and never updated, then deleted with their job.
-- Vacuum is due after 50 dead rows plus 2 % of the table, and (the insert threshold) after 1,000
-- new rows plus 2 % of the table, so that the pages of rows kept for their TTL are marked
-- all-visible (and frozen) a little at a time rather than in one long pass.
ALTER TABLE __SCHEMA__.job_attempts SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02
);

ALTER TABLE __SCHEMA__.job_events SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02
);

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (10) ON CONFLICT (version) DO NOTHING;
