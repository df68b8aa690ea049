"""PostgreSQL for tests: a database per test session, a schema per test, both dropped after."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

ADMIN_URL = os.environ.get("JOBWORKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_for(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def temporary_database() -> Iterator[str]:
    """A fresh database `jw_test_<random>`, dropped WITH (FORCE) afterwards; yields its URL."""
    name = f"jw_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield url_for(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def new_schema_name() -> str:
    return f"jw_{uuid.uuid4().hex[:12]}"


async def migrate_schema(url: str, schema: str) -> None:
    from jobworker import Settings
    from jobworker.storage import create_storage

    storage = create_storage(url, Settings(database_url=url, database_schema=schema))
    await storage.open()
    try:
        await storage.schema.migrate()
    finally:
        await storage.close()


async def run_scripts(url: str, schema: str, scripts: list[Path]) -> None:
    """Run schema scripts as `jobworker sql` prints them, with `schema` filled in."""
    conn = await asyncpg.connect(url)
    try:
        for script in scripts:
            await conn.execute(script.read_text().replace("__SCHEMA__", f'"{schema}"'))
    finally:
        await conn.close()


_CATALOG = {
    "relations": """
        SELECT c.relname, c.relkind::text FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = $1""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
            a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text
        FROM pg_attribute AS a
        JOIN pg_class AS c ON c.oid = a.attrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1",
    "constraints": """
        SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint AS k
        JOIN pg_class AS c ON c.oid = k.conrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = $1""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = $1""",
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger AS t
        JOIN pg_class AS c ON c.oid = t.tgrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND NOT t.tgisinternal""",
}


async def catalog(url: str, schema: str) -> dict[str, set[tuple[object, ...]]]:
    """What a schema holds, as the catalog states it: relations, columns (type, null, default,
    identity), indexes, constraints, functions with their definitions, and triggers."""
    conn = await asyncpg.connect(url)
    try:
        return {
            part: {tuple(row) for row in await conn.fetch(sql, schema)}
            for part, sql in _CATALOG.items()
        }
    finally:
        await conn.close()
