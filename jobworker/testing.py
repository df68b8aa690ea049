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
from jobworker.models import AttemptOutcome
from jobworker.worker import Worker, WorkerOptions, worker_id

__all__ = ["CapturingContext", "DrainResult", "FrozenClock", "adrain", "capturing_context", "drain"]

P = TypeVar("P")


class CapturingContext(JobContext[P]):
    """A job context for unit tests: no worker, no storage."""


def capturing_context(
    *,
    job_id: uuid.UUID | None = None,
    job_type: str = "test",
    attempt: int = 1,
    max_attempts: int = 1,
    queue: str = "default",
) -> CapturingContext[Any]:
    return CapturingContext(
        job_id=job_id or uuid.uuid4(),
        job_type=job_type,
        attempt=attempt,
        max_attempts=max_attempts,
        queue=queue,
        enqueued_at=datetime.now(UTC),
        worker_id="testing",
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
