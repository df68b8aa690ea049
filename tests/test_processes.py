"""The process model, with real `jobworker run` supervisors and worker processes."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobworker import App, AttemptOutcome, EventKind, JobDescriptor, JobStatus

from .conftest import FAST, JOBWORKER, REDIS_URL, TESTS, Store, cleanup_redis, subprocess_env

sys.path.insert(0, str(TESTS / "apps"))
import proc_jobs

pytestmark = pytest.mark.slow


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Run:
    """One `jobworker run` supervisor process."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"supervisor-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*JOBWORKER, "run", "proc_jobs", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.ps = psutil.Process(self.proc.pid)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        try:
            return [c for c in self.ps.children() if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def wait_children(self, count: int, timeout: float = 20) -> list[psutil.Process]:
        return wait_for(
            lambda: (kids := self.children()) and len(kids) == count and kids,
            timeout,
            f"{count} worker processes",
        )

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        for child in self.children():
            child.kill()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def env(tmp_path: Path, store: Store) -> dict[str, str]:
    extra = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}
    return subprocess_env(EXEC_LOG=str(tmp_path / "executions.log"), **extra, **store.env)


@pytest.fixture
def proc_app(store: Store) -> Iterator[App]:
    instance = store.app()  # the default registry, which proc_jobs fills
    yield instance
    instance.close()


@pytest.fixture
def start(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start_run(*args: str, extra_env: dict[str, str] | None = None) -> Run:
        run = Run(tmp_path, list(args), {**env, **(extra_env or {})})
        runs.append(run)
        return run

    yield start_run
    for run in runs:
        run.kill()


def executions(tmp_path: Path) -> list[tuple[str, int, int]]:
    path = tmp_path / "executions.log"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job_id, attempt, pid = line.split()
        rows.append((job_id, int(attempt), int(pid)))
    return rows


def settled(app: App, handles: list[Any]) -> list[JobDescriptor] | None:
    jobs = [app.client.get(h.job_id) for h in handles]
    if all(j is not None and j.status.is_terminal for j in jobs):
        return jobs  # type: ignore[return-value]
    return None


def test_jobs_run_retry_and_die_in_worker_processes(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    run = start("--concurrency", "2", "--parallelism", "4")
    fast = proc_jobs.noop.delay(i=1)
    flaky = proc_jobs.flaky.delay()
    failing = proc_jobs.always_fails.delay()
    result = proc_jobs.pid.delay()
    jobs = wait_for(lambda: settled(proc_app, [fast, flaky, failing, result]), 30, "jobs to end")
    statuses = [j.status for j in jobs]
    assert statuses == [
        JobStatus.SUCCEEDED,
        JobStatus.SUCCEEDED,
        JobStatus.DEAD,
        JobStatus.SUCCEEDED,
    ]
    assert jobs[1].result == "third time lucky" and jobs[1].attempt == 3
    assert jobs[2].error == "RuntimeError: this job always fails" and jobs[2].attempt == 2
    assert "Traceback" in (jobs[2].traceback or "")
    open_files = [f.path for f in run.ps.open_files()]
    assert not any("jobs.db" in path for path in open_files), "the supervisor holds no database"
    assert not [c for c in run.ps.net_connections() if c.raddr and c.raddr.port == 5432]
    worker_pids = {c.pid for c in run.children()}
    assert jobs[3].result in worker_pids and jobs[3].result != run.proc.pid
    assert run.stop() == 0


def test_a_killed_child_is_replaced_and_its_job_runs_again_at_once(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    run = start("--concurrency", "1", extra_env={"JOBWORKER_LEASE_DURATION": "300"})
    [child] = run.wait_children(1)
    marker = tmp_path / "marker"
    handle = proc_jobs.sleepy.delay(seconds=30, marker=str(marker), only_first=True)
    wait_for(marker.exists, 60, "the job to start")
    killed_at = time.monotonic()
    os.kill(int(marker.read_text()), signal.SIGKILL)
    job = wait_for(lambda: settled(proc_app, [handle]), 20, "the job to run again")[0]
    assert time.monotonic() - killed_at < 10, "not a lease duration (300 s)"
    assert job.status is JobStatus.SUCCEEDED and job.result == 2
    [replacement] = run.wait_children(1)
    assert replacement.pid != child.pid
    attempts = proc_app.client.attempts(handle.job_id)
    assert [a.outcome for a in attempts] == [AttemptOutcome.LOST, AttemptOutcome.SUCCEEDED]
    assert "worker process died (signal SIGKILL)" in (attempts[0].error or "")
    assert run.stop() == 0


def test_sigterm_lets_a_running_job_finish(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    run = start("--concurrency", "1", "--parallelism", "1", "--drain-timeout", "20")
    marker = tmp_path / "marker"
    handle = proc_jobs.sleepy.delay(seconds=1.5, marker=str(marker))
    wait_for(marker.exists, 60, "the job to start")
    queued_later = proc_jobs.noop.delay(i=2)
    assert run.stop() == 0
    assert proc_app.client.get(handle.job_id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    later = proc_app.client.get(queued_later.job_id)
    assert later is not None and later.status is JobStatus.QUEUED, "no new claims while draining"
    assert "draining 1 running job(s)" in run.log


def test_drain_timeout_releases_unfinished_jobs_without_spending_an_attempt(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    run = start("--concurrency", "1", "--drain-timeout", "1")
    marker = tmp_path / "marker"
    handle = proc_jobs.sleepy.delay(seconds=60, marker=str(marker))
    wait_for(marker.exists, 60, "the job to start")
    began = time.monotonic()
    assert run.stop() == 0
    assert time.monotonic() - began < 10
    job = proc_app.client.get(handle.job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.attempt == 0
    [attempt] = proc_app.client.attempts(handle.job_id)
    assert attempt.outcome is AttemptOutcome.RELEASED


def test_kill_9_of_the_supervisor_leaves_no_children(start: Callable[..., Run]) -> None:
    run = start("--concurrency", "3")
    children = run.wait_children(3)
    run.proc.kill()
    run.proc.wait(10)
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"orphans: {[p.pid for p in alive]}"


def test_an_import_error_exits_with_the_traceback_and_no_fork_loop(
    tmp_path: Path, env: dict[str, str]
) -> None:
    began = time.monotonic()
    result = subprocess.run(
        [*JOBWORKER, "run", "broken_at_import"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "this module fails while being imported" in result.stderr
    assert time.monotonic() - began < 15
    missing = subprocess.run(
        [*JOBWORKER, "run", "no_such_module_here"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no_such_module_here" in missing.stderr


def test_children_are_recycled_after_max_jobs(start: Callable[..., Run], proc_app: App) -> None:
    run = start("--concurrency", "1", "--parallelism", "1", "--max-jobs-per-child", "5")
    handles = proc_jobs.pid.delay_many([{"i": i} for i in range(20)])
    jobs = wait_for(lambda: settled(proc_app, handles), 60, "20 jobs")
    pids = [j.result for j in jobs]
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs)
    assert len(set(pids)) == 4
    assert max(collections.Counter(pids).values()) == 5
    assert run.stop() == 0


def test_children_are_recycled_when_they_use_too_much_memory(
    start: Callable[..., Run], proc_app: App
) -> None:
    run = start("--concurrency", "1", "--max-memory-per-child", "150")
    [child] = run.wait_children(1)
    handle = proc_jobs.hog.delay(megabytes=200)
    wait_for(lambda: settled(proc_app, [handle]), 30, "the hog job")
    wait_for(lambda: "recycling worker 0" in run.log, 20, "the recycle")
    # The retiring child drains while its replacement starts: wait for the old one to be gone.
    wait_for(
        lambda: (
            [c.pid for c in run.children()] and child.pid not in [c.pid for c in run.children()]
        ),
        20,
        "the replacement",
    )
    # A short-lived helper that releases the retired child's leases may still be about.
    wait_for(lambda: len(run.children()) == 1, 20, "one worker process")
    assert run.stop() == 0


def test_a_child_with_a_stuck_event_loop_is_killed_and_replaced(
    start: Callable[..., Run], proc_app: App
) -> None:
    run = start("--concurrency", "1", "--heartbeat-timeout", "2")
    handle = proc_jobs.blocker.delay(seconds=30)
    job = wait_for(lambda: settled(proc_app, [handle]), 40, "the blocked job to run again")[0]
    assert job.status is JobStatus.SUCCEEDED and job.result == 2
    assert "sent no heartbeat" in run.log
    assert run.stop() == 0


def test_process_titles_show_role_index_and_current_job(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    run = start("--concurrency", "2", "--drain-timeout", "0.5")
    run.wait_children(2)
    marker = tmp_path / "marker"
    handle = proc_jobs.sleepy.delay(seconds=5, marker=str(marker))
    wait_for(marker.exists, 60, "the job to start")
    busy_pid = int(marker.read_text())

    def title(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()

    assert title(run.proc.pid).startswith("jobworker: supervisor")
    expected = f"running proc.sleepy {handle.job_id}"
    wait_for(lambda: expected in title(busy_pid), 5, "the busy worker's title")
    assert "jobworker: worker " in title(busy_pid) and "[proc_jobs]" in title(busy_pid)
    idle = [c.pid for c in run.children() if c.pid != busy_pid]
    wait_for(lambda: title(idle[0]).endswith("idle"), 5, "the idle worker's title")
    assert run.stop() == 0


def test_every_job_runs_exactly_once_4_children_x_4_slots_x_5000_jobs(
    start: Callable[..., Run], proc_app: App, tmp_path: Path
) -> None:
    run = start("--concurrency", "4", "--parallelism", "4")

    def all_idle() -> bool:
        children = run.children()
        return len(children) == 4 and all(
            Path(f"/proc/{c.pid}/cmdline").read_bytes().rstrip(b"\0").endswith(b"idle")
            for c in children
        )

    # Every child is ready before the jobs arrive: otherwise the first ones up can drain all
    # 5000 before the last one claims any.
    wait_for(all_idle, 20, "four idle children")
    handles = proc_jobs.noop.delay_many([{"i": i} for i in range(5000)])

    def done() -> bool:
        counts = proc_app.client.counts()
        return counts[JobStatus.SUCCEEDED] == 5000

    wait_for(done, 150, "5000 jobs to succeed")
    assert run.stop() == 0
    ran = executions(tmp_path)
    per_job = collections.Counter(job_id for job_id, _, _ in ran)
    assert len(per_job) == 5000 and set(per_job.values()) == {1}
    assert set(per_job) == {str(h.job_id) for h in handles}
    assert len({pid for _, _, pid in ran}) == 4, "all four children took part"
    log = run.log
    assert "Traceback" not in log and "OperationalError" not in log
    assert " ERROR " not in log


def test_event_sequences_continue_above_a_killed_workers_live_events(
    start: Callable[..., Run], store: Store, tmp_path: Path
) -> None:
    """The dead attempt's chunks reached Redis only; the lost lease and the next attempt are
    numbered above them, so the job's stream has every event once, in order."""
    prefix = f"jw_test_{uuid.uuid4().hex[:10]}:"
    redis_env = {"JOBWORKER_REDIS_URL": REDIS_URL, "JOBWORKER_REDIS_PREFIX": prefix}
    run = start("--concurrency", "1", extra_env={"JOBWORKER_LEASE_DURATION": "300", **redis_env})
    app = store.app(redis_url=REDIS_URL, redis_prefix=prefix)
    try:
        marker = tmp_path / "marker"
        handle = proc_jobs.chatty_crash.delay(marker=str(marker))
        wait_for(marker.exists, 20, "the first attempt to stream")
        os.kill(int(marker.read_text()), signal.SIGKILL)
        assert handle.result(20) == 2

        async def everything() -> list[Any]:
            try:
                return [event async for event in app.client.stream_typed(handle.job_id)]
            finally:
                await app.aclose()

        events = asyncio.run(everything())
        seqs = [event.seq for event in events]
        assert seqs == sorted(set(seqs))
        chunks = [event.data.text for event in events if event.kind is EventKind.CHUNK]
        assert chunks == [f"a{a}-{n}" for a in (1, 2) for n in range(50)]
        changes = [
            (event.data.status.value, event.data.attempt)
            for event in events
            if event.kind is EventKind.LIFECYCLE
        ]
        assert changes == [("running", 1), ("queued", 1), ("running", 2), ("succeeded", 2)]
        lost = next(
            e
            for e in events
            if e.kind is EventKind.LIFECYCLE
            and e.data.attempt == 1
            and e.data.status is JobStatus.QUEUED
        )
        assert lost.seq == seqs[seqs.index(lost.seq) - 1] + 1 == 52
        assert seqs == list(range(1, len(seqs) + 1))
        assert run.stop() == 0
    finally:
        app.close()
        cleanup_redis(prefix)
