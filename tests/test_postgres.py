"""What only the PostgreSQL backend does: migrations, transactional enqueue, LISTEN/NOTIFY,
surviving dropped connections and a stopped server, and several supervisors on one database."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from jobworker import App, JobContext, JobStatus, Registry, Settings
from jobworker.errors import SchemaMissingError
from jobworker.storage import create_storage
from jobworker.storage.sqlfiles import schema_scripts
from jobworker.testing import adrain
from jobworker.worker import Worker, WorkerOptions, worker_id

from .claim_race import ClaimRace
from .conftest import FAST, JOBWORKER, TESTS, subprocess_env
from .pg import (
    catalog,
    drop_schema,
    migrate_schema,
    new_schema_name,
    run_scripts,
    temporary_database,
)

sys.path.insert(0, str(TESTS / "apps"))
import contextlib

import proc_jobs

from .test_processes import Run, executions, settled, wait_for


@pytest.fixture
def schema(pg_database: str) -> Iterator[str]:
    name = new_schema_name()
    yield name
    asyncio.run(drop_schema(pg_database, name))


@pytest.fixture
def migrated(pg_database: str, schema: str) -> str:
    asyncio.run(migrate_schema(pg_database, schema))
    return schema


def env_for(url: str, schema: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    fast = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}
    return subprocess_env(
        JOBWORKER_DATABASE_URL=url,
        JOBWORKER_DATABASE_SCHEMA=schema,
        EXEC_LOG=str(tmp_path / "executions.log"),
        **fast,
        **extra,
    )


def test_a_worker_refuses_an_unmigrated_database(
    pg_database: str, schema: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*JOBWORKER, "run", "proc_jobs", "--concurrency", "1"],
        env=env_for(pg_database, schema, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "has no jobworker schema" in result.stderr
    assert "run: jobworker migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_and_sql_commands(pg_database: str, schema: str) -> None:
    env = subprocess_env()
    migrate = [*JOBWORKER, "migrate", "--database-url", pg_database, "--schema", schema]
    first = subprocess.run(migrate, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    applied = ", ".join(map(str, [8, *AFTER_BASELINE]))
    assert f"applied schema version(s) {applied} to postgres" in first.stdout
    again = subprocess.run(migrate, env=env, capture_output=True, text=True, timeout=60)
    assert "up to date" in again.stdout

    # `jobworker sql` prints scripts a user's own tool can run as they are.
    other = new_schema_name()
    printed = subprocess.run(
        [*JOBWORKER, "sql", "--dialect", "postgres", "--schema", other],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout

    async def apply_and_check() -> None:
        conn = await asyncpg.connect(pg_database)
        try:
            await conn.execute(printed)
            await conn.execute(printed)  # idempotent
        finally:
            await conn.close()
        settings = Settings(database_url=pg_database, database_schema=other)
        storage = create_storage(pg_database, settings)
        await storage.open()
        try:
            await storage.schema.check_schema()
        finally:
            await storage.close()
            await drop_schema(pg_database, other)

    asyncio.run(apply_and_check())
    bad = subprocess.run(
        [*JOBWORKER, "sql", "--dialect", "postgres", "--schema", 'x"; drop table jobs; --'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "invalid schema name" in bad.stderr


# The storage settings of the hot tables (version 10): autovacuum due after 2 % of a table's
# rows have changed, not 20 %, and insert-only tables vacuumed after 2 % new rows.
HOT_TABLE_SETTINGS = {
    "jobs": {"autovacuum_vacuum_scale_factor": "0.02", "autovacuum_analyze_scale_factor": "0.02"},
    "job_attempts": {
        "autovacuum_vacuum_scale_factor": "0.02",
        "autovacuum_vacuum_insert_scale_factor": "0.02",
    },
    "job_events": {
        "autovacuum_vacuum_scale_factor": "0.02",
        "autovacuum_vacuum_insert_scale_factor": "0.02",
    },
}


async def table_options(url: str, schema: str) -> dict[str, dict[str, str]]:
    """Each table's storage parameters (pg_class.reloptions), by table name."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT c.relname, c.reloptions FROM pg_class AS c
            JOIN pg_namespace AS n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind = 'r'""",
            schema,
        )
    finally:
        await conn.close()
    return {
        row["relname"]: dict(option.split("=", 1) for option in row["reloptions"] or [])
        for row in rows
    }


def test_the_hot_tables_carry_their_storage_settings(pg_database: str, schema: str) -> None:
    """`jobworker migrate` gives the three hot tables autovacuum thresholds that follow their
    churn rather than their size; the other tables keep the server's defaults, and the script
    can run again (as `jobworker sql` prints it)."""
    migrate = [*JOBWORKER, "migrate", "--database-url", pg_database, "--schema", schema]
    result = subprocess.run(
        migrate, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    options = asyncio.run(table_options(pg_database, schema))
    assert {name: opts for name, opts in options.items() if opts} == HOT_TABLE_SETTINGS
    [script] = (TESTS.parent / "sql" / "postgres").glob("010_*.sql")
    asyncio.run(run_scripts(pg_database, schema, [script]))
    assert asyncio.run(table_options(pg_database, schema)) == options


# The schema scripts of the development versions before the baseline (1 to 8), as they were.
DEV_SCRIPTS = sorted((TESTS / "fixtures" / "postgres_dev_scripts").glob("*.sql"))


BASELINE = TESTS.parent / "sql" / "postgres" / "008_baseline.sql"


async def migrate_with_storage(url: str, schema: str) -> list[int]:
    settings = Settings(database_url=url, database_schema=schema)
    storage = create_storage(url, settings)
    await storage.open()
    try:
        return await storage.schema.migrate()
    finally:
        await storage.close()


async def check_schema(url: str, schema: str) -> None:
    settings = Settings(database_url=url, database_schema=schema)
    storage = create_storage(url, settings)
    await storage.open()
    try:
        await storage.schema.check_schema()
    finally:
        await storage.close()


AFTER_BASELINE = [version for version, _, _ in schema_scripts("postgres") if version > 8]


def test_the_baseline_states_the_schema_the_development_scripts_made() -> None:
    """A schema made by the scripts of versions 1 to 8 is the baseline's, save what the baseline
    leaves out on purpose: the claim of versions 3 and 4 (claim_jobs, which nothing calls since
    version 6) and read_events' branches for events stored by versions before 8. Such a schema
    counts as version 8: migrate upgrades it as it does the baseline's."""
    assert [script.name[:3] for script in DEV_SCRIPTS] == [f"00{n}" for n in range(1, 9)]

    async def compare(old_url: str, new_url: str) -> None:
        await run_scripts(old_url, "jobworker", DEV_SCRIPTS)
        await run_scripts(new_url, "jobworker", [BASELINE])
        old, new = await catalog(old_url, "jobworker"), await catalog(new_url, "jobworker")
        for part in ("relations", "columns", "indexes", "constraints", "triggers"):
            assert old[part] == new[part], part
        assert len(new["columns"]) == 70 and len(new["indexes"]) == 15
        old_functions = {(name, args): text for name, args, text in old["functions"]}
        new_functions = {(name, args): text for name, args, text in new["functions"]}
        assert {name for name, _ in old_functions.keys() - new_functions.keys()} == {"claim_jobs"}
        assert not new_functions.keys() - old_functions.keys()
        differ = {key[0] for key in new_functions if new_functions[key] != old_functions[key]}
        assert differ == {"read_events"}
        [old_read_events] = [t for (n, _), t in old_functions.items() if n == "read_events"]
        assert "succeeded under an earlier version" in old_read_events
        for url in (old_url, new_url):
            assert await migrate_with_storage(url, "jobworker") == AFTER_BASELINE
        old, new = await catalog(old_url, "jobworker"), await catalog(new_url, "jobworker")
        for part in ("relations", "columns", "indexes", "constraints", "triggers"):
            assert old[part] == new[part], part
        assert {name for name, _, _ in old["functions"] ^ new["functions"]} == {"claim_jobs"}
        await check_schema(old_url, "jobworker")
        assert await migrate_with_storage(old_url, "jobworker") == []

    with temporary_database() as old_url, temporary_database() as new_url:
        asyncio.run(compare(old_url, new_url))


def test_migrate_refuses_a_schema_older_than_the_baseline(pg_database: str, schema: str) -> None:
    """A schema of a development version before the baseline cannot be upgraded: migrate says
    what it found and what to do, and changes nothing; workers refuse it the same way."""
    asyncio.run(run_scripts(pg_database, schema, DEV_SCRIPTS[:5]))
    before = asyncio.run(catalog(pg_database, schema))
    migrate = [*JOBWORKER, "migrate", "--database-url", pg_database, "--schema", schema]
    result = subprocess.run(
        migrate, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout
    message = " ".join(result.stderr.split())
    assert f"has schema version 5 (schema '{schema}')" in message
    assert "made by an unreleased development version of jobworker" in message
    assert "starts from version 8" in message
    assert "Drop the schema (its jobs are lost) and run: jobworker migrate" in message
    assert "Traceback" not in result.stderr
    assert asyncio.run(catalog(pg_database, schema)) == before
    with pytest.raises(SchemaMissingError, match="unreleased development version"):
        asyncio.run(check_schema(pg_database, schema))


def test_version_12_reads_earlier_jobs_as_user_jobs_and_refuses_other_kinds(
    pg_database: str, schema: str
) -> None:
    """A job written before version 12 is a `user` job after it; the check added NOT VALID (so
    that adding it reads no table) holds for every row written after."""
    from jobworker.ids import uuid7
    from jobworker.models import JobFilter, JobKind

    before_12 = [
        TESTS.parent / "sql" / "postgres" / name
        for version, name, _ in schema_scripts("postgres")
        if version < 12
    ]
    old = uuid7(datetime.now(UTC))

    async def scenario() -> None:
        await run_scripts(pg_database, schema, before_12)
        conn = await asyncpg.connect(pg_database)
        try:
            await conn.execute(
                f"""INSERT INTO "{schema}".jobs (id, job_type, queue, status, args, max_attempts,
                    enqueued_at, run_at) VALUES ($1, 't', 'default', 'queued', '{{}}', 3, now(),
                    now())""",
                old,
            )
            later = [version for version, _, _ in schema_scripts("postgres") if version >= 12]
            assert await migrate_with_storage(pg_database, schema) == later
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(
                    f"""UPDATE "{schema}".jobs SET kind = 'admin' WHERE id = $1""", old
                )
        finally:
            await conn.close()
        storage = create_storage(
            pg_database, Settings(database_url=pg_database, database_schema=schema)
        )
        await storage.open()
        try:
            record = await storage.inspection.get(old)
            assert record is not None and record.kind is JobKind.USER
            assert await storage.inspection.list_jobs(JobFilter(kind=JobKind.SYSTEM)) == []
        finally:
            await storage.close()

    asyncio.run(scenario())


def test_migrate_upgrades_a_version_8_schema_and_its_events_stay_readable(
    pg_database: str, schema: str
) -> None:
    """`jobworker migrate` takes a schema of version 8 (the baseline) to version 9: the SQL that
    built event payloads is gone, and the events version 8 stored (lifecycle rows built by
    lifecycle_payload, attempt rows whose marks stand for their events) read as they did."""
    from datetime import UTC, datetime, timedelta

    from jobworker.events.model import Lifecycle
    from jobworker.ids import uuid7
    from jobworker.models import EventKind

    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    succeeded, cancelled = uuid7(t0), uuid7(t0 + timedelta(seconds=1))

    async def write_as_version_8() -> None:
        await run_scripts(pg_database, schema, [BASELINE])
        conn = await asyncpg.connect(pg_database)
        q = f'"{schema}"'
        try:
            # A job that ran once and succeeded: running 1, progress 2, result 3, succeeded 4.
            await conn.execute(
                f"""INSERT INTO {q}.jobs (id, job_type, queue, status, args, attempt,
                    max_attempts, enqueued_at, run_at, started_at, completed_at, result,
                    event_seq)
                VALUES ($1, 't', 'default', 'succeeded', '{{}}', 1, 3, $2, $2, $2, $3,
                    '{{"n": 1}}', 4)""",
                succeeded,
                t0,
                t0 + timedelta(seconds=2),
            )
            await conn.execute(
                f"""INSERT INTO {q}.job_events (job_id, seq, kind, occurred_at, payload)
                VALUES ($1, 2, 'progress', $2, '{{"done": 1}}')""",
                succeeded,
                t0,
            )
            await conn.execute(
                f"""INSERT INTO {q}.job_attempts (job_id, attempt, worker, started_at, ended_at,
                    outcome, start_seq, end_seq, end_status, end_attempt)
                VALUES ($1, 1, 'w1', $2, $3, 'succeeded', 1, 4, 'succeeded', 1)""",
                succeeded,
                t0,
                t0 + timedelta(seconds=2),
            )
            # A job cancelled while it waited: version 8 stored its lifecycle row in SQL.
            await conn.execute(
                f"""INSERT INTO {q}.jobs (id, job_type, queue, status, args, max_attempts,
                    enqueued_at, run_at, completed_at, error, event_seq)
                VALUES ($1, 't', 'default', 'cancelled', '{{}}', 3, $2, $2, $2, 'no', 1)""",
                cancelled,
                t0,
            )
            await conn.execute(
                f"""INSERT INTO {q}.job_events (job_id, seq, kind, occurred_at, payload)
                SELECT $1, 1, 'lifecycle', $2,
                    {q}.lifecycle_payload('cancelled', 0, 'no', NULL)""",
                cancelled,
                t0,
            )
        finally:
            await conn.close()

    asyncio.run(write_as_version_8())
    with pytest.raises(SchemaMissingError, match="has schema version 8"):
        asyncio.run(check_schema(pg_database, schema))
    migrate = [*JOBWORKER, "migrate", "--database-url", pg_database, "--schema", schema]
    result = subprocess.run(
        migrate, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    applied = ", ".join(map(str, AFTER_BASELINE))
    assert f"applied schema version(s) {applied} to postgres" in result.stdout
    asyncio.run(check_schema(pg_database, schema))
    functions = {name for name, _, _ in asyncio.run(catalog(pg_database, schema))["functions"]}
    assert "event_rows" in functions
    assert not functions & {"read_events", "lifecycle_payload"}

    async def read(job_id: object) -> list[tuple[int, str, object]]:
        storage = create_storage(
            pg_database, Settings(database_url=pg_database, database_schema=schema)
        )
        await storage.open()
        try:
            return [
                (
                    e.seq,
                    e.kind.value,
                    e.decoded(Lifecycle) if e.kind is EventKind.LIFECYCLE else e.decoded(),
                )
                for e in await storage.events.read_events(job_id)  # type: ignore[arg-type]
            ]
        finally:
            await storage.close()

    assert asyncio.run(read(succeeded)) == [
        (1, "lifecycle", Lifecycle(status=JobStatus.RUNNING, attempt=1)),
        (2, "progress", {"done": 1}),
        (3, "result", {"value": {"n": 1}}),
        (4, "lifecycle", Lifecycle(status=JobStatus.SUCCEEDED, attempt=1)),
    ]
    assert asyncio.run(read(cancelled)) == [
        (1, "lifecycle", Lifecycle(status=JobStatus.CANCELLED, attempt=0, error="no")),
    ]


def test_named_statements_are_bound_by_name_and_checked_when_loaded() -> None:
    from jobworker.storage.postgres.statements import load, parse

    statements = load("jobworker")
    assert len(statements["end_attempts"].params) == 31
    assert statements["claim"].params == (
        "now",
        "queues",
        "job_types",
        "limit",
        "owner",
        "lease_until",
        "sync_types",
        "sync_limit",
        "async_limit",
    )
    two = parse(
        "two", "-- params: a,\n--     b\n-- $9 in a comment is no placeholder\nSELECT $2, $1"
    )
    assert two.params == ("a", "b")
    assert two.bind((), {"b": 2, "a": 1}) == [1, 2]
    with pytest.raises(TypeError, match=r"missing: \['b'\], unknown: \['c'\]"):
        two.bind((), {"a": 1, "c": 3})
    with pytest.raises(TypeError, match="by name"):
        two.bind((1, 2), {})
    positional = parse("positional", "SELECT $1, $2")
    assert positional.bind((1, 2), {}) == (1, 2)
    with pytest.raises(TypeError, match="by position"):
        positional.bind((), {"a": 1})
    for bad in (
        "-- params: a\nSELECT $1, $2",  # $2 has no name
        "-- params: a, b\nSELECT $1",  # b is not used
        "-- params: a, a\nSELECT $1, $2",
        "-- params: retry\nSELECT $1",  # a keyword of Database's query methods
        "SELECT $1, $3",  # a gap
    ):
        with pytest.raises(ValueError, match="statement 'bad'"):
            parse("bad", bad)


async def test_enqueue_inside_the_callers_transaction(pg_database: str, migrated: str) -> None:
    registry = Registry()

    @registry.job(name="outbox.send")
    def send(ctx: JobContext, order_id: int) -> None: ...

    app = App(pg_database, registry=registry, database_schema=migrated)
    conn = await asyncpg.connect(pg_database)
    try:
        transaction = conn.transaction()
        await transaction.start()
        rolled_back = await send.adelay(order_id=1, connection=conn)
        await transaction.rollback()
        async with conn.transaction():
            committed = await send.adelay(order_id=2, connection=conn)
            many = await send.adelay_many([{"order_id": 3}, {"order_id": 4}], connection=conn)
            assert await app.client.aget(committed.job_id) is None, "invisible until commit"
        assert await app.client.aget(rolled_back.job_id) is None
        job = await app.client.aget(committed.job_id)
        assert job is not None and job.status is JobStatus.QUEUED
        assert all([await app.client.aget(h.job_id) for h in many])
        assert (await adrain(app)).succeeded == 3
    finally:
        await conn.close()
        await app.aclose()


async def test_status_changes_store_their_events_and_wake_readers_without_redis(
    pg_database: str, migrated: str
) -> None:
    """A status change outside an attempt stores its lifecycle event in its own transaction,
    also in a caller's transaction (a continuation enqueued there after its parent ended, on a
    connection that exchanges jsonb as text), and wakes the readers LISTENing without Redis when
    it commits."""
    from datetime import UTC, datetime

    from jobworker.events.model import Lifecycle
    from jobworker.ids import uuid7
    from jobworker.models import EventKind, NewJob

    def new_job(**more: object) -> NewJob:
        now = datetime.now(UTC)
        fields: dict[str, object] = {
            "id": uuid7(now),
            "job_type": "t.noop",
            "queue": "default",
            "priority": 0,
            "args": b"{}",
            "max_attempts": 3,
            "status": JobStatus.QUEUED,
            "run_at": now,
            "enqueued_at": now,
        }
        fields.update(more)
        return NewJob(**fields)  # type: ignore[arg-type]

    settings = Settings(database_url=pg_database, database_schema=migrated)
    storage = create_storage(pg_database, settings)
    await storage.open()
    listener, caller = await asyncpg.connect(pg_database), await asyncpg.connect(pg_database)
    heard: list[str] = []

    async def statuses(job_id: object) -> list[tuple[int, JobStatus, str | None]]:
        return [
            (e.seq, (life := e.decoded(Lifecycle)).status, life.error)
            for e in await storage.events.read_events(job_id)  # type: ignore[arg-type]
            if e.kind is EventKind.LIFECYCLE
        ]

    try:
        await listener.add_listener(
            f"jobworker-events:{migrated}", lambda *args: heard.append(args[-1])
        )
        parent = new_job()
        await storage.jobs.enqueue_many([parent])
        await storage.control.cancel(parent.id, "changed my mind")
        assert await statuses(parent.id) == [(1, JobStatus.CANCELLED, "changed my mind")]
        child = new_job(continues_job_id=parent.id, status=JobStatus.AWAITING)
        async with caller.transaction():
            await storage.jobs.enqueue_many([child], connection=caller)
            await asyncio.sleep(0.1)
            assert str(child.id) not in heard, "readers wake when it commits"
        [(seq, status, error)] = await statuses(child.id)
        assert (seq, status) == (1, JobStatus.CANCELLED) and str(parent.id) in (error or "")
        await asyncio.sleep(0.1)
        assert {str(parent.id), str(child.id)} <= set(",".join(heard).split(","))
    finally:
        await listener.close()
        await caller.close()
        await storage.close()


async def test_idle_workers_wake_on_notify_not_on_polling(pg_database: str, migrated: str) -> None:
    registry = Registry()
    started: list[float] = []

    @registry.job(name="wake")
    async def wake(ctx: JobContext, enqueued: float) -> None:
        started.append(time.monotonic() - enqueued)

    settings = Settings(database_url=pg_database, database_schema=migrated, poll_interval=30)
    app = App(registry=registry, settings=settings)
    worker = Worker(app, WorkerOptions(worker_id=worker_id("wake"), maintenance=False))
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)  # idle: the first poll has found nothing
        for _ in range(5):
            await wake.adelay(enqueued=time.monotonic())
            await asyncio.sleep(0.1)
        for _ in range(500):  # up to 5 s
            if len(started) == 5:
                break
            await asyncio.sleep(0.01)
    finally:
        worker.request_stop()
        await task
        await app.aclose()
    assert len(started) == 5
    assert max(started) < 3.0, f"woken by NOTIFY, not a 30 s poll: {started}"


async def test_a_wake_up_during_a_claim_leads_to_another_claim(
    pg_database: str, migrated: str
) -> None:
    """A job enqueued after a claim's query ran, its NOTIFY delivered before the claim returned:
    the worker claims again at once instead of waiting for its 30 s poll."""
    registry = Registry()
    started = asyncio.Event()

    @registry.job(name="late")
    async def late(ctx: JobContext) -> None:
        started.set()

    settings = Settings(database_url=pg_database, database_schema=migrated, poll_interval=30)
    app = App(registry=registry, settings=settings)

    async def enqueue_and_announce() -> None:
        await late.adelay()
        await asyncio.wait_for(race.announced.wait(), 5)

    race = ClaimRace(app, enqueue_and_announce)
    worker = Worker(app, WorkerOptions(worker_id=worker_id("race"), maintenance=False))
    task = asyncio.create_task(worker.run())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), 5)
    finally:
        worker.request_stop()
        await task
        await app.aclose()
    assert race.announced.is_set()  # the NOTIFY came in while the claim was in flight
    assert started.is_set(), "the job announced during a claim waited for the next poll"


async def test_a_capped_type_is_claimed_again_when_an_outcome_frees_its_cap(
    pg_database: str, migrated: str
) -> None:
    """A job ending wakes the worker before its outcome is written, and the cap counts it until
    then: a claim that ran in between found the cap full. The write must lead to another claim,
    not the next poll 30 s later."""
    registry = Registry()
    ran: list[int] = []
    second_claim_ran = asyncio.Event()

    @registry.job(name="capped", concurrency=1)
    async def capped(ctx: JobContext, i: int) -> None:
        ran.append(i)

    settings = Settings(database_url=pg_database, database_schema=migrated, poll_interval=30)
    app = App(registry=registry, settings=settings)

    async def write_after_the_second_claim() -> None:
        await second_claim_ran.wait()

    async def let_the_outcome_be_written() -> None:
        second_claim_ran.set()
        for _ in range(500):
            if (await app.client.acounts())[JobStatus.SUCCEEDED] == 1:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the first outcome was never written")

    # Claim 1 takes the first job (the cap allows one); its end wakes claim 2, which finds the
    # cap full as the outcome is held back until then.
    ClaimRace(
        app, let_the_outcome_be_written, on_claim=2, before_write=write_after_the_second_claim
    )
    await capped.adelay_many([{"i": i} for i in range(3)])
    worker = Worker(app, WorkerOptions(worker_id=worker_id("cap"), maintenance=False))
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(500):  # up to 5 s
            if len(ran) == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        worker.request_stop()
        await task
        await app.aclose()
    assert second_claim_ran.is_set()
    assert sorted(ran) == [0, 1, 2], "a job of a capped type waited for the next poll"


def test_workers_survive_their_connections_being_terminated(
    pg_database: str, migrated: str, tmp_path: Path
) -> None:
    env = env_for(pg_database, migrated, tmp_path)
    run = Run(tmp_path, ["--concurrency", "2"], env)
    app = App(pg_database, database_schema=migrated)
    try:
        marker = tmp_path / "marker"
        handle = proc_jobs.sleepy.delay(seconds=1.5, marker=str(marker))
        wait_for(marker.exists, 60, "the job to start")

        async def terminate() -> int:
            conn = await asyncpg.connect(pg_database)
            try:
                rows = await conn.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name <> 'keep'"
                )
                return len(rows)
            finally:
                await conn.close()

        app.client.get(handle.job_id)  # our own pool connection exists now...
        terminated = asyncio.run(terminate())  # ...and is terminated along with the workers'
        assert terminated >= 2
        job = wait_for(lambda: settled(app, [handle]), 30, "the job's outcome")[0]
        assert job.status is JobStatus.SUCCEEDED and job.attempt == 1
        assert app.client.counts()[JobStatus.RUNNING] == 0
        after = proc_jobs.noop.delay(i=1)
        assert wait_for(lambda: settled(app, [after]), 20, "a job after the reconnect")
        assert run.stop() == 0
        assert "works again" in run.log or "LISTEN connection is back" in run.log
    finally:
        run.kill()
        app.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A throw-away PostgreSQL server this test may stop and start at will."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = bins[-1]
        self.dir = Path(tempfile.mkdtemp(prefix="jw-pg-"))
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.dir / "data"), "--auth=trust", "-U", "postgres"
        )

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-o",
            options,
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"
        )

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
def test_a_worker_process_started_while_postgres_is_down_waits_for_it(tmp_path: Path) -> None:
    """A worker process that dies during an outage is replaced at once; the replacement cannot
    reach the database either. It waits for it, and the supervisor runs on (before, each
    replacement died as it started, and after five the supervisor halted with exit code 1)."""
    import psutil

    server = PrivatePostgres()
    run = None
    app = None
    try:
        server.start()
        asyncio.run(migrate_schema(server.url, "jobworker"))
        run = Run(tmp_path, ["--concurrency", "2"], env_for(server.url, "jobworker", tmp_path))
        app = App(server.url)
        before = proc_jobs.noop.delay(i=1)
        wait_for(lambda: settled(app, [before]), 20, "a job before the outage")
        app.close()
        app = None

        server.stop()
        psutil.Process(run.proc.pid).children()[0].kill()
        wait_for(lambda: "opening the database failed" in run.log, 20, "the replacement waits")
        time.sleep(8)  # five fast deaths took under 8 s
        assert run.proc.poll() is None, f"the supervisor stopped in the outage:\n{run.log}"
        server.start()

        app = App(server.url)
        after = proc_jobs.noop.delay_many([{"i": i} for i in range(10)])
        jobs = wait_for(lambda: settled(app, after), 60, "jobs after the outage")
        assert all(job.status is JobStatus.SUCCEEDED for job in jobs)
        assert run.stop() == 0
        assert "keep dying as they start" not in run.log
        assert "opening the database works again after" in run.log
    finally:
        if run is not None:
            run.kill()
        if app is not None:
            app.close()
        server.remove()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
def test_workers_resume_after_postgres_is_down_for_20_seconds(tmp_path: Path) -> None:
    server = PrivatePostgres()
    run = None
    app = None
    try:
        server.start()
        asyncio.run(migrate_schema(server.url, "jobworker"))
        env = env_for(server.url, "jobworker", tmp_path)
        run = Run(tmp_path, ["--concurrency", "2"], env)
        app = App(server.url)
        before = proc_jobs.noop.delay(i=1)
        wait_for(lambda: settled(app, [before]), 20, "a job before the outage")
        app.close()

        server.stop()
        time.sleep(20)
        assert run.proc.poll() is None, f"the supervisor stopped in the outage:\n{run.log}"
        server.start()

        app = App(server.url)
        after = proc_jobs.noop.delay_many([{"i": i} for i in range(20)])
        jobs = wait_for(lambda: settled(app, after), 60, "jobs after the outage")
        assert all(job.status is JobStatus.SUCCEEDED for job in jobs)
        assert run.stop() == 0
        log = run.log
        assert "claiming jobs failed" in log
        assert "claiming jobs works again after" in log
        assert "the LISTEN connection to PostgreSQL was lost" in log
        assert "worker 0 (pid" not in log or "died" not in log, "no worker process had to restart"
    finally:
        if run is not None:
            run.kill()
        if app is not None:
            app.close()
        server.remove()


@pytest.mark.slow
def test_two_supervisors_share_the_work_and_run_each_job_once(
    pg_database: str, migrated: str, tmp_path: Path
) -> None:
    env = env_for(pg_database, migrated, tmp_path)
    app = App(pg_database, database_schema=migrated)
    handles = proc_jobs.noop.delay_many([{"i": i} for i in range(4000)])
    first = Run(tmp_path, ["--concurrency", "2", "--parallelism", "8"], env)
    second = Run(tmp_path, ["--concurrency", "2", "--parallelism", "8"], env)
    try:
        wait_for(lambda: app.client.counts()[JobStatus.SUCCEEDED] == 4000, 120, "4000 jobs")
        children = {
            "first": {c.pid for c in first.children()},
            "second": {c.pid for c in second.children()},
        }
        assert first.stop() == 0 and second.stop() == 0
    finally:
        first.kill()
        second.kill()
        app.close()
    ran = executions(tmp_path)
    per_job = collections.Counter(job_id for job_id, _, _ in ran)
    assert set(per_job.values()) == {1} and set(per_job) == {str(h.job_id) for h in handles}
    pids = {pid for _, _, pid in ran}
    assert pids & children["first"] and pids & children["second"], "both machines took work"
    _ = signal  # the supervisors were stopped with SIGTERM above


async def test_a_running_job_is_cancelled_through_notify_not_polling(
    pg_database: str, migrated: str
) -> None:
    registry = Registry()

    @registry.job(name="long")
    async def long(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    settings = Settings(
        database_url=pg_database,
        database_schema=migrated,
        poll_interval=0.05,
        cancel_poll_interval=60,
    )
    app = App(registry=registry, settings=settings)
    worker = Worker(app, WorkerOptions(worker_id=worker_id("cancel"), maintenance=False))
    task = asyncio.create_task(worker.run())
    try:
        handle = await long.adelay()
        for _ in range(200):
            job = await handle.aget()
            if job is not None and job.status is JobStatus.RUNNING:
                break
            await asyncio.sleep(0.02)
        asked = time.monotonic()
        assert (await app.client.acancel(handle.job_id)).value == "requested"
        for _ in range(200):
            job = await handle.aget()
            if job is not None and job.status is JobStatus.CANCELLED:
                break
            await asyncio.sleep(0.01)
        assert job is not None and job.status is JobStatus.CANCELLED
        assert time.monotonic() - asked < 5.0, "woken by NOTIFY, not the 60 s poll"
    finally:
        worker.request_stop()
        await task
        await app.aclose()


async def test_the_advisory_lease_ends_with_its_session(pg_database: str, migrated: str) -> None:
    from jobworker.storage import create_storage

    settings = Settings(database_url=pg_database, database_schema=migrated)
    storage = create_storage(pg_database, settings)
    await storage.open()
    a = storage.leadership.leader_lease("beat", "host-a", 30.0)
    b = storage.leadership.leader_lease("beat", "host-b", 30.0)
    try:
        assert await a.acquire() and not await b.acquire()
        assert (await b.current()).holder == "host-a"  # type: ignore[union-attr]
        conn = await asyncpg.connect(pg_database)
        try:  # the leader's session dies (crash, network): the server frees the lock at once
            await conn.execute(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks AS l "
                "JOIN pg_database AS d ON d.oid = l.database AND d.datname = current_database() "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        await asyncio.sleep(0.2)
        assert not await a.renew(), "the old leader finds out on its next renewal"
        assert await b.acquire()
        assert (await a.current()).holder == "host-b"  # type: ignore[union-attr]
    finally:
        await a.close()
        await b.close()
        await storage.close()


async def test_attempt_lifecycle_events_are_read_from_attempt_rows(
    pg_database: str, migrated: str
) -> None:
    """The claim and the completion store no event rows for a job's start, result and end: its
    history is read from the jobs and job_attempts rows."""
    from datetime import UTC, datetime

    from jobworker.events.model import Lifecycle
    from jobworker.ids import uuid7
    from jobworker.models import Completion, EventKind, NewJob, Succeeded

    settings = Settings(database_url=pg_database, database_schema=migrated)
    storage = create_storage(pg_database, settings)
    await storage.open()
    conn = await asyncpg.connect(pg_database)

    def new_job() -> NewJob:
        now = datetime.now(UTC)
        return NewJob(
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

    async def stored_rows(job_id: object) -> int:
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM {migrated}.job_events WHERE job_id = $1", job_id
            )
        )

    async def history(job_id: object) -> list[tuple[int, str, str | None]]:
        return [
            (
                e.seq,
                e.kind.value,
                e.decoded(Lifecycle).status.value if e.kind is EventKind.LIFECYCLE else None,
            )
            for e in await storage.events.read_events(job_id)
        ]

    try:
        job, other = new_job(), new_job()
        await storage.jobs.enqueue_many([job, other])
        claimed = {
            c.id: c for c in await storage.jobs.claim("w1", ["t.noop"], ["default"], 10, 30.0)
        }
        assert await history(job.id) == [(1, "lifecycle", "running")]
        # As a worker ends a succeeded attempt that emitted nothing: the storage numbers its
        # result event and its end.
        done = [
            Completion(
                job_id=c.id,
                attempt=c.attempt,
                lease_owner="w1",
                started_at=c.started_at,
                ended_at=datetime.now(UTC),
                outcome=Succeeded(result=b"42"),
                event_seq=c.event_seq,
                # A worker passes the claim's number; without it the storage looks it up.
                start_seq=c.event_seq if c.id == job.id else 0,
            )
            for c in claimed.values()
        ]
        recorded = await storage.jobs.complete_many(done)
        assert sorted(e.seq for e in recorded.events) == [2, 2, 3, 3]
        assert await stored_rows(job.id) == 0
        expected = [(1, "lifecycle", "running"), (2, "result", None), (3, "lifecycle", "succeeded")]
        assert await history(job.id) == expected
        [result] = [
            e for e in await storage.events.read_events(job.id) if e.kind is EventKind.RESULT
        ]
        assert result.decoded() == {"value": 42}
        assert await history(other.id) == expected
        assert await stored_rows(other.id) == 0
    finally:
        await conn.close()
        await storage.close()


async def test_completions_notify_readers_without_redis(pg_database: str, migrated: str) -> None:
    """Without Redis, readers wait on LISTEN: a worker's completion statement notifies them of
    the jobs it ended and of those whose events it stored (one notification per statement)."""
    registry = Registry()

    @registry.job(name="notify.me")
    async def notify_me(ctx: JobContext, n: int) -> int:
        await ctx.progress(1, 1)
        return n

    app = App(pg_database, registry=registry, database_schema=migrated)
    conn = await asyncpg.connect(pg_database)
    heard: list[str] = []
    try:
        await conn.add_listener(
            f"jobworker-events:{migrated}", lambda *args: heard.append(args[-1])
        )
        handles = [await notify_me.adelay(n=n) for n in range(3)]
        assert (await adrain(app)).succeeded == 3
        await asyncio.sleep(0.2)
        named = {job_id for payload in heard for job_id in payload.split(",")}
        assert {str(h.job_id) for h in handles} <= named
        assert len(heard) <= 3
    finally:
        await conn.close()
        await app.aclose()
