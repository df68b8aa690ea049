-- jobworker schema for SQLite, version 5: the beat leader's heartbeat. The leader writes its term
-- here at every renewal; workers skip lease rescue and the janitor while it is alive, and
-- `jobworker beat --status` reads who leads. (Version 4 belongs to the event columns.)

CREATE TABLE IF NOT EXISTS beat_leaders (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    mechanism   TEXT NOT NULL,
    token       TEXT NOT NULL,
    since       REAL NOT NULL,
    renewed_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (5, (julianday('now') - 2440587.5) * 86400.0);
