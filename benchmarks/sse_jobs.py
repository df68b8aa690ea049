"""The job and the routes `benchmarks/sse_fanout.py` serves and runs.

Imported as the top-level module `sse_jobs` (the benchmark puts this directory on the
`PYTHONPATH` of the worker and the web server), so `jobworker run sse_jobs` registers the job
and `jobworker web sse_jobs --routes sse_jobs:web_routes --prefix /jobs` serves the job routes
under `/jobs/{job_id}/stream`. It defines no `App`: both build one from `--database-url` and
the `JOBWORKER_*` variables.

`bench.sse_emit` waits until a gate file exists (so every client is connected before the first
event), then emits `rate` chunk events per second for `seconds`, each carrying its emit time:
`{"t": time.time(), "n": i}`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from starlette.routing import BaseRoute

from jobworker import App, JobContext, job
from jobworker.web.job_routes import allow_all, job_routes

GATE_POLL = 0.01  # seconds between two looks at the gate file
GATE_TIMEOUT = 600.0


@job(name="bench.sse_emit", max_attempts=1, timeout=3600)
async def emit(ctx: JobContext, rate: float, seconds: float, gate: str) -> dict[str, Any]:
    waited_until = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(gate):  # noqa: ASYNC240 (a stat of a local file, before it starts)
        if time.monotonic() > waited_until:
            raise TimeoutError(f"the gate {gate} was not opened in {GATE_TIMEOUT:.0f}s")
        await asyncio.sleep(GATE_POLL)
    count = round(rate * seconds)
    chunk = ctx.chunk
    clock = time.time
    started = time.perf_counter()
    first = clock()
    for i in range(count):
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
        await chunk({"t": clock(), "n": i})
    return {"emitted": count, "first": first, "last": clock()}


def web_routes(app: App) -> list[BaseRoute]:
    """The job routes (status, stream, history) with no authorization: a benchmark only."""
    return job_routes(app.client, authorize=allow_all)
