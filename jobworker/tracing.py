"""Trace context: carried in the job row from the enqueuer to each attempt's span (OpenTelemetry,
when installed)."""

__all__: list[str] = []
