"""One health check each: the database (a query, with the schema version it holds against the one
this code expects), Redis (a PING), the worker processes alive (fresh heartbeats in the worker
registry) and beat's leader.

A check is a coroutine that returns a status and a one-line detail; `timed` runs it under a
timeout and measures it, and turns every exception, the timeout included, into a failed `Check`:
an outage is a result, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import msgspec

from jobworker.config import Settings
from jobworker.display import printable, redact_url
from jobworker.errors import JobworkerError, MissingExtraError
from jobworker.models import WorkerRole
from jobworker.registration import stale_after
from jobworker.storage import Storage, latest_schema_version

__all__ = [
    "Check",
    "Outcome",
    "Status",
    "beat_leader",
    "database",
    "live_workers",
    "redis",
    "timed",
]


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


Outcome = tuple[Status, str]
"""What a check body returns: its status and a one-line detail."""


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One check's result: `name` (database, redis, workers, beat), its status, a one-line
    detail, and how long it took in seconds."""

    name: str
    status: Status
    detail: str
    seconds: float


async def timed(name: str, body: Callable[[], Awaitable[Outcome]], timeout: float) -> Check:
    """Run `body` for at most `timeout` seconds: its outcome, or a failure that says what went
    wrong (the exception's type and message, or that no answer came in time)."""
    started = time.perf_counter()
    try:
        status, detail = await asyncio.wait_for(body(), timeout)
    except TimeoutError:
        status, detail = Status.FAIL, f"no answer within {timeout:g}s"
    except Exception as exc:
        status, detail = Status.FAIL, _error(exc)
    return Check(
        name=name,
        status=status,
        detail=printable(detail),  # one line, whatever a driver's message holds
        seconds=round(time.perf_counter() - started, 6),
    )


def _error(exc: BaseException) -> str:
    """Our own errors say what is wrong in their message; others need their type too."""
    message = str(exc).strip()
    if isinstance(exc, JobworkerError) and message:
        return message
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


async def database(storage: Storage) -> Outcome:
    """The schema version the database holds, read by a query, against the one this code
    expects: older is a failure (run `jobworker migrate`), newer a warning (a newer jobworker
    migrated it)."""
    found = await storage.schema.version()
    expected = latest_schema_version(storage.dialect)
    if found == expected:
        return Status.OK, f"schema version {found}, as this code expects"
    if found == 0:
        return Status.FAIL, "no jobworker schema: run jobworker migrate"
    if found < expected:
        return Status.FAIL, (
            f"schema version {found}, this code expects {expected}: run jobworker migrate"
        )
    return Status.WARN, (
        f"schema version {found}, newer than this code's {expected}: a newer jobworker migrated it"
    )


async def redis(url: str, timeout: float) -> Outcome:
    """A PING to the Redis at `url`, with connect and read timeouts of `timeout` seconds and no
    retries (as beat's probe)."""
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:
        raise MissingExtraError("redis", "redis") from None

    client = aioredis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        await client.ping()
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    return Status.OK, f"PING answered by {redact_url(url)}"


async def live_workers(storage: Storage, settings: Settings, parent: str | None = None) -> Outcome:
    """The worker processes whose row in the registry has a heartbeat younger than
    `stale_after` (by the database's clock); with `parent`, only those of that supervisor row.
    None alive is a failure: no job runs."""
    window = stale_after(settings)
    rows = await storage.workers.list_workers(include_gone=False)
    cutoff = storage.clock.now() - timedelta(seconds=window)
    workers = [
        row
        for row in rows
        if row.role is WorkerRole.WORKER and (parent is None or row.parent == parent)
    ]
    fresh = [row for row in workers if row.last_heartbeat >= cutoff]
    stale = len(workers) - len(fresh)
    stale_note = f"; {stale} stale" if stale else ""
    whose = "" if parent is None else " of this supervisor"
    if not fresh:
        return Status.FAIL, (
            f"no worker process{whose} has a heartbeat within {window:g}s{stale_note}"
        )
    supervisors = {row.parent for row in fresh if row.parent is not None}
    under = "" if parent is not None else f" under {len(supervisors)} supervisor(s)"
    return Status.OK, (
        f"{len(fresh)} worker process(es){whose} alive{under} "
        f"(heartbeat within {window:g}s){stale_note}"
    )


async def beat_leader(storage: Storage) -> Outcome:
    """Who leads beat, from the leaders table. None is a warning: recurring jobs do not fire,
    while the worker processes rescue expired leases and run the janitor themselves (see
    `maintenance.while_no_beat_leads`)."""
    leader = await storage.leadership.beat_leader()
    if leader is not None:
        since = leader.since.strftime("%Y-%m-%d %H:%M:%S%z")
        return Status.OK, f"{leader.holder} leads by {leader.mechanism} since {since}"
    recurring = [r for r in await storage.recurring.list_recurring() if r.enabled]
    return Status.WARN, (
        f"no beat leader: {len(recurring)} enabled recurring job(s) will not fire; worker "
        "processes rescue expired leases and run the janitor themselves"
    )
