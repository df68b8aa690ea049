"""A worker's slots by kind of handler: async handlers up to `async_slots` at once, sync ones up to
`thread_slots` (its threads), and claims that lease no more of each than can start; an explicit
parallelism is one shared set of slots, as it always was. Real workers on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from click.testing import CliRunner

from jobworker import App, JobContext, JobStatus, Registry, Settings
from jobworker.cli import main
from jobworker.slots import Slots
from jobworker.worker import Worker, WorkerOptions, worker_id

from .conftest import FAST, Store

DEADLINE = 20.0


class Gauge:
    """How many handlers of a kind run now, and the most that ever ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.done = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1
            self.done += 1


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(app: App, **options: object) -> AsyncIterator[Worker]:
    worker = Worker(app, WorkerOptions(worker_id=worker_id("slots"), register=False, **options))  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, DEADLINE)


class Blocking:
    """A sync and an async job type whose handlers wait until released."""

    def __init__(self, registry: Registry) -> None:
        self.sync, self.async_ = Gauge(), Gauge()
        self.release_sync = threading.Event()
        self.release_async = asyncio.Event()

        @registry.job(name="slow.sync")
        def slow_sync(ctx: JobContext) -> None:
            self.sync.enter()
            try:
                self.release_sync.wait(DEADLINE)
            finally:
                self.sync.leave()

        @registry.job(name="slow.async")
        async def slow_async(ctx: JobContext) -> None:
            self.async_.enter()
            try:
                await asyncio.wait_for(self.release_async.wait(), DEADLINE)
            finally:
                self.async_.leave()

        self.sync_job, self.async_job = slow_sync, slow_async


async def running_rows(app: App) -> dict[str, int]:
    """The jobs leased now, by type, as the database holds them."""
    jobs = await app.client.alist(status=JobStatus.RUNNING, limit=1000)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.job_type] = counts.get(job.job_type, 0) + 1
    return counts


async def test_a_worker_runs_up_to_its_thread_slots_of_sync_jobs_and_async_slots_of_async_ones(
    store: Store, registry: Registry
) -> None:
    app = App(store.url, registry=registry, database_schema=store.schema, async_slots=12,
              thread_slots=3, **FAST)  # fmt: skip
    jobs = Blocking(registry)
    try:
        await jobs.sync_job.adelay_many([{}] * 10)
        await jobs.async_job.adelay_many([{}] * 30)
        async with running(app) as worker:
            await until(lambda: jobs.sync.now == 3 and jobs.async_.now == 12, "full slots")
            assert worker.slots.total == 15
            # The claims leased no more than the worker could start: the database agrees.
            assert await running_rows(app) == {"slow.sync": 3, "slow.async": 12}
            await asyncio.sleep(0.2)  # a few more poll turns: still no more leased
            assert await running_rows(app) == {"slow.sync": 3, "slow.async": 12}
            jobs.release_sync.set()
            jobs.release_async.set()
            await until(lambda: jobs.sync.done == 10 and jobs.async_.done == 30, "the drain")
        assert (jobs.sync.most, jobs.async_.most) == (3, 12)
    finally:
        jobs.release_sync.set()
        await app.aclose()


async def test_a_sync_backlog_leaves_no_more_rows_leased_than_free_threads(
    store: Store, registry: Registry
) -> None:
    app = App(store.url, registry=registry, database_schema=store.schema, thread_slots=2, **FAST)
    jobs = Blocking(registry)
    try:
        await jobs.sync_job.adelay_many([{}] * 20)
        async with running(app):
            await until(lambda: jobs.sync.now == 2, "both threads busy")
            await asyncio.sleep(0.2)
            assert await running_rows(app) == {"slow.sync": 2}
            counts = await app.client.acounts()
            assert counts[JobStatus.QUEUED] == 18
            jobs.release_sync.set()
            await until(lambda: jobs.sync.done == 20, "the drain")
        assert jobs.sync.most == 2
    finally:
        jobs.release_sync.set()
        await app.aclose()


async def test_a_mixed_backlog_drains_both_kinds(store: Store, registry: Registry) -> None:
    """Quick jobs of both kinds, the sync ones first in the queue: neither kind waits for the
    other to be done (async jobs run while sync ones are still queued)."""
    app = App(store.url, registry=registry, database_schema=store.schema, async_slots=20,
              thread_slots=2, **FAST)  # fmt: skip
    order: list[str] = []

    @registry.job(name="quick.sync")
    def quick_sync(ctx: JobContext) -> None:
        time.sleep(0.005)
        order.append("sync")

    @registry.job(name="quick.async")
    async def quick_async(ctx: JobContext) -> None:
        order.append("async")

    try:
        for _ in range(4):  # interleaved batches, sync first
            await quick_sync.adelay_many([{}] * 25)
            await quick_async.adelay_many([{}] * 50)
        async with running(app, exit_when_idle=True, maintenance=False) as worker:
            await until(lambda: worker.finished == 300, "the drain")
        assert order.count("sync") == 100 and order.count("async") == 200
        # Async jobs finished before the last sync one: the sync backlog did not hold them.
        assert order.index("async") < len(order) - order[::-1].index("sync") - 1
    finally:
        await app.aclose()


async def test_an_explicit_parallelism_is_one_set_of_slots_for_both_kinds(
    store: Store, registry: Registry
) -> None:
    app = App(store.url, registry=registry, database_schema=store.schema, **FAST)
    jobs = Blocking(registry)
    try:
        await jobs.sync_job.adelay_many([{}] * 10)
        await jobs.async_job.adelay_many([{}] * 10)
        async with running(app, parallelism=4) as worker:
            assert worker.slots.total == 4 and str(worker.slots) == "4 slot(s)"
            await until(lambda: jobs.sync.now + jobs.async_.now == 4, "four running")
            await asyncio.sleep(0.2)
            assert sum((await running_rows(app)).values()) == 4
            # Sync jobs may take every slot: four threads.
            jobs.release_async.set()
            await until(lambda: jobs.sync.now == 4, "four sync jobs at once")
            jobs.release_sync.set()
            await until(lambda: jobs.sync.done == 10 and jobs.async_.done == 10, "the drain")
        assert jobs.sync.most + 0 <= 4 and jobs.async_.most <= 4
    finally:
        jobs.release_sync.set()
        await app.aclose()


def test_the_slots_chosen_read_as_the_start_lines_say_them() -> None:
    default = Slots.of(Settings())
    assert (default.async_slots, default.thread_slots, default.total) == (100, 10, 110)
    assert str(default) == "100 async / 10 thread slots"
    assert str(Slots.of(Settings(), async_slots=50, thread_slots=4)) == "50 async / 4 thread slots"
    shared = Slots.of(Settings(thread_slots=3), parallelism=7)
    assert (shared.total, shared.thread_slots, str(shared)) == (7, 7, "7 slot(s)")
    assert shared.free(running_async=2, running_sync=3) == (2, 2)


def test_parallelism_and_slots_per_kind_are_not_given_together() -> None:
    result = CliRunner().invoke(main, ["run", "some.module", "-p", "4", "--thread-slots", "2"])
    assert result.exit_code == 2
    assert "--parallelism sets one set of slots" in result.output
