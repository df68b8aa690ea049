"""The live bus: the seam between the worker that writes a job's events and the readers that
follow them.

Two buses carry events: Redis Streams (`RedisBus`, when `redis_url` is set) and the database
(`DatabaseBus`: transient rows, when it is not, and while Redis is out of reach). Whichever it
is, the database also holds the kept kinds (lifecycle, progress, result by default), so a reader
reads it too, for what the bus lacks.

A worker writes a round of events in two steps (events/recorder.py): one database transaction
with the outcomes and the kept events, then the bus. The database goes first, so an event a
reader misses on the bus is stored by the time a later one arrives. While the bus is the
database (`in_database`), the events it carries go into that same transaction instead: a reader
then never sees a later event of one kind before an earlier one of another.

Lease floors: when a lease ends without its worker (the process died, or the lease expired), the
lifecycle event of that change is numbered above every event the attempt published. Redis may
hold events the database never saw, so `floors` asks the bus for each job's last sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from jobworker.config import Settings
from jobworker.events.database_bus import DatabaseBus
from jobworker.events.model import LiveEvent
from jobworker.events.redis_bus import BusUnavailable, RedisStreamBus
from jobworker.models import JobEvent
from jobworker.outage import Outage
from jobworker.storage import Storage

__all__ = [
    "BusUnavailable",
    "DatabaseBus",
    "EventBus",
    "LiveEvent",
    "RedisBus",
    "bus_for",
    "floors",
    "live_floors",
    "redis_streams",
]

logger = logging.getLogger("jobworker.events")


class EventBus(Protocol):
    """Carries a job's events live, from the worker that emits them to its readers."""

    @property
    def publishes_stored(self) -> bool:
        """The bus carries the events the database keeps too (the lifecycle events of the
        outcomes included), so that a reader can follow it alone; a publisher hands them in."""
        ...

    @property
    def in_database(self) -> bool:
        """Right now the bus's events are rows of the database: a worker writes them in its
        round's transaction (as transient rows, with the kept ones) and publishes nothing, and
        readers read the database and wait for its notifications."""
        ...

    async def publish(
        self,
        batches: Mapping[uuid.UUID, Sequence[LiveEvent]],
        *,
        ended: Sequence[uuid.UUID] = (),
        emitted_by: Mapping[uuid.UUID, tuple[str, int]],
    ) -> int:
        """Carry a round of events (each job's in sequence order); `ended` jobs have ended;
        `emitted_by`: the attempt (lease owner, number) whose events each job's are. Returns how
        many events were refused because the bus holds a later sequence of their job already
        (an attempt whose lease was lost)."""
        ...

    async def read(
        self, job_id: uuid.UUID, after_seq: int, *, block: float | None = None
    ) -> list[JobEvent]:
        """The job's events after `after_seq`, oldest first; with `block` (seconds), wait that
        long for some if there are none yet. Raises `BusUnavailable` when the bus cannot be
        read (it then stands aside: `in_database`)."""
        ...

    async def read_stored(self, job_id: uuid.UUID, after_seq: int, limit: int) -> list[JobEvent]:
        """Up to `limit` of the job's events after `after_seq` that the database holds (kept
        and transient), oldest first: what a reader fills gaps with."""
        ...

    async def last_seqs(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The last sequence of each job the bus holds beyond what the database knows (absent
        or 0: none). Raises `BusUnavailable` when the bus cannot be asked."""
        ...

    def watching(self, job_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """While open: an event set whenever events of the job are stored in the database
        (notifications; readers clear it, and poll as well where there are none)."""
        ...

    async def close(self) -> None: ...


class RedisBus:
    """The `EventBus` on Redis Streams, with the database standing in while Redis is out of
    reach: for `retry_interval` seconds after a failure, events travel as transient rows."""

    publishes_stored = True

    def __init__(
        self, streams: RedisStreamBus, database: DatabaseBus, retry_interval: float
    ) -> None:
        self.streams = streams
        self.database = database
        self._retry_interval = retry_interval
        self._down_until = 0.0
        self._publishing = Outage("publishing events to Redis")

    @property
    def in_database(self) -> bool:
        return time.monotonic() < self._down_until

    async def publish(
        self,
        batches: Mapping[uuid.UUID, Sequence[LiveEvent]],
        *,
        ended: Sequence[uuid.UUID] = (),
        emitted_by: Mapping[uuid.UUID, tuple[str, int]],
    ) -> int:
        """Publish to Redis; when that fails, store what the database lacks as transient rows
        (readers find it there) and use the database for a while. The database's errors are
        the caller's."""
        if self.in_database:
            return await self.database.publish(batches, ended=ended, emitted_by=emitted_by)
        try:
            refused = await self.streams.publish(batches, ended=ended)
        except BusUnavailable as exc:
            self._publishing.failed(exc)
            self._stand_aside()
            return await self.database.publish(batches, ended=ended, emitted_by=emitted_by)
        self._publishing.succeeded()
        return refused

    async def read(
        self, job_id: uuid.UUID, after_seq: int, *, block: float | None = None
    ) -> list[JobEvent]:
        if self.in_database:
            return await self.database.read(job_id, after_seq, block=block)
        try:
            return await self.streams.read(job_id, after_seq, block=block)
        except BusUnavailable as exc:
            logger.warning(
                "reading job events from Redis failed (%s); using the database for %.0fs",
                exc,
                self._retry_interval,
            )
            self._stand_aside()
            raise

    async def read_stored(self, job_id: uuid.UUID, after_seq: int, limit: int) -> list[JobEvent]:
        return await self.database.read_stored(job_id, after_seq, limit)

    async def last_seqs(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        return await self.streams.last_seqs(job_ids)

    def watching(self, job_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self.database.watching(job_id)

    async def close(self) -> None:
        try:
            await self.database.close()
        finally:
            await self.streams.close()

    def _stand_aside(self) -> None:
        self._down_until = time.monotonic() + self._retry_interval


def redis_streams(settings: Settings) -> RedisStreamBus | None:
    """The Redis client of the bus the settings ask for (None without `redis_url`)."""
    if not settings.redis_url:
        return None
    return RedisStreamBus(
        settings.redis_url,
        prefix=settings.redis_prefix,
        maxlen=settings.event_stream_maxlen,
        ttl=settings.event_stream_ttl,
    )


def bus_for(settings: Settings, storage: Storage) -> EventBus:
    """The live bus the settings ask for: Redis with `redis_url`, else the database. Closing it
    leaves `storage` open."""
    database = DatabaseBus(storage, settings)
    streams = redis_streams(settings)
    if streams is None:
        return database
    return RedisBus(streams, database, settings.redis_retry_interval)


async def floors(
    bus: EventBus | RedisStreamBus, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The last sequence each job used on the bus: empty on the database bus, or when Redis
    cannot be asked (the database's own numbers are then the best there is)."""
    if not job_ids:
        return {}
    try:
        return await bus.last_seqs(job_ids)
    except BusUnavailable as exc:
        logger.warning("could not read event sequences from Redis (%s)", exc)
        return {}


async def live_floors(settings: Settings, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """`floors` for a process without a bus of its own (ending a dead worker's leases, the
    beat's lease rescue), through a Redis connection opened for it."""
    streams = redis_streams(settings) if job_ids else None
    if streams is None:
        return {}
    try:
        return await floors(streams, job_ids)
    finally:
        await streams.close()
