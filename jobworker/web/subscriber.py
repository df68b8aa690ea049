"""What the stream hub hands a subscriber: batches of SSE frames (`Frames`, shared by every
subscriber that takes the same ones), each subscriber's bounded `SubscriberQueue`, which the
reader offers batches to without waiting, and one `KeepAliveTimer` per interval for all of
them (see `fanout`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from jobworker.events.model import is_terminal
from jobworker.models import JobEvent
from jobworker.web.frames import event_frame

__all__ = [
    "Framed",
    "Frames",
    "KeepAliveTimer",
    "SubscriberQueue",
    "SubscriptionEnded",
    "joined",
]

# (sequence, SSE text) of one event.
Framed = tuple[int, bytes]


class Frames:
    """Consecutive events of one job as SSE text: what a subscriber writes in one go."""

    __slots__ = ("_data", "_joins", "items", "last_seq", "terminal")

    def __init__(self, items: Sequence[Framed], terminal: bool) -> None:
        self.items = items
        self.last_seq = items[-1][0] if items else 0
        self.terminal = terminal
        self._data: bytes | None = None
        # The runs of whole batches that end with this one, joined, by their first sequence:
        # subscribers that take the same run write the same bytes.
        self._joins: dict[int, Frames] | None = None

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


class SubscriberQueue:
    """A subscriber's bounded queue: the reader offers batches and never waits; the
    subscriber's response takes them."""

    __slots__ = (
        "_batches",
        "_keepalive_due",
        "_limit",
        "_ready",
        "_size",
        "_written",
        "closed",
        "drained",
    )

    def __init__(self, limit: int) -> None:
        self._batches: deque[Frames] = deque()
        self._size = 0
        self._limit = limit
        self._ready = asyncio.Event()
        self._written = False  # batches were taken since the last keep-alive tick
        self._keepalive_due = False
        self.closed: str | None = None  # why nothing will follow what is queued
        self.drained = asyncio.Event()  # set when the subscriber takes its batches

    @property
    def backlogged(self) -> bool:
        """A batch offered now would be refused."""
        return self.closed is None and self._size >= self._limit

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

    def tick(self) -> None:
        """A keep-alive interval has passed: one is due if nothing was taken during it."""
        if self._written:
            self._written = False
        else:
            self._keepalive_due = True
            self._ready.set()

    async def take(self) -> list[Frames]:
        """Every queued batch; none when a keep-alive is due first."""
        if not self._batches and self.closed is None and not self._keepalive_due:
            self._ready.clear()
            await self._ready.wait()
        if not self._batches:
            if self.closed is not None:
                raise SubscriptionEnded(self.closed)
            self._keepalive_due = False
            return []
        taken = list(self._batches)
        self._batches.clear()
        self._size = 0
        self.drained.set()
        self._written = True
        self._keepalive_due = False
        return taken


class KeepAliveTimer:
    """One timer for every subscriber of a hub that wants a keep-alive every `interval`
    seconds: each tick, those that took nothing since the last one get one (so an idle stream
    gets its first between one and two intervals after its last write)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.queues: set[SubscriberQueue] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, queue: SubscriberQueue) -> None:
        self.queues.add(queue)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def discard(self, queue: SubscriberQueue) -> None:
        self.queues.discard(queue)
        if not self.queues and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        for queue in self.queues:
            queue.tick()
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)


def joined(batches: Sequence[Frames], after_seq: int) -> Frames:
    """The events after `after_seq` of consecutive batches, as one: the same object for every
    subscriber that takes the same whole batches (most of them, at the live edge)."""
    parts = [part for part in (batch.after(after_seq) for batch in batches) if part.items]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return Frames([], False)
    last = parts[-1]
    shared = parts[0] is batches[0] and parts[-1] is batches[-1]
    if shared and last._joins is not None:
        joined = last._joins.get(parts[0].first_seq)
        if joined is not None:
            return joined
    joined = Frames([item for part in parts for item in part.items], last.terminal)
    if shared:
        if last._joins is None:
            last._joins = {}
        last._joins[parts[0].first_seq] = joined
    return joined
