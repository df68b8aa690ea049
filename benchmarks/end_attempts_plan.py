"""What one `end_attempts` costs in the database as more jobs run: the statement before
schema version 16 (kept here, verbatim) against the named statement of this tree, side by side.

    python benchmarks/end_attempts_plan.py [--running 200 2000] [--batch 100] [--repeat 7]
        [--ended 0] [--analyze]

For each `--running N`: a fresh database on the server at $JOBWORKER_BENCH_PG_URL (default the
local one, dropped afterwards); `--ended K` jobs (default 0) run through first, 100 at a time
(claimed and ended, as a drain leaves the table with autovacuum off: their dead versions stay in
the heap and in jobs_leases); N jobs leased to other workers (100 each). Then the two
statements alternate, `--repeat` times each; a run ends three fresh batches of `--batch` jobs
just leased to one more worker, as successes, and commits them: one under EXPLAIN (ANALYZE,
BUFFERS) for its buffer hits and execution time, one under auto_explain for the buffer hits of
finding the jobs to update (the update's input; inside the function too), one alone as the
worker runs it (a prepared statement asyncpg keeps) for its time at the client, planning
included. Both statements first end 6 batches each, so their prepared statements (and
PL/pgSQL's plan of the function's statement) are past their first custom plans. `--analyze`:
ANALYZE jobs once the jobs run (as autovacuum might have); by default the table has no
statistics, as during a drain with autovacuum off.
The session loads auto_explain (a superuser's right) to read the plan of the function's
statement. Printed: the scans of `jobs` of each plan (x loops) and how often each prepared
statement was planned, then per statement the medians, the runs and the ratio to before of the
buffer hits (all; and those of finding the jobs to update: the update's input), the execution
time and the time at the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from throughput import PostgresBackend

from jobworker import Settings
from jobworker.ids import uuid7
from jobworker.models import Completion, JobStatus, NewJob, Succeeded
from jobworker.storage import create_storage
from jobworker.storage.attempt_ends import of_outcome
from jobworker.storage.postgres.endings import end_params
from jobworker.storage.postgres.statements import load

SCHEMA = "jobworker"
EVENT_ARRAYS = ("job_ids", "seqs", "kinds", "times", "payloads", "transient", "owners", "attempts")

# The end_attempts statement of schema versions 8 to 15 (sql/postgres/queries.sql before 16).
BEFORE = """\
WITH done AS (
    SELECT d.*,
        ($15::text[])[d.decision] AS status, ($16::integer[])[d.decision] AS attempt_change,
        ($17::text[])[d.decision] AS recorded, ($18::text[])[d.decision] AS error_effect,
        ($19::text[])[d.decision] AS traceback_effect, ($20::boolean[])[d.decision] AS ends,
        ($21::integer[])[d.decision] AS seq_step
    FROM unnest(
        $1::uuid[], $2::text[], $3::integer[], $4::boolean[], $5::integer[], $6::text[],
        $7::text[], $8::jsonb[], $9::timestamptz[], $10::double precision[], $11::bigint[],
        $12::timestamptz[], $13::timestamptz[], $14::bigint[]
    ) AS d(id, owner, attempt, asked, decision, error, traceback, result, run_at, result_ttl,
           seq_floor, started_at, ended_at, start_seq)), events AS (
    -- Each event only while the attempt that emitted it may still write (storage/event_log.py).
    INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload, transient)
    SELECT e.job_id, e.seq, e.kind, e.occurred_at, e.payload, e.transient
    FROM unnest(
        $23::uuid[], $24::bigint[], $25::text[], $26::timestamptz[], $27::jsonb[], $28::boolean[],
        $30::text[], $31::integer[]
    ) AS e(job_id, seq, kind, occurred_at, payload, transient, owner, attempt)
    WHERE e.owner IS NULL OR EXISTS (
        SELECT 1 FROM __SCHEMA__.jobs AS j
        WHERE j.id = e.job_id AND j.attempt = e.attempt
          AND (j.lease_owner IS NULL OR j.lease_owner = e.owner)
          AND NOT EXISTS (
              SELECT 1 FROM __SCHEMA__.job_attempts AS a
              WHERE a.job_id = e.job_id AND a.attempt = e.attempt AND a.outcome = 'lost'))
    ON CONFLICT DO NOTHING
), updated AS (
    UPDATE __SCHEMA__.jobs AS j
    SET status = d.status,
        attempt = j.attempt + d.attempt_change,
        started_at = CASE WHEN d.attempt_change < 0 THEN NULL ELSE j.started_at END,
        result = CASE WHEN d.status = 'succeeded' THEN d.result ELSE j.result END,
        error = CASE d.error_effect WHEN 'set' THEN d.error WHEN 'clear' THEN NULL
                    ELSE j.error END,
        traceback = CASE d.traceback_effect WHEN 'set' THEN d.traceback WHEN 'clear' THEN NULL
                        ELSE j.traceback END,
        run_at = COALESCE(d.run_at, j.run_at),
        completed_at = CASE WHEN d.ends THEN $22::timestamptz END,
        expires_at = CASE WHEN d.ends
                          THEN $22::timestamptz + make_interval(secs => d.result_ttl) END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        event_seq = greatest(j.event_seq, d.seq_floor) + d.seq_step
    FROM done AS d
    WHERE j.id = d.id AND j.cancel_requested = d.asked AND j.lease_owner = d.owner
      AND j.attempt = d.attempt AND j.status = 'running'
    RETURNING j.id, d.asked, j.has_continuations AND d.ends AS settle, j.status, j.attempt,
        j.event_seq, j.error, j.run_at
), attempts AS (
    INSERT INTO __SCHEMA__.job_attempts
        (job_id, attempt, worker, started_at, ended_at, outcome, error, traceback,
         start_seq, end_seq, end_status, end_attempt, end_error, end_run_at)
    SELECT d.id, d.attempt, d.owner, d.started_at, d.ended_at, d.recorded, d.error,
        d.traceback,
        COALESCE(NULLIF(d.start_seq, 0),
                 (SELECT j.event_seq FROM __SCHEMA__.jobs AS j WHERE j.id = d.id)),
        u.event_seq, u.status, u.attempt, u.error, u.run_at
    FROM done AS d JOIN updated AS u ON u.id = d.id AND u.asked = d.asked
), touched AS (
    -- channel: the one that wakes readers without Redis (NULL: the caller publishes to Redis).
    SELECT string_agg(DISTINCT t.id::text, ',') AS ids
    FROM (SELECT unnest($23::uuid[]) AS id UNION ALL SELECT id FROM updated) AS t
    WHERE $29::text IS NOT NULL
)
-- Each end applied, with what its lifecycle event records; settle: the job ended with
-- continuations to settle. The notification is sent once, with the first row (a statement that
-- applies no end sends none: the caller notifies for its events itself).
SELECT id, settle, status, attempt, event_seq, error, run_at,
    (SELECT count(pg_notify($29::text, CASE WHEN length(ids) < 7000 THEN ids ELSE '*' END))
     FROM touched WHERE ids IS NOT NULL) AS notified
FROM updated;
"""

# CTEs that nothing in the old statement's main query reads run after it: EXPLAIN counts their
# buffers apart from the top node's. (The function's counts are all in its Function Scan.)
UNREAD_CTES = ("CTE events", "CTE attempts")

# buffer hits (all, and finding the jobs to update), execution ms, client ms
Measure = tuple[float, float, float, float]


def new_jobs(count: int, now: datetime) -> list[NewJob]:
    return [
        NewJob(
            id=uuid7(now),
            job_type="bench.noop",
            queue="default",
            priority=0,
            args=b"{}",
            max_attempts=3,
            status=JobStatus.QUEUED,
            run_at=now,
            enqueued_at=now,
        )
        for _ in range(count)
    ]


async def run_through(storage: Any, count: int, now: datetime) -> None:
    """`count` jobs claimed and ended, 100 at a time, as a drain leaves them."""
    for start in range(0, count, 100):
        await storage.jobs.enqueue_many(new_jobs(min(100, count - start), now))
        claimed = await storage.jobs.claim("drain", ["bench.noop"], ["default"], 100, 600)
        done = [
            Completion(
                job_id=job.id,
                attempt=job.attempt,
                lease_owner="drain",
                started_at=job.started_at,
                ended_at=now,
                outcome=Succeeded(result=b"1"),
            )
            for job in claimed
        ]
        await storage.jobs.complete_many(done, lifecycle=False)


class Jobs:
    """The jobs of one database: the other workers' running jobs, and fresh batches."""

    def __init__(self, url: str, batch: int) -> None:
        self.storage = create_storage(url, Settings(database_url=url, database_schema=SCHEMA))
        self.batch = batch
        self.now = datetime.now(UTC)

    async def start(self, running: int, ended: int) -> None:
        """`ended` jobs run through, then `running` jobs leased to other workers (100 each)."""
        await self.storage.open()
        await run_through(self.storage, ended, self.now)
        await self.storage.jobs.enqueue_many(new_jobs(running, self.now))
        for owner in range(1, (running + 99) // 100 + 1):
            await self.storage.jobs.claim(f"w{owner}", ["bench.noop"], ["default"], 100, 600)

    async def fresh_batch(self) -> list[Any]:
        """The bound values that end `batch` jobs just leased to w0, as successes."""
        await self.storage.jobs.enqueue_many(new_jobs(self.batch, self.now))
        claimed = await self.storage.jobs.claim("w0", ["bench.noop"], ["default"], self.batch, 600)
        ends = [
            of_outcome(
                Completion(
                    job_id=job.id,
                    attempt=job.attempt,
                    lease_owner="w0",
                    started_at=job.started_at,
                    ended_at=self.now,
                    outcome=Succeeded(result=b"1"),
                ),
                60.0,
                cancel_requested=False,
            )
            for job in claimed
        ]
        named = end_params(ends) | {"now": self.now, "channel": None}
        named |= {f"event_{name}": [] for name in EVENT_ARRAYS}
        return list(load(SCHEMA)["end_attempts"].bind((), named))


def jobs_scans(plan: dict[str, Any]) -> list[str]:
    """Each scan of jobs in a plan tree, as `node type (index) x loops`."""
    found = []
    if plan.get("Relation Name") == "jobs" and "Scan" in plan["Node Type"]:
        index = f" {plan['Index Name']}" if "Index Name" in plan else ""
        found.append(f"{plan['Node Type']}{index} x{plan.get('Actual Loops', 1)}")
    for child in plan.get("Plans", []):
        if child.get("Node Type") == "Bitmap Index Scan":
            found[-1:] = [f"{found[-1]} via {child['Index Name']}"] if found else []
        found += jobs_scans(child)
    return found


def buffer_hits(plan: dict[str, Any]) -> int:
    """The statement's shared buffer hits: its top node's, and the unread CTEs'."""
    hits: int = plan["Shared Hit Blocks"]
    for child in plan.get("Plans", []):
        if child.get("Subplan Name") in UNREAD_CTES:
            hits += child["Shared Hit Blocks"]
    return hits


async def measure(conn: Any, sql: str, jobs: Jobs, scans: list[str]) -> Measure:
    """Three batches ended by `sql`: under EXPLAIN, under auto_explain, and alone."""
    [row] = await conn.fetch(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *await jobs.fresh_batch()
    )
    explained = json.loads(row[0])[0]
    plans = await logged_plans(conn, sql, await jobs.fresh_batch())
    scans[:] = [scan for plan in plans for scan in jobs_scans(plan)]
    values = await jobs.fresh_batch()
    started = time.perf_counter()
    ended = await conn.fetch(sql, *values)
    client_ms = (time.perf_counter() - started) * 1000
    assert len(ended) == len(values[0])
    total = buffer_hits(explained["Plan"])
    return total, join_hits(plans), explained["Execution Time"], client_ms


async def logged_plans(conn: Any, sql: str, values: list[Any]) -> list[dict[str, Any]]:
    """The plans of every statement running `sql` runs, nested ones too, with their buffers
    (auto_explain, loaded on `conn` by the caller)."""
    logged: list[str] = []

    def log(_conn: Any, message: Any) -> None:
        logged.append(message.message)

    conn.add_log_listener(log)
    await conn.execute("SET auto_explain.log_min_duration = 0")
    try:
        await conn.fetch(sql, *values)
    finally:
        await conn.execute("SET auto_explain.log_min_duration = -1")
        conn.remove_log_listener(log)
    return [json.loads(message[message.index("{") :])["Plan"] for message in logged]


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in nodes(child))]


def join_hits(plans: list[dict[str, Any]]) -> int:
    """The buffer hits of finding the jobs to update: the update's input, the batch joined to
    jobs (the batch itself, unnested arrays, reads no buffer)."""
    return sum(
        node["Plans"][0]["Shared Hit Blocks"]
        for plan in plans
        for node in nodes(plan)
        if node["Node Type"] == "ModifyTable" and node.get("Relation Name") == "jobs"
    )


async def run_one(url: str, running: int, args: argparse.Namespace) -> dict[str, list[Measure]]:
    jobs = Jobs(url, args.batch)
    await jobs.start(running, args.ended)
    conn = await asyncpg.connect(url)
    try:
        await conn.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            format="binary",
            encoder=lambda data: b"\x01" + data,
            decoder=lambda data: data[1:],
        )
        if args.analyze:
            await conn.execute(f"ANALYZE {SCHEMA}.jobs")
        await conn.execute("LOAD 'auto_explain'")  # superuser, or in the plugins directory
        for setting in (
            "log_min_duration = -1",
            "log_analyze = on",
            "log_buffers = on",
            "log_timing = off",
            "log_nested_statements = on",
            "log_format = json",
            "log_level = notice",
        ):
            await conn.execute(f"SET auto_explain.{setting}")
        statements = {
            "before": BEFORE.replace("__SCHEMA__", SCHEMA),
            "after": load(SCHEMA)["end_attempts"].sql,
        }
        for sql in statements.values():  # past the first custom plans
            for _ in range(6):
                await conn.fetch(sql, *await jobs.fresh_batch())
        runs: dict[str, list[Measure]] = {label: [] for label in statements}
        plans: dict[str, list[str]] = {label: [] for label in statements}
        for _ in range(args.repeat):
            for label, sql in statements.items():
                runs[label].append(await measure(conn, sql, jobs, plans[label]))
        prepared = {
            row[0]: row[1:]
            for row in await conn.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
        }
        for label, sql in statements.items():
            generic, custom = prepared.get(sql, ("?", "?"))
            print(
                f"  {label}: scans of jobs: {', '.join(plans[label])}; its prepared statement "
                f"planned {custom} times for its values, {generic} times kept"
            )
    finally:
        await conn.close()
        await jobs.storage.close()
    return runs


FIGURES = (
    ("buffer hits", ""),
    ("of them finding the jobs", ""),
    ("execution", " ms"),
    ("at the client", " ms"),
)


def report(args: argparse.Namespace, running: int, runs: dict[str, list[Measure]]) -> None:
    after = f", after {args.ended} ran" if args.ended else ""
    print(
        f"{running} other jobs running{after}, {args.batch} ended "
        f"(median of {len(runs['before'])}; runs):"
    )
    base = [statistics.median(m[i] for m in runs["before"]) for i in range(len(FIGURES))]
    for label, measures in runs.items():
        medians = [statistics.median(m[i] for m in measures) for i in range(len(FIGURES))]
        cells = []
        for i, (name, unit) in enumerate(FIGURES):
            each = ", ".join(f"{m[i]:.3g}" for m in measures)
            cells.append(f"{name} {medians[i]:.4g}{unit} ({each}) x{medians[i] / base[i]:.2f}")
        print(f"  {label:>6}: " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--running", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--ended", type=int, default=0)
    parser.add_argument("--analyze", action="store_true")
    args = parser.parse_args()
    backend = PostgresBackend()
    try:
        for running in args.running:
            url = backend.new_database(f"endplan{running}")
            runs = asyncio.run(run_one(url, running, args))
            report(args, running, runs)
    finally:
        backend.close()


if __name__ == "__main__":
    main()
