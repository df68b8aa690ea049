"""Helpers for testing code that defines and enqueues jobs.

- `capturing_context()` builds a context to call a handler directly, with no storage at all.
- `drain(app)` / `await adrain(app)` run every due job in this process and report how it went.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from jobworker.app import App
from jobworker.clock import FrozenClock
from jobworker.context import JobContext
from jobworker.models import AttemptOutcome, EventKind, JobEvent
from jobworker.worker import Worker, WorkerOptions, worker_id

__all__ = [
    "CapturingContext",
    "DrainResult",
    "FrozenClock",
    "adrain",
    "capturing_context",
    "capturing_context_for",
    "drain",
]

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
