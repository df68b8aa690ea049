-- Version 7: every event the storage writes is built in Python (jobworker/storage/event_log.py),
-- the same way on every backend. The trigger that stored a lifecycle event for status changes
-- outside an attempt (with a payload built in SQL) goes: the statements that make those changes
-- number them and return them, and the storage stores their events itself.
DROP TRIGGER IF EXISTS jobs_lifecycle_event;

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (7, (julianday('now') - 2440587.5) * 86400.0);
