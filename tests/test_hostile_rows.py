"""Rows written into the jobs table by hand, that no jobworker write makes, are isolated: the
claim and the lease rescue end them `dead` with why (or skip them) and carry on with the others,
and a listing shows the others and says which rows it could not read."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from jobworker import Settings
from jobworker.clock import FrozenClock
from jobworker.ids import uuid7
from jobworker.models import JobFilter, JobKind, JobStatus, NewJob
from jobworker.storage import Storage, create_storage

from .conftest import JOBWORKER, subprocess_env
from .pg import drop_schema, new_schema_name

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
COLUMNS = (
    "id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at, "
    "updated_at, started_at, lease_owner, lease_expires_at, result, result_ttl"
)


def new_job(clock: FrozenClock, **fields: object) -> NewJob:
    now = clock.now()
    base: dict[str, object] = {
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
    return NewJob(**{**base, **fields})  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def sqlite_storage(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Storage]:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    storage = create_storage(url, Settings(database_url=url), clock)
    await storage.open()
    await storage.schema.migrate()
    try:
        yield storage
    finally:
        await storage.close()


def insert_sqlite(path: Path, *rows: tuple[object, ...]) -> None:
    marks = ", ".join("?" * len(rows[0]))
    with sqlite3.connect(path) as db:
        db.executemany(f"INSERT INTO jobs ({COLUMNS}) VALUES ({marks})", rows)


def hand_row(job_id: object, **overrides: object) -> tuple[object, ...]:
    """A jobs row as COLUMNS lists them: queued, due, of type t.noop (what is overridden aside)."""
    t = T0.timestamp()
    row: dict[str, object] = {
        "id": job_id, "job_type": "t.noop", "queue": "default", "priority": 0,
        "status": "queued", "args": b"{}", "attempt": 0, "max_attempts": 3,
        "enqueued_at": t - 10, "run_at": t - 10, "updated_at": t - 10, "started_at": None,
        "lease_owner": None, "lease_expires_at": None, "result": None, "result_ttl": None,
    }  # fmt: skip
    row.update(overrides)
    return tuple(row.values())


def sqlite_rows(path: Path) -> dict[object, tuple[str, str | None]]:
    with sqlite3.connect(path) as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, status, error FROM jobs")}


async def test_a_claim_ends_unreadable_rows_dead_and_returns_the_others(
    sqlite_storage: Storage, clock: FrozenClock, tmp_path: Path
) -> None:
    good = [new_job(clock) for _ in range(2)]
    await sqlite_storage.jobs.enqueue_many(good)
    upper = str(uuid.uuid4()).upper()
    insert_sqlite(
        tmp_path / "hostile.db",
        hand_row("not-a-uuid", priority=5),
        hand_row(upper, priority=5),
        hand_row(str(uuid.uuid4()), priority="high"),
        hand_row(str(uuid.uuid4()), priority=5, result_ttl="forever"),
        hand_row(str(uuid.uuid4()), priority=5, args='{"as": "text"}'),
    )
    claimed = await sqlite_storage.jobs.claim("w1", ["t.noop"], ["default"], 10, 30.0)
    rows = sqlite_rows(tmp_path / "hostile.db")
    assert {job.id for job in claimed} >= {job.id for job in good}
    assert len(claimed) == 3  # the two enqueued, and the one with its arguments as TEXT
    assert [job.args for job in claimed if job.args != b"{}"] == [b'{"as": "text"}']
    dead = {key: error for key, (status, error) in rows.items() if status == "dead"}
    assert len(dead) == 4
    assert dead["not-a-uuid"] == "the jobs row could not be read: id 'not-a-uuid' is not a UUID"
    assert dead[upper] == f"the jobs row could not be read: id '{upper}' is not a UUID"
    assert any("priority 'high' is not an integer" in (e or "") for e in dead.values())
    assert any("result_ttl 'forever' is not a number" in (e or "") for e in dead.values())


async def test_lease_rescue_ends_unreadable_rows_and_rescues_the_others(
    sqlite_storage: Storage, clock: FrozenClock, tmp_path: Path
) -> None:
    good = new_job(clock)
    await sqlite_storage.jobs.enqueue_many([good])
    await sqlite_storage.jobs.claim("w1", ["t.noop"], ["default"], 10, 30.0)
    expired = T0.timestamp() - 1
    no_owner, no_expiry = str(uuid.uuid4()), str(uuid.uuid4())
    running = {"status": "running", "attempt": 1, "started_at": T0.timestamp() - 5}
    insert_sqlite(
        tmp_path / "hostile.db",
        hand_row("not-a-uuid", **running, lease_owner="w9", lease_expires_at=expired),
        hand_row(no_owner, **running, lease_expires_at=expired),
        hand_row(no_expiry, **running, lease_owner="w9"),
    )
    clock.advance(60)
    ids = await sqlite_storage.maintenance.leased_job_ids(None)
    assert set(ids) == {good.id, uuid.UUID(no_owner), uuid.UUID(no_expiry)}
    assert await sqlite_storage.maintenance.rescue_expired() == 4
    rows = sqlite_rows(tmp_path / "hostile.db")
    assert rows[str(good.id)][0] == "queued" and rows[no_expiry][0] == "queued"
    assert rows["not-a-uuid"] == (
        "dead",
        "the jobs row could not be read: id 'not-a-uuid' is not a UUID",
    )
    assert rows[no_owner] == (
        "dead",
        "the jobs row could not be read: lease_owner None is not text",
    )
    assert await sqlite_storage.maintenance.rescue_expired() == 0
    clock.advance(30 * 86400)
    assert await sqlite_storage.maintenance.purge_expired() == 2  # the janitor goes on


async def test_listing_skips_and_names_the_rows_it_cannot_read(
    sqlite_storage: Storage, clock: FrozenClock, tmp_path: Path
) -> None:
    good = new_job(clock)
    await sqlite_storage.jobs.enqueue_many([good])
    insert_sqlite(
        tmp_path / "hostile.db",
        hand_row("not-a-uuid"),
        hand_row(str(uuid.uuid4()), status="succeeded", result=b"\xff not json"),
    )
    listed = await sqlite_storage.inspection.list_jobs(JobFilter())
    assert len(listed) == 2 and [row.raw_id for row in listed.unreadable] == ["not-a-uuid"]
    result = await asyncio.to_thread(
        subprocess.run,
        [*JOBWORKER, "jobs", "--database-url", f"sqlite:///{tmp_path / 'hostile.db'}"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert str(good.id) in result.stdout and "not-a-uuid" not in result.stdout
    assert "2 row(s) of this page could not be read:" in result.stderr
    assert "id 'not-a-uuid': id 'not-a-uuid' is not a UUID" in result.stderr
    assert "result is not JSON" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_kind_no_jobworker_write_makes_is_an_unreadable_row_of_the_listing(
    sqlite_storage: Storage, clock: FrozenClock, tmp_path: Path
) -> None:
    good = new_job(clock, kind=JobKind.SYSTEM)
    await sqlite_storage.jobs.enqueue_many([good])
    admin, blank = str(uuid.uuid4()), str(uuid.uuid4())
    insert_sqlite(tmp_path / "hostile.db", hand_row(admin), hand_row(blank))
    with sqlite3.connect(tmp_path / "hostile.db") as db:  # past the check, as by hand
        db.execute("PRAGMA ignore_check_constraints = ON")
        db.execute("UPDATE jobs SET kind = 'admin' WHERE id = ?", (admin,))
        db.execute("UPDATE jobs SET kind = X'75736572' WHERE id = ?", (blank,))  # b'user'
    listed = await sqlite_storage.inspection.list_jobs(JobFilter())
    assert [record.id for record in listed] == [good.id]
    assert listed[0].kind is JobKind.SYSTEM
    reasons = {row.raw_id: row.reason for row in listed.unreadable}
    assert reasons == {
        admin: "kind 'admin' is not one of system, user",
        blank: "kind b'user' is not one of system, user",
    }
    assert [
        r.id for r in await sqlite_storage.inspection.list_jobs(JobFilter(kind=JobKind.SYSTEM))
    ] == [good.id]


async def test_postgres_isolates_what_its_types_let_through(
    pg_database: str, clock: FrozenClock
) -> None:
    """PostgreSQL's types refuse most of it; a result TTL no date can add (it would fail the
    completion of the whole batch) and a running row without a lease owner or expiry pass."""
    schema = new_schema_name()
    settings = Settings(database_url=pg_database, database_schema=schema)
    storage = create_storage(pg_database, settings, clock)
    await storage.open()
    await storage.schema.migrate()
    conn = await asyncpg.connect(pg_database)
    try:
        good = new_job(clock)
        await storage.jobs.enqueue_many([good])
        infinite, no_owner, no_expiry = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        insert = f"""INSERT INTO "{schema}".jobs (id, job_type, queue, priority, status, args,
            attempt, max_attempts, enqueued_at, run_at, started_at, lease_owner,
            lease_expires_at, result_ttl)
            VALUES ($1, 't.noop', 'default', $2, $3, '{{}}', $4, 3, $5, $5, $6, $7, $8, $9)"""
        before = T0 - timedelta(seconds=10)
        await conn.execute(insert, infinite, 5, "queued", 0, before, None, None, None, 1e300)
        await conn.execute(insert, no_owner, 0, "running", 1, before, before, None, before, None)
        await conn.execute(insert, no_expiry, 0, "running", 1, before, before, "w9", None, None)
        claimed = await storage.jobs.claim("w1", ["t.noop"], ["default"], 10, 30.0)
        assert [job.id for job in claimed] == [good.id]
        [row] = await conn.fetch(
            f'SELECT status, error FROM "{schema}".jobs WHERE id = $1', infinite
        )
        assert row["status"] == "dead" and "result_ttl 1e+300 is not between 0" in row["error"]
        await storage.maintenance.rescue_expired()
        found = dict(await conn.fetch(f'SELECT id, status FROM "{schema}".jobs'))
        assert found[no_owner] == "dead" and found[no_expiry] == "queued"
        assert found[good.id] == "running"
    finally:
        await conn.close()
        await storage.close()
        await drop_schema(pg_database, schema)
