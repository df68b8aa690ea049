"""The stream hub with a real worker, on both databases, with the Redis bus and the database bus:
one reader per job for any number of subscribers, a slow subscriber dropped without holding up
the others, a late subscriber caught up without a gap or a duplicate."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworker import App
from jobworker.models import JobEvent
from jobworker.testing import adrain
from jobworker.web.fanout import StreamHub, Subscription, SubscriptionEnded

from ..conftest import REDIS_URL, Store, cleanup_redis
from .support import GATES, make_app, running_worker

KEPT = {"lifecycle", "progress", "result"}


@pytest.fixture(params=["database", "redis"])
def bus(request: pytest.FixtureRequest) -> Iterator[str | None]:
    return None if request.param == "database" else REDIS_URL  # type: ignore[return-value]


async def collect(subscription: Subscription) -> list[tuple[int, bytes]]:
    """Every (seq, frame) the subscription hands out, up to the terminal event."""
    got: list[tuple[int, bytes]] = []
    while not subscription.ended:
        frames = await subscription.next(idle=0.5)
        got.extend(frames.items)
    return got


async def full_stream(app: App, job_id: uuid.UUID) -> list[JobEvent]:
    return [event async for event in app.client.stream(job_id)]


def frame_of(event: JobEvent) -> tuple[int, str]:
    return event.seq, event.kind.value


def parsed(items: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
    return [
        (seq, frame.split(b"\n", 1)[0].removeprefix(b"event: ").decode()) for seq, frame in items
    ]


async def finish(app: App, hub: StreamHub) -> None:
    await hub.aclose()
    await app.aclose()
    if app.settings.redis_url:
        cleanup_redis(app.settings.redis_prefix)


async def test_many_subscribers_share_one_reader(store: Store, bus: str | None) -> None:
    app = make_app(store, bus)
    hub = StreamHub(app.client, linger=0)
    name = f"share-{uuid.uuid4()}"
    gate = GATES[name] = asyncio.Event()
    try:
        handle = await app.client.aenqueue(
            "web.every_kind", {"owner": "ada", "rows": 6, "gate": name}
        )
        async with (
            running_worker(app),
            hub.subscribe(handle.job_id, 0) as first,
            hub.subscribe(handle.job_id, 0) as second,
            hub.subscribe(handle.job_id, 0) as third,
            hub.subscribe(handle.job_id, 0) as fourth,
        ):
            readers = [asyncio.create_task(collect(s)) for s in (first, second, third, fourth)]
            await asyncio.sleep(0.5)
            assert hub.active_readers == 1
            gate.set()
            results = await asyncio.wait_for(asyncio.gather(*readers), 30)
        expected = [frame_of(event) for event in await full_stream(app, handle.job_id)]
        for result in results:
            assert parsed(result) == expected
        assert hub.readers_started == 1
        assert {kind for _, kind in expected} == KEPT | {"log", "chunk", "metric"}
    finally:
        GATES.pop(name, None)
        await finish(app, hub)


async def test_a_slow_subscriber_is_dropped_and_the_fast_one_gets_everything(
    store: Store, bus: str | None
) -> None:
    app = make_app(store, bus)
    hub = StreamHub(app.client, queue_size=20, linger=0)
    try:
        handle = await app.client.aenqueue(
            "web.every_kind", {"owner": "ada", "rows": 40, "pause": 0.02}
        )
        async with (
            hub.subscribe(handle.job_id, 0) as slow,
            hub.subscribe(handle.job_id, 0) as fast,
        ):
            async with running_worker(app):
                got = await asyncio.wait_for(collect(fast), 30)
            # The slow one never read: it was dropped, its queue emptied.
            with pytest.raises(SubscriptionEnded, match="fell behind"):
                await slow.next(idle=0.1)
            assert slow.last_seq == 0
        expected = [frame_of(event) for event in await full_stream(app, handle.job_id)]
        assert parsed(got) == expected and len(expected) > 100
        assert hub.dropped == 1 and hub.readers_started == 1
    finally:
        await finish(app, hub)


async def test_a_late_subscriber_gets_the_kept_events_it_lacks_then_the_window_then_live(
    store: Store, bus: str | None
) -> None:
    app = make_app(store, bus)
    hub = StreamHub(app.client, window=3, linger=0)
    name = f"late-{uuid.uuid4()}"
    gate = GATES[name] = asyncio.Event()
    try:
        handle = await app.client.aenqueue(
            "web.every_kind", {"owner": "ada", "rows": 8, "gate": name}
        )
        async with running_worker(app), hub.subscribe(handle.job_id, 0) as early:
            before: list[tuple[int, bytes]] = []
            # Half-way, at the gate: the progress event of row 4 is the last before it.
            while not any(b'"label":"row 4"' in frame for _, frame in before):
                before.extend((await early.next(idle=0.5)).items)
            await asyncio.sleep(0.5)
            before.extend((await early.next(idle=0.3)).items)
            held = before[-1][0]
            async with hub.subscribe(handle.job_id, 1) as late:
                gate.set()
                rest, after = await asyncio.wait_for(
                    asyncio.gather(collect(early), collect(late)), 30
                )
        full = [frame_of(event) for event in await full_stream(app, handle.job_id)]
        assert parsed(before + rest) == full
        late_seqs = [seq for seq, _ in after]
        assert late_seqs == sorted(set(late_seqs)) and late_seqs[0] > 1  # no duplicate
        # Every kept event after 1, and every event after the gate.
        wanted = [item for item in full if item[0] > 1 and (item[1] in KEPT or item[0] > held)]
        assert [item for item in parsed(after) if item in wanted] == wanted
        assert set(parsed(after)) <= set(full)
        assert hub.readers_started == 1
    finally:
        GATES.pop(name, None)
        await finish(app, hub)


async def test_a_feed_stops_after_its_last_subscriber_lingers_out(store: Store) -> None:
    app = make_app(store)
    hub = StreamHub(app.client, linger=0.2)
    try:
        handle = await app.client.aenqueue("web.every_kind", {"owner": "ada", "gate": "never"})
        GATES.setdefault("never", asyncio.Event())
        async with hub.subscribe(handle.job_id, 0) as subscription:
            await subscription.next(idle=0.1)
        assert hub.active_readers == 1  # lingering
        async with hub.subscribe(handle.job_id, 0):
            await asyncio.sleep(0.4)
            assert hub.active_readers == 1 and hub.readers_started == 1  # the same reader
        await asyncio.sleep(0.5)
        assert hub.active_readers == 0
    finally:
        await finish(app, hub)


async def test_closing_the_hub_ends_its_subscribers(store: Store) -> None:
    app = make_app(store)
    hub = StreamHub(app.client)
    try:
        handle = await app.client.aenqueue("web.every_kind", {"owner": "ada"})
        async with hub.subscribe(handle.job_id, 0) as subscription:
            await hub.aclose()
            with pytest.raises(SubscriptionEnded, match="stopping"):
                await subscription.next(idle=1)
        assert hub.active_readers == 0
    finally:
        await finish(app, hub)


def test_a_hub_serves_another_loop_once_nothing_runs_on_the_last(tmp_path: Path) -> None:
    """As under a test client that runs each request in a loop of its own."""
    app = make_app(Store("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}"))
    hub = StreamHub(app.client, linger=0)

    async def follow_a_finished_job() -> int:
        handle = await app.client.aenqueue("web.every_kind", {"owner": "ada"})
        await adrain(app)
        async with hub.subscribe(handle.job_id, 0) as subscription:
            while not subscription.ended:
                await subscription.next(idle=1)
        await app.aclose()
        return subscription.last_seq

    assert asyncio.run(follow_a_finished_job()) > 0
    assert asyncio.run(follow_a_finished_job()) > 0
    assert hub.readers_started == 2


async def test_a_hub_refuses_a_second_loop_while_its_feeds_run(store: Store) -> None:
    app = make_app(store)
    hub = StreamHub(app.client)
    try:
        handle = await app.client.aenqueue("web.every_kind", {"owner": "ada"})
        async with hub.subscribe(handle.job_id, 0):

            async def elsewhere() -> None:
                async with hub.subscribe(handle.job_id, 0):
                    pass

            with pytest.raises(RuntimeError, match="one event loop"):
                await asyncio.to_thread(asyncio.run, elsewhere())
    finally:
        await finish(app, hub)


async def test_an_id_beyond_the_jobs_events_does_not_hide_them_from_the_others(
    store: Store,
) -> None:
    app = make_app(store)
    hub = StreamHub(app.client, linger=0)
    name = f"beyond-{uuid.uuid4()}"
    gate = GATES[name] = asyncio.Event()
    try:
        handle = await app.client.aenqueue(
            "web.every_kind", {"owner": "ada", "rows": 2, "gate": name}
        )
        async with (
            running_worker(app),
            hub.subscribe(handle.job_id, 10_000) as mistaken,
            hub.subscribe(handle.job_id, 0) as right,
        ):
            gate.set()
            got = await asyncio.wait_for(collect(right), 30)
            with pytest.raises(SubscriptionEnded):
                await mistaken.next(idle=1)  # nothing after 10000: it ends with the reader
        expected = [frame_of(event) for event in await full_stream(app, handle.job_id)]
        assert parsed(got) == expected
    finally:
        GATES.pop(name, None)
        await finish(app, hub)


def test_the_shared_hub_is_one_per_client_and_goes_with_it(tmp_path: Path) -> None:
    import gc
    import weakref

    app = make_app(Store("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}"))
    hub = StreamHub.for_client(app.client)
    assert StreamHub.for_client(app.client) is hub
    other = make_app(Store("sqlite", f"sqlite:///{tmp_path / 'other.db'}"))
    assert StreamHub.for_client(other.client) is not hub
    gone = weakref.ref(hub)
    del app, hub
    gc.collect()
    assert gone() is None


async def test_subscribers_at_the_same_position_write_the_same_bytes(
    store: Store, bus: str | None
) -> None:
    app = make_app(store, bus)
    hub = StreamHub(app.client, linger=0)
    try:
        handle = await app.client.aenqueue("web.every_kind", {"owner": "ada", "rows": 6})
        async with (
            hub.subscribe(handle.job_id, 0) as first,
            hub.subscribe(handle.job_id, 0) as second,
        ):
            async with running_worker(app):
                for _ in range(200):  # every batch queued for both, none taken yet
                    if hub.active_readers == 0:
                        break
                    await asyncio.sleep(0.05)
            one = await first.next(idle=1)
            other = await second.next(idle=1)
        # One join of the queued batches, written by both: the same bytes, not copies.
        assert one.data is other.data and one.terminal and other.terminal
        full = await full_stream(app, handle.job_id)
        assert parsed(list(one.items)) == [frame_of(event) for event in full]
        assert one.data == b"".join(frame for _, frame in one.items)
    finally:
        await finish(app, hub)


async def test_one_keep_alive_timer_serves_every_subscriber(store: Store) -> None:
    app = make_app(store)
    hub = StreamHub(app.client, linger=0)
    name = f"quiet-{uuid.uuid4()}"
    GATES[name] = asyncio.Event()
    try:
        handle = await app.client.aenqueue("web.every_kind", {"owner": "ada", "gate": name})
        async with (
            running_worker(app),
            hub.subscribe(handle.job_id, 0, keepalive=0.1) as first,
            hub.subscribe(handle.job_id, 0, keepalive=0.1) as second,
        ):
            assert len(hub._keepalives) == 1
            for subscription in (first, second):
                # The events before the gate, then nothing: a keep-alive is due, not a timeout.
                while (await asyncio.wait_for(subscription.next(), 5)).items:
                    pass
                assert not subscription.ended
            GATES[name].set()  # the worker stops once the job has ended
        assert hub._keepalives == {}
        with pytest.raises(ValueError, match="keepalive"):
            async with hub.subscribe(handle.job_id, 0, keepalive=0):
                pass
    finally:
        GATES.pop(name).set()
        await finish(app, hub)


async def test_a_subscriber_that_leaves_ends_its_wait_at_once(store: Store) -> None:
    app = make_app(store)
    hub = StreamHub(app.client, linger=0)
    try:
        handle = await app.client.aenqueue("web.every_kind", {"owner": "ada"})
        async with hub.subscribe(handle.job_id, 0) as subscription:
            waiting = asyncio.create_task(subscription.next())  # no worker: nothing comes
            await asyncio.sleep(0.2)
            subscription.leave()
            with pytest.raises(SubscriptionEnded, match="gone"):
                await asyncio.wait_for(waiting, 1)
        await asyncio.sleep(0.05)  # the feed stops `linger` (0) seconds after it
        assert hub.active_readers == 0
    finally:
        await finish(app, hub)
