"""The OpenTelemetry meter `jobworker` in a real worker process: the job module sets the SDK's
MeterProvider with an in-memory reader (tests/apps/metrics_jobs.py), real jobs run under
`jobworker run`, and a last job hands back what the reader holds in that process: the counters,
the histograms and the three queue gauges."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobworker import App, JobStatus, ScheduleOptions
from jobworker.metrics.figures import BATCH_BOUNDS, DURATION_BOUNDS

from .conftest import FAST, TESTS, Store, subprocess_env
from .test_processes import wait_for
from .test_worker_registry_processes import Group

sys.path.insert(0, str(TESTS / "apps"))
import metrics_jobs

pytestmark = pytest.mark.slow

SYSTEM = {"messaging.system": "jobworker"}


@pytest.fixture
def app(store: Store) -> Iterator[App]:
    instance = store.app()  # the default registry, which metrics_jobs fills
    yield instance
    instance.close()


def points(collected: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [point for point in collected if point["name"] == name]


def one(collected: list[dict[str, Any]], name: str, **attributes: str) -> dict[str, Any]:
    found = [p for p in points(collected, name) if p["attributes"] == attributes]
    assert len(found) == 1, (name, attributes, points(collected, name))
    return found[0]


def test_the_meter_sees_attempts_claims_events_and_queue_gauges(
    store: Store, app: App, tmp_path: Path
) -> None:
    env = subprocess_env(
        **{f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()},
        JOBWORKER_HEARTBEAT_TIMEOUT="2",  # the queue gauges are read again every 0.5 s
        METRICS_OTEL="1",
        **store.env,
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    metrics_jobs.ok.delay(i=99, options=ScheduleOptions(run_at=later))
    for _ in range(2):  # a queue this worker does not serve: they stay queued
        metrics_jobs.ok.delay(options=ScheduleOptions(queue="elsewhere"))
    run = Group(tmp_path, ["run", "metrics_jobs", "-c", "1", "-p", "4"], env)
    try:
        handles = [metrics_jobs.ok.delay(i=i) for i in range(3)]
        failing = metrics_jobs.fails.delay()
        assert [h.result(timeout=30) for h in handles] == [0, 1, 2]
        wait_for(lambda: failing.get().status is JobStatus.DEAD, 30, "the failing job to die")
        collected = metrics_jobs.collect.delay(settle=1.5).result(timeout=30)
    finally:
        assert run.stop() == 0, run.log
        run.close()

    ok = {**SYSTEM, "messaging.destination.name": "default", "jobworker.job.type": "metrics.ok"}
    bad = {**ok, "jobworker.job.type": "metrics.fails"}
    attempts = {
        (p["attributes"]["jobworker.job.type"], p["attributes"]["jobworker.outcome"]): p["value"]
        for p in points(collected, "jobs.attempts")
    }
    assert attempts == {
        ("metrics.ok", "succeeded"): 3,
        ("metrics.fails", "failed"): 1,
        ("metrics.fails", "dead"): 1,
    }
    assert one(collected, "jobs.attempts", **ok, **{"jobworker.outcome": "succeeded"})["unit"] == (
        "{attempt}"
    )

    duration = one(
        collected, "messaging.process.duration", **ok, **{"jobworker.outcome": "succeeded"}
    )
    assert duration["unit"] == "s" and duration["count"] == 3
    assert duration["bounds"] == list(DURATION_BOUNDS)
    assert 0 < duration["sum"] < 30
    dead = one(collected, "messaging.process.duration", **bad, **{"jobworker.outcome": "dead"})
    assert dead["count"] == 1

    # 3 + 2 attempts ended, and the collecting job itself was claimed.
    assert one(collected, "messaging.client.consumed.messages", **SYSTEM)["value"] == 6
    batches = one(collected, "jobs.claim.batch_size", **SYSTEM)
    assert batches["sum"] == 6 and batches["bounds"] == [float(b) for b in BATCH_BOUNDS]
    assert 1 <= batches["count"] <= 6

    kinds = {
        p["attributes"]["jobworker.event.kind"]: p["value"]
        for p in points(collected, "jobs.events.published")
    }
    assert kinds == {"chunk": 3, "metric": 3}, "one chunk and one metric per ok job"

    def gauge(name: str) -> dict[str, int]:
        return {
            p["attributes"]["messaging.destination.name"]: p["value"]
            for p in points(collected, name)
        }

    assert gauge("jobs.queue_depth") == {"default": 0, "elsewhere": 2}
    assert gauge("jobs.scheduled_pending") == {"default": 1, "elsewhere": 0}
    assert gauge("jobs.running_now") == {"default": 1, "elsewhere": 0}, "the collecting job"
