"""A job's events: the stored rows, read with the rows that imply the others (an attempt's
`running` and end events, a succeeded job's `result`) in one snapshot and merged by
`storage.event_log`; and the rows that carry events live while the bus is the database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import msgspec

from jobworker.config import Settings
from jobworker.models import EventKind, JobEvent, JobStatus
from jobworker.storage.event_log import AttemptMarks, JobMarks, event_page
from jobworker.storage.ports import NoSubscription, Subscription
from jobworker.storage.sqlite.connection import Database, Row, Session
from jobworker.storage.sqlite.values import VALUES, event_rows_of, from_timestamp

__all__ = ["SQLiteEvents", "SQLiteLiveRows", "read_page"]


def _stored(job_id: uuid.UUID, row: Row) -> JobEvent:
    """(job_id, seq, kind, occurred_at, payload)."""
    return JobEvent(
        job_id=job_id,
        seq=row[1],
        kind=EventKind(row[2]),
        occurred_at=from_timestamp(row[3]),
        payload=msgspec.Raw(bytes(row[4])),
    )


def _attempt_marks(row: Row) -> AttemptMarks:
    attempt, started, ended, start_seq, end_seq, end_status, end_attempt, error, run_at = row
    return AttemptMarks(
        attempt=attempt,
        started_at=from_timestamp(started),
        ended_at=from_timestamp(ended),
        start_seq=start_seq,
        end_seq=end_seq,
        end_status=None if end_status is None else JobStatus(end_status),
        end_attempt=end_attempt,
        end_error=error,
        end_run_at=VALUES.maybe_time(run_at),
    )


def _job_marks(row: Row) -> JobMarks:
    status, attempt, started_at, event_seq, result = row
    return JobMarks(JobStatus(status), attempt, VALUES.maybe_time(started_at), event_seq, result)


async def read_page(
    db: Database, job_id: uuid.UUID, after_seq: int, limit: int, *, live: bool
) -> list[JobEvent]:
    """A page of the job's events: the kept ones (with `live`, every stored one)."""
    params = {"job_id": str(job_id), "after_seq": after_seq, "limit": limit, "live": live}

    def read(session: Session) -> tuple[list[Row], list[Row], Row | None]:
        job = session.one("job_events_marks", params)
        attempts = session.all("attempt_events", params) if job is not None else []
        return session.all("read_events", params), attempts, job

    # One snapshot: rows and the events derived from the job's rows must agree (a completion
    # committed between two reads would otherwise show its end before the events stored with
    # it, or the attempt twice).
    stored, attempts, job = await db.snapshot(read)
    return event_page(
        job_id,
        after_seq,
        limit,
        stored=[_stored(job_id, row) for row in stored],
        attempts=[_attempt_marks(row) for row in attempts],
        job=None if job is None else _job_marks(job),
    )


class SQLiteEvents:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100
    ) -> list[JobEvent]:
        return await read_page(self._db, job_id, after_seq, limit, live=False)


class SQLiteLiveRows:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._kept = settings.kept_kinds()

    async def store_live(
        self, events: Sequence[JobEvent], emitted_by: Sequence[tuple[str, int]]
    ) -> None:
        rows = event_rows_of(events, emitted_by, self._kept)
        if rows:
            await self._db.write(lambda session: session.execute_many("insert_event", rows))

    async def read_live(self, job_id: uuid.UUID, after_seq: int, limit: int) -> list[JobEvent]:
        return await read_page(self._db, job_id, after_seq, limit, live=True)

    async def subscribe_live(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        return NoSubscription()  # readers poll

    async def purge_live(self, before: datetime, limit: int = 5000) -> int:
        params = {"before": before.timestamp(), "limit": limit}
        return await self._db.write(lambda session: session.execute("purge_live_events", params))
