"""Job lifecycle features, on every backend (in-process workers; processes are elsewhere)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from jobworker import (
    App,
    JobCancelledError,
    JobContext,
    JobFailedError,
    JobNotFoundError,
    Registry,
    ResultTimeoutError,
    ScheduleOptions,
)
from jobworker.testing import adrain

from .conftest import FAST, Store


class Report(msgspec.Struct):
    rows: int
    name: str


@pytest.fixture
def jobs() -> Registry:
    registry = Registry()

    @registry.job(name="report")
    async def report(ctx: JobContext, rows: int) -> Report:
        return Report(rows=rows, name=f"report-{rows}")

    @registry.job(name="explode", max_attempts=1)
    def explode(ctx: JobContext) -> None:
        raise ValueError("kaboom")

    return registry


@pytest.fixture
async def app(store: Store, jobs: Registry) -> AsyncIterator[App]:
    instance = App(store.url, registry=jobs, database_schema=store.schema, **FAST)
    yield instance
    await instance.aclose()


async def test_result_waits_and_decodes_to_the_return_type(app: App, jobs: Registry) -> None:
    report = jobs.get("report")
    handle = await app.client.aenqueue(report.name, {"rows": 7})
    waiter = asyncio.create_task(handle.aresult(timeout=10))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await adrain(app)
    assert await waiter == Report(rows=7, name="report-7")


async def test_result_of_a_dead_job_raises_with_the_stored_error(app: App) -> None:
    handle = await app.client.aenqueue("explode")
    await adrain(app)
    with pytest.raises(JobFailedError, match="ValueError: kaboom") as info:
        await handle.aresult(timeout=5)
    assert "Traceback" in (info.value.traceback or "")


async def test_result_times_out_and_unknown_jobs_are_errors(app: App) -> None:
    handle = await app.client.aenqueue("report", {"rows": 1})
    with pytest.raises(ResultTimeoutError, match=r"did not finish within 0\.2s"):
        await handle.aresult(timeout=0.2)
    with pytest.raises(JobNotFoundError):
        await app.client.aresult(uuid.uuid4(), timeout=1)
    assert issubclass(ResultTimeoutError, TimeoutError)
    _ = JobCancelledError  # raised for cancelled jobs, see the cancellation tests


async def test_a_duplicate_enqueue_waits_on_the_original_jobs_result(app: App) -> None:
    options = ScheduleOptions(idempotency_key="report:9")
    first = await app.client.aenqueue("report", {"rows": 9}, options)
    second = await app.client.aenqueue("report", {"rows": 10}, options)
    assert not second.created and second.job_id == first.job_id
    await adrain(app)
    assert await second.aresult(timeout=5) == Report(rows=9, name="report-9")


def test_blocking_result(store: Store, jobs: Registry) -> None:
    app = App(store.url, registry=jobs, database_schema=store.schema, **FAST)
    try:
        handle = app.client.enqueue("report", {"rows": 3})
        from jobworker.testing import drain

        drain(app)
        assert handle.result(timeout=5) == Report(rows=3, name="report-3")
    finally:
        app.close()


# Helpers ------------------------------------------------------------------------------------

import contextlib  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from jobworker import CancelResult, InvalidJobStateError, JobStatus  # noqa: E402
from jobworker.worker import Worker, WorkerOptions, worker_id  # noqa: E402


@contextlib.asynccontextmanager
async def running_worker(app: App, **options: object) -> AsyncIterator[Worker]:
    worker = Worker(app, WorkerOptions(worker_id=worker_id("test"), **options))  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await task


async def wait_status(
    app: App, job_id: uuid.UUID, *statuses: JobStatus, timeout: float = 10
) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await app.client.aget(job_id)
        if job is not None and job.status in statuses:
            return job.status
        await asyncio.sleep(0.02)
    job = await app.client.aget(job_id)
    raise AssertionError(f"job {job_id} is {job.status if job else None}, not {statuses}")


def lifecycle_app(store: Store, registry: Registry, **settings: object) -> App:
    merged = {**FAST, "cancel_poll_interval": 0.1, **settings}
    return App(store.url, registry=registry, database_schema=store.schema, **merged)


# Delayed jobs -------------------------------------------------------------------------------


async def test_a_delayed_job_waits_for_run_at_and_never_runs_before(store: Store) -> None:
    registry = Registry()
    started: list[datetime] = []

    @registry.job(name="later")
    async def later(ctx: JobContext) -> None:
        started.append(datetime.now(UTC))

    app = lifecycle_app(store, registry)
    try:
        run_at = datetime.now(UTC) + timedelta(seconds=0.6)
        handle = await later.adelay(options=ScheduleOptions(run_at=run_at))
        assert (await handle.aget()).status is JobStatus.SCHEDULED  # type: ignore[union-attr]
        async with running_worker(app):
            await wait_status(app, handle.job_id, JobStatus.SUCCEEDED)
        assert started[0] >= run_at
        # Within a poll interval (50 ms here), with room for a loaded test machine.
        assert started[0] - run_at < timedelta(seconds=2)
    finally:
        await app.aclose()


# Idempotency --------------------------------------------------------------------------------


def test_fifty_concurrent_enqueuers_racing_on_one_key_make_one_job(store: Store) -> None:
    registry = Registry()

    @registry.job(name="once")
    def once(ctx: JobContext, n: int) -> None: ...

    apps = [
        App(store.url, registry=registry, database_schema=store.schema, pool_size=2)
        for _ in range(50)
    ]
    barrier = threading.Barrier(50)
    ids: list[uuid.UUID] = []

    def enqueue(app: App, n: int) -> None:
        app.client.counts()  # connect before the race
        barrier.wait()
        handle = app.client.enqueue("once", {"n": n}, ScheduleOptions(idempotency_key="race"))
        ids.append(handle.job_id)

    threads = [threading.Thread(target=enqueue, args=(app, n)) for n, app in enumerate(apps)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(ids) == 50 and len(set(ids)) == 1
        assert len(apps[0].client.list(idempotency_key="race")) == 1
        assert apps[0].client.find_by_idempotency_key("race").job_id == ids[0]  # type: ignore[union-attr]
        assert apps[0].client.find_by_idempotency_key("nope") is None
    finally:
        for app in apps:
            app.close()


async def test_an_idempotency_key_is_free_again_once_its_job_is_purged(store: Store) -> None:
    registry = Registry()

    @registry.job(name="short-lived", result_ttl=0)
    def short_lived(ctx: JobContext) -> None: ...

    app = lifecycle_app(store, registry)
    try:
        first = await short_lived.adelay(options=ScheduleOptions(idempotency_key="k"))
        await adrain(app)
        again = await short_lived.adelay(options=ScheduleOptions(idempotency_key="k"))
        assert again.job_id == first.job_id and not again.created
        storage = await app.storage()
        assert await storage.maintenance.purge_expired() == 1
        fresh = await short_lived.adelay(options=ScheduleOptions(idempotency_key="k"))
        assert fresh.created and fresh.job_id != first.job_id
    finally:
        await app.aclose()


# Continuations ------------------------------------------------------------------------------


@pytest.fixture
def chain() -> Registry:
    registry = Registry()

    @registry.job(name="step")
    async def step(ctx: JobContext, name: str, fail: bool = False) -> str:
        if fail:
            raise RuntimeError(f"{name} failed")
        return name

    return registry


async def test_a_chain_of_continuations_runs_in_order(store: Store, chain: Registry) -> None:
    app = lifecycle_app(store, chain)
    try:
        a = await app.client.aenqueue("step", {"name": "a"})
        b = await app.client.aenqueue(
            "step", {"name": "b"}, ScheduleOptions(continues_job_id=a.job_id)
        )
        c = await app.client.aenqueue(
            "step", {"name": "c"}, ScheduleOptions(continues_job_id=b.job_id)
        )
        assert (await b.aget()).status is JobStatus.AWAITING  # type: ignore[union-attr]
        assert (await c.aget()).status is JobStatus.AWAITING  # type: ignore[union-attr]
        for _ in range(3):
            await adrain(app)
        assert [await h.aresult(timeout=5) for h in (a, b, c)] == ["a", "b", "c"]
        jobs = [await h.aget() for h in (a, b, c)]
        assert jobs[0].completed_at <= jobs[1].started_at <= jobs[2].started_at  # type: ignore[union-attr,operator]
    finally:
        await app.aclose()


async def test_a_dead_parent_cancels_the_whole_chain_with_the_reason(
    store: Store, chain: Registry
) -> None:
    app = lifecycle_app(store, chain, default_max_retries=0)
    try:
        a = await app.client.aenqueue("step", {"name": "a", "fail": True})
        b = await app.client.aenqueue(
            "step", {"name": "b"}, ScheduleOptions(continues_job_id=a.job_id)
        )
        c = await app.client.aenqueue(
            "step", {"name": "c"}, ScheduleOptions(continues_job_id=b.job_id)
        )
        await adrain(app)
        for handle in (b, c):
            job = await handle.aget()
            assert job is not None and job.status is JobStatus.CANCELLED
            assert job.error == f"parent job {a.job_id} ended dead"
            with pytest.raises(JobCancelledError):
                await handle.aresult(timeout=1)
    finally:
        await app.aclose()


async def test_a_parent_that_already_ended_settles_the_new_continuation_at_once(
    store: Store, chain: Registry
) -> None:
    app = lifecycle_app(store, chain, default_max_retries=0)
    try:
        ok = await app.client.aenqueue("step", {"name": "ok"})
        bad = await app.client.aenqueue("step", {"name": "bad", "fail": True})
        await adrain(app)
        after_ok = await app.client.aenqueue(
            "step", {"name": "x"}, ScheduleOptions(continues_job_id=ok.job_id)
        )
        after_bad = await app.client.aenqueue(
            "step", {"name": "y"}, ScheduleOptions(continues_job_id=bad.job_id)
        )
        assert (await after_ok.aget()).status is JobStatus.QUEUED  # type: ignore[union-attr]
        assert (await after_bad.aget()).status is JobStatus.CANCELLED  # type: ignore[union-attr]
        with pytest.raises(JobNotFoundError):
            await app.client.aenqueue(
                "step", {"name": "z"}, ScheduleOptions(continues_job_id=uuid.uuid4())
            )
        assert len(await app.client.alist(limit=100)) == 4, "the failed enqueue stored nothing"
    finally:
        await app.aclose()


async def test_continuations_wait_through_a_parent_retry(store: Store) -> None:
    registry = Registry()

    @registry.job(name="flaky-parent", max_attempts=3)
    async def flaky_parent(ctx: JobContext) -> int:
        if ctx.attempt < 2:
            raise ConnectionError("try again")
        return ctx.attempt

    @registry.job(name="child")
    async def child(ctx: JobContext) -> str:
        return "child ran"

    app = lifecycle_app(store, registry)
    try:
        parent = await flaky_parent.adelay()
        kid = await child.adelay(options=ScheduleOptions(continues_job_id=parent.job_id))
        await adrain(app)  # first attempt fails: the parent is failed, the child still waits
        assert (await parent.aget()).status is JobStatus.FAILED  # type: ignore[union-attr]
        assert (await kid.aget()).status is JobStatus.AWAITING  # type: ignore[union-attr]
        async with running_worker(app):
            assert await kid.aresult(timeout=10) == "child ran"
        assert await parent.aresult(timeout=1) == 2
    finally:
        await app.aclose()


async def test_continuations_enqueued_while_parents_finish_are_never_stranded(
    store: Store, chain: Registry
) -> None:
    app = lifecycle_app(store, chain)
    try:
        parents = await app.client.aenqueue_many("step", [{"name": f"p{i}"} for i in range(40)])

        async def enqueue_children() -> list[uuid.UUID]:
            kids = []
            for parent in parents:
                options = ScheduleOptions(continues_job_id=parent.job_id)
                kids.append((await app.client.aenqueue("step", {"name": "k"}, options)).job_id)
                await asyncio.sleep(0.002)
            return kids

        async with running_worker(app, parallelism=4):
            kids = await enqueue_children()
            for kid in kids:
                await wait_status(app, kid, JobStatus.SUCCEEDED, timeout=20)
    finally:
        await app.aclose()


# Cancellation -------------------------------------------------------------------------------


@pytest.fixture
def cancellable() -> Registry:
    registry = Registry()

    @registry.job(name="sleeper", max_attempts=5)
    async def sleeper(ctx: JobContext, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "woke up"

    @registry.job(name="sync-loop", max_attempts=5)
    def sync_loop(ctx: JobContext) -> str:
        for _ in range(1000):
            ctx.raise_if_cancelled()
            time.sleep(0.01)
        return "finished"

    return registry


async def test_waiting_jobs_are_cancelled_at_once(store: Store, cancellable: Registry) -> None:
    app = lifecycle_app(store, cancellable)
    try:
        queued = await app.client.aenqueue("sleeper", {"seconds": 0})
        later = datetime.now(UTC) + timedelta(hours=1)
        scheduled = await app.client.aenqueue(
            "sleeper", {"seconds": 0}, ScheduleOptions(run_at=later)
        )
        awaiting = await app.client.aenqueue(
            "sleeper", {"seconds": 0}, ScheduleOptions(continues_job_id=scheduled.job_id)
        )
        assert await app.client.acancel(queued.job_id, "not needed") is CancelResult.CANCELLED
        assert await app.client.acancel(scheduled.job_id) is CancelResult.CANCELLED
        job = await queued.aget()
        assert job is not None and job.status is JobStatus.CANCELLED and job.error == "not needed"
        child = await awaiting.aget()
        assert child is not None and child.status is JobStatus.CANCELLED
        assert child.error == f"parent job {scheduled.job_id} ended cancelled"
        assert (await adrain(app)).attempts == 0
        again = await app.client.acancel(queued.job_id)
        assert again is CancelResult.FINISHED
        with pytest.raises(JobNotFoundError):
            await app.client.acancel(uuid.uuid4())
    finally:
        await app.aclose()


@pytest.mark.parametrize("job_name", ["sleeper", "sync-loop"])
async def test_running_jobs_stop_when_cancelled_and_are_not_retried(
    store: Store, cancellable: Registry, job_name: str
) -> None:
    app = lifecycle_app(store, cancellable)
    try:
        args = {"seconds": 30} if job_name == "sleeper" else {}
        handle = await app.client.aenqueue(job_name, args)
        async with running_worker(app):
            await wait_status(app, handle.job_id, JobStatus.RUNNING)
            asked = time.monotonic()
            assert await app.client.acancel(handle.job_id) is CancelResult.REQUESTED
            await wait_status(app, handle.job_id, JobStatus.CANCELLED, timeout=5)
            assert time.monotonic() - asked < 5.0  # polled every 0.1 s; NOTIFY on PostgreSQL
            await asyncio.sleep(0.3)
        job = await handle.aget()
        assert job is not None and job.status is JobStatus.CANCELLED and job.attempt == 1
        [attempt] = await app.client.aattempts(handle.job_id)
        assert attempt.outcome.value == "cancelled"
    finally:
        await app.aclose()


async def test_cancel_racing_completion_leaves_one_consistent_end(
    store: Store, cancellable: Registry
) -> None:
    app = lifecycle_app(store, cancellable)
    try:
        handles = await app.client.aenqueue_many("sleeper", [{"seconds": 0.05}] * 20)
        async with running_worker(app, parallelism=20):
            await asyncio.sleep(0.04)
            results = [await app.client.acancel(h.job_id) for h in handles]
            for handle in handles:
                await wait_status(app, handle.job_id, JobStatus.SUCCEEDED, JobStatus.CANCELLED)
        for handle, result in zip(handles, results, strict=True):
            job = await handle.aget()
            assert job is not None and job.attempt <= 1
            attempts = await app.client.aattempts(handle.job_id)
            assert len(attempts) <= 1
            if result is CancelResult.CANCELLED:
                assert job.status is JobStatus.CANCELLED and attempts == []
    finally:
        await app.aclose()


# Concurrency caps, pauses -------------------------------------------------------------------


async def test_a_concurrency_cap_holds_across_workers(store: Store) -> None:
    registry = Registry()
    running = 0
    peak = 0

    @registry.job(name="capped", concurrency=2)
    async def capped(ctx: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    @registry.job(name="free")
    async def free(ctx: JobContext) -> None:
        await asyncio.sleep(0.05)

    app = lifecycle_app(store, registry)
    try:
        capped_jobs = await capped.adelay_many([{}] * 12)
        free_jobs = await free.adelay_many([{}] * 12)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):  # three workers, each with its own storage connection
                await stack.enter_async_context(running_worker(app, parallelism=5))
            for handle in [*capped_jobs, *free_jobs]:
                await wait_status(app, handle.job_id, JobStatus.SUCCEEDED, timeout=20)
        assert peak == 2
    finally:
        await app.aclose()


async def test_a_paused_queue_is_not_claimed_until_resumed(store: Store) -> None:
    registry = Registry()

    @registry.job(name="mail", queue="mail")
    async def mail(ctx: JobContext, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    app = lifecycle_app(store, registry)
    try:
        async with running_worker(app) as worker:
            running = await mail.adelay(seconds=0.6)
            await wait_status(app, running.job_id, JobStatus.RUNNING)
            await app.client.apause_queue("mail")
            for _ in range(250):  # the worker re-reads paused queues every poll interval
                if "mail" not in worker.active_queues:
                    break
                await asyncio.sleep(0.02)
            assert "mail" not in worker.active_queues
            held = await mail.adelay()
            await asyncio.sleep(0.5)
            assert (await held.aget()).status is JobStatus.QUEUED  # type: ignore[union-attr]
            await wait_status(app, running.job_id, JobStatus.SUCCEEDED)  # not interrupted
            [info] = [q for q in await app.client.aqueues() if q.name == "mail"]
            assert info.paused and info.counts["queued"] == 1
            await app.client.aresume_queue("mail")
            await wait_status(app, held.job_id, JobStatus.SUCCEEDED)
    finally:
        await app.aclose()


# Manual operations, TTL and the janitor -----------------------------------------------------


async def test_retry_and_delete(store: Store, chain: Registry) -> None:
    app = lifecycle_app(store, chain, default_max_retries=0)
    try:
        bad = await app.client.aenqueue("step", {"name": "bad", "fail": True})
        ok = await app.client.aenqueue("step", {"name": "ok"})
        await adrain(app)
        assert (await bad.aget()).status is JobStatus.DEAD  # type: ignore[union-attr]
        await app.client.aretry(bad.job_id)
        job = await bad.aget()
        assert job is not None and job.status is JobStatus.QUEUED and job.max_attempts == 2
        await adrain(app)
        assert len(await app.client.aattempts(bad.job_id)) == 2
        with pytest.raises(InvalidJobStateError, match="only dead jobs can be retried"):
            await app.client.aretry(ok.job_id)
        with pytest.raises(JobNotFoundError):
            await app.client.aretry(uuid.uuid4())
        await app.client.adelete(ok.job_id)
        assert await ok.aget() is None and await app.client.aattempts(ok.job_id) == []
        with pytest.raises(JobNotFoundError):
            await app.client.adelete(ok.job_id)
    finally:
        await app.aclose()


async def test_deleting_a_running_job_is_refused(store: Store, cancellable: Registry) -> None:
    app = lifecycle_app(store, cancellable)
    try:
        handle = await app.client.aenqueue("sleeper", {"seconds": 5})
        async with running_worker(app, drain_timeout=0):
            await wait_status(app, handle.job_id, JobStatus.RUNNING)
            with pytest.raises(InvalidJobStateError, match="cancel it first"):
                await app.client.adelete(handle.job_id)
    finally:
        await app.aclose()


async def test_result_ttl_and_the_janitor(store: Store) -> None:
    registry = Registry()

    @registry.job(name="brief", result_ttl=0.2)
    async def brief(ctx: JobContext) -> None: ...

    @registry.job(name="kept")
    async def kept(ctx: JobContext) -> None: ...

    app = lifecycle_app(store, registry, janitor_interval=0.3, janitor_batch_size=50)
    try:
        brief_jobs = await brief.adelay_many([{}] * 120)
        per_enqueue = await kept.adelay(options=ScheduleOptions(result_ttl=0.2))
        kept_job = await kept.adelay()
        async with running_worker(app):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if await per_enqueue.aget() is None and await brief_jobs[-1].aget() is None:
                    break
                await asyncio.sleep(0.1)
        assert await per_enqueue.aget() is None
        assert all([await h.aget() is None for h in brief_jobs]), "purged in several batches"
        assert (await kept_job.aget()).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    finally:
        await app.aclose()


# Edge cases found while documenting ---------------------------------------------------------


async def test_a_running_jobs_cancel_reason_is_kept(store: Store, cancellable: Registry) -> None:
    app = lifecycle_app(store, cancellable)
    try:
        handle = await app.client.aenqueue("sleeper", {"seconds": 30})
        async with running_worker(app):
            await wait_status(app, handle.job_id, JobStatus.RUNNING)
            await app.client.acancel(handle.job_id, "customer asked")
            await wait_status(app, handle.job_id, JobStatus.CANCELLED)
        job = await handle.aget()
        assert job is not None and job.error == "customer asked"
    finally:
        await app.aclose()


async def test_a_sync_handler_that_fails_after_a_cancel_request_ends_cancelled(
    store: Store,
) -> None:
    registry = Registry()

    @registry.job(name="stubborn", max_attempts=4)
    def stubborn(ctx: JobContext) -> None:
        while not ctx.cancel_requested:
            time.sleep(0.01)
        raise RuntimeError("cleanup failed while stopping")

    app = lifecycle_app(store, registry)
    try:
        handle = await stubborn.adelay()
        async with running_worker(app):
            await wait_status(app, handle.job_id, JobStatus.RUNNING)
            await app.client.acancel(handle.job_id)
            await wait_status(app, handle.job_id, JobStatus.CANCELLED)
        job = await handle.aget()
        assert job is not None and job.attempt == 1, "a cancelled job is not retried"
    finally:
        await app.aclose()


async def test_a_cancel_request_is_honoured_by_a_worker_shutting_down(store: Store) -> None:
    registry = Registry()

    @registry.job(name="deaf", max_attempts=3)
    def deaf(ctx: JobContext) -> None:
        time.sleep(1.5)  # never looks at ctx.cancel_requested

    app = lifecycle_app(store, registry, cancel_poll_interval=60)
    try:
        handle = await deaf.adelay()
        async with running_worker(app, drain_timeout=0.2):
            await wait_status(app, handle.job_id, JobStatus.RUNNING)
            await app.client.acancel(handle.job_id, "stop it")
        job = await handle.aget()
        assert job is not None and job.status is JobStatus.CANCELLED, "not released to run again"
    finally:
        await app.aclose()


async def test_a_timed_out_sync_job_does_not_hold_up_the_next(store: Store) -> None:
    registry = Registry()

    @registry.job(name="hangs", timeout=0.2, max_attempts=1)
    def hangs(ctx: JobContext) -> None:
        time.sleep(2)

    @registry.job(name="quick", timeout=1.0)
    def quick(ctx: JobContext) -> str:
        return "done"

    app = lifecycle_app(store, registry)
    try:
        stuck = await hangs.adelay()
        async with running_worker(app, parallelism=1):
            await wait_status(app, stuck.job_id, JobStatus.DEAD)
            began = time.monotonic()
            after = await quick.adelay()
            assert await after.aresult(timeout=5) == "done"
            # The stuck thread has ~1.8 s left to sleep: finishing well before proves it did not
            # hold up the slot.
            assert time.monotonic() - began < 1.5, "not waiting for the stuck thread"
    finally:
        await app.aclose()


async def test_deleting_a_parent_cancels_its_waiting_continuations(
    store: Store, chain: Registry
) -> None:
    app = lifecycle_app(store, chain)
    try:
        later = datetime.now(UTC) + timedelta(hours=1)
        parent = await app.client.aenqueue("step", {"name": "p"}, ScheduleOptions(run_at=later))
        child = await app.client.aenqueue(
            "step", {"name": "c"}, ScheduleOptions(continues_job_id=parent.job_id)
        )
        await app.client.adelete(parent.job_id)
        job = await child.aget()
        assert job is not None and job.status is JobStatus.CANCELLED
        assert job.error == f"parent job {parent.job_id} no longer exists"
    finally:
        await app.aclose()


async def test_an_attempt_failing_before_the_worker_notices_its_cancel_ends_it(
    store: Store,
) -> None:
    registry = Registry()
    release = asyncio.Event()

    @registry.job(name="fails-late", max_attempts=5)
    async def fails_late(ctx: JobContext) -> None:
        await release.wait()
        raise ConnectionError("upstream went away")

    # The worker polls for cancel requests only every minute, and PostgreSQL's NOTIFY reaches it
    # too late: the attempt fails first. It must end cancelled, not be retried.
    app = lifecycle_app(store, registry, cancel_poll_interval=60)
    try:
        handle = await fails_late.adelay()
        async with running_worker(app):
            await wait_status(app, handle.job_id, JobStatus.RUNNING)
            storage = await app.storage()
            await storage.control.cancel(handle.job_id, "no longer wanted")
            release.set()
            await wait_status(app, handle.job_id, JobStatus.CANCELLED, JobStatus.FAILED)
        job = await handle.aget()
        assert job is not None and job.status is JobStatus.CANCELLED and job.attempt == 1
        assert job.error == "no longer wanted"
    finally:
        await app.aclose()


async def test_many_first_uses_at_once_share_one_opened_storage(store: Store) -> None:
    app = App(store.url, registry=Registry(), database_schema=store.schema)
    try:
        found = await asyncio.gather(*(app.client.aget(uuid.uuid4()) for _ in range(20)))
        assert found == [None] * 20
    finally:
        await app.aclose()
