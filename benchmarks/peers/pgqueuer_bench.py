"""Peer benchmark: PgQueuer's enqueue rate, drain rate and idle latency on PostgreSQL.

Run with the peers' venv (`bash benchmarks/peers/setup.sh` creates it), never the project's:

    benchmarks/.venv-peers/bin/python benchmarks/peers/pgqueuer_bench.py \
        --dsn postgresql://postgres@127.0.0.1:5432/postgres \
        --jobs 20000 --concurrency 2 --batch-size 100 [--latency-jobs 200] [--json]

`--dsn` names a database to connect to as a user that may create databases. The benchmark
creates its own `pgq_bench_<random>` there, installs PgQueuer's schema in it (what
`pgq install` does, through `Queries.install()`, with the default, durable tables), and drops
it `WITH (FORCE)` at the end, whatever happened.

What it measures, for no-op jobs:

1. batch enqueue: `--jobs` jobs with `Queries.enqueue(list, list, list)` in chunks of 1000,
   from the parent process, on the same event loop as the workers (asyncpg's client side is
   markedly faster on uvloop: ~55k vs ~43k jobs/s here);
2. drain with `--batch-size`: `--concurrency` worker processes are started, each running a
   `QueueManager` on one asyncpg connection with a no-op async entrypoint and
   `run(batch_size=N)`, on uvloop as `pgq run` does (`--loop asyncio` to compare); then the
   `pgqueuer_log` table is polled every 50 ms until it holds `--jobs` `successful` rows
   (PgQueuer logs a `queued` row at enqueue, then deletes a finished job from the `pgqueuer`
   table and logs it `successful` in one statement, so that is "done"). Two rates, as in
   `benchmarks/throughput.py`: steady state (jobs logged between the first poll that saw a
   success and the poll that saw the last, over that interval) and including start-up (all
   jobs over the time from starting the processes);
3. idle latency: with those workers still running and the queue empty, `--latency-jobs` jobs
   are enqueued one at a time, ~20 ms apart, each carrying `time.time()` taken just before the
   enqueue call; the handler sends `time.time() - t` back over a multiprocessing queue;
4. drain with PgQueuer's defaults: the same as 2 on a refilled queue, with `run()`'s own
   default `batch_size`, reported as "defaults".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import inspect
import json
import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import queue
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvloop
from figures import percentile, progress, rate, with_database
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

NOOP = "bench.noop"
LATENCY = "bench.latency"
BATCH_CHUNK = 1000
POLL_INTERVAL = 0.05
LATENCY_GAP = 0.02
SETTLE = 0.5  # seconds the workers are left idle before the latency probe
STOP_TIMEOUT = 30.0
# pgqueuer_log also gets a 'queued' row per enqueued job; these are the outcomes that mean failure.
FAILED_STATUSES = frozenset({"exception", "failed", "canceled", "deleted"})
LOOPS = {"uvloop": uvloop.run, "asyncio": asyncio.run}  # --loop
DEFAULT_BATCH_SIZE: int = inspect.signature(QueueManager.run).parameters["batch_size"].default

LatencyQueue = multiprocessing.queues.Queue  # of float: seconds from enqueue to handler start


class BenchmarkError(Exception):
    """The benchmark could not complete (a worker died, jobs failed, a timeout)."""


# Worker processes ---------------------------------------------------------------------------


def worker_main(
    loop: str, dsn: str, batch_size: int | None, latencies: LatencyQueue[float]
) -> None:
    """A worker process: one QueueManager on one connection, until SIGTERM."""
    LOOPS[loop](serve(dsn, batch_size, latencies))


async def serve(dsn: str, batch_size: int | None, latencies: LatencyQueue[float]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(connection)))

        @qm.entrypoint(NOOP)
        async def noop(job: Job) -> None:
            """Do nothing."""

        @qm.entrypoint(LATENCY)
        async def latency(job: Job) -> None:
            started = time.time()
            assert job.payload is not None
            latencies.put(started - float(job.payload))

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
        loop.add_signal_handler(signal.SIGINT, qm.shutdown.set)
        if batch_size is None:
            await qm.run()
        else:
            await qm.run(batch_size=batch_size)
    finally:
        await connection.close()


class Workers:
    """`count` worker processes, started at once, stopped with SIGTERM."""

    def __init__(
        self,
        ctx: multiprocessing.context.SpawnContext,
        loop: str,
        dsn: str,
        count: int,
        batch_size: int | None,
        latencies: LatencyQueue[float],
    ) -> None:
        self.processes = [
            ctx.Process(
                target=worker_main,
                args=(loop, dsn, batch_size, latencies),
                name=f"pgqueuer-worker-{i}",
                daemon=True,
            )
            for i in range(count)
        ]

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def check_alive(self) -> None:
        for process in self.processes:
            if process.exitcode is not None:
                raise BenchmarkError(f"{process.name} exited early (code {process.exitcode})")

    def stop(self) -> list[int | None]:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        return [process.exitcode for process in self.processes]


# Figures ------------------------------------------------------------------------------------


@dataclass
class Drain:
    batch_size: int
    startup_s: float  # processes started -> first poll that saw a success
    steady_s: float  # first poll that saw a success -> poll that saw all
    total_s: float  # processes started -> poll that saw all
    steady_jobs: int  # jobs logged within steady_s
    steady_per_s: float | None  # None when every job was already done at the first poll
    total_per_s: float
    exit_codes: list[int | None]


@dataclass
class Results:
    version: str
    loop: str
    jobs: int
    concurrency: int
    batch_enqueue_per_s: float
    drain_batch: Drain
    drain_defaults: Drain
    latencies_s: list[float]

    def to_json(self) -> dict[str, Any]:
        def drain(d: Drain) -> dict[str, Any]:
            return {
                "steady": d.steady_per_s,
                "with_startup": d.total_per_s,
                "batch_size": d.batch_size,
            }

        return {
            "version": self.version,
            "batch_enqueue": self.batch_enqueue_per_s,
            "drain": {
                f"batch_{self.drain_batch.batch_size}": drain(self.drain_batch),
                "defaults": drain(self.drain_defaults),
            },
            "latency_ms": {
                "p50": percentile(self.latencies_s, 50) * 1000,
                "p99": percentile(self.latencies_s, 99) * 1000,
            },
        }


# The database -------------------------------------------------------------------------------


async def admin_execute(dsn: str, statement: str) -> None:
    """Run `statement` on a connection of its own (a long-held one might be cut meanwhile)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def scratch_database(dsn: str) -> AsyncIterator[str]:
    """A new, empty database next to `dsn`'s, dropped WITH (FORCE) on the way out."""
    name = f"pgq_bench_{secrets.token_hex(6)}"
    await admin_execute(dsn, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(dsn, name)
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        try:
            await admin_execute(dsn, drop)
        except (OSError, asyncpg.PostgresError) as exc:
            progress(f"dropping {name} failed ({exc!r}); retrying once")
            await asyncio.sleep(1)
            await admin_execute(dsn, drop)


class Bench:
    """The parent's view of the benchmark database: enqueue, count, reset."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.queries = Queries(AsyncpgDriver(connection))
        settings = self.queries.qbe.settings
        self.queue_table = settings.queue_table
        self.log_table = settings.queue_table_log
        self.statistics_table = settings.statistics_table

    async def quiesce(self) -> None:
        """Flush dirty buffers before a timed phase, so that the previous phase's (or a
        previous run's) writes are not paid for in this one. Skipped without the privilege."""
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await self.connection.execute("CHECKPOINT")

    async def reset(self) -> None:
        await self.connection.execute(
            f"TRUNCATE {self.queue_table}, {self.log_table}, {self.statistics_table}"
        )

    async def enqueue_batches(self, count: int) -> float:
        """Enqueue `count` no-op jobs in chunks of BATCH_CHUNK; jobs/s."""
        await self.quiesce()
        started = time.perf_counter()
        for start in range(0, count, BATCH_CHUNK):
            n = min(BATCH_CHUNK, count - start)
            await self.queries.enqueue(
                [NOOP] * n,
                [str(i).encode() for i in range(start, start + n)],
                [0] * n,
            )
        elapsed = time.perf_counter() - started
        queued = await self.queued()
        if queued != count:
            raise BenchmarkError(f"expected {count} queued jobs, found {queued}")
        return rate(count, elapsed)

    async def queued(self) -> int:
        value = await self.connection.fetchval(f"SELECT count(*) FROM {self.queue_table}")
        return int(value)

    async def log_counts(self) -> dict[str, int]:
        rows = await self.connection.fetch(
            f"SELECT status::text AS status, count(*) AS n FROM {self.log_table} GROUP BY 1"
        )
        return {row["status"]: int(row["n"]) for row in rows}


# Measurements -------------------------------------------------------------------------------


async def measure_drain(
    bench: Bench, workers: Workers, jobs: int, limit_s: float
) -> tuple[float, float, int, float]:
    """Start `workers` and poll until `jobs` are logged successful.

    Returns (start time, first poll that saw a success, successes it saw, poll that saw all).
    """
    started = time.perf_counter()
    workers.start()
    first: tuple[float, int] | None = None
    while True:
        now = time.perf_counter()
        counts = await bench.log_counts()
        done = counts.get("successful", 0)
        if done and first is None:
            first = (now, done)
        if done >= jobs:
            assert first is not None
            return started, first[0], first[1], now
        failed = {status: n for status, n in counts.items() if status in FAILED_STATUSES}
        if failed:
            raise BenchmarkError(f"jobs did not succeed: {failed}")
        workers.check_alive()
        if now - started > limit_s:
            raise BenchmarkError(f"timed out after {limit_s:.0f}s with {done}/{jobs} done")
        await asyncio.sleep(POLL_INTERVAL)


def drain_figures(
    jobs: int, batch_size: int, marks: tuple[float, float, int, float], codes: list[int | None]
) -> Drain:
    started, first_at, first_done, last_at = marks
    steady_s = last_at - first_at
    steady_jobs = jobs - first_done
    total_s = last_at - started
    return Drain(
        batch_size=batch_size,
        startup_s=first_at - started,
        steady_s=steady_s,
        total_s=total_s,
        steady_jobs=steady_jobs,
        steady_per_s=rate(steady_jobs, steady_s) if steady_jobs else None,
        total_per_s=rate(jobs, total_s),
        exit_codes=codes,
    )


async def measure_latency(
    bench: Bench, workers: Workers, latencies: LatencyQueue[float], count: int
) -> list[float]:
    """Enqueue `count` jobs one at a time into the idle queue; seconds to handler start."""
    await asyncio.sleep(SETTLE)
    if await bench.queued():
        raise BenchmarkError("the queue is not empty before the latency probe")
    for _ in range(count):
        sent = time.time()
        await bench.queries.enqueue(LATENCY, str(sent).encode())
        await asyncio.sleep(LATENCY_GAP)
    results: list[float] = []
    deadline = time.monotonic() + 30
    while len(results) < count:
        workers.check_alive()
        try:
            results.append(latencies.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"only {len(results)}/{count} latency jobs ran within 30 s"
                ) from None
    return results


async def drain_run(
    bench: Bench,
    ctx: multiprocessing.context.SpawnContext,
    dsn: str,
    args: argparse.Namespace,
    batch_size: int | None,
    latencies: LatencyQueue[float],
    probe_latency: bool,
) -> tuple[Drain, list[float]]:
    effective = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    label = f"batch_size={batch_size}" if batch_size is not None else "defaults"
    progress(f"drain ({label}): {args.concurrency} worker process(es) ...")
    workers = Workers(ctx, args.loop, dsn, args.concurrency, batch_size, latencies)
    probe: list[float] = []
    await bench.quiesce()
    try:
        marks = await measure_drain(bench, workers, args.jobs, args.timeout)
        if probe_latency:
            progress(f"idle latency: {args.latency_jobs} jobs one at a time ...")
            probe = await measure_latency(bench, workers, latencies, args.latency_jobs)
    finally:
        codes = workers.stop()
    return drain_figures(args.jobs, effective, marks, codes), probe


async def run_benchmark(args: argparse.Namespace) -> Results:
    ctx = multiprocessing.get_context("spawn")
    latencies: LatencyQueue[float] = ctx.Queue()
    async with scratch_database(args.dsn) as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            bench = Bench(connection)
            await bench.queries.install()

            progress(f"batch enqueue: {args.jobs:,} jobs, Queries.enqueue() x {BATCH_CHUNK} ...")
            batch_enqueue = await bench.enqueue_batches(args.jobs)
            drain_batch, latency = await drain_run(
                bench, ctx, dsn, args, args.batch_size, latencies, probe_latency=True
            )

            await bench.reset()
            progress(f"refill: {args.jobs:,} jobs ...")
            await bench.enqueue_batches(args.jobs)
            drain_defaults, _ = await drain_run(
                bench, ctx, dsn, args, None, latencies, probe_latency=False
            )
        finally:
            await connection.close()
    return Results(
        version=importlib.metadata.version("pgqueuer"),
        loop=args.loop,
        jobs=args.jobs,
        concurrency=args.concurrency,
        batch_enqueue_per_s=batch_enqueue,
        drain_batch=drain_batch,
        drain_defaults=drain_defaults,
        latencies_s=latency,
    )


# Reporting ----------------------------------------------------------------------------------


def format_report(r: Results) -> str:
    def steady(d: Drain) -> str:
        return f"{d.steady_per_s:,.0f} jobs/s" if d.steady_per_s is not None else "n/a"

    rows: list[tuple[str, str, str]] = [
        ("jobs", f"{r.jobs:,}", ""),
        ("concurrency", str(r.concurrency), "worker processes, one connection each"),
        ("event loop", r.loop, "in the workers and the enqueuing parent"),
        ("batch enqueue", f"{r.batch_enqueue_per_s:,.0f} jobs/s", f"x {BATCH_CHUNK} per call"),
    ]
    for title, d in (
        (f"batch size {r.drain_batch.batch_size}", r.drain_batch),
        (f"defaults (batch size {r.drain_defaults.batch_size})", r.drain_defaults),
    ):
        rows += [
            (f"drain, {title}", "", ""),
            ("  start-up", f"{d.startup_s:.2f} s", "processes start -> first success seen"),
            (
                "  steady state",
                steady(d),
                f"{d.steady_jobs:,} jobs in {d.steady_s:.2f} s, first -> last success",
            ),
            (
                "  incl. start-up",
                f"{d.total_per_s:,.0f} jobs/s",
                f"{r.jobs:,} jobs in {d.total_s:.2f} s from process start",
            ),
            ("  exit codes", " ".join(map(str, d.exit_codes)), "after SIGTERM"),
        ]
    rows += [
        (
            "idle latency p50",
            f"{percentile(r.latencies_s, 50) * 1000:.1f} ms",
            f"{len(r.latencies_s)} jobs, enqueue call -> handler start",
        ),
        ("idle latency p99", f"{percentile(r.latencies_s, 99) * 1000:.1f} ms", ""),
        ("host", f"Python {sys.version.split()[0]}", f"PgQueuer {r.version}"),
    ]
    label_width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = ["PgQueuer peer benchmark"]
    for label, value, note in rows:
        line = f"  {label:<{label_width}}  {value:>{value_width}}"
        lines.append(f"{line}   ({note})" if note else line.rstrip())
    return "\n".join(lines)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure PgQueuer's enqueue rate, drain rate and idle latency.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="server to benchmark on (as a user that may create databases)",
    )
    parser.add_argument("--jobs", type=positive_int, default=20_000, help="jobs to drain")
    parser.add_argument("--concurrency", type=positive_int, default=2, help="worker processes")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=100,
        help=f"QueueManager.run(batch_size=...) (PgQueuer's default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--latency-jobs", type=positive_int, default=200, help="jobs for the idle latency probe"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for each drain"
    )
    parser.add_argument(
        "--loop",
        choices=sorted(LOOPS),
        default="uvloop",
        help="event loop of the parent and the workers (`pgq run` uses uvloop when installed)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = LOOPS[args.loop](run_benchmark(args))
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results.to_json(), indent=2))
    else:
        print(format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
