"""Following one job's events: replay what is stored, then the live bus, without duplicates or
gaps among kept kinds, until the job's terminal event.

The database holds every kept event (lifecycle, progress, result by default) and, while the bus
is the database itself, the others as transient rows. Redis holds every event a worker published
while it was reachable. A reader therefore replays the database after the last sequence it
delivered, then blocks on the live bus; when the bus skips sequences (trimmed, or written while
Redis was away) it fills the gap from the database first; when the bus is quiet it looks in the
database again, for status changes made outside workers (a cancel, a lease rescue). While the
bus is the database, it waits for the database's notifications (PostgreSQL) or polls (SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from jobworker.config import Settings
from jobworker.errors import JobNotFoundError
from jobworker.events.bus import BusUnavailable, EventBus
from jobworker.events.model import is_terminal
from jobworker.models import EventKind, JobEvent
from jobworker.storage import Inspection, Storage

PAGE = 500
# How long a reader blocks on Redis before it looks in the database again.
LIVE_BLOCK_SECONDS = 1.0
# How long a reader waits for Redis to fill a gap before the stored events that follow it.
GAP_GRACE = 2.0
# Without notifications or Redis, the existence of a quiet job is checked this often.
EXISTENCE_CHECK_SECONDS = 5.0


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


class StreamService:
    """Readers of job events for one process and event loop."""

    def __init__(self, storage: Storage, settings: Settings, bus: EventBus) -> None:
        self._storage = storage
        self._settings = settings
        self._bus = bus

    async def close(self) -> None:
        await self._bus.close()

    async def batches(self, job_id: uuid.UUID, after_seq: int = 0) -> AsyncIterator[list[JobEvent]]:
        """Every event of the job after `after_seq`, in order, in batches as one read finds
        them (`client.stream` yields them one by one), ending after its terminal event (or when
        the job no longer exists)."""
        inspection = self._storage.inspection
        if await inspection.get(job_id) is None:
            raise JobNotFoundError(job_id)
        reader = _Reader(self._bus, inspection, job_id, after_seq, self._settings)
        async for batch in reader.batches():
            yield batch


class _Reader:
    """One reader's position in one job's events."""

    def __init__(
        self,
        bus: EventBus,
        inspection: Inspection,
        job_id: uuid.UUID,
        after_seq: int,
        settings: Settings,
    ) -> None:
        self._bus = bus
        self._inspection = inspection
        self._poll_interval = settings.event_poll_interval
        self._job_id = job_id
        self._delivered = after_seq
        self._ended = False
        self._database_due = True
        self._database_at = 0.0
        self._gap_seen_at = 0.0

    async def batches(self) -> AsyncIterator[list[JobEvent]]:
        """Every event of the job after `after_seq`, in order and in batches as they come,
        ending after its terminal event (or when the job no longer exists)."""
        async with self._bus.watching(self._job_id) as notified:
            last_check = time.monotonic()
            while not self._ended:
                if self._bus.in_database:
                    async for page in self._from_database(notified):
                        yield page
                else:
                    async for batch in self._from_live():
                        yield batch
                if not self._ended and time.monotonic() - last_check >= EXISTENCE_CHECK_SECONDS:
                    last_check = time.monotonic()
                    if await self._inspection.get(self._job_id) is None:
                        return  # deleted or purged: nothing more will come

    @property
    def ended(self) -> bool:
        """The terminal event has been delivered."""
        return self._ended

    async def _from_live(self) -> AsyncIterator[list[JobEvent]]:
        """One look at the live bus (it has every kind), and at the database for what it lacks
        when the bus has nothing new. While the database is not due, the look is a blocking
        read straight away: one round trip per batch (a blocking read returns at once when the
        bus holds something new)."""
        due = self._database_is_due()
        live = await self._read_live(None if due else LIVE_BLOCK_SECONDS)
        if live is None:
            return
        if not due:
            self._database_due = not live
        elif not live:
            self._database_due = False
            found = False
            # A worker stores a round in the database just before it publishes it: events
            # only the bus carries may be a moment behind the stored ones.
            async for page in self._stored(contiguous=not self._gap_expired()):
                found = True
                yield page
            if found:
                return
            live = await self._read_live(LIVE_BLOCK_SECONDS)
            if live is None:
                return
            self._database_due = not live
        batch = await self._after_delivered(live)
        if batch:
            yield batch

    async def _from_database(self, notified: asyncio.Event) -> AsyncIterator[list[JobEvent]]:
        """Everything the database holds after the last delivered event, then a wait for its
        next notification (or the poll interval)."""
        async for page in self._stored():
            yield page
        if self._ended:
            return
        notified.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(notified.wait(), self._poll_interval)

    def _database_is_due(self) -> bool:
        return self._database_due or time.monotonic() - self._database_at >= LIVE_BLOCK_SECONDS

    async def _after_delivered(self, live: list[JobEvent]) -> list[JobEvent]:
        """The live events after the last delivered one, with any gap before one of them filled
        from the database; marks them delivered."""
        batch: list[JobEvent] = []
        append = batch.append
        lifecycle = EventKind.LIFECYCLE
        delivered = self._delivered  # a local: this loop runs once per event a reader gets
        for event in live:
            seq = event.seq
            if seq <= delivered:
                continue
            if seq > delivered + 1:
                self._delivered = delivered
                async for page in self._stored(before_seq=seq):
                    batch += page
                if self._ended:
                    return batch
            delivered = seq
            append(event)
            if event.kind is lifecycle and is_terminal(event):
                self._ended = True
                break
        self._delivered = delivered
        return batch

    async def _stored(
        self, *, before_seq: int | None = None, contiguous: bool = False
    ) -> AsyncIterator[list[JobEvent]]:
        """Pages of the stored events after the last delivered one (and before `before_seq`);
        marks them delivered. With `contiguous`, stops before a gap in the sequence (and notes
        when it was seen)."""
        self._database_at = time.monotonic()
        while not self._ended:
            found = await self._bus.read_stored(self._job_id, self._delivered, PAGE)
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
        """What the live bus holds after the last delivered event (waiting up to `block` seconds
        for some); None when it cannot be read (it then stands aside for a while)."""
        try:
            return await self._bus.read(self._job_id, self._delivered, block=block)
        except BusUnavailable:
            return None
