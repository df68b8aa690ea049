"""The Redis Streams bus, against a real Redis (a key prefix per test, deleted afterwards)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import msgspec
import pytest
import redis.asyncio as aioredis

from jobworker.events import TRUNCATED_MARKER, EventKind, JobEvent, encode_payload
from jobworker.events.redis_bus import BusUnavailable, RedisStreamBus, _Followed, live_events

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


async def publish(bus: RedisStreamBus, events: list[JobEvent]) -> int:
    return await bus.publish(live_events(events))


async def test_events_round_trip_in_order_by_sequence(bus: RedisStreamBus) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await publish(bus, [event(a, 1, EventKind.LIFECYCLE, {"status": "running"}), event(b, 1)])
    await publish(bus, [event(a, n, value=f"token {n}") for n in range(2, 6)])
    got = await bus.read(a, 0)
    assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    assert got[0].kind is EventKind.LIFECYCLE and got[0].decoded() == {"status": "running"}
    assert [e.decoded() for e in got[1:]] == ["token 2", "token 3", "token 4", "token 5"]
    assert [e.seq for e in await bus.read(a, 3)] == [4, 5]
    assert await bus.last_seq(a) == 5 and await bus.last_seq(uuid.uuid4()) == 0


async def test_a_batch_that_does_not_end_above_the_stream_is_refused(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    await publish(bus, [event(job, 1), event(job, 2), event(job, 3)])
    # A worker that lost its lease writes numbers the stream already has: refused as a whole.
    assert await publish(bus, [event(job, 2), event(job, 3)]) == 2
    # One that overlaps and goes on is taken; readers skip the numbers they already have.
    assert await publish(bus, [event(job, 3, value="late"), event(job, 4)]) == 0
    got = await bus.read(job, 0)
    assert [e.seq for e in got] == [1, 2, 3, 3, 4]
    assert [e.seq for e in await bus.read(job, 3)] == [4]


async def test_many_events_of_many_jobs_in_one_call(bus: RedisStreamBus) -> None:
    bus.maxlen = 10_000  # nothing trimmed
    jobs = [uuid.uuid4() for _ in range(5)]
    await publish(bus, [event(job, n, value=n) for n in range(1, 2501) for job in jobs])
    for job in jobs:
        seen: list[int] = []
        while len(seen) < 2500:
            page = await bus.read(job, seen[-1] if seen else 0)
            assert page, f"stopped at {len(seen)}"
            seen += [e.seq for e in page]
        assert seen == list(range(1, 2501))
        assert [e.decoded() for e in page][-1] == 2500
    assert await bus.last_seqs(jobs) == dict.fromkeys(jobs, 2500)


async def test_a_blocking_reader_wakes_on_publish(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    reader = asyncio.create_task(bus.read(job, 0, block=5))
    await asyncio.sleep(0.1)
    await publish(bus, [event(job, 1, value="hello")])
    got = await asyncio.wait_for(reader, 2)
    assert [e.decoded() for e in got] == ["hello"]
    assert await bus.read(job, 1, block=0.05) == []


async def test_streams_are_trimmed_by_sequence_and_expire(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    for start in range(1, 3001, 100):  # 30 entries of 100 events; maxlen is 1,000 events
        await publish(bus, [event(job, n) for n in range(start, start + 100)])
    oldest = (await bus.read(job, 0))[0].seq
    assert 1000 < oldest <= 2001  # the newest 1,000 are all there; most older ones are gone
    client = aioredis.from_url(REDIS_URL)
    try:
        await bus.expire([job])
        assert 0 < await client.ttl(bus.key(job)) <= 60
    finally:
        await client.aclose()


async def test_an_unreachable_redis_raises_bus_unavailable() -> None:
    dead = RedisStreamBus("redis://127.0.0.1:1/0", prefix="jw_dead:")
    try:
        assert not await dead.ping()
        with pytest.raises(BusUnavailable):
            await publish(dead, [event(uuid.uuid4(), 1)])
    finally:
        await dead.close()


def test_oversized_payloads_are_replaced_by_a_marker() -> None:
    small = encode_payload({"rows": 3}, 100)
    assert msgspec.json.decode(small) == {"rows": 3}
    big = encode_payload("y" * 50_000, 1000)
    marker = msgspec.json.decode(big)
    assert marker[TRUNCATED_MARKER] is True and marker["size"] == 50_002
    assert marker["preview"].startswith('"yyy') and len(big) < 1000


async def test_the_blocking_reads_of_many_jobs_share_one_xread(bus: RedisStreamBus) -> None:
    jobs = [uuid.uuid4() for _ in range(20)]
    readers = [asyncio.create_task(bus.read(job, 0, block=5)) for job in jobs]
    await asyncio.sleep(0.3)  # every job has joined the shared read
    sent = bus._shared.sent
    await publish(bus, [event(job, 1, value=str(job)) for job in jobs])
    got = await asyncio.wait_for(asyncio.gather(*readers), 5)
    assert [[e.decoded() for e in events] for events in got] == [[str(job)] for job in jobs]
    assert bus._shared.sent - sent < len(jobs) // 2  # not one read per job


async def test_a_job_that_joins_a_blocked_shared_read_is_served_at_once(
    bus: RedisStreamBus,
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    waiting = asyncio.create_task(bus.read(first, 0, block=5))
    await asyncio.sleep(0.2)  # the shared read blocks on the first job alone
    joined = asyncio.create_task(bus.read(second, 0, block=5))
    await asyncio.sleep(0.1)
    await publish(bus, [event(second, 1, value="late")])
    got = await asyncio.wait_for(joined, 0.5)  # not after the first read's 1 s block
    assert [e.decoded() for e in got] == ["late"]
    await publish(bus, [event(first, 1, value="first")])
    assert [e.decoded() for e in await asyncio.wait_for(waiting, 2)] == ["first"]


async def test_every_reader_of_one_job_gets_every_event(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    readers = [asyncio.create_task(bus.read(job, 0, block=5)) for _ in range(3)]
    await asyncio.sleep(0.2)
    await publish(bus, [event(job, 1, value="a"), event(job, 2, value="b")])
    for got in await asyncio.wait_for(asyncio.gather(*readers), 2):
        assert [e.decoded() for e in got] == ["a", "b"]
    # One that asks from before what the shared read fetched reads on its own.
    bus._shared._followed[job].floor = 1
    assert [e.seq for e in await bus.read(job, 0, block=1)] == [1, 2]
    assert await bus.read(job, 2, block=0.05) == []


async def test_a_blocking_read_of_an_unreachable_redis_raises_bus_unavailable() -> None:
    dead = RedisStreamBus("redis://127.0.0.1:1/0", prefix="jw_dead:")
    try:
        with pytest.raises(BusUnavailable):
            await asyncio.wait_for(dead.read(uuid.uuid4(), 0, block=0.5), 5)
    finally:
        await dead.close()


async def test_the_shared_read_survives_losing_its_connection_once(bus: RedisStreamBus) -> None:
    job = uuid.uuid4()
    reader = asyncio.create_task(bus.read(job, 0, block=5))
    await asyncio.sleep(0.2)
    killer = aioredis.from_url(REDIS_URL)
    try:
        assert await killer.client_kill_filter(_id=bus._shared._connection_id) == 1
    finally:
        await killer.aclose()
    await asyncio.sleep(0.2)  # it has read again, on a new connection
    await publish(bus, [event(job, 1, value="after")])
    assert [e.decoded() for e in await asyncio.wait_for(reader, 2)] == ["after"]


async def wait_until(done: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_job_the_shared_read_follows_is_not_read_again(bus: RedisStreamBus) -> None:
    """A reader that looks without blocking (as it does once a second, before it looks in the
    database) gets what the shared read has fetched: the entries are not read and decoded a
    second time. When the shared read has nothing new, it asks Redis (which may hold what the
    shared read has yet to fetch)."""
    job = uuid.uuid4()
    reader = asyncio.create_task(bus.read(job, 0, block=5))
    await asyncio.sleep(0.2)  # the shared read follows the job
    await publish(bus, [event(job, 1, value="a")])
    assert [e.seq for e in await asyncio.wait_for(reader, 2)] == [1]
    await publish(bus, [event(job, 2, value="b"), event(job, 3, value="c")])
    await wait_until(lambda: bus._shared._followed[job].cursor == 3, "the shared read")
    ranges = 0
    xrange = bus._client.xrange

    async def counting_xrange(*args: object, **kwargs: object) -> object:
        nonlocal ranges
        ranges += 1
        return await xrange(*args, **kwargs)

    bus._client.xrange = counting_xrange
    assert [e.decoded() for e in await bus.read(job, 1)] == ["b", "c"]
    assert ranges == 0
    assert await bus.read(job, 3) == []
    assert ranges == 1


async def test_events_read_from_redis_are_left_to_reference_counting(bus: RedisStreamBus) -> None:
    """A reader of a streaming job makes events by the hundred thousand: tracked by the garbage
    collector, they would set off collections that cost more than the events themselves."""
    job = uuid.uuid4()
    await publish(bus, [event(job, n) for n in range(1, 4)])
    got = await bus.read(job, 0)
    assert len(got) == 3 and not any(gc.is_tracked(e) for e in got)
    assert not gc.is_tracked(event(job, 1))


def test_what_the_shared_read_holds_after_a_sequence() -> None:
    job = uuid.uuid4()
    followed = _Followed(0)
    followed.add([event(job, n) for n in (1, 2, 3)], 3)
    followed.add([], 3)
    followed.add([event(job, n) for n in (4, 5)], 5)
    followed.add([event(job, 6)], 6)
    for seq in range(8):
        assert [e.seq for e in followed.after(seq)] == list(range(seq + 1, 7))
