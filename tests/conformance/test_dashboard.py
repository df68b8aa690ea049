"""What the admin dashboard's overview reads, on every backend: throughput (attempts ended per
bucket by outcome), counts that name their estimates, and listings with a scan limit that page
on without skipping or repeating a job."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from jobworker.clock import FrozenClock
from jobworker.models import (
    Cancelled,
    Failed,
    JobFilter,
    JobKind,
    JobStatus,
    Released,
    Succeeded,
)
from jobworker.storage import Storage

from .conftest import NewJobFactory
from .test_listing import TYPES, a_mixed_table, everything, matches
from .test_storage import claim, completion


async def end_one(
    storage: Storage,
    new_job: NewJobFactory,
    clock: FrozenClock,
    outcome: object,
    max_attempts: int = 3,
    **kw: object,
) -> uuid.UUID:
    """Enqueue a job, claim it and end its attempt now with `outcome` (`kw`: the completion's)."""
    await storage.jobs.enqueue_many([new_job(max_attempts=max_attempts)])
    [job] = await claim(storage)
    await storage.jobs.complete_many([completion(job, outcome, clock, **kw)])
    return job.id


async def lose_one(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock, **kw: object
) -> None:
    """Enqueue a job, claim it, and let the rescue end its attempt as lost (now); then cancel
    it if it waits to run again (no attempt ends)."""
    await storage.jobs.enqueue_many([new_job(**kw)])
    [job] = await claim(storage, lease=1)
    clock.advance(1.5)
    assert await storage.maintenance.rescue_expired() == 1
    await storage.control.cancel(job.id, "not to run again")


async def test_throughput_counts_attempt_ends_by_bucket_and_outcome(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    ok, failed = Succeeded(result=b"1"), Failed(error="E", traceback="T")
    later = clock.now() + timedelta(days=1)  # the failed job's retry, after the test
    await end_one(storage, new_job, clock, ok)  # before the window: not counted
    clock.advance(30)
    since = clock.now()
    await end_one(storage, new_job, clock, ok)
    clock.advance(10)
    await end_one(storage, new_job, clock, ok)
    await end_one(storage, new_job, clock, failed, retry_at=later)  # failed, retried
    clock.advance(50)  # the second bucket
    await end_one(storage, new_job, clock, failed, max_attempts=1)
    await end_one(storage, new_job, clock, Cancelled(reason="asked"))
    released = await end_one(storage, new_job, clock, Released(reason="shutdown"))
    await storage.control.cancel(released, "not to run again")  # waiting: no attempt ends
    clock.advance(60)  # the third bucket
    await lose_one(storage, new_job, clock, max_attempts=3)  # lost, runs again: failed
    await lose_one(storage, new_job, clock, max_attempts=1)  # lost on its last attempt: dead
    until = since + timedelta(seconds=180)
    clock.advance(120)  # past the window: not counted
    await end_one(storage, new_job, clock, ok)

    found = await storage.inspection.throughput(since, until, 60)
    counted = {(bucket, outcome): n for bucket, outcome, n in found}
    assert counted == {
        (0, "succeeded"): 2,
        (0, "failed"): 1,
        (1, "dead"): 1,
        (1, "cancelled"): 1,
        (2, "failed"): 1,
        (2, "dead"): 1,
    }
    # Buckets of 10 s over the first 20 s: the first success, then a success and a failure.
    narrow = await storage.inspection.throughput(since, since + timedelta(seconds=20), 10)
    assert sorted(narrow) == [(0, "succeeded", 1), (1, "failed", 1), (1, "succeeded", 1)]


async def test_attempts_deleted_with_their_job_are_not_counted(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    since = clock.now()
    await end_one(storage, new_job, clock, Succeeded(result=b"1"))
    [record] = await everything(storage)
    window = (since, since + timedelta(seconds=60), 60)
    assert await storage.inspection.throughput(*window) == [(0, "succeeded", 1)]
    await storage.control.delete_job(record.id)
    assert await storage.inspection.throughput(*window) == []


@pytest.mark.parametrize("cap", [1, 3, 1000])
async def test_the_overview_is_exact_but_for_the_statuses_it_names_as_estimated(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock, cap: int
) -> None:
    await a_mixed_table(storage, new_job, clock)
    await storage.control.set_queue_paused("idle", True)
    exact = await storage.inspection.count_by_status()
    exact_queues = {q.name: q for q in await storage.inspection.queues()}
    overview = await storage.inspection.overview(cap)
    assert set(overview.counts) == set(JobStatus)
    for status, n in exact.items():
        if n > cap and storage.dialect == "postgres":  # the others count everything exactly
            assert status in overview.estimated, status
        if status not in overview.estimated:
            assert overview.counts[status] == n, status
    if storage.dialect != "postgres" or cap >= 60:
        assert overview.estimated == frozenset()
    assert {q.name for q in overview.queues} >= {"a", "b", "idle"}
    for queue in overview.queues:
        assert queue.paused == exact_queues[queue.name].paused
        for status in JobStatus:
            if status not in overview.estimated:
                truth = exact_queues[queue.name].counts.get(status.value, 0)
                assert queue.counts.get(status.value, 0) == truth, (queue.name, status)
        assert queue.estimated == any(s.value in queue.counts for s in overview.estimated)


async def pages_of(
    storage: Storage, filter: JobFilter, *, limit: int, scan_limit: int
) -> list[tuple[list[uuid.UUID], bool]]:
    """Every page of a scan-limited listing, each bounded by the previous page's next id (its
    last row when full, else the scan's edge): (ids, scan limited)."""
    pages: list[tuple[list[uuid.UUID], bool]] = []
    before = None
    for _ in range(200):
        bounded = JobFilter(**{**_fields(filter), "before": before})
        found = await storage.inspection.list_jobs(bounded, limit=limit, scan_limit=scan_limit)
        ids = [record.id for record in found]
        assert ids == sorted(ids, reverse=True)
        pages.append((ids, found.scan_edge is not None))
        if found.scan_edge is not None:
            assert len(ids) < limit and all(i >= found.scan_edge for i in ids)
            before = found.scan_edge
        elif len(ids) == limit:
            before = ids[-1]
        else:
            return pages
    raise AssertionError("the listing never ended")


def _fields(filter: JobFilter) -> dict[str, object]:
    return {name: getattr(filter, name) for name in filter.__struct_fields__}


FILTERS = [
    JobFilter(),
    JobFilter(status=JobStatus.QUEUED),
    JobFilter(status=JobStatus.RUNNING),
    JobFilter(status=JobStatus.SCHEDULED),
    JobFilter(status=JobStatus.DEAD),
    JobFilter(kind=JobKind.SYSTEM),
    JobFilter(kind=JobKind.USER),
    JobFilter(job_type=TYPES[1]),
    JobFilter(queue="b"),
    JobFilter(idempotency_key="key-13"),
    JobFilter(search="daily"),
    JobFilter(search="no such text"),
    JobFilter(status=JobStatus.QUEUED, job_type=TYPES[2]),
    JobFilter(kind=JobKind.SYSTEM, queue="b"),
]


@pytest.mark.parametrize("filter", FILTERS, ids=lambda f: repr(f)[10:])
async def test_scan_limited_pages_hold_every_match_once(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock, filter: JobFilter
) -> None:
    await a_mixed_table(storage, new_job, clock)
    table = await everything(storage)
    expected = [record.id for record in table if matches(record, filter)]
    for limit, scan_limit in ((5, 7), (3, 1), (50, 1000)):
        pages = await pages_of(storage, filter, limit=limit, scan_limit=scan_limit)
        listed = [job_id for ids, _limited in pages for job_id in ids]
        assert listed == expected, (limit, scan_limit)
        if scan_limit >= len(table):
            assert not any(limited for _ids, limited in pages)


async def test_a_scan_limit_stops_a_rare_filter_at_its_budget(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await a_mixed_table(storage, new_job, clock)
    table = await everything(storage)
    found = await storage.inspection.list_jobs(
        JobFilter(search="no such text"), limit=10, scan_limit=7
    )
    assert list(found) == [] and found.scan_edge == table[6].id
    # Without a scan limit, the same listing reads the whole table and says nothing of edges.
    whole = await storage.inspection.list_jobs(JobFilter(search="no such text"), limit=10)
    assert list(whole) == [] and whole.scan_edge is None
