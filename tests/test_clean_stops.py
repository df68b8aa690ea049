"""Stopping a real `jobworker run` when things are wrong: the database is down, worker processes
die as they start, a memory limit no worker process can meet."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from .conftest import FAST, TESTS, subprocess_env
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
