"""Lost attempts are counted by the process that ends their lease: when a worker process is
killed, its supervisor's release helper ends its leases as lost and adds them to the figures of
the supervisor's registry row, which `/metrics` then serves under the supervisor's id (and the
supervisor's own health port, `render(parent=...)`, too)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobworker import App, WorkerRole
from jobworker.metrics.exposition import render

from .conftest import FAST, TESTS, Store, subprocess_env
from .test_processes import wait_for
from .test_worker_registry_processes import Group

sys.path.insert(0, str(TESTS / "apps"))
import metrics_jobs

pytestmark = pytest.mark.slow


@pytest.fixture
def app(store: Store) -> Iterator[App]:
    instance = store.app()
    yield instance
    instance.close()


async def _render_with(app: App, parent: str | None) -> bytes:
    storage = app.create_storage()
    await storage.open()
    try:
        return await render(storage, parent=parent)
    finally:
        await storage.close()


def test_a_killed_worker_process_s_attempt_is_counted_lost_by_its_supervisor(
    store: Store, app: App, tmp_path: Path
) -> None:
    env = subprocess_env(
        **{f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()},
        JOBWORKER_HEARTBEAT_TIMEOUT="2",
        **store.env,
    )
    run = Group(tmp_path, ["run", "metrics_jobs", "-c", "1", "-p", "2", "--heartbeat-timeout",
                           "60"], env)  # fmt: skip
    try:
        marker = tmp_path / "marker"
        metrics_jobs.sleepy.delay(marker=str(marker))
        pid = int(wait_for(lambda: marker.exists() and marker.read_text(), 30, "the job to start"))
        supervisor = wait_for(
            lambda: [r for r in app.client.workers(include_gone=False)
                     if r.role is WorkerRole.SUPERVISOR],
            30,
            "the supervisor's row",
        )[0]  # fmt: skip
        os.kill(pid, signal.SIGKILL)
        expected = {("metrics.sleepy", "default", supervisor.id): 1.0}
        wait_for(lambda: _render_lost(app) == expected, 30, "the lost attempt in /metrics")
        assert _render_lost(app, supervisor.id) == expected, "its own health port's too"
        assert _render_lost(app, "another") == {}
    finally:
        assert run.stop() == 0, run.log
        run.close()


def _render_lost(app: App, parent: str | None = None) -> dict[tuple[str, str, str], float]:
    text = asyncio.run(_render_with(app, parent)).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jobworker_attempts_total" and sample.labels["outcome"] == "lost":
                labels = sample.labels
                found[labels["job_type"], labels["queue"], labels["worker"]] = sample.value
    return found
