"""Running coroutines from synchronous code (Django views, scripts) on a private event loop,
and `Blocking`, which derives a blocking method from an async one over that loop."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import types
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

T = TypeVar("T")
P = ParamSpec("P")


class Portal:
    """A daemon thread with its own event loop; `call()` runs a coroutine there and waits.

    Safe to use from any thread, including one that is itself running an event loop. Started on
    first use and started afresh in a forked child (threads do not survive `fork()`).
    """

    def __init__(self, name: str = "jobworker-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name=self._name, daemon=True)
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._ensure_loop()

    def runs_here(self) -> bool:
        """Whether the caller is running on this portal's loop (the loop is not started)."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._ensure_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coroutine.close()
            raise RuntimeError("Portal.call() from the portal's own loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    def stop(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None and self._pid == os.getpid():
            loop.call_soon_threadsafe(loop.stop)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The portal thread: run the loop until `stop`, then close it (its self-pipe with it)."""
    try:
        loop.run_forever()
    finally:
        loop.close()


class HasPortal(Protocol):
    @property
    def portal(self) -> Portal: ...


S = TypeVar("S", bound=HasPortal)


class Blocking(Generic[S, P, T]):
    """The blocking form of an async method, as a class attribute: `get = Blocking(aget)`.

    `obj.get(...)` takes exactly `aget`'s parameters (a type checker sees them too), runs
    `obj.aget(...)` on `obj.portal` and waits for its result; `Cls.get` is the plain function.
    """

    def __init__(self, method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]]) -> None:
        def run(instance: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return instance.portal.call(method(instance, *args, **kwargs))

        run.__doc__ = inspect.getdoc(method)
        run.__wrapped__ = method  # type: ignore[attr-defined]
        self._run = run
        self.__doc__ = run.__doc__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._run.__name__ = name
        self._run.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Callable[Concatenate[S, P], T]: ...

    @overload
    def __get__(self, instance: S, owner: type[Any]) -> Callable[P, T]: ...

    def __get__(self, instance: S | None, owner: type[Any]) -> Callable[..., T]:
        if instance is None:
            return self._run
        return types.MethodType(self._run, instance)
