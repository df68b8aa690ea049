"""The storage seam: small role ports, each named for what its callers need.

A backend is one `Storage` object whose attributes are its roles. A caller types against the
role it uses (the worker against `Jobs`, the janitor against `Maintenance`, `jobworker queues`
against `Inspection` and `Control`), never against the whole backend. All methods are
coroutines; every time a backend writes or compares comes from its `clock`: the database's own,
so that processes whose clocks disagree still agree on leases and due times. A backend
validates nothing about payloads: the client has done that before `Jobs.enqueue_many`.

About 500 lines: the seam is read in one place, and each method's docstring is its contract
(what the conformance suite holds every backend to).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from jobworker.clock import Clock
from jobworker.models import (
    AttemptRecord,
    CancelResult,
    ClaimedJob,
    Completion,
    JobCounts,
    JobEvent,
    JobFilter,
    JobRecord,
    JobStatus,
    JobType,
    JobTypeSpec,
    LeaseTerm,
    NewJob,
    QueueInfo,
    WorkerInfo,
)
from jobworker.recurring import BEAT_LEASE, BeatLeader, RecurringJob, RecurringSpec
from jobworker.storage.rows import JobRecords

__all__ = [
    "Control",
    "EnqueueResult",
    "EventStore",
    "Inspection",
    "JobTypeCatalogue",
    "Jobs",
    "LeaderLease",
    "Leadership",
    "LiveRows",
    "Maintenance",
    "NoSubscription",
    "Recorded",
    "Recurring",
    "Schema",
    "Storage",
    "Subscription",
    "Workers",
]


class EnqueueResult(msgspec.Struct, frozen=True):
    job_id: uuid.UUID
    # False when an idempotency key matched an existing job, whose id is returned instead.
    created: bool = True


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """What `Jobs.complete_many` did: how many outcomes still held their lease, and the events of
    their ends (`event_log.end_events`: a success's result, then each lifecycle event), for the
    live bus."""

    applied: int = 0
    events: list[JobEvent] = []


class Subscription(Protocol):
    """A live subscription to notifications; `close()` ends it."""

    async def close(self) -> None: ...


class NoSubscription:
    """For backends without notifications: callers poll."""

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


class Schema(Protocol):
    """The backend's tables and routines."""

    async def migrate(self) -> list[int]:
        """Apply the schema scripts not yet applied; returns the versions applied."""
        ...

    async def check_schema(self) -> None:
        """Raise `SchemaMissingError` unless the schema is present and current."""
        ...

    async def version(self) -> int:
        """The schema version the database holds (0: no jobworker schema), as read now."""
        ...


class Jobs(Protocol):
    """A job's way through the database: enqueued, claimed under a lease, renewed, finished."""

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
        *,
        trace_context: bool = False,
        sync_types: Collection[str] = (),
        sync_limit: int | None = None,
        async_limit: int | None = None,
    ) -> list[ClaimedJob]:
        """Lease up to `limit` due jobs to `owner`, most urgent first, counting an attempt each.

        `concurrency` caps, per job type, how many may run at once across every worker: the
        claim counts the running ones and takes no more than the rest, atomically.
        Limits per kind, counted in this claim's own rows (a worker's free threads and tasks):
        at most `sync_limit` of the `sync_types` (the types of sync handlers) and at most
        `async_limit` of the other types (None: no limit but `limit`), in one statement.
        `trace_context`: each job carries its row's trace context (what a worker that traces
        asks for); without it a backend may leave it None (PostgreSQL does: reading it costs).
        """
        ...

    async def extend_leases(
        self, owner: str, held: Sequence[tuple[uuid.UUID, int]], lease_duration: float
    ) -> set[uuid.UUID]:
        """Push back the expiry of the leases `owner` holds on `held` (job, attempt) pairs;
        returns the jobs whose lease it still held. The others are lost (rescued, or another
        worker has them). A job leased to `owner` that it does not name (a claim whose reply
        never arrived) is left to expire, and the rescue gives it to another worker."""
        ...

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        """The running jobs of `owner` whose cancellation has been requested."""
        ...

    async def complete_many(
        self,
        completions: Sequence[Completion],
        events: Sequence[JobEvent] = (),
        *,
        emitted_by: Sequence[tuple[str, int]] = (),
        lifecycle: bool = True,
    ) -> Recorded:
        """Record outcomes and the attempts' events in one transaction; returns how many outcomes
        still held their lease, and (unless `lifecycle` is false: a caller with no live bus to
        send them to) the events of their ends.

        The status each outcome leads to is `transitions.after_attempt`'s. An outcome whose
        lease is no longer held (it expired and another worker took the job) is dropped.

        `events` are a handler's (never lifecycle or result events: those are the storage's,
        see `event_log`). `emitted_by` gives, in the same order, the attempt (lease owner,
        number) that emitted each: an event is stored only while its attempt may still write
        (see `event_log`: the fence), so a worker that lost its lease cannot take the numbers
        of the next attempt's events. Those of kept kinds (`Settings.kept_kinds`) join the job's
        history; the others are stored only to carry them live while the bus is the database,
        and expire. Events are written before the outcomes, so each job's end is numbered after
        them (and after `Completion.event_seq`). An event whose (job, seq) is already stored is
        dropped.
        """
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


class Control(Protocol):
    """What an operator does to jobs and queues."""

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        """Cancel a waiting job (and the continuations waiting on it) at once, or ask the worker
        of a running one to stop it. Raises `JobNotFoundError` for an unknown id."""
        ...

    async def retry_job(self, job_id: uuid.UUID) -> None:
        """Queue a dead job again (with one more attempt if it had used them all)."""
        ...

    async def delete_job(self, job_id: uuid.UUID) -> None:
        """Delete a job that is not running, with its attempts and events."""
        ...

    async def set_queue_paused(self, queue: str, paused: bool) -> None: ...


class Inspection(Protocol):
    """Reading jobs, attempts and queues."""

    async def get(self, job_id: uuid.UUID) -> JobRecord | None: ...

    async def list_jobs(
        self,
        filter: JobFilter,
        *,
        limit: int = 50,
        offset: int = 0,
        scan_limit: int | None = None,
    ) -> JobRecords:
        """The jobs matching every field of `filter`, newest first by id (ids are UUIDv7: the
        id's canonical text orders them as the UUID does), from `offset` rows past the start,
        `limit` rows at most. `filter.before` keeps only ids below it, whether or not a job holds
        it: with the last id of a page it gives the next page without skipping or repeating a
        row (keyset paging), and a backend walks its id index from there rather than past every
        newer row. `filter.search` matches a job whose lower-cased type holds the lower-cased
        text, or whose id's canonical text does (only a text that can be part of one is looked
        for in ids). Rows that cannot be read are in the answer's `unreadable`.

        `scan_limit` bounds the work of a filter no index serves: the listing may stop after
        reading that many rows of the id order below `before` without filling the page. It then
        sets the answer's `scan_edge` to the id of the last row it read, having returned every
        match above it: `before=scan_edge` goes on from there, no row skipped or repeated. A
        backend may serve a filter from an index instead and never stop early."""
        ...

    async def count_by_status(self) -> dict[JobStatus, int]: ...

    async def overview(self, exact_up_to: int) -> JobCounts:
        """Counts by status and by queue that stay cheap on a big table: a status of at most
        `exact_up_to` jobs is counted exactly; one with more may be given as the planner's
        estimate, named in `estimated` (and its queues marked `estimated`). A backend that
        counts everything exactly fast enough at its scale estimates nothing."""
        ...

    async def throughput(
        self, since: datetime, until: datetime, bucket_seconds: int
    ) -> list[tuple[int, str, int]]:
        """(bucket, outcome, attempts) of the attempts that ended at or after `since` and before
        `until`: bucket `n` holds those that ended in `[since + n * bucket_seconds, ...)`, and
        outcome is one of `THROUGHPUT_OUTCOMES` (a lost attempt counts as `dead` when its job
        died of it, else `failed`; a released one is not counted). Attempts are rows of their
        job: those deleted with it (its result TTL) are not counted."""
        ...

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]: ...

    async def queues(self) -> list[QueueInfo]:
        """Every queue with jobs or a pause state: its counts by status and whether paused."""
        ...

    async def paused_queues(self) -> set[str]: ...


class EventStore(Protocol):
    """A job's history: the events of kept kinds, with those its rows imply (`event_log`)."""

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100
    ) -> list[JobEvent]:
        """The job's kept events with seq > after_seq, in order."""
        ...


class LiveRows(Protocol):
    """The database as the live bus (`events.database_bus` is its one user): every kind of event,
    stored as rows while there is no Redis to carry them; those of kinds that are not kept expire
    after `event_stream_ttl`."""

    async def store_live(
        self, events: Sequence[JobEvent], emitted_by: Sequence[tuple[str, int]]
    ) -> None:
        """Store events the history lacks (those already stored are left as they are), each
        fenced by the attempt that emitted it (`emitted_by`, as in `Jobs.complete_many`)."""
        ...

    async def read_live(self, job_id: uuid.UUID, after_seq: int, limit: int) -> list[JobEvent]:
        """The job's events of every kind with seq > after_seq, in order."""
        ...

    async def subscribe_live(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        """Call `on_events(job_ids)` when events of those jobs are stored (None: maybe any).
        Backends without notifications return a subscription that never calls: readers poll."""
        ...

    async def purge_live(self, before: datetime, limit: int = 5000) -> int:
        """Delete up to `limit` expiring rows of events that occurred before `before`."""
        ...


class Maintenance(Protocol):
    """The sweeps that keep the table healthy: lease rescue, continuations, the janitor."""

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        """The running jobs `owner` holds, or (owner None) those whose lease has expired."""
        ...

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        """Treat jobs whose lease has expired as lost (see `Jobs.release_owner`)."""
        ...

    async def resolve_continuations(self, limit: int = 500) -> int:
        """Repair sweep: settle awaiting jobs whose parent has already ended."""
        ...

    async def purge_expired(self, limit: int = 500) -> int:
        """Delete up to `limit` finished jobs past their result TTL, with attempts and events."""
        ...


class Recurring(Protocol):
    """Beat's recurring definitions and their fires."""

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


class Leadership(Protocol):
    """Beat's leader: the database's own lease, and the heartbeat every leader records."""

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        """The database's own leader lease, for when Redis is not there."""
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


class Workers(Protocol):
    """The worker registry: a row per live supervisor, worker process and beat, each refreshed by
    its heartbeat. A process that stops cleanly removes its row; the janitor marks the rows whose
    heartbeat went stale as gone, and later purges them."""

    async def register(self, info: WorkerInfo) -> None:
        """Add the row `info` describes, or replace the one of its id (a row marked gone is live
        again). Its last heartbeat is now; its other fields are `info`'s."""
        ...

    async def heartbeat(self, worker_id: str, running: int, figures: str | None = None) -> bool:
        """Record that the process is alive, running `running` jobs, and (unless None) its
        cumulative figures (`metrics.figures`' JSON; None keeps those the row holds). False when
        its row is gone or was marked gone: the caller registers again."""
        ...

    async def live_figures(self, parent: str | None = None) -> list[tuple[str, str]]:
        """(id, figures) of every live row that holds figures, by id; with `parent`, only the
        rows of that supervisor and of its worker processes."""
        ...

    async def unregister(self, worker_id: str) -> None:
        """Remove the row (a clean stop); nothing happens if there is none."""
        ...

    async def list_workers(self, *, include_gone: bool = True) -> list[WorkerInfo]:
        """Every row (or only the live ones), by host, then start time."""
        ...

    async def mark_gone(self, stale_after: float) -> int:
        """Mark gone the live rows whose last heartbeat is more than `stale_after` seconds old;
        returns how many."""
        ...

    async def purge_gone(self, older_than: float) -> int:
        """Delete the rows marked gone whose last heartbeat is more than `older_than` seconds
        old; returns how many."""
        ...


class JobTypeCatalogue(Protocol):
    """The job-type catalogue: a row per job type a worker process or beat has declared, so that
    processes that do not import a job's module (the web tail, the CLI) still know its kind, its
    display name and icon. Rows are never removed: a type gone from the code keeps its name."""

    async def upsert_types(self, specs: Sequence[JobTypeSpec], seen_by: str) -> None:
        """In one statement: add each type, or replace what its row says with the spec (its
        `first_seen` kept); each row's `last_seen` becomes now and its `seen_by` `seen_by`.
        Rows of types not in `specs` are left as they are."""
        ...

    async def list_types(self) -> list[JobType]:
        """Every row, by name."""
        ...


class Storage(Protocol):
    """One opened backend: its roles as attributes.

    Opened once per process (`open`), never shared across `fork()`, and closed with `close`.
    """

    dialect: str
    # Every time the storage writes or compares: the database's own (see database_clock).
    clock: Clock

    @property
    def schema(self) -> Schema: ...

    @property
    def jobs(self) -> Jobs: ...

    @property
    def control(self) -> Control: ...

    @property
    def inspection(self) -> Inspection: ...

    @property
    def events(self) -> EventStore: ...

    @property
    def live(self) -> LiveRows: ...

    @property
    def maintenance(self) -> Maintenance: ...

    @property
    def recurring(self) -> Recurring: ...

    @property
    def leadership(self) -> Leadership: ...

    @property
    def workers(self) -> Workers: ...

    @property
    def catalogue(self) -> JobTypeCatalogue: ...

    async def open(self) -> None:
        """Connect. On a backend that creates its own schema (SQLite), create it."""
        ...

    async def close(self) -> None: ...
