"""The admin API's request and response bodies, and its query strings, as msgspec structs: the
routes encode and decode with them, and the OpenAPI document is generated from them.

JSON bodies are camelCase; query parameters keep the names the user routes use
(`after_sequence`, `idempotency_key`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from jobworker.models import CancelResult, JobKind, JobStatus, WorkerRole
from jobworker.web.wire import AttemptJson, JobJson

__all__ = [
    "BeatJson",
    "CancelJson",
    "DeletedJson",
    "EventJson",
    "EventPage",
    "EventsQuery",
    "InstanceJson",
    "JobDetail",
    "JobPage",
    "JobTypeJson",
    "JobTypeList",
    "JobsQuery",
    "QueueJson",
    "QueueList",
    "RecurringJson",
    "RecurringList",
    "RunJson",
    "StatsJson",
    "ThroughputBucketJson",
    "ThroughputJson",
    "WorkerJson",
    "WorkerList",
    "WorkersQuery",
]

MAX_PAGE = 500


class _Query(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class JobsQuery(_Query, frozen=True):
    status: JobStatus | None = None
    kind: JobKind | None = None
    type: Annotated[str, msgspec.Meta(max_length=200)] | None = None  # the job type, exactly
    queue: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    idempotency_key: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    # in the job type (ignoring case) or the id's text
    search: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    before: uuid.UUID | None = None  # the `next` of the previous page
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 50


class WorkersQuery(_Query, frozen=True):
    include_gone: bool = True  # also the processes whose heartbeat went stale


class EventsQuery(_Query, frozen=True):
    after_sequence: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class _Body(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    pass


class JobPage(_Body, frozen=True):
    """Jobs newest first. `unreadable` names rows of the page that could not be read.

    A filter no index serves (a job type, a queue, the text search...) reads at most a budget of
    rows per page: when that runs out first, the page holds fewer jobs than asked, `scanLimited`
    is true and `next` is the last id read; older matches may follow (the page can offer to
    search on). No job is skipped or repeated across pages either way."""

    jobs: list[JobJson]
    next: uuid.UUID | None  # pass as `before` for the next page; null on the last page
    unreadable: list[str]
    scan_limited: bool = False


class JobDetail(_Body, frozen=True):
    job: JobJson
    attempts: list[AttemptJson]  # every finished attempt, oldest first


class EventJson(_Body, frozen=True):
    """Every event has these fields, and those of its kind (see docs/web.md): lifecycle
    `status, attempt, error, retryAt`; progress `done, total, label, value`; log `level,
    message, dataJson`; chunk `value`; metric `name, value`; result `resultJson`."""

    job_id: uuid.UUID
    seq: int
    kind: Literal["lifecycle", "progress", "log", "chunk", "metric", "result"]
    occurred_at: datetime


_EVENT_ITEMS = msgspec.Meta(extra_json_schema={"items": {"$ref": "#/components/schemas/EventJson"}})


class EventPage(_Body, frozen=True):
    """A page of the job's kept events in order; page on with `after_sequence=next`."""

    events: Annotated[list[dict[str, Any]], _EVENT_ITEMS]
    next: int | None  # the last event's sequence when the page is full, else null


class CancelJson(_Body, frozen=True):
    job_id: uuid.UUID
    result: CancelResult  # cancelled, requested (it is running: its worker stops it), finished


class DeletedJson(_Body, frozen=True):
    job_id: uuid.UUID
    deleted: bool


class RunJson(_Body, frozen=True):
    job_id: uuid.UUID  # the job enqueued


class RecurringJson(_Body, frozen=True):
    name: str
    job_type: str
    # its job's kind: from this web process's code, else from the job-type catalogue; null when
    # neither knows the job
    kind: JobKind | None
    cron: str
    timezone: str
    args_json: str
    enabled: bool
    last_fire_at: datetime | None
    next_fire_at: datetime | None
    updated_at: datetime


class RecurringList(_Body, frozen=True):
    recurring: list[RecurringJson]


class QueueJson(_Body, frozen=True):
    name: str
    paused: bool
    counts: dict[str, int]  # jobs by status
    estimated: bool = False  # some counts are the planner's estimates (StatsJson.estimated)


class QueueList(_Body, frozen=True):
    queues: list[QueueJson]


class BeatJson(_Body, frozen=True):
    """The beat leader's current term."""

    leader: str
    mechanism: str  # redis or database
    since: datetime
    renewed_at: datetime
    expires_at: datetime


class InstanceJson(_Body, frozen=True):
    """The web process answering."""

    host: str
    pid: int
    version: str
    storage: str  # sqlite, postgres or sqlserver
    bus: Literal["redis", "database"]  # how live events travel


class WorkerJson(_Body, frozen=True):
    """One process of the worker registry (times are the database's)."""

    id: str  # a worker process's id is the lease owner its running jobs name
    host: str
    pid: int
    role: WorkerRole  # supervisor, worker or beat
    module: str  # the job module it serves ("" when not known)
    queues: list[str]
    slots: int  # jobs it runs at once (a supervisor: all its processes'; beat: 0)
    running: int  # jobs running at its last heartbeat
    started_at: datetime
    last_heartbeat: datetime
    gone: bool  # its heartbeat went stale; the row is purged later
    parent: str | None  # a worker process's supervisor


class WorkerList(_Body, frozen=True):
    workers: list[WorkerJson]


class JobTypeJson(_Body, frozen=True):
    """One job type of the job-type catalogue, as the worker process or beat that last started
    with it declared it (times are the database's)."""

    name: str
    kind: JobKind  # system jobs may be cancelled, retried and run here; user jobs are read-only
    display_name: str  # the job's name when it declares none
    description: str
    icon: str | None
    queue: str  # where an enqueue without options puts it
    priority: int
    max_attempts: int
    cron: str | None  # a system job's schedule, registered by beat
    timezone: str | None
    is_async: bool
    args_schema: dict[str, Any] | None  # the JSON Schema of its arguments
    module: str  # the Python module that defines it
    seen_by: str  # the worker process or beat that wrote it last
    first_seen: datetime
    last_seen: datetime  # a type no code declares any more keeps its row, and this time


class JobTypeList(_Body, frozen=True):
    types: list[JobTypeJson]


class ThroughputBucketJson(_Body, frozen=True):
    at: datetime  # the bucket's start
    counts: dict[str, int]  # attempts ended in it, by outcome: every outcome present


class ThroughputJson(_Body, frozen=True):
    """Attempts that ended per bucket, by outcome, oldest bucket first, zero-filled: `failed`
    is an attempt that failed and will be retried. Counted from attempt rows: those deleted
    with their job (its result TTL) are not counted."""

    bucket_seconds: int
    since: datetime  # the first bucket's start
    outcomes: list[str]  # succeeded, failed, dead, cancelled
    buckets: list[ThroughputBucketJson]


class StatsJson(_Body, frozen=True):
    """The overview. A status with more jobs than the count cap may be counted by the
    database's estimate (PostgreSQL): `estimated` names those; the other counts are exact."""

    counts: dict[str, int]  # jobs by status, every status present
    estimated: list[str]  # statuses whose count (here and in `queues`) is an estimate
    queue_depth: int  # queued
    scheduled_pending: int  # scheduled for later
    running_now: int
    queues: list[QueueJson]
    workers: list[WorkerJson]  # every registered process, gone ones included
    beat: BeatJson | None  # null: no live beat leader
    instance: InstanceJson
    throughput: ThroughputJson  # the last hour, per minute
