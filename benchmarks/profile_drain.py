"""Where a PostgreSQL drain's time goes: worker CPU and database cost per job, side by side.

    python benchmarks/profile_drain.py --jobs 20000 --repeat 3 \
        --variant base:/tmp/base:10 --variant new:.:10 [--cprofile DIR] [--pg-data DIR]

Each `--variant LABEL:TREE:PARALLELISM[:SETTING=VALUE,...]` (e.g.
`p100:.:100:claim_batch_size=128`: settings by field name, given to the workers as `JOBWORKER_*`
variables) drains `--jobs` no-op async jobs (`noop_jobs`, as
`benchmarks/throughput.py`) with `--concurrency` worker processes running the jobworker source
in TREE (put first on the workers' PYTHONPATH) at PARALLELISM slots (`default`: no
`--parallelism`, the worker's default slots); the variants alternate,
`--repeat` times each, each run on a fresh database of the server at $JOBWORKER_BENCH_PG_URL.
Every worker process is measured by `benchmarks/profiled_run.py`. Reported per run and as
medians: the steady drain rate, the workers' CPU µs per job, and, with `--pg-data` (a private
cluster's data directory: its postmaster counts the CPU of the backends that exit), the
database's CPU µs per job. When the server has `pg_stat_statements`, the statements' execution
time per job is printed for each variant's last run. `--cprofile DIR` runs the workers under
cProfile and keeps their stats in DIR/LABEL-RUN/; `--auto-explain` has the server log the plan
of every statement the workers run (EXPLAIN ANALYZE, BUFFERS; auto_explain), the claim
function's body included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from throughput import (
    BENCH_DIR,
    JOB_MODULE,
    PostgresBackend,
    enqueue_batches,
    load_jobs,
    poll_until_done,
    stop_supervisor,
)

from jobworker import App

STATEMENTS_SQL = """
SELECT calls, total_exec_time, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied,
       wal_bytes, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC LIMIT 12
"""


@dataclass
class Variant:
    label: str
    tree: Path
    parallelism: int | None  # None: no --parallelism, the worker's default
    settings: dict[str, str]  # JOBWORKER_* variables of its workers

    def slot_args(self) -> list[str]:
        return [] if self.parallelism is None else ["--parallelism", str(self.parallelism)]


@dataclass
class Run:
    steady_per_s: float
    worker_us_per_job: float
    db_us_per_job: float | None
    gc_us_per_job: float
    gc_collections: list[int]  # per generation, both processes
    statements: list[tuple[Any, ...]]


def parse_variant(text: str) -> Variant:
    """LABEL:TREE:PARALLELISM[:SETTING=VALUE,...] (settings by field name, lower case;
    PARALLELISM `default`: none given)."""
    label, tree, parallelism, *rest = text.split(":")
    settings = {}
    for pair in ",".join(rest).split(","):
        if pair:
            name, _, value = pair.partition("=")
            settings[f"JOBWORKER_{name.upper()}"] = value
    slots = None if parallelism == "default" else int(parallelism)
    return Variant(label, Path(tree).resolve(), slots, settings)


def postmaster_cpu(data_dir: Path | None) -> float | None:
    """CPU seconds of the postmaster's exited children and of its live ones."""
    if data_dir is None:
        return None
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    total = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            total += (int(stat[11]) + int(stat[12])) / tick  # utime, stime
    return total


async def _admin(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


def drain(backend: PostgresBackend, variant: Variant, args: argparse.Namespace, run: int) -> Run:
    module = load_jobs()
    url = backend.new_database(f"{variant.label}{run}")
    app = App(database_url=url)
    try:
        enqueue_batches(app, module.anoop, args.jobs)
        stats = True
        try:
            asyncio.run(_admin(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            asyncio.run(_admin(url, "SELECT pg_stat_statements_reset()"))
        except Exception:
            stats = False
        if args.auto_explain:
            # The workers' sessions log every statement's plan, nested ones (the claim's
            # function body) too, to the server's log.
            database = url.rpartition("/")[2]
            for setting in (
                "session_preload_libraries = 'auto_explain'",
                "auto_explain.log_min_duration = 0",
                "auto_explain.log_analyze = on",
                "auto_explain.log_buffers = on",
                "auto_explain.log_nested_statements = on",
            ):
                asyncio.run(_admin(backend.admin_url, f'ALTER DATABASE "{database}" SET {setting}'))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.cprofile) / f"{variant.label}-{run}" if args.cprofile else Path(tmp)
            out.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), str(variant.tree)])
            env.update(variant.settings)
            env["JOBWORKER_BENCH_PROFILE_DIR"] = str(out)
            env["JOBWORKER_BENCH_CPROFILE"] = "1" if args.cprofile else "0"
            command = [
                sys.executable,
                str(BENCH_DIR / "profiled_run.py"),
                "--log-level",
                "WARNING",
                "run",
                JOB_MODULE,
                "--concurrency",
                str(args.concurrency),
                *variant.slot_args(),
                "--database-url",
                url,
            ]
            db_before = postmaster_cpu(args.pg_data)
            started = time.perf_counter()
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
            try:
                first_at, first_done, last_at = poll_until_done(
                    app, process, args.jobs, started, args.timeout
                )
            finally:
                stop_supervisor(process)
            db_after = postmaster_cpu(args.pg_data)
            workers = [json.loads(p.read_text()) for p in out.glob("worker-*.json")]
        statements = asyncio.run(_admin(url, STATEMENTS_SQL)) if stats else []
    finally:
        app.close()
    jobs = sum(w["jobs"] for w in workers)
    cpu = sum(w["user_s"] + w["system_s"] for w in workers)
    db_us = None
    if db_before is not None and db_after is not None:
        db_us = (db_after - db_before) / args.jobs * 1e6
    return Run(
        steady_per_s=(args.jobs - first_done) / (last_at - first_at),
        worker_us_per_job=cpu / max(jobs, 1) * 1e6,
        db_us_per_job=db_us,
        gc_us_per_job=sum(w.get("gc_s", 0.0) for w in workers) / max(jobs, 1) * 1e6,
        gc_collections=[
            sum(w.get("gc_collections", [0, 0, 0])[g] for w in workers) for g in range(3)
        ],
        statements=statements,
    )


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):,.1f} (runs: {', '.join(f'{v:,.1f}' for v in values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True)
    parser.add_argument("--cprofile", default=None, help="keep cProfile stats here")
    parser.add_argument(
        "--auto-explain", action="store_true", help="log every plan (EXPLAIN ANALYZE, BUFFERS)"
    )
    parser.add_argument("--pg-data", type=Path, default=None, help="private cluster's data dir")
    args = parser.parse_args()
    runs: dict[str, list[Run]] = {v.label: [] for v in args.variant}
    backend = PostgresBackend()
    try:
        for run in range(1, args.repeat + 1):
            for variant in args.variant:
                result = drain(backend, variant, args, run)
                runs[variant.label].append(result)
                db = "-" if result.db_us_per_job is None else f"{result.db_us_per_job:,.0f}"
                print(
                    f"[{run}] {variant.label}: {result.steady_per_s:,.0f} jobs/s, worker "
                    f"{result.worker_us_per_job:,.0f} µs/job (gc {result.gc_us_per_job:,.1f}, "
                    f"collections {result.gc_collections}), "
                    f"database {db} µs/job",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        backend.close()
    first = args.variant[0].label
    base_rate = statistics.median(r.steady_per_s for r in runs[first])
    for variant in args.variant:
        results = runs[variant.label]
        rate = statistics.median(r.steady_per_s for r in results)
        shown = " ".join(f"{k}={v}" for k, v in variant.settings.items())
        slots = "default" if variant.parallelism is None else variant.parallelism
        print(f"\n== {variant.label} ({variant.tree}, parallelism {slots} {shown})")
        print(f"drain jobs/s: {spread([r.steady_per_s for r in results])}")
        print(f"  ratio to {first}: {rate / base_rate:.2f}")
        print(f"worker CPU µs/job: {spread([r.worker_us_per_job for r in results])}")
        print(f"  of which garbage collection: {spread([r.gc_us_per_job for r in results])}")
        db = [r.db_us_per_job for r in results if r.db_us_per_job is not None]
        if db:
            print(f"database CPU µs/job: {spread(db)}")
        last = results[-1].statements
        if last:
            print("statements (last run): calls, ms/job, rows, blks hit/read/dirtied, WAL B/job")
            for calls, total_ms, rows, hit, read, dirtied, wal, query in last:
                print(
                    f"  {calls:>6} {total_ms / args.jobs:8.4f} {rows:>7} {hit:>8}/{read}/{dirtied}"
                    f" {int(wal) / args.jobs:8.0f}  {query}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
