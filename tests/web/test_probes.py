"""The web tail's probes: `/healthz` (the process answers) and `/readyz` (the database and Redis
answer; 503 when not), at the root, outside the prefix and outside the admin API's login."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from jobworker import App, Registry
from jobworker.storage import latest_schema_version
from jobworker.web.app import create_app

from ..conftest import REDIS_URL, Store, subprocess_env
from .admin_support import ADMIN_PASSWORD, CHEAP
from .server import serving
from .test_web_command import WebProcess

Probe = Callable[..., Awaitable[httpx.Response]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def probe() -> AsyncIterator[Probe]:
    """GET a path of the web tail of an App made with the given settings, served by uvicorn."""
    apps: list[App] = []

    async def get(url: str, path: str, **settings: object) -> httpx.Response:
        app = App(url, registry=Registry(), **settings)
        apps.append(app)
        async with serving(create_app(app)) as base, httpx.AsyncClient(base_url=base) as http:
            return await http.get(path, timeout=30)

    yield get
    for app in apps:
        await app.aclose()


async def test_both_probes_answer_200_when_the_database_and_redis_answer(
    store: Store, probe: Probe
) -> None:
    get = probe
    alive = await get(store.url, "/healthz", database_schema=store.schema)
    assert alive.status_code == 200 and alive.json() == {"status": "ok"}
    assert alive.headers["content-type"] == "application/json"
    assert alive.headers["cache-control"] == "no-store"

    ready = await get(store.url, "/readyz", database_schema=store.schema, redis_url=REDIS_URL)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ok"
    checks = {check["name"]: check for check in body["checks"]}
    assert list(checks) == ["database", "redis"]
    version = latest_schema_version("sqlite" if store.backend == "sqlite" else "postgres")
    assert checks["database"]["detail"] == f"schema version {version}, as this code expects"
    assert checks["redis"]["detail"] == f"PING answered by {REDIS_URL}"
    assert all(check["status"] == "ok" and check["seconds"] >= 0 for check in checks.values())


async def test_readyz_is_503_when_the_database_is_unreachable(
    probe: Probe,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    ready = await probe(url, "/readyz")
    assert ready.status_code == 503
    [database] = ready.json()["checks"]
    assert database["status"] == "fail"
    assert "cannot connect to PostgreSQL at" in database["detail"]
    alive = await probe(url, "/healthz")
    assert alive.status_code == 200  # liveness: the process answers, whatever the database does


async def test_readyz_is_503_when_redis_is_unreachable(sqlite_url: str, probe: Probe) -> None:
    redis_url = f"redis://127.0.0.1:{closed_port()}/0"
    ready = await probe(sqlite_url, "/readyz", redis_url=redis_url)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "fail"
    statuses = {check["name"]: check["status"] for check in body["checks"]}
    assert statuses == {"database": "ok", "redis": "fail"}


async def test_readyz_answers_within_its_timeout_when_redis_never_answers(
    sqlite_url: str, probe: Probe
) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        redis_url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        ready = await probe(sqlite_url, "/readyz", redis_url=redis_url)
        assert time.monotonic() - started < 10
    assert ready.status_code == 503
    redis = ready.json()["checks"][1]
    assert redis["status"] == "fail" and redis["seconds"] < 5


@pytest.mark.slow
def test_jobworker_web_serves_the_probes_outside_the_admin_login(
    sqlite_url: str, tmp_path: Path
) -> None:
    from jobworker.web.config import hash_password

    hashed = hash_password(ADMIN_PASSWORD, n=CHEAP)
    env = subprocess_env(JOBWORKER_WEB_ADMIN_PASSWORD_HASH=hashed)
    web = WebProcess(tmp_path, ["--database-url", sqlite_url], env)
    try:
        web.wait_ready()
        assert web.get("/jobs-ui/api/jobs").status_code == 401  # the admin API wants a login
        assert web.get("/healthz").json() == {"status": "ok"}
        ready = web.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        assert web.get("/jobs-ui/healthz").status_code == 404  # at the root, not the prefix
        assert web.stop()[0] == 0
    finally:
        web.kill()


def test_probes_are_routes_of_every_web_tail(sqlite_url: str) -> None:
    """A host app that mounts the web tail at the root gets them too (create_app adds them)."""

    async def paths() -> list[str]:
        app = App(sqlite_url, registry=Registry())
        try:
            web = create_app(app, prefix="")
            return [getattr(route, "path", "") for route in web.routes]
        finally:
            await app.aclose()

    assert asyncio.run(paths())[:2] == ["/healthz", "/readyz"]
