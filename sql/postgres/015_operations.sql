-- jobworker schema for PostgreSQL, version 15: what operations read. Idempotent, as the baseline.
--
-- jobs.trace_context: the W3C trace context (`traceparent`, and `tracestate` after a newline)
-- of the span that enqueued the job, when OpenTelemetry tracing is on; NULL otherwise. Each
-- attempt's span is a child of it, so a job's work shows in the trace of the request that asked
-- for it. Continuations and cron fires carry one too.
--
-- workers.figures: a process's cumulative figures (attempts ended by job type and outcome, their
-- durations, claim batch sizes, events published), as msgspec JSON, written with its heartbeat:
-- what `/metrics` serves on the web tail and on a supervisor's health port. NULL for a process
-- that records none (beat, a supervisor).
ALTER TABLE __SCHEMA__.jobs ADD COLUMN IF NOT EXISTS trace_context text;
ALTER TABLE __SCHEMA__.workers ADD COLUMN IF NOT EXISTS figures text;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (15) ON CONFLICT (version) DO NOTHING;
