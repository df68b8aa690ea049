"""The event store role on PostgreSQL: reading a job's events, LISTENing for new ones, and
purging the transient rows that carry events live without Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import msgspec

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import EventKind, JobEvent
from jobworker.storage.ports import Subscription
from jobworker.storage.postgres.connection import Database
from jobworker.storage.postgres.listener import Listener


class PostgresEvents:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        # When results are kept, read_events derives a succeeded job's `result` event.
        self._results = "result" in settings.persisted_kinds()

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100, *, transient: bool = False
    ) -> list[JobEvent]:
        found = await self._db.fetch(
            "read_events",
            job_id=job_id,
            after_seq=after_seq,
            limit=limit,
            transient=transient,
            results=self._results,
        )
        return [
            JobEvent(
                job_id=job_id,
                seq=row[0],
                kind=EventKind(row[1]),
                occurred_at=row[2],
                payload=msgspec.Raw(row[3]),
            )
            for row in found
        ]

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        def dispatch(payload: str) -> None:
            on_events(None if payload == "*" else {uuid.UUID(id) for id in payload.split(",")})

        listener = Listener(
            self._db.connect, self._db.events_channel, dispatch, lambda: on_events(None)
        )
        await listener.start()
        return listener

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        return await self._db.execute("purge_transient_events", before, limit)
