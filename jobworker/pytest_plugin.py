"""jobworker's pytest fixtures. Turn them on in your root conftest.py with
`pytest_plugins = ["jobworker.pytest_plugin"]`, or with `-p jobworker.pytest_plugin` (in
`addopts`, or on the command line).

They are not loaded by themselves (no `pytest11` entry point): any module of the package
imports `jobworker` first, which costs every pytest run of an environment where jobworker is
installed about as much again as importing pytest, tests that never touch a job included. This
module imports only pytest itself; each fixture imports what it needs when a test asks for it.
Every name starts with `jobworker_`, so none shadows a fixture of yours.

- `jobworker_app`: an App on a new SQLite file, bound for the test (`.delay()` goes to it),
  closed after. `jobworker_aapp` is the same for async tests (with pytest-asyncio).
- `jobworker_pg_app` / `jobworker_pg_aapp`: the same on a new, migrated schema of the
  PostgreSQL database at `JOBWORKER_TEST_PG_URL`, dropped after; skipped when it is not set.
- `jobworker_drain`: `jobworker_drain()` runs every due job of `jobworker_app` in this process.
- `jobworker_context`: `jobworker_context(job)` makes a capturing context to call a handler.
- `jobworker_clock`: a `FrozenClock`; the apps above run on it when the test asks for it too.
- `jobworker_registry` and `jobworker_settings`: override them in your conftest.py to give the
  apps your own `Registry` (default: the default registry of `@job`) or settings.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from jobworker import App, Registry
    from jobworker.clock import FrozenClock
    from jobworker.testing import CapturingContext, DrainResult

__all__ = [
    "PG_URL_VARIABLE",
    "jobworker_aapp",
    "jobworker_app",
    "jobworker_clock",
    "jobworker_context",
    "jobworker_drain",
    "jobworker_pg_aapp",
    "jobworker_pg_app",
    "jobworker_pg_url",
    "jobworker_registry",
    "jobworker_settings",
]

PG_URL_VARIABLE = "JOBWORKER_TEST_PG_URL"

try:  # async fixtures run on the test's loop under pytest-asyncio (loaded anyway when installed)
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without it, asking for an async fixture is an error
    _async_fixture = pytest.fixture  # type: ignore[assignment]


@pytest.fixture
def jobworker_registry() -> Registry:
    """The registry whose jobs the test apps run: the default one of `@job`. Override it to
    return yours (`from myapp.jobs import registry`)."""
    from jobworker.definitions import default_registry

    return default_registry


@pytest.fixture
def jobworker_settings() -> dict[str, Any]:
    """Settings of the test apps (keyword arguments of `App`): fast retries and polling.
    Override it to change them, e.g. `{**FAST_SETTINGS, "max_payload_bytes": 1024}`."""
    from jobworker.testing import FAST_SETTINGS

    return dict(FAST_SETTINGS)


@pytest.fixture
def jobworker_clock() -> FrozenClock:
    """A clock that moves only when told (`advance`, `set`), from 2030-01-01 00:00 UTC. The
    apps of these fixtures run on it when the test asks for it as well: a job delayed by an
    hour becomes due when the test advances the clock by an hour."""
    from jobworker.clock import FrozenClock

    return FrozenClock()


def _app_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {
        "registry": request.getfixturevalue("jobworker_registry"),
        "bind": False,
        **request.getfixturevalue("jobworker_settings"),
    }
    if "jobworker_clock" in request.fixturenames:
        options["clock"] = request.getfixturevalue("jobworker_clock")
    return options


@pytest.fixture
def jobworker_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    """An App on a new SQLite file in the test's temporary directory, bound for the test."""
    from jobworker import App
    from jobworker.testing import bound_for_test

    app = App(f"sqlite:///{tmp_path / 'jobworker-test.db'}", **_app_options(request))
    try:
        with bound_for_test(app):
            yield app
    finally:
        app.close()


@pytest.fixture
def jobworker_pg_url() -> str:
    """The PostgreSQL database the `pg` fixtures make their schemas in (`JOBWORKER_TEST_PG_URL`);
    the test is skipped when it is not set or asyncpg is not installed."""
    url = os.environ.get(PG_URL_VARIABLE)
    if not url:
        pytest.skip(
            f"no PostgreSQL to test against: set {PG_URL_VARIABLE} to the URL of a database "
            "where tests may create and drop schemas"
        )
    pytest.importorskip(
        "asyncpg", reason="PostgreSQL needs asyncpg: pip install 'jobworker[postgres]'"
    )
    return url


@pytest.fixture
def jobworker_pg_app(request: pytest.FixtureRequest, jobworker_pg_url: str) -> Iterator[App]:
    """An App on a new, migrated schema of `JOBWORKER_TEST_PG_URL`'s database, bound for the
    test; the schema is dropped after."""
    from jobworker import App
    from jobworker.testing import bound_for_test, temporary_schema

    with temporary_schema(jobworker_pg_url) as schema:
        app = App(jobworker_pg_url, database_schema=schema, **_app_options(request))
        try:
            with bound_for_test(app):
                yield app
        finally:
            app.close()


@pytest.fixture
def jobworker_drain(request: pytest.FixtureRequest) -> Callable[..., DrainResult]:
    """`jobworker_drain(app=None, *, queues=None)`: run every job that is due now, in this
    process, until none is left (`jobworker.testing.drain`). `app` defaults to the test's
    `jobworker_pg_app` when it asks for that one, else to `jobworker_app`. For async tests:
    `await jobworker.testing.adrain(app)`."""
    from jobworker.testing import drain

    def run(app: App | None = None, **options: Any) -> DrainResult:
        if app is None:
            wanted = "jobworker_pg_app" in request.fixturenames
            app = request.getfixturevalue("jobworker_pg_app" if wanted else "jobworker_app")
        return drain(app, **options)

    return run


@pytest.fixture
def jobworker_context() -> Callable[..., CapturingContext[Any]]:
    """`jobworker_context(job=None, **options)`: a capturing context to call a handler with
    (`jobworker.testing.capturing_context_for(job)`, or `capturing_context()` without a job);
    what the handler emits is in `ctx.events`, and `ctx.of_kind("progress")` decodes it."""
    from jobworker.testing import capturing_context, capturing_context_for

    def make(job: Any = None, **options: Any) -> CapturingContext[Any]:
        if job is None:
            return capturing_context(**options)
        return capturing_context_for(job, **options)

    return make


@_async_fixture
async def jobworker_aapp(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    """`jobworker_app` for async tests (a pytest-asyncio fixture: the App's storage is opened
    and closed on the test's own loop)."""
    from jobworker import App
    from jobworker.testing import bound_for_test

    app = App(f"sqlite:///{tmp_path / 'jobworker-test.db'}", **_app_options(request))
    try:
        with bound_for_test(app):
            yield app
    finally:
        await app.aclose()


@_async_fixture
async def jobworker_pg_aapp(
    request: pytest.FixtureRequest, jobworker_pg_url: str
) -> AsyncIterator[App]:
    """`jobworker_pg_app` for async tests."""
    from jobworker import App
    from jobworker.testing import atemporary_schema, bound_for_test

    async with atemporary_schema(jobworker_pg_url) as schema:
        app = App(jobworker_pg_url, database_schema=schema, **_app_options(request))
        try:
            with bound_for_test(app):
                yield app
        finally:
            await app.aclose()
