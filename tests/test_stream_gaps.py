"""A live reader (events/stream.py) across gaps in the stored sequence, against real databases
and a real Redis (a key prefix per test, deleted afterwards). The events are stored and
published here, step by step, as a worker's rounds would be: stored first, published after."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from jobworker import JobContext, Registry, Settings
from jobworker.events import stream
from jobworker.events.bus import bus_for
from jobworker.events.database_bus import stored_event
from jobworker.events.model import LiveEvent
from jobworker.events.stream import StreamService
from jobworker.models import EventKind, JobEvent
from jobworker.storage import Storage, create_storage

from .conftest import REDIS_URL, Store, cleanup_redis


@pytest.fixture
async def storage(store: Store) -> AsyncIterator[Storage]:
    settings = Settings(database_url=store.url, database_schema=store.schema)
    backend = create_storage(store.url, settings)
    await backend.open()
    await backend.schema.migrate()
    try:
        yield backend
    finally:
        await backend.close()


async def a_job(store: Store) -> uuid.UUID:
    registry = Registry()

    @registry.job(name="gaps.job")
    def job(ctx: JobContext[Any]) -> None:
        return None

    app = store.app(registry=registry)
    try:
        return (await job.adelay()).job_id
    finally:
        await app.aclose()


def live(seq: int, kind: EventKind, value: Any) -> LiveEvent:
    return (seq, kind, time.time(), msgspec.Raw(msgspec.json.encode(value)))


async def until(done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


async def test_a_gap_redis_closed_does_not_shorten_the_wait_for_a_later_one(
    store: Store, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader sees a gap in the stored events (chunk 2 is only in Redis, not yet there);
    Redis then delivers it. Much later a new gap opens (chunks 4 and 5 still on their way
    through Redis): the reader waits for them as for any fresh gap, rather than counting its
    grace from when the first one was seen and delivering the stored 6 across them."""
    monkeypatch.setattr(stream, "GAP_GRACE", 0.5)
    settings = Settings(
        database_url=store.url,
        database_schema=store.schema,
        redis_url=REDIS_URL,
        redis_prefix=f"jw_test_{uuid.uuid4().hex[:10]}:",
        redis_retry_interval=60.0,
    )
    bus = bus_for(settings, storage)
    job = await a_job(store)
    events = {
        1: live(1, EventKind.PROGRESS, {"done": 1}),
        2: live(2, EventKind.CHUNK, "two"),
        3: live(3, EventKind.PROGRESS, {"done": 3}),
        4: live(4, EventKind.CHUNK, "four"),
        5: live(5, EventKind.CHUNK, "five"),
        6: live(6, EventKind.PROGRESS, {"done": 6}),
        7: live(7, EventKind.LIFECYCLE, {"status": "succeeded", "attempt": 1}),
    }

    async def store_kept(*seqs: int) -> None:
        await storage.live.store_live([stored_event(job, events[seq]) for seq in seqs], [])

    async def publish(*seqs: int) -> None:
        await bus.publish({job: [events[seq] for seq in seqs]}, emitted_by={job: ("w1", 1)})

    looked_at: list[int] = []  # every sequence a look in the database found
    read_stored = bus.read_stored

    async def read_stored_watched(job_id: uuid.UUID, after_seq: int, limit: int) -> list[JobEvent]:
        found = await read_stored(job_id, after_seq, limit)
        looked_at.extend(event.seq for event in found)
        return found

    monkeypatch.setattr(bus, "read_stored", read_stored_watched)
    delivered: list[int] = []

    async def follow() -> None:
        async for batch in StreamService(storage, settings, bus).batches(job):
            delivered.extend(event.seq for event in batch)

    await store_kept(1, 3)  # a round stored, not yet published
    reader = asyncio.create_task(follow())
    try:
        await until(lambda: delivered == [1], "the reader stops before the gap at 2")
        await publish(1, 2, 3)
        await until(lambda: delivered == [1, 2, 3], "Redis fills the gap")
        await asyncio.sleep(stream.GAP_GRACE)  # the first gap was seen longer ago than that
        await store_kept(6)
        await until(lambda: 6 in looked_at, "the reader finds 6 stored, after a new gap")
        await publish(4, 5, 6)
        await store_kept(7)
        await publish(7)
        await asyncio.wait_for(reader, 10)
        assert delivered == [1, 2, 3, 4, 5, 6, 7]
    finally:
        reader.cancel()
        await bus.close()
        cleanup_redis(settings.redis_prefix)
