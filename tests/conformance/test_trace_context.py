"""jobs.trace_context on every backend: stored by every way a job goes in, returned with every
claim that asks for it (a worker that traces), unchanged by what happens to the job after
(retries, a parent's success)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobworker.clock import FrozenClock
from jobworker.models import ClaimedJob, Failed, JobStatus, Succeeded
from jobworker.recurring import RecurringSpec, fire_key
from jobworker.storage import Storage

from .conftest import NewJobFactory
from .test_storage import QUEUES, TYPES, completion

# A W3C traceparent, and a tracestate after the newline (jobworker.tracing writes them so).
FIRST = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nvendor=opaque,other=1"
SECOND = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def claim(storage: Storage, limit: int = 10) -> list[ClaimedJob]:
    return await storage.jobs.claim("w1", TYPES, QUEUES, limit, 30.0, trace_context=True)


async def test_a_job_carries_its_trace_context_to_its_claim(
    storage: Storage, new_job: NewJobFactory
) -> None:
    traced, untraced = new_job(trace_context=FIRST), new_job()
    await storage.jobs.enqueue_many([traced, untraced])
    claimed = {job.id: job.trace_context for job in await claim(storage)}
    assert claimed == {traced.id: FIRST, untraced.id: None}


async def test_a_capped_claim_carries_it_too(storage: Storage, new_job: NewJobFactory) -> None:
    traced = new_job(trace_context=FIRST)
    await storage.jobs.enqueue_many([traced])
    [job] = await storage.jobs.claim(
        "w1", TYPES, QUEUES, 10, 30.0, {TYPES[0]: 1}, trace_context=True
    )
    assert (job.id, job.trace_context) == (traced.id, FIRST)


async def test_a_large_batch_carries_each_jobs_trace_context(
    storage: Storage, new_job: NewJobFactory
) -> None:
    # 100 jobs without keys: PostgreSQL copies them in (COPY), the others insert them.
    jobs = [new_job(trace_context=FIRST if n % 2 else SECOND) for n in range(100)]
    await storage.jobs.enqueue_many(jobs)
    claimed = {job.id: job.trace_context for job in await claim(storage, limit=100)}
    assert claimed == {job.id: job.trace_context for job in jobs}


async def test_an_idempotent_enqueue_keeps_the_first_jobs_trace_context(
    storage: Storage, new_job: NewJobFactory
) -> None:
    first = new_job(idempotency_key="k", trace_context=FIRST)
    await storage.jobs.enqueue_many([first])
    [again] = await storage.jobs.enqueue_many([new_job(idempotency_key="k", trace_context=SECOND)])
    assert again.job_id == first.id and not again.created
    [job] = await claim(storage)
    assert job.trace_context == FIRST


async def test_every_attempt_and_a_retry_of_a_dead_job_carry_the_same_context(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many([new_job(trace_context=FIRST, max_attempts=2)])
    [job] = await claim(storage)
    failed = Failed(error="ValueError: x", traceback="")
    await storage.jobs.complete_many([completion(job, failed, clock, retry_at=clock.now())])
    [second] = await claim(storage)
    assert (second.attempt, second.trace_context) == (2, FIRST)
    await storage.jobs.complete_many([completion(second, failed, clock)])
    record = await storage.inspection.get(job.id)
    assert record is not None and record.status is JobStatus.DEAD
    await storage.control.retry_job(job.id)  # `jobworker retry`: the same row, the same trace
    [third] = await claim(storage)
    assert (third.attempt, third.trace_context) == (3, FIRST)


async def test_a_continuation_runs_with_its_own_trace_context_once_released(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    parent = new_job(trace_context=FIRST)
    await storage.jobs.enqueue_many([parent])
    child = new_job(continues_job_id=parent.id, status=JobStatus.AWAITING, trace_context=SECOND)
    await storage.jobs.enqueue_many([child])
    [running] = await claim(storage)
    assert running.id == parent.id
    await storage.jobs.complete_many([completion(running, Succeeded(result=b"1"), clock)])
    await storage.maintenance.resolve_continuations()
    [released] = await claim(storage)
    assert (released.id, released.trace_context) == (child.id, SECOND)


async def test_a_recurring_fire_stores_its_trace_context(
    storage: Storage, new_job: NewJobFactory
) -> None:
    await storage.recurring.upsert_recurring(
        [RecurringSpec(name="nightly", job_type="t.noop", cron="0 2 * * *")]
    )
    instant = datetime(2030, 1, 1, 2, 0, tzinfo=UTC)
    job = new_job(idempotency_key=fire_key("nightly", instant), trace_context=SECOND)
    fired = await storage.recurring.fire_recurring(
        "nightly", instant, instant + timedelta(days=1), job
    )
    assert fired is not None and fired.created
    [claimed] = await claim(storage)
    assert (claimed.id, claimed.trace_context) == (job.id, SECOND)
