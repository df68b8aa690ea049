-- jobworker schema for SQLite, version 3: leader leases (beat's leadership without Redis).

CREATE TABLE IF NOT EXISTS leader_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       TEXT NOT NULL,
    since       REAL NOT NULL,
    expires_at  REAL NOT NULL
);

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (3, (julianday('now') - 2440587.5) * 86400.0);
