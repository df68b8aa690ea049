"""The claim's limits per kind of handler: at most `sync_limit` of the sync types (a worker's free
threads) and `async_limit` of the others among its `limit`, most urgent first; a backlog of one
kind ahead does not hold up the other."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from jobworker.clock import FrozenClock
from jobworker.models import ClaimedJob, NewJob
from jobworker.storage import Storage

from .conftest import NewJobFactory

SYNC, ASYNC = "t.sync", "t.async"
TYPES = [SYNC, ASYNC]


async def claim(
    storage: Storage,
    limit: int,
    *,
    sync_limit: int | None = None,
    async_limit: int | None = None,
    owner: str = "w1",
    types: Collection[str] = TYPES,
    caps: Mapping[str, int] | None = None,
) -> list[ClaimedJob]:
    return await storage.jobs.claim(
        owner,
        list(types),
        ["default"],
        limit,
        30.0,
        caps,
        sync_types=[SYNC],
        sync_limit=sync_limit,
        async_limit=async_limit,
    )


async def backlog(
    new_job: NewJobFactory, clock: FrozenClock, storage: Storage, *kinds: str
) -> list[NewJob]:
    """One job of each kind given, one second apart (the first the most urgent)."""
    jobs = []
    for job_type in kinds:
        jobs.append(new_job(job_type=job_type))
        clock.advance(1)
    await storage.jobs.enqueue_many(jobs)
    return jobs


async def test_a_claim_takes_no_more_sync_jobs_than_its_sync_limit(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = await backlog(new_job, clock, storage, SYNC, SYNC, SYNC, ASYNC, SYNC, ASYNC, ASYNC)
    claimed = await claim(storage, 5, sync_limit=2)
    # The two most urgent sync jobs, and async ones behind the sync backlog, in order of urgency.
    assert [job.id for job in claimed] == [jobs[i].id for i in (0, 1, 3, 5, 6)]
    # The rows left are free for the next claim (another worker's).
    rest = await claim(storage, 10, sync_limit=10, owner="w2")
    assert [job.id for job in rest] == [jobs[2].id, jobs[4].id]


async def test_a_claim_takes_no_more_async_jobs_than_its_async_limit(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = await backlog(new_job, clock, storage, ASYNC, ASYNC, SYNC, ASYNC, SYNC)
    claimed = await claim(storage, 10, sync_limit=10, async_limit=1)
    assert [job.id for job in claimed] == [jobs[0].id, jobs[2].id, jobs[4].id]


async def test_the_limit_in_all_takes_the_most_urgent_of_both_kinds(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = await backlog(new_job, clock, storage, ASYNC, SYNC, ASYNC, SYNC, ASYNC, SYNC)
    claimed = await claim(storage, 3, sync_limit=2, async_limit=2)
    assert [job.id for job in claimed] == [jobs[0].id, jobs[1].id, jobs[2].id]


async def test_a_sync_limit_of_zero_claims_only_async_jobs(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = await backlog(new_job, clock, storage, SYNC, ASYNC, SYNC)
    assert [job.id for job in await claim(storage, 10, sync_limit=0)] == [jobs[1].id]
    assert await claim(storage, 10, sync_limit=0) == []
    assert await claim(storage, 10, sync_limit=5, async_limit=0) != []


async def test_limits_per_kind_hold_with_concurrency_caps(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    """A capped type counts against its kind's limit, and the cap holds as well."""
    await backlog(new_job, clock, storage, *[SYNC] * 4, *[ASYNC] * 4)
    caps = {SYNC: 3}
    claimed = await claim(storage, 10, sync_limit=2, async_limit=3, caps=caps)
    assert sorted(job.job_type for job in claimed) == [ASYNC] * 3 + [SYNC] * 2
    # The cap (3 running across workers) leaves one more sync job, whatever the limit says.
    more = await claim(storage, 10, sync_limit=5, async_limit=0, caps=caps, owner="w2")
    assert [job.job_type for job in more] == [SYNC]
    # Both kinds capped: each within its kind's limit and its cap.
    rest = await claim(storage, 10, sync_limit=1, async_limit=1, caps={SYNC: 9, ASYNC: 9})
    assert sorted(job.job_type for job in rest) == [ASYNC, SYNC]
