-- jobworker schema for PostgreSQL, version 13: the worker registry. A row per live supervisor,
-- worker process and beat, refreshed by its heartbeat; a process that stops cleanly deletes its
-- row, and the janitor marks the rows whose heartbeat went stale as gone, then deletes them
-- later. `parent` is a worker process's supervisor. Idempotent, as the baseline.
CREATE TABLE IF NOT EXISTS __SCHEMA__.workers (
    id              text PRIMARY KEY,
    parent          text,
    host            text NOT NULL,
    pid             integer NOT NULL,
    role            text NOT NULL,
    module          text NOT NULL,
    queues          text[] NOT NULL,
    slots           integer NOT NULL,
    running         integer NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL,
    last_heartbeat  timestamptz NOT NULL,
    gone            boolean NOT NULL DEFAULT false
);

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (13) ON CONFLICT (version) DO NOTHING;
