"""Where a SQLite drain's time goes: statements and write transactions per job, lock waits, and
a cProfile of each worker process (every thread: the event loop's and the connection's).

Usage:

    python benchmarks/sqlite_profile.py --jobs 20000 --concurrency 2 [--parallelism 10] \
        [--top 30] [--output DIR]

It enqueues `--jobs` no-op jobs (`bench.anoop`) into a fresh SQLite file, then runs
`jobworker run noop_jobs` on it as `benchmarks/throughput.py` does, but through this script's
`--instrumented` mode, which patches the process before the supervisor forks its workers:

- `Session`'s statement methods count each named statement of `sql/sqlite/queries.sql` (and the
  rows of an `executemany`), per process;
- `Database.write` counts the write calls (several share a write transaction when they wait
  together: group commit);
- `Session.transaction` counts write transactions and times how long `BEGIN IMMEDIATE` waited
  for the write lock (SQLite's busy handler waits inside that call); `Session.snapshot` counts
  read transactions; the lock retries past the busy timeout are counted as they are logged;
- every thread of every forked worker runs under its own `cProfile.Profile`.

Each worker process writes its figures to `--output` (a temporary directory by default) once a
second; the report sums them over the workers, divides by the jobs drained, and prints the
functions with the most own time. Profiling slows the workers (several times): the figures per
job are what to compare, not the rate.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import marshal
import os
import pstats
import runpy
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DUMP_INTERVAL = 1.0


# The instrumented supervisor (--instrumented) -------------------------------------------------


class Figures:
    """One process's counts, written to `<output>/<pid>.json` (and its profiles to `.prof`)."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.statements: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self.write_calls = 0
        self.transactions = 0
        self.snapshots = 0
        self.begin_wait_s = 0.0
        self.max_begin_wait_s = 0.0
        self.transaction_s = 0.0
        self.lock_retries = 0
        self.profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def dump(self) -> None:
        pid = os.getpid()
        stats: dict[Any, Any] = {}
        with self.lock:
            profiles = list(self.profiles)
        for profile in profiles:
            profile.snapshot_stats()  # reads the profile without disabling it
            for key, value in profile.stats.items():
                if key in stats:  # the same function on two threads: add the figures
                    cc, nc, tt, ct, callers = stats[key]
                    cc2, nc2, tt2, ct2, callers2 = value
                    stats[key] = (cc + cc2, nc + nc2, tt + tt2, ct + ct2, {**callers, **callers2})
                else:
                    stats[key] = value
        partial = self.output / f"{pid}.prof.partial"
        with open(partial, "wb") as handle:
            marshal.dump(stats, handle)
        os.replace(partial, self.output / f"{pid}.prof")  # never read half-written
        figures = {
            "statements": dict(self.statements),
            "rows": dict(self.rows),
            "write_calls": self.write_calls,
            "transactions": self.transactions,
            "snapshots": self.snapshots,
            "begin_wait_s": self.begin_wait_s,
            "max_begin_wait_s": self.max_begin_wait_s,
            "transaction_s": self.transaction_s,
            "lock_retries": self.lock_retries,
        }
        (self.output / f"{pid}.json").write_text(json.dumps(figures))


def instrument(output: Path) -> None:
    """Patch jobworker's SQLite session and profile every thread of every forked child."""
    from jobworker.storage.sqlite import connection

    figures = Figures(output)
    count_statements(figures, connection.Session)
    time_transactions(figures, connection.Session)
    count_write_calls(figures, connection.Database)
    profile_children(figures)


def count_statements(figures: Figures, session: Any) -> None:
    """Count each named statement (and each executemany's rows) and the lock retries logged."""
    import logging

    def counted(method_name: str) -> None:
        method = getattr(session, method_name)

        def wrapper(self: Any, name: str, params: Any = ()) -> Any:
            figures.statements[name] += 1
            if method_name == "execute_many":
                params = list(params)
                figures.rows[name] += len(params)
            result = method(self, name, params)
            if name == "claim":  # the jobs claimed: what the figures are divided by
                result = list(result)
                figures.rows["claimed"] += len(result)
            return result

        setattr(session, method_name, wrapper)

    for method_name in ("execute", "execute_many", "one", "all", "scalar"):
        counted(method_name)

    class Retries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "locked" in record.getMessage():
                figures.lock_retries += 1

    logging.getLogger("jobworker.storage.sqlite").addHandler(Retries())


def count_write_calls(figures: Figures, database: Any) -> None:
    write = database.write

    async def counted(self: Any, fn: Any) -> Any:
        figures.write_calls += 1
        return await write(self, fn)

    database.write = counted


def time_transactions(figures: Figures, session: Any) -> None:
    """Count write and read transactions; time the wait for the write lock and the hold."""

    transaction = session.transaction
    snapshot = session.snapshot

    @contextlib.contextmanager
    def timed_transaction(self: Any) -> Iterator[None]:
        conn = self._conn
        execute = conn.execute
        started = time.perf_counter()
        begun: list[float] = []

        class Timing:  # sees BEGIN IMMEDIATE return: the write lock is held from then on
            def execute(self, sql: str, *args: Any) -> Any:
                result = execute(sql, *args)
                if sql == "BEGIN IMMEDIATE":
                    begun.append(time.perf_counter())
                return result

        self._conn = Timing()
        try:
            with transaction(self):
                self._conn = conn
                yield
        finally:
            self._conn = conn
            ended = time.perf_counter()
            figures.transactions += 1
            if begun:
                wait = begun[0] - started
                figures.begin_wait_s += wait
                figures.max_begin_wait_s = max(figures.max_begin_wait_s, wait)
                figures.transaction_s += ended - begun[0]

    @contextlib.contextmanager
    def counted_snapshot(self: Any) -> Iterator[None]:
        figures.snapshots += 1
        with snapshot(self):
            yield

    session.transaction = timed_transaction
    session.snapshot = counted_snapshot


def profile_children(figures: Figures) -> None:
    """Every thread of every child forked from now on runs under its own cProfile.Profile, and
    the child writes its figures every DUMP_INTERVAL seconds."""

    def profile_thread(*_: Any) -> None:
        profile = cProfile.Profile()
        with figures.lock:
            figures.profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    def in_child() -> None:
        figures.statements.clear()
        figures.rows.clear()
        figures.write_calls = figures.transactions = figures.snapshots = figures.lock_retries = 0
        figures.begin_wait_s = figures.max_begin_wait_s = figures.transaction_s = 0.0
        figures.profiles = []
        threading.setprofile(profile_thread)
        profile_thread()

        def dump_forever() -> None:
            while True:
                time.sleep(DUMP_INTERVAL)
                figures.dump()

        threading.Thread(target=dump_forever, name="profile-dump", daemon=True).start()

    os.register_at_fork(after_in_child=in_child)


def run_instrumented(output: Path, argv: list[str]) -> None:
    instrument(output)
    sys.argv = ["jobworker", *argv]
    runpy.run_module("jobworker", run_name="__main__")


# The benchmark side ---------------------------------------------------------------------------


def measure(args: argparse.Namespace, output: Path) -> tuple[Any, int]:
    sys.path.insert(0, str(BENCH_DIR))
    import throughput

    from jobworker import App

    module = throughput.load_jobs()
    with throughput.open_backend("sqlite") as backend:
        app = App(database_url=backend.new_database("profile"))
        try:
            throughput.enqueue_batches(app, module.anoop, args.jobs)
            command = throughput.worker_command(
                app.settings.database_url, args.concurrency, args.parallelism
            )
            command[1:3] = [str(Path(__file__).resolve()), "--instrumented", str(output), "--"]
            original = throughput.worker_command
            throughput.worker_command = lambda *_: command
            try:
                drained = throughput.measure_drain(
                    app, args.jobs, args.concurrency, args.parallelism, args.timeout
                )
            finally:
                throughput.worker_command = original
            time.sleep(DUMP_INTERVAL * 1.5)  # the workers' last dump (they are stopped by now)
        finally:
            app.close()
    return drained, args.jobs


def report(output: Path, jobs: int, drained: Any, top: int) -> str:
    totals: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    sums: Counter[str] = Counter()
    worker_stats: pstats.Stats | None = None
    lines = []
    for path in sorted(output.glob("*.json")):
        figures = json.loads(path.read_text())
        totals.update(figures["statements"])
        rows.update(figures["rows"])
        for key in (
            "write_calls",
            "transactions",
            "snapshots",
            "begin_wait_s",
            "transaction_s",
            "lock_retries",
        ):
            sums[key] += figures[key]
        sums["max_begin_wait_s"] = max(sums["max_begin_wait_s"], figures["max_begin_wait_s"])
        prof = path.with_suffix(".prof")
        if prof.exists():
            if worker_stats is None:
                worker_stats = pstats.Stats(str(prof))
            else:
                worker_stats.add(str(prof))
    steady = drained.steady_per_s or 0.0
    lines.append(f"SQLite drain profile: {jobs:,} jobs, {steady:,.0f} jobs/s (profiled)")
    # The workers' last figures are those of their last dump, a second or less before they
    # stopped: divide by the jobs those figures saw claimed.
    jobs = rows.pop("claimed", 0) or jobs
    lines.append(f"  worker processes' figures, per job (from {len(list(output.glob('*.json')))})")
    lines.append(f"    write calls          {sums['write_calls'] / jobs:8.3f}")
    lines.append(f"    write transactions   {sums['transactions'] / jobs:8.3f}")
    lines.append(f"    read transactions    {sums['snapshots'] / jobs:8.3f}")
    lines.append(f"    statements           {sum(totals.values()) / jobs:8.3f}")
    lines.append(f"    lock retries (total) {sums['lock_retries']:8.0f}")
    lines.append(
        f"    BEGIN IMMEDIATE wait {sums['begin_wait_s'] / jobs * 1e6:8.1f} us/job "
        f"(max {sums['max_begin_wait_s'] * 1000:.1f} ms)"
    )
    lines.append(f"    in write transaction {sums['transaction_s'] / jobs * 1e6:8.1f} us/job")
    lines.append(
        f"  write lock held {sums['transaction_s']:.2f} s in all, over a drain of "
        f"{drained.total_s:.2f} s from process start (one writer at a time: the bound)"
    )
    lines.append("  statements (calls per job, rows per job for executemany)")
    for name, count in totals.most_common():
        extra = f"  rows {rows[name] / jobs:.3f}" if name in rows else ""
        lines.append(f"    {name:<24} {count / jobs:8.4f}{extra}")
    text = "\n".join(lines)
    if worker_stats is not None:
        print(text, flush=True)
        print(f"  cProfile, all worker threads, top {top} by own time:", flush=True)
        worker_stats.sort_stats("tottime").print_stats(top)
        return ""
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Profile a SQLite drain: statements, transactions, lock waits, cProfile.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--top", type=int, default=30, help="cProfile rows to print")
    parser.add_argument("--output", type=Path, help="directory for the per-process figures")
    return parser.parse_args(argv)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--instrumented":
        rest = sys.argv[3:]
        run_instrumented(Path(sys.argv[2]), rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    args = parse_args()
    with contextlib.ExitStack() as stack:
        output = args.output or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        output.mkdir(parents=True, exist_ok=True)
        drained, jobs = measure(args, output)
        text = report(output, jobs, drained, args.top)
        if text:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
