"""The live overview: `GET <prefix>/api/stats/stream`, the overview (`StatsJson`) as server-sent
events, `event: stats` with the JSON as `data:`, at once and then every `interval` seconds.

One `StatsFeed` per web process (and client) polls the database for every connected stream: it
starts with the first subscriber, reads the overview once per interval, hands the same bytes to
every subscriber, and stops after the last one leaves. A subscriber keeps only the newest
snapshot it has not written yet (each is the whole overview: an older one is of no use), so a
slow reader never holds the feed up nor builds a backlog. `aclose()` (the server stopping: the
SIGTERM path of `jobworker web` calls it with the hub's) ends every stream at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from jobworker.client import Client
from jobworker.web.admin.endpoints import Endpoint
from jobworker.web.admin.overview import StatsReader
from jobworker.web.admin.responses import inert_json
from jobworker.web.frames import KEEP_ALIVE, retry_frame
from jobworker.web.per_client import one_per_client
from jobworker.web.sse import DEFAULT_KEEPALIVE, DEFAULT_RETRY_MS, STREAM_HEADERS

__all__ = ["DEFAULT_INTERVAL", "StatsFeed", "StatsSubscriber", "stats_stream_endpoint"]

logger = logging.getLogger("jobworker.web")

DEFAULT_INTERVAL = 2.0


class StatsSubscriber:
    """One stream's slot: the newest snapshot not yet written, or the feed's end."""

    def __init__(self) -> None:
        self.pending: bytes | None = None
        self.closed = False
        self._ready = asyncio.Event()

    def offer(self, frame: bytes) -> None:
        self.pending = frame
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self, keepalive: float) -> bytes | None:
        """The next snapshot's frame; b"" when `keepalive` seconds passed without one; None
        when the feed has ended."""
        if self.pending is None and not self.closed:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(keepalive):
                    await self._ready.wait()
        if self.closed:
            return None
        frame, self.pending = self.pending, None
        return frame or b""


class StatsFeed:
    """The overview poller of one process, shared by every overview stream."""

    def __init__(self, reader: StatsReader, *, interval: float = DEFAULT_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError("interval must be a positive number of seconds")
        self.reader = reader
        self.interval = interval
        self.polls = 0  # overviews read so far
        self.pollers_started = 0
        self._subscribers: set[StatsSubscriber] = set()
        self._latest: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    def for_client(cls, client: Client) -> StatsFeed:
        """The feed of this client every overview stream of the process shares."""
        return one_per_client(client, StatsFeed, lambda: cls(StatsReader.for_client(client)))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[StatsSubscriber]:
        """A subscriber while the block runs: it gets the newest snapshot at once (when the
        poller is running), then each new one."""
        subscriber = StatsSubscriber()
        if self._closing:
            subscriber.close()
            yield subscriber
            return
        self._subscribers.add(subscriber)
        if self.running and self._latest is not None:
            subscriber.offer(self._latest)
        elif not self.running:
            self._latest = None
            self._task = asyncio.get_running_loop().create_task(self._poll())
            self.pollers_started += 1
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                await self._stop()

    async def aclose(self) -> None:
        """End every stream and stop polling; new streams end at once. `reopen()` undoes it."""
        self._closing = True
        for subscriber in list(self._subscribers):
            subscriber.close()
        await self._stop()

    def reopen(self) -> None:
        self._closing = False

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                snapshot = await self.reader.read()
            except Exception:
                logger.exception("the overview could not be read (retrying)")
            else:
                self.polls += 1
                frame = b"event: stats\ndata: %s\n\n" % inert_json(snapshot)
                self._latest = frame
                for subscriber in self._subscribers:
                    subscriber.offer(frame)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))


class StatsStreamResponse(Response):
    """The overview's events for one client, until it hangs up or the feed ends."""

    media_type = "text/event-stream"

    def __init__(
        self, feed: StatsFeed, *, retry_ms: int = DEFAULT_RETRY_MS, keepalive: float
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(STREAM_HEADERS)
        self.feed = feed
        self.retry_ms = retry_ms
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.feed.subscribe() as subscriber:
            hangup = asyncio.get_running_loop().create_task(_left(receive, subscriber))
            try:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                await send(_more(retry_frame(self.retry_ms)))
                while (frame := await subscriber.next(self.keepalive)) is not None:
                    await send(_more(frame or KEEP_ALIVE))
                if not hangup.done():
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # servers that raise when the client has gone
                return
            finally:
                hangup.cancel()


async def _left(receive: Receive, subscriber: StatsSubscriber) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscriber.close()


def _more(body: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": body, "more_body": True}


def stats_stream_endpoint(feed: StatsFeed, *, keepalive: float = DEFAULT_KEEPALIVE) -> Endpoint:
    """`GET stats/stream`: the overview as SSE (see the module docstring)."""

    async def stream(request: Request) -> Response:
        return StatsStreamResponse(feed, keepalive=keepalive)

    return Endpoint(
        "GET",
        "/stats/stream",
        stream,
        "The overview live (server-sent events: `stats` at once, then every few seconds)",
        None,
        errors=(401,),
        media_type="text/event-stream",
    )
