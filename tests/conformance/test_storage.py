"""Storage behaviour every backend must show."""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec
import pytest

from jobworker.clock import FrozenClock
from jobworker.models import (
    AttemptOutcome,
    Completion,
    Failed,
    JobFilter,
    JobStatus,
    Released,
    Succeeded,
)
from jobworker.storage import Storage, latest_schema_version

from .conftest import NewJobFactory

TYPES = ["t.noop"]


def json(data: bytes | None) -> object:
    """Stored JSON as values: backends may re-format the text (PostgreSQL's jsonb does)."""
    assert data is not None
    return msgspec.json.decode(data)


QUEUES = ["default"]


async def claim(storage: Storage, owner: str = "w1", limit: int = 10, **kw: object) -> list:
    return await storage.jobs.claim(
        owner,
        kw.get("types", TYPES),
        kw.get("queues", QUEUES),
        limit,
        kw.get("lease", 30.0),  # type: ignore[arg-type]
    )


def completion(job, outcome, clock: FrozenClock, owner: str = "w1", **kw: object) -> Completion:
    return Completion(
        job_id=job.id,
        attempt=job.attempt,
        lease_owner=owner,
        started_at=job.started_at,
        ended_at=clock.now(),
        outcome=outcome,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_migrated_schema_reads_the_version_this_code_expects(storage: Storage) -> None:
    assert await storage.schema.version() == latest_schema_version(storage.dialect)
    assert latest_schema_version(storage.dialect) > 1


async def test_enqueue_and_read_back(storage: Storage, new_job: NewJobFactory) -> None:
    job = new_job(args=b'{"a":1}', priority=5, queue="q1", idempotency_key="k1", result_ttl=9.0)
    [result] = await storage.jobs.enqueue_many([job])
    assert result.job_id == job.id and result.created
    record = await storage.inspection.get(job.id)
    assert record is not None
    assert (record.job_type, record.queue, record.priority, record.status) == (
        "t.noop",
        "q1",
        5,
        JobStatus.QUEUED,
    )
    assert (json(record.args), record.attempt, record.max_attempts) == ({"a": 1}, 0, 3)
    assert record.enqueued_at == job.enqueued_at and record.run_at == job.run_at
    assert record.idempotency_key == "k1" and record.result_ttl == 9.0
    assert record.started_at is None and record.lease_owner is None
    assert await storage.inspection.get(uuid.uuid4()) is None


async def test_batch_enqueue_is_all_or_nothing(storage: Storage, new_job: NewJobFactory) -> None:
    first = new_job()
    batch = [new_job() for _ in range(100)]
    await storage.jobs.enqueue_many(batch)
    assert sum((await storage.inspection.count_by_status()).values()) == 100
    with pytest.raises(Exception):  # noqa: B017 - the driver's own integrity error
        await storage.jobs.enqueue_many([first, new_job(), new_job(id=first.id)])
    assert await storage.inspection.get(first.id) is None
    # A large batch may take another path into the database (PostgreSQL: COPY); same rule.
    large = [new_job() for _ in range(200)]
    with pytest.raises(Exception):  # noqa: B017
        await storage.jobs.enqueue_many([*large, new_job(id=large[0].id)])
    assert await storage.inspection.get(large[0].id) is None
    assert sum((await storage.inspection.count_by_status()).values()) == 100


async def test_idempotency_key_collapses_to_the_existing_job(
    storage: Storage, new_job: NewJobFactory
) -> None:
    original = new_job(idempotency_key="export:42")
    [first] = await storage.jobs.enqueue_many([original])
    [second] = await storage.jobs.enqueue_many([new_job(idempotency_key="export:42")])
    assert first.created and not second.created
    assert second.job_id == original.id
    assert sum((await storage.inspection.count_by_status()).values()) == 1


async def test_claim_leases_counts_an_attempt_and_orders_by_priority_then_age(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    old_low = new_job(priority=0)
    clock.advance(1)
    new_high = new_job(priority=10)
    clock.advance(1)
    newer_low = new_job(priority=0)
    await storage.jobs.enqueue_many([newer_low, old_low, new_high])
    claimed = await claim(storage, limit=2)
    assert [job.id for job in claimed] == [new_high.id, old_low.id]
    assert all(job.attempt == 1 for job in claimed)
    record = await storage.inspection.get(new_high.id)
    assert record is not None and record.status is JobStatus.RUNNING
    assert record.lease_owner == "w1"
    assert record.lease_expires_at == clock.now() + timedelta(seconds=30)
    assert record.started_at == clock.now()
    assert [job.id for job in await claim(storage, "w2")] == [newer_low.id]
    assert await claim(storage, "w3") == []


async def test_claim_honours_run_at_queues_and_job_types(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    later = new_job(delay=60)
    other_queue = new_job(queue="other")
    other_type = new_job(job_type="t.other")
    await storage.jobs.enqueue_many([later, other_queue, other_type])
    assert await claim(storage) == []
    assert [j.id for j in await claim(storage, queues=["other", "x"])] == [other_queue.id]
    assert [j.id for j in await claim(storage, types=["t.other"])] == [other_type.id]
    clock.advance(59)
    assert await claim(storage) == []
    clock.advance(1)
    assert [j.id for j in await claim(storage)] == [later.id]


async def test_success_stores_the_result_and_an_attempt(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job()])
    [job] = await claim(storage)
    clock.advance(2)
    applied = await storage.jobs.complete_many(
        [completion(job, Succeeded(result=b'{"rows":3}'), clock, result_ttl=60.0)]
    )
    assert applied.applied == 1
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    assert json(record.result) == {"rows": 3} and record.lease_owner is None
    assert record.completed_at == clock.now()
    assert record.expires_at == clock.now() + timedelta(seconds=60)
    [attempt] = await storage.inspection.attempts(job.id)
    assert attempt.outcome is AttemptOutcome.SUCCEEDED and attempt.worker == "w1"
    assert attempt.started_at == job.started_at and attempt.ended_at == clock.now()


async def test_failure_with_retry_at_runs_again_then_not_before(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job()])
    [job] = await claim(storage)
    retry_at = clock.now() + timedelta(seconds=10)
    failed = Failed(error="ValueError: x", traceback="Traceback...")
    await storage.jobs.complete_many([completion(job, failed, clock, retry_at=retry_at)])
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error == "ValueError: x" and record.traceback == "Traceback..."
    assert record.run_at == retry_at
    clock.advance(9.9)
    assert await claim(storage) == []
    clock.advance(0.1)
    [again] = await claim(storage)
    assert again.id == job.id and again.attempt == 2


async def test_failure_without_retry_is_dead_with_error_and_traceback(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job(max_attempts=1)])
    [job] = await claim(storage)
    failed = Failed(error="RuntimeError: boom", traceback="Traceback (most recent call last)")
    await storage.jobs.complete_many([completion(job, failed, clock)])
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.DEAD
    assert record.error == "RuntimeError: boom" and record.traceback.startswith("Traceback")
    assert record.completed_at == clock.now() and record.expires_at is not None
    [attempt] = await storage.inspection.attempts(job.id)
    assert attempt.outcome is AttemptOutcome.DEAD and attempt.error == "RuntimeError: boom"


async def test_released_job_is_queued_again_without_spending_the_attempt(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job()])
    [job] = await claim(storage)
    await storage.jobs.complete_many([completion(job, Released(reason="shutdown"), clock)])
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.QUEUED and record.attempt == 0
    [again] = await claim(storage, "w2")
    assert again.attempt == 1
    [attempt] = await storage.inspection.attempts(job.id)
    assert attempt.outcome is AttemptOutcome.RELEASED


async def test_outcome_of_a_lost_lease_is_dropped(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job()])
    [job] = await claim(storage, lease=5)
    clock.advance(6)
    assert await storage.maintenance.rescue_expired() == 1
    [taken] = await claim(storage, "w2")
    assert taken.attempt == 2
    late = await storage.jobs.complete_many([completion(job, Succeeded(result=b"1"), clock)])
    assert late.applied == 0
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.RUNNING
    assert record.lease_owner == "w2"


async def test_expired_lease_is_rescued_and_counts_an_attempt(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job(max_attempts=2)])
    [job] = await claim(storage, lease=5)
    clock.advance(4)
    assert await storage.maintenance.rescue_expired() == 0
    clock.advance(2)
    assert await storage.maintenance.rescue_expired() == 1
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.QUEUED and record.attempt == 1
    assert record.lease_owner is None and "lease expired" in (record.error or "")
    [again] = await claim(storage, "w2", lease=5)
    assert again.attempt == 2
    clock.advance(6)
    assert await storage.maintenance.rescue_expired() == 1
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.DEAD
    outcomes = [a.outcome for a in await storage.inspection.attempts(job.id)]
    assert outcomes == [AttemptOutcome.LOST, AttemptOutcome.LOST]


async def test_extending_leases_keeps_jobs_from_expiring(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job(), new_job()])
    first, second = await claim(storage, lease=5)
    held = [(first.id, first.attempt), (second.id, second.attempt)]
    clock.advance(4)
    assert await storage.jobs.extend_leases("w1", held, 5) == {first.id, second.id}
    assert await storage.jobs.extend_leases("nobody", held, 5) == set()
    clock.advance(4)
    assert await storage.maintenance.rescue_expired() == 0
    clock.advance(2)
    assert await storage.maintenance.rescue_expired() == 2


async def test_only_the_leases_a_worker_holds_are_renewed(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """A job leased to a worker that never received it (the claim's reply was lost) is not
    renewed with the ones it holds: it expires and is rescued within one lease. Neither is an
    attempt the worker no longer holds."""
    await storage.jobs.enqueue_many([new_job(), new_job()])
    held, unseen = await claim(storage, lease=5)
    for _ in range(3):
        clock.advance(3)
        renewed = await storage.jobs.extend_leases("w1", [(held.id, held.attempt)], 5)
        assert renewed == {held.id}
        if await storage.maintenance.rescue_expired():
            break
    record = await storage.inspection.get(unseen.id)
    assert record is not None and record.status is JobStatus.QUEUED
    assert await storage.jobs.extend_leases("w1", [(unseen.id, unseen.attempt)], 5) == set()
    assert await storage.jobs.extend_leases("w1", [(held.id, held.attempt + 1)], 5) == set()
    assert await storage.jobs.extend_leases("w1", [], 5) == set()


async def test_release_owner_lost_and_not_lost(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    last_try = new_job(max_attempts=1)
    spare = new_job(max_attempts=3)
    drained = new_job()
    await storage.jobs.enqueue_many([last_try, spare])
    await claim(storage, "dead-worker")
    await storage.jobs.enqueue_many([drained])
    await claim(storage, "draining-worker")
    assert (
        await storage.jobs.release_owner("dead-worker", lost=True, reason="worker process died")
        == 2
    )
    assert await storage.jobs.release_owner("draining-worker", lost=False, reason="shutdown") == 1
    dead, queued, back = [await storage.inspection.get(j.id) for j in (last_try, spare, drained)]
    assert dead is not None and dead.status is JobStatus.DEAD
    assert "worker process died" in (dead.error or "")
    assert queued is not None and queued.status is JobStatus.QUEUED and queued.attempt == 1
    assert back is not None and back.status is JobStatus.QUEUED and back.attempt == 0
    assert [a.outcome for a in await storage.inspection.attempts(drained.id)] == [
        AttemptOutcome.RELEASED
    ]


async def test_attempt_history_is_kept_in_order(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job(max_attempts=3)])
    for attempt in (1, 2):
        [job] = await claim(storage)
        assert job.attempt == attempt
        failed = Failed(error=f"E{attempt}", traceback="tb")
        await storage.jobs.complete_many([completion(job, failed, clock, retry_at=clock.now())])
    [job] = await claim(storage)
    await storage.jobs.complete_many([completion(job, Succeeded(result=b"null"), clock)])
    history = await storage.inspection.attempts(job.id)
    assert [(a.attempt, a.outcome, a.error) for a in history] == [
        (1, AttemptOutcome.FAILED, "E1"),
        (2, AttemptOutcome.FAILED, "E2"),
        (3, AttemptOutcome.SUCCEEDED, None),
    ]


async def test_listing_filters_and_pages_newest_first(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = []
    for i in range(7):
        clock.advance(1)
        jobs.append(new_job(queue="a" if i % 2 else "b", job_type=f"t.{i % 3}"))
    await storage.jobs.enqueue_many(jobs)
    newest_first = [j.id for j in reversed(jobs)]
    page1 = await storage.inspection.list_jobs(JobFilter(), limit=3)
    page2 = await storage.inspection.list_jobs(JobFilter(), limit=3, offset=3)
    page3 = await storage.inspection.list_jobs(JobFilter(), limit=3, offset=6)
    assert [r.id for r in page1 + page2 + page3] == newest_first
    in_a = await storage.inspection.list_jobs(JobFilter(queue="a"))
    assert [r.id for r in in_a] == [j.id for j in reversed(jobs) if j.queue == "a"]
    typed = await storage.inspection.list_jobs(JobFilter(job_type="t.0", queue="b"))
    assert [r.id for r in typed] == [jobs[6].id, jobs[0].id]
    await claim(storage, types=["t.1"], queues=["a", "b"], limit=1)
    running = await storage.inspection.list_jobs(JobFilter(status=JobStatus.RUNNING))
    assert [r.job_type for r in running] == ["t.1"]
    counts = await storage.inspection.count_by_status()
    assert counts[JobStatus.RUNNING] == 1 and counts[JobStatus.QUEUED] == 6


async def test_purge_deletes_expired_jobs_with_their_attempts_in_bounded_batches(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job() for _ in range(5)])
    claimed = await claim(storage)
    await storage.jobs.complete_many(
        [completion(j, Succeeded(result=b"1"), clock, result_ttl=10.0) for j in claimed[:4]]
    )
    keep = claimed[4]
    clock.advance(9)
    assert await storage.maintenance.purge_expired() == 0
    clock.advance(1)
    assert await storage.maintenance.purge_expired(limit=3) == 3
    assert await storage.maintenance.purge_expired(limit=3) == 1
    assert await storage.maintenance.purge_expired() == 0
    for job in claimed[:4]:
        assert await storage.inspection.get(job.id) is None
        assert await storage.inspection.attempts(job.id) == []
    assert await storage.inspection.get(keep.id) is not None


async def test_two_workers_never_claim_the_same_job(
    storage: Storage, new_job: NewJobFactory
) -> None:
    await storage.jobs.enqueue_many([new_job() for _ in range(50)])
    seen: set[uuid.UUID] = set()
    for i in range(20):
        batch = await claim(storage, f"w{i}", limit=3)
        ids = {job.id for job in batch}
        assert not ids & seen
        seen |= ids
    assert len(seen) == 50


async def test_a_completion_written_again_changes_nothing(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """A completion whose reply was lost is written again until one lands: a write of one that
    had landed changes nothing (no second attempt row, no second end, the result kept)."""
    job = new_job()
    await storage.jobs.enqueue_many([job])
    [claimed] = await claim(storage)
    done = completion(claimed, Succeeded(result=b'"first"'), clock, event_seq=1)
    assert (await storage.jobs.complete_many([done])).applied == 1
    record = await storage.inspection.get(job.id)
    attempts = await storage.inspection.attempts(job.id)
    events = await storage.events.read_events(job.id)
    again = completion(claimed, Succeeded(result=b'"second"'), clock, event_seq=1)
    for _ in range(2):
        assert (await storage.jobs.complete_many([again])).applied == 0
    assert await storage.inspection.get(job.id) == record
    assert await storage.inspection.attempts(job.id) == attempts
    assert await storage.events.read_events(job.id) == events
