"""msgspec JSON encoding of job arguments, results and events. No pickle, anywhere."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="string", uuid_format="canonical")
_untyped = msgspec.json.Decoder()


# JSON bytes for any value msgspec supports; raises `msgspec.EncodeError` otherwise. (The
# encoder's own method: this is on the path of every event a handler emits.)
encode = _encoder.encode


def decode(data: bytes | str, type: type[T] | Any = Any) -> Any:
    """Decode JSON, validating against `type` when one is given."""
    if type is Any:
        return _untyped.decode(data)
    return msgspec.json.decode(data, type=type)


def to_builtins(value: Any) -> Any:
    """A JSON-compatible view of `value` (for printing a struct as JSON from the CLI)."""
    return msgspec.to_builtins(value)
