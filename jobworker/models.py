"""The values that cross layers: statuses, options, descriptors and storage records."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import msgspec


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Lower-case on the wire and in the database."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    AWAITING = "awaiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})


class JobKind(enum.StrEnum):
    """`user` jobs are enqueued by application code; `system` jobs belong to the platform."""

    USER = "user"
    SYSTEM = "system"


class AttemptOutcome(enum.StrEnum):
    """How one attempt ended; one row in `job_attempts` each."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the handler raised; the job will be retried
    DEAD = "dead"  # the handler raised on its last attempt, or cannot ever succeed
    RELEASED = "released"  # the worker shut down before the handler finished; not counted
    LOST = "lost"  # the worker died or its lease expired; counted
    CANCELLED = "cancelled"


class ScheduleOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Per-enqueue options. Any field left as None falls back to the job's definition."""

    run_at: datetime | None = None
    max_retries: int | None = None
    idempotency_key: str | None = None
    continues_job_id: uuid.UUID | None = None
    result_ttl: float | None = None
    queue: str | None = None
    priority: int | None = None


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A fully resolved job, validated and encoded, ready for `Storage.enqueue_many`.

    `id` is a UUIDv7 of the enqueue instant: backends may list jobs newest first by id.
    """

    id: uuid.UUID
    job_type: str
    queue: str
    priority: int
    args: bytes
    max_attempts: int
    status: JobStatus
    run_at: datetime
    enqueued_at: datetime
    idempotency_key: str | None = None
    continues_job_id: uuid.UUID | None = None
    result_ttl: float | None = None
    kind: JobKind = JobKind.USER  # the definition's: what the admin side may do with it
    # The enqueuer's W3C trace context (`traceparent`, and `tracestate` after a newline), when
    # tracing is on: each attempt's span is its child (jobworker.tracing).
    trace_context: str | None = None


class ClaimedJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job a worker holds a lease on."""

    id: uuid.UUID
    job_type: str
    queue: str
    args: bytes
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    started_at: datetime
    result_ttl: float | None = None
    event_seq: int = 0  # the sequence of its `running` lifecycle event; the attempt's follow
    trace_context: str | None = None  # as the enqueuer stored it (NewJob.trace_context)


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the jobs table as storage returns it (encoded payloads kept as bytes)."""

    id: uuid.UUID
    job_type: str
    queue: str
    priority: int
    status: JobStatus
    kind: JobKind
    args: bytes
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    run_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    idempotency_key: str | None
    continues_job_id: uuid.UUID | None
    result: bytes | None
    error: str | None
    traceback: str | None
    result_ttl: float | None
    expires_at: datetime | None


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a job: who ran it, when, and how it ended."""

    job_id: uuid.UUID
    attempt: int
    worker: str
    started_at: datetime
    ended_at: datetime
    outcome: AttemptOutcome
    error: str | None = None
    traceback: str | None = None


class JobDescriptor(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a job for callers: what `client.get()` and `jobworker status` return."""

    job_id: uuid.UUID
    job_type: str
    status: JobStatus
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    run_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    idempotency_key: str | None
    result: Any
    error: str | None
    traceback: str | None = None
    continues_job_id: uuid.UUID | None = None
    kind: JobKind = JobKind.USER
    args: Any = None  # the job's arguments, as JSON decoded them (what an authorization hook reads)


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Filters for listing jobs; every field narrows, None means any.

    `search` matches a job whose type holds it (ignoring case), or whose id's canonical text
    (lower-case hex with dashes) does; `before` keeps the jobs whose id is lower: the listing is
    newest first by id, so the last id of a page bounds the next one (keyset paging)."""

    status: JobStatus | None = None
    kind: JobKind | None = None
    job_type: str | None = None
    queue: str | None = None
    idempotency_key: str | None = None
    search: str | None = None
    before: uuid.UUID | None = None


# Outcomes: what the executor decided about one attempt, which the worker persists in batches.


class Succeeded(msgspec.Struct, frozen=True, tag=True):
    result: bytes


class Failed(msgspec.Struct, frozen=True, tag=True):
    error: str
    traceback: str
    retryable: bool = True


class Released(msgspec.Struct, frozen=True, tag=True):
    """The worker gave the job back unfinished (drain); the attempt does not count."""

    reason: str


class Cancelled(msgspec.Struct, frozen=True, tag=True):
    """The handler stopped because the job was cancelled; it is not retried."""

    reason: str


Outcome = Succeeded | Failed | Released | Cancelled


class CancelResult(enum.StrEnum):
    """What `cancel` did."""

    CANCELLED = "cancelled"  # it was waiting (queued, scheduled, awaiting, failed): now cancelled
    REQUESTED = "requested"  # it is running: its worker is asked to stop it
    FINISHED = "finished"  # it had already ended; nothing changed


class QueueInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    paused: bool
    counts: dict[str, int]
    estimated: bool = False  # some of `counts` are the planner's estimates (see JobCounts)


class JobCounts(msgspec.Struct, frozen=True, kw_only=True):
    """How many jobs are in each status, and in each queue by status, as an overview reads
    them: a status with more jobs than the overview's cap may be counted by an estimate (the
    database planner's), named in `estimated`; the others are exact."""

    counts: dict[JobStatus, int]
    estimated: frozenset[JobStatus] = frozenset()
    queues: list[QueueInfo] = []


# What a finished attempt counts as in throughput, in this order: `failed` is an attempt that
# failed and will be retried (a lost attempt whose job runs again counts as failed too).
THROUGHPUT_OUTCOMES = ("succeeded", "failed", "dead", "cancelled")


class ThroughputBucket(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime  # the bucket's start
    counts: dict[str, int]  # every outcome of THROUGHPUT_OUTCOMES, zero included


class Throughput(msgspec.Struct, frozen=True, kw_only=True):
    """Attempts that ended in each bucket of `bucket_seconds`, by outcome, oldest first."""

    bucket_seconds: int
    since: datetime  # the first bucket's start
    buckets: list[ThroughputBucket]


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """An outcome bound to the lease it was produced under."""

    job_id: uuid.UUID
    attempt: int
    lease_owner: str
    started_at: datetime
    ended_at: datetime
    outcome: Outcome
    # Where a failure is retried: when the job runs next. None for other outcomes.
    retry_at: datetime | None = None
    result_ttl: float | None = None
    event_seq: int = 0  # the last sequence the attempt used; its end's lifecycle event follows
    start_seq: int = 0  # the sequence of the attempt's `running` event (0: the storage looks it up)


class LeaseTerm(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds a leader lease, since when, by which mechanism; `token` makes each term unique."""

    holder: str
    since: datetime
    mechanism: str
    token: str


class EventKind(enum.StrEnum):
    LIFECYCLE = "lifecycle"  # every status change, written by the storage
    PROGRESS = "progress"  # ctx.report(...) / ctx.progress(done, total, label)
    LOG = "log"  # ctx.log.info(...)
    CHUNK = "chunk"  # ctx.chunk(...): streamed text or rows
    METRIC = "metric"  # ctx.metric(name, value)
    RESULT = "result"  # the job's result, once it succeeded


class JobEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One event of one job: `seq` numbers a job's events from 1, across attempts and workers."""

    # gc=False: its fields hold no container that could lead back to it, so it can be in no
    # reference cycle. A reader that follows a streaming job makes hundreds of thousands of
    # them a second; tracked, they set off garbage collections that cost more than making them.

    job_id: uuid.UUID
    seq: int
    kind: EventKind
    occurred_at: datetime
    payload: msgspec.Raw  # JSON

    @property
    def id(self) -> str:
        """The SSE / `last_event_id` form of the sequence."""
        return str(self.seq)

    def decoded(self, type: Any = Any) -> Any:
        return msgspec.json.decode(bytes(self.payload), type=type)


class WorkerRole(enum.StrEnum):
    """What a process of the worker registry is."""

    SUPERVISOR = "supervisor"  # `jobworker run`: forks and watches the worker processes
    WORKER = "worker"  # a worker process: claims and runs jobs
    BEAT = "beat"  # `jobworker beat`: cron ticks, lease rescue and the janitor


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One process's row in the worker registry.

    `id` is unique per process incarnation: a worker process's lease owner (what its jobs'
    `lease_owner` holds), the supervisor's `host:pid:supervisor:<random>`, beat's holder name.
    `parent` is the id of a worker process's supervisor. `slots` is how many jobs it runs at
    once (a supervisor: its processes times their slots; beat: 0), `running` how many it ran
    at its last heartbeat. `gone`: its heartbeat went stale and the janitor marked it; the row
    is purged later. Times are the database's.
    """

    id: str
    host: str
    pid: int
    role: WorkerRole
    module: str  # the job module it serves ("" when not known)
    queues: list[str]
    slots: int
    started_at: datetime
    last_heartbeat: datetime
    running: int = 0
    gone: bool = False
    parent: str | None = None


class JobTypeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A job type as the code of one process declares it: what that process writes to the
    job-type catalogue when it starts. `queue` and `max_attempts` are resolved over that
    process's settings (what an enqueue without options would use); `args_schema` is the JSON
    Schema of its arguments, as JSON text (None when msgspec cannot state one)."""

    name: str
    kind: JobKind
    display_name: str
    description: str
    icon: str | None
    queue: str
    priority: int
    max_attempts: int
    cron: str | None
    timezone: str | None
    is_async: bool
    args_schema: str | None
    module: str  # the Python module that defines the job


class JobType(JobTypeSpec, frozen=True, kw_only=True):
    """A job type's row in the catalogue: its spec as the process that last started with it
    wrote it (`seen_by`: that process's worker id or beat holder), and when it was first and
    last written. A type no code declares any more keeps its row, so history keeps its name."""

    seen_by: str
    first_seen: datetime
    last_seen: datetime
