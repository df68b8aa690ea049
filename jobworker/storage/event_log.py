"""The one event model of every backend: which events a job has, who numbers them, what the
storage's own events say, and how a page of a job's events is read.

- A handler's events (progress, log, chunk, metric) are numbered by its attempt's context,
  after the attempt's `running` event, and stored by the worker (kept kinds always; the others
  only while the live bus is the database, as rows that expire).
- Every other event is the storage's, built here and nowhere else:
  - an attempt's `running` event: numbered by the claim (`jobs.event_seq + 1`) and never stored
    as a row: it is read from the attempt's row, or from the job's row while it runs;
  - the end of an attempt: numbered above every number the attempt used (its own, those on the
    live bus, those stored), read from the attempt's row. A succeeded attempt's end takes two
    numbers: its `result` event (read from the job's result) and then its lifecycle event;
  - every other status change (cancelled while waiting, retried, a continuation queued or
    cancelled): numbered `jobs.event_seq + 1` by the statement that makes it, and stored as a
    row with the payload `change_event` builds from what that statement returns.
- Timestamps are the storage's clock (the process's `Clock`), never a database server's.
- The fence: a handler's event is stored only while the attempt that emitted it may still
  write: the job's attempt is still that one, no other worker holds its lease, and that attempt
  did not lose its lease. A worker that was stopped past its lease and resumed cannot store
  events under the numbers of the next attempt's.

Backends select the plain row sources in one snapshot; `event_page` builds the events they
imply with the functions below and merges them with the stored ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from jobworker.models import EventKind, JobEvent, JobStatus

__all__ = [
    "AttemptMarks",
    "Change",
    "JobMarks",
    "change_event",
    "end_events",
    "event_page",
    "fences_of",
    "lifecycle_event",
    "result_event",
    "running_event",
]

# The statuses whose lifecycle event carries the job's error.
_WITH_ERROR = frozenset({JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED, JobStatus.QUEUED})


def fences_of(
    events: Sequence[JobEvent], emitted_by: Sequence[tuple[str, int]]
) -> list[tuple[str, int] | None]:
    """Each event's fence: the attempt (lease owner, number) that emitted it, as `emitted_by`
    gives them in the same order; all None when it is empty (the storage's own events)."""
    if not emitted_by:
        return [None] * len(events)
    if len(emitted_by) != len(events):
        raise ValueError("emitted_by must name the attempt of every event")
    return list(emitted_by)


def lifecycle_event(
    job_id: uuid.UUID,
    seq: int,
    occurred_at: datetime,
    status: JobStatus,
    attempt: int,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> JobEvent:
    """A lifecycle event: the status a job changed to, its attempt, its error (of a failed,
    dead, cancelled or re-queued job) and when a failed job runs again."""
    payload = {
        "status": status.value,
        "attempt": attempt,
        "error": error if status in _WITH_ERROR else None,
        "retry_at": retry_at if status is JobStatus.FAILED else None,
    }
    return JobEvent(
        job_id=job_id,
        seq=seq,
        kind=EventKind.LIFECYCLE,
        occurred_at=occurred_at,
        payload=msgspec.Raw(msgspec.json.encode(payload)),
    )


def running_event(job_id: uuid.UUID, seq: int, started_at: datetime, attempt: int) -> JobEvent:
    """An attempt's start, numbered by its claim."""
    return lifecycle_event(job_id, seq, started_at, JobStatus.RUNNING, attempt)


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
class Change:
    """A status change as the statement that made it returns it: the job, the number it gave the
    change's event, and the job's status, attempt, error and run_at after it."""

    job_id: uuid.UUID
    seq: int
    status: JobStatus
    attempt: int
    error: str | None
    run_at: datetime | None


def change_event(change: Change, at: datetime) -> JobEvent:
    """The lifecycle event of a status change, at `at` (the storage's clock)."""
    return lifecycle_event(
        change.job_id, change.seq, at, change.status, change.attempt, change.error, change.run_at
    )


def end_events(change: Change, at: datetime, result: bytes | None = None) -> list[JobEvent]:
    """The events of an attempt's end (`change`, at `at`): a succeeded attempt's `result` event
    (`result`, numbered just before), then its lifecycle event."""
    ended = change_event(change, at)
    if change.status is not JobStatus.SUCCEEDED:
        return [ended]
    return [result_event(change.job_id, change.seq - 1, at, result or b"null"), ended]


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
    job_id: uuid.UUID, after_seq: int, attempts: Iterable[AttemptMarks], job: JobMarks
) -> list[JobEvent]:
    events: list[JobEvent] = []
    for row in attempts:
        if row.start_seq is not None and row.start_seq > after_seq:
            events.append(running_event(job_id, row.start_seq, row.started_at, row.attempt))
        if row.end_seq is None or row.end_status is None or row.end_seq <= after_seq:
            continue
        change = Change(
            job_id,
            row.end_seq,
            row.end_status,
            row.end_attempt if row.end_attempt is not None else row.attempt,
            row.end_error,
            row.end_run_at,
        )
        # The result is the job's: a succeeded attempt is the job's last.
        result = job.result if job.status is JobStatus.SUCCEEDED else None
        events += [e for e in end_events(change, row.ended_at, result) if e.seq > after_seq]
    if job.status is JobStatus.RUNNING and job.event_seq > after_seq and job.started_at:
        events.append(running_event(job_id, job.event_seq, job.started_at, job.attempt))
    return events


def event_page(
    job_id: uuid.UUID,
    after_seq: int,
    limit: int,
    *,
    stored: Sequence[JobEvent],
    attempts: Iterable[AttemptMarks],
    job: JobMarks | None,
) -> list[JobEvent]:
    """The job's events with seq > after_seq, in order, at most `limit`: `stored` (the stored
    rows after `after_seq`, at most `limit`, in order) merged with the events the rows imply.
    Where a stored row holds a number an implied event has (a late write of an attempt that had
    lost its lease), the implied event stands."""
    if job is None:
        return list(stored[:limit])
    implied = _implied(job_id, after_seq, attempts, job)
    if not implied:
        return list(stored[:limit])
    taken = {event.seq for event in implied}
    merged = sorted(
        [*implied, *(event for event in stored if event.seq not in taken)],
        key=lambda event: event.seq,
    )
    return merged[:limit]
