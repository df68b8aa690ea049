"""`Client.aworkers` and `jobworker workers`: the worker registry as the client and the command
show it (the rows themselves: tests/conformance/test_workers.py; real processes:
tests/test_worker_registry_processes.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from jobworker import App, Settings, WorkerInfo, WorkerRole
from jobworker.cli import main
from jobworker.clock import FrozenClock
from jobworker.maintenance import mark_stale_workers, purge
from jobworker.registration import GONE_RETENTION, Registration
from jobworker.storage import Storage, create_storage

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def row(id: str, **fields: object) -> WorkerInfo:
    values: dict[str, object] = {
        "id": id,
        "host": "host-a",
        "pid": 100,
        "role": WorkerRole.WORKER,
        "module": "app.jobs",
        "queues": ["default"],
        "slots": 4,
        "started_at": START,
        "last_heartbeat": START,
    }
    values.update(fields)
    return WorkerInfo(**values)  # type: ignore[arg-type]


async def registry_of(path: Path, clock: FrozenClock) -> None:
    """A supervisor with two worker processes (one gone), and a beat."""
    storage = create_storage(f"sqlite:///{path}", clock=clock)
    await storage.open()
    try:
        await storage.workers.register(
            row("sup", role=WorkerRole.SUPERVISOR, slots=8, module="app.jobs\x1b[2J")
        )
        clock.advance(1)
        await storage.workers.register(
            row("w0", pid=101, parent="sup", running=3, started_at=START + timedelta(seconds=1))
        )
        await storage.workers.register(
            row("w1", pid=102, parent="sup", running=2, started_at=START + timedelta(seconds=2))
        )
        await storage.workers.register(
            row(
                "beat",
                pid=200,
                role=WorkerRole.BEAT,
                queues=[],
                started_at=START + timedelta(seconds=3),
            )
        )
        clock.advance(30)
        for live in ("sup", "w0", "beat"):
            assert await storage.workers.heartbeat(live, 3 if live == "w0" else 0)
        assert await storage.workers.mark_gone(20.0) == 1  # w1
    finally:
        await storage.close()


async def test_a_supervisor_runs_what_its_live_worker_processes_run(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    await registry_of(tmp_path / "jobs.db", clock)
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}", bind=False)
    try:
        listed = await app.client.aworkers()
        assert [(w.id, w.running, w.gone) for w in listed] == [
            ("sup", 3, False),  # w0's 3; w1 is gone
            ("w0", 3, False),
            ("w1", 2, True),
            ("beat", 0, False),
        ]
        live = await app.client.aworkers(include_gone=False)
        assert [w.id for w in live] == ["sup", "w0", "beat"]
        assert live[0].last_heartbeat == START + timedelta(seconds=31)
    finally:
        await app.aclose()


def test_the_workers_command_prints_a_table_and_json(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    asyncio.run(registry_of(path, FrozenClock(START)))
    url = f"sqlite:///{path}"
    result = CliRunner().invoke(main, ["workers", "--database-url", url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "HOST", "PID", "ROLE", "MODULE", "QUEUES", "SLOTS", "RUNNING", "STARTED", "LAST",
        "HEARTBEAT", "STATE",
    ]  # fmt: skip
    supervisor, w0, w1, beat = (line.split() for line in lines[1:])
    assert supervisor[:7] == [
        "host-a",
        "100",
        "supervisor",
        "app.jobs\\u001b[2J",
        "default",
        "8",
        "3",
    ]
    assert "\x1b" not in result.output, "a control character in a row is shown escaped"
    assert supervisor[-1] == "live" and w1[-1] == "gone" and w0[-1] == "live"
    assert beat[:7] == ["host-a", "200", "beat", "app.jobs", "-", "4", "0"]
    assert " ".join(supervisor[7:9]) == "2030-01-01 12:00:00+0000"
    assert " ".join(supervisor[9:11]) == "2030-01-01 12:00:31+0000"

    live = CliRunner().invoke(main, ["workers", "--live", "--database-url", url])
    assert live.exit_code == 0 and len(live.output.splitlines()) == 4, live.output

    as_json = CliRunner().invoke(main, ["workers", "--json", "--database-url", url])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert [item["id"] for item in data] == ["sup", "w0", "w1", "beat"]
    assert data[0]["module"] == "app.jobs\x1b[2J" and "\x1b" not in as_json.output
    assert data[1] == {
        "id": "w0",
        "host": "host-a",
        "pid": 101,
        "role": "worker",
        "module": "app.jobs",
        "queues": ["default"],
        "slots": 4,
        "started_at": "2030-01-01T12:00:01Z",
        "last_heartbeat": "2030-01-01T12:00:31Z",
        "running": 3,
        "gone": False,
        "parent": "sup",
    }


def test_no_workers(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["workers", "--database-url", f"sqlite:///{tmp_path}/j.db"])
    assert result.exit_code == 0 and result.output.splitlines()[1] == "(no workers)"


async def test_a_row_marked_gone_while_its_process_lives_is_written_again(tmp_path: Path) -> None:
    """A process stalled past the stale time (or cut off by an outage) finds its row marked gone
    at its next refresh and writes it again; a worker process refreshes its supervisor's row
    only while that supervisor lives."""
    clock = FrozenClock(START)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", heartbeat_timeout=0.2)
    storage = create_storage(settings.database_url, settings, clock)
    await storage.open()
    alive = True
    supervisor = row("sup", role=WorkerRole.SUPERVISOR)
    registration = Registration(
        storage,
        settings,
        row("w0", parent="sup"),
        lambda: 2,
        companion=supervisor,
        companion_alive=lambda: alive,
    )
    try:
        registration.start()
        await wait_until(storage, lambda rows: {r.id for r in rows} == {"sup", "w0"})
        clock.advance(10)
        assert await storage.workers.mark_gone(5.0) == 2
        rows = await wait_until(storage, lambda rows: not any(r.gone for r in rows))
        assert {r.id: r.last_heartbeat for r in rows} == {"sup": clock.now(), "w0": clock.now()}
        assert rows[1].running == 2

        alive = False  # the supervisor died: its row is left to go stale
        await asyncio.sleep(0.2)
        clock.advance(10)
        await wait_until(storage, lambda rows: rows[1].last_heartbeat == clock.now())
        assert await storage.workers.mark_gone(5.0) == 1
        [sup, _] = await storage.workers.list_workers()
        assert sup.gone

        await registration.stop()
        assert [r.id for r in await storage.workers.list_workers()] == ["sup"]
        await asyncio.sleep(0.2)
        assert [r.id for r in await storage.workers.list_workers()] == ["sup"], (
            "no refresh after a stop writes the row again"
        )
    finally:
        await registration.cancel()
        await storage.close()


async def wait_until(
    storage: Storage, predicate: Callable[[list[WorkerInfo]], bool]
) -> list[WorkerInfo]:
    for _ in range(200):
        rows = await storage.workers.list_workers()
        if rows and predicate(rows):
            return rows
        await asyncio.sleep(0.01)
    raise AssertionError(f"the registry never matched: {rows}")


async def test_the_janitor_marks_stale_rows_gone_and_purges_them_an_hour_later(
    tmp_path: Path,
) -> None:
    clock = FrozenClock(START)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", heartbeat_timeout=60)
    storage = create_storage(settings.database_url, settings, clock)
    await storage.open()
    try:
        await storage.workers.register(row("killed"))
        clock.advance(59)
        assert await mark_stale_workers(storage, settings) == 0
        clock.advance(2)  # 61 s without a heartbeat: more than heartbeat_timeout
        assert await mark_stale_workers(storage, settings) == 1
        await purge(storage, settings, clock)
        [kept] = await storage.workers.list_workers()
        assert kept.gone, "kept for an hour after its last heartbeat"
        clock.advance(GONE_RETENTION)
        await purge(storage, settings, clock)
        assert await storage.workers.list_workers() == []
    finally:
        await storage.close()
