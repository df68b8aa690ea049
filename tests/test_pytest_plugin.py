"""jobworker.pytest_plugin in a pytest run of its own (a subprocess, as a user's suite runs it):
the apps take `.delay()` over from an App made at import and give it back, the PostgreSQL
schema is made, used and dropped, the PostgreSQL fixtures skip with the reason without a URL;
and the helpers of jobworker.testing the fixtures use."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from jobworker import App, JobContext, Registry
from jobworker.testing import aenqueued, bound_for_test, temporary_schema

JOBS = """
from jobworker import App, JobContext, Registry

registry = Registry()

@registry.job(name="plugin.add")
def add(ctx: JobContext, a: int, b: int) -> int:
    return a + b

production = App("sqlite:///production.db", registry=registry)
"""

CONFTEST = """
import pytest

pytest_plugins = ["jobworker.pytest_plugin"]

@pytest.fixture
def jobworker_registry():
    from plugjobs import registry
    return registry
"""


def run_pytest(tmp_path: Path, tests: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "plugjobs.py").write_text(JOBS)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_user.py").write_text(textwrap.dedent(tests))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JOBWORKER_")}
    environ.update(PYTHONPATH=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-n", "0"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=170,
    )


def test_the_app_takes_delay_over_for_the_test_and_gives_it_back(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path,
        """
        from jobworker.testing import enqueued
        from plugjobs import add, production, registry

        def test_one(jobworker_app, jobworker_drain):
            assert registry.bound is jobworker_app.client
            handle = add.delay(a=1, b=2)
            add.delay(a=3, b=4)
            assert [job.args for job in enqueued(jobworker_app, add)] == [
                {"a": 1, "b": 2}, {"a": 3, "b": 4}
            ]
            assert jobworker_drain().succeeded == 2
            assert handle.result(timeout=5) == 3

        def test_two_starts_empty(jobworker_app):
            assert enqueued(jobworker_app) == []

        def test_after_them_production_holds_it_again():
            assert registry.bound is production.client
        """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert not (tmp_path / "production.db").exists()  # nothing went to production's store


def schemas(url: str) -> set[str]:
    async def read() -> set[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'jw_test_%'"
            )
            return {row[0] for row in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


@pytest.mark.slow
def test_the_postgresql_apps_use_a_schema_of_their_own_and_drop_it(
    tmp_path: Path, pg_database: str
) -> None:
    before = schemas(pg_database)
    done = run_pytest(
        tmp_path,
        """
        import pytest
        from jobworker.testing import adrain
        from plugjobs import add

        def test_sync(jobworker_pg_app, jobworker_drain):
            schema = jobworker_pg_app.settings.database_schema
            assert schema.startswith("jw_test_")
            add.delay(a=1, b=2)
            assert jobworker_drain().succeeded == 1  # the PostgreSQL app, not a SQLite one
            assert jobworker_drain(jobworker_pg_app).attempts == 0

        @pytest.mark.asyncio
        async def test_async(jobworker_pg_aapp):
            handle = await add.adelay(a=2, b=2)
            await adrain(jobworker_pg_aapp)
            assert await handle.aresult(timeout=5) == 4
        """,
        JOBWORKER_TEST_PG_URL=pg_database,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert schemas(pg_database) == before


def test_the_postgresql_apps_skip_with_the_reason_without_a_url(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path,
        """
        def test_pg(jobworker_pg_app):
            raise AssertionError("never runs")
        """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "set JOBWORKER_TEST_PG_URL to the URL of a database" in done.stdout
    assert "1 skipped" in done.stdout


def test_bound_for_test_gives_the_registry_back_as_it_was(sqlite_url: str) -> None:
    registry = Registry()
    first = App(sqlite_url, registry=registry)
    second = App(sqlite_url, registry=registry, bind=False)
    try:
        with bound_for_test(second):
            assert registry.bound is second.client
        assert registry.bound is first.client and first.bound
        first.close()  # released: the next App may take the registry over
        with bound_for_test(second):
            assert second.bound
        assert registry.bound is first.client
        assert App(sqlite_url, registry=registry, bind=False).bound is False
        third = App(sqlite_url, registry=registry)  # still free to take over
        assert third.bound
        third.close()
    finally:
        second.close()


async def test_aenqueued_reads_every_page_oldest_first(sqlite_url: str) -> None:
    registry = Registry()

    @registry.job(name="plugin.echo")
    def echo(ctx: JobContext, n: int) -> int:
        return n

    app = App(sqlite_url, registry=registry, bind=False)
    try:
        await app.client.aenqueue_many(echo.name, [{"n": n} for n in range(1203)])
        await app.client.aenqueue("plugin.echo", {"n": -1})
        found = await aenqueued(app, echo)
        assert [job.args["n"] for job in found] == [*range(1203), -1]
        assert await aenqueued(app, "plugin.other") == []
    finally:
        await app.aclose()


@pytest.mark.slow
def test_temporary_schema_is_migrated_and_dropped(pg_database: str) -> None:
    with temporary_schema(pg_database) as schema:
        assert schema in schemas(pg_database)
    assert schema not in schemas(pg_database)
