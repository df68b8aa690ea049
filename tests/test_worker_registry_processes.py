"""The worker registry with real `jobworker run` and `jobworker beat` processes: while they run,
`workers` lists the supervisor and each worker process; a clean stop removes their rows at once;
rows of a process group killed with SIGKILL stay until their heartbeat is stale, then the
janitor (run by beat) marks them gone.

The registry's times come from `heartbeat_timeout` (set to 2 s here: rows refreshed every
0.5 s, stale after 2 s); `--heartbeat-timeout 60` keeps the supervisor from killing a worker
process that a busy machine holds up for a moment."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from jobworker import App, WorkerInfo, WorkerRole

from .conftest import FAST, JOBWORKER, Store, subprocess_env
from .test_processes import proc_jobs, wait_for

pytestmark = pytest.mark.slow

REGISTRY_ENV = {"JOBWORKER_HEARTBEAT_TIMEOUT": "2"}


class Group:
    """A `jobworker` command in a process group of its own (a session), so that one SIGKILL
    ends the supervisor and its worker processes at the same instant."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"{args[0]}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*JOBWORKER, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        try:
            kids = psutil.Process(self.proc.pid).children()
            return sorted(c.pid for c in kids if c.status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_group(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill_group()
        self._log.close()


@pytest.fixture
def launch(tmp_path: Path, store: Store) -> Iterator[Callable[..., Group]]:
    env = subprocess_env(
        **{f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}, **REGISTRY_ENV, **store.env
    )
    groups: list[Group] = []

    def start(*args: str) -> Group:
        group = Group(tmp_path, list(args), env)
        groups.append(group)
        return group

    yield start
    for group in groups:
        group.close()


@pytest.fixture
def app(store: Store) -> Iterator[App]:
    instance = store.app()  # the default registry, which proc_jobs fills
    yield instance
    instance.close()


def listed(app: App) -> list[WorkerInfo]:
    return app.client.workers()


def test_running_processes_are_listed_and_a_clean_stop_removes_them_at_once(
    launch: Callable[..., Group], app: App, tmp_path: Path
) -> None:
    run = launch("run", "proc_jobs", "-c", "2", "-p", "3", "--heartbeat-timeout", "60",
                 "--drain-timeout", "1")  # fmt: skip
    wait_for(lambda: len(run.children()) == 2, 20, "two worker processes")
    proc_jobs.sleepy.delay(seconds=60, marker=str(tmp_path / "marker"))

    def three_rows_one_running() -> list[WorkerInfo] | None:
        rows = listed(app)
        supervisors = [r for r in rows if r.role is WorkerRole.SUPERVISOR]
        if len(rows) == 3 and supervisors and supervisors[0].running == 1:
            return rows
        return None

    rows = wait_for(three_rows_one_running, 20, "the supervisor and two workers, one job running")
    [supervisor] = [r for r in rows if r.role is WorkerRole.SUPERVISOR]
    workers = [r for r in rows if r.role is WorkerRole.WORKER]
    assert (supervisor.pid, supervisor.slots, supervisor.module) == (run.proc.pid, 6, "proc_jobs")
    assert supervisor.parent is None and "default" in supervisor.queues
    assert sorted(w.pid for w in workers) == run.children()
    for worker in workers:
        assert (worker.slots, worker.module, worker.parent) == (3, "proc_jobs", supervisor.id)
        assert worker.queues == supervisor.queues and not worker.gone
        assert worker.host == supervisor.host
    assert sorted(w.running for w in workers) == [0, 1]
    [busy] = [w for w in workers if w.running]
    assert busy.pid == int((tmp_path / "marker").read_text()), "the worker that runs the job"
    # Each worker process wrote its module's jobs to the job-type catalogue when it started.
    types = app.client.job_types()
    assert proc_jobs.sleepy.name in {t.name for t in types}
    assert {t.seen_by for t in types} <= {w.id for w in workers}

    # Past the stale time, every row is still live: each process refreshes its own, and the
    # worker processes refresh the supervisor's (its loop does no I/O).
    time.sleep(3)
    assert [(r.id, r.gone) for r in listed(app)] == [(r.id, False) for r in rows]
    first = {r.id: r.last_heartbeat for r in rows}
    assert all(r.last_heartbeat > first[r.id] for r in listed(app))

    assert run.stop() == 0, run.log
    assert listed(app) == [], run.log


def test_rows_of_a_killed_group_stay_until_the_janitor_marks_them_gone(
    launch: Callable[..., Group], app: App
) -> None:
    run = launch("run", "proc_jobs", "-c", "2", "-p", "2", "--heartbeat-timeout", "60")
    rows = wait_for(lambda: len(r := listed(app)) == 3 and r, 20, "three rows")
    run.kill_group()
    killed_at = time.monotonic()
    assert [(r.id, r.gone) for r in listed(app)] == [(r.id, False) for r in rows], (
        "a killed process removes nothing"
    )

    beat = launch("beat", "proc_jobs")

    def marked() -> list[WorkerInfo] | None:
        now = listed(app)
        return now if [r.gone for r in now if r.role is not WorkerRole.BEAT] == [True] * 3 else None

    after = wait_for(marked, 20, "the killed processes' rows marked gone")
    # Stale 2 s after a row's last heartbeat, which came at most 0.5 s before the kill.
    assert time.monotonic() - killed_at >= 1.5, "marked gone only once stale (2 s)"
    assert {r.id for r in after if r.gone} == {r.id for r in rows}
    [beat_row] = [r for r in after if r.role is WorkerRole.BEAT]
    assert (beat_row.pid, beat_row.module, beat_row.gone) == (beat.proc.pid, "proc_jobs", False)
    assert [r.id for r in app.client.workers(include_gone=False)] == [beat_row.id]

    assert beat.stop() == 0, beat.log
    assert {r.id for r in listed(app)} == {r.id for r in rows}, (
        "beat's row goes at once; the gone rows stay until the janitor purges them"
    )
