"""The raw asyncpg ceiling: the least work that keeps jobworker's rows per job, on PostgreSQL.

Run with the project's venv (it needs asyncpg, and jobworker only to create the schema):

    python benchmarks/peers/ceiling_bench.py --dsn postgresql://postgres@127.0.0.1:5432/postgres \
        --jobs 20000 --concurrency 2 --parallelism 10 [--latency-jobs 200] [--json]

It creates a database `jw_ceiling_<random>` next to `--dsn`'s, migrates it with jobworker's own
schema (the same `jobs` and `job_attempts` tables, indexes and storage settings), and drops it
`WITH (FORCE)` at the end. No jobworker code runs during the measurement: each phase is a
hand-written asyncpg loop, so "jobworker / ceiling" is what jobworker's worker, completer and
framework cost on top of the rows the database has to keep.

What it writes per job, and nothing else (jobworker without Redis writes the same rows: its
`running` and end events are derived from the attempt row, a success's `result` event from
`jobs.result`, so a job that only runs stores no `job_events` row):

1. enqueue: one `jobs` row (a UUIDv7 id made by jobworker's own `uuid7`, job_type, queue,
   priority, status 'queued', args, max_attempts, enqueued_at, run_at), 1000 per
   `INSERT ... SELECT FROM unnest(...)` statement;
2. claim: one `UPDATE jobs` per job (status 'running', attempt + 1, lease_owner,
   lease_expires_at, started_at, event_seq + 1) of rows picked in `jobs_claimable` order with
   `FOR UPDATE SKIP LOCKED`, up to the free in-flight slots per statement (with claim_batch's
   planner settings: no sequential or bitmap scans);
3. completion: one `UPDATE jobs` per job (status 'succeeded', result, completed_at, expires_at,
   lease cleared, event_seq + 1) and one `INSERT INTO job_attempts` row (worker, started_at,
   ended_at, outcome, start_seq, end_seq, end_status, end_attempt) in one statement per batch
   of finished jobs, with a `pg_notify` per batch as jobworker's completion sends.

Each of `--concurrency` processes holds at most `--parallelism` jobs in flight (claimed, not
yet completed), as a jobworker worker with that many slots does; it claims on one connection
and completes on another, so claims and completions overlap as in jobworker. The "handler" is
a no-op. It does not check leases, cancel requests, idempotency keys, paused queues, retries,
or anything a real worker must.

Idle latency: the processes LISTEN on a channel; each probe job is inserted with `pg_notify`
in its transaction, its args carrying `time.time()` taken just before the insert; the woken
process claims it and the "handler" stores `time.time() - sent` as the job's result, which the
parent reads back: the same interval and the same store as jobworker's `bench.latency`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from figures import percentile, progress, rate, with_database

from jobworker.ids import uuid7  # the same time-ordered ids as jobworker's

BATCH_CHUNK = 1000
POLL_INTERVAL = 0.05
LATENCY_GAP = 0.02
CHANNEL = "jw_ceiling"
QUEUE = "default"
NOOP = "bench.anoop"
LATENCY = "bench.latency"

ENQUEUE = """
INSERT INTO jobworker.jobs
    (id, job_type, queue, priority, status, args, max_attempts, enqueued_at, run_at)
SELECT id, $2, $3, 0, 'queued', args, 3, $4, $4
FROM unnest($1::uuid[], $5::jsonb[]) AS t(id, args)
"""

CLAIM = """
WITH next AS (
    SELECT j.id FROM jobworker.jobs AS j
    WHERE j.status IN ('queued', 'scheduled', 'failed') AND j.run_at <= $1 AND j.queue = $2
    ORDER BY j.priority DESC, j.run_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE jobworker.jobs AS j
SET status = 'running', attempt = j.attempt + 1, lease_owner = $4, lease_expires_at = $5,
    started_at = $1, event_seq = j.event_seq + 1
FROM next WHERE j.id = next.id
RETURNING j.id, j.job_type, j.args, j.attempt, j.started_at, j.event_seq
"""

COMPLETE = """
WITH d AS (
    SELECT * FROM unnest($1::uuid[], $2::integer[], $3::timestamptz[], $4::bigint[], $5::jsonb[])
        AS d(id, attempt, started_at, start_seq, result)
), updated AS (
    UPDATE jobworker.jobs AS j
    SET status = 'succeeded', result = d.result, completed_at = $6::timestamptz,
        expires_at = $6::timestamptz + interval '1 day', lease_owner = NULL,
        lease_expires_at = NULL, event_seq = j.event_seq + 1
    FROM d WHERE j.id = d.id AND j.lease_owner = $7::text AND j.status = 'running'
    RETURNING j.id, j.event_seq
), attempts AS (
    INSERT INTO jobworker.job_attempts
        (job_id, attempt, worker, started_at, ended_at, outcome, start_seq, end_seq,
         end_status, end_attempt)
    SELECT d.id, d.attempt, $7, d.started_at, $6::timestamptz, 'succeeded', d.start_seq,
        u.event_seq, 'succeeded', d.attempt
    FROM d JOIN updated AS u ON u.id = d.id
)
SELECT count(*), (SELECT pg_notify($8, 'done')) FROM updated
"""


class BenchmarkError(Exception):
    """The benchmark could not complete."""


def now() -> datetime:
    return datetime.now(UTC)


# The worker processes -----------------------------------------------------------------------


class Worker:
    """One process's claim loop and completer, with `slots` jobs in flight at most."""

    def __init__(self, dsn: str, slots: int) -> None:
        self.dsn = dsn
        self.slots = slots
        self.owner = f"ceiling-{os.getpid()}"
        self.free = slots
        self.finished: list[tuple[uuid.UUID, int, datetime, int, str]] = []
        self.wake = asyncio.Event()
        self.flush = asyncio.Event()

    async def run(self, stop: Any) -> None:
        # jobworker's claim_batch runs with these planner settings: on a fresh table with no
        # statistics (and autovacuum off) the planner would otherwise scan the whole table.
        planner = {"enable_seqscan": "off", "enable_bitmapscan": "off"}
        claimer = await asyncpg.connect(self.dsn, server_settings=planner)
        completer = await asyncpg.connect(self.dsn, server_settings=planner)
        await claimer.add_listener(CHANNEL, lambda *_: self.wake.set())
        task = asyncio.create_task(self.complete_loop(completer))
        try:
            while not stop.is_set():
                if task.done():
                    task.result()  # the completer failed: raise its error
                if self.free == 0:
                    self.wake.clear()
                    await self.wait(0.5)
                    continue
                started = now()
                rows = await claimer.fetch(
                    CLAIM, started, QUEUE, self.free, self.owner, started + timedelta(seconds=60)
                )
                if not rows:
                    self.wake.clear()
                    await self.wait(0.5)
                    continue
                self.free -= len(rows)
                for row in rows:
                    self.finished.append(self.handle(row))
                self.flush.set()
        finally:
            task.cancel()
            await claimer.close()
            await completer.close()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

    @staticmethod
    def handle(row: asyncpg.Record) -> tuple[uuid.UUID, int, datetime, int, str]:
        """The no-op "handler": a latency probe stores seconds since its enqueue as its result."""
        result = "null"
        if row["job_type"] == LATENCY:
            result = json.dumps(time.time() - json.loads(row["args"])["sent"])
        return row["id"], row["attempt"], row["started_at"], row["event_seq"], result

    async def complete_loop(self, connection: asyncpg.Connection) -> None:
        while True:
            await self.flush.wait()
            self.flush.clear()
            batch, self.finished = self.finished, []
            if not batch:
                continue
            ids, attempts, started, seqs, results = map(list, zip(*batch, strict=True))
            await connection.fetch(
                COMPLETE, ids, attempts, started, seqs, results, now(), self.owner, CHANNEL
            )
            self.free += len(batch)
            self.wake.set()


def worker_main(dsn: str, slots: int, stop: Any) -> None:
    asyncio.run(Worker(dsn, slots).run(stop))


# The parent ---------------------------------------------------------------------------------


@dataclass
class Figures:
    batch_enqueue: float
    steady: float | None
    with_startup: float
    latencies: list[float]


async def create_database(dsn: str) -> str:
    from jobworker import App

    name = f"jw_ceiling_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(dsn, name)
    storage = App(database_url=url, bind=False).create_storage()
    await storage.open()
    try:
        await storage.schema.migrate()
    finally:
        await storage.close()
    return name


async def drop_database(dsn: str, name: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def enqueue(connection: asyncpg.Connection, count: int) -> float:
    started = time.perf_counter()
    for start in range(0, count, BATCH_CHUNK):
        n = min(BATCH_CHUNK, count - start)
        at = now()
        ids = [uuid7(at) for _ in range(n)]
        args = [json.dumps({"n": i}) for i in range(start, start + n)]
        await connection.execute(ENQUEUE, ids, NOOP, QUEUE, now(), args)
    return rate(count, time.perf_counter() - started)


async def succeeded(connection: asyncpg.Connection, job_type: str) -> int:
    value = await connection.fetchval(
        "SELECT count(*) FROM jobworker.jobs WHERE status = 'succeeded' AND job_type = $1",
        job_type,
    )
    return int(value)


async def measure(args: argparse.Namespace, url: str) -> Figures:
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    connection = await asyncpg.connect(url)
    processes = []
    try:
        progress(f"ceiling: batch enqueue of {args.jobs:,} jobs ...")
        batch = await enqueue(connection, args.jobs)
        progress(f"ceiling: drain, {args.concurrency} x {args.parallelism} in flight ...")
        processes = [
            ctx.Process(target=worker_main, args=(url, args.parallelism, stop), daemon=True)
            for _ in range(args.concurrency)
        ]
        started = time.perf_counter()
        for process in processes:
            process.start()
        first: tuple[float, int] | None = None
        while True:
            at = time.perf_counter()
            done = await succeeded(connection, NOOP)
            if done and first is None:
                first = (at, done)
            if done >= args.jobs:
                break
            if any(p.exitcode is not None for p in processes):
                raise BenchmarkError("a ceiling worker exited early")
            if at - started > args.timeout:
                raise BenchmarkError(f"timed out with {done}/{args.jobs} done")
            await asyncio.sleep(POLL_INTERVAL)
        assert first is not None
        steady_jobs = args.jobs - first[1]
        steady = rate(steady_jobs, at - first[0]) if steady_jobs else None
        with_startup = rate(args.jobs, at - started)
        latencies = await probe_latency(connection, args.latency_jobs)
    finally:
        stop.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        await connection.close()
    return Figures(batch, steady, with_startup, latencies)


async def probe_latency(connection: asyncpg.Connection, count: int) -> list[float]:
    progress(f"ceiling: idle latency, {count} jobs one at a time ...")
    await asyncio.sleep(0.5)
    for _ in range(count):
        sent = time.time()
        async with connection.transaction():
            await connection.execute(
                ENQUEUE, [uuid7(now())], LATENCY, QUEUE, now(), [json.dumps({"sent": sent})]
            )
            await connection.execute("SELECT pg_notify($1, 'new')", CHANNEL)
        await asyncio.sleep(LATENCY_GAP)
    deadline = time.monotonic() + 30
    while await succeeded(connection, LATENCY) < count:
        if time.monotonic() > deadline:
            raise BenchmarkError("the latency probes did not all run within 30 s")
        await asyncio.sleep(0.1)
    rows = await connection.fetch("SELECT result FROM jobworker.jobs WHERE job_type = $1", LATENCY)
    return [float(json.loads(row["result"])) for row in rows]


async def run(args: argparse.Namespace) -> Figures:
    name = await create_database(args.dsn)
    try:
        return await measure(args, with_database(args.dsn, name))
    finally:
        await drop_database(args.dsn, name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2, help="processes")
    parser.add_argument("--parallelism", type=int, default=10, help="jobs in flight per process")
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
    out = {
        "version": asyncpg.__version__,
        "batch_enqueue": figures.batch_enqueue,
        "drain": {"steady": figures.steady, "with_startup": figures.with_startup},
        "latency_ms": {
            "p50": percentile(figures.latencies, 50) * 1000,
            "p99": percentile(figures.latencies, 99) * 1000,
        },
    }
    print(json.dumps(out, indent=2) if args.json else out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
