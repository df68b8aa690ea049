"""examples/fastapi_app.py served for real: uvicorn on loopback (its lifespan entered as in
production), a real SQLite file, a worker running in the same loop; and the host helpers of
jobworker.web.host (lifespan, web tail mount) on their own."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Route

from jobworker import App, JobContext, Registry, SchemaMissingError
from jobworker.errors import ConfigurationError
from jobworker.web.fanout import StreamHub
from jobworker.web.host import jobs_lifespan, open_jobs, web_tail

from ..conftest import FAST, JOBWORKER, ROOT, subprocess_env
from .admin_support import ADMIN_PASSWORD, web_config
from .server import read_sse, serving
from .support import job_events, running_worker

EXAMPLES = ROOT / "examples"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("fastapi_app")


@pytest.fixture
async def jobs(tmp_path: Path, example: ModuleType) -> AsyncIterator[App]:
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}", registry=example.registry, bind=False, **FAST)
    yield app
    await app.aclose()


async def wait_for_status(http: httpx.AsyncClient, url: str, wanted: str) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        answer = await http.get(url)
        if answer.json()["status"] == wanted or asyncio.get_running_loop().time() > deadline:
            return answer
        await asyncio.sleep(float(answer.headers.get("retry-after", "0.05")) / 20)


async def test_the_202_pattern_served_by_uvicorn_with_a_worker(
    example: ModuleType, jobs: App
) -> None:
    api = example.build_api(jobs, web_config=web_config())
    async with (
        serving(api) as base,
        running_worker(jobs),
        httpx.AsyncClient(base_url=base, cookies={"user": "ada"}) as ada,
        httpx.AsyncClient(base_url=base, cookies={"user": "bob"}) as bob,
        httpx.AsyncClient(base_url=base) as nobody,
    ):
        created = await ada.post("/exports", json={"table": "users", "rows": 30})
        assert created.status_code == 202, created.text
        job_id = created.json()["jobId"]
        location = created.headers["location"]
        assert location == created.json()["statusUrl"] == f"/exports/{job_id}"

        # Followed live from the start: every event once, in order, up to the terminal one.
        status, events = await read_sse(ada, f"{location}/stream")
        assert status == 200
        received = job_events(events)
        assert [int(e.id or 0) for e in received] == list(range(1, len(received) + 1))
        progress = [e.json for e in received if e.event == "progress"]
        assert (progress[-1]["done"], progress[-1]["total"]) == (30, 30)
        assert received[-1].event == "lifecycle" and received[-1].json["status"] == "succeeded"

        done = await wait_for_status(ada, location, "succeeded")
        assert done.status_code == 200 and "retry-after" not in done.headers
        assert done.json()["result"] == {
            "table": "users",
            "rows": 30,
            "path": "exports/ada/users.csv",
        }
        # Someone else's export does not exist for them; no user is a 401; bad input a 422.
        assert (await bob.get(location)).status_code == 404
        assert (await bob.get(f"{location}/stream")).status_code == 404
        assert (await nobody.get(location)).status_code == 401
        assert (await ada.post("/exports", json={"table": "x; drop"})).status_code == 422
        resumed = await ada.get(f"{location}/stream", headers={"Last-Event-ID": "nope"})
        assert resumed.status_code == 400

        # The web tail mounted in the same app: the admin API behind its login.
        login = await nobody.post(
            "/jobs-ui/api/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            headers={"Origin": base},
        )
        assert login.status_code == 200, login.text
        assert "content-security-policy" in login.headers
        stats = await nobody.get("/jobs-ui/api/stats")
        assert stats.json()["counts"]["succeeded"] == 1
        assert (await nobody.get("/jobs-ui/")).status_code == 200  # the dashboard
        # The app's own routes do not get the web tail's headers.
        assert "content-security-policy" not in (await ada.get(location)).headers


async def test_a_job_still_queued_answers_retry_after(example: ModuleType, jobs: App) -> None:
    api = example.build_api(jobs)
    async with (
        serving(api) as base,
        httpx.AsyncClient(base_url=base, cookies={"user": "ada"}) as ada,
    ):
        created = await ada.post("/exports", json={"table": "users"})
        answer = await ada.get(created.headers["location"])
        assert answer.json()["status"] == "queued" and answer.headers["retry-after"] == "1"
        # Without a password hash the admin API and the dashboard are off.
        assert (await ada.get("/jobs-ui/api/stats")).status_code == 404


def test_the_example_imports_and_its_worker_module_loads() -> None:
    """`uvicorn fastapi_app:api` and `jobworker run fastapi_app` import it from examples/."""
    code = "import fastapi_app; print(type(fastapi_app.api).__name__, fastapi_app.jobs)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=EXAMPLES, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FastAPI <App sqlite jobs=1>")


def test_importing_jobworker_and_its_web_host_does_not_import_fastapi() -> None:
    code = (
        "import sys, jobworker, jobworker.web, jobworker.web.host, jobworker.testing;"
        "print('fastapi' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.fixture
async def job_app(sqlite_url: str) -> AsyncIterator[App]:
    instance = App(sqlite_url, registry=Registry(), bind=False)
    yield instance
    await instance.aclose()


async def test_the_lifespan_opens_at_start_and_closes_at_the_end(job_app: App) -> None:
    closed: list[str] = []

    async def close_pool() -> None:
        closed.append("pool")

    host = Starlette(lifespan=jobs_lifespan(job_app, on_shutdown=[close_pool]))
    async with host.router.lifespan_context(host):
        loop = asyncio.get_running_loop()
        assert loop in job_app._storages  # opened at start, not on the first request
    assert loop not in job_app._storages and closed == ["pool"]


async def test_the_lifespan_stops_the_start_when_the_schema_is_missing(
    pg_database: str,
) -> None:
    jobs = App(pg_database, registry=Registry(), bind=False, database_schema="jw_never_made")
    host = FastAPI(lifespan=jobs_lifespan(jobs))
    with pytest.raises(SchemaMissingError):
        async with host.router.lifespan_context(host):
            pass
    assert asyncio.get_running_loop() not in jobs._storages


async def test_open_jobs_ends_the_streams_of_its_hub_when_the_host_stops(job_app: App) -> None:
    @job_app.job(name="host.wait")
    def wait(ctx: JobContext) -> None: ...

    handle = await job_app.client.aenqueue(wait.name)  # never run: its stream stays open
    hub = StreamHub.for_client(job_app.client)
    async with open_jobs(job_app, end_streams_on_signal=False):
        async with hub.subscribe(handle.job_id, 0):
            assert hub.active_readers == 1
        assert hub.active_readers == 1  # it lingers for a browser that reconnects
    assert hub.active_readers == 0


async def test_web_tail_serves_user_routes_under_its_prefix(job_app: App) -> None:
    async def hello(request: object) -> httpx.Response:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("hello")  # type: ignore[return-value]

    host = FastAPI(lifespan=jobs_lifespan(job_app))
    host.router.routes.append(
        web_tail(job_app, prefix="/ops/jobs", routes=[Route("/hello", hello)], config=web_config())
    )
    transport = httpx.ASGITransport(app=host)
    async with (
        host.router.lifespan_context(host),
        httpx.AsyncClient(transport=transport, base_url="http://web") as http,
    ):
        answer = await http.get("/ops/jobs/hello")
        assert answer.text == "hello" and "content-security-policy" in answer.headers
        assert (await http.get("/ops/jobs/api/session")).status_code == 401
        assert (await http.get("/jobs-ui/api/session")).status_code == 404


@pytest.mark.parametrize("prefix", ["", "/x/", "jobs"])
def test_web_tail_needs_a_good_prefix(job_app: App, prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        web_tail(job_app, prefix=prefix, config=web_config())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, its output in `log`; killed on the way out if it still runs."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def wait_until_serving(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/docs", timeout=5)
            return
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited:\n{log.read_text()}") from None
            time.sleep(0.05)
    raise AssertionError(f"uvicorn did not start:\n{log.read_text()}")


@pytest.mark.slow
def test_the_example_under_uvicorn_and_jobworker_run_and_a_sigterm(tmp_path: Path) -> None:
    """`uvicorn fastapi_app:api` and `jobworker run fastapi_app` as the example's docstring
    says; SIGTERM to uvicorn (without a graceful timeout, which would wait for open streams
    for ever) ends a job's open stream with a `reconnect` event, and the server stops."""
    env = subprocess_env(
        JOBWORKER_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}",
        PYTHONPATH=str(EXAMPLES),
        JOBWORKER_POLL_INTERVAL="0.05",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_args = [sys.executable, "-m", "uvicorn", "fastapi_app:api", "--port", str(port)]
    worker_args = [*JOBWORKER, "run", "fastapi_app", "--concurrency", "1"]
    with (
        process(server_args, env, tmp_path / "uvicorn.log") as server,
        process(worker_args, env, tmp_path / "worker.log"),
        httpx.Client(base_url=base, cookies={"user": "ada"}, timeout=30) as ada,
    ):
        wait_until_serving(base, server, tmp_path / "uvicorn.log")
        created = ada.post("/exports", json={"table": "users", "rows": 20})
        assert created.status_code == 202, created.text
        location = created.headers["location"]
        with ada.stream("GET", f"{location}/stream") as stream:
            text = "".join(stream.iter_text())
        assert "event: result" in text and '"status":"succeeded"' in text
        assert ada.get(location).json()["result"]["path"] == "exports/ada/users.csv"

        # A long export, followed while it runs; then the server is told to stop.
        long = ada.post("/exports", json={"table": "orders", "rows": 10_000}).headers["location"]
        seen: list[str] = []
        with ada.stream("GET", f"{long}/stream") as stream:
            for chunk in stream.iter_text():
                seen.append(chunk)
                if "event: progress" in "".join(seen) and server.poll() is None:
                    server.send_signal(signal.SIGTERM)
        assert "event: reconnect" in "".join(seen)
        server.wait(20)
        assert server.returncode in (0, -signal.SIGTERM), (tmp_path / "uvicorn.log").read_text()
