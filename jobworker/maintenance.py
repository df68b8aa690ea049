"""The cluster's housekeeping: lease rescue, the continuation sweep, the worker registry's
sweep (stale rows marked gone) and the janitor.

The `jobworker beat` leader runs these; while no beat leader lives, every worker process does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.events.bus import live_floors
from jobworker.events.database_bus import DatabaseBus
from jobworker.outage import Outage
from jobworker.registration import GONE_RETENTION, stale_after
from jobworker.storage import Storage

logger = logging.getLogger("jobworker.maintenance")

Floors = Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, int]]]
Lost = Callable[[str, str], None]
"""Told of each attempt a rescue counted as lost: its job type and queue (`Figures`)."""


async def rescue_expired_leases(
    storage: Storage, settings: Settings, floors: Floors | None = None, lost: Lost | None = None
) -> int:
    """Jobs whose lease expired return to queued, or go dead when out of attempts, each with an
    attempt row saying why. Their lifecycle events are numbered above the last sequence their
    attempt used on Redis (`floors`, or a connection of its own). `lost` is told of each."""
    expired = await storage.maintenance.leased_job_ids(None)
    if not expired:
        return 0
    seq_floors = await (floors or functools.partial(live_floors, settings))(expired)
    # Read before the rescue (a rare path: a process died or stalled). A lease renewed between
    # the two reads is not rescued; those counted are then the first `rescued` of them.
    labels = await _job_labels(storage, expired) if lost is not None else []
    rescued = await storage.maintenance.rescue_expired(seq_floors=seq_floors)
    if rescued:
        logger.warning("rescued %d job(s) whose lease had expired", rescued)
    if lost is not None:
        for job_type, queue in labels[:rescued]:
            lost(job_type, queue)
    return rescued


async def _job_labels(storage: Storage, job_ids: list[uuid.UUID]) -> list[tuple[str, str]]:
    labels = []
    for job_id in job_ids:
        record = await storage.inspection.get(job_id)
        if record is not None:
            labels.append((record.job_type, record.queue))
    return labels


async def settle_continuations(storage: Storage) -> int:
    """Repair sweep: continuations whose parent ended while nobody settled them."""
    settled = await storage.maintenance.resolve_continuations()
    if settled:
        logger.info("settled continuations of %d ended job(s)", settled)
    return settled


async def mark_stale_workers(storage: Storage, settings: Settings) -> int:
    """The worker registry's rows whose heartbeat is older than `stale_after` (a process killed,
    or stalled) are marked gone."""
    marked = await storage.workers.mark_gone(stale_after(settings))
    if marked:
        logger.warning("marked %d worker registry row(s) gone: their heartbeat is stale", marked)
    return marked


async def purge(
    storage: Storage,
    settings: Settings,
    clock: Clock,
    carry_on: Callable[[], bool] = lambda: True,
) -> int:
    """The janitor: finished jobs past their result TTL (with their attempts and events), then
    transient events older than the stream TTL; a bounded batch, its own short transaction, at a
    time, until none is left or `carry_on()` says stop. Last, the worker registry's rows marked
    gone more than `GONE_RETENTION` after their last heartbeat."""
    batch = settings.janitor_batch_size
    total = 0
    while carry_on():
        purged = await storage.maintenance.purge_expired(limit=batch)
        total += purged
        if purged < batch:
            break
        await asyncio.sleep(0.01)  # let claims and other writers in between
    if total:
        logger.info("janitor: purged %d job(s) past their result TTL", total)
    before = clock.now() - timedelta(seconds=settings.event_stream_ttl)
    transient = DatabaseBus(storage, settings)
    while carry_on():
        if await transient.purge(before, limit=batch) < batch:
            break
        await asyncio.sleep(0.01)
    if carry_on():
        await storage.workers.purge_gone(GONE_RETENTION)
    return total


async def while_no_beat_leads(
    storage: Storage,
    settings: Settings,
    clock: Clock,
    floors: Floors,
    carry_on: Callable[[], bool],
    lost: Lost | None = None,
) -> None:
    """A worker's own housekeeping, for when no beat runs: every `rescue_interval`, unless a live
    beat leader does it (docs/beat.md), rescue expired leases, settle continuations and mark
    stale worker rows gone; every `janitor_interval`, purge. Runs until cancelled."""
    last_purge = time.monotonic()
    outage = Outage("maintenance (lease rescue, purge)")
    while True:
        await asyncio.sleep(settings.rescue_interval)
        try:
            if await _beat_leads(storage):
                continue
            await rescue_expired_leases(storage, settings, floors, lost)
            await settle_continuations(storage)
            await mark_stale_workers(storage, settings)
            if time.monotonic() - last_purge >= settings.janitor_interval:
                last_purge = time.monotonic()
                await purge(storage, settings, clock, carry_on)
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.succeeded()


async def _beat_leads(storage: Storage) -> bool:
    # Every schema a worker accepts has the leaders' table: a failure to read it is the
    # database's, and the round fails with it (logged as an outage) rather than maintaining
    # beside a leader that may well be alive.
    return await storage.leadership.beat_leader() is not None
