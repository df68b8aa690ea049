"""Trace context: carried in the job row from the enqueuer to each attempt's span (OpenTelemetry,
when installed).

An enqueue runs inside a `send {queue}` span (kind PRODUCER), whose W3C context (`traceparent`,
and `tracestate` after a newline) is stored in `jobs.trace_context`. Each attempt runs inside a
`process {queue}` span (kind CONSUMER) whose parent is that stored context, so a job's work
shows in the trace of the request that asked for it, attempt after attempt.

Tracing is on when the `opentelemetry` API is importable and a tracer provider has been set
(an SDK, or the auto-instrumentation's). Otherwise every function here returns at once: one
module-level check, no span, no allocation per job, and the row's column stays NULL.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from jobworker import transitions
from jobworker._version import __version__
from jobworker.models import ClaimedJob, Completion, Failed, NewJob

__all__ = [
    "ENABLED",
    "NO_ATTEMPT",
    "TRACER_NAME",
    "Attempt",
    "attempt",
    "carried_context",
    "current_trace_id",
    "flush",
    "record_exception",
    "sending",
    "tracing_on",
]

logger = logging.getLogger("jobworker.tracing")

TRACER_NAME = "jobworker"
SYSTEM = "jobworker"  # messaging.system

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the API is a dev dependency; tested in a subprocess
    ENABLED = False
else:
    ENABLED = True
    # The row's format is W3C Trace Context whatever propagators the application configured.
    _PROPAGATOR = TraceContextTextMapPropagator()
    # A proxy until a provider is set, which then hands its spans to that provider's tracer.
    _TRACER = otel_trace.get_tracer(TRACER_NAME, __version__)
    _GLOBAL_READABLE = hasattr(otel_trace, "_TRACER_PROVIDER")
    # A provider named by this variable is made by the first get_tracer_provider() call.
    _PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ

_configured = False  # a tracer provider has been set (it cannot be unset)
_NO_SPAN: AbstractContextManager[str | None] = contextlib.nullcontext(None)


def tracing_on() -> bool:
    """OpenTelemetry is importable and a tracer provider has been set."""
    global _configured
    if _configured or not ENABLED:
        return _configured
    # Asked on every enqueue and attempt until a provider is set: the API's module global
    # answers in a few nanoseconds, where get_tracer_provider() reads os.environ each time
    # (microseconds). The public call decides whenever the global may not tell.
    if _GLOBAL_READABLE and otel_trace._TRACER_PROVIDER is None and not _PROVIDER_FROM_ENV:
        return False
    provider = otel_trace.get_tracer_provider()
    _configured = not isinstance(provider, otel_trace.ProxyTracerProvider)
    return _configured


def carried_context() -> str | None:
    """The current span's context as a job row carries it; None without tracing or without a
    valid current span."""
    if not tracing_on():
        return None
    return _as_text(otel_context.get_current())


def current_trace_id() -> str | None:
    """The current valid span's trace id (32 hex digits), for logs and correlation ids."""
    if not tracing_on():
        return None
    span_context = otel_trace.get_current_span().get_span_context()
    return otel_trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


def sending(
    jobs: Sequence[NewJob], *, recurring: str | None = None
) -> AbstractContextManager[str | None]:
    """The span of one enqueue of `jobs` (one job type, one queue: `send {queue}`, PRODUCER),
    current while it is open; entering it gives the context to store in their rows (None
    without tracing). `recurring`: the name of the recurring job a fire of beat enqueues."""
    if not jobs or not tracing_on():
        return _NO_SPAN
    return _sending(jobs, recurring)


@contextlib.contextmanager
def _sending(jobs: Sequence[NewJob], recurring: str | None) -> Iterator[str | None]:
    queue = jobs[0].queue
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "jobworker.job.type": jobs[0].job_type,
    }
    if len(jobs) == 1:
        attributes["messaging.message.id"] = str(jobs[0].id)
    else:
        attributes["messaging.batch.message_count"] = len(jobs)
    if recurring is not None:
        attributes["jobworker.recurring.name"] = recurring
    with _TRACER.start_as_current_span(
        f"send {queue}", kind=otel_trace.SpanKind.PRODUCER, attributes=attributes
    ):
        yield _as_text(otel_context.get_current())


class Attempt:
    """One attempt's span: `context` is what its task runs in (the span current), `trace_id`
    its trace (the job's correlation id); `NO_ATTEMPT` without tracing."""

    __slots__ = ("_span", "context", "trace_id")

    def __init__(
        self,
        span: Any = None,
        context: contextvars.Context | None = None,
        trace_id: str | None = None,
    ) -> None:
        self._span = span
        self.context = context
        self.trace_id = trace_id

    def end(self, completion: Completion) -> None:
        """The attempt has ended: its outcome on the span (status ERROR for a failure), and the
        span ends."""
        span = self._span
        if span is None:
            return
        outcome = completion.outcome
        span.set_attribute(
            "jobworker.outcome", transitions.attempt_outcome(outcome, completion.retry_at).value
        )
        if isinstance(outcome, Failed):
            span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, outcome.error))
        span.end()


NO_ATTEMPT = Attempt()


def attempt(job: ClaimedJob) -> Attempt:
    """Start the span of `job`'s attempt (`process {queue}`, CONSUMER), a child of the context
    its row carries (a new trace when it carries none)."""
    if not tracing_on():
        return NO_ATTEMPT
    span = _TRACER.start_span(
        f"process {job.queue}",
        context=_parent(job.trace_context),
        kind=otel_trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.destination.name": job.queue,
            "messaging.message.id": str(job.id),
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "jobworker.job.type": job.job_type,
            "jobworker.job.attempt": job.attempt,
        },
    )
    run_in = contextvars.copy_context()
    run_in.run(otel_context.attach, otel_trace.set_span_in_context(span))
    span_context = span.get_span_context()
    trace_id = otel_trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None
    return Attempt(span, run_in, trace_id)


def record_exception(exc: BaseException) -> None:
    """Record a handler's exception on the current span (the attempt's), if it records."""
    if not ENABLED:
        return
    span = otel_trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)


def flush(timeout_seconds: float = 5.0) -> None:
    """Export the spans still buffered: a worker process ends with `os._exit`, which runs no
    `atexit` hook (where the SDK would)."""
    if not tracing_on():
        return
    force_flush = getattr(otel_trace.get_tracer_provider(), "force_flush", None)
    if force_flush is None:
        return
    try:
        force_flush(int(timeout_seconds * 1000))
    except Exception:  # an exporter's failure must not keep a process from exiting
        logger.exception("exporting the last spans failed")


def _as_text(context: Any) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    parent = carrier.get("traceparent")
    if parent is None:
        return None
    state = carrier.get("tracestate")
    return f"{parent}\n{state}" if state else parent


def _parent(text: str | None) -> Any:
    """The context a stored trace context names; an empty one (a new trace) for NULL or a value
    that is not one: nothing of the worker's own context leaks into a job's trace."""
    if not text:
        return otel_context.Context()
    parent, _, state = text.partition("\n")
    carrier = {"traceparent": parent}
    if state:
        carrier["tracestate"] = state
    return _PROPAGATOR.extract(carrier, context=otel_context.Context())
