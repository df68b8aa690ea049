"""A pause holds from the moment it is committed, for a running worker on PostgreSQL: a job
enqueued right after the pause is not run, though the NOTIFY of its enqueue wakes the worker
long before the worker next reads the paused queues (`poll_interval`)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworker import App
from jobworker.models import JobStatus

from .conftest import TESTS
from .pg import drop_schema, migrate_schema, new_schema_name
from .test_postgres import env_for
from .test_processes import Run, executions, wait_for

sys.path.insert(0, str(TESTS / "apps"))
import proc_jobs


@pytest.fixture
def migrated(pg_database: str) -> Iterator[str]:
    name = new_schema_name()
    asyncio.run(migrate_schema(pg_database, name))
    yield name
    asyncio.run(drop_schema(pg_database, name))


def test_a_job_enqueued_just_after_a_pause_is_not_run(
    pg_database: str, migrated: str, tmp_path: Path
) -> None:
    # The worker reads the paused queues once at start, then every 30 s: it never sees this
    # pause; only the claim can.
    env = {**env_for(pg_database, migrated, tmp_path), "JOBWORKER_POLL_INTERVAL": "30"}
    app = App(pg_database, database_schema=migrated)
    run = Run(tmp_path, ["--concurrency", "1", "--parallelism", "4"], env)
    try:
        probe = proc_jobs.noop.delay(i=0)  # the worker is up, idle, and woken by NOTIFY
        wait_for(lambda: len(executions(tmp_path)) == 1, 30, "the probe job to run")
        app.client.pause_queue("default")
        held = proc_jobs.noop.delay(i=1)
        also_held = proc_jobs.noop.delay(i=2)
        time.sleep(2.0)  # the NOTIFY wakes the worker within milliseconds
        for handle in (held, also_held):
            record = app.client.get(handle.job_id)
            assert record is not None and record.status is JobStatus.QUEUED
        assert {row[0] for row in executions(tmp_path)} == {str(probe.job_id)}
        app.client.resume_queue("default")
        proc_jobs.noop.delay(i=3)  # its NOTIFY wakes the worker, whose claim finds all three
        wait_for(lambda: len(executions(tmp_path)) == 4, 30, "the held jobs to run")
        assert run.stop() == 0
    finally:
        run.kill()
        app.close()
