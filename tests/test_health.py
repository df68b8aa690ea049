"""`jobworker health`, run as a real command against real databases, Redis servers and
processes: one line per check, and every row of the exit code table (docs/health.md):
0 healthy, 1 warnings only, 2 bad input, 3 no live worker process, 4 Redis unreachable,
5 database unreachable or schema not current; the most severe wins. `--json` parses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobworker import Settings, WorkerInfo, WorkerRole
from jobworker.health.checks import Status
from jobworker.health.report import exit_code
from jobworker.models import LeaseTerm
from jobworker.storage import create_storage, latest_schema_version

from .conftest import FAST, JOBWORKER, REDIS_URL, Store, cleanup_redis, subprocess_env
from .pg import drop_schema, new_schema_name
from .test_beat_processes import BeatProcess
from .test_processes import Run, wait_for

pytestmark = pytest.mark.slow


class Health:
    """`jobworker health` as a command: its exit code, its lines, and its JSON."""

    def __init__(self, store: Store, **env: str) -> None:
        self.env = subprocess_env(**store.env, **env)

    def run(self, *args: str, **env: str) -> tuple[int, str]:
        done = subprocess.run(
            [*JOBWORKER, "health", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, done.stdout + done.stderr

    def lines(self, **env: str) -> tuple[int, dict[str, tuple[str, str]]]:
        """The exit code, and each check's (status, detail) from the lines."""
        code, out = self.run(**env)
        checks = {}
        for line in out.splitlines():
            name, status, ms, unit, detail = line.split(maxsplit=4)
            assert unit == "ms" and float(ms) >= 0, line
            checks[name] = (status, detail)
        return code, checks

    def json(self, **env: str) -> dict[str, Any]:
        code, out = self.run("--json", **env)
        report: dict[str, Any] = json.loads(out)
        assert report["exit_code"] == code
        assert {check["status"] for check in report["checks"]} <= {"ok", "warn", "fail"}
        assert all(check["seconds"] >= 0 for check in report["checks"])
        return report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


async def write_registry(
    store: Store, *, workers: int = 0, beat: bool = False, recurring: int = 0
) -> None:
    """Rows as live processes write them: worker processes' registry rows, beat's leader
    heartbeat (alive for a minute)."""
    settings = Settings(database_url=store.url, database_schema=store.schema)
    storage = create_storage(store.url, settings)
    await storage.open()
    try:
        now = storage.clock.now()
        for index in range(workers):
            await storage.workers.register(
                WorkerInfo(
                    id=f"test:{index}:{uuid.uuid4().hex[:6]}",
                    host="test",
                    pid=1000 + index,
                    role=WorkerRole.WORKER,
                    module="proc_jobs",
                    queues=["default"],
                    slots=1,
                    started_at=now,
                    last_heartbeat=now,
                )
            )
        if beat:
            term = LeaseTerm(holder="test:beat", since=now, mechanism="test", token="t1")
            await storage.leadership.record_beat_leader("beat", term, now + timedelta(seconds=60))
    finally:
        await storage.close()


@pytest.fixture
def health(store: Store) -> Health:
    asyncio.run(write_registry(store))  # SQLite: the file exists (health never creates it)
    return Health(store)


def test_a_healthy_cluster_exits_0_with_a_line_per_check(store: Store, tmp_path: Path) -> None:
    """A real supervisor with two worker processes and a real beat leading by Redis."""
    prefix = f"jw-health-{uuid.uuid4().hex[:8]}:"
    redis_env = {"JOBWORKER_REDIS_URL": REDIS_URL, "JOBWORKER_REDIS_PREFIX": prefix}
    fast = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}
    run = Run(tmp_path, ["--concurrency", "2"], subprocess_env(**store.env, **fast, **redis_env))
    beat = BeatProcess(store, tmp_path / "beat.log", **redis_env)
    health = Health(store, **redis_env)
    try:
        run.wait_children(2)

        def healthy() -> tuple[int, dict[str, tuple[str, str]]] | None:
            code, checks = health.lines()
            return (code, checks) if code == 0 else None

        _, checks = wait_for(healthy, 30, "every check to be ok")
        assert list(checks) == ["database", "redis", "workers", "beat"]
        version = latest_schema_version("sqlite" if store.backend == "sqlite" else "postgres")
        assert checks["database"] == ("ok", f"schema version {version}, as this code expects")
        assert checks["redis"][1].startswith("PING answered by redis://127.0.0.1")
        assert checks["workers"][1].startswith("2 worker process(es) alive under 1 supervisor")
        assert checks["beat"][1].startswith(f"{beat.holder} leads by redis since ")
        report = health.json()
        assert report["status"] == "ok" and report["exit_code"] == 0
        assert [c["name"] for c in report["checks"]] == list(checks)
    finally:
        beat.stop()
        run.stop()
        cleanup_redis(prefix)


def test_workers_without_a_beat_leader_are_a_warning_exit_1(store: Store, health: Health) -> None:
    asyncio.run(write_registry(store, workers=1))
    code, checks = health.lines()
    assert code == 1
    assert checks["database"][0] == checks["workers"][0] == "ok"
    assert "redis" not in checks  # not configured
    assert checks["beat"] == (
        "warn",
        "no beat leader: 0 enabled recurring job(s) will not fire; worker processes rescue "
        "expired leases and run the janitor themselves",
    )
    assert health.json()["status"] == "warn"


def test_bad_input_exits_2(health: Health) -> None:
    code, out = health.run("--app", "no_such_module_here")
    assert code == 2 and "no_such_module_here" in out
    code, out = health.run("--database-url", "mysql://somewhere/db")
    assert code == 2 and "unknown scheme" in out
    code, out = health.run("--timeout", "0")
    assert code == 2 and "--timeout" in out


def test_no_live_worker_exits_3(store: Store, health: Health) -> None:
    asyncio.run(write_registry(store, beat=True))
    code, checks = health.lines()
    assert code == 3
    assert checks["workers"] == (
        "fail",
        "no worker process has a heartbeat within 60s",
    )
    assert checks["beat"][0] == "ok"
    # A row whose heartbeat is older than heartbeat_timeout is not a live worker, even before
    # the janitor marks it gone.
    asyncio.run(write_registry(store, workers=1))
    assert health.lines()[0] == 0
    time.sleep(1.5)
    code, checks = health.lines(JOBWORKER_HEARTBEAT_TIMEOUT="1")
    assert code == 3
    assert checks["workers"] == (
        "fail",
        "no worker process has a heartbeat within 1s; 1 stale",
    )


def test_redis_unreachable_exits_4(store: Store, health: Health) -> None:
    asyncio.run(write_registry(store, workers=1, beat=True))
    assert health.run()[0] == 0
    closed = f"redis://127.0.0.1:{free_port()}/0"
    code, checks = health.lines(JOBWORKER_REDIS_URL=closed)
    assert code == 4
    assert checks["redis"][0] == "fail" and "Error 111 connecting to" in checks["redis"][1]
    with silent_server() as port:
        started = time.monotonic()
        code, out = health.run("--timeout", "1", JOBWORKER_REDIS_URL=f"redis://127.0.0.1:{port}/0")
        assert time.monotonic() - started < 10
    assert code == 4
    [line] = [line for line in out.splitlines() if line.startswith("redis ")]
    assert " fail " in line and ("no answer within 1s" in line or "Timeout" in line), out


def test_database_unreachable_exits_5_and_the_rest_is_not_checked(health: Health) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    code, checks = health.lines(JOBWORKER_DATABASE_URL=closed)
    assert code == 5
    assert checks["database"][0] == "fail"
    assert "cannot connect to PostgreSQL at" in checks["database"][1]
    assert (
        checks["workers"]
        == checks["beat"]
        == (
            "fail",
            "not checked: the database check failed",
        )
    )
    # The most severe outcome wins: the database (5) over Redis (4).
    closed_redis = f"redis://127.0.0.1:{free_port()}/0"
    report = health.json(JOBWORKER_DATABASE_URL=closed, JOBWORKER_REDIS_URL=closed_redis)
    assert report["exit_code"] == 5
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "database": "fail",
        "redis": "fail",
        "workers": "fail",
        "beat": "fail",
    }


def test_a_database_that_never_answers_fails_within_the_timeout(health: Health) -> None:
    with silent_server() as port:
        started = time.monotonic()
        code, checks = health.lines(
            JOBWORKER_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        )
        # The default timeout, 5 s, bounds the check; the command's start-up comes on top.
        assert time.monotonic() - started < 15
    assert code == 5 and checks["database"][0] == "fail"


def test_a_missing_sqlite_file_exits_5_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing-here.db"
    done = subprocess.run(
        [*JOBWORKER, "health", "--database-url", f"sqlite:///{path}"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 5
    assert f"no SQLite database at {path}" in done.stdout
    assert not path.exists()


def test_a_schema_not_current_exits_5(pg_database: str, tmp_path: Path) -> None:
    schema = new_schema_name()
    health = Health(Store("postgres", pg_database, schema))
    try:
        code, checks = health.lines()
        assert code == 5
        assert checks["database"] == ("fail", "no jobworker schema: run jobworker migrate")
    finally:
        asyncio.run(drop_schema(pg_database, schema))


def test_redis_unreachable_wins_over_no_workers(store: Store, health: Health) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    report = health.json(JOBWORKER_REDIS_URL=closed)
    assert report["exit_code"] == 4
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses == {"database": "ok", "redis": "fail", "workers": "fail", "beat": "warn"}


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ({}, 0),
        ({"database": "ok", "workers": "ok", "beat": "ok", "redis": "ok"}, 0),
        ({"beat": "warn"}, 1),
        ({"database": "warn"}, 1),
        ({"beat": "fail"}, 1),
        ({"workers": "fail", "beat": "warn"}, 3),
        ({"redis": "fail", "workers": "fail"}, 4),
        ({"database": "fail", "redis": "fail", "workers": "fail"}, 5),
    ],
)
def test_the_most_severe_outcome_gives_the_exit_code(statuses: dict[str, str], code: int) -> None:
    from jobworker.health.checks import Check

    checks = [
        Check(name=name, status=Status(status), detail="", seconds=0.0)
        for name, status in statuses.items()
    ]
    assert exit_code(checks) == code


def test_a_newer_schema_is_a_warning(store: Store, health: Health) -> None:
    asyncio.run(write_registry(store, workers=1, beat=True))

    async def bump() -> None:
        if store.backend == "sqlite":
            import sqlite3

            with contextlib.closing(sqlite3.connect(store.url.removeprefix("sqlite:///"))) as db:
                db.execute("UPDATE jobworker_schema SET version = version + 100")
                db.commit()
            return
        import asyncpg

        conn = await asyncpg.connect(store.url)
        try:
            table = f'"{store.schema}".jobworker_schema'
            await conn.execute(f"UPDATE {table} SET version = version + 100")
        finally:
            await conn.close()

    asyncio.run(bump())
    code, checks = health.lines()
    assert code == 1
    assert checks["database"][0] == "warn"
    assert "newer than this code's" in checks["database"][1]
