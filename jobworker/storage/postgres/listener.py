"""LISTEN on one channel over a dedicated connection that reconnects on its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("jobworker.storage.postgres")


class Listener:
    """A dedicated connection LISTENing on `channel`; reconnects on its own when it drops
    (and calls `on_reconnect`: notifications sent meanwhile are lost). `connect` opens a
    connection outside any pool."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        channel: str,
        on_payload: Callable[[str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._open_connection = connect
        self._channel = channel
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._connect()
        except Exception as exc:
            logger.warning("LISTEN connection failed (%s); polling until it is back", exc)
            self._lost.set()
        self._task = asyncio.create_task(self._keep_alive(), name="jobworker-listen")

    async def _connect(self) -> None:
        conn = await self._open_connection()
        await conn.add_listener(self._channel, self._notified)
        conn.add_termination_listener(lambda _conn: self._lost.set())
        self._conn = conn
        self._lost.clear()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_payload(payload)

    async def _keep_alive(self) -> None:
        while True:
            await self._lost.wait()
            began = time.monotonic()
            logger.warning("the LISTEN connection to PostgreSQL was lost; reconnecting")
            await self._reconnect()
            logger.warning("the LISTEN connection is back after %.1fs", time.monotonic() - began)
            self._on_reconnect()

    async def _reconnect(self) -> None:
        delay = 0.2
        while True:
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.terminate()
            try:
                await self._connect()
            except Exception as exc:
                logger.debug("LISTEN reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
