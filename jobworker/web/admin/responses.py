"""How the admin API answers: JSON that a browser can never read as markup, errors as
`{"error": message}`, and the reading of a bounded JSON body."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ApiError", "ErrorJson", "error_response", "inert_json", "json_response", "read_json"]

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
MAX_BODY_BYTES = 16 * 1024


class ErrorJson(msgspec.Struct, frozen=True):
    """Every error the admin API returns."""

    error: str


class ApiError(Exception):
    """An answer other than success: its HTTP status and the message the client reads."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def inert_json(value: Any) -> bytes:
    """`value` as JSON, `<`, `>` and `&` written as `\\u003c`, `\\u003e`, `\\u0026` (they can
    only occur inside JSON strings, so this is lossless): text a job was given stays inert even
    if something were to read the body as HTML."""
    return (
        _encoder.encode(value)
        .replace(b"<", b"\\u003c")
        .replace(b">", b"\\u003e")
        .replace(b"&", b"\\u0026")
    )


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`value` as JSON (`inert_json`). Never cached."""
    body = inert_json(value)
    response = Response(body, status_code=status, media_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, header in (headers or {}).items():
        response.headers[name] = header
    return response


def error_response(error: ApiError) -> Response:
    return json_response(ErrorJson(error.message), error.status, error.headers)


async def read_json(request: Request, type: type[T]) -> T:
    """The request body decoded as `type`; 400 for a body that is too large, not JSON or not of
    that shape."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(400, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return msgspec.json.decode(bytes(body), type=type)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise ApiError(400, "the request body is not JSON") from None
