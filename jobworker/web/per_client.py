"""`one_per_client(client, kind, make)`: the one object of a kind that every route of a web
process shares for a client (its stream hub, its overview reader, its overview feed).

It is kept on the client itself: the object refers to its client, so a mapping from clients to
objects would keep every client alive; this cycle is collected with the client."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from jobworker.client import Client

__all__ = ["one_per_client"]

T = TypeVar("T")


def one_per_client(client: Client, kind: type[T], make: Callable[[], T]) -> T:
    """The client's `kind` object, made by `make()` the first time it is asked for."""
    attributes = vars(client)
    name = f"_jobworker_web_{kind.__module__}.{kind.__qualname__}"
    found = attributes.get(name)
    if not isinstance(found, kind):
        found = attributes[name] = make()
    return found
