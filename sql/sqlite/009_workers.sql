-- Version 9: the worker registry. A row per live supervisor, worker process and beat, refreshed
-- by its heartbeat; a process that stops cleanly deletes its row, and the janitor marks the rows
-- whose heartbeat went stale as gone (gone = 1), then deletes them later. `queues` is a JSON
-- array of queue names; `parent` is a worker process's supervisor.
CREATE TABLE IF NOT EXISTS workers (
    id              TEXT PRIMARY KEY,
    parent          TEXT,
    host            TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    role            TEXT NOT NULL,
    module          TEXT NOT NULL,
    queues          TEXT NOT NULL,
    slots           INTEGER NOT NULL,
    running         INTEGER NOT NULL DEFAULT 0,
    started_at      REAL NOT NULL,
    last_heartbeat  REAL NOT NULL,
    gone            INTEGER NOT NULL DEFAULT 0
);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (9, (julianday('now') - 2440587.5) * 86400.0);
