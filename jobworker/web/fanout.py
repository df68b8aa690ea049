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

Subscribers that take the same batches share one join of them (the same bytes), and one
timer per keep-alive interval tells every quiet subscriber of the hub when a keep-alive is due.

A hub serves one event loop at a time (while its feeds run); `StreamHub.for_client(client)` is
the hub every route of a process shares. Close it when the app stops (`await hub.aclose()`, or
`lifespan=hub.lifespan`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence

from jobworker.client import Client
from jobworker.events.stream import PAGE as STORED_PAGE
from jobworker.models import JobEvent
from jobworker.web.per_client import one_per_client
from jobworker.web.subscriber import (
    Framed,
    Frames,
    KeepAliveTimer,
    SubscriberQueue,
    SubscriptionEnded,
    joined,
)

__all__ = ["GONE", "Frames", "StreamHub", "Subscription", "SubscriptionEnded"]

logger = logging.getLogger("jobworker.web")

# Why a subscription ended when its subscriber left before it did.
GONE = "the subscriber has gone"
# Kept events one catch-up read asks the database for.
CATCH_UP_PAGE = 500
# How long a reader replaying stored pages waits for its subscribers to take what they have
# before it reads on (and drops those that did not).
REPLAY_WAIT = 2.0
# A batch whose newest event is older than this is history being replayed, not live.
REPLAY_AGE = 1.0


class Subscription:
    """One subscriber's events: the stored ones it lacks, the feed's window, then live."""

    def __init__(
        self,
        client: Client,
        job_id: uuid.UUID,
        after_seq: int,
        queue: SubscriberQueue,
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
        self._gone = False

    async def next(self, idle: float | None = None) -> Frames:
        """The next events after `last_seq`; none when a keep-alive is due (the hub's timer, see
        `StreamHub.subscribe`) or after `idle` seconds without any. Raises `SubscriptionEnded`
        when no more will come before the terminal event, or the subscriber has gone."""
        while True:
            if self._gone:
                raise SubscriptionEnded(GONE)
            if self._stored_until is not None:
                frames = await self._stored()
            elif self._window is not None:
                frames, self._window = self._window.after(self.last_seq), None
            else:
                batches = await self._take(idle)
                if not batches:
                    return Frames([], False)  # a keep-alive is due
                frames = joined(batches, self.last_seq)
            if frames.items:
                self.last_seq = frames.last_seq
                self.ended = frames.terminal
                return frames

    def leave(self) -> None:
        """The subscriber has gone (it hung up): `next` ends at once, however long it waited."""
        self._gone = True
        self._queue.close(GONE)

    async def _take(self, idle: float | None) -> list[Frames]:
        if idle is None:
            return await self._queue.take()
        try:
            async with asyncio.timeout(idle):
                return await self._queue.take()
        except TimeoutError:
            return []

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


class _Feed:
    """The one reader of one job's events in this hub, and who it feeds."""

    def __init__(self, hub: StreamHub, job_id: uuid.UUID, after_seq: int) -> None:
        self.job_id = job_id
        self.ended = False
        self.subscribers: set[SubscriberQueue] = set()
        self._hub = hub
        self._window: deque[Framed] = deque(maxlen=hub.window)
        self._linger: asyncio.TimerHandle | None = None
        self._start(after_seq)

    def _start(self, after_seq: int) -> None:
        """Read the job's events after `after_seq`: the feed holds every one of them (the
        database holds the kept ones before)."""
        self._covered_from = after_seq
        self.task = asyncio.get_running_loop().create_task(
            self._run(after_seq), name=f"jobworker-feed-{self.job_id}"
        )
        self._hub._started(self.task)

    def join(self, client: Client, after_seq: int) -> Subscription:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if after_seq < self._covered_from and not self._window:
            # Nothing read yet: read from here instead. The first subscriber's id may lie beyond
            # the job's last event (a client's mistake); the others must not miss what follows.
            self.task.cancel()
            self._start(after_seq)
        queue = SubscriberQueue(self._hub.queue_size)
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
        this = asyncio.current_task()
        reason = "the job's events ended before its terminal event"
        try:
            batches = self._hub.client.stream_batches(self.job_id, after_seq)
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    if batch:
                        self._deliver(Frames.of(batch))
                        if _replayed(batch):
                            await self._wait_for_replay()
        except Exception as exc:
            logger.exception("reading the events of job %s failed", self.job_id)
            reason = f"reading the job's events failed: {type(exc).__name__}"
        finally:
            if self.task is this:  # not a reader replaced by one that starts earlier
                self._end(reason)

    async def _wait_for_replay(self) -> None:
        """History being replayed: more follows at the speed of the database or Redis, faster
        than a slow connection takes it. Wait (up to REPLAY_WAIT) for the subscribers to take what
        they have before reading on, rather than drop them for it. Live batches never wait: a
        slow subscriber there is dropped at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLAY_WAIT
        for queue in list(self.subscribers):
            while queue.backlogged and loop.time() < deadline:
                queue.drained.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - loop.time()):
                        await queue.drained.wait()

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


def _replayed(batch: Sequence[JobEvent]) -> bool:
    """A full page of stored events, or events that happened a while ago: history."""
    newest = batch[-1].occurred_at.timestamp()
    return len(batch) >= STORED_PAGE or time.time() - newest > REPLAY_AGE


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
        self.readers_started = 0  # read loops started so far
        self.dropped = 0  # subscribers dropped for falling behind
        self._feeds: dict[uuid.UUID, _Feed] = {}
        self._keepalives: dict[float, KeepAliveTimer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_client(cls, client: Client) -> StreamHub:
        """The hub of this client that every route of the process shares."""
        return one_per_client(client, StreamHub, lambda: cls(client))

    @property
    def active_readers(self) -> int:
        return len(self._feeds)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, job_id: uuid.UUID, after_seq: int, *, keepalive: float | None = None
    ) -> AsyncIterator[Subscription]:
        """Follow the job's events after `after_seq` while the block runs. With `keepalive`
        (seconds), `next()` returns no events when nothing came for that long: one timer of
        the hub times every subscriber with the same interval, none waits with a timeout."""
        if keepalive is not None and not keepalive > 0:
            raise ValueError("keepalive must be a positive number of seconds")
        feed = self._feed(job_id, after_seq)
        subscription = feed.join(self.client, after_seq)
        timer = None
        if keepalive is not None:
            timer = self._keepalives.get(keepalive)
            if timer is None:
                timer = self._keepalives[keepalive] = KeepAliveTimer(keepalive)
            timer.add(subscription._queue)
        try:
            yield subscription
        finally:
            if timer is not None:
                timer.discard(subscription._queue)
                if not timer.queues:
                    del self._keepalives[timer.interval]
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
        return feed

    def _started(self, task: asyncio.Task[None]) -> None:
        self.readers_started += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, feed: _Feed) -> None:
        if self._feeds.get(feed.job_id) is feed:
            del self._feeds[feed.job_id]
