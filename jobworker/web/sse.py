"""A job's events as a server-sent-events response, for any route that has found the job and
decided the caller may see it (the user routes of `job_routes`, the admin API).

The response starts with a `retry:` hint, then writes each event as `event: <kind>`,
`id: <seq>`, `data: <JSON object>` (frames.py), a `: keep-alive` comment whenever it has been
idle for `keepalive` seconds, and ends after the job's terminal event. A subscriber that falls
behind gets a last `reconnect` event (fanout.py). A request that resumes at or after the terminal
event gets `204 No Content`, which makes a browser's `EventSource` stop reconnecting.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from jobworker.events.stream import parse_event_id
from jobworker.models import TERMINAL_STATUSES, JobDescriptor
from jobworker.web.fanout import StreamHub, SubscriptionEnded
from jobworker.web.frames import KEEP_ALIVE, reconnect_frame, retry_frame

__all__ = [
    "DEFAULT_KEEPALIVE",
    "DEFAULT_RETRY_MS",
    "STREAM_HEADERS",
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
    return StreamingResponse(
        _events(hub, job.job_id, after_seq, retry_ms, keepalive),
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )


async def _events(
    hub: StreamHub, job_id: uuid.UUID, after_seq: int, retry_ms: int, keepalive: float
) -> AsyncIterator[bytes]:
    yield retry_frame(retry_ms)
    async with hub.subscribe(job_id, after_seq) as subscription:
        while True:
            try:
                frames = await subscription.next(keepalive)
            except SubscriptionEnded as ended:
                yield reconnect_frame(ended.reason, subscription.last_seq)
                return
            if not frames.items:
                yield KEEP_ALIVE
                continue
            yield frames.data
            if frames.terminal:
                return
