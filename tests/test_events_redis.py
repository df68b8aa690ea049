"""The Redis Streams bus, against a real Redis (a key prefix per test, deleted afterwards)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
import redis.asyncio as aioredis

from jobworker.events import TRUNCATED_MARKER, EventKind, JobEvent, encode_payload
from jobworker.events.redis_bus import BusUnavailable, RedisStreamBus

REDIS_URL = os.environ.get("JOBWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def bus() -> AsyncIterator[RedisStreamBus]:
    prefix = f"jw_test_{uuid.uuid4().hex[:10]}:"
    instance = RedisStreamBus(REDIS_URL, prefix=prefix, maxlen=1000, ttl=60)
    yield instance
    cleanup = aioredis.from_url(REDIS_URL)
    async for key in cleanup.scan_iter(match=f"{prefix}*"):
        await cleanup.delete(key)
    await cleanup.aclose()
    await instance.close()


def event(
    job_id: uuid.UUID, seq: int, kind: EventKind = EventKind.CHUNK, value: object = "x"
) -> JobEvent:
    return JobEvent(
        job_id=job_id,
        seq=seq,
        kind=kind,
        occurred_at=datetime.now(UTC),
        payload=msgspec.Raw(encode_payload(value, 16384)),
    )


async def test_events_round_trip_in_order_by_sequence(bus: RedisStreamBus) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await bus.publish([event(a, 1, EventKind.LIFECYCLE, {"status": "running"}), event(b, 1)])
    await bus.publish([event(a, n, value=f"token {n}") for n in range(2, 6)])
    got = await bus.read(a, 0)
    assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    assert got[0].kind is EventKind.LIFECYCLE and got[0].decoded() == {"status": "running"}
    assert [e.decoded() for e in got[1:]] == ["token 2", "token 3", "token 4", "token 5"]
    assert [e.seq for e in await bus.read(a, 3)] == [4, 5]
    assert await bus.last_seq(a) == 5 and await bus.last_seq(uuid.uuid4()) == 0


async def test_a_reused_sequence_is_refused(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    await bus.publish([event(job, 1), event(job, 2)])
    assert await bus.publish([event(job, 2), event(job, 3)]) == 1
    assert [e.seq for e in await bus.read(job, 0)] == [1, 2, 3]


async def test_a_blocking_reader_wakes_on_publish(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    reader = asyncio.create_task(bus.read(job, 0, block=5))
    await asyncio.sleep(0.1)
    await bus.publish([event(job, 1, value="hello")])
    got = await asyncio.wait_for(reader, 2)
    assert [e.decoded() for e in got] == ["hello"]
    assert await bus.read(job, 1, block=0.05) == []


async def test_streams_are_trimmed_and_expire(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    await bus.publish([event(job, n) for n in range(1, 3001)])
    client = aioredis.from_url(REDIS_URL)
    try:
        assert await client.xlen(bus.key(job)) < 3000  # approximately trimmed to ~1000
        await bus.expire([job])
        assert 0 < await client.ttl(bus.key(job)) <= 60
    finally:
        await client.aclose()


async def test_an_unreachable_redis_raises_bus_unavailable() -> None:
    dead = RedisStreamBus("redis://127.0.0.1:1/0", prefix="jw_dead:")
    try:
        assert not await dead.ping()
        with pytest.raises(BusUnavailable):
            await dead.publish([event(uuid.uuid4(), 1)])
    finally:
        await dead.close()


def test_oversized_payloads_are_replaced_by_a_marker() -> None:
    small = encode_payload({"rows": 3}, 100)
    assert msgspec.json.decode(small) == {"rows": 3}
    big = encode_payload("y" * 50_000, 1000)
    marker = msgspec.json.decode(big)
    assert marker[TRUNCATED_MARKER] is True and marker["size"] == 50_002
    assert marker["preview"].startswith('"yyy') and len(big) < 1000
