"""PostgreSQL for tests: a database per test session, a schema per test, both dropped after."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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
