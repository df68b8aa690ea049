"""A job's events: the stored rows, read with the rows that imply the others (an attempt's
`running` and end events, a succeeded job's `result`) in one snapshot, and merged by
`storage.event_log`; the transient rows that carry events live without Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import msgspec

from jobworker.models import EventKind, JobEvent, JobStatus
from jobworker.storage.event_log import AttemptMarks, JobMarks, event_page
from jobworker.storage.ports import NoSubscription, Subscription
from jobworker.storage.sqlite.connection import Database, Row, Session
from jobworker.storage.sqlite.values import VALUES, from_timestamp

__all__ = ["SQLiteEvents"]


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


def _job_marks(row: Row) -> tuple[JobMarks, bool]:
    """The job's marks, and whether a row holds its `result` event's number (see the
    `running_event` statement)."""
    status, attempt, started_at, event_seq, result, result_stored = row
    started = VALUES.maybe_time(started_at)
    return JobMarks(JobStatus(status), attempt, started, event_seq, result), bool(result_stored)


class SQLiteEvents:
    def __init__(self, db: Database, derives_result_events: bool) -> None:
        self._db = db
        # When results are kept, a succeeded job's `result` event is derived from its result.
        self._derives_results = derives_result_events

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100, *, transient: bool = False
    ) -> list[JobEvent]:
        params = {
            "job_id": str(job_id),
            "after_seq": after_seq,
            "limit": limit,
            "transient": transient,
        }

        def read(session: Session) -> tuple[list[Row], list[Row], Row | None]:
            job = session.one("running_event", params)
            attempts = session.all("attempt_events", params) if job is not None else []
            return session.all("read_events", params), attempts, job

        # One snapshot: rows and the events derived from the job's rows must agree (a completion
        # committed between two reads would otherwise show its end before the events stored
        # with it, or the attempt twice).
        stored, attempts, job = await self._db.snapshot(read)
        marks, result_stored = (None, False) if job is None else _job_marks(job)
        return event_page(
            job_id,
            after_seq,
            limit,
            stored=[_stored(job_id, row) for row in stored],
            attempts=[_attempt_marks(row) for row in attempts],
            job=marks,
            keep_results=self._derives_results and not result_stored,
        )

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        return NoSubscription()  # readers poll

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        params = {"before": before.timestamp(), "limit": limit}
        return await self._db.write(
            lambda session: session.execute("purge_transient_events", params).rowcount
        )
