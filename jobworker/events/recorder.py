"""One worker process's writer of outcomes and events.

Handlers emit events from the event loop or from their threads; finished attempts hand in their
outcomes. The recorder writes whatever is waiting in rounds: first one database transaction with
the outcomes and the events of kept kinds (and, while Redis is not there, the other events as
transient rows that carry them to readers), then one Redis pipeline with every event of the
round, the lifecycle events of the outcomes included. The database goes first, so an event a
reader misses on the live stream is always in the database by the time a later one arrives.

A round takes everything that is waiting: the busier the worker, the larger the batches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Generator

from jobworker.config import Settings
from jobworker.events.model import TERMINAL_STATUSES, Lifecycle
from jobworker.events.redis_bus import BusUnavailable, RedisStreamBus
from jobworker.models import Completion, EventKind, JobEvent
from jobworker.outage import Outage
from jobworker.storage import Storage

# Most events a round takes; a handler may emit far more than a round can carry.
ROUND_EVENTS = 20_000
# Events waiting beyond this make an async handler's `await ctx.chunk(...)` wait for room (and a
# sync handler's call block) until the writer has caught up: a handler cannot run ahead of what
# Redis (or the database) takes, so memory stays bounded and live readers stay close behind
# (1,000 events are a few milliseconds of writing; benchmarks/events.py measures the effect).
MAX_WAITING = 1000
# An async handler's `await ctx.chunk(...)` lets the event loop run once every this many events
# emitted on the loop: a handler that streams without awaiting anything else would otherwise
# hold the writer (and every other task of the worker) off until it returns.
YIELD_EVERY = 256

logger = logging.getLogger("jobworker.events")


class Recorder:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        bus: RedisStreamBus | None = None,
        *,
        batch_size: int | None = None,
    ) -> None:
        self._storage = storage
        self._bus = bus
        self._batch_size = batch_size or settings.completion_batch_size
        self._kept = frozenset(EventKind(kind) for kind in settings.persisted_kinds())
        self._retry_interval = settings.redis_retry_interval
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # (event, already stored): a claim's `running` event is stored by the claim itself.
        self._events: deque[tuple[JobEvent, bool]] = deque()
        self._taken = 0  # events taken from `_events` so far (put back when a round fails)
        # Each outcome with the count of events queued before it: it is written in a round that
        # has taken them all, so a job never ends ahead of its own events.
        self._completions: list[tuple[Completion, int]] = []
        self._wake = asyncio.Event()
        self._signalled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
        self._room_for_threads = threading.Event()
        self._bus_down_until = 0.0
        self._since_yield = 0
        self._db_outage = Outage("writing job outcomes and events")
        self._bus_outage = Outage("publishing events to Redis")

    @property
    def live(self) -> bool:
        """Events go to Redis now (it is configured and not in a known outage)."""
        return self._bus is not None and time.monotonic() >= self._bus_down_until

    # Producers (any thread) -------------------------------------------------------------------

    def emit(self, event: JobEvent, *, stored: bool = False) -> Awaitable[None] | None:
        """Queue an event; returns something to await when the buffer is full."""
        self._events.append((event, stored))
        self._signal()
        on_loop = threading.get_ident() == self._loop_thread
        if len(self._events) < MAX_WAITING:
            if on_loop:
                self._since_yield += 1
                if self._since_yield >= YIELD_EVERY:
                    self._since_yield = 0
                    return _PASS
            return None
        if on_loop:
            self._room.clear()
            return self._wait_for_room()
        while len(self._events) >= MAX_WAITING and not self._loop.is_closed():
            self._room_for_threads.clear()  # a sync handler's thread: wait for the writer
            self._room_for_threads.wait(0.05)
        return None

    async def _wait_for_room(self) -> None:
        await self._room.wait()

    def add(self, completion: Completion) -> None:
        """Queue an outcome (from the event loop, after its attempt's last event)."""
        self._completions.append((completion, self._taken + len(self._events)))
        self._signal()

    def _signal(self) -> None:
        self._idle.clear()
        if self._signalled:
            return
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
            while self._events or self._completions:
                await self._round()
                if len(self._events) < MAX_WAITING // 2:
                    self._room.set()
                    self._room_for_threads.set()
            if not self._signalled:
                self._idle.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        while not (self._idle.is_set() and not self._events and not self._completions):
            await self._idle.wait()
            await asyncio.sleep(0)

    async def _round(self) -> None:
        count = min(len(self._events), ROUND_EVENTS)
        batch = [self._events.popleft() for _ in range(count)]
        self._taken += count
        completions = []
        for completion, queued_before in self._completions[: self._batch_size]:
            if queued_before > self._taken:
                break  # some of its job's events wait for a later round
            completions.append(completion)
        live = self.live
        kept = [event for event, stored in batch if not stored and event.kind in self._kept]
        transient = []
        if not live:
            transient = [e for e, stored in batch if not stored and e.kind not in self._kept]
        try:
            recorded = await self._storage.complete_many(completions, kept, transient)
        except Exception as exc:
            self._events.extendleft(reversed(batch))  # in order, ahead of newer ones
            self._taken -= count
            await asyncio.sleep(self._db_outage.failed(exc))
            return
        self._db_outage.succeeded()
        del self._completions[: len(completions)]
        if self._bus is None or not live:
            return
        events = [event for event, _ in batch] + recorded.lifecycle
        events.sort(key=lambda event: (event.job_id, event.seq))
        ended = [event.job_id for event in recorded.lifecycle if _ends(event)]
        try:
            refused = await self._bus.publish(events, ended=ended)
        except BusUnavailable as exc:
            self._bus_outage.failed(exc)
            self._bus_down_until = time.monotonic() + self._retry_interval
            # Readers find what Redis did not take in the database instead.
            lost = [e for e, stored in batch if not stored and e.kind not in self._kept]
            await self._store_transient(lost)
            return
        self._bus_outage.succeeded()
        if refused:
            logger.info(
                "Redis refused %d event(s) whose sequence it already holds "
                "(from an attempt whose lease was lost)",
                refused,
            )

    async def _store_transient(self, events: list[JobEvent]) -> None:
        while events:
            try:
                await self._storage.complete_many([], [], events)
                self._db_outage.succeeded()
                return
            except Exception as exc:
                await asyncio.sleep(self._db_outage.failed(exc))

    async def floors(self, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The last sequence each job used on the live bus (empty without Redis, or when it
        cannot be asked: the database's own numbers are then the best there is)."""
        if self._bus is None or not job_ids:
            return {}
        try:
            return await self._bus.last_seqs(job_ids)
        except BusUnavailable as exc:
            logger.warning("could not read event sequences from Redis (%s)", exc)
            return {}


class _Pass:
    """Awaiting it lets the event loop run once (a bare yield, as `asyncio.sleep(0)`); not
    awaiting it is harmless."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield


_PASS = _Pass()


def _ends(event: JobEvent) -> bool:
    return event.decoded(Lifecycle).status in TERMINAL_STATUSES


def bus_for(settings: Settings) -> RedisStreamBus | None:
    """The live bus the settings ask for (None without `redis_url`)."""
    if not settings.redis_url:
        return None
    return RedisStreamBus(
        settings.redis_url,
        prefix=settings.redis_prefix,
        maxlen=settings.event_stream_maxlen,
        ttl=settings.event_stream_ttl,
    )


async def live_floors(settings: Settings, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """For a process without a recorder (the supervisor ending a dead child's leases): the last
    sequence each job used on Redis, through a connection of its own."""
    bus = bus_for(settings)
    if bus is None or not job_ids:
        return {}
    try:
        return await bus.last_seqs(job_ids)
    except BusUnavailable as exc:
        logger.warning("could not read event sequences from Redis (%s)", exc)
        return {}
    finally:
        await bus.close()
