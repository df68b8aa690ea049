"""Peer benchmark: Huey's enqueue rate and drain rate on its SQLite storage (SqliteHuey).

Run with the peers' venv (`bash benchmarks/peers/setup.sh` creates it), never the project's:

    benchmarks/.venv-peers/bin/python benchmarks/peers/huey_bench.py \
        --jobs 20000 --workers 2 [--json]

Each run uses a fresh database file in a temporary directory, removed at the end. The Huey
application is `benchmarks/peers/huey_tasks.py` (SqliteHuey with its defaults, a no-op task).

What it measures, measured as `benchmarks/throughput.py --backend sqlite` measures jobworker:

1. enqueue: `--jobs` calls of `noop(i)` from this process, one at a time (Huey has no batch
   enqueue: each call is one INSERT in its own transaction);
2. drain: Huey's consumer is started as `huey_consumer huey_tasks.huey -w N -k process -q`
   (N worker processes; `-q` logs at WARNING, as the jobworker drain runs with
   `--log-level WARNING`), then the queue is polled every 50 ms until it is empty. SqliteHuey
   deletes a task's row when a worker takes it and writes nothing when a task returns None, so
   "done" is "taken" (a no-op finishes microseconds later). Two rates: steady state (tasks taken
   between the first poll that saw progress and the poll that saw the queue empty, over that
   interval) and including start-up (all tasks over the time from starting the consumer).
   The consumer is then stopped with SIGINT (Huey's graceful shutdown).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from figures import progress, rate

HERE = Path(__file__).resolve().parent
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 30.0


class BenchmarkError(Exception):
    """The benchmark could not complete (the consumer died, a timeout)."""


@dataclass
class Results:
    version: str
    jobs: int
    workers: int
    enqueue_per_s: float
    startup_s: float  # consumer start -> first poll that saw a task taken
    steady_s: float  # first poll that saw progress -> poll that saw the queue empty
    total_s: float  # consumer start -> poll that saw the queue empty
    steady_jobs: int
    steady_per_s: float | None
    total_per_s: float
    exit_code: int | None


def enqueue(jobs: int) -> float:
    """Enqueue `jobs` no-op tasks one at a time; tasks/s."""
    sys.path.insert(0, str(HERE))
    import huey_tasks

    huey_tasks.huey.storage.queue_size()  # open the storage and create the tables untimed
    started = time.perf_counter()
    for i in range(jobs):
        huey_tasks.noop(i)
    elapsed = time.perf_counter() - started
    queued = huey_tasks.huey.pending_count()
    if queued != jobs:
        raise BenchmarkError(f"expected {jobs} queued tasks, found {queued}")
    huey_tasks.huey.storage.close()
    return rate(jobs, elapsed)


def queued(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(id) FROM task WHERE queue = 'bench'").fetchone()[0])


def drain(db: Path, jobs: int, workers: int, timeout: float) -> Results:
    env = dict(os.environ, HUEY_BENCH_DB=str(db))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "huey.bin.huey_consumer",
        "huey_tasks.huey",
        "-w",
        str(workers),
        "-k",
        "process",
        "-q",
    ]
    conn = sqlite3.connect(db, timeout=30)
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            first: tuple[float, int] | None = None
            while True:
                now = time.perf_counter()
                done = jobs - queued(conn)
                if done and first is None:
                    first = (now, done)
                if done >= jobs:
                    break
                if process.poll() is not None:
                    log.seek(0)
                    raise BenchmarkError(
                        f"the consumer exited early ({process.returncode}) with {done}/{jobs}"
                        f" taken:\n{log.read().decode(errors='replace')[-3000:]}"
                    )
                if now - started > timeout:
                    raise BenchmarkError(f"timed out after {timeout:.0f}s with {done}/{jobs}")
                time.sleep(POLL_INTERVAL)
        finally:
            conn.close()
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    assert first is not None
    steady_jobs = jobs - first[1]
    steady_s = now - first[0]
    return Results(
        version=importlib.metadata.version("huey"),
        jobs=jobs,
        workers=workers,
        enqueue_per_s=0.0,
        startup_s=first[0] - started,
        steady_s=steady_s,
        total_s=now - started,
        steady_jobs=steady_jobs,
        steady_per_s=rate(steady_jobs, steady_s) if steady_jobs else None,
        total_per_s=rate(jobs, now - started),
        exit_code=process.returncode,
    )


def run_benchmark(args: argparse.Namespace) -> Results:
    with tempfile.TemporaryDirectory(prefix="huey-bench-") as tmp:
        db = Path(tmp) / "huey.db"
        os.environ["HUEY_BENCH_DB"] = str(db)
        progress(f"enqueue: {args.jobs:,} x noop(i) ...")
        enqueue_rate = enqueue(args.jobs)
        progress(f"drain: huey_consumer -w {args.workers} -k process ...")
        results = drain(db, args.jobs, args.workers, args.timeout)
        results.enqueue_per_s = enqueue_rate
        return results


def format_report(r: Results) -> str:
    steady = f"{r.steady_per_s:,.0f} jobs/s" if r.steady_per_s is not None else "n/a"
    rows = [
        ("Huey", r.version, "SqliteHuey, defaults"),
        ("jobs", f"{r.jobs:,}", ""),
        ("workers", str(r.workers), "huey_consumer -k process"),
        ("enqueue", f"{r.enqueue_per_s:,.0f} jobs/s", "noop(i), one at a time"),
        ("start-up", f"{r.startup_s:.2f} s", "consumer start -> first task taken"),
        ("drain (steady state)", steady, f"{r.steady_jobs:,} tasks in {r.steady_s:.2f} s"),
        ("drain (incl. start-up)", f"{r.total_per_s:,.0f} jobs/s", ""),
        ("exit code", str(r.exit_code), "after SIGINT"),
    ]
    width = max(len(label) for label, _, _ in rows)
    vwidth = max(len(value) for _, value, _ in rows)
    lines = ["Huey peer benchmark"]
    for label, value, note in rows:
        line = f"  {label:<{width}}  {value:>{vwidth}}"
        lines.append(f"{line}   ({note})" if note else line)
    return "\n".join(lines)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure Huey's (SqliteHuey) enqueue and drain rates.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=positive_int, default=20_000, help="tasks to drain")
    parser.add_argument("--workers", type=positive_int, default=2, help="worker processes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the drain")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run_benchmark(args)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(results), indent=2) if args.json else format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
