"""`/metrics` on the web tail after real jobs ran in real worker processes: it parses with
Prometheus's own text parser and holds the right numbers (attempts by outcome, durations,
claims, events, the queue gauges, live workers), each process's series labelled with its row
id; a clean stop ends that process's series. `jobworker web --no-metrics` leaves it out."""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobworker import App, JobStatus, ScheduleOptions, WorkerRole
from jobworker.metrics.exposition import CONTENT_TYPE, render
from jobworker.web.config import WebConfig
from jobworker.web.server import WebTarget

from ..conftest import FAST, TESTS, Store, subprocess_env
from ..test_worker_registry_processes import Group
from .server import serving
from .test_web_command import WebProcess

sys.path.insert(0, str(TESTS / "apps"))
import metrics_jobs

pytestmark = pytest.mark.slow

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    """Every sample by name, then by its labels (sorted pairs)."""
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the series whose labels include `labels` (over workers)."""
    return sum(
        value
        for key, value in samples.get(name, {}).items()
        if all((k, v) in key for k, v in labels.items())
    )


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for key in samples.get(name, {}) if label in dict(key)}


@pytest.fixture
async def app(store: Store) -> AsyncIterator[App]:
    instance = store.app()  # the default registry, which metrics_jobs fills
    yield instance
    await instance.aclose()


@pytest.fixture
def workers(store: Store, tmp_path: Path) -> Iterator[Group]:
    env = subprocess_env(
        **{f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()},
        JOBWORKER_HEARTBEAT_TIMEOUT="2",  # registry rows (and figures) refreshed every 0.5 s
        **store.env,
    )
    group = Group(tmp_path, ["run", "metrics_jobs", "-c", "2", "-p", "2"], env)
    yield group
    group.close()


async def scrape_until(client: httpx.AsyncClient, done: object, timeout: float = 30) -> Samples:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == CONTENT_TYPE
        assert response.headers["cache-control"] == "no-store"
        samples = parse(response.text)
        if done(samples):  # type: ignore[operator]
            return samples
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/metrics never showed what was expected:\n{response.text}")
        await asyncio.sleep(0.1)


async def test_metrics_hold_the_figures_of_real_jobs_per_worker_process(
    store: Store, app: App, workers: Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBWORKER_DATABASE_SCHEMA", store.schema)  # as `jobworker web` reads it
    later = datetime.now(UTC) + timedelta(hours=1)
    await metrics_jobs.ok.adelay(i=99, options=ScheduleOptions(run_at=later))
    for _ in range(2):  # a queue these workers do not serve: they stay queued
        await metrics_jobs.ok.adelay(options=ScheduleOptions(queue="elsewhere"))
    handles = [await metrics_jobs.ok.adelay(i=i) for i in range(3)]
    failing = await metrics_jobs.fails.adelay()
    assert [await h.aresult(timeout=30) for h in handles] == [0, 1, 2]
    for _ in range(300):
        if (await failing.aget()).status is JobStatus.DEAD:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)

    _, web = WebTarget(module="metrics_jobs", database_url=store.url).load(
        WebConfig.load({"JOBWORKER_WEB_METRICS": "true"})
    )
    async with serving(web) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:

        def settled(samples: Samples) -> bool:
            return (
                total(samples, "jobworker_attempts_total", outcome="dead") == 1
                and total(samples, "jobworker_attempts_total", outcome="succeeded") == 3
            )

        samples = await scrape_until(client, settled)

    rows = await app.client.aworkers(include_gone=False)
    worker_ids = {row.id for row in rows if row.role is WorkerRole.WORKER}
    [supervisor] = [row for row in rows if row.role is WorkerRole.SUPERVISOR]
    assert len(worker_ids) == 2

    ok = {"job_type": "metrics.ok", "queue": "default"}
    assert total(samples, "jobworker_attempts_total", **ok, outcome="succeeded") == 3
    assert (
        total(samples, "jobworker_attempts_total", job_type="metrics.fails", outcome="failed") == 1
    )
    assert total(samples, "jobworker_attempts_total", job_type="metrics.fails", outcome="dead") == 1
    assert total(samples, "jobworker_attempts_total", outcome="lost") == 0
    assert total(samples, "jobworker_attempt_duration_seconds_count", **ok) == 3
    assert total(samples, "jobworker_attempt_duration_seconds_bucket", **ok, le="+Inf") == 3
    assert 0 < total(samples, "jobworker_attempt_duration_seconds_sum", **ok) < 30
    assert total(samples, "jobworker_claimed_jobs_total") == 5
    assert total(samples, "jobworker_claim_batch_size_sum") == 5
    assert total(samples, "jobworker_events_published_total", kind="chunk") == 3
    assert total(samples, "jobworker_events_published_total", kind="metric") == 3
    # Every process's series carries its registry row id, and only live workers have series
    # (a process that claimed nothing has none: one claim may take every job).
    claimers = label_values(samples, "jobworker_claimed_jobs_total", "worker")
    assert claimers and claimers <= worker_ids
    assert label_values(samples, "jobworker_attempts_total", "worker") <= worker_ids

    assert samples["jobworker_queue_depth"] == {
        (("queue", "default"),): 0,
        (("queue", "elsewhere"),): 2,
    }
    assert samples["jobworker_scheduled_pending"][(("queue", "default"),)] == 1
    assert samples["jobworker_running_now"][(("queue", "default"),)] == 0
    assert samples["jobworker_workers"] == {
        (("role", "supervisor"),): 1,
        (("role", "worker"),): 2,
    }

    # What a supervisor's health port serves: its own worker processes' figures only.
    storage = await app.storage()
    own = parse((await render(storage, parent=supervisor.id)).decode())
    assert label_values(own, "jobworker_claimed_jobs_total", "worker") == claimers
    assert total(own, "jobworker_attempts_total", outcome="succeeded") == 3
    other = parse((await render(storage, parent="another-supervisor")).decode())
    assert "jobworker_claimed_jobs_total" not in other
    assert other["jobworker_queue_depth"] == samples["jobworker_queue_depth"], "database-wide"

    # A clean stop removes the processes' rows: their series end (no counter goes down).
    assert workers.stop() == 0, workers.log
    gone = parse((await render(storage)).decode())
    assert "jobworker_attempts_total" not in gone and "jobworker_workers" not in gone


def test_no_metrics_leaves_the_route_out(store: Store, tmp_path: Path) -> None:
    env = subprocess_env(JOBWORKER_DATABASE_SCHEMA=store.schema)
    served = WebProcess(tmp_path, ["--database-url", store.url], env)
    off = WebProcess(tmp_path, ["--database-url", store.url, "--no-metrics"], env)
    try:
        for web in (served, off):
            web.wait_ready()
        response = served.get("/metrics")
        assert response.status_code == 200
        assert "jobworker_queue_depth" in {
            f.name for f in text_string_to_metric_families(response.text)
        }
        assert off.get("/metrics").status_code == 404
    finally:
        for web in (served, off):
            web.kill()
