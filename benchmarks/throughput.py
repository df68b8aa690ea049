"""Throughput benchmark: how fast jobworker enqueues jobs and how fast real workers drain them.

Usage:

    python benchmarks/throughput.py --backend sqlite --jobs 20000 --concurrency 2 \
        [--parallelism N] [--single 2000] [--handler sync|async] [--timeout 600] [--json]

What it measures, each against a fresh, empty database that is removed afterwards:

1. single enqueue: `--single` jobs enqueued one at a time, with `.delay(n=i)` (the blocking API)
   and then with `await .adelay(n=i)` in a loop (the async API);
2. batch enqueue: `--jobs` jobs with `.delay_many(...)` in chunks of 1000, into a second fresh
   database, which then holds exactly `--jobs` queued jobs;
3. drain: `python -m jobworker run noop_jobs --concurrency C [--parallelism P]` (without
   `--parallelism`: the worker's default slots, printed) is started on that database, and
   `app.client.counts()` is polled every 50 ms until every job has succeeded.
   Two rates are reported: steady state (jobs that succeeded between the first poll that saw a
   success and the poll that saw the last one, over that interval) and including start-up
   (all jobs over the time from starting the supervisor process). The supervisor is then sent
   SIGTERM and waited for.

The jobs are the no-op handlers of `benchmarks/noop_jobs.py` (`bench.anoop`, an async handler,
by default; `--handler sync` uses `bench.noop`, which runs on the worker's thread pool).

4. idle latency (`--latency N`, default 200): N jobs enqueued one at a time, 20 ms apart, to
   idle workers; each returns the time from just before its enqueue call to its start.
5. with `--peers` (PostgreSQL): the same measurements for the peers, side by side, with the
   same number of processes (and in-flight jobs where the peer has the knob), each from its
   script in `benchmarks/peers` (its docstring gives its configuration): the raw asyncpg
   ceiling loop (the least work that keeps jobworker's rows per job; project venv), PgQueuer
   and Procrastinate on the same server and Celery with a Redis broker (their own venv:
   `bash benchmarks/peers/setup.sh`). Each of jobworker's `--repeat` runs is followed by one of
   each peer, in turn; the report prints one table of medians (batch enqueue, steady
   drain, idle latency p50/p99) with the ratios jobworker / each. A peer that cannot be run is
   reported in one line and the others still run. `--repeat N` also repeats jobworker's batch
   enqueue and drain N times and reports medians.
   With `--peers` and `--backend sqlite`: Huey's SQLite storage (`benchmarks/peers/huey_bench.py`,
   SqliteHuey, `--concurrency` consumer processes), run right after each jobworker drain (the
   two alternate), and the drain and enqueue ratios vs Huey.
6. with `--without-index NAME` (PostgreSQL): what one index costs the drain. Each repeat also
   drains a database whose index NAME was dropped after migrating, right after the one that
   has it (the two side by side, in the same run), and the report gives both medians and their
   ratio.

Backends: `sqlite` (temporary database files) and `postgres` (fresh databases on the server at
$JOBWORKER_BENCH_PG_URL, default the local one, dropped afterwards). A backend is a class with
the `Backend` protocol's two methods, listed in `BACKENDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

from jobworker import App, JobFunction, JobStatus, Settings, __version__
from jobworker.slots import Slots

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
JOB_MODULE = "noop_jobs"
HANDLERS = {"sync": "noop", "async": "anoop"}  # --handler -> attribute of noop_jobs
BATCH_CHUNK = 1000
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 60.0
FAILED_STATUSES = (JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED)


class BenchmarkError(Exception):
    """The benchmark could not complete (a worker died, jobs failed, a timeout)."""


# Backends -----------------------------------------------------------------------------------


class Backend(Protocol):
    """Where the benchmark's databases live."""

    name: str

    def new_database(self, label: str) -> str:
        """The URL of a new, empty database (the schema may be created on first use)."""
        ...

    def close(self) -> None:
        """Remove every database this backend created."""
        ...


class SQLiteBackend:
    """Database files in a temporary directory, deleted by `close()`."""

    name = "sqlite"

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="jobworker-bench-"))

    def new_database(self, label: str) -> str:
        return f"sqlite:///{self._dir / f'{label}.db'}"

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class PostgresBackend:
    """Fresh databases `jw_bench_<random>` on the server at $JOBWORKER_BENCH_PG_URL (default: the
    local server), migrated with `jobworker migrate`'s code and dropped by `close()`."""

    name = "postgres"

    def __init__(self) -> None:
        self.admin_url = os.environ.get(
            "JOBWORKER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        )
        self._databases: list[str] = []

    def _url(self, database: str) -> str:
        return f"{self.admin_url.rpartition('/')[0]}/{database}"

    def new_database(self, label: str) -> str:
        name = f"jw_bench_{label}_{os.getpid()}_{len(self._databases)}"
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"'))
        self._databases.append(name)
        url = self._url(name)
        asyncio.run(self._migrate(url))
        return url

    async def _admin(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def _migrate(self, url: str) -> None:
        storage = App(database_url=url, bind=False).create_storage()
        await storage.open()
        try:
            await storage.schema.migrate()
        finally:
            await storage.close()

    def drop_index(self, url: str, index: str) -> None:
        """Drop one index of jobworker's schema from the database at `url`."""

        async def drop() -> None:
            import asyncpg

            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f'DROP INDEX jobworker."{index}"')
            finally:
                await conn.close()

        asyncio.run(drop())

    def close(self) -> None:
        for name in self._databases:
            asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


BACKENDS: dict[str, Callable[[], Backend]] = {
    "sqlite": SQLiteBackend,
    "postgres": PostgresBackend,
}


@contextlib.contextmanager
def open_backend(name: str) -> Iterator[Backend]:
    backend = BACKENDS[name]()
    try:
        yield backend
    finally:
        backend.close()


# Figures ------------------------------------------------------------------------------------


@dataclass
class DrainFigures:
    startup_s: float  # supervisor process start -> first poll that saw a succeeded job
    steady_s: float  # first poll that saw a success -> poll that saw all succeeded
    total_s: float  # supervisor process start -> poll that saw all succeeded
    steady_jobs: int  # jobs that succeeded within steady_s
    steady_per_s: float | None  # None when every job was already done at the first poll
    total_per_s: float
    supervisor_exit_code: int
    worker_log: list[str] = field(default_factory=list)


@dataclass
class LatencyFigures:
    jobs: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Results:
    backend: str
    jobs: int
    concurrency: int
    parallelism: int | None  # None: the worker's default slots (slots.py)
    handler: str
    single: int
    single_sync_per_s: float
    single_async_per_s: float
    batch_per_s: float
    drain: DrainFigures
    batch_runs: list[float] = field(default_factory=list)
    drain_runs: list[float] = field(default_factory=list)
    latency: LatencyFigures | None = None
    peers: dict[str, Any] | None = None
    without_index: dict[str, Any] | None = None
    python: str = platform.python_version()
    jobworker: str = __version__
    cpus: int = os.cpu_count() or 1


# Enqueue ------------------------------------------------------------------------------------


def load_jobs() -> ModuleType:
    """`noop_jobs` as the same top-level module the workers import."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module(JOB_MODULE)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def enqueue_single_sync(app: App, fn: JobFunction[Any, Any], count: int) -> float:
    app.client.counts()  # open the storage (and create the schema) outside the timing
    started = time.perf_counter()
    for i in range(count):
        fn.delay(n=i)
    return rate(count, time.perf_counter() - started)


def enqueue_single_async(app: App, fn: JobFunction[Any, Any], count: int) -> float:
    async def run() -> float:
        try:
            await app.client.acounts()  # open this loop's storage outside the timing
            started = time.perf_counter()
            for i in range(count):
                await fn.adelay(n=i)
            return rate(count, time.perf_counter() - started)
        finally:
            await app.aclose()

    return asyncio.run(run())


def enqueue_batches(app: App, fn: JobFunction[Any, Any], count: int) -> float:
    app.client.counts()
    started = time.perf_counter()
    for start in range(0, count, BATCH_CHUNK):
        fn.delay_many([{"n": i} for i in range(start, min(start + BATCH_CHUNK, count))])
    return rate(count, time.perf_counter() - started)


# Drain --------------------------------------------------------------------------------------


def worker_command(url: str, concurrency: int, parallelism: int | None) -> list[str]:
    """`jobworker run` for the no-op jobs; without `parallelism`, at the worker's own default."""
    slots = [] if parallelism is None else ["--parallelism", str(parallelism)]
    return [
        sys.executable,
        "-m",
        "jobworker",
        "--log-level",
        "WARNING",
        "run",
        JOB_MODULE,
        "--concurrency",
        str(concurrency),
        *slots,
        "--database-url",
        url,
    ]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(BENCH_DIR), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def stop_supervisor(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a graceful drain), then SIGKILL if it takes longer than STOP_TIMEOUT."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def measure_drain(
    app: App, jobs: int, concurrency: int, parallelism: int | None, timeout: float
) -> DrainFigures:
    url = app.settings.database_url
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            worker_command(url, concurrency, parallelism),
            env=worker_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            first_at, first_done, last_at = poll_until_done(app, process, jobs, started, timeout)
        except BaseException as exc:
            code = stop_supervisor(process)
            lines = read_log(log)
            detail = "\n".join(lines[-40:]) or "(no output)"
            if isinstance(exc, BenchmarkError):
                raise BenchmarkError(
                    f"{exc}\nsupervisor exit code: {code}\nworker output:\n{detail}"
                ) from None
            raise
        code = stop_supervisor(process)
        lines = read_log(log)
    steady_s = last_at - first_at
    steady_jobs = jobs - first_done
    total_s = last_at - started
    return DrainFigures(
        startup_s=first_at - started,
        steady_s=steady_s,
        total_s=total_s,
        steady_jobs=steady_jobs,
        steady_per_s=rate(steady_jobs, steady_s) if steady_jobs else None,
        total_per_s=rate(jobs, total_s),
        supervisor_exit_code=code,
        worker_log=lines,
    )


def poll_until_done(
    app: App, process: subprocess.Popen[bytes], jobs: int, started: float, timeout: float
) -> tuple[float, int, float]:
    """(time of the first poll that saw a success, successes it saw, time all had succeeded)."""
    first: tuple[float, int] | None = None
    while True:
        now = time.perf_counter()  # the poll's snapshot is taken at (about) its start
        counts = app.client.counts()
        done = counts[JobStatus.SUCCEEDED]
        if done and first is None:
            first = (now, done)
        if done >= jobs:
            assert first is not None
            return first[0], first[1], now
        failed = {status.value: counts[status] for status in FAILED_STATUSES if counts[status]}
        if failed:
            raise BenchmarkError(f"jobs did not succeed: {failed}")
        if process.poll() is not None:
            raise BenchmarkError(
                f"the supervisor exited early (code {process.returncode}) "
                f"with {done}/{jobs} job(s) succeeded"
            )
        if now - started > timeout:
            raise BenchmarkError(
                f"timed out after {timeout:.0f}s with {done}/{jobs} job(s) succeeded: "
                f"{ {status.value: n for status, n in counts.items() if n} }"
            )
        time.sleep(POLL_INTERVAL)


def read_log(log: IO[bytes]) -> list[str]:
    log.seek(0)
    return log.read().decode(errors="replace").splitlines()


# Idle latency -------------------------------------------------------------------------------


LATENCY_GAP = 0.02  # seconds between two enqueues: each job finds idle workers


def measure_latency(
    app: App, module: ModuleType, jobs: int, concurrency: int, parallelism: int | None
) -> LatencyFigures:
    """Enqueue-to-start time of `jobs` jobs enqueued one at a time to idle workers."""
    fn: JobFunction[Any, Any] = module.latency
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            worker_command(app.settings.database_url, concurrency, parallelism),
            env=worker_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            warm = fn.delay(sent=time.time())  # the workers are up once this one has run
            deadline = time.monotonic() + 60
            while (job := warm.get()) is None or job.status is not JobStatus.SUCCEEDED:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise BenchmarkError("the latency workers did not start")
                time.sleep(0.05)
            time.sleep(0.5)  # every worker process idle and listening

            async def enqueue_spaced() -> list[Any]:
                try:
                    handles = []
                    for _ in range(jobs):
                        handles.append(await fn.adelay(sent=time.time()))
                        await asyncio.sleep(LATENCY_GAP)
                    return handles
                finally:
                    await app.aclose()

            handles = asyncio.run(enqueue_spaced())
            deadline = time.monotonic() + 60
            while True:
                found = [h.get() for h in handles]
                if all(j is not None and j.status is JobStatus.SUCCEEDED for j in found):
                    break
                if time.monotonic() > deadline:
                    raise BenchmarkError("latency jobs did not all succeed")
                time.sleep(0.1)
        finally:
            stop_supervisor(process)
    samples = sorted(float(j.result) * 1000 for j in found if j is not None)
    return LatencyFigures(
        jobs=len(samples),
        p50_ms=percentile(samples, 50),
        p99_ms=percentile(samples, 99),
        max_ms=samples[-1],
    )


def percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# Peers --------------------------------------------------------------------------------------


PEERS_PYTHON = BENCH_DIR / ".venv-peers" / "bin" / "python"


PEER_SCRIPTS = {  # name -> (script in benchmarks/peers, runs in the peers' venv)
    "ceiling": ("ceiling_bench.py", False),
    "pgqueuer": ("pgqueuer_bench.py", True),
    "procrastinate": ("procrastinate_bench.py", True),
    "celery": ("celery_bench.py", True),
}
PEER_TITLES = {
    "ceiling": "raw asyncpg ceiling",
    "pgqueuer": "PgQueuer",
    "procrastinate": "Procrastinate",
    "celery": "Celery (Redis)",
}


def peer_command(
    name: str, admin_url: str, jobs: int, concurrency: int, parallelism: int
) -> list[str]:
    """The command that runs one peer's benchmark and prints its figures as JSON."""
    script, in_peers_venv = PEER_SCRIPTS[name]
    python = str(PEERS_PYTHON) if in_peers_venv else sys.executable
    command = [python, str(BENCH_DIR / "peers" / script), "--jobs", str(jobs), "--json"]
    command += ["--concurrency", str(concurrency)]
    if name != "celery":
        command += ["--dsn", admin_url]
    if name == "pgqueuer":
        command += ["--batch-size", "100"]
    if name in ("ceiling", "procrastinate"):
        command += ["--parallelism", str(parallelism)]
    return command


def run_peer(
    name: str, admin_url: str, jobs: int, concurrency: int, parallelism: int
) -> dict[str, Any]:
    """One peer's figures on the same server (PgQueuer and the others from their own venv)."""
    if PEER_SCRIPTS[name][1] and not PEERS_PYTHON.exists():
        raise BenchmarkError("not installed: run `bash benchmarks/peers/setup.sh`")
    result = subprocess.run(
        peer_command(name, admin_url, jobs, concurrency, parallelism),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        raise BenchmarkError(f"exit code {result.returncode}: {lines[-1]}")
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


class PeerRuns:
    """The peers' runs, one round (every peer once, in turn) after each of jobworker's repeats,
    so that each system's runs are spread over the same stretch of the machine's load."""

    def __init__(self, admin_url: str, jobs: int, concurrency: int, parallelism: int) -> None:
        self.command = (admin_url, jobs, concurrency, parallelism)
        self.runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PEER_SCRIPTS}
        self.errors: dict[str, str] = {}  # a peer that failed once is not run again

    def run_round(self, run: int, repeat: int) -> None:
        for name in PEER_SCRIPTS:
            if name in self.errors:
                continue
            progress(f"[{run}/{repeat}] peer: {PEER_TITLES[name]} ...")
            try:
                self.runs[name].append(run_peer(name, *self.command))
            except (BenchmarkError, subprocess.TimeoutExpired, ValueError) as exc:
                self.errors[name] = str(exc).splitlines()[0]

    def summary(self) -> dict[str, Any]:
        """Per peer, the medians of its runs and each run's steady drain, or `error` (one line)
        when it could not be measured."""
        peers: dict[str, Any] = {}
        for name, runs in self.runs.items():
            if name in self.errors:
                peers[name] = {"error": self.errors[name]}
            else:
                peers[name] = median_figures(runs)
                peers[name]["drain_runs"] = [drain_steady(r) for r in runs]
        return peers


def drain_steady(figures: dict[str, Any]) -> float:
    """A peer's steady drain rate: PgQueuer's best configuration, or the only one."""
    drain = figures["drain"]
    if "steady" in drain:
        return float(drain["steady"] or 0.0)
    return max(float(d["steady"] or 0.0) for d in drain.values())


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or theirs is 0."""
    if ours is None or not theirs:
        return None
    return ours / theirs


# SQLite peer: Huey ---------------------------------------------------------------------------


def run_huey(jobs: int, workers: int) -> dict[str, Any]:
    """Huey's figures (SqliteHuey, `workers` consumer processes), from the peers' venv."""
    if not PEERS_PYTHON.exists():
        raise BenchmarkError("Huey is not installed: run `bash benchmarks/peers/setup.sh`")
    progress(f"Huey (SqliteHuey), {jobs:,} tasks, {workers} consumer process(es) ...")
    command = [str(PEERS_PYTHON), str(BENCH_DIR / "peers" / "huey_bench.py")]
    command += ["--jobs", str(jobs), "--workers", str(workers), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise BenchmarkError(f"the Huey benchmark failed:\n{result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def huey_rows(r: Results, huey: dict[str, Any]) -> list[tuple[str, str, str]]:
    ours = r.drain.steady_per_s or 0.0
    return [
        ("Huey", str(huey.get("version", "?")), "SqliteHuey, measured in this run, its own venv"),
        (
            "Huey enqueue",
            f"{huey['enqueue_per_s']:,.0f} jobs/s",
            f"one at a time; jobworker .delay() / Huey = "
            f"{r.single_sync_per_s / huey['enqueue_per_s']:.2f}x",
        ),
        (
            "Huey drain (steady state)",
            f"{huey['steady_per_s']:,.0f} jobs/s",
            f"{huey['workers']} consumer processes; incl. start-up "
            f"{huey['total_per_s']:,.0f} jobs/s",
        ),
        (
            "drain ratio vs Huey",
            f"{ours / huey['steady_per_s']:.2f}x",
            "jobworker steady / Huey steady, medians, runs alternated",
        ),
    ]


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-figure medians of several runs of the same nested JSON shape."""
    first = runs[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            merged[key] = median_figures([run[key] for run in runs])
        elif isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = statistics.median(run[key] for run in runs)
        else:
            merged[key] = value
    return merged


# Running ------------------------------------------------------------------------------------


def slots_chosen(parallelism: int | None) -> str:
    """The slots a worker process runs with, as its start line says them."""
    slots = Slots.of(Settings.load(), parallelism)
    return str(slots) if parallelism is not None else f"{slots} (the default)"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(args: argparse.Namespace) -> Results:
    module = load_jobs()
    fn: JobFunction[Any, Any] = getattr(module, HANDLERS[args.handler])
    peer_runs = None
    if args.peers and args.backend == "postgres":
        # The peers hold as many jobs in flight as jobworker's async slots.
        in_flight = args.parallelism or Slots.of(Settings.load()).async_slots
        peer_runs = PeerRuns(PostgresBackend().admin_url, args.jobs, args.concurrency, in_flight)
    with open_backend(args.backend) as backend:
        app = App(database_url=backend.new_database("enqueue"))
        try:
            progress(f"single enqueue: {args.single:,} x .delay() ...")
            single_sync = enqueue_single_sync(app, fn, args.single)
            progress(f"single enqueue: {args.single:,} x await .adelay() ...")
            single_async = enqueue_single_async(app, fn, args.single)
        finally:
            app.close()

        batch_runs: list[float] = []
        drains: list[DrainFigures] = []
        drains_without: list[float] = []
        huey_runs: list[dict[str, Any]] = []
        if args.without_index and not isinstance(backend, PostgresBackend):
            raise BenchmarkError("--without-index drops a PostgreSQL index: use --backend postgres")
        for run in range(1, args.repeat + 1):
            app = App(database_url=backend.new_database(f"drain{run}"))
            try:
                progress(f"[{run}/{args.repeat}] batch enqueue: {args.jobs:,} jobs ...")
                batch_runs.append(enqueue_batches(app, fn, args.jobs))
                queued = app.client.counts()[JobStatus.QUEUED]
                if queued != args.jobs:
                    raise BenchmarkError(f"expected {args.jobs} queued jobs, found {queued}")
                progress(
                    f"[{run}/{args.repeat}] drain: {args.concurrency} process(es) "
                    f"x {slots_chosen(args.parallelism)} ..."
                )
                drains.append(
                    measure_drain(app, args.jobs, args.concurrency, args.parallelism, args.timeout)
                )
            finally:
                app.close()
            if args.peers and args.backend == "sqlite":
                huey_runs.append(run_huey(args.jobs, args.concurrency))  # alternating
            if args.without_index:
                drains_without.append(
                    drain_without_index(backend, args, fn, run, args.without_index)
                )
            if peer_runs is not None:
                peer_runs.run_round(run, args.repeat)
        batch = statistics.median(batch_runs)
        drains.sort(key=lambda d: d.steady_per_s or 0.0)
        drain = drains[len(drains) // 2]  # the median run

        latency = None
        if args.latency:
            app = App(database_url=backend.new_database("latency"))
            try:
                progress(f"idle latency: {args.latency} jobs enqueued one at a time ...")
                latency = measure_latency(
                    app, module, args.latency, args.concurrency, args.parallelism
                )
            finally:
                app.close()
    peers = None if peer_runs is None else peer_runs.summary()
    if huey_runs:
        peers = {"huey": median_figures(huey_runs)}
    return Results(
        backend=args.backend,
        jobs=args.jobs,
        concurrency=args.concurrency,
        parallelism=args.parallelism,
        handler=fn.name,
        single=args.single,
        single_sync_per_s=single_sync,
        single_async_per_s=single_async,
        batch_per_s=batch,
        drain=drain,
        batch_runs=batch_runs,
        drain_runs=[d.steady_per_s or 0.0 for d in drains],
        latency=latency,
        peers=peers,
        without_index=None
        if not drains_without
        else {
            "index": args.without_index,
            "runs": drains_without,
            "steady_per_s": statistics.median(drains_without),
            "with_over_without": statistics.median([d.steady_per_s or 0.0 for d in drains])
            / statistics.median(drains_without),
        },
    )


def drain_without_index(
    backend: Backend, args: argparse.Namespace, fn: JobFunction[Any, Any], run: int, index: str
) -> float:
    """The steady drain rate of a database like the others but for `index`, dropped."""
    assert isinstance(backend, PostgresBackend)
    url = backend.new_database(f"noindex{run}")
    backend.drop_index(url, index)
    app = App(database_url=url)
    try:
        progress(f"[{run}/{args.repeat}] without {index}: batch enqueue and drain ...")
        enqueue_batches(app, fn, args.jobs)
        drained = measure_drain(app, args.jobs, args.concurrency, args.parallelism, args.timeout)
        return drained.steady_per_s or 0.0
    finally:
        app.close()


def format_report(r: Results) -> str:
    d = r.drain
    steady = f"{d.steady_per_s:,.0f} jobs/s" if d.steady_per_s is not None else "n/a"
    rows = [
        ("backend", r.backend, ""),
        ("jobs", f"{r.jobs:,}", ""),
        ("concurrency", str(r.concurrency), "worker processes"),
        ("slots", slots_chosen(r.parallelism), "per process"),
        ("handler", r.handler, ""),
        ("single enqueue (sync)", f"{r.single_sync_per_s:,.0f} jobs/s", f"{r.single:,} x .delay()"),
        (
            "single enqueue (async)",
            f"{r.single_async_per_s:,.0f} jobs/s",
            f"{r.single:,} x await .adelay()",
        ),
        (
            "batch enqueue",
            f"{r.batch_per_s:,.0f} jobs/s",
            f".delay_many() x {BATCH_CHUNK}"
            + (f", median of {runs_text(r.batch_runs)}" if len(r.batch_runs) > 1 else ""),
        ),
        ("worker start-up", f"{d.startup_s:.2f} s", "process start -> first success seen"),
        (
            "drain (steady state)",
            steady,
            f"{d.steady_jobs:,} jobs in {d.steady_s:.2f} s, first -> last success"
            + (f"; median of {runs_text(r.drain_runs)}" if len(r.drain_runs) > 1 else ""),
        ),
        (
            "drain (incl. start-up)",
            f"{d.total_per_s:,.0f} jobs/s",
            f"{r.jobs:,} jobs in {d.total_s:.2f} s from process start",
        ),
        ("supervisor exit code", str(d.supervisor_exit_code), "after SIGTERM"),
        ("host", f"{r.cpus} CPUs", f"Python {r.python}, jobworker {r.jobworker}"),
    ]
    if r.latency is not None:
        rows.append(
            (
                "idle latency p50 / p99",
                f"{r.latency.p50_ms:.1f} / {r.latency.p99_ms:.1f} ms",
                f"{r.latency.jobs} jobs enqueued one at a time, enqueue -> handler start",
            )
        )
    if r.peers and "huey" in r.peers:
        rows.extend(huey_rows(r, r.peers["huey"]))
    if r.without_index:
        w = r.without_index
        rows.append(
            (
                f"drain without {w['index']}",
                f"{w['steady_per_s']:,.0f} jobs/s",
                f"with / without: {w['with_over_without']:.3f}; runs "
                + ", ".join(f"{x:,.0f}" for x in w["runs"]),
            )
        )
    label_width = max(len(label) for label, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    lines = ["jobworker throughput benchmark"]
    for label, value, note in rows:
        line = f"  {label:<{label_width}}  {value:>{value_width}}"
        lines.append(f"{line}   ({note})" if note else line)
    lines.extend(format_peers(r))
    if d.worker_log:
        lines.append(f"worker output ({len(d.worker_log)} line(s), log level WARNING):")
        lines.extend(f"  | {line}" for line in d.worker_log[:20])
        if len(d.worker_log) > 20:
            lines.append(f"  | ... {len(d.worker_log) - 20} more")
    return "\n".join(lines)


def runs_text(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in sorted(values))


def format_peers(r: Results) -> list[str]:
    """One table: each system's batch enqueue, steady drain and idle latency, and the ratios
    jobworker / system; a peer that could not be measured gets one line saying why. (SQLite's
    peer, Huey, is reported in the main table: `huey_rows`.)"""
    if not r.peers or r.backend != "postgres":
        return []
    ours = {
        "batch_enqueue": r.batch_per_s,
        "drain": r.drain.steady_per_s,
        "p50": r.latency.p50_ms if r.latency else None,
        "p99": r.latency.p99_ms if r.latency else None,
    }
    header = ("system", "enqueue/s", "drain/s", "p50 ms", "p99 ms", "jw/x enq", "jw/x drain")
    table = [header, ("jobworker " + r.jobworker, *figures_cells(ours), "", "")]
    failed: list[str] = []
    notes: list[str] = []
    for name, figures in r.peers.items():
        title = PEER_TITLES.get(name, name)
        if "error" in figures:
            failed.append(f"  {title}: not measured ({figures['error']})")
            continue
        lat = figures.get("latency_ms") or {}
        theirs = {
            "batch_enqueue": figures.get("batch_enqueue"),
            "drain": drain_steady(figures),
            "p50": lat.get("p50"),
            "p99": lat.get("p99"),
        }
        table.append(
            (
                f"{title} {figures.get('version', '')}".strip(),
                *figures_cells(theirs),
                ratio_text(ratio(ours["batch_enqueue"], theirs["batch_enqueue"])),
                ratio_text(ratio(ours["drain"], theirs["drain"])),
            )
        )
        runs = figures.get("drain_runs") or []
        if len(runs) > 1:
            notes.append(f"  {title} drain runs: {runs_text(runs)}")
        if name == "pgqueuer":
            configs = ", ".join(
                f"{config} {'n/a' if d['steady'] is None else format(d['steady'], ',.0f')}"
                for config, d in figures["drain"].items()
            )
            notes.append(f"  PgQueuer drain by configuration (best in the table): {configs}")
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["side by side (medians; jw/x = jobworker / that system):"]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines + notes + failed


def figures_cells(f: dict[str, float | None]) -> tuple[str, str, str, str]:
    def number(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return (
        number(f["batch_enqueue"], ",.0f"),
        number(f["drain"], ",.0f"),
        number(f["p50"], ".1f"),
        number(f["p99"], ".1f"),
    )


def ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure jobworker's enqueue and drain throughput.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--jobs", type=positive_int, default=20_000, help="jobs to drain")
    parser.add_argument("--concurrency", type=positive_int, default=2, help="worker processes")
    parser.add_argument(
        "--parallelism",
        type=positive_int,
        default=None,
        help="slots per process, shared by both kinds (default: none given, the worker's own: "
        "async_slots for async handlers, thread_slots for sync ones)",
    )
    parser.add_argument(
        "--single", type=positive_int, default=2000, help="jobs enqueued one at a time"
    )
    parser.add_argument(
        "--handler", choices=sorted(HANDLERS), default="async", help="bench.noop or bench.anoop"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the drain"
    )
    parser.add_argument(
        "--latency",
        type=int,
        default=200,
        help="jobs for the idle enqueue-to-start latency (0: skip)",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run the peers and print the ratios: on postgres the ceiling loop, PgQueuer, "
        "Procrastinate and Celery; on sqlite Huey",
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="batch enqueue and drain this many times (and each peer too); medians are reported",
    )
    parser.add_argument(
        "--without-index",
        metavar="NAME",
        help="also drain, in each repeat, a database without this index (postgres only)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def run_main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], Any],
    report: Callable[[Any], str],
) -> int:
    """A benchmark's `main`: run it, print its report (or its figures as JSON with --json), and
    exit 1 with the reason when it could not be measured."""
    try:
        results = run(args)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(results), indent=2))
    else:
        print(report(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), run_benchmark, format_report)


if __name__ == "__main__":
    sys.exit(main())
