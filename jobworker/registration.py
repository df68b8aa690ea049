"""A process's row in the worker registry (`Storage.workers`): written once its storage is open,
refreshed on a timer, removed when it stops cleanly.

The timings come from `heartbeat_timeout`, the setting that already says how long a process may
go silent before it is taken for dead: each process refreshes its row every quarter of it
(`refresh_interval`), and the janitor marks gone the rows not refreshed for a whole one
(`stale_after`). A row marked gone stays `GONE_RETENTION` (an hour) after its last heartbeat,
so that `jobworker workers` shows which processes died, then the janitor deletes it. A process
whose row was marked gone while it lived (a long stall, an outage) writes it again at its next
refresh.

The supervisor does no I/O in its loop, so it cannot refresh its own row: each of its worker
processes refreshes it along with its own (`companion`), for as long as that supervisor is still
its parent. A worker process is the supervisor's witness: it exists only while the supervisor
does (the kernel stops it when the supervisor dies), and it knows at once when the supervisor is
gone (`os.getppid()` changes). So the supervisor's row stays fresh while any of its worker
processes runs, and goes stale with them when the whole group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence

import msgspec

from jobworker.config import Settings
from jobworker.models import WorkerInfo, WorkerRole
from jobworker.outage import Outage
from jobworker.storage import Storage

__all__ = [
    "GONE_RETENTION",
    "Registration",
    "process_row",
    "refresh_interval",
    "stale_after",
    "supervisor_id",
    "unregister",
]

logger = logging.getLogger("jobworker.registry")

GONE_RETENTION = 3600.0  # seconds a row marked gone is kept after its last heartbeat
_UNREGISTER_TIMEOUT = 5.0


def refresh_interval(settings: Settings) -> float:
    """How often a process refreshes its row."""
    return settings.heartbeat_timeout / 4


def stale_after(settings: Settings) -> float:
    """How old a row's last heartbeat is when the janitor marks it gone."""
    return settings.heartbeat_timeout


def supervisor_id() -> str:
    """A new id for this process's row as a supervisor: unique per incarnation."""
    return f"{socket.gethostname()}:{os.getpid()}:supervisor:{uuid.uuid4().hex[:6]}"


def process_row(
    storage: Storage,
    *,
    id: str,
    role: WorkerRole,
    module: str,
    queues: Sequence[str] = (),
    slots: int = 0,
    parent: str | None = None,
) -> WorkerInfo:
    """The row of this process, started now by the database's clock."""
    now = storage.clock.now()
    return WorkerInfo(
        id=id,
        host=socket.gethostname(),
        pid=os.getpid(),
        role=role,
        module=module,
        queues=list(queues),
        slots=slots,
        started_at=now,
        last_heartbeat=now,
        parent=parent,
    )


class Registration:
    """This process's row: `run` registers it and refreshes it until cancelled; `stop` ends
    that and deletes the row (a clean stop). `running()` is how many jobs it runs now;
    `figures()` its cumulative figures as JSON (metrics/figures.py), written with each refresh.

    `companion` is another process's row this one refreshes too, while `companion_alive()`:
    a worker process keeps its supervisor's row fresh (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        info: WorkerInfo,
        running: Callable[[], int] = lambda: 0,
        *,
        companion: WorkerInfo | None = None,
        companion_alive: Callable[[], bool] = lambda: False,
        figures: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._storage = storage
        self._info = info
        self._running = running
        self._figures = figures
        self._interval = refresh_interval(settings)
        self._companion = companion
        self._companion_alive = companion_alive
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="registry")

    async def run(self) -> None:
        """Register, then refresh every `refresh_interval`, registering again whenever the row
        is found gone; failures are retried (logged once per outage). Runs until cancelled."""
        outage = Outage("refreshing the worker registry")
        registered = False
        while True:
            try:
                if registered:
                    registered = await self._storage.workers.heartbeat(
                        self._info.id, self._running(), self._figures()
                    )
                if not registered:
                    await self._storage.workers.register(self._current())
                    registered = True
                await self._refresh_companion()
            except Exception as exc:
                await asyncio.sleep(min(outage.failed(exc), self._interval))
                continue
            outage.succeeded()
            await asyncio.sleep(self._interval)

    async def _refresh_companion(self) -> None:
        companion = self._companion
        if companion is None or not self._companion_alive():
            return
        if not await self._storage.workers.heartbeat(companion.id, 0):
            await self._storage.workers.register(companion)

    def _current(self) -> WorkerInfo:
        return msgspec.structs.replace(self._info, running=self._running())

    async def cancel(self) -> None:
        """No more refreshes; the row stays (until it goes stale)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        """A clean stop: no more refreshes (one could write the row again), then the row is
        deleted. A failure is logged: the row goes stale and the janitor marks it gone."""
        await self.cancel()
        await unregister(self._storage, self._info.id)


async def unregister(storage: Storage, worker_id: str) -> None:
    """Delete a row, giving up after a few seconds (the row then goes stale)."""
    try:
        await asyncio.wait_for(storage.workers.unregister(worker_id), _UNREGISTER_TIMEOUT)
    except Exception as exc:
        logger.warning(
            "could not remove %s from the worker registry (%s: %s); the janitor marks it gone "
            "once its heartbeat is stale",
            worker_id,
            type(exc).__name__,
            exc,
        )
