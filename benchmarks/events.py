"""Event streaming benchmark: one handler emits chunk events while a reader follows it live.

Usage:

    python benchmarks/events.py [--backend sqlite|postgres] [--events 100000] \
        [--handler async|sync] [--bus both|redis|database] [--work-us 0,1,2,5] [--rate 0] \
        [--repeat 3] [--timeout 300] [--json]

What it measures, per bus, against a fresh, empty database that is removed afterwards:

1. A real worker: `python -m jobworker run event_jobs --concurrency 1` (a supervisor and one
   worker process) on that database. With the Redis bus, on the Redis at $JOBWORKER_REDIS_URL
   (default the local one) under a key prefix of its own, whose keys are deleted afterwards;
   with the database bus, without Redis (events travel through the database as transient rows).
2. Per run, one job of `benchmarks/event_jobs.py` (`bench.stream`, an async handler doing
   `await ctx.chunk({"t": time.time(), "n": i})` per iteration; `--handler sync` uses
   `bench.stream_sync`, a sync handler on the worker's thread pool calling `ctx.chunk(...)`)
   is enqueued to start START_DELAY later, and a reader in this process follows it with
   `app.client.stream(job_id)` from before it starts until its terminal event. By default the
   handler emits as fast as it can; `--rate N` paces it to N events/s.
   Each iteration first does `--work-us` microseconds of the handler's own work (a busy loop:
   what a real handler spends producing a token or a row); the runs are repeated for each value
   of the list, 0 (an empty loop: nothing but the emitting) first.
3. Figures of a run with events on:
   - emitted: events / (first -> last emit), both times taken in the handler;
   - received: chunk events received / (first -> last receive), in the reader;
   - end to end: chunk events received / (first emit -> last receive);
   - missing: chunk events the reader never got (a reader more than `event_stream_maxlen`
     events behind loses the trimmed ones: only kept kinds are in the database);
   - lag: receive time - the emit time each chunk carries, p50 / p99 / max;
   - the handler loop's own run time, next to the same loop with events off (`emit=False`:
     the same work, `time.time()` and value per iteration, no `ctx.chunk` call), their ratio,
     and the difference per event (what emitting costs the handler's process: numbering,
     encoding, and the worker's writing to Redis, which shares the process and its GIL).
   Each run with events on is followed by one with events off; `--repeat N` does both N times
   (after one small warm-up job) and reports per-figure medians.

The Redis rows are held to the goals (end to end >= 50,000 events/s with none missing, lag p99
< 50 ms, run time with events on <= 2x with events off); the database rows are for reference.
The run-time ratio depends on the work per event by construction: with an empty loop (0 us) it
is the emitting cost over a tenth of a microsecond of Python, and no per-event call in CPython
comes within 2x of that: the report prints, as the floor, the ratio of the same empty loop
calling a `ctx.chunk` that sends nothing at all (measured in the benchmark's own process). It
says from which work per event the ratio is within the goal.

Backends: `sqlite` (a temporary database file) and `postgres` (a fresh database on the server at
$JOBWORKER_BENCH_PG_URL, default the local one, dropped afterwards), as in `throughput.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import msgspec

from jobworker import App, JobContext, JobStatus, ScheduleOptions, __version__
from jobworker.models import EventKind

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import event_jobs  # noqa: F401  (registers the jobs the workers run)
from throughput import (
    BACKENDS,
    BENCH_DIR,
    REPO_ROOT,
    BenchmarkError,
    open_backend,
    percentile,
    positive_int,
    run_main,
    stop_supervisor,
)

JOB_MODULE = "event_jobs"
HANDLERS = {"async": "bench.stream", "sync": "bench.stream_sync"}
BUSES = {"both": ("redis", "database"), "redis": ("redis",), "database": ("database",)}
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_DELAY = 0.3  # seconds from enqueueing a job to its run_at: the reader is there first
WARMUP_EVENTS = 2000
WARMUP_TIMEOUT = 60.0

GOAL_RATE = 50_000.0  # events/s, first emit -> last receive, none missing
GOAL_LAG_P99_MS = 50.0
GOAL_RUN_RATIO = 2.0  # run time with events on / with events off


# Figures ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One job with events on, and the same loop with events off just after it."""

    work_us: float
    events: int
    received: int  # chunk events the reader got
    missing: int  # chunk events the reader never got
    out_of_order: int  # chunk events that arrived after a later one
    emit_per_s: float
    receive_per_s: float
    end_to_end_per_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    run_on_s: float
    run_off_s: float
    run_ratio: float
    emit_cost_us: float  # (run on - run off) / events
    attached_before_start_ms: float  # reader's first read -> handler's first emit


@dataclass
class Series:
    """The runs with one amount of work per event."""

    work_us: float
    runs: list[Run]
    median: Run


@dataclass
class BusFigures:
    bus: str
    series: list[Series]
    worker_log: list[str] = field(default_factory=list)


@dataclass
class Results:
    backend: str
    handler: str
    events: int
    work_us: list[float]
    rate: float  # events/s the handler paces itself to (0: as fast as it can)
    repeat: int
    buses: list[BusFigures]
    goals: dict[str, float]
    floor_ratio: float  # an empty loop calling a `ctx.chunk` that sends nothing, over no call
    python: str = platform.python_version()
    jobworker: str = __version__
    cpus: int = os.cpu_count() or 1


def median_run(runs: list[Run]) -> Run:
    values: dict[str, Any] = {}
    for name in Run.__dataclass_fields__:
        numbers = [getattr(run, name) for run in runs]
        median = statistics.median(numbers)
        values[name] = round(median) if isinstance(numbers[0], int) else median
    values["work_us"] = runs[0].work_us
    return Run(**values)


def rate(count: int, seconds: float) -> float:
    if count == 0:
        return 0.0
    return count / seconds if seconds > 0 else math.inf


# The worker ---------------------------------------------------------------------------------


def worker_env(redis_url: str | None, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBWORKER_REDIS_URL"}
    paths = [str(BENCH_DIR), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["JOBWORKER_REDIS_PREFIX"] = prefix
    if redis_url:
        env["JOBWORKER_REDIS_URL"] = redis_url
    return env


def start_supervisor(
    url: str, redis_url: str | None, prefix: str, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "jobworker",
        "--log-level",
        "WARNING",
        "run",
        JOB_MODULE,
        "--concurrency",
        "1",
        "--parallelism",
        "4",
        "--database-url",
        url,
    ]
    return subprocess.Popen(
        command,
        env=worker_env(redis_url, prefix),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def delete_redis_keys(redis_url: str, prefix: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    deleted = 0
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            deleted += await client.delete(key)
    finally:
        await client.aclose()
    return deleted


# One run ------------------------------------------------------------------------------------


@dataclass
class Followed:
    result: dict[str, Any]
    attached_at: float  # time.time() just before the reader's first read
    # Chunk payloads in arrival order and their receive times: an array and a list of untracked
    # objects, so that keeping them adds no work to the reader's garbage collections.
    received_at: array[float]
    payloads: list[Any]


async def follow_job(
    app: App, job_type: str, arguments: dict[str, Any], timeout: float
) -> Followed:
    """Enqueue one job to start START_DELAY from now, follow it from before it starts, and
    return its result and the chunks the reader received (with their receive times)."""
    run_at = datetime.now(UTC) + timedelta(seconds=START_DELAY)
    handle = await app.client.aenqueue(job_type, arguments, ScheduleOptions(run_at=run_at))
    received_at = array("d")
    payloads: list[Any] = []
    clock = time.time
    chunk = EventKind.CHUNK

    async def read() -> None:
        async for event in app.client.stream(handle.job_id):
            if event.kind is chunk:
                received_at.append(clock())
                payloads.append(event.payload)

    attached_at = time.time()
    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise BenchmarkError(
            f"the reader timed out after {timeout:.0f}s with {len(payloads)} chunk(s)"
        ) from None
    job = await app.client.aget(handle.job_id)
    if job is None or job.status is not JobStatus.SUCCEEDED:
        status = job.status.value if job is not None else "missing"
        raise BenchmarkError(f"the job did not succeed: {status} {getattr(job, 'error', '')}")
    result: dict[str, Any] = await handle.aresult(timeout)
    return Followed(result, attached_at, received_at, payloads)


def measure(on: Followed, off: Followed, count: int, work_us: float) -> Run:
    decode = msgspec.json.Decoder().decode
    lags: list[float] = []
    out_of_order = 0
    last_n = -1
    for at, payload in zip(on.received_at, on.payloads, strict=True):
        data = decode(payload)["data"]
        lags.append((at - data["t"]) * 1000)
        if data["n"] < last_n:
            out_of_order += 1
        last_n = max(last_n, data["n"])
    lags.sort()
    seen = len(on.payloads)
    first_emit, last_emit = on.result["first"], on.result["last"]
    first_receive = on.received_at[0] if seen else math.nan
    last_receive = on.received_at[-1] if seen else math.nan
    run_on, run_off = on.result["run_s"], off.result["run_s"]
    return Run(
        work_us=work_us,
        events=count,
        received=seen,
        missing=count - seen,
        out_of_order=out_of_order,
        emit_per_s=rate(count, last_emit - first_emit),
        receive_per_s=rate(seen, last_receive - first_receive),
        end_to_end_per_s=rate(seen, last_receive - first_emit),
        lag_p50_ms=percentile(lags, 50) if lags else math.inf,  # nothing came: no goal met
        lag_p99_ms=percentile(lags, 99) if lags else math.inf,
        lag_max_ms=lags[-1] if lags else math.inf,
        run_on_s=run_on,
        run_off_s=run_off,
        run_ratio=run_on / run_off if run_off > 0 else math.inf,
        emit_cost_us=(run_on - run_off) / count * 1e6,
        attached_before_start_ms=(first_emit - on.attached_at) * 1000,
    )


# Running ------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run_bus(
    bus: str, url: str, redis_url: str, args: argparse.Namespace, log: IO[bytes]
) -> list[Series]:
    live = bus == "redis"
    prefix = f"jw_bench_{uuid.uuid4().hex[:10]}:"
    app = App(database_url=url, redis_url=redis_url if live else None, redis_prefix=prefix)
    job_type = HANDLERS[args.handler]
    process = start_supervisor(url, redis_url if live else None, prefix, log)

    async def follow(count: int, emit: bool, work_us: float, timeout: float) -> Followed:
        arguments = {"count": count, "emit": emit, "rate": args.rate, "work_us": work_us}
        task = asyncio.create_task(follow_job(app, job_type, arguments, timeout))
        while not task.done():
            if process.poll() is not None:
                task.cancel()
                raise BenchmarkError(f"the supervisor exited (code {process.returncode})")
            await asyncio.wait([task], timeout=0.5)
        return task.result()

    try:
        await app.client.acounts()  # the schema, outside any timing
        progress(f"[{bus}] warm-up: {WARMUP_EVENTS:,} events ...")
        await follow(WARMUP_EVENTS, True, 0.0, WARMUP_TIMEOUT)
        series: list[Series] = []
        for work_us in args.work_us:
            runs: list[Run] = []
            for n in range(1, args.repeat + 1):
                step = f"[{bus}] [{work_us:g} us of work] [{n}/{args.repeat}] {args.events:,}"
                progress(f"{step} events, events on ...")
                on = await follow(args.events, True, work_us, args.timeout)
                progress(f"{step} iterations, events off ...")
                off = await follow(args.events, False, work_us, args.timeout)
                runs.append(measure(on, off, args.events, work_us))
            series.append(Series(work_us, runs, median_run(runs)))
        return series
    finally:
        stop_supervisor(process)
        await app.client.aclose_streams()
        await app.aclose()
        if live:
            await delete_redis_keys(redis_url, prefix)


def call_floor(count: int, repeat: int = 5) -> float:
    """What calling `ctx.chunk` at all costs an empty loop: the loop of `bench.stream` (0 us of
    work) with `await ctx.chunk(value)` on a context that has nowhere to send events (so each
    call returns at once), over the same loop without the call; the best of `repeat`. No way
    of emitting, however cheap, can come below this ratio."""
    ctx: JobContext[Any] = JobContext(
        job_id=uuid.uuid4(),
        job_type="bench.floor",
        attempt=1,
        max_attempts=1,
        queue="default",
        enqueued_at=datetime.now(UTC),
    )

    async def loop(call: bool) -> float:
        chunk = ctx.chunk
        started = time.perf_counter()
        for i in range(count):
            value = {"t": time.time(), "n": i}
            if call:
                await chunk(value)
        return time.perf_counter() - started

    on = min(asyncio.run(loop(True)) for _ in range(repeat))
    off = min(asyncio.run(loop(False)) for _ in range(repeat))
    return on / off


def run_benchmark(args: argparse.Namespace) -> Results:
    os.environ.pop("JOBWORKER_REDIS_URL", None)  # each bus decides for itself
    figures: list[BusFigures] = []
    with open_backend(args.backend) as backend:
        for bus in BUSES[args.bus]:
            url = backend.new_database(f"events_{bus}")
            with tempfile.TemporaryFile() as log:
                try:
                    series = asyncio.run(run_bus(bus, url, args.redis_url, args, log))
                except BenchmarkError as exc:
                    detail = "\n".join(read_log(log)[-40:]) or "(no output)"
                    raise BenchmarkError(f"{exc}\nworker output:\n{detail}") from None
                lines = read_log(log)
            figures.append(BusFigures(bus, series, lines))
    return Results(
        backend=args.backend,
        handler=HANDLERS[args.handler],
        events=args.events,
        work_us=args.work_us,
        rate=args.rate,
        repeat=args.repeat,
        buses=figures,
        floor_ratio=call_floor(args.events),
        goals={
            "end_to_end_per_s": GOAL_RATE,
            "lag_p99_ms": GOAL_LAG_P99_MS,
            "run_ratio": GOAL_RUN_RATIO,
        },
    )


def read_log(log: IO[bytes]) -> list[str]:
    log.seek(0)
    return log.read().decode(errors="replace").splitlines()


# Report -------------------------------------------------------------------------------------


def passes(run: Run) -> dict[str, bool]:
    return {
        "rate": run.end_to_end_per_s >= GOAL_RATE and run.missing == 0,
        "lag": run.lag_p99_ms < GOAL_LAG_P99_MS,
        "ratio": run.run_ratio <= GOAL_RUN_RATIO,
    }


def series_rows(figures: BusFigures) -> list[list[str]]:
    header = [
        "work/event",
        "emitted/s",
        "received/s",
        "end to end/s",
        "missing",
        "lag p50/p99 ms",
        "run on/off ms",
        "ratio",
        "emit cost",
    ]
    rows = [header]
    for one in figures.series:
        m = one.median
        rows.append(
            [
                f"{one.work_us:g} us",
                f"{m.emit_per_s:,.0f}",
                f"{m.receive_per_s:,.0f}",
                f"{m.end_to_end_per_s:,.0f}",
                f"{m.missing:,}",
                f"{m.lag_p50_ms:.1f} / {m.lag_p99_ms:.1f}",
                f"{m.run_on_s * 1000:.0f} / {m.run_off_s * 1000:.0f}",
                f"{m.run_ratio:.2f}x",
                f"{m.emit_cost_us:.2f} us",
            ]
        )
    return rows


def goal_lines(figures: BusFigures) -> list[str]:
    """Each goal's verdict across the amounts of work."""

    def where(name: str) -> str:
        ok = [one.work_us for one in figures.series if passes(one.median)[name]]
        missed = [one.work_us for one in figures.series if not passes(one.median)[name]]
        if not missed:
            return "PASS at every work per event"
        if not ok:
            return "MISS at every work per event"
        if min(ok) > max(missed):
            low = ", ".join(f"{w:g}" for w in missed)
            return f"PASS from {min(ok):g} us of work per event (MISS at {low} us)"
        bad = ", ".join(f"{w:g}" for w in missed)
        return f"MISS at {bad} us of work per event"

    return [
        f"end to end >= {GOAL_RATE:,.0f} events/s, none missing: {where('rate')}",
        f"lag p99 < {GOAL_LAG_P99_MS:.0f} ms: {where('lag')}",
        f"run time on <= {GOAL_RUN_RATIO:.0f}x off: {where('ratio')}",
    ]


def format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def format_report(r: Results) -> str:
    pace = f"paced to {r.rate:,.0f} events/s" if r.rate else "as fast as the handler can"
    lines = [
        "jobworker event streaming benchmark",
        f"  backend {r.backend}, handler {r.handler}, {r.events:,} chunk events per job, {pace}",
        f"  {r.repeat} run(s) per row (medians), {r.cpus} CPUs, Python {r.python}, "
        f"jobworker {r.jobworker}",
    ]
    for figures in r.buses:
        note = "held to the goals" if figures.bus == "redis" else "for reference, no goal"
        lines.extend(["", f"  bus: {figures.bus} ({note})"])
        lines.extend(f"    {line}" for line in format_table(series_rows(figures)))
        for one in figures.series:
            if len(one.runs) > 1:
                lines.append(
                    f"    runs at {one.work_us:g} us: end to end "
                    + ", ".join(f"{run.end_to_end_per_s:,.0f}" for run in one.runs)
                    + "; lag p99 "
                    + ", ".join(f"{run.lag_p99_ms:.0f}" for run in one.runs)
                    + " ms; missing "
                    + ", ".join(f"{run.missing:,}" for run in one.runs)
                    + "; ratio "
                    + ", ".join(f"{run.run_ratio:.1f}" for run in one.runs)
                )
        if figures.bus == "redis":
            lines.append("    goals:")
            lines.extend(f"      {line}" for line in goal_lines(figures))
            lines.append(
                f"      (the floor at 0 us: the same loop calling a ctx.chunk that sends nothing "
                f"runs {r.floor_ratio:.2f}x the loop without the call)"
            )
        if figures.worker_log:
            lines.append(f"    worker output ({len(figures.worker_log)} line(s), level WARNING):")
            lines.extend(f"      | {line}" for line in figures.worker_log[:20])
    return "\n".join(lines)


def work_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers, not {text!r}") from None
    if not values or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError("microseconds of work: one or more, none negative")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure jobworker's event streaming: emit rate, receive rate, lag.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument(
        "--events", type=positive_int, default=100_000, help="chunk events the job emits"
    )
    parser.add_argument(
        "--handler",
        choices=sorted(HANDLERS),
        default="async",
        help="bench.stream (await ctx.chunk) or bench.stream_sync (ctx.chunk on a thread)",
    )
    parser.add_argument(
        "--bus",
        choices=list(BUSES),
        default="both",
        help="redis (held to the goals), database (transient rows, for reference) or both",
    )
    parser.add_argument(
        "--work-us",
        type=work_list,
        default=[0.0, 1.0, 2.0, 5.0],
        help="microseconds of the handler's own work per event, a run series for each",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="events/s the handler paces itself to (0: as fast as it can)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("JOBWORKER_REDIS_URL") or DEFAULT_REDIS_URL,
        help="the Redis of the redis bus (a key prefix of its own, deleted afterwards)",
    )
    parser.add_argument(
        "--repeat", type=positive_int, default=3, help="runs per row; medians are reported"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for one job and its reader"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error("--rate must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), run_benchmark, format_report)


if __name__ == "__main__":
    sys.exit(main())
