"""What one `end_attempts` costs in the database as more jobs run: the statement before
schema version 16 (kept here, verbatim) against the named statement of this tree, side by side.

    python benchmarks/end_attempts_plan.py [--running 200 2000] [--batch 100] [--repeat 7]
        [--analyze]

For each `--running N`: a fresh database on the server at $JOBWORKER_BENCH_PG_URL (default the
local one, dropped afterwards), N jobs enqueued and claimed (100 per worker name), then a batch
of `--batch` successes of the first worker ended by each statement in turn, alternating,
`--repeat` times each, each in a transaction rolled back. Every run sees the same rows, and the
dead versions the runs before it left, alike for both statements (a VACUUM between runs would
make both plan again). Each run is measured twice: EXPLAIN (ANALYZE, BUFFERS) for the buffer
hits and the execution time, then the statement alone as the worker runs it (a prepared
statement asyncpg keeps) for its time at the client, planning included. Both statements run 6
times first, so their prepared statements (and PL/pgSQL's plan of the function's statement)
are past their first custom plans. `--analyze`: ANALYZE jobs once the jobs run (as autovacuum
might have); by default the table has no statistics, as during a drain with autovacuum off.
Printed: the scans of `jobs` of each plan (of the function's statement too, through
auto_explain, where the server lets the session load it) and how often each prepared
statement was planned, then per statement the medians, the runs and the ratio to before.
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

Measure = tuple[float, float, float]  # buffer hits, execution ms, client ms


async def prepare(url: str, running: int, batch: int) -> list[Any]:
    """N running jobs (100 per worker name); the bound values of a batch of w0's successes."""
    settings = Settings(database_url=url, database_schema=SCHEMA)
    storage = create_storage(url, settings)
    await storage.open()
    try:
        now = datetime.now(UTC)
        new = [
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
            for _ in range(running)
        ]
        await storage.jobs.enqueue_many(new)
        mine = []
        for owner in range((running + 99) // 100):
            claimed = await storage.jobs.claim(f"w{owner}", ["bench.noop"], ["default"], 100, 600)
            mine = mine or claimed
        ends = [
            of_outcome(
                Completion(
                    job_id=job.id,
                    attempt=job.attempt,
                    lease_owner="w0",
                    started_at=job.started_at,
                    ended_at=now,
                    outcome=Succeeded(result=b"1"),
                ),
                60.0,
                cancel_requested=False,
            )
            for job in mine[:batch]
        ]
    finally:
        await storage.close()
    named = end_params(ends) | {"now": now, "channel": None}
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


async def measure(conn: Any, sql: str, values: list[Any], plans: list[str]) -> Measure:
    tx = conn.transaction()
    await tx.start()
    try:
        [row] = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *values)
    finally:
        await tx.rollback()
    explained = json.loads(row[0])[0]
    plans[:] = jobs_scans(explained["Plan"])
    tx = conn.transaction()
    await tx.start()
    try:
        started = time.perf_counter()
        await conn.fetch(sql, *values)
        client_ms = (time.perf_counter() - started) * 1000
    finally:
        await tx.rollback()
    return buffer_hits(explained["Plan"]), explained["Execution Time"], client_ms


async def nested_plans(conn: Any, sql: str, values: list[Any]) -> list[str]:
    """The scans of jobs in the plans of the statements a statement runs (auto_explain)."""
    try:
        await conn.execute("LOAD 'auto_explain'")
    except asyncpg.PostgresError:
        return ["(auto_explain cannot be loaded here)"]
    logged: list[str] = []
    conn.add_log_listener(lambda _conn, message: logged.append(message.message))
    for setting in (
        "log_min_duration = 0",
        "log_analyze = on",
        "log_nested_statements = on",
        "log_format = json",
        "log_level = notice",
    ):
        await conn.execute(f"SET auto_explain.{setting}")
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.fetch(sql, *values)
    finally:
        await tx.rollback()
        await conn.execute("SET auto_explain.log_min_duration = -1")
    scans = []
    for message in logged:
        text = message[message.index("{") :]
        scans += jobs_scans(json.loads(text)["Plan"])
    return scans


async def run_one(url: str, running: int, args: argparse.Namespace) -> dict[str, list[Measure]]:
    values = await prepare(url, running, args.batch)
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
        statements = {
            "before": BEFORE.replace("__SCHEMA__", SCHEMA),
            "after": load(SCHEMA)["end_attempts"].sql,
        }
        for sql in statements.values():  # past the first custom plans
            for _ in range(6):
                tx = conn.transaction()
                await tx.start()
                await conn.fetch(sql, *values)
                await tx.rollback()
        runs: dict[str, list[Measure]] = {label: [] for label in statements}
        plans: dict[str, list[str]] = {label: [] for label in statements}
        for _ in range(args.repeat):
            for label, sql in statements.items():
                runs[label].append(await measure(conn, sql, values, plans[label]))
        prepared = {
            row[0]: row[1:]
            for row in await conn.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
        }
        for label, sql in statements.items():
            print(f"  {label}: scans of jobs: {', '.join(plans[label]) or 'none (a function)'}")
            generic, custom = prepared.get(sql, ("?", "?"))
            print(f"    its prepared statement: {generic} generic plans, {custom} custom plans")
            if label == "after":
                print(
                    f"    inside the function: {', '.join(await nested_plans(conn, sql, values))}"
                )
    finally:
        await conn.close()
    return runs


def report(running: int, batch: int, runs: dict[str, list[Measure]]) -> None:
    print(f"{running} running, {batch} ended (median of {len(runs['before'])}; runs):")
    base = [statistics.median(m[i] for m in runs["before"]) for i in range(3)]
    for label, measures in runs.items():
        medians = [statistics.median(m[i] for m in measures) for i in range(3)]
        cells = []
        for i, (name, unit) in enumerate(
            (("buffer hits", ""), ("execution", " ms"), ("at the client", " ms"))
        ):
            each = ", ".join(f"{m[i]:.3g}" for m in measures)
            cells.append(f"{name} {medians[i]:.4g}{unit} ({each}) x{medians[i] / base[i]:.2f}")
        print(f"  {label:>6}: " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--running", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--analyze", action="store_true")
    args = parser.parse_args()
    backend = PostgresBackend()
    try:
        for running in args.running:
            url = backend.new_database(f"endplan{running}")
            runs = asyncio.run(run_one(url, running, args))
            report(running, args.batch, runs)
    finally:
        backend.close()


if __name__ == "__main__":
    main()
