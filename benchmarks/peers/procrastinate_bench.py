"""Peer benchmark: Procrastinate's batch enqueue rate, drain rate and idle latency on PostgreSQL.

Run with the peers' venv (`bash benchmarks/peers/setup.sh`):

    benchmarks/.venv-peers/bin/python benchmarks/peers/procrastinate_bench.py \
        --dsn postgresql://postgres@127.0.0.1:5432/postgres --jobs 20000 --concurrency 2 \
        --parallelism 10 [--latency-jobs 200] [--redis redis://127.0.0.1:6379/0] [--json]

It creates a database `procrastinate_bench_<random>` next to `--dsn`'s, applies Procrastinate's
schema (`schema_manager.apply_schema_async()`), and drops it `WITH (FORCE)` at the end.

Configuration: a `PsycopgConnector` (Procrastinate's default async connector) per process;
`--concurrency` worker processes, each `app.run_worker_async(concurrency=--parallelism)` (the
same processes and in-flight jobs as jobworker's `--concurrency`/`--parallelism`), everything
else Procrastinate's defaults (LISTEN/NOTIFY on, finished jobs kept).

1. batch enqueue: `task.batch_defer_async(*kwargs)` in chunks of 1000 (one INSERT per chunk);
2. drain: the processes are started and `procrastinate_jobs` is polled every 50 ms until
   `--jobs` rows are `succeeded`; steady state and including start-up, as jobworker's;
3. idle latency: with the workers idle, `--latency-jobs` jobs deferred one at a time, ~20 ms
   apart, each carrying `time.time()` taken just before the defer call; the handler computes
   `time.time() - sent` first thing and RPUSHes it to a Redis list the parent reads.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import multiprocessing
import secrets
import sys
import time
from typing import Any

import psycopg
import redis
from figures import percentile, progress, rate, with_database
from procrastinate import App, PsycopgConnector

BATCH_CHUNK = 1000
POLL_INTERVAL = 0.05
LATENCY_GAP = 0.02
LATENCY_KEY = "jw_bench:procrastinate:latency"


class BenchmarkError(Exception):
    """The benchmark could not complete."""


def make_app(dsn: str, redis_url: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn))
    client = redis.Redis.from_url(redis_url)

    @app.task(name="bench.noop")
    async def noop(n: int) -> None:
        """Do nothing."""

    @app.task(name="bench.latency")
    async def latency(sent: float) -> None:
        elapsed = time.time() - sent
        client.rpush(LATENCY_KEY, elapsed)

    return app


def worker_main(dsn: str, redis_url: str, parallelism: int) -> None:
    async def run() -> None:
        app = make_app(dsn, redis_url)
        async with app.open_async():
            await app.run_worker_async(concurrency=parallelism)

    asyncio.run(run())


async def admin(dsn: str, statement: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(statement)  # type: ignore[arg-type]


async def succeeded(connection: psycopg.AsyncConnection[Any], task: str) -> int:
    cursor = await connection.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' AND task_name = %s",
        (task,),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def drain(
    connection: psycopg.AsyncConnection[Any], processes: list[Any], args: argparse.Namespace
) -> tuple[float | None, float]:
    """Start `processes`, poll until every job succeeded: (steady rate, rate with start-up)."""
    started = time.perf_counter()
    for process in processes:
        process.start()
    first: tuple[float, int] | None = None
    while True:
        at = time.perf_counter()
        done = await succeeded(connection, "bench.noop")
        if done and first is None:
            first = (at, done)
        if done >= args.jobs:
            break
        if any(p.exitcode is not None for p in processes):
            raise BenchmarkError("a procrastinate worker exited early")
        if at - started > args.timeout:
            raise BenchmarkError(f"timed out with {done}/{args.jobs} done")
        await asyncio.sleep(POLL_INTERVAL)
    assert first is not None
    steady_jobs = args.jobs - first[1]
    steady = rate(steady_jobs, at - first[0]) if steady_jobs else None
    return steady, rate(args.jobs, at - started)


async def measure(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    app = make_app(dsn, args.redis)
    client = redis.Redis.from_url(args.redis)
    client.delete(LATENCY_KEY)
    ctx = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        noop = app.tasks["bench.noop"]
        progress(f"procrastinate: batch enqueue of {args.jobs:,} jobs ...")
        started = time.perf_counter()
        for start in range(0, args.jobs, BATCH_CHUNK):
            end = min(start + BATCH_CHUNK, args.jobs)
            await noop.batch_defer_async(*({"n": i} for i in range(start, end)))
        batch = rate(args.jobs, time.perf_counter() - started)
        progress(f"procrastinate: drain, {args.concurrency} x {args.parallelism} ...")
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            processes = [
                ctx.Process(
                    target=worker_main, args=(dsn, args.redis, args.parallelism), daemon=True
                )
                for _ in range(args.concurrency)
            ]
            try:
                steady, with_startup = await drain(connection, processes, args)

                progress(f"procrastinate: idle latency, {args.latency_jobs} jobs ...")
                await asyncio.sleep(0.5)
                latency = app.tasks["bench.latency"]
                for _ in range(args.latency_jobs):
                    await latency.defer_async(sent=time.time())
                    await asyncio.sleep(LATENCY_GAP)
                deadline = time.monotonic() + 30
                while client.llen(LATENCY_KEY) < args.latency_jobs:
                    if time.monotonic() > deadline:
                        raise BenchmarkError("the latency jobs did not all run within 30 s")
                    await asyncio.sleep(0.1)
                samples = [float(v) for v in client.lrange(LATENCY_KEY, 0, -1)]
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.join(30)
                    if process.is_alive():
                        process.kill()
                client.delete(LATENCY_KEY)
    return {
        "version": importlib.metadata.version("procrastinate"),
        "batch_enqueue": batch,
        "drain": {"steady": steady, "with_startup": with_startup},
        "latency_ms": {
            "p50": percentile(samples, 50) * 1000,
            "p99": percentile(samples, 99) * 1000,
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"procrastinate_bench_{secrets.token_hex(6)}"
    await admin(args.dsn, f'CREATE DATABASE "{name}"')
    try:
        return await measure(args, with_database(args.dsn, name))
    finally:
        await admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--parallelism", type=int, default=10, help="concurrency per process")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        figures = asyncio.run(run(args))
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2) if args.json else figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
