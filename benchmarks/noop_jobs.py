"""Jobs that do nothing, for `benchmarks/throughput.py`.

Imported as the top-level module `noop_jobs` (the benchmark puts this directory on `sys.path`
and on the workers' `PYTHONPATH`), so the worker processes started with
`python -m jobworker run noop_jobs` register exactly the same job names. It defines no `App`:
the workers build one from `--database-url`.
"""

from __future__ import annotations

import time

from jobworker import JobContext, job


@job(name="bench.noop")
def noop(ctx: JobContext, n: int) -> None:
    """Do nothing (a sync handler: it runs on the worker's thread pool)."""


@job(name="bench.anoop")
async def anoop(ctx: JobContext, n: int) -> None:
    """Do nothing (an async handler: it runs on the worker's event loop)."""


@job(name="bench.latency")
async def latency(ctx: JobContext, sent: float) -> float:
    """Seconds from just before the enqueue call (`sent`, a time.time()) to the handler's start."""
    return time.time() - sent
