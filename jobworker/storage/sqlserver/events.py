"""The event store role: a job's kept events, and the transient ones that carry events live
without Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import msgspec

from jobworker.models import EventKind, JobEvent
from jobworker.storage.ports import NoSubscription, Subscription
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import to_bytes, to_time, ts

__all__ = ["SQLServerEvents"]


class SQLServerEvents:
    def __init__(self, queries: Queries) -> None:
        self._queries = queries

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100, *, transient: bool = False
    ) -> list[JobEvent]:
        if limit <= 0:
            return []
        rows = await self._queries.rows(
            "read_events",
            job_id=str(job_id),
            after_seq=after_seq,
            limit=limit,
            transient=transient,
        )
        return [
            JobEvent(
                job_id=job_id,
                seq=int(seq),
                kind=EventKind(kind),
                occurred_at=to_time(occurred_at),
                payload=msgspec.Raw(to_bytes(payload)),
            )
            for seq, kind, occurred_at, payload in rows
        ]

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        return NoSubscription()  # no notifications on SQL Server: readers poll

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        if limit <= 0:
            return 0
        purged = await self._queries.scalar(
            "purge_transient_events", before=ts(before), limit=limit
        )
        return int(purged)
