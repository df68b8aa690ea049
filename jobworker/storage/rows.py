"""Rows to records: every backend's SELECTs return columns in the order these mappers read, and
a backend passes the converters that turn its driver's values into Python's (`Values`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobworker.models import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedJob,
    JobRecord,
    JobStatus,
    QueueInfo,
)
from jobworker.recurring import BeatLeader, RecurringJob
from jobworker.storage.event_log import running_event

Row = Sequence[Any]


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


def claimed_jobs(rows: Iterable[Row], values: Values) -> list[ClaimedJob]:
    """A claim's rows (id, job_type, queue, args, attempt, max_attempts, enqueued_at,
    started_at, result_ttl, priority, run_at, event_seq), most urgent first (a claim made of
    several statements, one per capped job type, returns them in no useful order), each with
    its `running` event."""
    ordered = sorted(rows, key=lambda row: (-row[9], row[10]))
    claimed = []
    for row in ordered:
        job_id, started_at, seq = values.to_uuid(row[0]), values.to_time(row[7]), int(row[11])
        claimed.append(
            ClaimedJob(
                id=job_id,
                job_type=row[1],
                queue=row[2],
                args=values.to_bytes(row[3]),
                attempt=row[4],
                max_attempts=row[5],
                enqueued_at=values.to_time(row[6]),
                started_at=started_at,
                result_ttl=row[8],
                event_seq=seq,
                running=running_event(job_id, seq, started_at, row[4]),
            )
        )
    return claimed


def job_record(row: Row, values: Values) -> JobRecord:
    """A jobs row, in the column order every backend's get_job and list_jobs select."""
    return JobRecord(
        id=values.to_uuid(row[0]),
        job_type=row[1],
        queue=row[2],
        priority=row[3],
        status=JobStatus(row[4]),
        args=values.to_bytes(row[5]),
        attempt=row[6],
        max_attempts=row[7],
        enqueued_at=values.to_time(row[8]),
        run_at=values.to_time(row[9]),
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
