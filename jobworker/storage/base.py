"""The one storage protocol every backend implements, and the values it trades in."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from jobworker.errors import ConfigurationError
from jobworker.models import (
    AttemptOutcome,
    AttemptRecord,
    Cancelled,
    CancelResult,
    ClaimedJob,
    Completion,
    EventKind,
    Failed,
    JobEvent,
    JobFilter,
    JobRecord,
    JobStatus,
    LeaseTerm,
    NewJob,
    QueueInfo,
    Released,
    Succeeded,
)
from jobworker.recurring import BEAT_LEASE, BeatLeader, RecurringJob, RecurringSpec


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
    if isinstance(outcome, Cancelled):
        return OutcomeRow(AttemptOutcome.CANCELLED, None, outcome.reason, None, None, ttl)
    raise TypeError(f"unknown outcome {outcome!r}")


FINISHED = (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED)

SCHEMA_TOKEN = "__SCHEMA__"  # stands for the quoted schema name in server backends' SQL
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(name: str) -> str:
    """A schema name is 1-63 lower-case letters, digits and '_': checked, never pasted raw."""
    if not _SCHEMA_NAME.match(name):
        raise ConfigurationError(
            f"invalid schema name {name!r}: use 1-63 lower-case letters, digits and '_', "
            "not starting with a digit"
        )
    return name


def parent_ended_reason(parent_id: object, status: JobStatus | str | None) -> str:
    """Why a continuation was cancelled: its parent ended dead or cancelled, or is gone."""
    if status is None:
        return f"parent job {parent_id} no longer exists"
    return f"parent job {parent_id} ended {JobStatus(status).value}"


def job_record(
    row: Sequence[Any],
    *,
    to_uuid: Callable[[Any], uuid.UUID],
    to_time: Callable[[Any], datetime],
    to_bytes: Callable[[Any], bytes],
) -> JobRecord:
    """A jobs row, in the column order every backend's get_job and list_jobs select, as a
    JobRecord; the converters turn the driver's values into Python's."""

    def maybe(convert: Callable[[Any], Any], value: Any) -> Any:
        return None if value is None else convert(value)

    return JobRecord(
        id=to_uuid(row[0]),
        job_type=row[1],
        queue=row[2],
        priority=row[3],
        status=JobStatus(row[4]),
        args=to_bytes(row[5]),
        attempt=row[6],
        max_attempts=row[7],
        enqueued_at=to_time(row[8]),
        run_at=to_time(row[9]),
        started_at=maybe(to_time, row[10]),
        completed_at=maybe(to_time, row[11]),
        lease_owner=row[12],
        lease_expires_at=maybe(to_time, row[13]),
        idempotency_key=row[14],
        continues_job_id=maybe(to_uuid, row[15]),
        result=maybe(to_bytes, row[16]),
        error=row[17],
        traceback=row[18],
        result_ttl=row[19],
        expires_at=maybe(to_time, row[20]),
    )


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """What `complete_many` did: how many outcomes still held their lease, and the lifecycle
    events their status changes were stored as (for the live bus)."""

    applied: int = 0
    lifecycle: list[JobEvent] = []


def without_derived_results(
    completions: Sequence[Completion], events: Sequence[JobEvent]
) -> list[JobEvent]:
    """`events` less the `result` event of each succeeded attempt (its last event): a storage
    that derives that event from the job's stored result does not store it as a row."""
    ends = {
        (item.job_id, item.event_seq) for item in completions if isinstance(item.outcome, Succeeded)
    }
    return [
        event
        for event in events
        if event.kind is not EventKind.RESULT or (event.job_id, event.seq) not in ends
    ]


def lifecycle_event(
    job_id: uuid.UUID,
    seq: int,
    occurred_at: datetime,
    status: JobStatus,
    attempt: int,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> JobEvent:
    """A lifecycle event as the storage stores it: the status change, the attempt, the error
    (of a failed, dead, cancelled or re-queued job) and when a failed job runs again."""
    keeps_error = status in (
        JobStatus.FAILED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
        JobStatus.QUEUED,
    )
    payload = {
        "status": status.value,
        "attempt": attempt,
        "error": error if keeps_error else None,
        "retry_at": retry_at if status is JobStatus.FAILED else None,
    }
    return JobEvent(
        job_id=job_id,
        seq=seq,
        kind=EventKind.LIFECYCLE,
        occurred_at=occurred_at,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
    )


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


class LeaderLease(Protocol):
    """At most one holder of a named lease at a time (beat's leadership): `acquire` takes it if
    free, `renew` keeps it (False: it was lost, stop leader work now), `release` gives it up."""

    mechanism: str
    term: LeaseTerm | None

    async def acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def release(self) -> None: ...

    async def current(self) -> LeaseTerm | None: ...

    async def close(self) -> None: ...


class Storage(Protocol):
    """Durable job state. All methods are coroutines; all times come from the storage's clock.

    A backend is opened once per process (`open`), never shared across `fork()`, and closed with
    `close`. It validates nothing about payloads: the client has done that before `enqueue_many`.
    """

    dialect: str
    # The storage derives a succeeded job's `result` event from the job's result when its events
    # are read: a worker without a live bus need not hand that event in (it still numbers it).
    derives_result_events: bool

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

    async def subscribe(
        self,
        on_enqueued: Callable[[str], None],
        on_cancel: Callable[[uuid.UUID], None] | None = None,
    ) -> Subscription:
        """Call `on_enqueued(queue)` when jobs are enqueued ("*": maybe any queue), and
        `on_cancel(job_id)` when a running job's cancellation is requested. Backends without
        notifications return a subscription that never calls: workers poll instead."""
        ...

    async def claim(
        self,
        owner: str,
        job_types: Sequence[str],
        queues: Sequence[str],
        limit: int,
        lease_duration: float,
        concurrency: Mapping[str, int] | None = None,
    ) -> list[ClaimedJob]:
        """Lease up to `limit` due jobs to `owner`, most urgent first, counting an attempt each.

        `concurrency` caps, per job type, how many may run at once across every worker: the
        claim counts the running ones and takes no more than the rest, atomically.
        """
        ...

    async def extend_leases(self, owner: str, lease_duration: float) -> int:
        """Push back the expiry of every lease `owner` holds; returns how many it holds."""
        ...

    async def complete_many(
        self,
        completions: Sequence[Completion],
        events: Sequence[JobEvent] = (),
        transient: Sequence[JobEvent] = (),
        *,
        lifecycle: bool = True,
    ) -> Recorded:
        """Record outcomes and events in one transaction; returns how many outcomes still held
        their lease, and (unless `lifecycle` is false: a caller with no live bus to send them
        to) the lifecycle events of their status changes.

        Succeeded → succeeded. Failed with `retry_at` → failed (runs again at retry_at). Failed
        without → dead. Released → queued, the attempt not counted. An outcome whose lease is no
        longer held (it expired and another worker took the job) is dropped.

        `events` are kept (job_events); `transient` ones are stored only to carry them live
        without Redis, and expire. Events are written before the outcomes, so each job's end is
        numbered after them (and after `Completion.event_seq`). An event whose (job, seq) is
        already stored is dropped.
        """
        ...

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        """The running jobs `owner` holds, or (owner None) those whose lease has expired."""
        ...

    async def release_owner(
        self,
        owner: str,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None = None,
    ) -> int:
        """End every lease `owner` holds.

        lost=False: a draining worker gives jobs back; attempts do not count (outcome released).
        lost=True: the owner died; the attempt counts (outcome lost) and a job out of attempts
        goes dead. `seq_floors` gives, per job, the last event sequence used outside the
        database (the live bus): the lifecycle event of the change is numbered above it.
        """
        ...

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        """Treat jobs whose lease has expired as lost (see `release_owner`)."""
        ...

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        """Cancel a waiting job (and the continuations waiting on it) at once, or ask the worker
        of a running one to stop it. Raises `JobNotFoundError` for an unknown id."""
        ...

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        """The running jobs of `owner` whose cancellation has been requested."""
        ...

    async def retry_job(self, job_id: uuid.UUID) -> None:
        """Queue a dead job again (with one more attempt if it had used them all)."""
        ...

    async def delete_job(self, job_id: uuid.UUID) -> None:
        """Delete a job that is not running, with its attempts and events."""
        ...

    async def resolve_continuations(self, limit: int = 500) -> int:
        """Repair sweep: settle awaiting jobs whose parent has already ended."""
        ...

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100, *, transient: bool = False
    ) -> list[JobEvent]:
        """A job's stored events with seq > after_seq, in order; with `transient`, also the
        events stored only to carry them live."""
        ...

    async def last_event_seq(self, job_id: uuid.UUID) -> int:
        """The highest event sequence the database knows for the job (0: none)."""
        ...

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        """Call `on_events(job_ids)` when events of those jobs are stored (None: maybe any).
        Backends without notifications return a subscription that never calls: readers poll."""
        ...

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        """Delete up to `limit` transient events that occurred before `before`."""
        ...

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        """The database's own leader lease, for when Redis is not there."""
        ...

    async def set_queue_paused(self, queue: str, paused: bool) -> None: ...

    async def paused_queues(self) -> set[str]: ...

    async def queues(self) -> list[QueueInfo]:
        """Every queue with jobs or a pause state: its counts by status and whether paused."""
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

    # Beat: recurring definitions and the leader's heartbeat ---------------------------------

    async def upsert_recurring(self, specs: Sequence[RecurringSpec]) -> None:
        """Add definitions, or update their job, schedule and arguments. Whether one is enabled
        and when it fired are kept; a changed schedule is scheduled again from now."""
        ...

    async def list_recurring(self) -> list[RecurringJob]:
        """Every stored definition, by name."""
        ...

    async def set_recurring_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable a definition; False if there is none of that name. A definition
        enabled again is scheduled from now: the fires it missed are not caught up."""
        ...

    async def fire_recurring(
        self, name: str, instant: datetime, next_fire_at: datetime, job: NewJob
    ) -> EnqueueResult | None:
        """In one transaction: move the definition's `last_fire_at` forward to `instant` (only if
        it is enabled and has not fired at or after `instant`) and enqueue `job`. None, and
        nothing stored, if the instant was already fired: the fire key the database holds."""
        ...

    async def advance_recurring(self, name: str, next_fire_at: datetime) -> None:
        """Record when an enabled definition fires next (never moving it backwards)."""
        ...

    async def record_beat_leader(self, name: str, term: LeaseTerm, expires_at: datetime) -> None:
        """The leader's heartbeat: its term, alive until `expires_at`. A newer term replaces an
        older one; an older term never replaces a newer one that is still alive."""
        ...

    async def clear_beat_leader(self, name: str, token: str) -> None:
        """Remove the heartbeat of the term `token` (the leader stepped down)."""
        ...

    async def beat_leader(self, name: str = BEAT_LEASE) -> BeatLeader | None:
        """The live beat leader's term, if one's heartbeat has not expired."""
        ...
