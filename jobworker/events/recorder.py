"""One worker process's writer of outcomes and events.

Handlers emit events from the event loop or from their threads; finished attempts hand in their
outcomes. The recorder writes whatever is waiting in rounds: first one database transaction with
the outcomes and the events of kept kinds, then the live bus (events/bus.py) with every event of
the round, the events of the outcomes' ends included. The database goes first, so an event a
reader misses on the live bus is always in the database by the time a later one arrives. While
the bus is the database itself (`EventBus.in_database`), the other events go into that same
transaction (as rows that expire), so they are stored in order with the kept ones.

Each attempt's events wait in a buffer of its own (`JobEvents`), so a round takes them already
grouped by job, and a finished attempt's outcome waits only for its own events. A round takes
everything that is waiting, up to ROUND_EVENTS: the busier the worker, the larger the batches.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping

import msgspec

from jobworker.config import Settings
from jobworker.events.bus import EventBus
from jobworker.events.database_bus import stored_event
from jobworker.events.model import LiveEvent, is_terminal
from jobworker.models import Completion, EventKind, JobEvent
from jobworker.outage import Outage
from jobworker.storage import Recorded, Storage

# Most events a round takes (an attempt's backlog may be longer: the rest waits for the next).
ROUND_EVENTS = 2_000
# An attempt with this many events waiting makes its handler's `await ctx.chunk(...)` wait for
# room (and a sync handler's call block) until the writer has caught up: a handler cannot run
# ahead of what Redis (or the database) takes, so memory stays bounded and live readers stay
# close behind (a few thousand events are a few milliseconds of writing; benchmarks/events.py
# measures it).
MAX_WAITING = 4000
# Every this many events of an attempt, its async handler's `await ctx.chunk(...)` lets the event
# loop run once (a handler that streams without awaiting anything else would otherwise hold the
# writer, and every other task of the worker, off until it returns), and its backlog is checked.
YIELD_EVERY = 256

logger = logging.getLogger("jobworker.events")

# What a round takes of one attempt: the attempt, its events, and its events the database has
# already (for the live bus only).
_Taken = tuple["JobEvents", list[LiveEvent], list[LiveEvent]]


class JobEvents:
    """The events of one attempt on their way out: what its context emits into.

    A handler's thread or the event loop appends; the writer (on the loop) takes. Both ends of a
    deque are safe to use from two threads, and the `dirty` flag is set after an append and
    cleared before a take, so an event appended during a take is never left behind unnoticed.
    """

    __slots__ = (
        "_recorder",
        "attempt",
        "completion",
        "dirty",
        "job_id",
        "published",
        "queue",
        "until_check",
    )

    def __init__(self, recorder: Recorder, job_id: uuid.UUID, attempt: int) -> None:
        self._recorder = recorder
        self.job_id = job_id
        self.attempt = attempt
        self.queue: deque[LiveEvent] = deque()
        self.published: list[LiveEvent] = []  # for the live bus only: the database has them
        self.dirty = False
        self.completion: Completion | None = None
        self.until_check = YIELD_EVERY  # events until the next pass through the event loop

    def emit(
        self, seq: int, kind: EventKind, at: float, payload: msgspec.Raw
    ) -> Awaitable[None] | None:
        """Queue an event (`at` in Unix seconds). Every YIELD_EVERY events of the attempt it
        returns something for an async handler to await: a pass through the event loop, or a
        wait while this attempt's backlog is full; a sync handler's thread blocks there
        instead."""
        self.queue.append((seq, kind, at, payload))
        if not self.dirty:
            self._recorder.mark(self)
        self.until_check -= 1
        if self.until_check > 0:
            return None
        self.until_check = YIELD_EVERY
        return self._recorder.check(self)

    def publish_stored(self, event: JobEvent) -> None:
        """Queue for the live bus an event the database already holds (from the event loop)."""
        self.published.append((event.seq, event.kind, event.occurred_at.timestamp(), event.payload))
        if not self.dirty:
            self._recorder.mark(self)


class Recorder:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        bus: EventBus,
        *,
        owner: str,
        batch_size: int | None = None,
        on_written: Callable[[], None] | None = None,
        on_published: Callable[[Mapping[str, int]], None] | None = None,
    ) -> None:
        self._storage = storage
        self._on_written = on_written  # called after each round that wrote outcomes
        # Told, after each round that wrote, how many of the handlers' events of each kind went.
        self._on_published = on_published
        self._owner = owner  # the lease owner whose attempts' events this writes
        self._bus = bus
        self._batch_size = batch_size or settings.completion_batch_size
        self._kept = frozenset(EventKind(kind) for kind in settings.kept_kinds())
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # Attempts with events to take, in the order they first had some.
        self._dirty: deque[JobEvents] = deque()
        # Finished attempts, in the order they finished: each is written in a round after its
        # last event has been taken, so a job never ends ahead of its own events.
        self._finished: list[JobEvents] = []
        self._wake = asyncio.Event()
        self._signalled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room_for_threads = threading.Event()
        self._db_outage = Outage("writing job outcomes and events")

    # Producers -----------------------------------------------------------------------------

    def attempt(self, job_id: uuid.UUID, attempt: int) -> JobEvents:
        """Where a new attempt's context sends its events."""
        return JobEvents(self, job_id, attempt)

    def add(self, events: JobEvents, completion: Completion) -> None:
        """Queue an attempt's outcome (from the event loop, after its last event)."""
        events.completion = completion
        self._finished.append(events)
        self._signal()

    def unwritten(self) -> list[tuple[uuid.UUID, int]]:
        """The (job, attempt) of each finished attempt whose outcome is not written yet: its
        lease is still the worker's to renew."""
        return [
            (events.completion.job_id, events.completion.attempt)
            for events in self._finished
            if events.completion is not None
        ]

    def mark(self, events: JobEvents) -> None:
        """The attempt has events to take (from any thread)."""
        events.dirty = True
        self._dirty.append(events)
        if not self._signalled:
            self._signal()

    def check(self, events: JobEvents) -> Awaitable[None] | None:
        """Every YIELD_EVERY events of an attempt: on the event loop, pass through it (or wait
        while the attempt's backlog is full); on a handler's thread, block while it is full."""
        full = len(events.queue) >= MAX_WAITING
        if threading.get_ident() == self._loop_thread:
            return self._wait_for_room(events) if full else _PASS
        while len(events.queue) >= MAX_WAITING and not self._loop.is_closed():
            self._room_for_threads.clear()  # a sync handler's thread: wait for the writer
            self._room_for_threads.wait(0.05)
        return None

    async def _wait_for_room(self, events: JobEvents) -> None:
        while len(events.queue) >= MAX_WAITING:
            await self._room.wait()

    def _signal(self) -> None:
        if self._signalled:
            return  # the writer has yet to wake (and idle is cleared)
        self._idle.clear()
        self._signalled = True
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    # The writer ---------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._signalled = False
            while self._dirty or self._finished:
                await self._round()
                # Wake whoever waits for room; later waiters wait on a fresh event.
                self._room.set()
                self._room = asyncio.Event()
                self._room_for_threads.set()
            if not self._signalled:
                self._idle.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        while not (self._idle.is_set() and not self._dirty and not self._finished):
            await self._idle.wait()
            await asyncio.sleep(0)

    async def _round(self) -> None:
        taken = self._take()
        completions: list[Completion] = []
        for events in self._finished[: self._batch_size]:
            if events.queue or events.dirty:
                break  # some of its events wait for a later round
            assert events.completion is not None
            completions.append(events.completion)
        in_database = self._bus.in_database
        # While the bus is the database, every event goes into the round's transaction (the
        # storage lets those of kinds it does not keep expire); otherwise only the kept ones.
        stored: list[JobEvent] = []
        emitted_by: list[tuple[str, int]] = []
        published: dict[str, int] = {}
        for events, batch, _ in taken:
            for event in batch:
                kind = event[1]
                published[kind] = published.get(kind, 0) + 1
                if in_database or kind in self._kept:
                    stored.append(stored_event(events.job_id, event))
                    emitted_by.append((self._owner, events.attempt))
        try:
            recorded = await self._storage.jobs.complete_many(
                completions, stored, emitted_by=emitted_by, lifecycle=not in_database
            )
        except Exception as exc:
            self._put_back(taken)
            await asyncio.sleep(self._db_outage.failed(exc))
            return
        self._db_outage.succeeded()
        if published and self._on_published is not None:
            self._on_published(published)
        del self._finished[: len(completions)]
        if completions and self._on_written is not None:
            self._on_written()
        if not in_database:
            await self._publish(taken, recorded)

    async def _publish(self, taken: list[_Taken], recorded: Recorded) -> None:
        """Send the round's events to the live bus: the stored ones too, with the lifecycle
        events of its outcomes, each job's in sequence order."""
        batches: dict[uuid.UUID, list[LiveEvent]] = {}
        emitted_by: dict[uuid.UUID, tuple[str, int]] = {}
        for events, batch, published in taken:
            emitted_by[events.job_id] = (self._owner, events.attempt)
            merged = batches.setdefault(events.job_id, [])
            merged += published
            merged += batch
        ended = []
        for event in recorded.events:
            live_event = (event.seq, event.kind, event.occurred_at.timestamp(), event.payload)
            batches.setdefault(event.job_id, []).append(live_event)
            if is_terminal(event):
                ended.append(event.job_id)
        for merged in batches.values():
            merged.sort(key=_by_seq)  # in order already but for a few: a linear pass
        while True:
            try:
                refused = await self._bus.publish(batches, ended=ended, emitted_by=emitted_by)
                break
            except Exception as exc:  # the database standing in for the bus
                await asyncio.sleep(self._db_outage.failed(exc))
        self._db_outage.succeeded()
        if refused:
            logger.info(
                "Redis refused %d event(s) whose sequence it already holds "
                "(from an attempt whose lease was lost)",
                refused,
            )

    def _take(self) -> list[_Taken]:
        """Up to ROUND_EVENTS waiting events: (attempt, its events, its events for the live
        bus only), attempt by attempt."""
        taken = []
        room = ROUND_EVENTS
        while self._dirty and room > 0:
            events = self._dirty.popleft()
            if not events.dirty:
                continue  # marked twice: taken already
            events.dirty = False  # before taking: an event appended from now on marks it again
            queue = events.queue
            count = min(len(queue), room)
            batch = [queue.popleft() for _ in range(count)]
            room -= count
            if queue and not events.dirty:
                events.dirty = True
                self._dirty.appendleft(events)  # the rest first, next round
            published, events.published = events.published, []
            taken.append((events, batch, published))
        return taken

    def _put_back(self, taken: list[_Taken]) -> None:
        """A round failed: its events go back ahead of newer ones, for the next round."""
        for events, batch, published in reversed(taken):
            events.queue.extendleft(reversed(batch))
            events.published[:0] = published
            if not events.dirty:
                events.dirty = True
                self._dirty.appendleft(events)


class _Pass:
    """Awaiting it lets the event loop run once (a bare yield, as `asyncio.sleep(0)`); not
    awaiting it is harmless."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield


_PASS = _Pass()


_by_seq = operator.itemgetter(0)
