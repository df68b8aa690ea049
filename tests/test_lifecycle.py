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
