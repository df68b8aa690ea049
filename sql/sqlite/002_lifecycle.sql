-- jobworker schema for SQLite, version 2: paused queues.

CREATE TABLE IF NOT EXISTS queue_state (
    queue       TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL
);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (2, (julianday('now') - 2440587.5) * 86400.0);
