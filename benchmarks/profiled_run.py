"""`python -m jobworker ...` with each worker process measured, for `benchmarks/profile_drain.py`.

Every worker process the supervisor forks writes, as it stops, `worker-<pid>.json` into the
directory named by `$JOBWORKER_BENCH_PROFILE_DIR`: the CPU seconds it used (user and system,
all its threads), its wall time and the jobs it finished. With `$JOBWORKER_BENCH_CPROFILE=1` it
also runs under cProfile (its event loop's thread: async handlers run there) and writes
`worker-<pid>.prof` (pstats). It also records the time spent in garbage collections and their
count per generation; `$JOBWORKER_BENCH_GC=off` disables the collector in the worker (to
measure what it costs), `freeze` moves what the process holds at its start to the permanent
generation (`gc.freeze()`).

    JOBWORKER_BENCH_PROFILE_DIR=/tmp/p python benchmarks/profiled_run.py run noop_jobs ...
"""

from __future__ import annotations

import cProfile
import gc
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
    if os.environ.get("JOBWORKER_BENCH_GC") == "off":
        gc.disable()
    elif os.environ.get("JOBWORKER_BENCH_GC") == "freeze":
        gc.freeze()  # what the process inherited is never scanned again
    gc_seconds = [0.0, 0.0]  # total, start of the collection under way

    def time_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_seconds[1] = time.perf_counter()
        else:
            gc_seconds[0] += time.perf_counter() - gc_seconds[1]

    gc.callbacks.append(time_gc)
    collections_before = [s["collections"] for s in gc.get_stats()]
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
            "gc_s": gc_seconds[0],
            "gc_collections": [
                s["collections"] - b
                for s, b in zip(gc.get_stats(), collections_before, strict=True)
            ],
        }
        (out / f"worker-{os.getpid()}.json").write_text(json.dumps(figures))


child._run_worker = _measured

if __name__ == "__main__":
    main()
