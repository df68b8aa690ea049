"""A job's events as a server-sent-events response, for any route that has found the job and
decided the caller may see it (the user routes of `job_routes`, the admin API).

The response starts with a `retry:` hint, then writes each event as `event: <kind>`,
`id: <seq>`, `data: <JSON object>` (frames.py), a `: keep-alive` comment when it has been idle
for a `keepalive` interval (the hub's timer), and ends after the job's terminal event. A
subscriber that falls behind gets a last `reconnect` event (fanout.py). A request that resumes
at or after the terminal event gets `204 No Content`, which makes a browser's `EventSource` stop
reconnecting.
"""

from __future__ import annotations

import asyncio
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from jobworker.events.stream import parse_event_id
from jobworker.models import TERMINAL_STATUSES, JobDescriptor
from jobworker.web.fanout import GONE, StreamHub, Subscription, SubscriptionEnded
from jobworker.web.frames import KEEP_ALIVE, reconnect_frame, retry_frame

__all__ = [
    "DEFAULT_KEEPALIVE",
    "DEFAULT_RETRY_MS",
    "STREAM_HEADERS",
    "EventStreamResponse",
    "job_event_stream",
    "last_event_id",
]

DEFAULT_RETRY_MS = 2000
DEFAULT_KEEPALIVE = 15.0
# No cache may keep the stream, and no proxy may hold it back (nginx reads X-Accel-Buffering).
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "X-Content-Type-Options": "nosniff",
}


def last_event_id(request: Request) -> int:
    """The sequence the request resumes after: its `Last-Event-ID` header (what `EventSource`
    sends when it reconnects, to the same URL), else its `last_event_id` query parameter, else 0.
    Raises ValueError for a value that is not a sequence number."""
    header = request.headers.get("last-event-id", "").strip()
    return parse_event_id(header or request.query_params.get("last_event_id"))


async def job_event_stream(
    hub: StreamHub,
    job: JobDescriptor,
    after_seq: int,
    *,
    retry_ms: int = DEFAULT_RETRY_MS,
    keepalive: float = DEFAULT_KEEPALIVE,
) -> Response:
    """The SSE response for `job`'s events after `after_seq` (the job is already found and
    authorized): 204 when the job has ended and nothing is left after `after_seq`."""
    if job.status in TERMINAL_STATUSES and not await hub.client.aevents(job.job_id, after_seq, 1):
        # The terminal lifecycle event is always kept: nothing stored after after_seq means
        # the caller has seen it.
        return Response(status_code=204, headers=STREAM_HEADERS)
    return EventStreamResponse(hub, job.job_id, after_seq, retry_ms=retry_ms, keepalive=keepalive)


class EventStreamResponse(Response):
    """A job's events as they come, written with the server's `send` itself: one write per
    batch a subscriber takes (the same bytes for every subscriber that takes the same batches),
    no task group or timeout per response or per write. One task per response waits for the
    client to hang up, which ends the subscription at once; the hub's timer says when a
    keep-alive is due."""

    media_type = "text/event-stream"

    def __init__(
        self,
        hub: StreamHub,
        job_id: uuid.UUID,
        after_seq: int,
        *,
        retry_ms: int = DEFAULT_RETRY_MS,
        keepalive: float = DEFAULT_KEEPALIVE,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(STREAM_HEADERS)
        self.hub = hub
        self.job_id = job_id
        self.after_seq = after_seq
        self.retry_ms = retry_ms
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.hub.subscribe(
            self.job_id, self.after_seq, keepalive=self.keepalive
        ) as subscription:
            hangup = asyncio.get_running_loop().create_task(_left(receive, subscription))
            try:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                await send(_more(retry_frame(self.retry_ms)))
                last = await _write_events(subscription, send)
                if last is not None:
                    await send({"type": "http.response.body", "body": last, "more_body": False})
            except OSError:  # servers that raise when the client has gone
                return
            finally:
                hangup.cancel()


async def _write_events(subscription: Subscription, send: Send) -> bytes | None:
    """Write the events up to the terminal one; the last write's bytes (None: the client has
    gone, nothing more to write)."""
    while True:
        try:
            frames = await subscription.next()
        except SubscriptionEnded as ended:
            if ended.reason == GONE:
                return None
            return reconnect_frame(ended.reason, subscription.last_seq)
        if not frames.items:
            await send(_more(KEEP_ALIVE))
        elif frames.terminal:
            return frames.data
        else:
            await send(_more(frames.data))


async def _left(receive: Receive, subscription: Subscription) -> None:
    """Wait for the client to hang up, then end its subscription."""
    while (await receive())["type"] != "http.disconnect":
        pass
    subscription.leave()


def _more(body: bytes) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": True}
