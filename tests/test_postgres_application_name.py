"""Each PostgreSQL connection jobworker opens gives its process's role as its application_name,
so pg_stat_activity tells a worker's connections from the beat's, the web tail's and the CLI's;
one named in the database URL is kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from jobworker import App, Settings
from jobworker.storage import create_storage
from jobworker.storage.postgres.connection import Database

from .pg import drop_schema, migrate_schema, new_schema_name
from .test_postgres import env_for
from .test_processes import Run, wait_for


@pytest.fixture
def migrated(pg_database: str) -> Iterator[str]:
    schema = new_schema_name()
    asyncio.run(migrate_schema(pg_database, schema))
    yield schema
    asyncio.run(drop_schema(pg_database, schema))


async def _names(url: str) -> list[str]:
    """The application_name of every other session on the database at `url`."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def test_a_storage_names_its_connections_for_its_role(
    pg_database: str, migrated: str
) -> None:
    name = f"jobworker test {uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=pg_database, database_schema=migrated)
    storage = create_storage(pg_database, settings, application_name=name)
    await storage.open()
    dedicated = await Database(pg_database, settings, name).connect()  # LISTEN, leases
    try:
        await storage.inspection.queues()
        assert (await _names(pg_database)).count(name) == 2
    finally:
        await dedicated.close()
        await storage.close()


async def test_an_application_name_in_the_url_wins(pg_database: str, migrated: str) -> None:
    mine = f"mine {uuid.uuid4().hex[:8]}"
    url = f"{pg_database}?application_name={mine.replace(' ', '%20')}"
    app = App(url, database_schema=migrated, bind=False)
    app.application_name = "jobworker cli"
    storage = app.create_storage()
    await storage.open()
    try:
        await storage.inspection.queues()
        names = await _names(pg_database)
        assert mine in names and "jobworker cli" not in names
    finally:
        await storage.close()


def test_worker_processes_name_their_connections_by_index(
    pg_database: str, migrated: str, tmp_path: Path
) -> None:
    run = Run(tmp_path, ["--concurrency", "2"], env_for(pg_database, migrated, tmp_path))
    try:
        wait_for(
            lambda: (
                {"jobworker worker 0", "jobworker worker 1"}
                <= set(asyncio.run(_names(pg_database)))
            ),
            30,
            "both worker processes' connections, by name",
        )
        assert run.stop() == 0
    finally:
        run.kill()
