"""The routes a user mounts under their own path to let their users follow their jobs:

- `GET /{job_id}`: the job as JSON (wire.job_json);
- `GET /{job_id}/stream`: its events as server-sent events (sse.py), resumable;
- `GET /{job_id}/events?after_sequence=0&limit=100`: a page of its kept events, a JSON list.

`Mount("/reports", routes=job_routes(client, authorize=...))` in Starlette, or
`app.router.routes.extend(...)` / `app.mount(...)` in FastAPI. Every route asks `authorize` whether
the request may see the job; a job it may not see is a 404 exactly like a job that does not exist
(never a 403, which would tell that it exists). Errors are `{"error": message}`.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobworker.client import Client
from jobworker.models import JobDescriptor
from jobworker.web import sse
from jobworker.web.fanout import StreamHub
from jobworker.web.wire import event_json, job_json

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Authorize", "allow_all", "job_routes"]

# Whether the request may see the job: True to allow (anything else denies).
Authorize = Callable[[Request, JobDescriptor], bool | Awaitable[bool]]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_NOT_FOUND = msgspec.json.encode({"error": "no such job"})
_JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def allow_all(request: Request, job: JobDescriptor) -> bool:
    """An `authorize` hook that lets every request see every job (say so explicitly)."""
    return True


def job_routes(
    client: Client,
    *,
    authorize: Authorize,
    hub: StreamHub | None = None,
    retry_ms: int = sse.DEFAULT_RETRY_MS,
    keepalive: float = sse.DEFAULT_KEEPALIVE,
    max_limit: int = MAX_LIMIT,
) -> list[BaseRoute]:
    """The job routes, to mount under a path of your app. `hub` defaults to the one this
    client's routes share (`StreamHub.for_client`); close it when the app stops
    (`lifespan=hub.lifespan`). `retry_ms` is the reconnection delay streams advise,
    `keepalive` the seconds between comments on an idle stream, `max_limit` the largest
    history page."""
    routes = _JobRoutes(client, authorize, hub, retry_ms, keepalive, max_limit)
    return [
        Route("/{job_id}", routes.job, methods=["GET"], name="job"),
        Route("/{job_id}/stream", routes.stream, methods=["GET"], name="job_stream"),
        Route("/{job_id}/events", routes.events, methods=["GET"], name="job_events"),
    ]


class _JobRoutes:
    def __init__(
        self,
        client: Client,
        authorize: Authorize,
        hub: StreamHub | None,
        retry_ms: int,
        keepalive: float,
        max_limit: int,
    ) -> None:
        self._client = client
        self._authorize = authorize
        self._hub = hub
        self._retry_ms = retry_ms
        self._keepalive = keepalive
        self._max_limit = max_limit

    async def job(self, request: Request) -> Response:
        job = await self._visible_job(request)
        if job is None:
            return _not_found()
        return _json(job_json(job))

    async def stream(self, request: Request) -> Response:
        try:
            after = sse.last_event_id(request)
        except ValueError as exc:
            return _error(400, str(exc))
        job = await self._visible_job(request)
        if job is None:
            return _not_found()
        hub = self._hub or StreamHub.for_client(self._client)
        return await sse.job_event_stream(
            hub, job, after, retry_ms=self._retry_ms, keepalive=self._keepalive
        )

    async def events(self, request: Request) -> Response:
        query = request.query_params
        after = _whole_number(query.get("after_sequence"), 0)
        limit = _whole_number(query.get("limit"), DEFAULT_LIMIT)
        if after is None:
            return _error(400, "after_sequence must be a sequence number (0 or more)")
        if limit is None or not 1 <= limit <= self._max_limit:
            return _error(400, f"limit must be a whole number from 1 to {self._max_limit}")
        job = await self._visible_job(request)
        if job is None:
            return _not_found()
        events = await self._client.aevents(job.job_id, after, limit)
        return _json(b"[" + b",".join(event_json(event) for event in events) + b"]")

    async def _visible_job(self, request: Request) -> JobDescriptor | None:
        try:
            job_id = uuid.UUID(request.path_params["job_id"])
        except ValueError:
            return None
        job = await self._client.aget(job_id)
        if job is None:
            return None
        allowed = self._authorize(request, job)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return job if allowed is True else None


def _whole_number(value: str | None, default: int) -> int | None:
    if value is None:
        return default
    return int(value) if _WHOLE_NUMBER.fullmatch(value) else None


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status, headers=_JSON_HEADERS, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json(msgspec.json.encode({"error": message}), status)


def _not_found() -> Response:
    return _json(_NOT_FOUND, 404)
