-- jobworker schema for PostgreSQL, version 2: wake idle workers when jobs are enqueued.
-- One NOTIFY per INSERT statement and queue (a batch of 10,000 jobs sends one), on channel
-- 'jobworker:<schema>' with the queue name as payload. Workers poll as well, so a lost
-- notification costs at most one poll interval.

CREATE OR REPLACE FUNCTION __SCHEMA__.notify_enqueued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobworker:' || TG_TABLE_SCHEMA, queues.queue)
    FROM (SELECT DISTINCT queue FROM inserted_jobs WHERE status = 'queued') AS queues;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER jobs_notify_enqueued
    AFTER INSERT ON __SCHEMA__.jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.notify_enqueued();

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (2) ON CONFLICT (version) DO NOTHING;
