"""A job's event log as every backend reads it: stored rows, and the events its rows imply.

An attempt's `running` event and the lifecycle event that ended it are never stored as event
rows: they are read from the attempt's row (and, while it runs, from the job's row). A succeeded
job's `result` event is read from its result. Backends select the three plain row sources in one
snapshot; `event_page` builds the implied events with the same functions the live bus uses and
merges them with the stored ones. No backend has a merge of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import msgspec

from jobworker.models import EventKind, JobEvent, JobStatus
from jobworker.storage.base import lifecycle_event

__all__ = ["AttemptMarks", "JobMarks", "event_page", "result_event"]


def result_event(job_id: uuid.UUID, seq: int, occurred_at: datetime, result: bytes) -> JobEvent:
    """A succeeded attempt's `result` event: `{"value": <the result's JSON>}`."""
    return JobEvent(
        job_id=job_id,
        seq=seq,
        kind=EventKind.RESULT,
        occurred_at=occurred_at,
        payload=msgspec.Raw(b'{"value":' + (result or b"null") + b"}"),
    )


@dataclass(frozen=True, slots=True)
class AttemptMarks:
    """What an ended attempt's row records of its events."""

    attempt: int
    started_at: datetime
    ended_at: datetime
    start_seq: int | None
    end_seq: int | None
    end_status: JobStatus | None
    end_attempt: int | None
    end_error: str | None
    end_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobMarks:
    """What the job's row says: the running attempt's `running` event, a succeeded result."""

    status: JobStatus
    attempt: int
    started_at: datetime | None
    event_seq: int
    result: bytes | None


def _implied(
    job_id: uuid.UUID,
    after_seq: int,
    attempts: Iterable[AttemptMarks],
    job: JobMarks,
    keep_results: bool,
) -> list[JobEvent]:
    events: list[JobEvent] = []
    for row in attempts:
        if row.start_seq is not None and row.start_seq > after_seq:
            events.append(
                lifecycle_event(
                    job_id, row.start_seq, row.started_at, JobStatus.RUNNING, row.attempt
                )
            )
        if row.end_seq is None or row.end_status is None:
            continue
        if row.end_seq > after_seq:
            events.append(
                lifecycle_event(
                    job_id,
                    row.end_seq,
                    row.ended_at,
                    row.end_status,
                    row.end_attempt if row.end_attempt is not None else row.attempt,
                    row.end_error,
                    row.end_run_at,
                )
            )
        result_seq = row.end_seq - 1
        if (
            keep_results
            and row.end_status is JobStatus.SUCCEEDED
            and job.status is JobStatus.SUCCEEDED
            and result_seq > max(after_seq, row.start_seq or 0)
        ):
            events.append(result_event(job_id, result_seq, row.ended_at, job.result or b"null"))
    if job.status is JobStatus.RUNNING and job.event_seq > after_seq and job.started_at:
        events.append(
            lifecycle_event(job_id, job.event_seq, job.started_at, JobStatus.RUNNING, job.attempt)
        )
    return events


def event_page(
    job_id: uuid.UUID,
    after_seq: int,
    limit: int,
    *,
    stored: list[JobEvent],
    attempts: Iterable[AttemptMarks],
    job: JobMarks | None,
    keep_results: bool,
) -> list[JobEvent]:
    """The job's events with seq > after_seq, in order, at most `limit`: `stored` (the stored
    rows after `after_seq`, at most `limit`, in order) merged with the implied events."""
    if job is None:
        return stored[:limit]
    implied = _implied(job_id, after_seq, attempts, job, keep_results)
    if not implied:
        return stored[:limit]
    merged = sorted([*stored, *implied], key=lambda event: event.seq)
    return merged[:limit]
