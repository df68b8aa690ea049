"""The job of `benchmarks/soak.py`.

Imported as the top-level module `soak_jobs` (the soak puts this directory on `sys.path` and on
the workers' `PYTHONPATH`), so `python -m jobworker run soak_jobs` registers the same job name.
It defines no `App`: the workers build one from `--database-url` and the `JOBWORKER_*`
variables.
"""

from __future__ import annotations

from jobworker import JobContext, job


@job(name="soak.step")
async def step(ctx: JobContext, n: int, events: int = 1) -> int:
    """Report `events` progress events (kept: one `job_events` row each), return `n`."""
    for done in range(1, events + 1):
        await ctx.progress(done, events)
    return n
