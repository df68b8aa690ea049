-- Version 11: what operations read.
--
-- jobs.trace_context: the W3C trace context (`traceparent`, and `tracestate` after a newline)
-- of the span that enqueued the job, when OpenTelemetry tracing is on; NULL otherwise. Each
-- attempt's span is a child of it. Continuations and cron fires carry one too.
--
-- workers.figures: a process's cumulative figures (attempts ended by job type and outcome, their
-- durations, claim batch sizes, events published), as msgspec JSON, written with its heartbeat:
-- what `/metrics` serves. NULL for a process that records none (beat, a supervisor).
BEGIN IMMEDIATE;

ALTER TABLE jobs ADD COLUMN trace_context TEXT;
ALTER TABLE workers ADD COLUMN figures TEXT;

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (11, (julianday('now') - 2440587.5) * 86400.0);

COMMIT;
