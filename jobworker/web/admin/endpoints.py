"""An admin API route as one `Endpoint` (method, path, handler, the structs it reads and returns):
the API's routes and its OpenAPI document are both built from a list of them; and what a handler
reads off the request (`query_of`, `job_id_of`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobworker.client import as_job_id
from jobworker.errors import (
    ConfigurationError,
)
from jobworker.web.admin.responses import ApiError

__all__ = ["Endpoint", "Handler", "job_id_of", "query_of"]

Q = TypeVar("Q", bound=msgspec.Struct)
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route of the admin API, as served and as documented."""

    method: str
    path: str  # under `<prefix>/api`, with `{id}` / `{name}` parameters
    handler: Handler
    summary: str
    response: type[Any] | None  # the body of the success answer; None: no body
    status: int = 200
    query: type[msgspec.Struct] | None = None
    body: type[msgspec.Struct] | None = None
    errors: tuple[int, ...] = ()
    public: bool = False  # no session needed
    media_type: str = "application/json"  # of the success answer ("text/event-stream": SSE)


def query_of(request: Request, type: type[Q]) -> Q:
    try:
        return msgspec.convert(dict(request.query_params), type, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid query: {exc}") from None


def job_id_of(request: Request) -> uuid.UUID:
    try:
        return as_job_id(request.path_params["id"])
    except ConfigurationError as exc:
        raise ApiError(400, str(exc)) from None
