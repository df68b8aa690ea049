"""Group commit on SQLite: the write calls of a process that wait together share one write
transaction, each in its own savepoint (jobworker/storage/sqlite/group_commit.py), on real files.

The calls are made to wait together by holding the file's write lock from another connection
(as another process's write would) while they are issued: each is queued at once, and the group
is taken when the lock is free."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobworker import Settings
from jobworker.errors import JobNotFoundError
from jobworker.ids import uuid7
from jobworker.models import JobStatus, NewJob
from jobworker.storage.sqlite.storage import SQLiteStorage

from .conftest import subprocess_env


def new_job(**overrides: Any) -> NewJob:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
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
    fields.update(overrides)
    return NewJob(**fields)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "group.db")


async def opened(path: str, settings: Settings | None = None) -> SQLiteStorage:
    storage = SQLiteStorage(f"sqlite:///{path}", settings)
    await storage.open()
    return storage


@pytest.fixture
async def storage(path: str) -> AsyncIterator[SQLiteStorage]:
    storage = await opened(path)
    try:
        yield storage
    finally:
        await storage.close()


@contextmanager
def write_lock_held(path: str) -> Iterator[sqlite3.Connection]:
    """The file's write lock, held by a connection of its own until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def rows(path: str, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_writes_waiting_together_commit_in_one_transaction(
    storage: SQLiteStorage, path: str
) -> None:
    jobs = [new_job() for _ in range(5)]
    commits, calls = storage._db.commits
    with write_lock_held(path):
        writes = [asyncio.create_task(storage.jobs.enqueue_many([job])) for job in jobs]
        await asyncio.sleep(0)  # each task runs to its write call, which queues it
        assert storage._db.commits == (commits, calls)
    await asyncio.gather(*writes)
    assert storage._db.commits == (commits + 1, calls + 5)
    assert rows(path, "SELECT count(*) FROM jobs") == [(5,)]


async def test_a_failing_call_raises_to_its_caller_only_and_the_others_commit(
    storage: SQLiteStorage, path: str
) -> None:
    """The continuation of a job that does not exist is inserted, then refused (its parent is
    looked for after the insert): its row is rolled back, the calls around it commit."""
    before, after = new_job(), new_job()
    orphan = new_job(continues_job_id=uuid7(datetime.now(UTC)), status=JobStatus.AWAITING)
    commits, calls = storage._db.commits
    with write_lock_held(path):
        writes = [
            asyncio.create_task(storage.jobs.enqueue_many([job])) for job in (before, orphan, after)
        ]
        await asyncio.sleep(0)
    first, refused, last = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(refused, JobNotFoundError)
    assert not isinstance(first, BaseException) and not isinstance(last, BaseException)
    assert storage._db.commits == (commits + 1, calls + 2)
    assert await storage.inspection.get(orphan.id) is None
    assert {row[0] for row in rows(path, "SELECT id FROM jobs")} == {
        str(before.id),
        str(after.id),
    }


async def test_a_call_whose_error_rolls_back_the_whole_transaction_lets_the_others_run_again(
    storage: SQLiteStorage, path: str
) -> None:
    """Some errors make SQLite roll back the whole transaction (here a trigger's RAISE(ROLLBACK)):
    the call that came before is run again in a new one, once, and the one after runs."""
    with write_lock_held(path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON jobs WHEN NEW.queue = 'boom' "
            "BEGIN SELECT RAISE(ROLLBACK, 'no boom'); END"
        )
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        before, boom, after = new_job(), new_job(queue="boom"), new_job()
        writes = [
            asyncio.create_task(storage.jobs.enqueue_many([job])) for job in (before, boom, after)
        ]
        await asyncio.sleep(0)
    first, refused, last = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(refused, sqlite3.IntegrityError) and "no boom" in str(refused)
    # A second insert of `before` would have failed on its primary key.
    assert not isinstance(first, BaseException) and not isinstance(last, BaseException)
    assert {row[0] for row in rows(path, "SELECT id FROM jobs")} == {
        str(before.id),
        str(after.id),
    }


async def test_a_caller_cancelled_while_its_call_waits_is_not_run(
    storage: SQLiteStorage, path: str
) -> None:
    kept, dropped = new_job(), new_job()
    with write_lock_held(path):
        write = asyncio.create_task(storage.jobs.enqueue_many([kept]))
        cancelled = asyncio.create_task(storage.jobs.enqueue_many([dropped]))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    await write
    assert await storage.inspection.get(dropped.id) is None
    assert await storage.inspection.get(kept.id) is not None


async def test_a_lock_held_past_the_busy_timeout_is_waited_for_without_losing_a_call(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = await opened(path, Settings(sqlite_busy_timeout=0.05))
    try:
        jobs = [new_job() for _ in range(3)]
        commits, calls = storage._db.commits
        with caplog.at_level(logging.WARNING, "jobworker.storage.sqlite"):
            with write_lock_held(path):
                writes = [asyncio.create_task(storage.jobs.enqueue_many([job])) for job in jobs]
                deadline = time.monotonic() + 30
                while "database is locked; retrying" not in caplog.text:
                    assert time.monotonic() < deadline, "no retry was logged"
                    await asyncio.sleep(0.01)
            results = await asyncio.gather(*writes)
        assert [result.job_id for [result] in results] == [job.id for job in jobs]
        assert storage._db.commits == (commits + 1, calls + 3)
        assert rows(path, "SELECT count(*), count(DISTINCT id) FROM jobs") == [(3, 3)]
    finally:
        await storage.close()


def test_a_process_that_dies_inside_a_group_leaves_none_of_it(path: str) -> None:
    asyncio.run(_create(path))
    holder = sqlite3.connect(path, isolation_level=None)  # holds the write lock: the calls wait
    holder.execute("BEGIN IMMEDIATE")
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "sqlite_writers", "crash", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=subprocess_env(),
            text=True,
        ) as crashing:
            assert crashing.stdout is not None and crashing.stdin is not None
            try:
                assert crashing.stdout.readline().strip() == "queued"
                holder.execute("ROLLBACK")
                crashing.stdin.write("go\n")
                crashing.stdin.flush()
                # 3: its last call saw the group's first two writes inside the transaction,
                # then ended the process.
                assert crashing.wait(60) == 3
            finally:
                crashing.kill()
    finally:
        holder.close()
    assert rows(path, "SELECT count(*) FROM jobs") == [(0,)]
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    asyncio.run(_enqueue_one(path))  # the file takes writes again
    assert rows(path, "SELECT count(*) FROM jobs") == [(1,)]


def test_two_processes_writing_at_once_never_see_database_is_locked(path: str) -> None:
    asyncio.run(_create(path))
    calls = 300
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "sqlite_writers", "write", path, str(calls), f"writer{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
            text=True,
        )
        for n in range(2)
    ]
    outputs = [writer.communicate("go\n", timeout=300) for writer in writers]
    for writer, (_out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert "locked" not in err
    for out, _err in outputs:
        commits, committed = map(int, out.split())
        assert committed == calls and 0 < commits <= calls
    assert rows(path, "SELECT queue, count(*), count(DISTINCT id) FROM jobs GROUP BY queue") == [
        ("writer0", calls, calls),
        ("writer1", calls, calls),
    ]


async def _create(path: str) -> None:
    storage = await opened(path)
    await storage.close()


async def _enqueue_one(path: str) -> None:
    storage = await opened(path)
    try:
        await storage.jobs.enqueue_many([new_job()])
    finally:
        await storage.close()
