"""Soak: drain many jobs in rounds on PostgreSQL with the janitor on, and watch whether the hot
tables stay the same size.

Usage (as root or as a user that can run `initdb`):

    python benchmarks/soak.py [--jobs 1000000] [--rounds 10] [--concurrency 2] \
        [--parallelism 50] [--events 1] [--result-ttl 2] [--pg-option NAME=VALUE ...] \
        [--timeout 3600] [--json]

What it does:

1. Starts a private PostgreSQL cluster: `initdb` into a temporary directory, `pg_ctl` on a free
   loopback port, autovacuum on with the server's default settings (`--pg-option` overrides one,
   e.g. `autovacuum_naptime=10s`). Started as root, the server runs as the `postgres` OS user.
   It is stopped and its directory removed when the soak ends, however it ends. (A shared
   server with autovacuum off, as the test suite's, would only show the tables growing.)
2. Creates the schema with the `jobworker migrate` command (version 10 sets the hot tables'
   storage parameters, see docs/operations.md).
3. Starts real workers, `python -m jobworker run soak_jobs --concurrency C --parallelism P`,
   with a short result TTL (`--result-ttl`, seconds) and the janitor and lease rescue every
   second, so finished jobs are purged soon after they end.
4. Per round: enqueues `--jobs / --rounds` jobs of `benchmarks/soak_jobs.py` (each stores
   `--events` progress events: `job_events` rows) with `delay_many`, 1000 per call; waits until
   the round has drained and the janitor has purged every job (the jobs table is empty); then
   prints the size of jobs, job_attempts and job_events (`pg_total_relation_size`: heap,
   indexes and TOAST), their dead and live rows and how often autovacuum has visited them
   (`pg_stat_user_tables`).
5. At the end: each table's size after the last round over its size after the first, and the
   goal, the three together within 1.5x.

The first round's sizes are the footprint of one round's rows; a later round that finds the
space the janitor freed already vacuumed reuses it, one that does not extends the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg

from jobworker import App, JobStatus

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
JOB_MODULE = "soak_jobs"
SCHEMA = "jobworker"
HOT_TABLES = ("jobs", "job_attempts", "job_events")
ENQUEUE_CHUNK = 1000
POLL_INTERVAL = 0.5
STOP_TIMEOUT = 60.0
GOAL = 1.5
UNSUCCESSFUL = (JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED)

TABLE_STATS = """
SELECT s.relname, pg_total_relation_size(s.relid), s.n_live_tup, s.n_dead_tup,
    s.autovacuum_count, s.autoanalyze_count, s.n_tup_upd, s.n_tup_hot_upd
FROM pg_stat_user_tables AS s
WHERE s.schemaname = $1 AND s.relname = ANY($2::text[])
"""


class SoakError(Exception):
    """The soak could not complete (the server did not start, a worker died, a timeout)."""


# The private server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateCluster:
    """A PostgreSQL cluster of its own in a temporary directory, on a loopback port."""

    def __init__(self, options: list[str]) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        found = shutil.which("initdb")
        if bins:
            self.bin = bins[-1]
        elif found:
            self.bin = Path(found).parent
        else:
            raise SoakError("no PostgreSQL server binaries (initdb, pg_ctl) found")
        self.options = ["autovacuum=on", "log_autovacuum_min_duration=0", *options]
        self.dir = Path(tempfile.mkdtemp(prefix="jobworker-soak-"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=180, check=False
        )
        if result.returncode != 0:
            raise SoakError(f"{Path(command[0]).name} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "--auth=trust", "-U", "postgres")
        settings = " ".join(f"-c {option}" for option in self.options)
        server = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 {settings}"
        log = str(self.dir / "server.log")
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-o", server, "-l", log, "-w", "start")
        self.started = True

    def autovacuum_runs(self) -> int:
        """Autovacuum visits of the soak's tables the server logged."""
        log = self.dir / "server.log"
        if not log.exists():
            return 0
        text = log.read_text(errors="replace")
        return sum(
            text.count(f'automatic vacuum of table "postgres.{SCHEMA}.{t}"') for t in HOT_TABLES
        )

    def remove(self) -> None:
        try:
            if self.started:
                data = str(self.dir / "data")
                self._run(str(self.bin / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_cluster(options: list[str]) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


# Workers ------------------------------------------------------------------------------------


def worker_env(url: str, result_ttl: float) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(BENCH_DIR), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        JOBWORKER_DATABASE_URL=url,
        JOBWORKER_DATABASE_SCHEMA=SCHEMA,
        JOBWORKER_RESULT_TTL=str(result_ttl),
        JOBWORKER_JANITOR_INTERVAL="1",
        JOBWORKER_RESCUE_INTERVAL="1",
    )
    env.pop("JOBWORKER_REDIS_URL", None)  # events go to the database, as rows of job_events
    return env


def migrate(url: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "jobworker", "migrate", "--database-url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise SoakError(f"jobworker migrate failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


@contextlib.contextmanager
def running_workers(
    concurrency: int, parallelism: int, env: dict[str, str], log: IO[bytes]
) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        *(sys.executable, "-m", "jobworker", "--log-level", "WARNING", "run", JOB_MODULE),
        *("--concurrency", str(concurrency), "--parallelism", str(parallelism)),
    ]
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def reset_storage_settings(url: str) -> None:
    """Undo version 10 (for comparison): the hot tables back to the server's defaults."""
    conn = await asyncpg.connect(url)
    try:
        for table in HOT_TABLES:
            options = await conn.fetchval(
                "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", f"{SCHEMA}.{table}"
            )
            names = ", ".join(option.split("=", 1)[0] for option in options or [])
            if names:
                await conn.execute(f"ALTER TABLE {SCHEMA}.{table} RESET ({names})")
    finally:
        await conn.close()


def log_tail(log: IO[bytes], lines: int = 40) -> str:
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:]) or "(no output)"


# Rounds -------------------------------------------------------------------------------------


@dataclass
class TableFigures:
    bytes: int
    live: int
    dead: int
    autovacuums: int
    autoanalyzes: int
    updates: int
    hot_updates: int


@dataclass
class Round:
    number: int
    jobs: int
    drain_s: float  # enqueue of the round's first chunk -> every job ended
    purge_s: float  # every job ended -> the jobs table empty
    tables: dict[str, TableFigures]

    @property
    def total_bytes(self) -> int:
        return sum(figures.bytes for figures in self.tables.values())


async def table_figures(url: str) -> dict[str, TableFigures]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(TABLE_STATS, SCHEMA, list(HOT_TABLES))
    finally:
        await conn.close()
    figures = {row[0]: TableFigures(*row[1:]) for row in rows}
    return {table: figures[table] for table in HOT_TABLES}


def wait_until(
    app: App, process: subprocess.Popen[bytes], done: Any, deadline: float, what: str
) -> None:
    """Poll the counts until `done(counts)`; raise on an unsuccessful job, a dead supervisor or
    the deadline."""
    while True:
        counts = app.client.counts()
        bad = {status.value: counts[status] for status in UNSUCCESSFUL if counts[status]}
        if bad:
            raise SoakError(f"jobs did not succeed: {bad}")
        if done(counts):
            return
        if process.poll() is not None:
            raise SoakError(f"the supervisor exited (code {process.returncode}) {what}")
        if time.monotonic() > deadline:
            left = {status.value: n for status, n in counts.items() if n}
            raise SoakError(f"timed out {what}: {left}")
        time.sleep(POLL_INTERVAL)


def run_round(
    app: App,
    process: subprocess.Popen[bytes],
    number: int,
    jobs: int,
    events: int,
    deadline: float,
) -> Round:
    from soak_jobs import step

    started = time.monotonic()
    for first in range(0, jobs, ENQUEUE_CHUNK):
        last = min(first + ENQUEUE_CHUNK, jobs)
        step.delay_many([{"n": n, "events": events} for n in range(first, last)])
    ended = {JobStatus.SUCCEEDED, *UNSUCCESSFUL}
    wait_until(
        app,
        process,
        lambda counts: all(n == 0 for status, n in counts.items() if status not in ended),
        deadline,
        f"in round {number} before its jobs ended",
    )
    drained = time.monotonic()
    wait_until(
        app,
        process,
        lambda counts: sum(counts.values()) == 0,
        deadline,
        f"in round {number} before the janitor purged its jobs",
    )
    purged = time.monotonic()
    time.sleep(1.0)  # backends report their table statistics at most once a second
    tables = asyncio.run(table_figures(app.settings.database_url))
    return Round(number, jobs, drained - started, purged - drained, tables)


# Report -------------------------------------------------------------------------------------


def megabytes(size: int) -> str:
    return f"{size / 1048576:.1f}"


HEADER = (
    f"{'round':>5} {'jobs/s':>8} {'purge s':>7} | "
    + " | ".join(f"{t + ' MB':>15} {'dead':>7} {'live':>6} {'av':>3}" for t in HOT_TABLES)
    + f" | {'total MB':>8}"
)


def round_line(figures: Round) -> str:
    rate = figures.jobs / figures.drain_s if figures.drain_s > 0 else float("inf")
    cells = [
        f"{megabytes(t.bytes):>15} {t.dead:>7} {t.live:>6} {t.autovacuums:>3}"
        for t in figures.tables.values()
    ]
    return (
        f"{figures.number:>5} {rate:>8.0f} {figures.purge_s:>7.1f} | "
        + " | ".join(cells)
        + f" | {megabytes(figures.total_bytes):>8}"
    )


def ratios(first: Round, last: Round) -> dict[str, float]:
    by_table = {t: last.tables[t].bytes / first.tables[t].bytes for t in HOT_TABLES}
    return {**by_table, "total": last.total_bytes / first.total_bytes}


def summary(first: Round, last: Round) -> str:
    found = ratios(first, last)
    held = "held" if found["total"] <= GOAL else "missed"
    tables = ", ".join(f"{t} {found[t]:.2f}x" for t in HOT_TABLES)
    jobs = last.tables["jobs"]
    return (
        f"jobs table: {jobs.updates} updates, {jobs.hot_updates} of them HOT\n"
        f"size after round {last.number} / after round {first.number}: "
        f"{found['total']:.2f}x ({tables}); goal <= {GOAL}x: {held}"
    )


# Main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--parallelism", type=int, default=50, help="slots per process")
    parser.add_argument("--events", type=int, default=1, help="progress events per job")
    parser.add_argument("--result-ttl", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--pg-option", action="append", default=[], metavar="NAME=VALUE",
        help="a server setting for the private cluster (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--reset-storage-settings", action="store_true",
        help="reset the hot tables' storage parameters after migrating (a comparison run)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds, all rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.jobs < args.rounds:
        parser.error("need at least 2 rounds and a job per round")
    return args


def soak(args: argparse.Namespace) -> list[Round]:
    sys.path.insert(0, str(BENCH_DIR))
    per_round = args.jobs // args.rounds
    deadline = time.monotonic() + args.timeout
    rounds: list[Round] = []
    with private_cluster(args.pg_option) as cluster, tempfile.TemporaryFile() as log:
        env = worker_env(cluster.url, args.result_ttl)
        print(f"private PostgreSQL {cluster.bin.parent.name} on 127.0.0.1:{cluster.port}, "
              f"settings: {', '.join(cluster.options)}")  # fmt: skip
        print(f"jobworker migrate: {migrate(cluster.url, env)}")
        if args.reset_storage_settings:
            asyncio.run(reset_storage_settings(cluster.url))
            print("storage parameters of the hot tables reset to the server's defaults")
        print(
            f"{args.rounds} rounds of {per_round} jobs, {args.events} event(s) each; "
            f"{args.concurrency} worker processes x {args.parallelism} slots; "
            f"result TTL {args.result_ttl:g} s, janitor every 1 s"
        )
        print(HEADER, flush=True)
        app = App(database_url=cluster.url, database_schema=SCHEMA, result_ttl=args.result_ttl)
        try:
            with running_workers(args.concurrency, args.parallelism, env, log) as process:
                try:
                    for number in range(1, args.rounds + 1):
                        rounds.append(
                            run_round(app, process, number, per_round, args.events, deadline)
                        )
                        print(round_line(rounds[-1]), flush=True)
                except SoakError as exc:
                    raise SoakError(f"{exc}\nworker output:\n{log_tail(log)}") from None
            print(f"autovacuum runs on the three tables (server log): {cluster.autovacuum_runs()}")
        finally:
            app.close()
    return rounds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rounds = soak(args)
    except SoakError as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1
    first, last = rounds[0], rounds[-1]
    print(summary(first, last))
    if args.json:
        figures = {
            "rounds": [{**asdict(r), "total_bytes": r.total_bytes} for r in rounds],
            "ratios": ratios(first, last),
            "goal": GOAL,
        }
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
