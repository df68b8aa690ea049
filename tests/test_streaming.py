"""Job events end to end: handlers emit through their context, a worker in this process records
them, readers follow them (stored, then live), on both databases, with and without Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from jobworker import App, JobContext, Registry
from jobworker.errors import JobEventError, JobFailedError, JobNotFoundError
from jobworker.events.model import (
    TRUNCATED_MARKER,
    Chunk,
    Lifecycle,
    Progress,
    decode_event,
    is_terminal,
)
from jobworker.ids import uuid7
from jobworker.models import EventKind, JobEvent, JobStatus, NewJob
from jobworker.testing import capturing_context_for
from jobworker.worker import Worker, WorkerOptions, worker_id

from .conftest import FAST, Store

REDIS_URL = os.environ.get("JOBWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class ExportProgress(msgspec.Struct):
    rows: int
    table: str


@pytest.fixture(params=["database", "redis"])
def bus(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: events travel through the database; else a Redis URL (keys under a test prefix)."""
    return None if request.param == "database" else REDIS_URL


def make_app(store: Store, registry: Registry, redis_url: str | None, **settings: Any) -> App:
    options: dict[str, Any] = {**FAST, "retry_base_delay": 0.05, "retry_max_delay": 0.05}
    options.update(settings)
    return App(
        store.url,
        registry=registry,
        database_schema=store.schema,
        redis_url=redis_url,
        redis_prefix=f"jw_test_{uuid.uuid4().hex[:10]}:",
        **options,
    )


async def drop_redis_keys(app: App) -> None:
    if not app.settings.redis_url or app.settings.redis_url != REDIS_URL:
        return
    client = aioredis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{app.settings.redis_prefix}*"):
        await client.delete(key)
    await client.aclose()


@contextlib.asynccontextmanager
async def running_worker(app: App, parallelism: int = 4) -> AsyncIterator[Worker]:
    worker = Worker(app, WorkerOptions(worker_id=worker_id("test"), parallelism=parallelism))
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


async def collect(app: App, job_id: uuid.UUID, last: str | int | None = None) -> list[JobEvent]:
    return [event async for event in app.client.stream(job_id, last)]


def seqs(events: list[JobEvent]) -> list[int]:
    return [event.seq for event in events]


def view(events: list[JobEvent]) -> list[tuple[int, str, Any]]:
    """Events by meaning: a stored lifecycle event and its live copy may format JSON apart."""
    return [
        (e.seq, e.kind.value, e.decoded(Lifecycle if e.kind is EventKind.LIFECYCLE else Any))
        for e in events
    ]


def statuses(events: list[JobEvent]) -> list[str]:
    return [
        event.decoded(Lifecycle).status.value
        for event in events
        if event.kind is EventKind.LIFECYCLE
    ]


async def test_events_are_in_order_with_sequences_across_a_retry(
    store: Store, bus: str | None
) -> None:
    registry = Registry()
    attempts: list[int] = []

    @registry.job(name="stream.flaky", max_attempts=3)
    async def flaky(ctx: JobContext[ExportProgress], rows: int) -> int:
        attempts.append(ctx.attempt)
        await ctx.report(ExportProgress(rows=0, table="users"))
        await ctx.log.info("starting", attempt=ctx.attempt)
        for n in range(3):
            await ctx.chunk(f"token {n} ")
        await ctx.metric("rows_per_second", 12.5)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        await ctx.progress(rows, rows, label="done")
        return rows

    app = make_app(store, registry, bus)
    try:
        handle = await flaky.adelay(rows=5)
        async with running_worker(app):
            streamed = await asyncio.wait_for(collect(app, handle.job_id), 30)
            assert await handle.aresult(10) == 5
        assert attempts == [1, 2]
        # Every event, once, numbered 1..n without a gap across both attempts.
        assert seqs(streamed) == list(range(1, len(streamed) + 1))
        assert statuses(streamed) == ["running", "failed", "running", "succeeded"]
        kinds = [event.kind.value for event in streamed]
        assert kinds.count("chunk") == 6 and kinds.count("log") == 2
        assert kinds.count("metric") == 2 and kinds[-2:] == ["result", "lifecycle"]
        # The kept kinds are stored, in the same order and with the same numbers.
        kept = await app.client.aevents(handle.job_id, limit=1000)
        assert view(kept) == view(
            [event for event in streamed if event.kind.value in ("lifecycle", "progress", "result")]
        )
        page = await app.client.aevents(handle.job_id, kept[1].seq, 3)
        assert seqs(page) == seqs(kept[2:5])
        failed = [e.decoded(Lifecycle) for e in kept if e.kind is EventKind.LIFECYCLE][1]
        assert failed.error == "RuntimeError: first attempt fails"
        if bus is not None:  # the job's stream expires some time after the job ended
            client = aioredis.from_url(REDIS_URL)
            key = f"{app.settings.redis_prefix}job:{handle.job_id}:events"
            ttl = await client.ttl(key)
            await client.aclose()
            assert 0 < ttl <= app.settings.event_stream_ttl
        typed = [event async for event in handle.stream()]
        assert typed[1].data == Progress(value=ExportProgress(rows=0, table="users"))
        assert typed[-2].data == 5 and typed[-1].data.status is JobStatus.SUCCEEDED
    finally:
        await drop_redis_keys(app)
        await app.aclose()


async def test_a_reader_resumes_after_a_disconnect_with_exactly_the_missing_events(
    store: Store, bus: str | None
) -> None:
    registry = Registry()
    gate = asyncio.Event()

    @registry.job(name="stream.gated")
    async def gated(ctx: JobContext[Any]) -> str:
        for n in range(1, 4):
            await ctx.progress(n, 6)
        await gate.wait()
        for n in range(4, 7):
            await ctx.progress(n, 6)
            await ctx.chunk("x")
        return "ok"

    app = make_app(store, registry, bus)
    try:
        handle = await gated.adelay()
        async with running_worker(app):
            first: list[JobEvent] = []
            async for event in app.client.stream(handle.job_id):
                first.append(event)
                if event.kind is EventKind.PROGRESS and event.decoded()["done"] == 3:
                    break  # the reader goes away mid-stream
            gate.set()
            await handle.aresult(10)
            resumed = await collect(app, handle.job_id, first[-1].id)
        everything = await collect(app, handle.job_id)
        assert seqs(first) + seqs(resumed) == seqs(everything)
        assert view(first + resumed) == view(everything)
        assert is_terminal(resumed[-1])
        # From a stored event id as a string (what SSE's Last-Event-ID carries).
        kept = await app.client.aevents(handle.job_id, limit=100)
        assert (await collect(app, handle.job_id, str(kept[2].seq)))[0].seq == kept[2].seq + 1
    finally:
        await drop_redis_keys(app)
        await app.aclose()


async def test_three_concurrent_readers_see_identical_streams(
    store: Store, bus: str | None
) -> None:
    registry = Registry()
    started = asyncio.Event()

    @registry.job(name="stream.chatty")
    async def chatty(ctx: JobContext[Any]) -> int:
        await started.wait()
        for n in range(200):
            await ctx.chunk(f"t{n}")
            if n % 50 == 0:
                await ctx.progress(n, 200)
                await asyncio.sleep(0.01)
        return 200

    app = make_app(store, registry, bus)
    try:
        handle = await chatty.adelay()
        async with running_worker(app):
            readers = [asyncio.create_task(collect(app, handle.job_id)) for _ in range(3)]
            await asyncio.sleep(0.3)
            started.set()
            results = await asyncio.wait_for(asyncio.gather(*readers), 30)
        assert view(results[0]) == view(results[1]) == view(results[2])
        assert seqs(results[0]) == list(range(1, len(results[0]) + 1))
        chunks = [e.decoded(Chunk).text for e in results[0] if e.kind is EventKind.CHUNK]
        assert chunks == [f"t{n}" for n in range(200)]
    finally:
        await drop_redis_keys(app)
        await app.aclose()


async def test_oversized_payloads_are_truncated_and_the_job_succeeds(store: Store) -> None:
    registry = Registry()

    @registry.job(name="stream.big")
    async def big(ctx: JobContext[Any]) -> str:
        await ctx.chunk("y" * 5000)
        await ctx.log.info("big", blob="z" * 5000)
        return "small result"

    app = make_app(store, registry, None, max_payload_bytes=1024)
    try:
        handle = await big.adelay()
        async with running_worker(app):
            assert await handle.aresult(10) == "small result"
        events = await collect(app, handle.job_id)
        chunk = next(e for e in events if e.kind is EventKind.CHUNK).decoded()
        assert chunk[TRUNCATED_MARKER] is True and chunk["size"] > 5000
        assert len(chunk["preview"]) <= 1024
        log = next(e for e in events if e.kind is EventKind.LOG)
        assert decode_event(log).data[TRUNCATED_MARKER] is True
    finally:
        await app.aclose()


async def test_typed_progress_is_validated(store: Store) -> None:
    registry = Registry()

    @registry.job(name="stream.typed", max_attempts=1)
    async def typed(ctx: JobContext[ExportProgress], wrong: bool) -> None:
        await ctx.report(ExportProgress(rows=1, table="a"))
        await ctx.report({"rows": 2, "table": "b"})  # type: ignore[arg-type]
        if wrong:
            await ctx.report({"rows": "many"})  # type: ignore[arg-type]

    ctx = capturing_context_for(typed)
    await typed.definition.func(ctx, wrong=False)
    assert ctx.of_kind("progress") == [
        {"value": {"rows": 1, "table": "a"}},
        {"value": {"rows": 2, "table": "b"}},
    ]
    with pytest.raises(JobEventError, match=r"Expected `int`, got `str` - at `\$.rows`"):
        await typed.definition.func(capturing_context_for(typed), wrong=True)

    app = make_app(store, registry, None)
    try:
        handle = await typed.adelay(wrong=True)
        async with running_worker(app):
            with pytest.raises(JobFailedError, match=r"progress of job 'stream\.typed' is invalid"):
                await handle.aresult(10)
        kept = await app.client.aevents(handle.job_id)
        assert statuses(kept) == ["running", "dead"]
        assert [e.kind for e in kept].count(EventKind.PROGRESS) == 2
    finally:
        await app.aclose()


async def test_sync_handlers_use_the_same_api_without_await(store: Store, bus: str | None) -> None:
    registry = Registry()

    @registry.job(name="stream.sync")
    def sync_job(ctx: JobContext[Any], n: int) -> int:
        for i in range(n):
            ctx.progress(i + 1, n)
            ctx.chunk({"row": i})
        ctx.log.warn("finished", rows=n)
        ctx.metric("rows", n)
        return n

    app = make_app(store, registry, bus)
    try:
        handle = await sync_job.adelay(n=50)
        async with running_worker(app):
            assert await handle.aresult(10) == 50
        events = await collect(app, handle.job_id)
        assert seqs(events) == list(range(1, len(events) + 1))
        rows = [e.decoded(Chunk).data["row"] for e in events if e.kind is EventKind.CHUNK]
        assert rows == list(range(50))
        assert [e.decoded()["message"] for e in events if e.kind is EventKind.LOG] == ["finished"]
    finally:
        await drop_redis_keys(app)
        await app.aclose()


async def test_status_changes_outside_workers_reach_live_readers(
    store: Store, bus: str | None
) -> None:
    registry = Registry()

    @registry.job(name="stream.later")
    async def later(ctx: JobContext[Any]) -> None:
        return None

    app = make_app(store, registry, bus)
    try:
        from datetime import UTC, datetime, timedelta

        from jobworker.models import ScheduleOptions

        handle = await later.adelay(
            options=ScheduleOptions(run_at=datetime.now(UTC) + timedelta(hours=1))
        )
        reader = asyncio.create_task(collect(app, handle.job_id))
        await asyncio.sleep(0.3)
        await app.client.acancel(handle.job_id, "not needed")
        events = await asyncio.wait_for(reader, 10)
        assert statuses(events) == ["cancelled"]
        assert events[0].decoded(Lifecycle).error == "not needed"
        with pytest.raises(JobNotFoundError):
            await collect(app, uuid.uuid4())
        with pytest.raises(ValueError, match="sequence number"):
            await collect(app, handle.job_id, "abc")
    finally:
        await drop_redis_keys(app)
        await app.aclose()


# Redis stopped in the middle of a job ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.kill()
        process.wait()


async def test_redis_stopped_mid_job_the_job_succeeds_and_kept_events_are_complete(
    store: Store,
    private_redis: tuple[str, subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, redis_process = private_redis
    registry = Registry()
    halfway = threading.Event()
    carry_on = threading.Event()

    @registry.job(name="stream.outage")
    def through_outage(ctx: JobContext[Any]) -> str:
        for n in range(1, 201):
            ctx.progress(n, 200)
            ctx.chunk(f"c{n}")
            if n == 100:
                halfway.set()
                carry_on.wait(10)
            time.sleep(0.001)
        return "done"

    app = make_app(store, registry, url)
    caplog.set_level(logging.WARNING, logger="jobworker")
    try:
        handle = await through_outage.adelay()
        async with running_worker(app):
            await asyncio.to_thread(halfway.wait, 10)
            await asyncio.sleep(0.3)  # the first half reaches Redis
            redis_process.kill()
            redis_process.wait()
            carry_on.set()
            assert await handle.aresult(20) == "done"
        kept = await app.client.aevents(handle.job_id, limit=1000)
        progress = [e.decoded()["done"] for e in kept if e.kind is EventKind.PROGRESS]
        assert progress == list(range(1, 201))
        assert statuses(kept) == ["running", "succeeded"]
        # The whole stream is still there for a reader: the database carries what Redis missed.
        events = await collect(app, handle.job_id)
        chunks = [e.decoded(Chunk).text for e in events if e.kind is EventKind.CHUNK]
        assert chunks[-100:] == [f"c{n}" for n in range(101, 201)]
        outage_logs = [
            r for r in caplog.records if "publishing events to Redis failed" in r.message
        ]
        assert len(outage_logs) == 1
    finally:
        await app.aclose()


async def assert_every_chunk_arrives(
    store: Store, bus: str | None, registry: Registry, job: Any, count: int
) -> None:
    """Run `job` (which emits chunks 0..count-1) while a reader follows it live: the reader gets
    every chunk, in order, with contiguous sequences, before the job's end."""
    app = make_app(store, registry, bus, event_stream_maxlen=count * 2)
    try:
        handle = await job.adelay()
        async with running_worker(app):
            reader = asyncio.create_task(collect(app, handle.job_id))
            assert await handle.aresult(60) == count
            events = await asyncio.wait_for(reader, 60)
        chunks = [e.decoded(Chunk).data for e in events if e.kind is EventKind.CHUNK]
        assert chunks == list(range(count))
        assert seqs(events) == list(range(1, len(events) + 1))
        assert is_terminal(events[-1])
    finally:
        await drop_redis_keys(app)
        await app.aclose()


async def test_a_job_that_emits_more_than_a_round_ends_after_all_its_events(
    store: Store, bus: str | None
) -> None:
    """The recorder writes at most ROUND_EVENTS events a round: a job's end waits for the round
    that holds its last event, so a reader sees every event before the terminal one."""
    from jobworker.events.recorder import ROUND_EVENTS

    registry = Registry()
    count = ROUND_EVENTS + 5_000

    @registry.job(name="stream.flood")
    async def flood(ctx: JobContext[Any]) -> int:
        for n in range(count):
            await ctx.chunk(n)
        return count

    await assert_every_chunk_arrives(store, bus, registry, flood, count)


async def test_a_sync_handler_that_outruns_the_writer_waits_and_loses_nothing(
    store: Store, bus: str | None
) -> None:
    """A sync handler's thread blocks while its attempt has MAX_WAITING unwritten events: it
    cannot run ahead of the writer, and every event arrives in order."""
    from jobworker.events.recorder import MAX_WAITING

    registry = Registry()
    count = MAX_WAITING * 3

    @registry.job(name="stream.sync_flood")
    def sync_flood(ctx: JobContext[Any]) -> int:
        for n in range(count):
            ctx.chunk(n)
        return count

    await assert_every_chunk_arrives(store, bus, registry, sync_flood, count)


async def test_a_burst_reaches_a_live_reader_while_the_handler_still_emits(
    store: Store, bus: str | None
) -> None:
    """A handler that streams without pause is not held back until it ends (or a batch fills):
    it emits until the reader has its first chunk, then a tail, and the reader gets them all,
    in order, none lost."""
    registry = Registry()
    seen = asyncio.Event()
    tail = 1_000
    cap = 3_000_000  # far past any round: reaching it means the burst was held back

    @registry.job(name="stream.burst")
    async def burst(ctx: JobContext[Any]) -> int:
        n = 0
        while not seen.is_set() and n < cap:
            await ctx.chunk(n)
            n += 1
        before_seen = n
        for _ in range(tail):
            await ctx.chunk(n)
            n += 1
        return before_seen

    app = make_app(store, registry, bus, event_stream_maxlen=cap + tail)
    try:
        handle = await burst.adelay()
        chunks: list[int] = []

        async def follow() -> list[JobEvent]:
            events = []
            async for event in app.client.stream(handle.job_id):
                events.append(event)
                if event.kind is EventKind.CHUNK:
                    chunks.append(event.decoded(Chunk).data)
                    seen.set()
            return events

        async with running_worker(app):
            reader = asyncio.create_task(follow())
            before_seen = await handle.aresult(120)
            events = await asyncio.wait_for(reader, 60)
        assert before_seen < cap, "the reader saw nothing while the handler streamed"
        assert chunks == list(range(before_seen + tail))
        assert seqs(events) == list(range(1, len(events) + 1))
        assert is_terminal(events[-1])
    finally:
        await drop_redis_keys(app)
        await app.aclose()


async def test_events_of_a_failed_write_are_written_again_in_order(store: Store) -> None:
    """The database refuses the writer's first rounds: the events go back ahead of newer ones
    and are stored, in order and once, when it works again (a real database, made to fail)."""
    from jobworker.config import Settings
    from jobworker.events.bus import DatabaseBus
    from jobworker.events.recorder import Recorder
    from jobworker.storage import create_storage

    settings = Settings(database_url=store.url, database_schema=store.schema)
    storage = create_storage(store.url, settings)
    await storage.open()
    await storage.schema.migrate()
    refusals = 2
    real_complete_many = storage.jobs.complete_many

    async def flaky_complete_many(*args: Any, **kwargs: Any) -> Any:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise ConnectionError("the database went away")
        return await real_complete_many(*args, **kwargs)

    storage.jobs.complete_many = flaky_complete_many  # type: ignore[method-assign]
    recorder = Recorder(storage, settings, DatabaseBus(storage, settings), owner="w1")
    writer = asyncio.create_task(recorder.run())
    # The claim compares run_at with the database's clock, which this process reads over a
    # round trip: the wall clock can be a few milliseconds ahead of it on a loaded machine.
    now = storage.clock.now()
    job = NewJob(  # the events are fenced by the attempt that emits them: claim one
        id=uuid7(now),
        job_type="t.stream",
        queue="default",
        priority=0,
        args=b"{}",
        max_attempts=1,
        status=JobStatus.QUEUED,
        run_at=now,
        enqueued_at=now,
    )
    await storage.jobs.enqueue_many([job])
    [claimed] = await storage.jobs.claim("w1", [job.job_type], [job.queue], 1, 60.0)
    job_id = claimed.id
    try:
        attempt = recorder.attempt(job_id, claimed.attempt)
        for n in range(1, 301):
            payload = msgspec.Raw(msgspec.json.encode({"done": n}))
            waiting = attempt.emit(claimed.event_seq + n, EventKind.PROGRESS, time.time(), payload)
            if waiting is not None:
                await waiting
        await asyncio.wait_for(recorder.flush(), 30)
        assert refusals == 0
        stored = []
        while page := await storage.events.read_events(
            job_id, stored[-1].seq if stored else 0, 100
        ):
            stored += page
        progress = [e for e in stored if e.kind is EventKind.PROGRESS]
        assert seqs(progress) == list(range(2, 302))
        assert [e.decoded()["done"] for e in progress] == list(range(1, 301))
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await storage.close()


async def test_a_reader_behind_a_trimmed_stream_gets_every_kept_event(store: Store) -> None:
    """A reader that comes after Redis trimmed the stream: the kept events (progress, the
    lifecycle, the result) all come from the database, the chunks Redis still holds follow in
    order, and the stream ends with the job."""
    registry = Registry()

    @registry.job(name="stream.trimmed")
    async def trimmed(ctx: JobContext[Any]) -> int:
        for n in range(1, 2001):
            await ctx.chunk(n)
            if n % 100 == 0:
                await ctx.progress(n, 2000)
        return 2000

    app = make_app(store, registry, REDIS_URL, event_stream_maxlen=300)
    try:
        handle = await trimmed.adelay()
        async with running_worker(app):
            assert await handle.aresult(30) == 2000
        events = await asyncio.wait_for(collect(app, handle.job_id), 30)
        assert seqs(events) == sorted(set(seqs(events)))  # in order, none twice
        progress = [e.decoded(Progress).done for e in events if e.kind is EventKind.PROGRESS]
        assert progress == [float(n) for n in range(100, 2001, 100)]
        chunks = [e.decoded(Chunk).data for e in events if e.kind is EventKind.CHUNK]
        assert 300 <= len(chunks) < 2000 and chunks == list(range(chunks[0], 2001))
        assert statuses(events) == ["running", "succeeded"]
        assert [e.decoded()["value"] for e in events if e.kind is EventKind.RESULT] == [2000]
    finally:
        await drop_redis_keys(app)
        await app.aclose()
