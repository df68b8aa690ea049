"""A leader's wall clock stepped forward while it runs, on an injected clock (no real clock
change): the ticks stepped over collapse into the latest one, as ticks missed without a leader
do, while a late loop (the wall clock and the monotonic clock moving together) still fires
every tick since its term began (tests/test_beat.py)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from jobworker import App, JobContext, Registry
from jobworker.beat import Beat
from jobworker.clock import FrozenClock
from jobworker.models import JobFilter
from jobworker.recurring import RecurringJob

from .conftest import Store

NAME = "t.every_second"
START = datetime(2030, 3, 30, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def per_second_registry() -> Registry:
    registry = Registry()

    @registry.job(name=NAME, kind="system", cron="* * * * * *")
    def every_second(ctx: JobContext) -> None: ...

    return registry


async def fired_instants(app: App, beat: Beat) -> Counter[datetime]:
    """How many jobs were enqueued for each scheduled instant."""
    jobs = await beat.storage.inspection.list_jobs(JobFilter(), limit=10_000)
    prefix = f"cron:{NAME}:"
    return Counter(
        datetime.fromisoformat(job.idempotency_key[len(prefix) :])
        for job in jobs
        if job.idempotency_key and job.idempotency_key.startswith(prefix)
    )


async def run_at_real_speed(clock: FrozenClock, seconds: float, step: float = 0.1) -> None:
    """Move the injected clock with real time, as an undisturbed clock moves: by the time that
    really passed (a loaded machine sleeps longer than asked), until `seconds` have passed."""
    began = last = time.monotonic()
    while last - began < seconds:
        await asyncio.sleep(step)
        now = time.monotonic()
        clock.advance(now - last)
        last = now


async def test_a_forward_clock_step_fires_only_the_latest_missed_tick(store: Store) -> None:
    await _step_six_minutes(store, during_a_read=False)


async def test_a_step_while_the_leader_reads_its_schedule_is_seen_as_a_step(store: Store) -> None:
    """The step lands after the leader checked the clock and before it read the recurring
    table (a loaded machine widens that window): it is still a step, not 360 ticks due."""
    await _step_six_minutes(store, during_a_read=True)


async def _step_six_minutes(store: Store, *, during_a_read: bool) -> None:
    clock = FrozenClock(START)
    # A lease TTL longer than the step: the SQLite lease row, on the same clock, stays valid,
    # so the leader keeps its term across the step (no new term hides the problem).
    app = App(
        store.url,
        registry=per_second_registry(),
        clock=clock,
        database_schema=store.schema,
        beat_lease_ttl=900.0,
        beat_tick_interval=0.05,
    )
    beat = Beat(app)
    task = asyncio.create_task(beat.run())
    try:
        for _ in range(200):
            if beat.is_leader:
                break
            await asyncio.sleep(0.05)
        assert beat.is_leader
        await run_at_real_speed(clock, 4.0)
        before_step = clock.now()
        if during_a_read:
            stepped = asyncio.Event()
            recurring = beat.storage.recurring
            list_recurring = recurring.list_recurring

            async def step_then_list() -> list[RecurringJob]:
                if not stepped.is_set():
                    clock.advance(timedelta(minutes=6))
                    stepped.set()
                return await list_recurring()

            recurring.list_recurring = step_then_list  # type: ignore[method-assign]
            await asyncio.wait_for(stepped.wait(), 10)
        else:
            clock.advance(timedelta(minutes=6))  # the step: six minutes at once
        after_step = before_step + timedelta(minutes=6)
        await run_at_real_speed(clock, 4.0)
        fired = await fired_instants(app, beat)
    finally:
        beat.request_stop()
        await asyncio.wait_for(task, 15)
        await app.aclose()

    assert set(fired.values()) == {1}, "each instant is enqueued once"
    instants = sorted(fired)
    stepped_over = [t for t in instants if before_step + SECOND < t < after_step - SECOND]
    print(
        f"\n{store.backend}: {len(stepped_over)} tick(s) fired inside the 6-minute step, "
        f"{len(instants)} in all ({instants[0].time()} .. {instants[-1].time()})"
    )
    # Every tick once while the clock runs; the step leaves one gap, and the tick fired for
    # it is the latest one due when the leader saw the step, not the ~360 it passed over.
    gaps = [b - a for a, b in itertools.pairwise(instants)]
    jumps = [(a, b) for a, b in itertools.pairwise(instants) if b - a != SECOND]
    assert len(jumps) == 1 and stepped_over == [], (len(stepped_over), jumps)
    [(last_before, first_after)] = jumps
    assert last_before <= before_step and after_step - SECOND <= first_after <= after_step + SECOND
    assert gaps.count(SECOND) >= 4, instants
