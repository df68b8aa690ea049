"""What the dashboard's browser tests share: the site `jobworker web` serves (admin API, streams
and dashboard under /jobs-ui) on a real uvicorn server over PostgreSQL and Redis, a worker in the
test's event loop, Debian's Chromium driven by Playwright, logins, and screenshots.

Screenshots go to `$JOBWORKER_SCREENSHOTS` when it is set (docs/images/dashboard is made that
way: `JOBWORKER_SCREENSHOTS=docs/images/dashboard pytest tests/web/test_dashboard_*.py`), else
to the test's temporary directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jobworker import App, JobContext, PermanentJobError, Registry
from jobworker.web.app import create_app
from jobworker.web.config import WebConfig
from jobworker.web.server import tail_middleware, tail_routes

from ..conftest import FAST, REDIS_URL, cleanup_redis
from .admin_support import ADMIN_PASSWORD, VIEWER_PASSWORD, web_config
from .server import serving
from .support import running_worker
from .test_examples import CHROMIUM_ARGS, chromium

PREFIX = "/jobs-ui"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# A gate each job of a test waits at, by name (the worker runs in the test's event loop).
GATES: dict[str, asyncio.Event] = {}


class DashboardJobs:
    """The jobs the browser tests run: a user report that streams every kind of event at a
    pace a person can watch, system jobs that run until cancelled or fail for good."""

    def __init__(self) -> None:
        self.registry = registry = Registry()

        @registry.job(name="reports.build", queue="reports", max_attempts=1)
        async def build(ctx: JobContext, rows: int = 20, pause: float = 0.2, gate: str = "") -> int:
            await ctx.log.info("building the report", rows=rows)
            for n in range(1, rows + 1):
                await ctx.progress(n, rows, label=f"row {n}")
                await ctx.chunk(f"row {n} written\n")
                await ctx.metric("rows", n)
                if n % 5 == 0:
                    await ctx.log.info(f"{n} rows so far")
                await asyncio.sleep(pause)
            if gate:
                await GATES[gate].wait()
            return rows

        @registry.job(name="reports.echo", queue="reports")
        async def echo(ctx: JobContext, note: str = "") -> str:
            await ctx.log.info(note)
            await ctx.chunk(note)
            return note

        @registry.job(name="system.sweep", kind="system", queue="maintenance")
        async def sweep(ctx: JobContext, days: int = 30) -> int:
            while True:
                ctx.raise_if_cancelled()
                await ctx.progress(0, 1, label="sweeping")
                await asyncio.sleep(0.1)

        @registry.job(name="system.broken", kind="system", queue="maintenance", max_attempts=1)
        async def broken(ctx: JobContext) -> None:
            raise PermanentJobError("the disk is full")

        @registry.job(name="system.cleanup", kind="system", queue="maintenance")
        async def cleanup(ctx: JobContext, days: int = 30) -> int:
            return days

        self.build, self.echo, self.sweep = build, echo, sweep
        self.broken, self.cleanup = broken, cleanup


@dataclass
class Site:
    """The served dashboard: its URL, the job App behind it, and its jobs."""

    base: str  # http://127.0.0.1:PORT
    prefix: str
    app: App
    jobs: DashboardJobs
    screenshots: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.base + self.prefix


# Read when the tests are collected: the tests' own environment has no JOBWORKER_* variables.
SCREENSHOTS = os.environ.get("JOBWORKER_SCREENSHOTS")


def screenshot_dir(tmp_path: Path) -> Path:
    directory = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextlib.asynccontextmanager
async def serving_dashboard(
    url: str,
    schema: str | None,
    tmp_path: Path,
    config: WebConfig | None = None,
    prefix: str = PREFIX,
) -> AsyncIterator[Site]:
    """The dashboard over the database at `url` (and Redis), with a worker running its jobs."""
    jobs = DashboardJobs()
    keys = f"jw_test_{uuid.uuid4().hex[:10]}:"
    app = App(
        url,
        registry=jobs.registry,
        database_schema=schema,
        redis_url=REDIS_URL,
        redis_prefix=keys,
        bind=False,
        **FAST,
    )
    config = config or web_config()
    web = create_app(
        app,
        prefix=prefix,
        routes=tail_routes(app, prefix, config),
        middleware=tail_middleware(),
    )
    try:
        async with serving(web) as base, running_worker(app):
            yield Site(base, prefix, app, jobs, screenshot_dir(tmp_path))
    finally:
        cleanup_redis(keys)


class PageProblems:
    """What went wrong in the page: script errors and refused resources (a CSP violation is
    logged to the console as 'Refused to ...')."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("console", self._console)
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))

    def _console(self, message: Any) -> None:
        if message.type == "error" and "the server responded with a status of" not in message.text:
            self.errors.append(f"console: {message.text}")

    def check(self) -> None:
        assert self.errors == []


@contextlib.asynccontextmanager
async def browser_page(
    viewport: dict[str, int] = DESKTOP,
) -> AsyncIterator[tuple[Any, PageProblems]]:
    """A fresh Chromium page (its own cookies), and the problems it reports."""
    from playwright.async_api import async_playwright

    executable = chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
            page = await context.new_page()
            # 30 s: the suite runs four test processes on two cores beside real worker
            # processes and private database clusters; a login page has taken over 15 s there.
            page.set_default_timeout(30_000)
            yield page, PageProblems(page)
        finally:
            await browser.close()


async def log_in(page: Any, site: Site, role: str = "admin", path: str = "/") -> None:
    """Open `path` of the dashboard and log in through the login page as `role`."""
    username, password = (
        ("admin", ADMIN_PASSWORD) if role == "admin" else ("viewer", VIEWER_PASSWORD)
    )
    await page.goto(site.url + path)
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.locator(".badge.role").wait_for()


@pytest.fixture
def pg_url(pg_database: str) -> Any:
    """A migrated schema of its own in the session's PostgreSQL database: (url, schema)."""
    from ..pg import drop_schema, migrate_schema, new_schema_name

    schema = new_schema_name()
    asyncio.run(migrate_schema(pg_database, schema))
    yield pg_database, schema
    asyncio.run(drop_schema(pg_database, schema))


@pytest.fixture
async def site(pg_url: tuple[str, str], tmp_path: Path) -> AsyncIterator[Site]:
    url, schema = pg_url
    async with serving_dashboard(url, schema, tmp_path) as served:
        yield served
