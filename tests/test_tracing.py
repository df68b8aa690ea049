"""Traces across processes: this process enqueues inside a span (the OpenTelemetry SDK with an
in-memory exporter); `jobworker run` and `jobworker beat` processes import a job module that
wires the SDK to export to a file (tests/apps/traced_jobs.py). Each attempt's span is a child
of the enqueue's `send` span, in the enqueuer's trace, and `ctx.correlation_id` is that trace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from jobworker import App, JobStatus, tracing

from .conftest import FAST, JOBWORKER, TESTS, Store, subprocess_env
from .test_processes import settled, wait_for

sys.path.insert(0, str(TESTS / "apps"))
import traced_jobs

pytestmark = pytest.mark.slow


class Recording(SimpleSpanProcessor):
    """Exports only while a test of this module records: the provider, once set, stays for
    every later test of this process."""

    recording = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            super().on_end(span)


_EXPORTER = InMemorySpanExporter()
_RECORDING = Recording(_EXPORTER)
_ADDED = False  # _RECORDING is a processor of the process's provider


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK in this process, as a web app would wire it; the spans ended meanwhile."""
    global _ADDED
    if not _ADDED:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):  # none set yet in this process
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(_RECORDING)
        _ADDED = True
    _EXPORTER.clear()
    _RECORDING.recording = True
    try:
        yield _EXPORTER
    finally:
        _RECORDING.recording = False
        _EXPORTER.clear()


@pytest.fixture
def app(store: Store) -> Iterator[App]:
    instance = store.app()  # the default registry, which traced_jobs fills
    yield instance
    instance.close()


@pytest.fixture
def launch(store: Store, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts `jobworker ARGS...` on the store, its spans exported to tmp_path/spans.jsonl."""
    processes: list[subprocess.Popen[bytes]] = []
    fast = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}

    def start(*args: str, traced: bool = True) -> subprocess.Popen[bytes]:
        env = subprocess_env(**fast, **store.env)
        if traced:
            env["JOBWORKER_TEST_SPANS"] = str(tmp_path / "spans.jsonl")
        log = (tmp_path / f"{args[0]}-{len(processes)}.log").open("wb")
        try:
            process = subprocess.Popen([*JOBWORKER, *args], stdout=log, stderr=log, env=env)
        finally:
            log.close()
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    assert process.wait(60) == 0


def exported(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "spans.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def hex_of(span: Span | ReadableSpan) -> tuple[str, str]:
    """(trace id, span id) as the JSON export writes them."""
    context = span.get_span_context()
    assert context is not None
    return (
        f"0x{trace.format_trace_id(context.trace_id)}",
        f"0x{trace.format_span_id(context.span_id)}",
    )


def of_job(found: list[dict[str, Any]], job_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    return [
        span
        for span in found
        if span["attributes"].get("messaging.message.id") == str(job_id)
        and span["kind"] == f"SpanKind.{kind}"
    ]


def test_each_attempt_is_a_child_of_the_enqueue_in_the_enqueuers_trace(
    spans: InMemorySpanExporter, app: App, launch: Callable[..., Any], tmp_path: Path
) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /reports") as request:
        hello = traced_jobs.hello.delay()
        flaky = traced_jobs.flaky.delay()
        chain = traced_jobs.chain.delay()
    trace_id, request_id = hex_of(request)
    worker = launch("run", "traced_jobs", "--concurrency", "1")
    jobs = wait_for(lambda: settled(app, [hello, flaky, chain]), 60, "three jobs to end")
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 3
    [continuation_id] = wait_for(
        lambda: [
            job.job_id
            for job in app.client.list(job_type="traced.hello", status=JobStatus.SUCCEEDED)
            if job.job_id != hello.job_id
        ],
        60,
        "the continuation to run",
    )
    stop(worker)  # the worker processes export what their batch holds as they exit
    found = exported(tmp_path)

    # This process: a `send default` span per enqueue, children of the request's span.
    sent = {span.attributes["messaging.message.id"]: span for span in spans.get_finished_spans()
            if span.name == "send default"}  # fmt: skip
    assert set(sent) == {str(hello.job_id), str(flaky.job_id), str(chain.job_id)}
    for span in sent.values():
        assert span.kind is trace.SpanKind.PRODUCER and hex_of(span)[0] == trace_id
        assert span.parent is not None and f"0x{span.parent.span_id:016x}" == request_id
        assert span.attributes["messaging.system"] == "jobworker"
        assert span.attributes["messaging.destination.name"] == "default"

    # The worker: one `process default` span per attempt, a child of its job's send span.
    [attempt] = of_job(found, hello.job_id, "CONSUMER")
    assert attempt["name"] == "process default"
    assert attempt["context"]["trace_id"] == trace_id
    assert attempt["parent_id"] == hex_of(sent[str(hello.job_id)])[1]
    assert attempt["attributes"] == {
        "messaging.system": "jobworker",
        "messaging.destination.name": "default",
        "messaging.message.id": str(hello.job_id),
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "jobworker.job.type": "traced.hello",
        "jobworker.job.attempt": 1,
        "jobworker.outcome": "succeeded",
    }
    assert attempt["status"]["status_code"] == "UNSET"
    # ctx.correlation_id is the trace id.
    assert hello.result(timeout=5) == trace_id.removeprefix("0x")

    first, second = sorted(
        of_job(found, flaky.job_id, "CONSUMER"),
        key=lambda s: s["attributes"]["jobworker.job.attempt"],
    )
    for span in (first, second):
        assert span["context"]["trace_id"] == trace_id
        assert span["parent_id"] == hex_of(sent[str(flaky.job_id)])[1]
    assert first["attributes"]["jobworker.outcome"] == "failed"
    assert first["status"] == {
        "status_code": "ERROR",
        "description": "ConnectionError: the first attempt fails",
    }
    [error] = first["events"]
    assert error["name"] == "exception"
    assert error["attributes"]["exception.type"] == "ConnectionError"
    assert "the first attempt fails" in error["attributes"]["exception.stacktrace"]
    assert second["attributes"]["jobworker.outcome"] == "succeeded"
    assert flaky.result(timeout=5) == trace_id.removeprefix("0x")

    # The continuation chain enqueued from inside its attempt: the same trace, through the
    # worker's own send span, a child of chain's attempt.
    [chain_attempt] = of_job(found, chain.job_id, "CONSUMER")
    [inner_send] = of_job(found, continuation_id, "PRODUCER")
    [continued] = of_job(found, continuation_id, "CONSUMER")
    assert inner_send["parent_id"] == chain_attempt["context"]["span_id"]
    assert continued["parent_id"] == inner_send["context"]["span_id"]
    assert {chain_attempt["context"]["trace_id"], continued["context"]["trace_id"]} == {trace_id}
    assert app.client.get(continuation_id).result == trace_id.removeprefix("0x")
    assert stored_context(app, hello.job_id).startswith(f"00-{trace_id.removeprefix('0x')}-")


def test_a_cron_fire_starts_a_trace_its_job_runs_in(
    spans: InMemorySpanExporter, app: App, launch: Callable[..., Any], tmp_path: Path
) -> None:
    beat = launch("beat", "traced_jobs")
    worker = launch("run", "traced_jobs", "--concurrency", "1")
    ticks = wait_for(
        lambda: app.client.list(job_type="traced.tick", status=JobStatus.SUCCEEDED) or None,
        60,
        "a cron tick to run",
    )
    stop(beat)
    stop(worker)
    found = exported(tmp_path)
    tick = ticks[-1]
    [fire] = of_job(found, tick.job_id, "PRODUCER")
    [attempt] = of_job(found, tick.job_id, "CONSUMER")
    assert fire["name"] == "send default" and fire["parent_id"] is None  # a trace per fire
    assert fire["attributes"]["jobworker.recurring.name"] == "traced.tick"
    assert attempt["parent_id"] == fire["context"]["span_id"]
    assert attempt["context"]["trace_id"] == fire["context"]["trace_id"]
    assert tick.result == fire["context"]["trace_id"].removeprefix("0x")


def test_without_an_sdk_nothing_is_carried_and_jobs_run(
    app: App, launch: Callable[..., Any], tmp_path: Path, store: Store
) -> None:
    """The API is installed, nothing configured it: the row carries NULL, and the correlation
    id is the job id."""
    enqueue = subprocess.run(
        [*JOBWORKER, "enqueue", "--app", "traced_jobs", "traced.hello"],
        env=subprocess_env(**store.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    job_id = uuid.UUID(enqueue.stdout.strip())
    worker = launch("run", "traced_jobs", "--concurrency", "1", traced=False)
    job = wait_for(
        lambda: (found := app.client.get(job_id)) and found.status.is_terminal and found,
        60,
        "the job to end",
    )
    stop(worker)
    assert job.status is JobStatus.SUCCEEDED and job.result == job_id.hex
    assert stored_context(app, job_id) is None
    assert not (tmp_path / "spans.jsonl").exists()


def test_the_context_text_round_trips_through_the_propagator(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("tests")
    assert tracing.carried_context() is None  # no current span
    with tracer.start_as_current_span("outer") as outer:
        carried = tracing.carried_context()
        ids = outer.get_span_context()
        trace_id, span_id = trace.format_trace_id(ids.trace_id), trace.format_span_id(ids.span_id)
        assert carried == f"00-{trace_id}-{span_id}-{ids.trace_flags:02x}"
        assert tracing.current_trace_id() == trace.format_trace_id(
            outer.get_span_context().trace_id
        )
    assert tracing.current_trace_id() is None
    # A context that came with a tracestate (from a request's headers) carries it after a newline.
    incoming = {"traceparent": carried, "tracestate": "vendor=opaque,other=1"}
    token = context.attach(TraceContextTextMapPropagator().extract(incoming))
    try:
        with tracer.start_as_current_span("handler") as handler:
            own = handler.get_span_context()
            parent = f"{carried[:36]}{trace.format_span_id(own.span_id)}-{own.trace_flags:02x}"
            assert tracing.carried_context() == f"{parent}\nvendor=opaque,other=1"
    finally:
        context.detach(token)


def stored_context(app: App, job_id: uuid.UUID) -> str | None:
    """jobs.trace_context as the database holds it."""
    settings = app.settings
    url = settings.database_url
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            query = "SELECT trace_context FROM jobs WHERE id = ?"
            (value,) = db.execute(query, (str(job_id),)).fetchone()
        return value

    async def read() -> str | None:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(
                f'SELECT trace_context FROM "{settings.database_schema}".jobs WHERE id = $1', job_id
            )
        finally:
            await conn.close()

    return asyncio.run(read())


NOT_INSTALLED = """
import sys
sys.modules["opentelemetry"] = None  # as if the package were not installed: its import fails
from jobworker import App, JobContext, Registry, tracing
from jobworker.testing import drain

assert not tracing.ENABLED and not tracing.tracing_on()
assert tracing.sending([]) is tracing.sending([]), "one shared no-op, nothing made per call"
registry = Registry()
app = App(sys.argv[1], registry=registry)

@app.job(name="plain")
def plain(ctx: JobContext) -> str:
    assert tracing.current_trace_id() is None
    return ctx.correlation_id

handle = plain.delay()
assert drain(app).succeeded == 1
assert handle.result() == handle.job_id.hex
print(handle.job_id)
"""


def test_without_opentelemetry_installed_jobs_run_and_carry_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NOT_INSTALLED, sqlite_url],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    app = App(sqlite_url)
    try:
        assert stored_context(app, uuid.UUID(done.stdout.strip())) is None
    finally:
        app.close()
