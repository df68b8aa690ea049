"""The supervisor's loop while the database does not answer: a real `jobworker run` on
PostgreSQL behind a proxy that holds new connections (accepted, then left waiting, as a database
in trouble does) until it lets them through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from jobworker import App, AttemptOutcome, JobStatus
from jobworker.release import Release, release_leases

from .conftest import FAST, TESTS, subprocess_env
from .pg import ADMIN_URL, drop_schema, migrate_schema, new_schema_name
from .test_processes import Run, wait_for

sys.path.insert(0, str(TESTS / "apps"))
import proc_jobs

pytestmark = pytest.mark.slow


class HoldingProxy:
    """A TCP proxy on 127.0.0.1 in front of the test PostgreSQL, on a thread of its own.
    Connections made while it `hold`s are accepted and left waiting (existing ones carry on);
    `let_through` sends them on."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.held = 0  # connections that had to wait
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def hold(self) -> None:
        self._on_loop(self._passing.clear)

    def let_through(self) -> None:
        self._on_loop(self._passing.set)

    def close(self) -> None:
        self._on_loop(self._stop.set)
        self._thread.join(10)

    def _on_loop(self, call: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            call()
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(5)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._passing = asyncio.Event()
        self._passing.set()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            if not self._passing.is_set():
                self.held += 1
                await self._passing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            self._writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


@pytest.fixture
def postgres(pg_database: str) -> Iterator[tuple[str, str]]:
    """(database URL, schema): a migrated schema of its own, dropped afterwards."""
    schema = new_schema_name()
    asyncio.run(migrate_schema(pg_database, schema))
    yield pg_database, schema
    asyncio.run(drop_schema(pg_database, schema))


@pytest.fixture
def proxy() -> Iterator[HoldingProxy]:
    host_port = re.search(r"@([^:/]+):(\d+)/", ADMIN_URL)
    target = (host_port.group(1), int(host_port.group(2))) if host_port else ("127.0.0.1", 5432)
    instance = HoldingProxy(target)
    yield instance
    instance.close()


def started_workers(run: Run) -> list[int]:
    return [int(pid) for pid in re.findall(r"started worker 0 \(pid (\d+)", run.log)]


def test_a_database_that_does_not_answer_never_stalls_the_supervisors_loop(
    postgres: tuple[str, str], proxy: HoldingProxy, tmp_path: Path
) -> None:
    """A child dies while new database connections hang: the supervisor reaps it and starts its
    replacement at once, and answers SIGTERM at once; the dead child's leases are released as
    soon as the database answers again (by the helper process, not by expiry: the lease is
    300 s)."""
    url, schema = postgres
    proxied = re.sub(r"@[^/]+/", f"@127.0.0.1:{proxy.port}/", url)
    settings = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}
    settings["JOBWORKER_LEASE_DURATION"] = "300"
    env = subprocess_env(
        **settings,
        JOBWORKER_DATABASE_URL=proxied,
        JOBWORKER_DATABASE_SCHEMA=schema,
        # Long enough that a supervisor waiting on the database would show it plainly.
        JOBWORKER_CONNECT_TIMEOUT="30",
    )
    app = App(url, database_schema=schema)
    run = Run(tmp_path, ["--concurrency", "1"], env)
    try:
        [child] = run.wait_children(1)
        marker = tmp_path / "marker"
        handle = proc_jobs.sleepy.delay(seconds=60, marker=str(marker), only_first=True)
        wait_for(marker.exists, 60, "the job to start")
        assert int(marker.read_text()) == child.pid
        # A child that dies sooner than 2 s after its start delays its replacement on purpose.
        time.sleep(max(0.0, child.create_time() + 2.5 - time.time()))

        proxy.hold()
        killed_at = time.monotonic()
        child.kill()
        replaced = wait_for(lambda: len(started_workers(run)) == 2, 20, "the replacement")
        replaced_after = time.monotonic() - killed_at
        assert replaced and f"worker 0 (pid {child.pid}) died (signal SIGKILL)" in run.log
        # The helper is trying to connect (held), and so is the new worker.
        wait_for(lambda: proxy.held >= 2, 10, "the helper and the new worker to connect")

        stop_at = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received; draining" in run.log, 20, "the stop to be heard")
        stop_heard_after = time.monotonic() - stop_at
        assert "released 1 job(s)" not in run.log, "the database has not answered yet"

        proxy.let_through()
        assert run.proc.wait(60) == 0
        log = run.log
        assert f"released 1 job(s) held by {_owner(log, child.pid)}" in log
        assert replaced_after < 3.0, f"the replacement took {replaced_after:.1f}s"
        assert stop_heard_after < 2.0, f"SIGTERM was heard after {stop_heard_after:.1f}s"

        job = app.client.get(handle.job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.attempt == 1
        [attempt] = app.client.attempts(handle.job_id)
        assert attempt.outcome is AttemptOutcome.LOST
        assert "worker process died (signal SIGKILL)" in (attempt.error or "")
    finally:
        app.close()
        run.kill()


def _kill_a_settled_child_while_held(run: Run, proxy: HoldingProxy) -> int:
    """SIGKILL the worker process once it is past the supervisor's restart pause (2 s), with
    new connections held. A worker that ended by itself before the kill (seen once under a
    loaded CI machine) is let be and the next one is taken. Returns how many had started."""
    for _ in range(3):
        [child] = run.wait_children(1)
        time.sleep(max(0.0, child.create_time() + 2.5 - time.time()))
        starts = len(started_workers(run))
        proxy.hold()
        try:
            child.kill()
            return starts
        except psutil.NoSuchProcess:
            proxy.let_through()
            wait_for(_more_started_than(run, starts), 20, "a new worker")
    raise AssertionError(f"every worker process ended by itself:\n{run.log}")


def _more_started_than(run: Run, count: int) -> Callable[[], bool]:
    return lambda: len(started_workers(run)) > count


def _owner(log: str, pid: int) -> str:
    found = re.search(rf"started worker 0 \(pid {pid}, owner ([^)]+)\)", log)
    assert found, log
    return found.group(1)


def test_the_helper_is_killed_at_the_stop_deadline_when_the_database_never_answers(
    postgres: tuple[str, str], proxy: HoldingProxy, tmp_path: Path
) -> None:
    """SIGTERM while a dead child's release waits on a database that never answers: the
    supervisor does not wait past its stop deadline; the leases are left to expire."""
    url, schema = postgres
    proxied = re.sub(r"@[^/]+/", f"@127.0.0.1:{proxy.port}/", url)
    env = subprocess_env(
        JOBWORKER_DATABASE_URL=proxied,
        JOBWORKER_DATABASE_SCHEMA=schema,
        JOBWORKER_CONNECT_TIMEOUT="120",
    )
    run = Run(tmp_path, ["--concurrency", "1", "--drain-timeout", "1"], env)
    try:
        starts = _kill_a_settled_child_while_held(run, proxy)
        wait_for(lambda: len(started_workers(run)) == starts + 1, 20, "the replacement")
        began = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        # The drain timeout (1 s) + 10 s, then the helper and the stuck worker are killed.
        assert run.proc.wait(40) == 0
        assert time.monotonic() - began < 25
        log = run.log
        assert "stopping the release of the leases of" in log
        assert "they will expire instead" in log
    finally:
        run.kill()


def test_the_release_helper_releases_owner_by_owner_and_logs_what_failed(
    postgres: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """`release_leases`, the helper process's body, run in this process: a database out of
    reach fails every owner (each logged), a reachable one releases each owner's jobs."""
    url, schema = postgres
    caplog.set_level(logging.INFO, logger="jobworker.supervisor")
    nowhere = App("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=2)
    gone = [Release("a:1", lost=True, reason="died"), Release("b:2", lost=False, reason="stop")]
    try:
        assert release_leases(nowhere, gone) == 1
    finally:
        nowhere.close()
    failed = [r.getMessage() for r in caplog.records if "failed; they will expire" in r.message]
    assert failed == [
        "releasing the leases of a:1 failed; they will expire instead",
        "releasing the leases of b:2 failed; they will expire instead",
    ]

    app = App(url, database_schema=schema)
    try:
        handle = proc_jobs.noop.delay(i=1)

        async def claim() -> None:
            storage = app.create_storage()
            await storage.open()
            try:
                [job] = await storage.jobs.claim("dead:3", ["proc.noop"], ["default"], 1, 300)
                assert job.id == handle.job_id
            finally:
                await storage.close()

        asyncio.run(claim())
        died = Release("dead:3", lost=True, reason="worker process died (signal SIGKILL)")
        assert release_leases(app, [died, Release("idle:4", lost=False, reason="stop")]) == 0
        assert "released 1 job(s) held by dead:3" in caplog.text
        assert "idle:4" not in caplog.text  # nothing to release, nothing said
        [attempt] = app.client.attempts(handle.job_id)
        assert attempt.outcome is AttemptOutcome.LOST and "SIGKILL" in (attempt.error or "")
    finally:
        app.close()
