"""`jobworker web` as a real process: what it logs as it starts, what it serves, how it stops,
its worker processes, proxy headers, and its one-line errors."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from jobworker import App

from ..conftest import JOBWORKER, TESTS, Store, subprocess_env

sys.path.insert(0, str(TESTS / "apps"))
import web_jobs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebProcess:
    """One `jobworker web` process, its log in a file."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = tmp_path / f"web-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*JOBWORKER, "web", "web_jobs", "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/", timeout=5)  # any answer: it serves
                return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"jobworker web exited {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"jobworker web did not start in {timeout}s:\n{self.log}")

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; the exit code and how long it took."""
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self._log.close()
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., WebProcess]]:
    started: list[WebProcess] = []

    def start_web(*args: str, env: dict[str, str] | None = None) -> WebProcess:
        web = WebProcess(tmp_path, list(args), subprocess_env(**(env or {})))
        started.append(web)
        web.wait_ready()
        return web

    yield start_web
    for web in started:
        web.kill()


def run_web(*args: str, python: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(python or JOBWORKER), "web", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serves_logs_where_what_and_stops_cleanly_on_sigterm(
    store: Store, start: Callable[..., WebProcess]
) -> None:
    env = {"JOBWORKER_DATABASE_SCHEMA": store.schema}
    url = store.url
    if store.backend == "postgres":  # trust auth: the password is sent and ignored
        url = url.replace("postgresql://postgres@", "postgresql://postgres:sw0rdfish@")
        env["JOBWORKER_REDIS_URL"] = "redis://:hunter2@127.0.0.1:6379/0"
    web = start("--database-url", url, "--routes", "web_jobs:routes", env=env)

    assert web.get("/jobs-ui/counts").json()["queued"] == 0
    assert web.get("/counts").status_code == 404
    log = web.log
    assert f"listening on http://127.0.0.1:{web.port}/jobs-ui (1 process)" in log
    assert "admin API: off (no password configured: set JOBWORKER_WEB_ADMIN_PASSWORD_HASH)" in log
    if store.backend == "postgres":
        assert "storage: postgresql://postgres:***@127.0.0.1:5432/" in log
        assert f"(schema {store.schema})" in log
        assert "event bus: redis redis://:***@127.0.0.1:6379/0 (prefix jobworker:)" in log
        assert "sw0rdfish" not in log and "hunter2" not in log
    else:
        assert f"storage: {store.url}" in log
        assert "event bus: the database (no redis_url set)" in log
    assert not any(  # loopback only unless told otherwise
        c.laddr.ip != "127.0.0.1"
        for c in psutil.Process(web.proc.pid).net_connections()
        if c.status == psutil.CONN_LISTEN
    )

    code, took = web.stop()
    assert code == 0 and took < 5
    assert "Application shutdown complete" in web.log


def test_an_open_stream_is_cut_after_the_graceful_timeout(
    sqlite_url: str, start: Callable[..., WebProcess]
) -> None:
    web = start(
        "--database-url", sqlite_url, "--routes", "web_jobs:routes", "--graceful-timeout", "1"
    )
    ticks: list[bytes] = []

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{web.base}/jobs-ui/forever", timeout=30) as response:
                for chunk in response.iter_bytes():
                    ticks.append(chunk)
        except httpx.HTTPError:
            pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    deadline = time.monotonic() + 10
    while not ticks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ticks, web.log

    code, took = web.stop()
    assert code == 0
    assert 0.9 < took < 5
    listener.join(5)
    assert not listener.is_alive()


def test_job_streams_end_with_a_reconnect_event_at_sigterm_not_at_the_timeout(
    sqlite_url: str, start: Callable[..., WebProcess]
) -> None:
    app = App(sqlite_url, bind=False)
    try:  # queued, and no worker runs it: its stream stays open
        handle = app.client.enqueue(web_jobs.echo.name, {"text": "never run"})
    finally:
        app.close()
    web = start("--database-url", sqlite_url, "--routes", "web_jobs:open_job_routes")
    assert web.get(f"/jobs-ui/{handle.job_id}").json()["status"] == "queued"
    received: list[bytes] = []

    def listen() -> None:
        url = f"{web.base}/jobs-ui/{handle.job_id}/stream"
        with contextlib.suppress(httpx.HTTPError), httpx.stream("GET", url, timeout=30) as response:
            for chunk in response.iter_bytes():
                received.append(chunk)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    deadline = time.monotonic() + 10
    while b"retry: " not in b"".join(received) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"retry: " in b"".join(received), web.log  # the stream is open

    code, took = web.stop()
    assert code == 0 and took < 3  # well before the graceful timeout (5 s)
    listener.join(5)
    assert not listener.is_alive()
    text = b"".join(received)
    assert b"event: reconnect\n" in text and b"the server is stopping" in text
    assert "Traceback" not in web.log and "ERROR" not in web.log, web.log


def test_workers_serve_from_several_processes(
    sqlite_url: str, start: Callable[..., WebProcess]
) -> None:
    web = start("--database-url", sqlite_url, "--routes", "web_jobs:routes", "--workers", "2")
    assert f"listening on http://127.0.0.1:{web.port}/jobs-ui (2 worker processes)" in web.log
    children = {p.pid for p in psutil.Process(web.proc.pid).children()}
    pids: set[int] = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        response = web.get("/jobs-ui/pid")  # a new connection each time
        if response.status_code == 200:
            pids.add(response.json()["pid"])
    assert len(pids) == 2, web.log
    assert pids <= children
    assert web.get("/jobs-ui/counts").status_code == 200  # each builds its own App

    code, took = web.stop()
    assert code == 0 and took < 8
    assert all(
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie" for pid in pids
    )


def test_proxy_headers_are_trusted_only_when_asked(
    sqlite_url: str, start: Callable[..., WebProcess]
) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    plain = start("--database-url", sqlite_url, "--routes", "web_jobs:routes")
    assert plain.get("/jobs-ui/client", headers=forwarded).json() == {"host": "127.0.0.1"}
    behind = start(
        "--database-url",
        sqlite_url,
        "--routes",
        "web_jobs:routes",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
    )
    assert behind.get("/jobs-ui/client", headers=forwarded).json() == {"host": "203.0.113.9"}


def test_a_module_that_cannot_be_imported_is_one_error_and_exit_2() -> None:
    missing = run_web("no_such_module_here")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0
    assert "no module named 'no_such_module_here'" in missing.stderr
    broken = run_web("broken_at_import")
    assert broken.returncode == 2
    assert "this module fails while being imported" in broken.stderr
    assert "listening on" not in broken.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "jobs"], "Error: invalid prefix 'jobs': it must start with '/'"),
        (["--prefix", "/jobs/"], "Error: invalid prefix '/jobs/': it must not end with '/'"),
        (["--routes", "web_jobs:not_routes"], "must name a list of Starlette routes"),
        (["--routes", "web_jobs:nothing"], "module 'web_jobs' has no attribute 'nothing'"),
        (["--database-url", "mysql://x"], "unknown scheme 'mysql'"),
    ],
)
def test_bad_input_is_one_error_and_exit_2(args: list[str], message: str) -> None:
    result = run_web("web_jobs", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "listening on" not in result.stderr


def test_without_the_web_extra_it_says_what_to_install() -> None:
    without_uvicorn = [
        sys.executable,
        "-c",
        "import sys; sys.modules['uvicorn'] = None; from jobworker.cli import main; "
        "main(prog_name='jobworker')",
    ]
    result = run_web("web_jobs", python=without_uvicorn)
    assert result.returncode == 2
    assert "'uvicorn' is not installed; install it with: pip install 'jobworker[web]'" in (
        result.stderr
    )
