"""Stopping a real `jobworker run` when things are wrong: the database is down, worker processes
die as they start, a memory limit no worker process can meet."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .conftest import FAST, JOBWORKER, TESTS, subprocess_env
from .pg import migrate_schema
from .test_postgres import PrivatePostgres
from .test_processes import Run, wait_for

sys.path.insert(0, str(TESTS / "apps"))

pytestmark = pytest.mark.slow


def _fast_env(url: str, **extra: str) -> dict[str, str]:
    settings = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}
    return subprocess_env(**settings, JOBWORKER_DATABASE_URL=url, **extra)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
def test_idle_workers_stop_cleanly_on_sigterm_while_postgres_is_down(tmp_path: Path) -> None:
    """SIGTERM to a supervisor whose idle workers cannot reach a stopped PostgreSQL: every
    process exits 0, and nothing is logged as an error or with a traceback."""
    server = PrivatePostgres()
    run = None
    try:
        server.start()
        asyncio.run(migrate_schema(server.url, "jobworker"))
        run = Run(tmp_path, ["--concurrency", "2"], _fast_env(server.url))
        run.wait_children(2)
        wait_for(lambda: run.log.count("started: queues=") == 2, 20, "both workers to start")

        server.stop()
        wait_for(lambda: run.log.count("claiming jobs failed") == 2, 20, "both to see the outage")
        stopped_at = time.monotonic()
        assert run.stop(60) == 0
        print(f"stopped in {time.monotonic() - stopped_at:.1f}s with exit code 0")
        log = run.log
        assert "Traceback" not in log, log
        assert " ERROR " not in log, log
        assert "died" not in log, log
        assert log.count("exited") == 2 and "all workers stopped" in log, log
    finally:
        if run is not None:
            run.kill()
        server.remove()


class ModuleRun(Run):
    """`jobworker run MODULE` (Run serves proc_jobs)."""

    def __init__(self, tmp_path: Path, module: str, args: list[str], env: dict[str, str]) -> None:
        self.log_path = tmp_path / f"supervisor-{module}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*JOBWORKER, "run", module, *args], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self.ps = psutil.Process(self.proc.pid)


def _sqlite_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return _fast_env(f"sqlite:///{tmp_path / 'jobs.db'}", **extra)


def test_a_supervisor_whose_workers_keep_dying_as_they_start_halts(tmp_path: Path) -> None:
    """Every forked worker exits at once: after --max-start-failures deaths in a row the
    supervisor stops with exit code 1 and says why, instead of backing off forever."""
    env = _sqlite_env(tmp_path, FORK_HOOK="exit")
    run = ModuleRun(tmp_path, "fork_hook_jobs", ["-c", "1", "--max-start-failures", "3"], env)
    try:
        code = run.proc.wait(60)
        log = run.log
        print(log)
        assert code == 1, log
        assert log.count("died (exit code 3)") == 3, log
        assert "worker processes keep dying as they start: 3 in a row" in log, log
        assert "Traceback" not in log, log
    finally:
        run.kill()


def test_a_memory_limit_below_the_supervisors_own_memory_is_refused_at_start(
    tmp_path: Path,
) -> None:
    """Every forked worker starts with the supervisor's own memory: a limit below it would
    recycle every worker as soon as it starts, so the command refuses it before forking."""
    env = _sqlite_env(tmp_path)
    run = ModuleRun(tmp_path, "fork_hook_jobs", ["-c", "1", "--max-memory-per-child", "2"], env)
    try:
        code = run.proc.wait(30)
        log = run.log
        print(log)
        assert code == 2, log
        assert "--max-memory-per-child 2 MB is below" in log, log
        assert "started worker" not in log, log
    finally:
        run.kill()


def test_a_memory_limit_below_a_fresh_workers_memory_is_refused_when_it_starts(
    tmp_path: Path,
) -> None:
    """Workers that take 100 MB as they start, under a 90 MB limit the supervisor itself is
    well below: the first worker's memory when it reports in refuses the limit, exit code 2,
    rather than a loop of recycled workers."""
    env = _sqlite_env(tmp_path, FORK_HOOK="hoard:100")
    run = ModuleRun(tmp_path, "fork_hook_jobs", ["-c", "1", "--max-memory-per-child", "90"], env)
    try:
        code = run.proc.wait(30)
        log = run.log
        print(log)
        assert code == 2, log
        assert "--max-memory-per-child 90 MB is below a fresh worker process's memory" in log, log
        assert "recycling worker" not in log, log
    finally:
        run.kill()
