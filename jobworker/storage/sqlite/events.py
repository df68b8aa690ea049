"""A job's events: the stored rows, and the events its rows stand for.

No job_events row holds an attempt's `running` event or the lifecycle event that ended it: the
claim and the end of an attempt number them, and the attempt's row (the running attempt's: the
job's row) says what they are. A succeeded job's `result` event (kept only when results are
persisted) is derived from its result. Reading puts them back in sequence among the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from jobworker.models import EventKind, JobEvent, JobStatus
from jobworker.storage.base import lifecycle_event
from jobworker.storage.ports import NoSubscription, Subscription
from jobworker.storage.sqlite.connection import Database, Session
from jobworker.storage.sqlite.values import from_timestamp

__all__ = ["SQLiteEvents"]


def _attempt_events(
    job_id: uuid.UUID, row: Any, after_seq: int, result: tuple[bytes | None] | None
) -> list[JobEvent]:
    """An ended attempt's `running` event and its end's lifecycle event, after `after_seq`;
    given a succeeded job's `(result,)`, also the result event of the attempt that succeeded:
    numbered by the worker just before the end, unless a row holds that number (the worker
    stored its result event itself, as another event was its attempt's last)."""
    attempt, started, ended, start_seq, end_seq, end_status, end_attempt, error, run_at = row[:9]
    result_stored = row[9]
    events = []
    if start_seq is not None and start_seq > after_seq:
        events.append(
            lifecycle_event(job_id, start_seq, from_timestamp(started), JobStatus.RUNNING, attempt)
        )
    if end_seq is None:
        return events
    ended_at = from_timestamp(ended)
    status = JobStatus(end_status)
    if end_seq > after_seq:
        retry_at = None if run_at is None else from_timestamp(run_at)
        events.append(
            lifecycle_event(job_id, end_seq, ended_at, status, end_attempt, error, retry_at)
        )
    if (
        result is not None
        and status is JobStatus.SUCCEEDED
        and not result_stored
        and end_seq - 1 > max(after_seq, start_seq or 0)
    ):
        payload = b'{"value":' + bytes(result[0] or b"null") + b"}"
        events.append(
            JobEvent(
                job_id=job_id,
                seq=end_seq - 1,
                kind=EventKind.RESULT,
                occurred_at=ended_at,
                payload=msgspec.Raw(payload),
            )
        )
    return events


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

        def read(session: Session) -> list[JobEvent]:
            events = [
                JobEvent(
                    job_id=job_id,
                    seq=seq,
                    kind=EventKind(kind),
                    occurred_at=from_timestamp(occurred_at),
                    payload=msgspec.Raw(bytes(payload)),
                )
                for _id, seq, kind, occurred_at, payload in session.all("read_events", params)
            ]
            derived = self._derived_events(session, job_id, after_seq)
            if derived:
                events += derived
                events.sort(key=lambda event: event.seq)
            return events[:limit]

        # One snapshot: rows and the events derived from the job's rows must agree (a completion
        # committed between two reads would otherwise show its end before the events stored
        # with it, or the attempt twice).
        return await self._db.snapshot(read)

    def _derived_events(
        self, session: Session, job_id: uuid.UUID, after_seq: int
    ) -> list[JobEvent]:
        """The events no row stores, after `after_seq`."""
        params = {"job_id": str(job_id), "after_seq": after_seq}
        job = session.one("running_event", params)
        if job is None:
            return []
        status, attempt, started_at, event_seq, result = job
        derived_result = (
            (result,) if self._derives_results and status == JobStatus.SUCCEEDED else None
        )
        events: list[JobEvent] = []
        for row in session.all("attempt_events", params):
            events += _attempt_events(job_id, row, after_seq, derived_result)
        if status == JobStatus.RUNNING and event_seq > after_seq:
            running_since = from_timestamp(started_at)
            events.append(
                lifecycle_event(job_id, event_seq, running_since, JobStatus.RUNNING, attempt)
            )
        return events

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        return NoSubscription()  # readers poll

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        params = {"before": before.timestamp(), "limit": limit}
        return await self._db.write(
            lambda session: session.execute("purge_transient_events", params).rowcount
        )
