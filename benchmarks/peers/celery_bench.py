"""Peer benchmark: Celery with a Redis broker: enqueue rate, drain rate and idle latency.

Run with the peers' venv (`bash benchmarks/peers/setup.sh`):

    benchmarks/.venv-peers/bin/python benchmarks/peers/celery_bench.py \
        --redis redis://127.0.0.1:6379/0 --jobs 20000 --concurrency 2 [--latency-jobs 200] [--json]

Configuration: broker Redis, no result backend (`task_ignore_result`), a queue of its own
(`jw_bench_celery_<random>`, deleted at the end with its keys), and one worker started as
`celery -A celery_bench worker --pool prefork -c CONCURRENCY` (the prefork pool with as many
child processes as jobworker's worker processes); everything else Celery's defaults (prefetch
multiplier 4, acks on start).

1. enqueue: Celery has no batch enqueue; `task.apply_async()` in a loop on one producer
   (one connection, one Redis round trip per message): reported as its enqueue rate;
2. drain: the worker is started on the filled queue; each no-op task INCRs a Redis counter
   (Celery keeps no record of a success without a result backend; this is the one extra round
   trip per job, where jobworker and the PostgreSQL peers store the success in their tables),
   polled every 50 ms until it reaches `--jobs`; steady state and including start-up;
3. idle latency: with the worker idle, `--latency-jobs` tasks sent one at a time, ~20 ms apart,
   each carrying `time.time()` taken just before `apply_async`; the task computes
   `time.time() - sent` first thing and RPUSHes it to a Redis list the parent reads.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from figures import percentile, progress, rate

HERE = Path(__file__).resolve().parent
POLL_INTERVAL = 0.05
LATENCY_GAP = 0.02
QUEUE = os.environ.get("JW_BENCH_CELERY_QUEUE", "jw_bench_celery")
REDIS_URL = os.environ.get("JW_BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0")
DONE_KEY = f"{QUEUE}:done"
LATENCY_KEY = f"{QUEUE}:latency"

app = Celery("celery_bench", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(REDIS_URL)
    return _client


@app.task(name="bench.noop")
def noop(n: int) -> None:
    """Do nothing, then count the job done."""
    client().incr(DONE_KEY)


@app.task(name="bench.latency")
def latency(sent: float) -> None:
    elapsed = time.time() - sent
    client().rpush(LATENCY_KEY, elapsed)


class BenchmarkError(Exception):
    """The benchmark could not complete."""


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, JW_BENCH_CELERY_QUEUE=QUEUE, JW_BENCH_CELERY_REDIS=REDIS_URL)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "celery", "-A", "celery_bench", "worker"]
    command += ["--pool", "prefork", "-c", str(concurrency), "--loglevel", "WARNING"]
    command += ["-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    # Its banner goes to stderr: stdout carries this benchmark's JSON.
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr, cwd=HERE)


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # warm shutdown
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    r = client()
    progress(f"celery: enqueue of {args.jobs:,} jobs, apply_async on one producer ...")
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for i in range(args.jobs):
            noop.apply_async((i,), producer=producer)
    enqueue = rate(args.jobs, time.perf_counter() - started)
    progress(f"celery: drain, prefork -c {args.concurrency} ...")
    worker = start_worker(args.concurrency)
    try:
        started = time.perf_counter()
        first: tuple[float, int] | None = None
        while True:
            at = time.perf_counter()
            done = int(r.get(DONE_KEY) or 0)
            if done and first is None:
                first = (at, done)
            if done >= args.jobs:
                break
            if worker.poll() is not None:
                raise BenchmarkError(f"the celery worker exited early ({worker.returncode})")
            if at - started > args.timeout:
                raise BenchmarkError(f"timed out with {done}/{args.jobs} done")
            time.sleep(POLL_INTERVAL)
        assert first is not None
        steady_jobs = args.jobs - first[1]
        steady = rate(steady_jobs, at - first[0]) if steady_jobs else None
        with_startup = rate(args.jobs, at - started)

        progress(f"celery: idle latency, {args.latency_jobs} jobs ...")
        time.sleep(0.5)
        with app.producer_or_acquire() as producer:
            for _ in range(args.latency_jobs):
                latency.apply_async((time.time(),), producer=producer)
                time.sleep(LATENCY_GAP)
        deadline = time.monotonic() + 30
        while r.llen(LATENCY_KEY) < args.latency_jobs:
            if time.monotonic() > deadline:
                raise BenchmarkError("the latency jobs did not all run within 30 s")
            time.sleep(0.1)
        samples = [float(v) for v in r.lrange(LATENCY_KEY, 0, -1)]
    finally:
        stop_worker(worker)
    return {
        "version": importlib.metadata.version("celery"),
        "batch_enqueue": enqueue,
        "drain": {"steady": steady, "with_startup": with_startup},
        "latency_ms": {
            "p50": percentile(samples, 50) * 1000,
            "p99": percentile(samples, 99) * 1000,
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2, help="prefork pool processes")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "JW_BENCH_CELERY_QUEUE" not in os.environ:
        # Re-run with a queue of our own, so the worker (which imports this module) agrees.
        env = dict(os.environ)
        env["JW_BENCH_CELERY_QUEUE"] = f"jw_bench_celery_{secrets.token_hex(6)}"
        env["JW_BENCH_CELERY_REDIS"] = args.redis
        return subprocess.call([sys.executable, __file__, *sys.argv[1:]], env=env)
    try:
        figures = measure(args)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        r = client()
        r.delete(QUEUE, DONE_KEY, LATENCY_KEY)
        for key in r.scan_iter(f"*{QUEUE}*"):  # with kombu's _kombu.binding.* keys
            r.delete(key)
    print(json.dumps(figures, indent=2) if args.json else figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
