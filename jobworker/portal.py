"""Running coroutines from synchronous code (Django views, scripts) on a private event loop."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
