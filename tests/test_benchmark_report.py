"""The throughput benchmark's pure parts: peer commands, medians, ratios and the peers table.

The benchmark itself (workers, peers, databases) is not run here: it is too slow for the suite.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("throughput_under_test", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def results(bench: ModuleType, peers: dict[str, Any]) -> Any:
    drain = bench.DrainFigures(
        startup_s=1.0,
        steady_s=1.0,
        total_s=2.0,
        steady_jobs=1000,
        steady_per_s=1000.0,
        total_per_s=500.0,
        supervisor_exit_code=0,
    )
    return bench.Results(
        backend="postgres",
        jobs=1000,
        concurrency=2,
        parallelism=10,
        handler="bench.anoop",
        single=10,
        single_sync_per_s=1.0,
        single_async_per_s=1.0,
        batch_per_s=6000.0,
        drain=drain,
        latency=bench.LatencyFigures(jobs=10, p50_ms=2.0, p99_ms=4.0, max_ms=5.0),
        peers=peers,
    )


def peer(batch: float, drain: Any, p50: float = 1.0, p99: float = 2.0) -> dict[str, Any]:
    return {
        "version": "1.0",
        "batch_enqueue": batch,
        "drain": drain,
        "latency_ms": {"p50": p50, "p99": p99},
    }


def test_ratio_is_ours_over_theirs_and_none_without_both(bench: ModuleType) -> None:
    assert bench.ratio(3000.0, 1500.0) == 2.0
    assert bench.ratio(None, 1500.0) is None
    assert bench.ratio(3000.0, None) is None
    assert bench.ratio(3000.0, 0.0) is None


def test_a_peers_drain_is_its_best_configuration_or_its_only_one(bench: ModuleType) -> None:
    pgqueuer = {"drain": {"batch_100": {"steady": 900.0}, "defaults": {"steady": 400.0}}}
    assert bench.drain_steady(pgqueuer) == 900.0
    assert bench.drain_steady({"drain": {"steady": 250.0, "with_startup": 200.0}}) == 250.0
    assert bench.drain_steady({"drain": {"steady": None, "with_startup": 200.0}}) == 0.0


def test_medians_are_taken_figure_by_figure(bench: ModuleType) -> None:
    runs = [peer(b, {"steady": d}) for b, d in ((1.0, 30.0), (5.0, 10.0), (3.0, 20.0))]
    merged = bench.median_figures(runs)
    assert merged["batch_enqueue"] == 3.0
    assert merged["drain"] == {"steady": 20.0}
    assert merged["version"] == "1.0"


def test_each_peer_runs_from_its_venv_with_the_same_processes(bench: ModuleType) -> None:
    url = "postgresql://h/postgres"
    ceiling = bench.peer_command("ceiling", url, 100, 2, 10)
    assert ceiling[0] == sys.executable
    assert ceiling[ceiling.index("--parallelism") + 1] == "10"
    assert ceiling[ceiling.index("--concurrency") + 1] == "2"
    celery = bench.peer_command("celery", url, 100, 2, 10)
    assert celery[0] == str(bench.PEERS_PYTHON)
    assert "--dsn" not in celery and celery[celery.index("--concurrency") + 1] == "2"
    procrastinate = bench.peer_command("procrastinate", url, 100, 2, 10)
    assert procrastinate[procrastinate.index("--parallelism") + 1] == "10"


def test_the_table_gives_every_system_and_every_ratio(bench: ModuleType) -> None:
    peers = {
        "ceiling": peer(12000.0, {"steady": 2000.0, "with_startup": 1500.0}),
        "pgqueuer": peer(
            3000.0, {"batch_100": {"steady": 500.0}, "defaults": {"steady": None}}, 3.0, 6.0
        ),
        "celery": {"error": "exit code 1: no Redis"},
    }
    peers["ceiling"]["drain_runs"] = [1900.0, 2000.0, 2100.0]
    lines = bench.format_peers(results(bench, peers))
    text = "\n".join(lines)
    jobworker_row = next(line for line in lines if line.strip().startswith("jobworker"))
    assert "6,000" in jobworker_row and "1,000" in jobworker_row
    assert "2.0" in jobworker_row and "4.0" in jobworker_row
    ceiling_row = next(line for line in lines if "ceiling" in line and "1.0" in line)
    assert ceiling_row.split()[-2:] == ["0.50x", "0.50x"]
    pgqueuer_row = next(line for line in lines if line.strip().startswith("PgQueuer 1.0"))
    assert pgqueuer_row.split()[-2:] == ["2.00x", "2.00x"]
    assert "3.0" in pgqueuer_row and "6.0" in pgqueuer_row
    assert "batch_100 500, defaults n/a" in text
    assert "drain runs: 1,900, 2,000, 2,100" in text
    assert lines[-1] == "  Celery (Redis): not measured (exit code 1: no Redis)"


def test_no_peers_no_table(bench: ModuleType) -> None:
    assert bench.format_peers(results(bench, {})) == []


def test_a_peer_that_cannot_run_is_one_error_and_not_run_again(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bench, "PEERS_PYTHON", tmp_path / "missing" / "python")
    monkeypatch.setattr(bench, "PEER_SCRIPTS", {"celery": ("celery_bench.py", True)})
    runs = bench.PeerRuns("postgresql://h/postgres", 10, 2, 10)
    runs.run_round(1, 2)
    runs.run_round(2, 2)
    assert runs.summary() == {
        "celery": {"error": "not installed: run `bash benchmarks/peers/setup.sh`"}
    }
