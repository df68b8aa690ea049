"""The database's own clock, as one process reads it.

Lease expiry, rescue, due times, retry times and the janitor's cut-off are compared with the
times the storage writes, so every process must take them from one clock: the database's
(`now()` on PostgreSQL, `SYSUTCDATETIME()` on SQL Server, and on SQLite the host's clock as
SQLite reads it, which every process on the file shares), never its own wall clock, which may
be behind or stepped. The storage reads the database's time when it opens and carries it
forward on the process's monotonic clock, which no step of the wall clock moves; it reads it
again every `RESYNC` seconds. Its error is half a round trip.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from jobworker.clock import Clock

__all__ = ["RESYNC", "DatabaseClock", "keep_synced"]

RESYNC = 60.0  # seconds between two readings of the database's time


class DatabaseClock:
    """The database's time (see the module docstring), read by `read`; the wall clock until it
    is read."""

    def __init__(self, read: Callable[[], Awaitable[datetime]]) -> None:
        self._read = read
        self._at: datetime | None = None
        self._monotonic = 0.0

    def now(self) -> datetime:
        if self._at is None:
            return datetime.now(UTC)
        return self._at + timedelta(seconds=time.monotonic() - self._monotonic)

    def due(self) -> bool:
        return self._at is None or time.monotonic() - self._monotonic >= RESYNC

    async def sync(self) -> None:
        """Read the database's time, taken at the middle of the round trip."""
        before = time.monotonic()
        at = await self._read()
        after = time.monotonic()
        self._at, self._monotonic = at.astimezone(UTC), (before + after) / 2


async def keep_synced(clock: Clock) -> None:
    """Read the database's time again if `clock` is the database's and it is due (a clock a
    test injected is left alone)."""
    if isinstance(clock, DatabaseClock) and clock.due():
        await clock.sync()
