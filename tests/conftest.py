from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobworker import App, Registry, Settings

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# Settings that make retries and polling fast enough for tests.
FAST = {
    "retry_base_delay": 0.05,
    "retry_max_delay": 0.1,
    "poll_interval": 0.05,
    "rescue_interval": 0.2,
    "lease_duration": 30.0,
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("JOBWORKER_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _no_app_left_bound() -> Iterator[None]:
    """A test that leaves an App open on the default registry sends every later test's
    `.delay()` in the same process to that App's database: fail it, and set the registry free."""
    from jobworker.definitions import default_registry

    yield
    bound = default_registry.bound
    if bound is not None and not default_registry._released:
        default_registry.release(bound)
        pytest.fail(f"the test left an App open on the default registry: {bound!r}")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One PostgreSQL database for the whole session; tests take a schema of their own in it."""
    from .pg import temporary_database

    with temporary_database() as url:
        yield url


@dataclass
class Store:
    """An empty, migrated job store of one backend, for tests that run real processes."""

    backend: str
    url: str
    schema: str = "jobworker"

    @property
    def env(self) -> dict[str, str]:
        return {"JOBWORKER_DATABASE_URL": self.url, "JOBWORKER_DATABASE_SCHEMA": self.schema}

    def app(self, **settings: object) -> App:
        return App(self.url, database_schema=self.schema, **settings)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    from .pg import drop_schema, migrate_schema, new_schema_name

    url = request.getfixturevalue("pg_database")
    schema = new_schema_name()
    asyncio.run(migrate_schema(url, schema))
    yield Store("postgres", url, schema)
    asyncio.run(drop_schema(url, schema))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return Settings(database_url=sqlite_url, **FAST)  # type: ignore[arg-type]


@pytest.fixture
def app(registry: Registry, settings: Settings) -> Iterator[App]:
    instance = App(registry=registry, settings=settings)
    yield instance
    instance.close()


@pytest.fixture
async def aapp(registry: Registry, settings: Settings) -> AsyncIterator[App]:
    instance = App(registry=registry, settings=settings)
    yield instance
    await instance.aclose()


def subprocess_env(**extra: str) -> dict[str, str]:
    """An environment for child processes that can import the tests' job modules."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWORKER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "apps"), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


JOBWORKER = [sys.executable, "-m", "jobworker"]


REDIS_URL = os.environ.get("JOBWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def cleanup_redis(prefix: str) -> None:
    """Delete the keys a test wrote under its own prefix."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()
