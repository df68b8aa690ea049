"""The event roles on PostgreSQL: a job's history (`PostgresEvents`), and the rows that carry
every event live when Redis is not there (`PostgresLive`: stored, read, LISTENed for, purged)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import JobEvent
from jobworker.storage.ports import Subscription
from jobworker.storage.postgres.connection import Database
from jobworker.storage.postgres.event_rows import read_page, store_events
from jobworker.storage.postgres.listener import Listener

__all__ = ["PostgresEvents", "PostgresLive"]


class PostgresEvents:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100
    ) -> list[JobEvent]:
        return await read_page(self._db, job_id, after_seq, limit, transient=False)


class PostgresLive:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._kept = settings.kept_kinds()

    async def store_live(
        self, events: Sequence[JobEvent], emitted_by: Sequence[tuple[str, int]]
    ) -> None:
        await store_events(
            self._db, events, self._kept, emitted_by, channel=self._db.events_channel
        )

    async def read_live(self, job_id: uuid.UUID, after_seq: int, limit: int) -> list[JobEvent]:
        return await read_page(self._db, job_id, after_seq, limit, transient=True)

    async def subscribe_live(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        def dispatch(payload: str) -> None:
            on_events(None if payload == "*" else {uuid.UUID(id) for id in payload.split(",")})

        listener = Listener(
            self._db.connect, self._db.events_channel, dispatch, lambda: on_events(None)
        )
        await listener.start()
        return listener

    async def purge_live(self, before: datetime, limit: int = 5000) -> int:
        return await self._db.execute("purge_live", before, limit)
