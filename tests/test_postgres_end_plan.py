"""PostgreSQL's plan for ending attempts: each outcome's job is found through the primary key,
never by reading every running job (through jobs_leases) and matching the batch against them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg

from jobworker import Settings
from jobworker.ids import uuid7
from jobworker.models import Completion, JobStatus, NewJob, Succeeded
from jobworker.storage import create_storage
from jobworker.storage.attempt_ends import of_outcome
from jobworker.storage.postgres.endings import end_params
from jobworker.storage.postgres.statements import load

from .pg import drop_schema, migrate_schema, new_schema_name

NO_EVENTS: dict[str, Any] = {
    name: []
    for name in (
        "event_job_ids",
        "event_seqs",
        "event_kinds",
        "event_times",
        "event_payloads",
        "event_transient",
        "event_owners",
        "event_attempts",
    )
}


async def _running_batch(url: str, schema: str, running: int, batch: int) -> list[Any]:
    """`running` jobs leased to three workers; the bound values that end `batch` of w0's."""
    storage = create_storage(url, Settings(database_url=url, database_schema=schema))
    await storage.open()
    try:
        now = datetime.now(UTC)
        await storage.jobs.enqueue_many(
            [
                NewJob(
                    id=uuid7(now),
                    job_type="t.noop",
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
        )
        share = running // 3
        claimed = await storage.jobs.claim("w0", ["t.noop"], ["default"], share, 600)
        for owner in ("w1", "w2"):
            await storage.jobs.claim(owner, ["t.noop"], ["default"], share, 600)
    finally:
        await storage.close()
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
        for job in claimed[:batch]
    ]
    named = end_params(ends) | NO_EVENTS | {"now": now, "channel": None}
    return list(load(schema)["end_attempts"].bind((), named))


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plans_run(url: str, sql: str, values: list[Any]) -> list[dict[str, Any]]:
    """The plans of every statement running `sql` runs, nested ones too (auto_explain), rolled
    back."""
    conn = await asyncpg.connect(url)
    logged: list[str] = []
    try:
        await conn.set_type_codec(
            "jsonb",
            schema="pg_catalog",
            format="binary",
            encoder=lambda data: b"\x01" + data,
            decoder=lambda data: data[1:],
        )
        await conn.execute("LOAD 'auto_explain'")
        for setting in (
            "log_min_duration = 0",
            "log_nested_statements = on",
            "log_format = json",
            "log_level = notice",
        ):
            await conn.execute(f"SET auto_explain.{setting}")
        conn.add_log_listener(lambda _conn, message: logged.append(message.message))
        async with conn.transaction():
            applied = await conn.fetch(sql, *values)
            assert len(applied) == len(values[0])
            await conn.execute("SET LOCAL auto_explain.log_min_duration = -1")
            raise _RollBack
    except _RollBack:
        pass
    finally:
        await conn.close()
    return [json.loads(message[message.index("{") :])["Plan"] for message in logged]


class _RollBack(Exception):
    pass


async def test_ending_a_batch_looks_up_each_job_by_its_primary_key(pg_database: str) -> None:
    schema = new_schema_name()
    await migrate_schema(pg_database, schema)
    try:
        values = await _running_batch(pg_database, schema, running=300, batch=50)
        sql = load(schema)["end_attempts"].sql
        plans = await _plans_run(pg_database, sql, values)
    finally:
        await drop_schema(pg_database, schema)

    scans = [node for plan in plans for node in _nodes(plan) if node.get("Relation Name") == "jobs"]
    updates = [node for node in scans if node["Node Type"] == "ModifyTable"]
    assert len(updates) == 1, "the statement that ends the attempts was not seen"
    reads = [node for node in scans if node["Node Type"] != "ModifyTable"]
    assert reads
    for node in reads:
        # An index scan of jobs_pkey, on the batch's ids (by value or per outcome): never a
        # bitmap, sequential or jobs_leases scan of every running job.
        assert (node["Node Type"], node.get("Index Name")) == ("Index Scan", "jobs_pkey"), node
        assert "Index Cond" in node, node
    [update] = updates
    [read] = [node for node in _nodes(update) if node in reads]
    assert read["Index Cond"].startswith("(id = "), read
