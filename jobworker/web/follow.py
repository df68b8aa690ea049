"""`follow`: a Python reader of a job's SSE route over HTTP, with events decoded into the job's
own types, that reconnects with `Last-Event-ID` the way a browser's `EventSource` does.

```python
async for event in follow(f"{base}/reports/{job_id}/stream", job=build_report):
    if event.kind == "progress":
        print(event.data.value)          # the job's progress type
    elif event.kind == "result":
        print(event.data)                # the job's return type
```

It ends after the job's terminal lifecycle event, or when the server answers `204 No Content`
(nothing is left after the last event id). A dropped connection, a stream that ends early and a
`reconnect` event (the server dropped a reader that fell behind) make it reconnect after the
server's `retry:` delay, resuming after the last event it yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, NamedTuple

import httpx
import msgspec

from jobworker.definitions import JobDefinition
from jobworker.errors import JobNotFoundError, JobworkerError
from jobworker.events.model import Lifecycle, TypedEvent
from jobworker.events.stream import parse_event_id
from jobworker.models import EventKind
from jobworker.web.frames import RECONNECT
from jobworker.web.wire import typed_event

__all__ = ["FollowError", "follow"]

_KINDS = frozenset(kind.value for kind in EventKind)
# The longest wait before a reconnect, whatever the server's retry hint says.
MAX_RETRY_DELAY = 30.0


class FollowError(JobworkerError):
    """The stream could not be followed to its end: the server kept failing, or kept ending the
    stream without sending an event."""


class _Message(NamedTuple):
    event: str
    data: str
    id: str | None
    retry: int | None


async def follow(
    url: str,
    *,
    job: Any = None,
    last_event_id: int | str | None = None,
    client: httpx.AsyncClient | None = None,
    headers: Mapping[str, str] | None = None,
    max_retries: int = 5,
    read_timeout: float = 60.0,
) -> AsyncIterator[TypedEvent]:
    """The job events of the SSE route at `url` after `last_event_id`, as `TypedEvent`s.

    `job`: the job function (or its `JobDefinition`) whose progress and result types decode
    the payloads (without it they stay JSON values). `client`: an `httpx.AsyncClient` to send
    the requests with (its cookies, auth and transport; one is made and closed otherwise), with
    `headers` added. `max_retries`: connections in a row that may fail or bring nothing before
    `FollowError`. `read_timeout`: seconds without a byte (keep-alives count) before the
    connection is given up and made again. A 404 raises `JobNotFoundError`; another status
    that is not 200 or 204 raises `httpx.HTTPStatusError`."""
    http = client or httpx.AsyncClient()
    follower = _Follower(url, http, headers or {}, _types_of(job), read_timeout)
    follower.after = parse_event_id(last_event_id)
    failures = 0
    try:
        while True:
            delivered = False
            error: Exception | None = None
            try:
                async with contextlib.aclosing(follower.connection()) as events:
                    async for event in events:
                        delivered, failures = True, 0
                        yield event
            except httpx.TransportError as exc:
                error = exc
            if follower.done:
                return
            if not delivered:
                failures += 1
                if failures > max_retries:
                    why = repr(error) if error else "the stream kept ending without an event"
                    raise FollowError(f"following {url} failed: {why}") from error
            await asyncio.sleep(follower.delay)
    finally:
        if client is None:
            await http.aclose()


class _Follower:
    """Where a `follow` is: the last event id, the server's retry delay, and whether the job's
    stream has ended."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        headers: Mapping[str, str],
        types: tuple[Any, Any],
        read_timeout: float,
    ) -> None:
        self.url = url
        self.after = 0
        self.delay = 1.0
        self.done = False
        self._http = http
        self._headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **headers}
        self._progress_type, self._result_type = types
        self._timeout = httpx.Timeout(10.0, read=read_timeout)

    async def connection(self) -> AsyncGenerator[TypedEvent, None]:
        """The events one connection brings, until it ends, breaks or says to reconnect."""
        headers = dict(self._headers)
        if self.after:
            headers["Last-Event-ID"] = str(self.after)
        async with self._http.stream(
            "GET", self.url, headers=headers, timeout=self._timeout
        ) as response:
            if response.status_code == 204:
                self.done = True
                return
            if response.status_code == 404:
                raise JobNotFoundError(self.url)
            if response.status_code != 200:
                await response.aread()
                response.raise_for_status()
            async with contextlib.aclosing(_messages(response.aiter_lines())) as messages:
                async for message in messages:
                    if message.retry is not None:
                        self.delay = min(message.retry / 1000, MAX_RETRY_DELAY)
                    if message.event == RECONNECT:
                        return
                    if message.event not in _KINDS or message.id is None:
                        continue
                    fields = msgspec.json.decode(message.data)
                    event = typed_event(fields, self._progress_type, self._result_type)
                    self.after = event.seq
                    yield event
                    if isinstance(event.data, Lifecycle) and event.data.terminal:
                        self.done = True
                        return


def _types_of(job: Any) -> tuple[Any, Any]:
    if job is None:
        return Any, Any
    definition = job if isinstance(job, JobDefinition) else getattr(job, "definition", None)
    if not isinstance(definition, JobDefinition):
        raise TypeError(f"job= takes a job function or its JobDefinition, not {job!r}")
    return definition.progress_type, definition.result_type


async def _messages(lines: AsyncIterator[str]) -> AsyncGenerator[_Message, None]:
    """The messages of an SSE stream, as the HTML standard's parser dispatches them (comments
    skipped; a block with only `retry:` is a message too, so that its delay is seen)."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    retry: int | None = None
    async for line in lines:
        if not line:
            if data or retry is not None:
                yield _Message(event or "message", "\n".join(data), last_id, retry)
            event, data, retry = "", [], None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
