-- jobworker schema for PostgreSQL, version 18: the job-type catalogue. A row per job type a
-- worker process or beat has declared (`@job(...)`: its kind, display name, description, icon,
-- resolved queue, priority and attempts, cron, whether it is async, the JSON Schema of its
-- arguments), written by every worker process and beat when it starts. `seen_by` is the process
-- that wrote it last (a worker id or a beat holder), `module` the Python module that defines the
-- job. Rows are never deleted: a type gone from the code keeps its name for the jobs it left.
-- Idempotent, as the baseline.
CREATE TABLE IF NOT EXISTS __SCHEMA__.job_types (
    name          text PRIMARY KEY,
    kind          text NOT NULL,
    display_name  text NOT NULL,
    description   text NOT NULL,
    icon          text,
    queue         text NOT NULL,
    priority      integer NOT NULL,
    max_attempts  integer NOT NULL,
    cron          text,
    timezone      text,
    is_async      boolean NOT NULL,
    args_schema   text,
    module        text NOT NULL,
    seen_by       text NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL
);

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (18) ON CONFLICT (version) DO NOTHING;
