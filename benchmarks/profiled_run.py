"""`python -m jobworker ...` with each worker process measured, for `benchmarks/profile_drain.py`.

Every worker process the supervisor forks writes, as it stops, `worker-<pid>.json` into the
directory named by `$JOBWORKER_BENCH_PROFILE_DIR`: the CPU seconds it used (user and system,
all its threads), its wall time and the jobs it finished. With `$JOBWORKER_BENCH_CPROFILE=1` it
also runs under cProfile (its event loop's thread: async handlers run there) and writes
`worker-<pid>.prof` (pstats).

    JOBWORKER_BENCH_PROFILE_DIR=/tmp/p python benchmarks/profiled_run.py run noop_jobs ...
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import time
from pathlib import Path

from jobworker import child
from jobworker.cli import main
from jobworker.worker import Worker

_run_worker = child._run_worker


def _measured(worker: Worker) -> int:
    out = Path(os.environ["JOBWORKER_BENCH_PROFILE_DIR"])
    profile = cProfile.Profile() if os.environ.get("JOBWORKER_BENCH_CPROFILE") == "1" else None
    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        return _run_worker(worker)
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(out / f"worker-{os.getpid()}.prof")
        after = resource.getrusage(resource.RUSAGE_SELF)
        figures = {
            "pid": os.getpid(),
            "jobs": worker.finished,
            "user_s": after.ru_utime - before.ru_utime,
            "system_s": after.ru_stime - before.ru_stime,
            "wall_s": time.perf_counter() - wall,
        }
        (out / f"worker-{os.getpid()}.json").write_text(json.dumps(figures))


child._run_worker = _measured

if __name__ == "__main__":
    main()
