"""Ending the leases of worker processes that are gone: the supervisor's database work, done in
a short-lived process of its own.

The supervisor's loop reaps children, answers signals and reads heartbeats whatever the database
does: like gunicorn's arbiter, it does no network I/O. Ending a dead child's leases needs the
database, and Redis for the lease floors, and either may take `connect_timeout` to fail (or
longer to answer) when it is in trouble. So the supervisor queues the owners to release and
forks a helper process that runs `release_leases` for them and exits; its loop reaps the helper
like any child, and forks the next one for the owners that died meanwhile.

A process rather than a thread, because the supervisor forks workers at any time: a thread alive
then (its event loop, its sockets, the locks it holds) would be copied, half-way through whatever
it was doing, into every new worker, and no connection may cross fork(). A forked helper is the
arbiter's own tool: reaped by the same waitpid loop, logging through the same handlers, started
from a process that holds no connection, and when it hangs on a dead database nothing waits for
it. The supervisor kills one that is still at work after a lease duration: the leases have
expired by then, and the lease rescue of any worker (or of beat) takes their jobs back instead.
At shutdown the supervisor waits for the helper (up to its stop deadline) before it exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from jobworker.app import App
from jobworker.config import Settings
from jobworker.events.bus import live_floors
from jobworker.metrics.figures import Figures
from jobworker.metrics.rows import add_to_row
from jobworker.storage import Storage

__all__ = ["Release", "release_leases"]

# The supervisor's logger: these lines are about its children, wherever they are written from.
logger = logging.getLogger("jobworker.supervisor")


@dataclass(frozen=True)
class Release:
    """The leases of one worker process that is gone."""

    owner: str
    lost: bool  # it died (its attempts count), rather than being stopped at shutdown
    reason: str
    # The registry row (the supervisor's) whose figures count the attempts ended as lost.
    counted_by: str | None = None


def release_leases(app: App, releases: Sequence[Release]) -> int:
    """End the leases of each owner (the helper process's body); returns its exit code: 0 when
    every release was done."""
    remaining = list(releases)
    failed = 0
    try:
        failed = asyncio.run(_release_all(app, remaining))
    except Exception:  # the storage could not be opened
        for release in remaining:
            logger.exception(
                "releasing the leases of %s failed; they will expire instead", release.owner
            )
        failed += len(remaining)
    return 1 if failed else 0


async def _release_all(app: App, remaining: list[Release]) -> int:
    """Release the owners of `remaining` in order, taking each out once it is done (released,
    or failed and logged); returns how many failed."""
    failed = 0
    storage = app.create_storage()
    await storage.open()
    figures: dict[str, Figures] = {}  # by the row that counts them
    try:
        while remaining:
            release = remaining[0]
            try:
                count = await _release(storage, app.settings, release, figures)
            except Exception:
                failed += 1
                logger.exception(
                    "releasing the leases of %s failed; they will expire instead", release.owner
                )
            else:
                if count:
                    logger.info("released %d job(s) held by %s", count, release.owner)
            del remaining[0]
        await _count_lost(storage, figures)
    finally:
        await storage.close()
    return failed


async def _release(
    storage: Storage, settings: Settings, release: Release, figures: dict[str, Figures]
) -> int:
    floors = {}
    labels: list[tuple[str, str]] = []
    if release.lost:  # its events on Redis may run ahead of what the database knows
        leased = await storage.maintenance.leased_job_ids(release.owner, limit=100_000)
        floors = await live_floors(settings, leased)
        if release.counted_by is not None:
            for job_id in leased:
                record = await storage.inspection.get(job_id)
                if record is not None:
                    labels.append((record.job_type, record.queue))
    count = await storage.jobs.release_owner(
        release.owner, lost=release.lost, reason=release.reason, seq_floors=floors
    )
    if labels and release.counted_by is not None:
        counted = figures.setdefault(release.counted_by, Figures())
        for job_type, queue in labels[:count]:
            counted.attempt_lost(job_type, queue)
    return count


async def _count_lost(storage: Storage, figures: dict[str, Figures]) -> None:
    """Add the lost attempts to the figures of the rows that count them (a failure is logged:
    the attempts are ended all the same)."""
    for row_id, counted in figures.items():
        try:
            await add_to_row(storage, row_id, counted)
        except Exception:
            logger.exception("could not count the lost attempts in the figures of %s", row_id)
