"""The admin dashboard's reads at scale: `GET /api/stats` and the first page of each job filter,
through the real admin API, against a PostgreSQL table of a million jobs.

Usage:

    python benchmarks/dashboard_api.py [--jobs 1000000] [--runs 20] [--json]

It creates its own database on the server at $JOBWORKER_BENCH_PG_URL (default the local one),
migrates it, and loads `--jobs` jobs with one INSERT ... SELECT over generate_series: ids are
UUIDv7 made from each job's enqueue time (spread over the last two hours, in id order); mostly
succeeded, some dead, failed, cancelled, queued, scheduled, awaiting and running (a few
hundred: the workers' slots); twenty job types, three of them rare; five queues; system and user
jobs; an idempotency key on one job in twenty. Every finished job has an attempt row ending when
it completed (inserted in that order, as completions are). Then VACUUM ANALYZE (what autovacuum
does to a table that size), and each request is timed `--runs` times in-process through the
admin API's Starlette app (httpx.ASGITransport, logged in as the admin): median and p95, PASS or
MISS against 100 ms (stats) and 200 ms (a page of 50). The database is dropped at the end.

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from jobworker import App
from jobworker.web.admin import admin_api
from jobworker.web.config import WebConfig, hash_password

PASSWORD = "benchmark password"
API = "/jobs-ui/api"
STATS_BUDGET_MS = 100.0
PAGE_BUDGET_MS = 200.0

COMMON_TYPES = [
    "mail.send", "mail.digest", "reports.build_daily", "reports.export_csv", "billing.charge",
    "billing.refund", "images.resize", "images.thumbnail", "search.index", "search.reindex_one",
    "webhooks.deliver", "users.welcome", "users.cleanup", "orders.confirm", "orders.ship",
    "system.cleanup", "sync.pull",
]  # fmt: skip
RARE_TYPES = ["audit.export_all", "system.vacuum", "billing.year_end"]
SYSTEM_TYPES = ("system.cleanup", "system.vacuum")

# One INSERT ... SELECT: $1 the number of jobs. `r` picks the status, `t` the type, `q` the queue.
LOAD_JOBS = """
INSERT INTO jobworker.jobs (id, job_type, queue, priority, status, args, attempt, max_attempts,
    enqueued_at, run_at, started_at, completed_at, lease_owner, lease_expires_at,
    idempotency_key, result, error, result_ttl, expires_at, kind, event_seq)
SELECT
    (substr(ts, 1, 8) || '-' || substr(ts, 9, 4) || '-7' || substr(h, 1, 3) || '-8'
     || substr(h, 4, 3) || '-' || substr(h, 7, 12))::uuid,
    job_type, queue, 0, status, jsonb_build_object('n', g), attempt, 3,
    enqueued_at,
    CASE WHEN status = 'scheduled' THEN enqueued_at + interval '3 hours'
         WHEN status = 'failed' THEN now() + interval '5 minutes'
         ELSE enqueued_at END,
    CASE WHEN attempt > 0 THEN enqueued_at + interval '1 second' END,
    CASE WHEN status IN ('succeeded', 'dead', 'cancelled') THEN enqueued_at + interval '2 seconds'
    END,
    CASE WHEN status = 'running' THEN 'bench-worker' END,
    CASE WHEN status = 'running' THEN now() + interval '30 seconds' END,
    CASE WHEN g % 20 = 0 THEN 'key-' || g END,
    CASE WHEN status = 'succeeded' THEN '{"ok": true}'::jsonb END,
    CASE WHEN status IN ('failed', 'dead') THEN 'RuntimeError: boom' END,
    86400,
    CASE WHEN status IN ('succeeded', 'dead', 'cancelled')
         THEN enqueued_at + interval '1 day' END,
    CASE WHEN job_type IN ('system.cleanup', 'system.vacuum') THEN 'system' ELSE 'user' END,
    CASE WHEN attempt > 0 THEN 3 ELSE 1 END
FROM (
    SELECT g, ts, h, enqueued_at, status, typed.job_type, queue,
        CASE WHEN status IN ('queued', 'scheduled', 'awaiting') THEN 0
             WHEN status = 'dead' THEN 3 ELSE 1 END AS attempt
    FROM (
        SELECT g, md5(g::text) AS h,
            lpad(to_hex((extract(epoch FROM e) * 1000)::bigint), 12, '0') AS ts, e AS enqueued_at,
            CASE WHEN r < 0.030 THEN 'queued' WHEN r < 0.050 THEN 'scheduled'
                 WHEN r < 0.0503 THEN 'running' WHEN r < 0.0510 THEN 'awaiting'
                 WHEN r < 0.060 THEN 'failed' WHEN r < 0.090 THEN 'dead'
                 WHEN r < 0.100 THEN 'cancelled' ELSE 'succeeded' END AS status,
            CASE WHEN t < 0.0001 THEN $2::text[]
                 WHEN t < 0.0003 THEN $3::text[]
                 WHEN t < 0.0006 THEN $4::text[]
                 ELSE $5::text[] END AS job_types,
            CASE WHEN q < 0.60 THEN 'default' WHEN q < 0.80 THEN 'mail'
                 WHEN q < 0.90 THEN 'reports' WHEN q < 0.95 THEN 'bulk'
                 ELSE 'critical' END AS queue
        FROM (
            SELECT g, random() AS r, random() AS t, random() AS q,
                now() - interval '2 hours' + (g * (7200.0 / $1)) * interval '1 second' AS e
            FROM generate_series(1, $1) AS g
        ) AS drawn
    ) AS picked
    CROSS JOIN LATERAL (
        SELECT job_types[1 + floor(random() * cardinality(job_types))::int] AS job_type
    ) AS typed
) AS jobs
ORDER BY jobs.enqueued_at
"""

LOAD_ATTEMPTS = """
INSERT INTO jobworker.job_attempts (job_id, attempt, worker, started_at, ended_at, outcome, error,
    start_seq, end_seq, end_status, end_attempt, end_error)
SELECT id, attempt, 'bench-worker', started_at, coalesce(completed_at, started_at + interval '1s'),
    status, error, 1, 2, status, attempt, error
FROM jobworker.jobs
WHERE status IN ('succeeded', 'dead', 'cancelled', 'failed')
ORDER BY coalesce(completed_at, started_at + interval '1s')
"""


@dataclass
class Timing:
    name: str
    query: str
    budget_ms: float
    median_ms: float
    p95_ms: float
    rows: int
    scan_limited: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.p95_ms <= self.budget_ms else "MISS"


def admin_url() -> str:
    return os.environ.get("JOBWORKER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new database on the benchmark's server, dropped afterwards; yields its URL."""
    name = f"jw_bench_dashboard_{os.getpid()}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url().rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(admin_url())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def load(url: str, jobs: int) -> dict[str, float]:
    """Fill the table; seconds each step took."""
    conn = await asyncpg.connect(url)
    took: dict[str, float] = {}
    try:
        started = time.perf_counter()
        await conn.execute(
            LOAD_JOBS, jobs, [RARE_TYPES[0]], [RARE_TYPES[1]], [RARE_TYPES[2]], COMMON_TYPES
        )
        took["jobs"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(LOAD_ATTEMPTS)
        took["attempts"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE jobworker.jobs")
        await conn.execute("VACUUM ANALYZE jobworker.job_attempts")
        took["vacuum_analyze"] = time.perf_counter() - started
    finally:
        await conn.close()
    return took


def requests() -> list[tuple[str, str, dict[str, str], float]]:
    """(name, path, query, budget) of every request timed."""
    page: list[tuple[str, str, dict[str, str], float]] = [
        ("stats", "/stats", {}, STATS_BUDGET_MS),
        ("jobs (no filter)", "/jobs", {}, PAGE_BUDGET_MS),
    ]
    statuses = [
        "queued", "scheduled", "awaiting", "running", "succeeded", "failed", "dead", "cancelled",
    ]  # fmt: skip
    page += [(f"status={s}", "/jobs", {"status": s}, PAGE_BUDGET_MS) for s in statuses]
    filters = [
        {"kind": "user"},
        {"kind": "system"},
        {"type": "mail.send"},
        {"type": "audit.export_all"},
        {"type": "no.such_type"},
        {"queue": "default"},
        {"queue": "critical"},
        {"queue": "no-such-queue"},
        {"idempotency_key": "key-500000"},
        {"idempotency_key": "no-such-key"},
        {"search": "mail"},
        {"search": "year_end"},
        {"search": "zzz-nothing"},
        {"status": "dead", "type": "mail.send"},
        {"status": "queued", "type": "reports.build_daily"},
        {"status": "succeeded", "type": "billing.year_end"},
        {"status": "failed", "queue": "critical"},
        {"kind": "system", "type": "system.vacuum"},
        {"queue": "bulk", "search": "image"},
    ]
    for query in filters:
        name = ", ".join(f"{key}={value}" for key, value in query.items())
        page.append((name, "/jobs", query, PAGE_BUDGET_MS))
    return page


async def measure(url: str, runs: int) -> list[Timing]:
    config = WebConfig(admin_password_hash=hash_password(PASSWORD, n=16))
    app = App(url, bind=False)
    api = admin_api(app.client, config, prefix="/jobs-ui")
    assert api is not None
    site = Starlette(routes=[Mount(API, app=api)])
    origin = "http://bench"
    transport = httpx.ASGITransport(app=site)
    timings = []
    async with httpx.AsyncClient(transport=transport, base_url=origin, timeout=60) as http:
        login = await http.post(
            f"{API}/login",
            json={"username": "admin", "password": PASSWORD},
            headers={"Origin": origin},
        )
        login.raise_for_status()
        # The first overview of a process reads the whole hour of throughput (then keeps the
        # settled minutes): timed apart, as the cold start it is.
        started = time.perf_counter()
        (await http.get(API + "/stats")).raise_for_status()
        cold_ms = (time.perf_counter() - started) * 1000
        print(f"first GET /stats of the process (cold): {cold_ms:.0f} ms", file=sys.stderr)
        for name, path, query, budget in requests():
            took: list[float] = []
            body: Any = None
            for _ in range(runs):
                started = time.perf_counter()
                answer = await http.get(API + path, params=query)
                took.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
                body = answer.json()
            took.sort()
            timings.append(
                Timing(
                    name=name,
                    query=path + ("?" + str(httpx.QueryParams(query)) if query else ""),
                    budget_ms=budget,
                    median_ms=round(statistics.median(took), 1),
                    p95_ms=round(took[min(len(took) - 1, round(0.95 * (len(took) - 1)))], 1),
                    rows=len(body.get("jobs", [])) if isinstance(body, dict) else 0,
                    scan_limited=bool(body.get("scanLimited")) if path == "/jobs" else False,
                )
            )
            if path == "/stats":
                print(_stats_summary(body), file=sys.stderr)
    await app.aclose()
    return timings


def _stats_summary(body: dict[str, Any]) -> str:
    estimated = set(body.get("estimated", []))
    counts = ", ".join(
        f"{status} {'~' if status in estimated else ''}{n}" for status, n in body["counts"].items()
    )
    last = body["throughput"]["buckets"][-2]["counts"]
    return f"stats: {counts}; throughput (last whole minute): {last}"


def report(timings: list[Timing], loaded: dict[str, float], jobs: int, runs: int) -> str:
    lines = [
        f"dashboard API over {jobs:,} jobs (PostgreSQL), {runs} runs each; load: "
        + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in loaded.items()),
        f"{'request':<44} {'median ms':>9} {'p95 ms':>8} {'budget':>6}  rows  verdict",
    ]
    for t in timings:
        limited = " (scan limited)" if t.scan_limited else ""
        lines.append(
            f"{t.name:<44} {t.median_ms:>9.1f} {t.p95_ms:>8.1f} {t.budget_ms:>6.0f}  "
            f"{t.rows:>4}  {t.verdict}{limited}"
        )
    missed = [t.name for t in timings if t.verdict == "MISS"]
    lines.append(f"{len(timings) - len(missed)} PASS, {len(missed)} MISS" + (
        f": {', '.join(missed)}" if missed else ""
    ))  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the admin API's overview and job filters over a big PostgreSQL table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs to load")
    parser.add_argument("--runs", type=int, default=20, help="times each request is timed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with fresh_database() as url:
        asyncio.run(_migrate(url))
        loaded = asyncio.run(load(url, args.jobs))
        timings = asyncio.run(measure(url, args.runs))
    if args.json:
        print(json.dumps([asdict(t) | {"verdict": t.verdict} for t in timings], indent=2))
    else:
        print(report(timings, loaded, args.jobs, args.runs))
    return 0


async def _migrate(url: str) -> None:
    storage = App(database_url=url, bind=False).create_storage()
    await storage.open()
    try:
        await storage.schema.migrate()
    finally:
        await storage.close()


if __name__ == "__main__":
    sys.exit(main())
