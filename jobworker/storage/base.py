"""The one storage protocol every backend implements, and the values it trades in."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from jobworker.models import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedJob,
    Completion,
    Failed,
    JobFilter,
    JobRecord,
    JobStatus,
    NewJob,
    Released,
    Succeeded,
)


class OutcomeRow(msgspec.Struct, frozen=True):
    """A completion flattened into the columns every backend writes."""

    outcome: AttemptOutcome
    result: bytes | None
    error: str | None
    traceback: str | None
    retry_at: datetime | None
    result_ttl: float


def outcome_row(item: Completion, default_ttl: float) -> OutcomeRow:
    """How `complete_many` reads a completion; the one rule all backends share."""
    ttl = item.result_ttl if item.result_ttl is not None else default_ttl
    outcome = item.outcome
    if isinstance(outcome, Succeeded):
        return OutcomeRow(AttemptOutcome.SUCCEEDED, outcome.result, None, None, None, ttl)
    if isinstance(outcome, Failed):
        kind = AttemptOutcome.FAILED if item.retry_at is not None else AttemptOutcome.DEAD
        return OutcomeRow(kind, None, outcome.error, outcome.traceback, item.retry_at, ttl)
    if isinstance(outcome, Released):
        return OutcomeRow(AttemptOutcome.RELEASED, None, outcome.reason, None, None, ttl)
    raise TypeError(f"unknown outcome {outcome!r}")


class EnqueueResult(msgspec.Struct, frozen=True):
    job_id: uuid.UUID
    # False when an idempotency key matched an existing job, whose id is returned instead.
    created: bool = True


class Subscription(Protocol):
    """A live subscription to enqueue notifications; `close()` ends it."""

    async def close(self) -> None: ...


class NoSubscription:
    """For backends without notifications: workers rely on polling."""

    async def close(self) -> None:
        return None


class Storage(Protocol):
    """Durable job state. All methods are coroutines; all times come from the storage's clock.

    A backend is opened once per process (`open`), never shared across `fork()`, and closed with
    `close`. It validates nothing about payloads: the client has done that before `enqueue_many`.
    """

    dialect: str

    async def open(self) -> None:
        """Connect. On a backend that creates its own schema (SQLite), create it."""
        ...

    async def close(self) -> None: ...

    async def migrate(self) -> list[int]:
        """Apply the schema scripts not yet applied; returns the versions applied."""
        ...

    async def check_schema(self) -> None:
        """Raise `SchemaMissingError` unless the schema is present and current."""
        ...

    async def enqueue_many(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[EnqueueResult]:
        """Store all jobs in one transaction, or none of them.

        With `connection` (a driver connection the caller holds inside a transaction), the jobs
        are written in the caller's transaction: they exist only if it commits.
        """
        ...

    async def subscribe(self, on_enqueued: Callable[[str], None]) -> Subscription:
        """Call `on_enqueued(queue)` when jobs are enqueued ("*": maybe any queue)."""
        ...

    async def claim(
        self,
        owner: str,
        job_types: Sequence[str],
        queues: Sequence[str],
        limit: int,
        lease_duration: float,
    ) -> list[ClaimedJob]:
        """Lease up to `limit` due jobs to `owner`, most urgent first, counting an attempt each."""
        ...

    async def extend_leases(self, owner: str, lease_duration: float) -> int:
        """Push back the expiry of every lease `owner` holds; returns how many it holds."""
        ...

    async def complete_many(self, completions: Sequence[Completion]) -> int:
        """Record outcomes in one transaction; returns how many still held their lease.

        Succeeded → succeeded. Failed with `retry_at` → failed (runs again at retry_at). Failed
        without → dead. Released → queued, the attempt not counted. An outcome whose lease is no
        longer held (it expired and another worker took the job) is dropped.
        """
        ...

    async def release_owner(self, owner: str, *, lost: bool, reason: str) -> int:
        """End every lease `owner` holds.

        lost=False: a draining worker gives jobs back; attempts do not count (outcome released).
        lost=True: the owner died; the attempt counts (outcome lost) and a job out of attempts
        goes dead.
        """
        ...

    async def rescue_expired(self, limit: int = 500) -> int:
        """Treat jobs whose lease has expired as lost (see `release_owner`)."""
        ...

    async def get(self, job_id: uuid.UUID) -> JobRecord | None: ...

    async def list_jobs(
        self, filter: JobFilter, *, limit: int = 50, offset: int = 0
    ) -> list[JobRecord]:
        """Newest first."""
        ...

    async def count_by_status(self) -> dict[JobStatus, int]: ...

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]: ...

    async def purge_expired(self, limit: int = 500) -> int:
        """Delete up to `limit` finished jobs past their result TTL, with attempts and events."""
        ...
