"""The backend conformance suite: every storage behaviour, written once, run on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobworker import Settings
from jobworker.clock import FrozenClock
from jobworker.ids import uuid7
from jobworker.models import JobStatus, NewJob
from jobworker.storage import Storage, create_storage

from .. import sqlserver
from ..pg import drop_schema, new_schema_name

BACKENDS = ["sqlite", "postgres"]
if sqlserver.DSN:  # JOBWORKER_TEST_SQLSERVER_DSN, read at import (see tests/sqlserver.py)
    BACKENDS.append("sqlserver")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))


@pytest.fixture(params=BACKENDS)
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh, empty store of each backend."""
    if request.param == "sqlite":
        yield Settings(database_url=f"sqlite:///{tmp_path / 'conformance.db'}")
    elif request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        schema = new_schema_name()
        yield Settings(database_url=url, database_schema=schema)
        asyncio.run(drop_schema(url, schema))
    else:
        # A schema of its own (the `storage` fixture migrates it), dropped with its objects after.
        assert sqlserver.DSN
        with sqlserver.temporary_schema(sqlserver.DSN) as schema:
            yield Settings(database_url=sqlserver.DSN, database_schema=schema)


@pytest.fixture
async def storage(backend_settings: Settings, clock: FrozenClock) -> AsyncIterator[Storage]:
    backend = create_storage(backend_settings.database_url, backend_settings, clock)
    await backend.open()
    await backend.schema.migrate()
    try:
        yield backend
    finally:
        await backend.close()


NewJobFactory = Callable[..., NewJob]


@pytest.fixture
def new_job(clock: FrozenClock) -> NewJobFactory:
    def make(**overrides: Any) -> NewJob:
        now = clock.now()
        delay = overrides.pop("delay", None)
        run_at = now + timedelta(seconds=delay) if delay else now
        fields: dict[str, Any] = {
            "id": uuid7(now),
            "job_type": "t.noop",
            "queue": "default",
            "priority": 0,
            "args": b"{}",
            "max_attempts": 3,
            "status": JobStatus.SCHEDULED if delay else JobStatus.QUEUED,
            "run_at": run_at,
            "enqueued_at": now,
        }
        fields.update(overrides)
        return NewJob(**fields)

    return make
