"""Rows to records: every backend's SELECTs return columns in the order these mappers read, and
a backend passes the converters that turn its driver's values into Python's (`Values`).

A row written by hand can hold what no jobworker write makes (an id that is not a UUID, a word
where a number belongs, a NULL where a value belongs, a result TTL no date can add): the claim,
the lease rescue and the listing read such a row as `Unreadable`, so that one row never stops the
others, and the caller ends it `dead` where it can or skips it, reporting it once (`report`)."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from jobworker.models import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedJob,
    JobKind,
    JobRecord,
    JobStatus,
    QueueInfo,
)
from jobworker.recurring import BeatLeader, RecurringJob
from jobworker.storage.attempt_ends import Lease

Row = Sequence[Any]
T = TypeVar("T")

logger = logging.getLogger("jobworker.storage")

# The longest result TTL a row may hold (a hundred years): every backend can add it to a date.
MAX_RESULT_TTL = 100 * 365.25 * 86400.0
_READ_ERRORS = (ValueError, TypeError, OverflowError, IndexError, KeyError, AttributeError)


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Values:
    """How one driver's values become Python's (the identity where the driver already does it)."""

    to_uuid: Callable[[Any], uuid.UUID] = _same
    to_time: Callable[[Any], datetime] = _same
    to_bytes: Callable[[Any], bytes] = _same

    def maybe_time(self, value: Any) -> datetime | None:
        return None if value is None else self.to_time(value)

    def maybe_uuid(self, value: Any) -> uuid.UUID | None:
        return None if value is None else self.to_uuid(value)

    def maybe_bytes(self, value: Any) -> bytes | None:
        return None if value is None else self.to_bytes(value)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A row the mappers could not read: its id as stored (whatever it is) and why not."""

    raw_id: Any
    reason: str

    @property
    def job_id(self) -> uuid.UUID | None:
        """The id, when it is a UUID (a row broken elsewhere)."""
        if isinstance(self.raw_id, uuid.UUID):
            return self.raw_id
        try:
            return uuid.UUID(str(self.raw_id))
        except ValueError:
            return None

    @property
    def error(self) -> str:
        """The error a row ended `dead` for this is stored with."""
        return f"the jobs row could not be read: {self.reason}"


class JobRecords(list[JobRecord]):
    """A listing: the rows read, and the rows of the page that could not be (`unreadable`).
    `scan_edge`: when a listing with a scan limit stopped before it filled the page, the id of
    the last row it read (the next page starts below it)."""

    def __init__(
        self,
        records: Iterable[JobRecord] = (),
        unreadable: Iterable[Unreadable] = (),
        scan_edge: uuid.UUID | None = None,
    ):
        super().__init__(records)
        self.unreadable = list(unreadable)
        self.scan_edge = scan_edge


@dataclass(slots=True)
class ClaimRows:
    """A claim's rows: the jobs, most urgent first, and the rows that could not be read."""

    jobs: list[ClaimedJob] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


_reported: set[tuple[str, str]] = set()


def report(rows: Iterable[Unreadable], where: str) -> None:
    """Log each unreadable row once per process and place, with its id."""
    for row in rows:
        key = (where, repr(row.raw_id))
        if key in _reported:
            continue
        if len(_reported) >= 10_000:
            _reported.clear()
        _reported.add(key)
        logger.error(
            "%s: the jobs row with id %r cannot be read: %s", where, row.raw_id, row.reason
        )


def read_each(rows: Iterable[Row], read: Callable[[Row], T]) -> tuple[list[T], list[Unreadable]]:
    """Each row read by `read`; the ones it fails on, as `Unreadable`, apart."""
    good: list[T] = []
    bad: list[Unreadable] = []
    for row in rows:
        try:
            good.append(read(row))
        except _READ_ERRORS as exc:
            bad.append(Unreadable(row[0] if len(row) else None, str(exc) or type(exc).__name__))
    return good, bad


def _uuid(values: Values, value: Any, column: str) -> uuid.UUID:
    if value is None:
        raise ValueError(f"{column} is NULL")
    try:
        return values.to_uuid(value)
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{column} {value!r} is not a UUID") from None


def _int(value: Any, column: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{column} {value!r} is not an integer")
    return value


def _text(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{column} {value!r} is not text")
    return value


def _trace_context(value: Any) -> str | None:
    # Advisory: a value that is not text costs the attempt its parent span, never the job.
    return value if isinstance(value, str) else None


_KINDS = frozenset(kind.value for kind in JobKind)


def _kind(value: Any) -> JobKind:
    if not isinstance(value, str) or value not in _KINDS:
        raise ValueError(f"kind {value!r} is not one of {', '.join(sorted(_KINDS))}")
    return JobKind(value)


def _time(values: Values, value: Any, column: str) -> datetime:
    if value is None:
        raise ValueError(f"{column} is NULL")
    try:
        return values.to_time(value)
    except (ValueError, TypeError, OverflowError, OSError):
        raise ValueError(f"{column} {value!r} is not a time") from None


def _ttl(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"result_ttl {value!r} is not a number")
    if not (math.isfinite(value) and 0 <= value <= MAX_RESULT_TTL):
        raise ValueError(f"result_ttl {value!r} is not between 0 and {MAX_RESULT_TTL:.0f} seconds")
    return float(value)


def _claimed(row: Row, values: Values) -> tuple[tuple[int, datetime], ClaimedJob]:
    job_id = _uuid(values, row[0], "id")
    started_at, seq = _time(values, row[7], "started_at"), _int(row[11], "event_seq")
    attempt = _int(row[4], "attempt")
    if row[3] is None:
        raise ValueError("args is NULL")
    job = ClaimedJob(
        id=job_id,
        job_type=_text(row[1], "job_type"),
        queue=_text(row[2], "queue"),
        args=values.to_bytes(row[3]),
        attempt=attempt,
        max_attempts=_int(row[5], "max_attempts"),
        enqueued_at=_time(values, row[6], "enqueued_at"),
        started_at=started_at,
        result_ttl=_ttl(row[8]),
        event_seq=seq,
        trace_context=_trace_context(row[12]) if len(row) > 12 else None,
    )
    return (-_int(row[9], "priority"), _time(values, row[10], "run_at")), job


def claimed_jobs(rows: Iterable[Row], values: Values) -> ClaimRows:
    """A claim's rows (id, job_type, queue, args, attempt, max_attempts, enqueued_at,
    started_at, result_ttl, priority, run_at, event_seq, and trace_context when the claim read
    it), most urgent first (a claim made of several statements, one per capped job type,
    returns them in no useful order); the rows that cannot be read apart (the caller ends
    them)."""
    read, unreadable = read_each(rows, lambda row: _claimed(row, values))
    read.sort(key=lambda keyed: keyed[0])
    return ClaimRows([job for _, job in read], unreadable)


def lease(row: Row, values: Values) -> Lease:
    """A running job's lease: (id, attempt, max_attempts, lease_owner, started_at,
    cancel_requested, event_seq)."""
    return Lease(
        _uuid(values, row[0], "id"),
        _int(row[1], "attempt"),
        _int(row[2], "max_attempts"),
        _text(row[3], "lease_owner"),
        None if row[4] is None else _time(values, row[4], "started_at"),
        bool(row[5]),
        _int(row[6], "event_seq"),
    )


def job_records(rows: Iterable[Row], values: Values) -> JobRecords:
    """Rows of a listing (`job_record`), those that cannot be read reported and counted apart."""
    records, unreadable = read_each(rows, lambda row: job_record(row, values))
    report(unreadable, "listing jobs")
    return JobRecords(records, unreadable)


def job_record(row: Row, values: Values) -> JobRecord:
    """A jobs row, in the column order every backend's get_job and list_jobs select (id,
    job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind)."""
    if row[5] is None:
        raise ValueError("args is NULL")
    return JobRecord(
        id=_uuid(values, row[0], "id"),
        job_type=_text(row[1], "job_type"),
        queue=_text(row[2], "queue"),
        priority=_int(row[3], "priority"),
        status=JobStatus(row[4]),
        kind=_kind(row[21]),
        args=values.to_bytes(row[5]),
        attempt=_int(row[6], "attempt"),
        max_attempts=_int(row[7], "max_attempts"),
        enqueued_at=_time(values, row[8], "enqueued_at"),
        run_at=_time(values, row[9], "run_at"),
        started_at=values.maybe_time(row[10]),
        completed_at=values.maybe_time(row[11]),
        lease_owner=row[12],
        lease_expires_at=values.maybe_time(row[13]),
        idempotency_key=row[14],
        continues_job_id=values.maybe_uuid(row[15]),
        result=values.maybe_bytes(row[16]),
        error=row[17],
        traceback=row[18],
        result_ttl=row[19],
        expires_at=values.maybe_time(row[20]),
    )


def attempt_record(row: Row, values: Values) -> AttemptRecord:
    """(job_id, attempt, worker, started_at, ended_at, outcome, error, traceback)."""
    return AttemptRecord(
        job_id=values.to_uuid(row[0]),
        attempt=row[1],
        worker=row[2],
        started_at=values.to_time(row[3]),
        ended_at=values.to_time(row[4]),
        outcome=AttemptOutcome(row[5]),
        error=row[6],
        traceback=row[7],
    )


def recurring_job(row: Row, values: Values) -> RecurringJob:
    """(name, job_type, cron, timezone, args, enabled, last_fire_at, next_fire_at, updated_at)."""
    return RecurringJob(
        name=row[0],
        job_type=row[1],
        cron=row[2],
        timezone=row[3],
        args=values.to_bytes(row[4]),
        enabled=bool(row[5]),
        last_fire_at=values.maybe_time(row[6]),
        next_fire_at=values.maybe_time(row[7]),
        updated_at=values.to_time(row[8]),
    )


def beat_leader(row: Row, values: Values) -> BeatLeader:
    """(holder, mechanism, token, since, renewed_at, expires_at)."""
    return BeatLeader(
        holder=row[0],
        mechanism=row[1],
        token=row[2],
        since=values.to_time(row[3]),
        renewed_at=values.to_time(row[4]),
        expires_at=values.to_time(row[5]),
    )


def queue_infos(counts: Iterable[Row], states: Iterable[Row]) -> list[QueueInfo]:
    """Every queue with jobs or a pause state, by name: `counts` are (queue, status, n) rows and
    `states` (queue, paused) rows."""
    by_queue: dict[str, dict[str, int]] = {}
    for queue, status, n in counts:
        by_queue.setdefault(queue, {})[status] = n
    paused = {queue: bool(flag) for queue, flag in states}
    return [
        QueueInfo(name=name, paused=paused.get(name, False), counts=by_queue.get(name, {}))
        for name in sorted(set(by_queue) | set(paused))
    ]


def status_counts(rows: Iterable[Row]) -> dict[JobStatus, int]:
    """(status, n) rows as a count for every status, zero where there is no row."""
    counts = dict.fromkeys(JobStatus, 0)
    for status, n in rows:
        counts[JobStatus(status)] = n
    return counts
