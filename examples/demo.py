"""Enqueue three jobs, run two worker processes until they are done, print how each ended.

python examples/demo.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from demo_jobs import app, flaky, greet, slow

from jobworker import JobStatus

HERE = Path(__file__).resolve().parent


def main() -> int:
    handles = [
        greet.delay(name="jobworker"),
        flaky.delay(service="payments"),
        slow.delay(seconds=1.5),
    ]
    print(f"enqueued {len(handles)} jobs into {app.settings.database_url}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    workers = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobworker",
            "--log-level",
            "WARNING",
            "run",
            "demo_jobs",
            "--concurrency",
            "2",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = [handle.get() for handle in handles]
            if all(job is not None and job.status.is_terminal for job in jobs):
                break
            time.sleep(0.2)
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.wait(60)
    ok = True
    for handle in handles:
        job = handle.get()
        assert job is not None
        ok &= job.status is JobStatus.SUCCEEDED
        state = f"{job.job_type:<11} {job.status.value:<9} attempts={job.attempt}"
        print(f"{state}  result={job.result!r}")
        for attempt in app.client.attempts(job.job_id):
            note = f"  ({attempt.error})" if attempt.error else ""
            print(f"    attempt {attempt.attempt}: {attempt.outcome.value}{note}")
    app.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
