"""One reader per job, however many subscribers follow it: `StreamHub`.

Each job that subscribers follow in this process has one feed: one `client.stream_batches` loop
(one database query or Redis read per batch, not per subscriber) that encodes each event as SSE
text once and hands the batch to every subscriber's bounded queue without waiting for any of
them. A subscriber whose queue is full is dropped: its queue is emptied and its stream ends with
a `reconnect` event naming the last event it was given, from which it resumes.

A subscriber that joins a running feed with an older last event id gets, in order, the kept
events it lacks from the database (`client.aevents`, up to where the feed's memory starts), the
feed's window of recent events, then the live feed: no duplicate, and no kept event missing. A
feed stops when its job's terminal event has gone out, or `linger` seconds after its last
subscriber left (a browser that reconnects within them is served from the window).

A hub serves one event loop at a time (while its feeds run); `StreamHub.for_client(client)` is
the hub every route of a process shares. Close it when the app stops (`await hub.aclose()`, or
`lifespan=hub.lifespan`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence

from jobworker.client import Client
from jobworker.events.model import is_terminal
from jobworker.models import JobEvent
from jobworker.web.frames import event_frame

__all__ = ["Frames", "StreamHub", "Subscription", "SubscriptionEnded"]

logger = logging.getLogger("jobworker.web")

# Kept events one catch-up read asks the database for.
CATCH_UP_PAGE = 500

# (sequence, SSE text) of one event.
Framed = tuple[int, bytes]


class Frames:
    """Consecutive events of one job as SSE text: what a subscriber writes in one go."""

    __slots__ = ("_data", "items", "last_seq", "terminal")

    def __init__(self, items: Sequence[Framed], terminal: bool) -> None:
        self.items = items
        self.last_seq = items[-1][0] if items else 0
        self.terminal = terminal
        self._data: bytes | None = None

    @classmethod
    def of(cls, events: Sequence[JobEvent]) -> Frames:
        terminal = bool(events) and is_terminal(events[-1])
        return cls([(event.seq, event_frame(event)) for event in events], terminal)

    @property
    def first_seq(self) -> int:
        return self.items[0][0] if self.items else 0

    @property
    def data(self) -> bytes:
        """The events' text, joined once however many subscribers write it."""
        if self._data is None:
            self._data = b"".join(frame for _, frame in self.items)
        return self._data

    def after(self, seq: int) -> Frames:
        """The events after `seq`."""
        if not self.items or self.first_seq > seq:
            return self
        return Frames([item for item in self.items if item[0] > seq], self.terminal)


class SubscriptionEnded(Exception):
    """No more events will come to this subscriber: `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Queue:
    """A subscriber's bounded queue: the reader offers batches and never waits; the
    subscriber's response takes them."""

    __slots__ = ("_batches", "_limit", "_ready", "_size", "closed")

    def __init__(self, limit: int) -> None:
        self._batches: deque[Frames] = deque()
        self._size = 0
        self._limit = limit
        self._ready = asyncio.Event()
        self.closed: str | None = None  # why nothing will follow what is queued

    def offer(self, frames: Frames) -> bool:
        """Queue the batch; False (nothing queued) when the subscriber is `limit` events
        behind already."""
        if self.closed is not None:
            return True
        if self._size >= self._limit:  # a backlog of `limit` events: one batch may exceed it
            return False
        self._batches.append(frames)
        self._size += len(frames.items)
        self._ready.set()
        return True

    def drop(self, reason: str) -> None:
        """What is queued goes; the subscriber ends next."""
        self._batches.clear()
        self._size = 0
        self.close(reason)

    def close(self, reason: str) -> None:
        """The subscriber ends once it has taken what is queued."""
        if self.closed is None:
            self.closed = reason
        self._ready.set()

    async def take(self, idle: float) -> list[Frames]:
        """Every queued batch; none after `idle` seconds without one."""
        if not self._batches and self.closed is None:
            self._ready.clear()
            try:
                async with asyncio.timeout(idle):
                    await self._ready.wait()
            except TimeoutError:
                return []
        if not self._batches and self.closed is not None:
            raise SubscriptionEnded(self.closed)
        taken = list(self._batches)
        self._batches.clear()
        self._size = 0
        return taken


class Subscription:
    """One subscriber's events: the stored ones it lacks, the feed's window, then live."""

    def __init__(
        self,
        client: Client,
        job_id: uuid.UUID,
        after_seq: int,
        queue: _Queue,
        window: Frames,
        stored_until: int | None,
    ) -> None:
        self.job_id = job_id
        self.last_seq = after_seq  # the last event handed out
        self.ended = False  # the terminal event has been handed out
        self._client = client
        self._queue = queue
        self._window: Frames | None = window
        self._stored_until = stored_until

    async def next(self, idle: float) -> Frames:
        """The next events after `last_seq` (none after `idle` seconds without any). Raises
        `SubscriptionEnded` when no more will come before the terminal event."""
        while True:
            if self._stored_until is not None:
                frames = await self._stored()
            elif self._window is not None:
                frames, self._window = self._window.after(self.last_seq), None
            else:
                batches = await self._queue.take(idle)
                if not batches:
                    return Frames([], False)
                frames = _joined([batch.after(self.last_seq) for batch in batches])
            if frames.items:
                self.last_seq = frames.last_seq
                self.ended = frames.terminal
                return frames

    async def _stored(self) -> Frames:
        """A page of the kept events the database holds after `last_seq`, up to where the
        feed's window starts."""
        until = self._stored_until
        assert until is not None
        page = await self._client.aevents(self.job_id, self.last_seq, CATCH_UP_PAGE)
        kept = [event for event in page if event.seq <= until]
        if len(kept) < len(page) or len(page) < CATCH_UP_PAGE:
            self._stored_until = None
        return Frames.of(kept)


def _joined(parts: Iterable[Frames]) -> Frames:
    batches = [part for part in parts if part.items]
    if len(batches) == 1:
        return batches[0]
    items = [item for batch in batches for item in batch.items]
    return Frames(items, bool(batches) and batches[-1].terminal)


class _Feed:
    """The one reader of one job's events in this hub, and who it feeds."""

    def __init__(self, hub: StreamHub, job_id: uuid.UUID, after_seq: int) -> None:
        self.job_id = job_id
        self.ended = False
        self.subscribers: set[_Queue] = set()
        self._hub = hub
        self._window: deque[Framed] = deque(maxlen=hub.window)
        # The feed holds every event after `_covered_from` (the database holds the kept ones
        # before); the reader starts after the first subscriber's last event id.
        self._covered_from = after_seq
        self._linger: asyncio.TimerHandle | None = None
        self.task = asyncio.get_running_loop().create_task(
            self._run(after_seq), name=f"jobworker-feed-{job_id}"
        )

    def join(self, client: Client, after_seq: int) -> Subscription:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        queue = _Queue(self._hub.queue_size)
        self.subscribers.add(queue)
        window = Frames([item for item in self._window if item[0] > after_seq], False)
        stored_until = self._covered_from if after_seq < self._covered_from else None
        return Subscription(client, self.job_id, after_seq, queue, window, stored_until)

    def leave(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription._queue)
        if self.subscribers or self.ended:
            return
        loop = asyncio.get_running_loop()
        if self._linger is None:
            self._linger = loop.call_later(self._hub.linger, self._stop_if_idle)

    def stop(self, reason: str) -> None:
        """Cancel the reader (perhaps before it ever ran); its subscribers end."""
        self.task.cancel()
        self._end(reason)

    def _stop_if_idle(self) -> None:
        self._linger = None
        if not self.subscribers:
            self.stop("nobody follows the job")

    async def _run(self, after_seq: int) -> None:
        reason = "the job's events ended before its terminal event"
        try:
            batches = self._hub.client.stream_batches(self.job_id, after_seq)
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    if batch:
                        self._deliver(Frames.of(batch))
        except Exception as exc:
            logger.exception("reading the events of job %s failed", self.job_id)
            reason = f"reading the job's events failed: {type(exc).__name__}"
        finally:
            self._end(reason)

    def _end(self, reason: str) -> None:
        self.ended = True
        self._hub._forget(self)
        if self._linger is not None:
            self._linger.cancel()
        for queue in self.subscribers:
            queue.close(reason)
        self.subscribers.clear()

    def _deliver(self, frames: Frames) -> None:
        window = self._window
        for item in frames.items:
            if len(window) == window.maxlen:
                self._covered_from = window[0][0]
            window.append(item)
        for queue in list(self.subscribers):
            if not queue.offer(frames):
                queue.drop("the subscriber fell behind the job's events")
                self.subscribers.discard(queue)
                self._hub.dropped += 1
        if frames.terminal:
            self.ended = True
            self._hub._forget(self)


_hubs: weakref.WeakKeyDictionary[Client, StreamHub] = weakref.WeakKeyDictionary()


class StreamHub:
    """The feeds of one process and event loop: one reader per job followed."""

    def __init__(
        self,
        client: Client,
        *,
        queue_size: int = 1000,
        window: int = 2000,
        linger: float = 5.0,
    ) -> None:
        if queue_size < 1 or window < 1 or linger < 0:
            raise ValueError("queue_size and window must be at least 1, linger not negative")
        self.client = client
        self.queue_size = queue_size  # events a subscriber may have waiting before it is dropped
        self.window = window  # recent events a feed keeps for subscribers that join late
        self.linger = linger  # seconds a feed outlives its last subscriber
        self.readers_started = 0  # feeds started so far (one read loop each)
        self.dropped = 0  # subscribers dropped for falling behind
        self._feeds: dict[uuid.UUID, _Feed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_client(cls, client: Client) -> StreamHub:
        """The hub of this client that every route of the process shares."""
        hub = _hubs.get(client)
        if hub is None:
            hub = _hubs[client] = cls(client)
        return hub

    @property
    def active_readers(self) -> int:
        return len(self._feeds)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID, after_seq: int) -> AsyncIterator[Subscription]:
        """Follow the job's events after `after_seq` while the block runs."""
        feed = self._feed(job_id, after_seq)
        subscription = feed.join(self.client, after_seq)
        try:
            yield subscription
        finally:
            feed.leave(subscription)

    async def aclose(self) -> None:
        """Stop every reader; their subscribers end (with a `reconnect` event)."""
        for feed in list(self._feeds.values()):
            feed.stop("the server is stopping")
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks)
        self._loop = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """`Starlette(lifespan=hub.lifespan)`: closes the hub when the app stops."""
        try:
            yield
        finally:
            await self.aclose()

    def _feed(self, job_id: uuid.UUID, after_seq: int) -> _Feed:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._feeds:
                raise RuntimeError("a StreamHub serves one event loop at a time")
            self._loop = loop  # nothing runs on the last one: serve this one now
        feed = self._feeds.get(job_id)
        if feed is None or feed.ended:
            feed = self._feeds[job_id] = _Feed(self, job_id, after_seq)
            self.readers_started += 1
            self._tasks.add(feed.task)
            feed.task.add_done_callback(self._tasks.discard)
        return feed

    def _forget(self, feed: _Feed) -> None:
        if self._feeds.get(feed.job_id) is feed:
            del self._feeds[feed.job_id]
