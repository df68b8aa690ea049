"""Every check at once, as `jobworker health` runs them, and the exit code their outcome gives.

The database check opens a storage of its own (its connect timeout no longer than the check's),
reads the schema version, and the workers and beat checks then query through it; Redis is
pinged meanwhile. When the database check fails, the workers and beat checks are not run: they
fail with "not checked".

Exit codes, the most severe outcome winning (`exit_code`):

    0  every check is ok
    1  warnings only: no beat leader, a schema newer than this code's, or beat's check failed
    2  bad input: an unknown option, a module that does not import, a bad URL (as every command)
    3  no live worker process
    4  Redis is configured and does not answer
    5  the database does not answer, or its schema is missing or older than this code's
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

from jobworker.config import Settings
from jobworker.errors import DatabaseUnreachableError
from jobworker.health.checks import (
    Check,
    Outcome,
    Status,
    beat_leader,
    database,
    live_workers,
    redis,
    timed,
)
from jobworker.storage import Storage, create_storage

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_OK",
    "EXIT_WARNINGS",
    "check_everything",
    "exit_code",
    "overall",
]

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_BAD_INPUT = 2  # click's usage errors and the CLI's `BadInput`, as for every command
# A failure of each check, by its name; a failure of any other check counts as a warning.
EXIT_CODES = {"workers": 3, "redis": 4, "database": 5}

NOT_CHECKED = "not checked: the database check failed"


def exit_code(checks: Sequence[Check]) -> int:
    """The exit code of the most severe outcome among `checks` (see the module docstring)."""
    code = EXIT_OK
    for check in checks:
        if check.status is Status.FAIL:
            code = max(code, EXIT_CODES.get(check.name, EXIT_WARNINGS))
        elif check.status is Status.WARN:
            code = max(code, EXIT_WARNINGS)
    return code


def overall(checks: Sequence[Check]) -> Status:
    """The worst status among `checks`."""
    order = [Status.OK, Status.WARN, Status.FAIL]
    return max((check.status for check in checks), key=order.index, default=Status.OK)


async def check_everything(settings: Settings, timeout: float) -> list[Check]:
    """The database, Redis (when `redis_url` is set), live workers and beat's leader, each
    given `timeout` seconds, in that order."""
    redis_check = (
        asyncio.create_task(timed("redis", lambda: redis(url, timeout), timeout))
        if (url := settings.redis_url)
        else None
    )
    # The driver's own connect timeout ends a connection attempt before the check's does, so
    # that the driver cleans up after it rather than being cancelled halfway.
    connect = min(settings.connect_timeout, timeout * 0.8)
    settings = settings.replace(connect_timeout=connect)
    storage = create_storage(settings.database_url, settings, application_name="jobworker cli")

    async def open_and_read() -> Outcome:
        _refuse_missing_sqlite_file(storage, settings)
        await storage.open()
        return await database(storage)

    try:
        checks = [await timed("database", open_and_read, timeout)]
        if checks[0].status is Status.FAIL:
            checks += [_not_checked("workers"), _not_checked("beat")]
        else:
            checks.append(await timed("workers", lambda: live_workers(storage, settings), timeout))
            checks.append(await timed("beat", lambda: beat_leader(storage), timeout))
    finally:
        await _close(storage, timeout)  # nothing to do if it never opened
    if redis_check is not None:
        checks.insert(1, await redis_check)
    return checks


def _not_checked(name: str) -> Check:
    return Check(name=name, status=Status.FAIL, detail=NOT_CHECKED, seconds=0.0)


def _refuse_missing_sqlite_file(storage: Storage, settings: Settings) -> None:
    """Opening a SQLite file creates it: a health check must not create an empty database
    where there was none, and report on that."""
    if storage.dialect != "sqlite":
        return
    from jobworker.storage.sqlite.connection import sqlite_path

    path = sqlite_path(settings.database_url)
    if path != ":memory:" and not os.path.exists(path):
        raise DatabaseUnreachableError(f"no SQLite database at {os.path.abspath(path)}")


async def _close(storage: Storage, timeout: float) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(storage.close(), timeout)
