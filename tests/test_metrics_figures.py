"""A process's figures: the histograms' buckets (a value on a bound is in that bound's bucket,
as Prometheus's `le`), snapshots that are copies and round-trip through their JSON, the
exposition of rows on a real SQLite registry (a damaged row is skipped, the rest served), and a
worker process without OpenTelemetry: nothing of it imported, no gauge timer."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobworker import App
from jobworker.metrics.exposition import render
from jobworker.metrics.figures import DURATION_BOUNDS, Figures, decode, encode
from jobworker.models import WorkerRole
from jobworker.registration import process_row

from .conftest import ROOT


def test_buckets_hold_values_up_to_and_including_their_bound() -> None:
    figures = Figures()
    for seconds in (0.005, 0.0051, 300.0, 301.0, 0.0):
        figures.attempt_ended("t", "q", "succeeded", seconds)
    [series] = figures.snapshot().attempts
    counts = series.duration.counts
    assert len(counts) == len(DURATION_BOUNDS) + 1
    assert counts[0] == 2, "0 and 0.005: le=0.005"
    assert counts[1] == 1, "0.0051: le=0.01"
    assert counts[len(DURATION_BOUNDS) - 1] == 1, "300: le=300"
    assert counts[-1] == 1, "301: +Inf only"
    assert series.duration.sum == pytest.approx(601.0101)


def test_a_snapshot_is_a_copy_and_round_trips_through_json() -> None:
    figures = Figures()
    assert not figures.recorded
    figures.attempt_ended("t", "q", "failed", 0.2)
    figures.attempt_lost("t", "q")
    figures.claimed(4)
    figures.published({"chunk": 2})
    snapshot = figures.snapshot()
    figures.attempt_ended("t", "q", "failed", 0.2)
    figures.claimed(1)
    figures.published({"chunk": 1, "log": 1})
    assert snapshot.attempts[0].outcomes == {"failed": 1, "lost": 1}
    assert (snapshot.claimed, snapshot.events) == (4, {"chunk": 2})
    assert decode(encode(snapshot)) == snapshot
    assert decode(figures.encoded()).claimed == 5
    assert len(figures.encoded()) < 400, "compact: it is written at every refresh"


async def test_a_damaged_row_is_skipped_and_the_others_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        storage = await app.storage()
        figures = Figures()
        figures.attempt_ended("t.a", "default", "succeeded", 0.03)
        for worker_id, text in (("good", figures.encoded()), ("bad", "{not json")):
            row = process_row(storage, id=worker_id, role=WorkerRole.WORKER, module="m")
            await storage.workers.register(row)
            assert await storage.workers.heartbeat(worker_id, 0, text)
        with caplog.at_level(logging.WARNING, "jobworker.metrics"):
            text = (await render(storage)).decode()
        assert "skipping the figures of bad" in caplog.text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        [sample] = families["jobworker_attempts"].samples
        assert sample.labels == {
            "job_type": "t.a",
            "queue": "default",
            "outcome": "succeeded",
            "worker": "good",
        }
        assert families["jobworker_workers"].samples[0].value == 2, "both rows are live"
    finally:
        await app.aclose()


WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
import asyncio
from jobworker import App, job
from jobworker.metrics import otel
from jobworker.testing import drain

@job(name="t.noop")
async def noop(ctx) -> int:
    return 1

app = App(sys.argv[1])
noop.delay()
result = drain(app)
assert result.succeeded == 1, result
assert otel.meter_sink() is None
loaded = sorted(m for m, module in sys.modules.items() if m.startswith("opentelemetry") and module)
assert not loaded, loaded
print("ok")
"""


def test_without_opentelemetry_nothing_of_it_is_imported(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_OTEL, f"sqlite:///{tmp_path / 'jobs.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
