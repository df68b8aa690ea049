"""Turning a call into `NewJob` rows: validate and encode the arguments, and resolve the
enqueue-time `ScheduleOptions` over the job's `JobOptions` and the settings. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from jobworker.config import Settings
from jobworker.definitions import NAME_PATTERN, JobDefinition, JobOptions
from jobworker.errors import ConfigurationError, JobArgumentsError
from jobworker.ids import uuid7
from jobworker.models import JobStatus, NewJob, ScheduleOptions

T = TypeVar("T")


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how a job is stored: the enqueue's options over the job's, over the settings."""

    queue: str
    priority: int
    max_attempts: int
    result_ttl: float | None


def resolve(options: ScheduleOptions, job: JobOptions, settings: Settings) -> Placement:
    """Each field from the first that gives it: `options`, then `job`, then `settings`."""
    if options.max_retries is not None and options.max_retries < 0:
        raise ConfigurationError("max_retries must not be negative")
    if options.result_ttl is not None and options.result_ttl < 0:
        raise ConfigurationError("result_ttl must not be negative")
    queue = options.queue or job.queue or settings.default_queue
    if not NAME_PATTERN.match(queue):
        raise ConfigurationError(f"invalid queue name {queue!r}")
    if options.max_retries is not None:
        max_attempts = options.max_retries + 1
    else:
        max_attempts = job.max_attempts or settings.default_max_retries + 1
    return Placement(
        queue=queue,
        priority=_first(options.priority, job.priority),
        max_attempts=max_attempts,
        result_ttl=_first(options.result_ttl, job.result_ttl),
    )


def build_jobs(
    definition: JobDefinition,
    arguments: Sequence[Mapping[str, Any]],
    options: ScheduleOptions | None,
    settings: Settings,
    now: datetime,
) -> list[NewJob]:
    """One job per argument set, enqueued at `now`. Everything is validated before anything is
    returned, so a bad argument set stores nothing of the batch."""
    options = options or ScheduleOptions()
    run_at = _check_run_at(options.run_at) or now
    if options.idempotency_key is not None and len(arguments) > 1:
        raise ConfigurationError("one idempotency_key cannot be shared by a batch of jobs")
    placement = resolve(options, definition, settings)
    status = _first_status(options, run_at, now)
    return [
        NewJob(
            id=uuid7(now),
            job_type=definition.name,
            queue=placement.queue,
            priority=placement.priority,
            args=data,
            max_attempts=placement.max_attempts,
            status=status,
            run_at=run_at,
            enqueued_at=now,
            idempotency_key=options.idempotency_key,
            continues_job_id=options.continues_job_id,
            result_ttl=placement.result_ttl,
            kind=definition.kind,
        )
        for data in encode_arguments(definition, arguments, settings.max_args_bytes)
    ]


def restamped(
    jobs: Sequence[NewJob], options: ScheduleOptions | None, now: datetime
) -> list[NewJob]:
    """`jobs` as enqueued at `now` instead: the storage's clock, which due times are compared
    with. Their enqueue time, default run time and first status follow it."""
    options = options or ScheduleOptions()
    run_at = _check_run_at(options.run_at) or now
    status = _first_status(options, run_at, now)
    return [
        msgspec.structs.replace(job, enqueued_at=now, run_at=run_at, status=status) for job in jobs
    ]


def encode_arguments(
    definition: JobDefinition, arguments: Sequence[Mapping[str, Any]], max_bytes: int
) -> list[bytes]:
    """Each argument set validated and encoded; one larger than `max_bytes` encoded (the
    `max_args_bytes` setting) is a `JobArgumentsError`, and so nothing of the batch is stored."""
    encoded = []
    for index, args in enumerate(arguments):
        if not isinstance(args, Mapping):
            raise JobArgumentsError(definition.name, f"argument set {index} is not a mapping")
        encoded.append(definition.encode_args(args, max_bytes))
    return encoded


def _first_status(options: ScheduleOptions, run_at: datetime, now: datetime) -> JobStatus:
    if options.continues_job_id is not None:
        # Settled by storage against the parent: queued once it succeeds, cancelled if not.
        return JobStatus.AWAITING
    return JobStatus.SCHEDULED if run_at > now else JobStatus.QUEUED


def _check_run_at(run_at: datetime | None) -> datetime | None:
    if run_at is not None and run_at.tzinfo is None:
        raise ConfigurationError(
            "run_at must be timezone-aware (e.g. datetime.now(UTC) + timedelta(minutes=5))"
        )
    return run_at


def _first(given: T | None, fallback: T) -> T:
    return fallback if given is None else given
