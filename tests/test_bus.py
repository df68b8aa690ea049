"""The live bus seam (events/bus.py): the database bus and the Redis bus behind one protocol,
against real databases and a real Redis (a key prefix per test, deleted afterwards)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from jobworker import JobContext, Registry, Settings
from jobworker.events.bus import (
    BusUnavailable,
    DatabaseBus,
    EventBus,
    RedisBus,
    bus_for,
    floors,
    live_floors,
)
from jobworker.events.model import LiveEvent
from jobworker.models import EventKind
from jobworker.storage import Storage, create_storage

from .conftest import REDIS_URL, Store, cleanup_redis

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once


def live(seq: int, kind: EventKind = EventKind.CHUNK, value: Any = "x") -> LiveEvent:
    return (seq, kind, time.time(), msgspec.Raw(msgspec.json.encode(value)))


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

    @registry.job(name="bus.job")
    def job(ctx: JobContext[Any]) -> None:
        return None

    app = store.app(registry=registry)
    try:
        return (await job.adelay()).job_id
    finally:
        await app.aclose()


def settings_of(store: Store, redis_url: str | None = None) -> Settings:
    return Settings(
        database_url=store.url,
        database_schema=store.schema,
        redis_url=redis_url,
        redis_prefix=f"jw_test_{uuid.uuid4().hex[:10]}:",
        redis_retry_interval=60.0,
    )


@pytest.mark.parametrize("redis_url", [None, REDIS_URL], ids=["database", "redis"])
async def test_a_round_reaches_a_reader_of_either_bus(
    store: Store, storage: Storage, redis_url: str | None
) -> None:
    settings = settings_of(store, redis_url)
    bus: EventBus = bus_for(settings, storage)
    job = await a_job(store)
    try:
        assert isinstance(bus, RedisBus if redis_url else DatabaseBus)
        assert bus.publishes_stored is bool(redis_url)
        assert bus.in_database is (redis_url is None)
        round_ = [live(1, EventKind.PROGRESS, {"done": 1}), live(2), live(3)]
        assert await bus.publish({job: round_}, emitted_by={job: ("w1", 0)}) == 0
        got = await bus.read(job, 0)
        if redis_url:  # Redis carries every kind; the database holds none of them yet
            assert [(e.seq, e.kind) for e in got] == [
                (1, EventKind.PROGRESS),
                (2, "chunk"),
                (3, "chunk"),
            ]
            assert await bus.read_stored(job, 0, 10) == []
            assert await bus.last_seqs([job]) == {job: 3}
        else:  # the database bus stores what the database does not keep: the chunks
            assert (
                [e.seq for e in got] == [2, 3] == [e.seq for e in await bus.read_stored(job, 0, 10)]
            )
            assert await bus.last_seqs([job]) == {}
        assert [e.decoded() for e in got][-1] == "x"
        assert [e.seq for e in await bus.read(job, 2)] == [3]
    finally:
        await bus.close()
        cleanup_redis(settings.redis_prefix)


async def test_a_blocked_reader_of_the_database_bus_wakes_when_events_are_stored(
    store: Store, storage: Storage
) -> None:
    """PostgreSQL notifies, so the reader wakes at once; SQLite has no notifications and the
    reader finds the events when its wait ends."""
    bus = DatabaseBus(storage, settings_of(store))
    job = await a_job(store)
    try:
        began = time.monotonic()
        reader = asyncio.create_task(bus.read(job, 0, block=1.0))
        await asyncio.sleep(0.1)
        await bus.publish({job: [live(1, value="hello")]}, emitted_by={job: ("w1", 0)})
        got = await asyncio.wait_for(reader, 5)
        assert [e.decoded() for e in got] == ["hello"]
        if store.backend == "postgres":
            assert time.monotonic() - began < 0.9, "woken by the notification"
        assert await bus.read(job, 1, block=0.05) == []
    finally:
        await bus.close()


async def test_the_redis_bus_stands_aside_while_redis_is_out_of_reach(
    store: Store, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed publish stores what the database lacks as transient rows (readers find it
    there) and the bus is the database for `redis_retry_interval`; a failed read says so."""
    caplog.set_level(logging.INFO, logger="jobworker")
    settings = settings_of(store, DEAD_REDIS)
    bus = bus_for(settings, storage)
    job = await a_job(store)
    try:
        assert isinstance(bus, RedisBus) and not bus.in_database
        round_ = [live(1, EventKind.LIFECYCLE, {"status": "running"}), live(2), live(3)]
        assert await bus.publish({job: round_}, emitted_by={job: ("w1", 0)}) == 0
        assert bus.in_database
        assert "publishing events to Redis failed" in caplog.text
        # The lifecycle event is the storage's own: only the chunks went in as transient rows.
        assert [e.seq for e in await bus.read_stored(job, 0, 10)] == [2, 3]
        assert [e.seq for e in await bus.read(job, 0)] == [2, 3], "read from the database"
        assert await bus.publish({job: [live(4)]}, emitted_by={job: ("w1", 0)}) == 0
        assert [e.seq for e in await bus.read(job, 3)] == [4]
        assert await floors(bus, [job]) == {}
        assert "could not read event sequences from Redis" in caplog.text

        reading = bus_for(settings, storage)
        assert isinstance(reading, RedisBus)
        with pytest.raises(BusUnavailable):
            await reading.read(job, 0)
        assert reading.in_database
        assert "reading job events from Redis failed" in caplog.text
        await reading.close()
    finally:
        await bus.close()


async def test_floors_are_the_last_sequences_redis_holds(store: Store, storage: Storage) -> None:
    settings = settings_of(store, REDIS_URL)
    bus = bus_for(settings, storage)
    job, other = uuid.uuid4(), uuid.uuid4()
    try:
        await bus.publish({job: [live(n) for n in range(1, 8)]}, emitted_by={job: ("w1", 0)})
        assert await floors(bus, [job, other]) == {job: 7, other: 0}
        assert await floors(bus, []) == {}
        assert await live_floors(settings, [job]) == {job: 7}
        assert await live_floors(settings_of(store), [job]) == {}
        assert await floors(DatabaseBus(storage, settings), [job]) == {}
    finally:
        await bus.close()
        cleanup_redis(settings.redis_prefix)


async def test_the_janitor_purges_transient_rows_through_the_database_bus(
    store: Store, storage: Storage
) -> None:
    from datetime import UTC, datetime, timedelta

    bus = DatabaseBus(storage, settings_of(store))
    job = await a_job(store)
    try:
        await bus.publish(
            {job: [live(1), live(2, EventKind.PROGRESS, {"done": 1}), live(3)]},
            emitted_by={job: ("w1", 0)},
        )
        assert [e.seq for e in await bus.read_stored(job, 0, 10)] == [1, 3]
        assert await bus.purge(datetime.now(UTC) - timedelta(minutes=1), limit=10) == 0
        assert await bus.purge(datetime.now(UTC) + timedelta(minutes=1), limit=1) == 1
        assert await bus.purge(datetime.now(UTC) + timedelta(minutes=1), limit=10) == 1
        assert await bus.read_stored(job, 0, 10) == []
    finally:
        await bus.close()
