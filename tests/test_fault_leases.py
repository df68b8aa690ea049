# ruff: noqa: F811  (the fixtures of test_processes, imported by name)
"""Faults around leases, with real worker processes: a claim whose reply never arrived, and a
worker stopped past its lease and resumed (SIGSTOP / SIGCONT)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from jobworker import App, JobStatus, ScheduleOptions
from jobworker.clock import FrozenClock
from jobworker.events.model import Lifecycle
from jobworker.models import EventKind
from jobworker.storage import create_storage

from .test_processes import (  # noqa: F401
    JOBWORKER,
    Run,
    env,
    executions,
    proc_app,
    proc_jobs,
    start,
    wait_for,
)

LEASE = 2.0
FAULT_ENV = {"JOBWORKER_LEASE_DURATION": str(LEASE), "JOBWORKER_RESCUE_INTERVAL": "0.2"}


def worker_ids(run: Run) -> list[str]:
    return re.findall(r"worker (\S+) started", run.log)


def status_of(app: App, job_id: object) -> JobStatus | None:
    record = app.client.get(job_id)
    return None if record is None else record.status


def test_a_job_leased_to_a_worker_that_never_received_it_is_rescued_within_a_lease(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    """The database committed a claim whose reply the worker never read: the job is leased to
    a live, busy worker that does not hold it. The worker renews only the leases it holds, so
    that one expires and is rescued and run (before, every renewal extended it: stranded)."""
    run = start("--concurrency", "1", extra_env=FAULT_ENV)
    busy = proc_jobs.sleepy.delay(seconds=30, marker=str(tmp_path / "busy"))
    wait_for(lambda: (tmp_path / "busy").exists(), 60, "the busy job to start")
    [owner] = wait_for(lambda: worker_ids(run), 10, "the worker's id in the log")
    # The lost reply: a job leased to that worker in the database, which it never received.
    # Claimed a few seconds ahead (a clock of its own), when the worker itself cannot claim it.
    due = datetime.now(UTC) + timedelta(seconds=3)
    handle = proc_jobs.noop.delay(options=ScheduleOptions(run_at=due))
    settings = proc_app.settings

    async def lose_a_claim() -> None:
        ahead = FrozenClock(proc_app.clock.now() + timedelta(seconds=5))
        storage = create_storage(settings.database_url, settings, ahead)
        await storage.open()
        try:
            claimed = await storage.jobs.claim(owner, ["proc.noop"], ["default"], 1, LEASE)
            assert [job.id for job in claimed] == [handle.job_id]
        finally:
            await storage.close()

    asyncio.run(lose_a_claim())
    started = time.monotonic()
    wait_for(
        lambda: status_of(proc_app, handle.job_id) is JobStatus.SUCCEEDED,
        5 + 4 * LEASE,
        "the stranded job to be rescued and run",
    )
    print(f"rescued and run {time.monotonic() - started:.1f}s after the lost claim")
    attempts = [a.outcome.value for a in proc_app.client.attempts(handle.job_id)]
    assert attempts == ["lost", "succeeded"], attempts
    assert status_of(proc_app, busy.job_id) is JobStatus.RUNNING  # its worker kept it
    assert run.stop() == 0


def test_a_worker_resumed_past_its_lease_stops_and_writes_nothing_more(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    """A worker stopped (SIGSTOP) past its lease while its job reports progress; the job is
    rescued and run again by another worker; the first is resumed (SIGCONT): it finds its lease
    gone, stops the handler at once and says so once, and none of its late events is stored,
    so readers see the lost lease and the second start in sequence."""
    first = start("--concurrency", "1", extra_env=FAULT_ENV)
    handle = proc_jobs.steady.delay(seconds=6, marker=str(tmp_path / "steady"))
    wait_for(lambda: (tmp_path / "steady").exists(), 60, "the job to start")
    pid = int((tmp_path / "steady").read_text())
    time.sleep(0.5)  # some progress events
    os.kill(pid, signal.SIGSTOP)
    try:
        second = start("--concurrency", "1", extra_env=FAULT_ENV)
        wait_for(
            lambda: [row for row in executions(tmp_path) if row[1] == 2],
            10 + 2 * LEASE,
            "the second attempt to start",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: "its lease is gone" in first.log, 5 * LEASE, "the resumed worker to notice")
    wait_for(
        lambda: status_of(proc_app, handle.job_id) is JobStatus.SUCCEEDED,
        30,
        "the second attempt to finish",
    )
    assert first.log.count("its lease is gone") == 1, first.log
    events = proc_app.client.events(handle.job_id, limit=100_000)
    lost = next(
        e.seq
        for e in events
        if e.kind is EventKind.LIFECYCLE and e.decoded(Lifecycle).status is JobStatus.QUEUED
    )
    stale = [
        e.seq
        for e in events
        if e.kind is EventKind.PROGRESS and e.decoded()["value"]["attempt"] == 1
    ]
    print(f"first attempt: {len(stale)} progress events stored, lease lost at seq {lost}")
    assert stale and max(stale) < lost, (stale, lost)
    statuses = [e.decoded(Lifecycle).status.value for e in events if e.kind is EventKind.LIFECYCLE]
    assert statuses == ["running", "queued", "running", "succeeded"], statuses
    assert first.stop() == 0 and second.stop() == 0


class SkewedRun(Run):
    """`jobworker run` of the proc_jobs jobs in a process whose wall clock is off by `skew`
    seconds (`tests/apps/skewed_jobs.py`)."""

    def __init__(self, tmp_path: Path, env: dict[str, str], skew: float) -> None:
        self.log_path = tmp_path / f"skewed-{skew:+.0f}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*JOBWORKER, "run", "skewed_jobs", "--concurrency", "1"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**env, "SKEW_SECONDS": str(skew)},
        )
        self.ps = psutil.Process(self.proc.pid)


def test_leases_and_results_keep_to_the_databases_clock_whatever_the_workers_clocks(
    env: dict[str, str], proc_app: App, tmp_path: Path
) -> None:
    """A worker whose clock is 60 s behind runs a job past its lease time while another, whose
    clock was stepped 5 minutes forward, runs lease rescue and the janitor: the job is not
    rescued (it runs once) and a result that has a minute to live is not purged. Leases, due
    times and the janitor's cut-off are the database's time, not the processes'."""
    fault_env = {**env, **FAULT_ENV, "JOBWORKER_JANITOR_INTERVAL": "0.2"}
    kept = proc_jobs.noop.delay(i=1, options=ScheduleOptions(result_ttl=120))
    runs: list[Run] = []
    try:
        behind = SkewedRun(tmp_path, fault_env, -60)
        runs.append(behind)
        wait_for(lambda: status_of(proc_app, kept.job_id) is JobStatus.SUCCEEDED, 20, "a result")
        long = proc_jobs.sleepy.delay(seconds=3 * LEASE, marker=str(tmp_path / "long"))
        wait_for(lambda: (tmp_path / "long").exists(), 60, "the long job to start")
        ahead = SkewedRun(tmp_path, fault_env, 300)
        runs.append(ahead)
        wait_for(
            lambda: status_of(proc_app, long.job_id) is JobStatus.SUCCEEDED,
            10 + 3 * LEASE,
            "the long job to finish",
        )
        assert "rescued" not in ahead.log, ahead.log
        runs_of_long = [row for row in executions(tmp_path) if row[0] == str(long.job_id)]
        assert [attempt for _, attempt, _ in runs_of_long] == [1], runs_of_long
        assert [a.outcome.value for a in proc_app.client.attempts(long.job_id)] == ["succeeded"]
        time.sleep(1.0)  # a few more janitor passes of the process 5 minutes ahead
        assert status_of(proc_app, kept.job_id) is JobStatus.SUCCEEDED  # not purged
        assert behind.stop() == 0 and ahead.stop() == 0
    finally:
        for run in runs:
            run.kill()
