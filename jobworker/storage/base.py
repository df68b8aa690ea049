"""The rules every backend shares: how an outcome is written, how a row becomes a record,
how a lifecycle event reads."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from jobworker.errors import ConfigurationError
from jobworker.models import (
    AttemptOutcome,
    Cancelled,
    Completion,
    EventKind,
    Failed,
    JobEvent,
    JobRecord,
    JobStatus,
    Released,
    Succeeded,
)
from jobworker.transitions import attempt_outcome, parent_ended_reason

__all__ = [
    "FINISHED",
    "SCHEMA_TOKEN",
    "OutcomeRow",
    "check_schema_name",
    "job_record",
    "lifecycle_event",
    "outcome_row",
    "parent_ended_reason",
    "without_derived_results",
]


class OutcomeRow(msgspec.Struct, frozen=True):
    """A completion flattened into the columns every backend writes."""

    outcome: AttemptOutcome
    result: bytes | None
    error: str | None
    traceback: str | None
    retry_at: datetime | None
    result_ttl: float


def outcome_row(item: Completion, default_ttl: float) -> OutcomeRow:
    """How `complete_many` reads a completion; the one rule all backends share. The outcome its
    attempt row records is `transitions.attempt_outcome`'s; the status the job takes is
    `transitions.after_attempt`'s."""
    ttl = item.result_ttl if item.result_ttl is not None else default_ttl
    outcome = item.outcome
    recorded = attempt_outcome(outcome, item.retry_at)
    if isinstance(outcome, Succeeded):
        return OutcomeRow(recorded, outcome.result, None, None, None, ttl)
    if isinstance(outcome, Failed):
        return OutcomeRow(recorded, None, outcome.error, outcome.traceback, item.retry_at, ttl)
    if isinstance(outcome, Released | Cancelled):
        return OutcomeRow(recorded, None, outcome.reason, None, None, ttl)
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
