"""A job's events: its history (`SQLServerEvents`) and, while the live bus is the database, its
events of every kind (`SQLServerLive`). A page is read from the rows that hold it, in one
moment of the database (the `read_events` statement), and merged by `storage.event_log`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from jobworker.models import EventKind, JobEvent, JobStatus
from jobworker.storage.event_log import AttemptMarks, JobMarks, event_page
from jobworker.storage.ports import NoSubscription, Subscription
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, to_bytes, to_time, ts
from jobworker.storage.sqlserver.writes import EventWriter

__all__ = ["SQLServerEvents", "SQLServerLive", "read_page"]


def _job_marks(row: Sequence[Any]) -> JobMarks:
    """(status, attempt, started_at, event_seq, result)."""
    status, attempt, started_at, event_seq, result = row
    return JobMarks(
        JobStatus(status),
        attempt,
        VALUES.maybe_time(started_at),
        int(event_seq),
        VALUES.maybe_bytes(result),
    )


def _attempt_marks(row: Sequence[Any]) -> AttemptMarks:
    """(attempt, started_at, ended_at, start_seq, end_seq, end_status, end_attempt, end_error,
    end_run_at)."""
    attempt, started, ended, start_seq, end_seq, end_status, end_attempt, error, run_at = row
    return AttemptMarks(
        attempt=attempt,
        started_at=to_time(started),
        ended_at=to_time(ended),
        start_seq=None if start_seq is None else int(start_seq),
        end_seq=None if end_seq is None else int(end_seq),
        end_status=None if end_status is None else JobStatus(end_status),
        end_attempt=end_attempt,
        end_error=error,
        end_run_at=VALUES.maybe_time(run_at),
    )


def _stored(job_id: uuid.UUID, row: Sequence[Any]) -> JobEvent:
    """(seq, kind, occurred_at, payload)."""
    seq, kind, occurred_at, payload = row
    return JobEvent(
        job_id=job_id,
        seq=int(seq),
        kind=EventKind(kind),
        occurred_at=to_time(occurred_at),
        payload=msgspec.Raw(to_bytes(payload)),
    )


async def read_page(
    queries: Queries, job_id: uuid.UUID, after_seq: int, limit: int, *, transient: bool
) -> list[JobEvent]:
    """Up to `limit` of the job's events after `after_seq`, in order: the kept ones, and the
    transient ones too if `transient`."""
    if limit <= 0:
        return []
    jobs, attempts, stored = await queries.sets(
        "read_events", job_id=str(job_id), after_seq=after_seq, limit=limit, transient=transient
    )
    return event_page(
        job_id,
        after_seq,
        limit,
        stored=[_stored(job_id, row) for row in stored],
        attempts=[_attempt_marks(row) for row in attempts],
        job=_job_marks(jobs[0]) if jobs else None,
    )


class SQLServerEvents:
    def __init__(self, queries: Queries) -> None:
        self._queries = queries

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100
    ) -> list[JobEvent]:
        return await read_page(self._queries, job_id, after_seq, limit, transient=False)


class SQLServerLive:
    """The live bus's rows: transient ones for the kinds that are not kept."""

    def __init__(self, queries: Queries, writer: EventWriter) -> None:
        self._queries = queries
        self._writer = writer

    async def store_live(
        self, events: Sequence[JobEvent], emitted_by: Sequence[tuple[str, int]]
    ) -> None:
        if events:
            await self._queries.run(lambda session: self._writer.store(session, events, emitted_by))

    async def read_live(self, job_id: uuid.UUID, after_seq: int, limit: int) -> list[JobEvent]:
        return await read_page(self._queries, job_id, after_seq, limit, transient=True)

    async def subscribe_live(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        return NoSubscription()  # no notifications on SQL Server: readers poll

    async def purge_live(self, before: datetime, limit: int = 5000) -> int:
        if limit <= 0:
            return 0
        purged = await self._queries.scalar(
            "purge_transient_events", before=ts(before), limit=limit
        )
        return int(purged)
