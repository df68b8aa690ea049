-- jobworker schema for SQL Server, version 10: what operations read. Idempotent, as the
-- baseline: every batch checks before it changes.
--
-- jobs.trace_context: the W3C trace context (`traceparent`, and `tracestate` after a newline)
-- of the span that enqueued the job, when OpenTelemetry tracing is on; NULL otherwise. Each
-- attempt's span is a child of it. Continuations and cron fires carry one too.
--
-- workers.figures: a process's cumulative figures (attempts ended by job type and outcome, their
-- durations, claim batch sizes, events published), as msgspec JSON, written with its heartbeat:
-- what `/metrics` serves. NULL for a process that records none (beat, a supervisor).

IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'trace_context')
    ALTER TABLE __SCHEMA__.jobs ADD trace_context nvarchar(1024) NULL;
GO

IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.workers') AND name = N'figures')
    ALTER TABLE __SCHEMA__.workers ADD figures nvarchar(max) NULL;
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 10)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (10);
GO
