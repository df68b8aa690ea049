"""The schema role on PostgreSQL: `jobworker migrate` and the version check workers make.

`sql/postgres/` holds a baseline script stating the whole schema, then numbered migrations. A
schema older than the baseline was made by an unreleased development version: migrate refuses
it and touches nothing."""

from __future__ import annotations

from typing import Any

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.storage import server_schema
from jobworker.storage.postgres.connection import Database
from jobworker.storage.postgres.statements import quoted_schema

_MIGRATION_LOCK = 0x6A6F62776F726B  # "jobwork": one migration at a time per database


def rendered_scripts(schema: str) -> list[tuple[int, str, str]]:
    """The PostgreSQL schema scripts with the schema filled in (what `jobworker sql` prints)."""
    return server_schema.rendered_scripts("postgres", quoted_schema, schema)


class PostgresSchema:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._schema = settings.database_schema

    async def migrate(self) -> list[int]:
        applied = []
        async with self._db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            current = await self._version(conn)
            server_schema.check_upgradable("postgres", self._schema, current)
            for version, _name, text in rendered_scripts(self._schema):
                if version > current:
                    await conn.execute(text)
                    applied.append(version)
        return applied

    async def check_schema(self) -> None:
        async with self._db.acquire() as conn:
            current = await self._version(conn)
        server_schema.check_upgradable("postgres", self._schema, current)
        server_schema.check_version("postgres", self._schema, current)

    async def version(self) -> int:
        async with self._db.acquire() as conn:
            return await self._version(conn)

    async def _version(self, conn: Any) -> int:
        table = f"{quoted_schema(self._schema)}.jobworker_schema"
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            return 0
        return int(await self._db.fetchval("schema_version", conn=conn) or 0)


async def drop_schema(url: str, schema: str) -> None:
    """Drop `schema` and everything in it from the database at `url` (a test's temporary
    schema: `jobworker.testing.temporary_schema`)."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {quoted_schema(schema)} CASCADE")
    finally:
        await connection.close()
