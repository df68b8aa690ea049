"""The job-type catalogue from the code's side: the rows a registry declares, the write every
worker process and beat makes at start (a failed one stops nothing), and `jobworker types` /
`jobworker jobs`, which show the display names and icons."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3

import msgspec
import pytest
from click.testing import CliRunner

from jobworker import App, JobContext, JobStatus, Registry, Settings
from jobworker.beat import Beat
from jobworker.catalogue import job_type_specs, record_job_types
from jobworker.cli import main
from jobworker.models import JobKind
from jobworker.storage import create_storage
from jobworker.testing import adrain

from .conftest import Store


def make_registry() -> Registry:
    registry = Registry()

    @registry.job(
        name="users.export",
        display_name="Export users",
        icon="📤",
        queue="exports",
        max_attempts=5,
    )
    async def export(ctx: JobContext, tenant: str, limit: int = 100) -> int:
        """Streams a tenant's users to a CSV file.

        The second paragraph is not the description."""
        return limit

    @registry.job(name="system.cleanup", kind="system", cron="30 2 * * *", priority=3)
    def cleanup(ctx: JobContext) -> None: ...

    return registry


def test_a_registry_declares_its_types_resolved_over_the_settings() -> None:
    settings = Settings(default_queue="main", default_max_retries=2)
    cleanup, export = job_type_specs(make_registry(), settings)
    assert (export.name, export.kind, export.display_name, export.icon) == (
        "users.export",
        JobKind.USER,
        "Export users",
        "📤",
    )
    assert export.description == "Streams a tenant's users to a CSV file."
    assert (export.queue, export.max_attempts, export.is_async) == ("exports", 5, True)
    assert export.module == __name__
    assert export.args_schema is not None
    schema = msgspec.json.decode(export.args_schema)
    args = schema["$defs"]["users_export_args"]
    assert args["required"] == ["tenant"] and set(args["properties"]) == {"tenant", "limit"}
    assert (cleanup.kind, cleanup.display_name, cleanup.description) == (
        JobKind.SYSTEM,
        "system.cleanup",
        "",
    )
    assert (cleanup.queue, cleanup.max_attempts, cleanup.priority) == ("main", 3, 3)
    assert (cleanup.cron, cleanup.timezone, cleanup.is_async) == ("30 2 * * *", "UTC", False)


async def test_a_worker_writes_its_types_when_it_starts(store: Store) -> None:
    app = store.app(registry=make_registry())
    try:
        await adrain(app)
        types = {row.name: row for row in await app.client.ajob_types()}
        assert set(types) == {"users.export", "system.cleanup"}
        assert types["users.export"].display_name == "Export users"
    finally:
        await app.aclose()


async def test_beat_writes_its_types_when_it_starts(store: Store) -> None:
    app = store.app(registry=make_registry(), beat_lease_ttl=3.0)
    beat = Beat(app)
    task = asyncio.create_task(beat.run())
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not await app.client.ajob_types():
            assert asyncio.get_running_loop().time() < deadline, "beat wrote no types"
            assert not task.done(), task
            await asyncio.sleep(0.05)
        [cleanup, export] = await app.client.ajob_types()
        assert cleanup.seen_by == export.seen_by == beat.holder
        assert cleanup.cron == "30 2 * * *" and cleanup.kind is JobKind.SYSTEM
    finally:
        beat.request_stop()
        await asyncio.wait_for(task, 30)
        await app.aclose()


async def test_a_failed_write_is_a_warning_and_the_worker_serves_jobs(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With the table gone (a real failure of the database, not a stand-in), the worker logs
    it and runs its jobs all the same."""
    registry = make_registry()
    app = App(sqlite_url, registry=registry, bind=False)
    try:
        handle = await app.client.aenqueue("users.export", {"tenant": "t1", "limit": 7})
        path = sqlite_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        conn.execute("DROP TABLE job_types")
        conn.commit()
        conn.close()
        with caplog.at_level(logging.WARNING, logger="jobworker.catalogue"):
            await adrain(app, queues=["exports"])
        job = await app.client.aget(handle.job_id)
        assert job is not None and job.status is JobStatus.SUCCEEDED and job.result == 7
        assert "could not record 2 job type(s) in the job-type catalogue" in caplog.text
        assert "the next start tries again" in caplog.text
    finally:
        await app.aclose()


async def test_nothing_to_write_writes_nothing(sqlite_url: str) -> None:
    storage = create_storage(sqlite_url)
    await storage.open()
    try:
        assert await record_job_types(storage, Registry(), Settings(), "w")
        assert await storage.catalogue.list_types() == []
    finally:
        await storage.close()


def test_types_and_jobs_commands_show_display_names_and_icons(sqlite_url: str) -> None:
    """The commands run with --database-url alone: they do not import the jobs, and show what
    the catalogue holds (a process that started with these jobs wrote it)."""
    app = App(sqlite_url, registry=make_registry(), bind=False)
    try:
        asyncio.run(_record(app))
        app.client.enqueue("users.export", {"tenant": "t1"})
        app.client.enqueue("system.cleanup", {})
    finally:
        app.close()
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, [*args, "--database-url", sqlite_url])
        assert result.exit_code == 0, result.output
        return result.output

    table = run("types").splitlines()
    assert table[0].split() == ["TYPE", "KIND", "QUEUE", "CRON", "LAST", "SEEN", "DISPLAY", "NAME"]
    assert table[1].split()[:6] == ["system.cleanup", "system", "default", "30", "2", "*"]
    assert "(UTC)" in table[1] and table[1].endswith("system.cleanup")
    assert table[2].split()[:4] == ["users.export", "user", "exports", "-"]
    assert table[2].endswith("📤 Export users")
    listed = json.loads(run("types", "--json"))
    assert [item["name"] for item in listed] == ["system.cleanup", "users.export"]
    assert listed[1]["icon"] == "📤" and listed[1]["seen_by"] == "host:1:0"
    assert listed[1]["args_schema"]["$defs"]["users_export_args"]["required"] == ["tenant"]
    jobs = run("jobs").splitlines()
    assert jobs[0].split()[-1] == "NAME"
    assert jobs[1].split()[1] == "system.cleanup" and not jobs[1].endswith("system.cleanup")
    assert jobs[2].split()[1] == "users.export" and jobs[2].endswith("📤 Export users")
    unlabelled = run("jobs", "--type", "system.cleanup").splitlines()
    assert unlabelled[0].split()[-1] == "ERROR", "no listed type has a label: no NAME column"


async def _record(app: App) -> None:
    storage = app.create_storage()
    await storage.open()
    try:
        assert await record_job_types(storage, app.registry, app.settings, "host:1:0")
    finally:
        await storage.close()
