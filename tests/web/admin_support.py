"""What the admin API's tests share: a store with a few jobs, the API mounted under a prefix
behind the security headers, and an HTTP client that logs in and sends Origin and CSRF headers
as a browser page of the site would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from jobworker import App, JobContext, PermanentJobError, Registry
from jobworker.web.admin import admin_api
from jobworker.web.config import WebConfig, hash_password
from jobworker.web.security import SecurityHeaders

from ..conftest import FAST, Store

PREFIX = "/jobs-ui"
API = PREFIX + "/api"
ADMIN_PASSWORD = "correct horse battery staple"
VIEWER_PASSWORD = "viewer's own password"
ORIGIN = "http://testserver"
CHEAP = 16  # scrypt n for tests: the hashing is the same, only cheaper


def web_config(**overrides: Any) -> WebConfig:
    hashes = {
        "admin_password_hash": hash_password(ADMIN_PASSWORD, n=CHEAP),
        "readonly_password_hash": hash_password(VIEWER_PASSWORD, n=CHEAP),
    }
    return WebConfig(**{**hashes, **overrides})


def mounted(app: App, config: WebConfig) -> ASGIApp:
    """The admin API at `<prefix>/api` of a site, as the web app factory mounts it."""
    api = admin_api(app.client, config, prefix=PREFIX)
    routes = [] if api is None else [Mount(API, app=api)]
    return SecurityHeaders(Starlette(routes=routes))


class Browser:
    """An HTTP client of the site: it keeps cookies, and sends the page's Origin and the
    session's CSRF token on mutating requests unless told otherwise."""

    def __init__(
        self, site: ASGIApp, *, base_url: str = ORIGIN, address: str = "127.0.0.1"
    ) -> None:
        transport = httpx.ASGITransport(app=site, client=(address, 50000))
        self.http = httpx.AsyncClient(transport=transport, base_url=base_url)
        self.origin = base_url
        self.csrf: str | None = None

    async def login(
        self, username: str = "admin", password: str = ADMIN_PASSWORD
    ) -> httpx.Response:
        response = await self.http.post(
            f"{API}/login",
            json={"username": username, "password": password},
            headers={"Origin": self.origin},
        )
        if response.status_code == 200:
            self.csrf = response.json()["csrfToken"]
        return response

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(API + path, params=params)

    async def send(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        sent = {"Origin": self.origin, "X-CSRF-Token": self.csrf or ""}
        sent.update(headers or {})
        return await self.http.request(method, API + path, headers=sent, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.send("POST", path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.send("DELETE", path, **kw)

    async def aclose(self) -> None:
        await self.http.aclose()


class Jobs:
    """The registry of the tests' jobs, and a gate a running job waits on."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.gate = asyncio.Event()
        registry = self.registry

        @registry.job(name="reports.ok", queue="reports")
        async def ok(ctx: JobContext, n: int = 0, note: str = "") -> int:
            await ctx.progress(1, 2, "half")
            return n

        @registry.job(name="reports.boom")
        async def boom(ctx: JobContext) -> None:
            raise PermanentJobError("it broke")

        @registry.job(name="reports.slow")
        async def slow(ctx: JobContext) -> None:
            await self.gate.wait()

        @registry.job(name="system.cleanup", kind="system")
        async def cleanup(ctx: JobContext, days: int = 30) -> int:
            return days

        @registry.job(name="system.broken", kind="system")
        async def broken(ctx: JobContext) -> None:
            raise PermanentJobError("the disk is full")

        self.ok, self.boom, self.slow = ok, boom, slow
        self.cleanup, self.broken = cleanup, broken


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture
async def app(store: Store, jobs: Jobs) -> AsyncIterator[App]:
    instance = App(store.url, registry=jobs.registry, database_schema=store.schema, **FAST)
    yield instance
    await instance.aclose()


@pytest.fixture
def config() -> WebConfig:
    return web_config()


@pytest.fixture
async def site(app: App, config: WebConfig) -> ASGIApp:
    return mounted(app, config)


@pytest.fixture
async def admin(site: ASGIApp) -> AsyncIterator[Browser]:
    browser = Browser(site)
    assert (await browser.login()).status_code == 200
    yield browser
    await browser.aclose()


@pytest.fixture
async def viewer(site: ASGIApp) -> AsyncIterator[Browser]:
    browser = Browser(site)
    assert (await browser.login("viewer", VIEWER_PASSWORD)).status_code == 200
    yield browser
    await browser.aclose()


@pytest.fixture
async def anonymous(site: ASGIApp) -> AsyncIterator[Browser]:
    browser = Browser(site)
    yield browser
    await browser.aclose()
