"""Jobs that stream chunk events, for `benchmarks/events.py`.

Imported as the top-level module `event_jobs` (the benchmark puts this directory on `sys.path`
and on the workers' `PYTHONPATH`), so `python -m jobworker run event_jobs` registers exactly the
same job names. It defines no `App`: the workers build one from `--database-url` and the
`JOBWORKER_*` variables.

Each handler runs the same loop with events on or off: per iteration it does `work_us`
microseconds of its own work (a busy loop on the CPU, standing in for what a real handler does
to produce each value: a token, a row), takes the time and builds the chunk's value
(`{"t": time.time(), "n": i}`); with `emit` it also hands the value to `ctx.chunk`. With `rate`
(events per second) the loop paces itself: every PACE_EVERY iterations it sleeps until that
iteration is due. The result carries the loop's own run time and the times
of its first and last iteration, so the benchmark can tell emitting from everything around it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobworker import JobContext, job

PACE_EVERY = 50


def work(seconds: float) -> None:
    """`seconds` of CPU work."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


@job(name="bench.stream", max_attempts=1)
async def stream(
    ctx: JobContext, count: int, emit: bool = True, rate: float = 0.0, work_us: float = 0.0
) -> dict[str, Any]:
    """An async handler: `await ctx.chunk(...)` per iteration."""
    chunk = ctx.chunk
    busy = work_us / 1e6
    started = time.perf_counter()
    first = last = 0.0
    for i in range(count):
        if rate and i % PACE_EVERY == 0:
            ahead = started + i / rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
        if busy:
            work(busy)
        last = time.time()
        value = {"t": last, "n": i}
        if emit:
            await chunk(value)
        if i == 0:
            first = last
    run_s = time.perf_counter() - started
    return {"count": count, "emit": emit, "run_s": run_s, "first": first, "last": last}


@job(name="bench.stream_sync", max_attempts=1)
def stream_sync(
    ctx: JobContext, count: int, emit: bool = True, rate: float = 0.0, work_us: float = 0.0
) -> dict[str, Any]:
    """A sync handler (on the worker's thread pool): `ctx.chunk(...)` per iteration."""
    chunk = ctx.chunk
    busy = work_us / 1e6
    started = time.perf_counter()
    first = last = 0.0
    for i in range(count):
        if rate and i % PACE_EVERY == 0:
            ahead = started + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        if busy:
            work(busy)
        last = time.time()
        value = {"t": last, "n": i}
        if emit:
            chunk(value)
        if i == 0:
            first = last
    run_s = time.perf_counter() - started
    return {"count": count, "emit": emit, "run_s": run_s, "first": first, "last": last}
