"""The database as the live bus: events of kinds the database does not keep travel as transient
rows, which expire after `event_stream_ttl`.

It carries every event when no Redis is configured, and stands in for Redis while Redis is out
of reach (`bus.RedisBus`). Readers read a job's rows, kept and transient together, in sequence
order, and wait for the database's notifications (PostgreSQL, SQL Server) or poll (SQLite).

Its rows are the storage's `LiveRows` role, which nothing else uses; a worker's round writes
them with its outcomes (`Jobs.complete_many`), so that they are stored in order with the kept
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

from jobworker.config import Settings
from jobworker.events.model import LiveEvent
from jobworker.models import EventKind, JobEvent
from jobworker.storage import Storage, Subscription

__all__ = ["PAGE", "DatabaseBus", "Notifier", "stored_event"]

# Events one read returns at most.
PAGE = 500


class Notifier:
    """One database subscription shared by every reader of a process: wakes the readers of the
    jobs named in each notification."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._waiters: defaultdict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._subscription: Subscription | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._subscription is None:
                self._subscription = await self._storage.live.subscribe_live(self._notified)

    def _notified(self, job_ids: set[uuid.UUID] | None) -> None:
        targets = self._waiters.keys() if job_ids is None else job_ids & self._waiters.keys()
        for job_id in list(targets):
            for event in self._waiters.get(job_id, ()):
                event.set()

    @contextlib.asynccontextmanager
    async def watching(self, job_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        """An event set whenever events of the job are stored (the subscription starts with the
        first reader)."""
        await self.start()
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            self._waiters[job_id].discard(event)
            if not self._waiters[job_id]:
                del self._waiters[job_id]

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None


class DatabaseBus:
    """The `EventBus` of transient rows (see the module docstring)."""

    # Its events are rows of the database: the kept ones are already there, so a publisher
    # hands in only the others, and a worker's round writes them in its own transaction.
    publishes_stored = False
    in_database = True

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self._storage = storage
        self._kept = frozenset(EventKind(kind) for kind in settings.kept_kinds())
        self._notifier = Notifier(storage)

    async def publish(
        self,
        batches: Mapping[uuid.UUID, Sequence[LiveEvent]],
        *,
        ended: Sequence[uuid.UUID] = (),
        emitted_by: Mapping[uuid.UUID, tuple[str, int]],
    ) -> int:
        """Store the events of kinds the database does not keep, in one transaction (those
        already stored are left as they are), fenced by the attempt that emitted them. Nothing
        is refused."""
        unkept: list[JobEvent] = []
        attempts: list[tuple[str, int]] = []
        for job_id, events in batches.items():
            for event in events:
                if event[1] not in self._kept:
                    unkept.append(stored_event(job_id, event))
                    attempts.append(emitted_by[job_id])
        if unkept:
            await self._storage.live.store_live(unkept, attempts)
        return 0

    async def read(
        self, job_id: uuid.UUID, after_seq: int, *, block: float | None = None
    ) -> list[JobEvent]:
        """A page of the job's events after `after_seq`; with `block` (seconds), wait that long
        for a notification if there are none yet."""
        if block is None:
            return await self.read_stored(job_id, after_seq)
        async with self.watching(job_id) as notified:
            found = await self.read_stored(job_id, after_seq)
            if found:
                return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(notified.wait(), block)
        return await self.read_stored(job_id, after_seq)

    async def read_stored(
        self, job_id: uuid.UUID, after_seq: int, limit: int = PAGE
    ) -> list[JobEvent]:
        """Up to `limit` of the job's events after `after_seq`, of every kind, in order."""
        return await self._storage.live.read_live(job_id, after_seq, limit)

    async def last_seqs(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Nothing: the database numbers above what it holds by itself."""
        return {}

    def watching(self, job_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._notifier.watching(job_id)

    async def purge(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` expiring rows of events that occurred before `before`."""
        return await self._storage.live.purge_live(before, limit=limit)

    async def close(self) -> None:
        """End the readers' subscription (the storage is its owner's to close)."""
        await self._notifier.close()


def stored_event(job_id: uuid.UUID, event: LiveEvent) -> JobEvent:
    """A live event as the storage takes it."""
    seq, kind, at, payload = event
    return JobEvent(
        job_id=job_id,
        seq=seq,
        kind=kind,
        occurred_at=datetime.fromtimestamp(at, UTC),
        payload=payload,
    )
