-- jobworker schema for SQLite, version 6: the lifecycle events of an attempt's start and end
-- are read from its job_attempts row instead of being stored as job_events rows.
--
-- Every attempt begins with a `running` event and ends with one more lifecycle event. Stored by
-- the lifecycle trigger, each was a second write to the job's row and an event row, on the two
-- hottest statements, the claim and the end of an attempt. Those statements now number the
-- events themselves (jobs.event_seq); the end of an attempt records both numbers in its
-- job_attempts row, with what the end event says (the job's status, attempt, error and run_at
-- after it), and reading a job's events puts them back in sequence among the stored ones. The
-- trigger keeps recording every other status change (a cancel, a retry, a continuation
-- settled). Events stored as rows by earlier versions stay rows; a derived event never repeats
-- one.

ALTER TABLE job_attempts ADD COLUMN start_seq INTEGER;
ALTER TABLE job_attempts ADD COLUMN end_seq INTEGER;
ALTER TABLE job_attempts ADD COLUMN end_status TEXT;
ALTER TABLE job_attempts ADD COLUMN end_attempt INTEGER;
ALTER TABLE job_attempts ADD COLUMN end_error TEXT;
ALTER TABLE job_attempts ADD COLUMN end_run_at REAL;

DROP TRIGGER IF EXISTS jobs_lifecycle_event;
CREATE TRIGGER jobs_lifecycle_event AFTER UPDATE OF status ON jobs
WHEN NEW.status IS NOT OLD.status
    AND OLD.status IS NOT 'running' AND NEW.status IS NOT 'running'
BEGIN
    UPDATE jobs
    SET event_seq = max(
        NEW.event_seq,
        COALESCE((SELECT max(seq) FROM job_events WHERE job_id = NEW.id), 0)) + 1
    WHERE id = NEW.id;
    INSERT OR IGNORE INTO job_events (job_id, seq, kind, occurred_at, payload, transient)
    SELECT NEW.id, j.event_seq, 'lifecycle', NEW.updated_at,
        CAST(json_object(
            'status', NEW.status,
            'attempt', NEW.attempt,
            'error', CASE WHEN NEW.status IN ('failed', 'dead', 'cancelled', 'queued')
                          THEN NEW.error END,
            'retry_at', CASE WHEN NEW.status = 'failed' THEN printf(
                '%s.%06dZ',
                strftime('%Y-%m-%dT%H:%M:%S', CAST(NEW.run_at AS INTEGER), 'unixepoch'),
                min(999999, CAST((NEW.run_at - CAST(NEW.run_at AS INTEGER)) * 1000000 + 0.5
                                 AS INTEGER))) END
        ) AS BLOB),
        0
    FROM jobs AS j WHERE j.id = NEW.id;
END;

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (6, (julianday('now') - 2440587.5) * 86400.0);
