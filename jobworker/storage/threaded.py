"""One blocking connection used from one dedicated thread, for drivers without asyncio (sqlite3,
pyodbc): the event loop never waits on the database, and the connection is never used by two
threads at once."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")


class ConnectionThread(Generic[C]):
    """`run(fn)` calls `fn(connection)` on the thread, connecting first when there is no
    connection (the first call, or after `drop`). Opened in one process: a child of `fork()`
    must open its own."""

    def __init__(
        self, connect: Callable[[], C], disconnect: Callable[[C], None], name: str
    ) -> None:
        self._connect = connect
        self._disconnect = disconnect
        self._name = name
        self._conn: C | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._start_lock = threading.Lock()
        # Held by whatever uses the connection. One executor thread alone does not ensure it: a
        # call made while `close` drops the connection starts a new executor (a second thread).
        self._in_use = threading.RLock()

    async def run(self, fn: Callable[[C], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._started(), self._call, fn)

    def submit(self, task: Callable[[], None]) -> None:
        """Run `task()` on the thread after what it was given before (callable from any thread,
        the connection's own included); `task` takes the connection with `connection()`."""
        self._started().submit(self._holding, task)

    def _holding(self, task: Callable[[], None]) -> None:
        with self._in_use:
            task()

    def _started(self) -> ThreadPoolExecutor:
        if self._pid != os.getpid():
            raise RuntimeError("a storage opened before fork() cannot be used in the child")
        if self._executor is None:
            with self._start_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        return self._executor

    def _call(self, fn: Callable[[C], T]) -> T:
        with self._in_use:
            return fn(self.connection())

    def connection(self) -> C:
        """The open connection (on the thread only), connecting if there is none."""
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def drop(self) -> None:
        """Close and forget the connection (on the thread only): the next call reconnects."""
        with self._in_use:
            conn, self._conn = self._conn, None
            if conn is not None:
                self._disconnect(conn)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None and self._pid == os.getpid():
            await asyncio.get_running_loop().run_in_executor(executor, self.drop)
        elif self._pid != os.getpid():
            self._conn = None  # the parent's connection: forgotten, never closed here
        if executor is not None:
            executor.shutdown(wait=False)
