"""Helpers for testing code that defines and enqueues jobs.

- `capturing_context()` builds a context to call a handler directly, with no storage at all.
- `drain(app)` / `await adrain(app)` run every due job in this process and report how it went.
- `enqueued(app, job)` / `await aenqueued(app, job)`: the jobs stored, oldest first, to assert
  what code under test enqueued.
- `bound_for_test(app)`: `.delay()` on the app's jobs goes to it for a while, then back.
- `temporary_schema(url)` / `atemporary_schema(url)`: a migrated PostgreSQL schema, dropped after.

The pytest fixtures over these are in `jobworker.pytest_plugin` (docs/testing.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from jobworker.app import App
from jobworker.clock import FrozenClock
from jobworker.context import JobContext
from jobworker.models import AttemptOutcome, EventKind, JobDescriptor, JobEvent, JobStatus
from jobworker.worker import Worker, WorkerOptions, worker_id

__all__ = [
    "FAST_SETTINGS",
    "CapturingContext",
    "DrainResult",
    "FrozenClock",
    "adrain",
    "aenqueued",
    "atemporary_schema",
    "bound_for_test",
    "capturing_context",
    "capturing_context_for",
    "drain",
    "enqueued",
    "temporary_schema",
]

# Settings for an App under test: a failed attempt is retried within a tenth of a second and an
# idle worker looks for work every 50 ms, so that a drain does not wait on production delays.
FAST_SETTINGS: dict[str, Any] = {
    "retry_base_delay": 0.05,
    "retry_max_delay": 0.1,
    "poll_interval": 0.05,
}

P = TypeVar("P")


class CapturingContext(JobContext[P]):
    """A job context for unit tests: no worker, no storage. The events the handler emits are
    kept in `events`, numbered as a worker would number them."""

    events: list[JobEvent]

    def of_kind(self, kind: EventKind | str) -> list[Any]:
        """The decoded payloads of the captured events of one kind, in order."""
        wanted = EventKind(kind)
        return [event.decoded() for event in self.events if event.kind is wanted]


def capturing_context(
    *,
    job_id: uuid.UUID | None = None,
    job_type: str = "test",
    attempt: int = 1,
    max_attempts: int = 1,
    queue: str = "default",
    progress_type: Any = Any,
    max_payload_bytes: int = 65536,
) -> CapturingContext[Any]:
    """A context for calling a handler directly. Pass `progress_type` (or use
    `capturing_context_for(job)`) to have `ctx.report` validated as the worker would."""
    events: list[JobEvent] = []
    the_job = job_id or uuid.uuid4()

    def keep(seq: int, kind: EventKind, at: float, payload: msgspec.Raw) -> None:
        occurred_at = datetime.fromtimestamp(at, UTC)
        events.append(
            JobEvent(job_id=the_job, seq=seq, kind=kind, occurred_at=occurred_at, payload=payload)
        )

    ctx: CapturingContext[Any] = CapturingContext(
        job_id=the_job,
        job_type=job_type,
        attempt=attempt,
        max_attempts=max_attempts,
        queue=queue,
        enqueued_at=datetime.now(UTC),
        worker_id="testing",
        emit=keep,
        progress_type=progress_type,
        max_payload_bytes=max_payload_bytes,
    )
    ctx.events = events
    return ctx


def capturing_context_for(job: Any, **options: Any) -> CapturingContext[Any]:
    """`capturing_context` with the name and progress type of a `@job` function."""
    definition = job.definition
    return capturing_context(
        job_type=definition.name, progress_type=definition.progress_type, **options
    )


class DrainResult(msgspec.Struct, frozen=True):
    """What one drain did: attempts run, and how they ended."""

    attempts: int
    succeeded: int
    failed: int
    dead: int


async def adrain(
    app: App, *, queues: list[str] | None = None, parallelism: int = 10
) -> DrainResult:
    """Run every job that is due now, in this process, until none is left.

    Jobs whose retry lies in the future stay `failed` (run `drain` again once it is due, or
    set the retry delays small in the test's settings).
    """
    worker = Worker(
        app,
        WorkerOptions(
            worker_id=worker_id("drain"),
            parallelism=parallelism,
            queues=queues,
            maintenance=False,
            exit_when_idle=True,
            register=False,  # a drain in a test is no worker process of the registry
        ),
    )
    await worker.run()
    return DrainResult(
        attempts=worker.finished,
        succeeded=worker.outcomes[AttemptOutcome.SUCCEEDED],
        failed=worker.outcomes[AttemptOutcome.FAILED],
        dead=worker.outcomes[AttemptOutcome.DEAD],
    )


def drain(app: App, *, queues: list[str] | None = None, parallelism: int = 10) -> DrainResult:
    """Blocking `adrain`, for tests without an event loop."""

    async def run() -> DrainResult:
        try:
            return await adrain(app, queues=queues, parallelism=parallelism)
        finally:
            await app.aclose()

    return asyncio.run(run())


async def aenqueued(
    app: App, job: Any = None, *, status: JobStatus | str | None = None
) -> list[JobDescriptor]:
    """The jobs stored in `app`, oldest first: of `job` (a `@job` function, its definition or
    its name) if given, in `status` if given. `job.args` holds each one's arguments as JSON
    decoded them."""
    name = None if job is None else job if isinstance(job, str) else job.name
    found: list[JobDescriptor] = []
    before = None
    while True:
        page = await app.client.alist(job_type=name, status=status, before=before, limit=1000)
        found.extend(page)
        if page.next_before is None:
            return found[::-1]
        before = page.next_before


def enqueued(
    app: App, job: Any = None, *, status: JobStatus | str | None = None
) -> list[JobDescriptor]:
    """Blocking `aenqueued`, for tests without an event loop."""
    return app.portal.call(aenqueued(app, job, status=status))


@contextlib.contextmanager
def bound_for_test(app: App) -> Iterator[App]:
    """`.delay()` on `app`'s jobs goes to `app` inside the block, even if the code under test
    made an App of its own for that registry at import; on the way out the registry goes back
    to what it was bound to (or to nothing)."""
    registry = app.registry
    previous, was_released = registry.bound, registry._released
    registry.bind(app.client, replace=True)
    try:
        yield app
    finally:
        if previous is None:
            registry.release(app.client)
        else:
            registry.bind(previous, replace=True)
            if was_released:
                registry.release(previous)


async def _migrate_schema(url: str, schema: str) -> None:
    from jobworker.config import Settings
    from jobworker.storage import create_storage

    storage = create_storage(url, Settings(database_url=url, database_schema=schema))
    await storage.open()
    try:
        await storage.schema.migrate()
    finally:
        await storage.close()


async def _drop_schema(url: str, schema: str) -> None:
    from jobworker.storage.postgres.schema import drop_schema

    await drop_schema(url, schema)


def _schema_name() -> str:
    return f"jw_test_{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def atemporary_schema(url: str) -> AsyncIterator[str]:
    """A new jobworker schema in the PostgreSQL database at `url`, migrated; its name. It is
    dropped with everything in it on the way out."""
    schema = _schema_name()
    try:
        await _migrate_schema(url, schema)
        yield schema
    finally:
        await _drop_schema(url, schema)


@contextlib.contextmanager
def temporary_schema(url: str) -> Iterator[str]:
    """Blocking `atemporary_schema` (it runs its SQL on loops of its own)."""
    schema = _schema_name()
    try:
        asyncio.run(_migrate_schema(url, schema))
        yield schema
    finally:
        asyncio.run(_drop_schema(url, schema))
