"""The worker loop and executor, in process (the process model is in test_processes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import msgspec
import pytest

from jobworker import (
    App,
    AttemptOutcome,
    JobContext,
    JobStatus,
    PermanentJobError,
    Registry,
    Settings,
)
from jobworker.testing import adrain, capturing_context, drain
from jobworker.worker import Worker, WorkerOptions, worker_id

from .claim_race import ClaimRace


class Summary(msgspec.Struct):
    total: int
    thread: str


async def drain_until_settled(app: App, rounds: int = 40) -> None:
    """Drain, waiting out retry delays, until no job is queued, scheduled or failed."""
    for _ in range(rounds):
        await adrain(app)
        counts = await app.client.acounts()
        if not (
            counts[JobStatus.FAILED] or counts[JobStatus.QUEUED] or counts[JobStatus.SCHEDULED]
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"jobs did not settle: {counts}")


async def test_success_stores_the_typed_result(aapp: App, registry: Registry) -> None:
    @registry.job(name="sum")
    def total(ctx: JobContext, values: list[int]) -> Summary:
        return Summary(total=sum(values), thread=threading.current_thread().name)

    handle = await total.adelay(values=[1, 2, 3])
    result = await adrain(aapp)
    assert (result.attempts, result.succeeded, result.dead) == (1, 1, 0)
    job = await handle.aget()
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.attempt == 1
    assert job.started_at is not None and job.completed_at is not None
    stored = (await aapp.storage()).inspection.get  # raw bytes decode to the declared type
    record = await stored(handle.job_id)
    assert record is not None
    summary = total.definition.decode_result(record.result)  # type: ignore[arg-type]
    assert summary.total == 6 and summary.thread.startswith("jobworker-job")
    [attempt] = await aapp.client.aattempts(handle.job_id)
    assert attempt.outcome is AttemptOutcome.SUCCEEDED


async def test_failing_twice_then_succeeding(aapp: App, registry: Registry) -> None:
    calls: list[int] = []

    @registry.job(name="flaky", max_attempts=3)
    async def flaky(ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"try {ctx.attempt}")
        return "ok"

    handle = await flaky.adelay()
    await drain_until_settled(aapp)
    job = await handle.aget()
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.result == "ok"
    assert calls == [1, 2, 3]
    outcomes = [(a.outcome, a.error) for a in await aapp.client.aattempts(handle.job_id)]
    assert outcomes == [
        (AttemptOutcome.FAILED, "ConnectionError: try 1"),
        (AttemptOutcome.FAILED, "ConnectionError: try 2"),
        (AttemptOutcome.SUCCEEDED, None),
    ]


async def test_exhausted_retries_make_the_job_dead_with_its_traceback(
    aapp: App, registry: Registry
) -> None:
    @registry.job(name="broken", max_attempts=2)
    def broken(ctx: JobContext, n: int) -> None:
        raise ValueError(f"bad n={n}")

    handle = await broken.adelay(n=7)
    await drain_until_settled(aapp)
    job = await handle.aget()
    assert job is not None and job.status is JobStatus.DEAD and job.attempt == 2
    assert job.error == "ValueError: bad n=7"
    assert job.traceback is not None and "Traceback" in job.traceback
    assert 'raise ValueError(f"bad n={n}")' in job.traceback


async def test_permanent_error_skips_retries(aapp: App, registry: Registry) -> None:
    @registry.job(name="permanent", max_attempts=5)
    async def permanent(ctx: JobContext) -> None:
        raise PermanentJobError("the account is gone")

    handle = await permanent.adelay()
    result = await adrain(aapp)
    assert result.dead == 1 and result.attempts == 1
    job = await handle.aget()
    assert job is not None and job.status is JobStatus.DEAD and job.attempt == 1


async def test_arguments_that_no_longer_decode_are_dead_at_once(
    aapp: App, registry: Registry, settings: Settings
) -> None:
    @registry.job(name="resize", max_attempts=5)
    def resize_v1(ctx: JobContext, width: int) -> None: ...

    handle = await resize_v1.adelay(width=10)
    # A new deploy changed the signature: `width` is now a string.
    new_code = Registry()

    @new_code.job(name="resize", max_attempts=5)
    def resize_v2(ctx: JobContext, width: str) -> None: ...

    deployed = App(registry=new_code, settings=settings)
    try:
        result = await adrain(deployed)
    finally:
        await deployed.aclose()
    assert result.dead == 1 and result.attempts == 1
    job = await aapp.client.aget(handle.job_id)
    assert job is not None and job.status is JobStatus.DEAD
    assert "no longer match" in (job.error or "") and "Expected `str`, got `int`" in (
        job.error or ""
    )


async def test_unencodable_result_is_dead(aapp: App, registry: Registry) -> None:
    @registry.job(name="leaky")
    def leaky(ctx: JobContext) -> Any:
        return object()

    handle = await leaky.adelay()
    assert (await adrain(aapp)).dead == 1
    job = await handle.aget()
    assert job is not None and "could not be encoded" in (job.error or "")


async def test_timeouts_fail_the_attempt_and_free_the_slot(aapp: App, registry: Registry) -> None:
    stopped = threading.Event()

    @registry.job(name="slow-async", timeout=0.2, max_attempts=1)
    async def slow_async(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    @registry.job(name="slow-sync", timeout=0.2, max_attempts=1)
    def slow_sync(ctx: JobContext) -> None:
        for _ in range(300):
            if ctx.cancel_requested:
                stopped.set()
                return
            time.sleep(0.01)

    a = await slow_async.adelay()
    s = await slow_sync.adelay()
    started = time.monotonic()
    result = await adrain(aapp, parallelism=2)
    assert time.monotonic() - started < 5
    assert result.dead == 2
    for handle in (a, s):
        job = await handle.aget()
        assert job is not None and "exceeded its timeout of 0.2s" in (job.error or "")
    assert stopped.wait(2), "the sync handler was told to stop through ctx.cancel_requested"


async def test_worker_claims_only_the_job_types_it_knows(
    aapp: App, registry: Registry, settings: Settings
) -> None:
    @registry.job(name="known")
    def known(ctx: JobContext) -> None: ...

    @registry.job(name="new-in-next-release")
    def newer(ctx: JobContext) -> None: ...

    await known.adelay()
    newer_handle = await newer.adelay()
    old_code = Registry()
    old_code.register(known.definition)
    old_worker_app = App(registry=old_code, settings=settings)
    try:
        result = await adrain(old_worker_app)
    finally:
        await old_worker_app.aclose()
    assert result.succeeded == 1
    job = await newer_handle.aget()
    assert job is not None and job.status is JobStatus.QUEUED


async def test_queues_are_honoured(aapp: App, registry: Registry) -> None:
    from jobworker import ScheduleOptions

    @registry.job(name="q")
    def q(ctx: JobContext) -> str:
        return ctx.queue

    await q.adelay(options=ScheduleOptions(queue="a"))
    await q.adelay(options=ScheduleOptions(queue="b"))
    assert (await adrain(aapp, queues=["a"])).succeeded == 1
    assert (await adrain(aapp, queues=["c"])).attempts == 0
    assert (await adrain(aapp, queues=["b", "c"])).succeeded == 1


async def test_leases_are_renewed_while_a_long_job_runs(
    registry: Registry, sqlite_url: str
) -> None:
    settings = Settings(
        database_url=sqlite_url, lease_duration=1.5, rescue_interval=0.1, poll_interval=0.05
    )
    app = App(registry=registry, settings=settings)
    runs: list[int] = []

    @registry.job(name="long")
    async def long(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        await asyncio.sleep(3.5)  # more than twice the lease: it must be renewed to survive

    handle = await long.adelay()
    rescuer = Worker(app, WorkerOptions(worker_id=worker_id("rescuer"), job_types=["other"]))
    rescuer_task = asyncio.create_task(rescuer.run())
    try:
        assert (await adrain(app)).succeeded == 1
    finally:
        rescuer.request_stop()
        await rescuer_task
        await app.aclose()
    assert runs == [1]
    job = await app.client.aget(handle.job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED


def test_sync_drain_and_capturing_context(app: App, registry: Registry) -> None:
    @registry.job(name="greet")
    def greet(ctx: JobContext, name: str) -> str:
        ctx.raise_if_cancelled()
        return f"hello {name} (attempt {ctx.attempt})"

    assert greet(capturing_context(attempt=2), "unit") == "hello unit (attempt 2)"
    greet.delay(name="drain")
    assert drain(app).succeeded == 1
    [job] = app.client.list()
    assert job.result == "hello drain (attempt 1)"


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_many_jobs_run_exactly_once_in_process(
    aapp: App, registry: Registry, parallelism: int
) -> None:
    seen: list[int] = []

    @registry.job(name="count")
    async def count(ctx: JobContext, i: int) -> None:
        seen.append(i)

    await count.adelay_many([{"i": i} for i in range(300)])
    result = await adrain(aapp, parallelism=parallelism)
    assert result.succeeded == 300
    assert sorted(seen) == list(range(300))


async def test_a_handlers_own_timeout_error_is_an_ordinary_failure(
    aapp: App, registry: Registry
) -> None:
    @registry.job(name="net", max_attempts=1)
    async def net(ctx: JobContext) -> None:
        raise TimeoutError("upstream did not answer")

    handle = await net.adelay()
    await adrain(aapp)
    job = await handle.aget()
    assert job is not None and job.error == "TimeoutError: upstream did not answer"
    assert "Traceback" in (job.traceback or "")


async def test_workers_consume_the_queues_their_jobs_declare(aapp: App, registry: Registry) -> None:
    @registry.job(name="billing-job", queue="billing")
    def billing(ctx: JobContext) -> str:
        return ctx.queue

    handle = await billing.adelay()
    assert (await adrain(aapp)).succeeded == 1
    assert (await handle.aget()).result == "billing"  # type: ignore[union-attr]


async def test_a_job_ending_during_a_claim_leads_to_another_claim(
    registry: Registry, sqlite_url: str
) -> None:
    """No notifications on SQLite: a job ending is what wakes a worker early. One that enqueues
    a follow-up and ends while a claim is in flight (the claim missed the follow-up) must lead
    to another claim, not to the next poll 30 s later."""
    release = asyncio.Event()
    followed = asyncio.Event()

    @registry.job(name="first")
    async def first(ctx: JobContext, wait: bool) -> None:
        if wait:
            await release.wait()
            await follow_up.adelay()

    @registry.job(name="follow-up")
    async def follow_up(ctx: JobContext) -> None:
        followed.set()

    app = App(registry=registry, settings=Settings(database_url=sqlite_url, poll_interval=30))
    worker = Worker(app, WorkerOptions(worker_id=worker_id("race"), parallelism=2))

    async def end_the_waiting_job() -> None:
        release.set()
        for _ in range(500):
            if not worker.current_jobs():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the released job never ended")

    # Claim 1 takes both jobs; the quick one ends and wakes claim 2, which finds nothing.
    race = ClaimRace(app, end_the_waiting_job, on_claim=2)
    await first.adelay_many([{"wait": False}, {"wait": True}])
    task = asyncio.create_task(worker.run())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(followed.wait(), 5)
    finally:
        worker.request_stop()
        await task
        await app.aclose()
    assert release.is_set() and race.claims >= 2
    assert followed.is_set(), "the job that ended during a claim left its follow-up to a poll"


async def test_a_stop_requested_during_a_claim_stops_the_worker_at_once(
    registry: Registry, sqlite_url: str
) -> None:
    @registry.job(name="idle")  # a worker with no job types never claims
    async def idle(ctx: JobContext) -> None:
        pass

    app = App(registry=registry, settings=Settings(database_url=sqlite_url, poll_interval=30))
    worker = Worker(app, WorkerOptions(worker_id=worker_id("race")))

    async def stop() -> None:
        worker.request_stop()

    ClaimRace(app, stop)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait([task], timeout=5)
        stopped = task.done()
    finally:
        task.cancel()  # only if it still waits: it would hold the test for 30 s
        await asyncio.gather(task, return_exceptions=True)
        await app.aclose()
    assert stopped, "the stop requested during a claim waited for the next poll"


async def test_a_drain_runs_what_a_job_enqueued_as_it_ended_during_a_claim(
    aapp: App, registry: Registry
) -> None:
    release = asyncio.Event()

    @registry.job(name="first")
    async def first(ctx: JobContext, wait: bool) -> None:
        if wait:
            await release.wait()
            await follow_up.adelay()

    @registry.job(name="follow-up")
    async def follow_up(ctx: JobContext) -> None:
        pass

    async def end_the_waiting_job() -> None:
        release.set()
        for _ in range(500):
            if (await aapp.client.acounts())[JobStatus.SUCCEEDED] == 2:  # written once it ended
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the released job never ended")

    # Claim 1 takes both jobs; the quick one ends and wakes claim 2, which finds nothing.
    ClaimRace(aapp, end_the_waiting_job, on_claim=2)
    await first.adelay_many([{"wait": False}, {"wait": True}])
    result = await adrain(aapp, parallelism=2)
    assert (result.attempts, result.succeeded) == (3, 3), "the drain left the follow-up behind"
