-- Version 12: the job-type catalogue. A row per job type a worker process or beat has declared
-- (`@job(...)`: its kind, display name, description, icon, resolved queue, priority and attempts,
-- cron, whether it is async, the JSON Schema of its arguments), written by every worker process
-- and beat when it starts. `seen_by` is the process that wrote it last (a worker id or a beat
-- holder), `module` the Python module that defines the job. Rows are never deleted: a type gone
-- from the code keeps its name for the jobs it left.
BEGIN IMMEDIATE;

CREATE TABLE IF NOT EXISTS job_types (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    description   TEXT NOT NULL,
    icon          TEXT,
    queue         TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    cron          TEXT,
    timezone      TEXT,
    is_async      INTEGER NOT NULL,
    args_schema   TEXT,
    module        TEXT NOT NULL,
    seen_by       TEXT NOT NULL,
    first_seen    REAL NOT NULL,
    last_seen     REAL NOT NULL
);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (12, (julianday('now') - 2440587.5) * 86400.0);

COMMIT;
