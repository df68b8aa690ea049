"""Job events in storage: lifecycle events numbered with every status change, the attempt's own
events stored before its end, the events the live bus stores, and sequence floors after a lost
lease. The storage's own events read the same on every backend (`storage.event_log`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from jobworker import Settings
from jobworker.clock import FrozenClock
from jobworker.events.model import Lifecycle
from jobworker.models import (
    Cancelled,
    EventKind,
    Failed,
    JobEvent,
    JobStatus,
    Released,
    Succeeded,
)
from jobworker.storage import Storage, create_storage
from jobworker.storage.event_log import lifecycle_event, result_event

from .conftest import NewJobFactory
from .test_storage import claim, completion


def event(job_id, seq: int, kind: EventKind, clock: FrozenClock, payload: object) -> JobEvent:
    return JobEvent(
        job_id=job_id,
        seq=seq,
        kind=kind,
        occurred_at=clock.now(),
        payload=msgspec.Raw(msgspec.json.encode(payload)),
    )


def shape(e: JobEvent) -> tuple[object, ...]:
    """An event as values (stored JSON may be re-formatted: PostgreSQL's jsonb is)."""
    return (e.job_id, e.seq, e.kind, e.occurred_at, e.decoded())


async def lifecycle(storage: Storage, job_id) -> list[tuple[int, JobStatus, int]]:
    events = await storage.events.read_events(job_id, 0, 1000)
    return [
        (e.seq, (life := e.decoded(Lifecycle)).status, life.attempt)
        for e in events
        if e.kind is EventKind.LIFECYCLE
    ]


async def test_claim_and_completion_number_lifecycle_events_after_the_attempts_own(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    job = new_job()
    await storage.jobs.enqueue_many([job])
    [claimed] = await claim(storage)
    assert claimed.event_seq == 1
    own = [
        event(job.id, 2, EventKind.PROGRESS, clock, {"done": 1, "total": 2}),
        event(job.id, 3, EventKind.CHUNK, clock, {"text": "hi"}),  # not kept: it expires
    ]
    clock.advance(1)
    applied = await storage.jobs.complete_many(
        [completion(claimed, Succeeded(result=b"7"), clock, event_seq=3)], own
    )
    assert applied.applied == 1
    # A success's end takes two numbers: its result's, then its own.
    result, ended = applied.events
    assert result == result_event(job.id, 4, clock.now(), b"7")
    assert (ended.seq, ended.decoded(Lifecycle).status) == (5, JobStatus.SUCCEEDED)
    kept = await storage.events.read_events(job.id)
    assert [(e.seq, e.kind) for e in kept] == [
        (1, EventKind.LIFECYCLE),
        (2, EventKind.PROGRESS),
        (4, EventKind.RESULT),
        (5, EventKind.LIFECYCLE),
    ]
    assert kept[0].decoded(Lifecycle) == Lifecycle(status=JobStatus.RUNNING, attempt=1)
    assert kept[3].decoded(Lifecycle) == Lifecycle(status=JobStatus.SUCCEEDED, attempt=1)
    assert kept[1].decoded() == {"done": 1, "total": 2}
    assert kept[2].decoded() == {"value": 7}
    everything = await storage.live.read_live(job.id, 0, 100)
    assert [e.seq for e in everything] == [1, 2, 3, 4, 5]
    # Paging: after a sequence, with a limit.
    assert [e.seq for e in await storage.events.read_events(job.id, 1, 2)] == [2, 4]


async def test_a_succeeded_end_takes_two_numbers_the_result_first(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """A success's end is numbered above every number the attempt used, plus one: its `result`
    event takes end_seq - 1 (read from the job's result, never stored as a row) and its
    lifecycle event end_seq, both at the attempt's end time."""
    a, b = new_job(), new_job()
    await storage.jobs.enqueue_many([a, b])
    first, second = await claim(storage)
    clock.advance(3)
    # One attempt used numbers up to 6 (on the live bus); the other reports none of its own.
    recorded = await storage.jobs.complete_many(
        [
            completion(first, Succeeded(result=b'{"n":1}'), clock, event_seq=6),
            completion(second, Succeeded(result=b"[2]"), clock),
        ]
    )
    assert recorded.applied == 2
    by_job = {(e.job_id, e.seq): e for e in recorded.events}
    assert sorted((e.job_id == a.id, e.seq, e.kind) for e in recorded.events) == [
        (False, 2, EventKind.RESULT),
        (False, 3, EventKind.LIFECYCLE),
        (True, 7, EventKind.RESULT),
        (True, 8, EventKind.LIFECYCLE),
    ]
    for job, result_seq, value in ((a, 7, {"n": 1}), (b, 2, [2])):
        history = await storage.events.read_events(job.id)
        result, ended = history[-2:]
        assert (result.seq, result.kind, result.decoded()) == (
            result_seq,
            EventKind.RESULT,
            {"value": value},
        )
        assert (ended.seq, ended.decoded(Lifecycle).status) == (result_seq + 1, JobStatus.SUCCEEDED)
        assert result.occurred_at == ended.occurred_at == clock.now()
        told = [by_job[(job.id, result_seq)], by_job[(job.id, result_seq + 1)]]
        assert [shape(e) for e in told] == [shape(result), shape(ended)]
        assert [shape(e) for e in await storage.live.read_live(job.id, 0, 100)] == [
            shape(e) for e in history
        ]
    # The next number the job gives is above its end.
    assert [e.seq for e in await storage.events.read_events(a.id, 7)] == [8]
    assert await storage.events.read_events(a.id, 8) == []


async def test_sequences_continue_across_a_retry(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    job = new_job()
    await storage.jobs.enqueue_many([job])
    [first] = await claim(storage)
    retry_at = clock.now() + timedelta(seconds=5)
    await storage.jobs.complete_many(
        [completion(first, Failed(error="boom", traceback=""), clock, retry_at=retry_at)]
    )
    clock.advance(10)
    [second] = await claim(storage)
    assert second.event_seq == 3
    await storage.jobs.complete_many(
        [completion(second, Succeeded(result=b"1"), clock, event_seq=second.event_seq)]
    )
    assert await lifecycle(storage, job.id) == [
        (1, JobStatus.RUNNING, 1),
        (2, JobStatus.FAILED, 1),
        (3, JobStatus.RUNNING, 2),
        (5, JobStatus.SUCCEEDED, 2),
    ]
    failed = (await storage.events.read_events(job.id, 1, 1))[0].decoded(Lifecycle)
    assert failed.error == "boom" and failed.retry_at == retry_at


async def test_a_lost_lease_is_numbered_above_the_live_bus_floor(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    job = new_job()
    await storage.jobs.enqueue_many([job])
    [_claimed] = await claim(storage, lease=5.0)
    clock.advance(10)
    assert await storage.maintenance.leased_job_ids(None) == [job.id]
    assert await storage.maintenance.leased_job_ids("w1") == [job.id]
    assert await storage.maintenance.rescue_expired(seq_floors={job.id: 40}) == 1
    [again] = await claim(storage)
    assert again.event_seq == 42
    assert await lifecycle(storage, job.id) == [
        (1, JobStatus.RUNNING, 1),
        (41, JobStatus.QUEUED, 1),
        (42, JobStatus.RUNNING, 2),
    ]


async def test_stored_transient_events_count_when_a_lease_is_lost(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    job = new_job()
    await storage.jobs.enqueue_many([job])
    [_claimed] = await claim(storage)
    chunks = [event(job.id, seq, EventKind.CHUNK, clock, {"text": "x"}) for seq in (2, 3)]
    await storage.jobs.complete_many([], chunks)
    assert await storage.jobs.release_owner("w1", lost=True, reason="worker died") == 1
    assert (await lifecycle(storage, job.id))[-1] == (4, JobStatus.QUEUED, 1)


async def test_status_changes_outside_workers_are_events(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    waiting = new_job()
    parent = new_job()
    child = new_job(continues_job_id=parent.id, status=JobStatus.AWAITING)
    await storage.jobs.enqueue_many([waiting, parent])
    await storage.jobs.enqueue_many([child])
    await storage.control.cancel(waiting.id, "not needed")
    assert await lifecycle(storage, waiting.id) == [(1, JobStatus.CANCELLED, 0)]
    [claimed] = await claim(storage, limit=1)
    assert claimed.id == parent.id
    await storage.jobs.complete_many(
        [completion(claimed, Failed(error="x", traceback="", retryable=False), clock)]
    )
    assert [s for _, s, _ in await lifecycle(storage, parent.id)] == [
        JobStatus.RUNNING,
        JobStatus.DEAD,
    ]
    assert [s for _, s, _ in await lifecycle(storage, child.id)] == [JobStatus.CANCELLED]
    await storage.control.retry_job(parent.id)
    assert (await lifecycle(storage, parent.id))[-1] == (3, JobStatus.QUEUED, 1)


async def test_a_status_change_is_an_event_at_the_storage_clocks_time(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """The lifecycle event of a change outside an attempt (cancelled while waiting, retried, a
    continuation queued or cancelled) says what the change did, at the storage clock's time."""

    async def last_change(job_id) -> tuple[int, JobStatus, int, str | None, object]:
        [*_, last] = await storage.events.read_events(job_id, 0, 1000)
        life = last.decoded(Lifecycle)
        return last.seq, life.status, life.attempt, life.error, last.occurred_at

    # `other` waits for later: the one claim below must take `parent`.
    waiting, parent, other = new_job(), new_job(), new_job(delay=3600)
    await storage.jobs.enqueue_many([waiting, parent, other])
    promoted = new_job(continues_job_id=parent.id, status=JobStatus.AWAITING)
    doomed = new_job(continues_job_id=other.id, status=JobStatus.AWAITING)
    chained = new_job(continues_job_id=doomed.id, status=JobStatus.AWAITING)
    await storage.jobs.enqueue_many([promoted, doomed])
    await storage.jobs.enqueue_many([chained])

    clock.advance(5)
    await storage.control.cancel(waiting.id, "not needed")
    assert await last_change(waiting.id) == (
        1,
        JobStatus.CANCELLED,
        0,
        "not needed",
        clock.now(),
    )

    clock.advance(5)
    [job] = await claim(storage, limit=1)
    assert job.id == parent.id
    clock.advance(5)
    done = completion(job, Succeeded(result=b"1"), clock)
    clock.advance(1)  # the completion reports its end time; the continuation changes now
    await storage.jobs.complete_many([done])
    assert await last_change(promoted.id) == (1, JobStatus.QUEUED, 0, None, clock.now())

    clock.advance(5)
    await storage.control.cancel(other.id, "stop")
    for child in (doomed, chained):
        seq, status, attempt, error, at = await last_change(child.id)
        assert (seq, status, attempt, at) == (1, JobStatus.CANCELLED, 0, clock.now())
        assert error is not None and str(other.id) in error

    clock.advance(5)
    [job] = await claim(storage, limit=1)
    assert job.id == promoted.id
    dead = completion(job, Failed(error="x", traceback="", retryable=False), clock)
    await storage.jobs.complete_many([dead])
    clock.advance(5)
    await storage.control.retry_job(job.id)
    assert await last_change(job.id) == (4, JobStatus.QUEUED, 1, None, clock.now())


async def test_released_and_cancelled_attempts_end_with_an_event(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    a, b = new_job(), new_job()
    await storage.jobs.enqueue_many([a, b])
    first, second = await claim(storage)
    await storage.jobs.complete_many(
        [
            completion(first, Released(reason="shutdown"), clock, event_seq=first.event_seq),
            completion(second, Cancelled(reason="asked"), clock, event_seq=second.event_seq + 3),
        ]
    )
    assert (await lifecycle(storage, first.id))[-1] == (2, JobStatus.QUEUED, 0)
    assert (await lifecycle(storage, second.id))[-1] == (5, JobStatus.CANCELLED, 1)


async def test_an_event_already_stored_is_not_replaced(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    job = new_job()
    await storage.jobs.enqueue_many([job])
    await claim(storage)
    await storage.jobs.complete_many([], [event(job.id, 2, EventKind.PROGRESS, clock, {"done": 1})])
    await storage.jobs.complete_many([], [event(job.id, 2, EventKind.PROGRESS, clock, {"done": 9})])
    [stored] = await storage.events.read_events(job.id, 1)
    assert stored.decoded() == {"done": 1}


async def test_events_the_history_does_not_keep_expire(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    job = new_job()
    await storage.jobs.enqueue_many([job])
    await claim(storage)
    logs = [event(job.id, seq, EventKind.LOG, clock, {"m": seq}) for seq in (2, 3, 4)]
    await storage.live.store_live(logs, [("w1", 1)] * len(logs))
    assert [e.seq for e in await storage.events.read_events(job.id)] == [1]
    assert [e.seq for e in await storage.live.read_live(job.id, 0, 10)] == [1, 2, 3, 4]
    assert await storage.live.purge_live(clock.now() - timedelta(seconds=1)) == 0
    assert await storage.live.purge_live(clock.now() + timedelta(seconds=1), limit=2) == 2
    assert await storage.live.purge_live(clock.now() + timedelta(seconds=1)) == 1
    assert [e.seq for e in await storage.live.read_live(job.id, 0, 10)] == [1]


async def test_a_stored_row_never_hides_the_storages_own_event(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """A job's `running` and end events are read from its rows. A row stored under one of their
    numbers (a late write of an attempt that had lost its lease) does not replace them."""
    job = new_job()
    await storage.jobs.enqueue_many([job])
    [claimed] = await claim(storage)
    late = event(job.id, claimed.event_seq, EventKind.PROGRESS, clock, {"done": 1})
    await storage.jobs.complete_many([], [late])
    assert await lifecycle(storage, job.id) == [(1, JobStatus.RUNNING, 1)]
    await storage.jobs.complete_many(
        [completion(claimed, Failed(error="x", traceback="", retryable=False), clock)]
    )
    assert await lifecycle(storage, job.id) == [(1, JobStatus.RUNNING, 1), (2, JobStatus.DEAD, 1)]
    assert [e.kind for e in await storage.events.read_events(job.id)] == [EventKind.LIFECYCLE] * 2


async def test_the_storages_events_read_the_same_on_every_backend(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """Every event the storage writes, built by `event_log` with the storage's clock: each
    backend's reading of a job's events equals the expected list, payloads included."""
    waiting, parent = new_job(), new_job(max_attempts=1)
    child = new_job(continues_job_id=parent.id, status=JobStatus.AWAITING)
    await storage.jobs.enqueue_many([waiting, parent])
    await storage.jobs.enqueue_many([child])
    clock.advance(1)
    cancelled_at = clock.now()
    await storage.control.cancel(waiting.id, "not needed")
    clock.advance(1)
    [first] = await claim(storage, limit=1)
    clock.advance(1)
    failed = completion(first, Failed(error="boom", traceback="tb", retryable=False), clock)
    await storage.jobs.complete_many([failed])
    dead_at = clock.now()
    clock.advance(1)
    retried_at = clock.now()
    await storage.control.retry_job(parent.id)
    clock.advance(1)
    [second] = await claim(storage, limit=1)
    clock.advance(1)
    done = completion(second, Succeeded(result=b'{"rows":3}'), clock, event_seq=second.event_seq)
    await storage.jobs.complete_many([done])
    S = JobStatus
    expected = {
        waiting.id: [lifecycle_event(waiting.id, 1, cancelled_at, S.CANCELLED, 0, "not needed")],
        child.id: [
            lifecycle_event(
                child.id, 1, dead_at, S.CANCELLED, 0, f"parent job {parent.id} ended dead"
            )
        ],
        parent.id: [
            lifecycle_event(parent.id, 1, first.started_at, S.RUNNING, 1),
            lifecycle_event(parent.id, 2, dead_at, S.DEAD, 1, "boom"),
            lifecycle_event(parent.id, 3, retried_at, S.QUEUED, 1),
            lifecycle_event(parent.id, 4, second.started_at, S.RUNNING, 2),
            result_event(parent.id, 5, done.ended_at, b'{"rows":3}'),
            lifecycle_event(parent.id, 6, done.ended_at, S.SUCCEEDED, 2),
        ],
    }
    for job_id, events in expected.items():
        found = await storage.events.read_events(job_id)
        assert [(e.seq, e.kind, e.occurred_at, e.decoded()) for e in found] == [
            (e.seq, e.kind, e.occurred_at, e.decoded()) for e in events
        ], job_id


async def test_a_page_of_events_is_one_moment_of_the_database(
    storage: Storage, backend_settings: Settings, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """A reader with a connection of its own pages through a job's events while attempts end:
    each page shows the database at one moment, so an attempt's end never comes without the
    events stored with it, and no event comes twice (a page is read by several statements on
    SQLite, which must share one snapshot)."""
    reader = create_storage(backend_settings.database_url, backend_settings, clock)
    await reader.open()
    try:
        for _ in range(150):
            job = new_job()
            await storage.jobs.enqueue_many([job])
            [claimed] = await claim(storage)
            own = [
                event(job.id, seq, EventKind.PROGRESS, clock, {"done": seq}) for seq in range(2, 6)
            ]
            done = completion(claimed, Failed(error="x", traceback=""), clock, event_seq=5)

            async def read_while_it_ends(job_id: object = job.id) -> None:
                for _ in range(30):
                    page = [e.seq for e in await reader.events.read_events(job_id)]  # type: ignore[arg-type]
                    assert page == sorted(set(page)), page
                    if 6 in page:
                        assert page == [1, 2, 3, 4, 5, 6], page
                    await asyncio.sleep(0)

            reading = asyncio.create_task(read_while_it_ends())
            await storage.jobs.complete_many([done], own)
            await reading
    finally:
        await reader.close()


async def test_a_stale_attempts_events_are_fenced_off(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """A worker stopped past its lease and resumed: the events it then writes (its outcome is
    refused already) are not stored, whether the job was only rescued or already claimed again,
    so they never take the numbers of the next attempt's events."""
    job = new_job()
    await storage.jobs.enqueue_many([job])
    [first] = await claim(storage, lease=5.0)
    early = event(job.id, 2, EventKind.PROGRESS, clock, {"done": 1})
    await storage.jobs.complete_many([], [early], emitted_by=[("w1", first.attempt)])
    clock.advance(10)
    assert await storage.maintenance.rescue_expired() == 1  # the lease is lost: seq 3
    late = [event(job.id, seq, EventKind.PROGRESS, clock, {"done": seq}) for seq in (3, 4, 5)]
    await storage.jobs.complete_many([], late[:1], emitted_by=[("w1", first.attempt)])
    await storage.live.store_live(late[1:2], [("w1", first.attempt)])
    [second] = await claim(storage, owner="w2")
    assert second.event_seq == 4
    await storage.jobs.complete_many([], late[1:], emitted_by=[("w1", first.attempt)] * 2)
    own = event(job.id, 5, EventKind.PROGRESS, clock, {"done": "second"})
    await storage.jobs.complete_many([], [own], emitted_by=[("w2", second.attempt)])
    found = await storage.live.read_live(job.id, 0, 100)
    assert [(e.seq, e.kind) for e in found] == [
        (1, EventKind.LIFECYCLE),
        (2, EventKind.PROGRESS),
        (3, EventKind.LIFECYCLE),
        (4, EventKind.LIFECYCLE),
        (5, EventKind.PROGRESS),
    ]
    assert found[4].decoded() == {"done": "second"}
    assert await lifecycle(storage, job.id) == [
        (1, JobStatus.RUNNING, 1),
        (3, JobStatus.QUEUED, 1),
        (4, JobStatus.RUNNING, 2),
    ]
