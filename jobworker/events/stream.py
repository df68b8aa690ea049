"""Following one job's events: replay what is stored, then the live bus, without duplicates or
gaps among kept kinds, until the job's terminal event.

The database holds every kept event (lifecycle, progress, result by default) and, while Redis is
not there, the others as transient rows. Redis holds every event a worker published while it was
reachable. A reader therefore replays the database after the last sequence it delivered, then
blocks on the job's Redis stream; when the stream skips sequences (trimmed, or written while
Redis was away) it fills the gap from the database first; when the stream is quiet it looks in
the database again, for status changes made outside workers (a cancel, a lease rescue). Without
Redis it waits for the database's notifications (PostgreSQL) or polls (SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

from jobworker.config import Settings
from jobworker.errors import JobNotFoundError
from jobworker.events.model import is_terminal
from jobworker.events.redis_bus import BusUnavailable, RedisStreamBus
from jobworker.models import EventKind, JobEvent
from jobworker.storage import Storage
from jobworker.storage.ports import Subscription

PAGE = 500
# How long a reader blocks on Redis before it looks in the database again.
LIVE_BLOCK_SECONDS = 1.0
# How long a reader waits for Redis to fill a gap before the stored events that follow it.
GAP_GRACE = 2.0
# Without notifications or Redis, the existence of a quiet job is checked this often.
EXISTENCE_CHECK_SECONDS = 5.0

logger = logging.getLogger("jobworker.events")


def parse_event_id(value: str | int | None) -> int:
    """`Last-Event-ID` / `last_event_id` / `--from-seq` as the sequence to resume after."""
    if value is None or value == "":
        return 0
    try:
        seq = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"an event id is a sequence number, not {value!r}") from None
    if seq < 0:
        raise ValueError(f"an event id is not negative: {seq}")
    return seq


class Notifier:
    """One database subscription shared by every reader of a process: wakes the readers of the
    jobs named in each notification."""

    def __init__(self) -> None:
        self._waiters: defaultdict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._subscription: Subscription | None = None
        self._lock = asyncio.Lock()

    async def start(self, storage: Storage) -> None:
        async with self._lock:
            if self._subscription is None:
                self._subscription = await storage.events.subscribe_events(self._notified)

    def _notified(self, job_ids: set[uuid.UUID] | None) -> None:
        targets = self._waiters.keys() if job_ids is None else job_ids & self._waiters.keys()
        for job_id in list(targets):
            for event in self._waiters.get(job_id, ()):
                event.set()

    @contextlib.asynccontextmanager
    async def watching(self, job_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
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


class StreamService:
    """Readers of job events for one process and event loop."""

    def __init__(self, storage: Storage, settings: Settings, bus: RedisStreamBus | None) -> None:
        self._storage = storage
        self._settings = settings
        self._bus = bus
        self._bus_down_until = 0.0
        self._notifier = Notifier()

    async def close(self) -> None:
        await self._notifier.close()
        if self._bus is not None:
            await self._bus.close()

    def _live(self) -> bool:
        return self._bus is not None and time.monotonic() >= self._bus_down_until

    async def batches(self, job_id: uuid.UUID, after_seq: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Every event of the job after `after_seq`, in order, in batches as one read finds
        them (`client.stream` yields them one by one), ending after its terminal event (or when
        the job no longer exists)."""
        if await self._storage.inspection.get(job_id) is None:
            raise JobNotFoundError(job_id)
        await self._notifier.start(self._storage)
        async for batch in _Reader(self, job_id, after_seq).batches():
            yield batch

    def bus_failed(self, exc: BaseException) -> None:
        logger.warning(
            "reading job events from Redis failed (%s); using the database for %.0fs",
            exc,
            self._settings.redis_retry_interval,
        )
        self._bus_down_until = time.monotonic() + self._settings.redis_retry_interval


class _Reader:
    """One reader's position in one job's events."""

    def __init__(self, service: StreamService, job_id: uuid.UUID, after_seq: int) -> None:
        self._service = service
        self._storage = service._storage
        self._bus = service._bus
        self._settings = service._settings
        self._job_id = job_id
        self._delivered = after_seq
        self._ended = False
        self._database_at = 0.0
        self._gap_seen_at = 0.0

    async def batches(self) -> AsyncIterator[list[JobEvent]]:
        """Every event of the job after `after_seq`, in order and in batches as they come,
        ending after its terminal event (or when the job no longer exists)."""
        async with self._service._notifier.watching(self._job_id) as notified:
            database_due = True
            last_check = time.monotonic()
            while not self._ended:
                if self._service._live():
                    # Redis first (it has every kind); the database for what it lacks.
                    live = await self._read_live(None)
                    if live is None:
                        continue
                    if not live and (
                        database_due or time.monotonic() - self._database_at >= LIVE_BLOCK_SECONDS
                    ):
                        database_due = False
                        found = False
                        # A worker stores a round in the database just before it publishes it:
                        # events only Redis carries may be a moment behind the stored ones.
                        async for page in self._stored(contiguous=not self._gap_expired()):
                            found = True
                            yield page
                        if found:
                            continue
                    if not live:
                        live = await self._read_live(LIVE_BLOCK_SECONDS)
                        if live is None:
                            continue
                        database_due = not live
                    if live:
                        batch = await self._after_delivered(live)
                        if batch:
                            yield batch
                else:
                    async for page in self._stored():
                        yield page
                    if self.ended:
                        return
                    notified.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(notified.wait(), self._settings.event_poll_interval)
                if time.monotonic() - last_check >= EXISTENCE_CHECK_SECONDS:
                    last_check = time.monotonic()
                    if await self._storage.inspection.get(self._job_id) is None:
                        return  # deleted or purged: nothing more will come

    @property
    def ended(self) -> bool:
        """The terminal event has been delivered."""
        return self._ended

    async def _after_delivered(self, live: list[JobEvent]) -> list[JobEvent]:
        """The live events after the last delivered one, with any gap before one of them filled
        from the database; marks them delivered."""
        batch: list[JobEvent] = []
        for event in live:
            seq = event.seq
            if seq <= self._delivered:
                continue
            if seq > self._delivered + 1:
                async for page in self._stored(before_seq=seq):
                    batch += page
                if self._ended:
                    break
            self._delivered = seq
            batch.append(event)
            if event.kind is EventKind.LIFECYCLE and is_terminal(event):
                self._ended = True
                break
        return batch

    async def _stored(
        self, *, before_seq: int | None = None, contiguous: bool = False
    ) -> AsyncIterator[list[JobEvent]]:
        """Pages of the stored events after the last delivered one (and before `before_seq`);
        marks them delivered. With `contiguous`, stops before a gap in the sequence (and notes
        when it was seen)."""
        self._database_at = time.monotonic()
        while not self._ended:
            found = await self._storage.events.read_events(
                self._job_id, self._delivered, PAGE, transient=True
            )
            page: list[JobEvent] = []
            for event in found:
                if before_seq is not None and event.seq >= before_seq:
                    break
                if contiguous and event.seq > self._delivered + 1:
                    self._gap_seen_at = self._gap_seen_at or time.monotonic()
                    break
                self._delivered = event.seq
                self._gap_seen_at = 0.0
                page.append(event)
                if is_terminal(event):
                    self._ended = True
                    break
            if page:
                yield page
            if len(page) < PAGE:
                return

    def _gap_expired(self) -> bool:
        """A gap between the delivered events and the stored ones has lasted long enough that
        Redis will not fill it (trimmed, or expired): deliver across it."""
        return bool(self._gap_seen_at) and time.monotonic() - self._gap_seen_at >= GAP_GRACE

    async def _read_live(self, block: float | None) -> list[JobEvent] | None:
        """What Redis holds after the last delivered event (waiting up to `block` seconds for
        some); None when Redis cannot be used."""
        assert self._bus is not None
        try:
            return await self._bus.read(self._job_id, self._delivered, block=block)
        except BusUnavailable as exc:
            self._service.bus_failed(exc)
            return None
