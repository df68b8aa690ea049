"""The text of server-sent events, as `EventSource` parses it: a job event (`event:` its kind,
`id:` its sequence, `data:` its JSON object on one line), the `retry:` hint, a keep-alive comment,
and the `reconnect` notice that ends the stream of a subscriber that fell behind."""

from __future__ import annotations

import msgspec

from jobworker.models import JobEvent
from jobworker.web.wire import event_json

__all__ = ["KEEP_ALIVE", "RECONNECT", "event_frame", "reconnect_frame", "retry_frame"]

# The event a dropped subscriber gets last: reconnect with `lastEventId` as Last-Event-ID.
RECONNECT = "reconnect"
KEEP_ALIVE = b": keep-alive\n\n"


def event_frame(event: JobEvent) -> bytes:
    return b"event: %s\nid: %d\ndata: %s\n\n" % (
        event.kind.value.encode(),
        event.seq,
        event_json(event),
    )


def retry_frame(milliseconds: int) -> bytes:
    """How long `EventSource` waits before it reconnects (no event is dispatched for it)."""
    return b"retry: %d\n\n" % milliseconds


def reconnect_frame(reason: str, last_event_id: int) -> bytes:
    """No `id:` line: the browser keeps the last id it saw, which is `last_event_id`."""
    data = msgspec.json.encode({"reason": reason, "lastEventId": last_event_id})
    return b"event: %s\ndata: %s\n\n" % (RECONNECT.encode(), data)
