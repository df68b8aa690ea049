"""Jobs for the tracing tests. With JOBWORKER_TEST_SPANS set (a file path), importing this module
wires the OpenTelemetry SDK the way an application would: a tracer provider whose batch
processor exports to that file, one JSON span a line, from every process (the supervisor's
worker processes, beat). A worker process exports what its batch still holds when it stops."""

from __future__ import annotations

import os
from collections.abc import Sequence

from jobworker import JobContext, ScheduleOptions, job

SPANS = os.environ.get("JOBWORKER_TEST_SPANS")

if SPANS:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class FileSpanExporter(SpanExporter):
        """Appends each span as one JSON line (O_APPEND: processes share the file)."""

        def __init__(self, path: str) -> None:
            self._path = path

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({"service.name": "traced-jobs"}))
    # A long delay: nothing is exported before the process stops, so the test proves the
    # worker's flush at exit.
    provider.add_span_processor(
        BatchSpanProcessor(FileSpanExporter(SPANS), schedule_delay_millis=60_000)
    )
    trace.set_tracer_provider(provider)


@job(name="traced.hello")
async def hello(ctx: JobContext) -> str:
    return ctx.correlation_id


@job(name="traced.flaky", max_attempts=2)
def flaky(ctx: JobContext) -> str:
    """Sync (a thread of the worker's pool): fails its first attempt."""
    if ctx.attempt == 1:
        raise ConnectionError("the first attempt fails")
    return ctx.correlation_id


@job(name="traced.chain")
def chain(ctx: JobContext) -> str:
    """Enqueues `traced.hello` as its own continuation, from inside its attempt."""
    hello.delay(options=ScheduleOptions(continues_job_id=ctx.job_id))
    return ctx.correlation_id


@job(name="traced.tick", kind="system", cron="* * * * * *")
def tick(ctx: JobContext) -> str:
    return ctx.correlation_id
