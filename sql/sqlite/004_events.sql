-- jobworker schema for SQLite, version 4: job events.
--
-- jobs.event_seq is the sequence number of the job's newest event known to the database. Every
-- status change writes a `lifecycle` event: this trigger gives it the next number (above any
-- event already stored, and above what the changing statement set event_seq to, which is how a
-- worker's completion accounts for the events its attempt streamed) and stores it.
-- job_events.transient marks events of kinds that are not kept (chunks, logs, metrics) stored
-- only to carry them live when Redis is not there; they expire after the stream TTL.

ALTER TABLE jobs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_events ADD COLUMN transient INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS job_events_transient ON job_events (occurred_at) WHERE transient = 1;

CREATE TRIGGER IF NOT EXISTS jobs_lifecycle_event AFTER UPDATE OF status ON jobs
WHEN NEW.status IS NOT OLD.status
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
VALUES (4, (julianday('now') - 2440587.5) * 86400.0);
