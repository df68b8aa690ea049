"""`jobworker run --health-port`: a real supervisor serves `/healthz` and `/readyz` from a process
of its own. `/readyz` turns 503 when its worker processes' heartbeats go stale, when the
database goes down and while it drains; the health process is started again when it is killed;
the port never reaches a worker process, and a port in use is an error at start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import FAST, JOBWORKER, Store, subprocess_env
from .pg import migrate_schema
from .test_postgres import PrivatePostgres
from .test_processes import Run, proc_jobs, wait_for

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_of(store: Store, **extra: str) -> dict[str, str]:
    fast = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}
    return subprocess_env(**store.env, **fast, **extra)


class Probed:
    """A `jobworker run` supervisor with a health port."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.run = Run(tmp_path, ["--health-port", str(self.port), *args], env)
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.base}{path}", timeout=15)
        except httpx.TransportError:
            return None

    def wait(self, path: str, status: int, timeout: float = 30) -> dict[str, Any]:
        def answered() -> dict[str, Any] | None:
            response = self.get(path)
            if response is None or response.status_code != status:
                return None
            assert response.headers["content-type"] == "application/json"
            body: dict[str, Any] = response.json()
            return body

        return wait_for(answered, timeout, f"{path} to answer {status}")  # type: ignore[no-any-return]

    def health_pid(self) -> int:
        return int(self.wait("/healthz", 200)["pid"])

    def workers(self) -> list[psutil.Process]:
        health = self.health_pid()
        return [child for child in self.run.children() if child.pid != health]


@pytest.fixture
def probed(tmp_path: Path) -> Iterator[Callable[..., Probed]]:
    started: list[Probed] = []

    def start(env: dict[str, str], *args: str) -> Probed:
        supervisor = Probed(tmp_path, env, *args)
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        for child in supervisor.run.children():
            with contextlib.suppress(psutil.Error):
                child.resume()  # stalled by a test
        supervisor.run.kill()


def checks(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {check["name"]: (check["status"], check["detail"]) for check in body["checks"]}


def test_the_probes_answer_and_a_killed_health_process_is_started_again(
    store: Store, probed: Callable[..., Probed]
) -> None:
    supervisor = probed(env_of(store), "--concurrency", "2")
    alive = supervisor.wait("/healthz", 200)
    assert alive["status"] == "ok" and alive["stopping"] is False
    assert alive["supervisor"] == supervisor.run.proc.pid
    ready = supervisor.wait("/readyz", 200)
    assert ready["status"] == "ok" and ready["supervisor"] == supervisor.run.proc.pid
    assert checks(ready) == {
        "supervisor": ("ok", f"supervisor {supervisor.run.proc.pid} runs"),
        "database": ("ok", checks(ready)["database"][1]),
        "workers": (
            "ok",
            "2 worker process(es) of this supervisor alive (heartbeat within 60s); it runs 2",
        ),
    }
    assert "as this code expects" in checks(ready)["database"][1]
    missing = supervisor.get("/metrics-or-anything")
    assert missing is not None and missing.status_code == 404

    # The port is the supervisor's and the health process's: no worker process holds it.
    health = psutil.Process(alive["pid"])
    assert health.ppid() == supervisor.run.proc.pid
    assert "health probes on 127.0.0.1:" in " ".join(health.cmdline())

    def listens(process: psutil.Process) -> bool:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == supervisor.port
            for c in process.net_connections(kind="tcp")
        )

    workers = supervisor.workers()
    assert len(workers) == 2 and not any(listens(worker) for worker in workers)
    assert listens(health) and listens(supervisor.run.ps)
    [address] = [
        c.laddr.ip for c in health.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
    ]
    assert address == "127.0.0.1"

    health.kill()
    again = wait_for(
        lambda: (
            (body := supervisor.get("/healthz")) is not None
            and body.status_code == 200
            and body.json()["pid"] != health.pid
            and body.json()
        ),
        20,
        "a new health process",
    )
    assert again["supervisor"] == supervisor.run.proc.pid
    assert f"the health process (pid {health.pid}) died (signal SIGKILL)" in supervisor.run.log
    supervisor.wait("/readyz", 200)
    assert supervisor.run.stop() == 0
    assert supervisor.get("/healthz") is None  # the port is closed with the supervisor


def test_readyz_turns_503_when_its_workers_stall_and_200_when_they_resume(
    store: Store, probed: Callable[..., Probed]
) -> None:
    # Registry rows go stale after 2 s; the supervisor itself waits 120 s before it kills a
    # silent worker process, so the stalled processes stay as they are.
    env = env_of(store, JOBWORKER_HEARTBEAT_TIMEOUT="2")
    supervisor = probed(env, "--concurrency", "2", "--heartbeat-timeout", "120")
    # Ready as soon as one worker process has a row: wait for both before stalling them.
    wait_for(
        lambda: checks(supervisor.wait("/readyz", 200))["workers"][1].startswith(
            "2 worker process(es)"
        ),
        30,
        "both worker processes in the registry",
    )
    workers = supervisor.workers()
    for worker in workers:
        worker.suspend()
    stalled = supervisor.wait("/readyz", 503, timeout=20)
    assert stalled["status"] == "fail"
    assert checks(stalled)["workers"] == (
        "fail",
        "no worker process of this supervisor has a heartbeat within 2s; 2 stale; it runs 2",
    )
    assert checks(stalled)["supervisor"][0] == checks(stalled)["database"][0] == "ok"
    assert supervisor.wait("/healthz", 200)["status"] == "ok"  # alive all the same
    for worker in workers:
        worker.resume()
    supervisor.wait("/readyz", 200, timeout=20)
    assert supervisor.run.stop() == 0


def test_readyz_is_503_while_the_supervisor_drains(
    store: Store, probed: Callable[..., Probed], tmp_path: Path
) -> None:
    supervisor = probed(env_of(store), "--concurrency", "1", "--drain-timeout", "30")
    supervisor.wait("/readyz", 200)
    marker = tmp_path / "marker"
    app = store.app()
    try:
        proc_jobs.sleepy.delay(seconds=4, marker=str(marker))
        wait_for(marker.exists, 60, "the job to start")
    finally:
        app.close()
    supervisor.run.proc.send_signal(signal.SIGTERM)
    draining = supervisor.wait("/readyz", 503, timeout=3)
    assert checks(draining)["supervisor"] == (
        "fail",
        "stopping: the supervisor drains its worker processes",
    )
    assert supervisor.wait("/healthz", 200)["stopping"] is True
    assert supervisor.run.proc.wait(30) == 0
    assert supervisor.get("/readyz") is None


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root")
def test_readyz_turns_503_when_the_database_goes_down(
    probed: Callable[..., Probed],
) -> None:
    server = PrivatePostgres()
    try:
        server.start()
        asyncio.run(migrate_schema(server.url, "jobworker"))
        store = Store("postgres", server.url)
        supervisor = probed(env_of(store), "--concurrency", "1")
        supervisor.wait("/readyz", 200)

        server.stop()
        down = supervisor.wait("/readyz", 503, timeout=20)
        assert checks(down)["database"][0] == "fail"
        assert "workers" not in checks(down)  # not asked: the database does not answer
        assert supervisor.wait("/healthz", 200)["status"] == "ok"

        server.start()
        supervisor.wait("/readyz", 200, timeout=60)
        assert supervisor.run.stop() == 0
    finally:
        server.remove()


def test_a_port_in_use_is_an_error_at_start(store: Store) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [*JOBWORKER, "run", "proc_jobs", "--health-port", str(port)],
            env=env_of(store),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port} for --health-port: Address already in use" in (
        done.stderr
    )
    assert "started worker" not in done.stderr and time.monotonic() - started < 30


def test_port_0_takes_a_free_port_and_logs_it(store: Store, tmp_path: Path) -> None:
    run = Run(tmp_path, ["--concurrency", "1", "--health-port", "0"], env_of(store))
    try:
        line = wait_for(
            lambda: re.search(r"health probes on http://127\.0\.0\.1:(\d+) ", run.log),
            20,
            "the health port in the log",
        )
        port = int(line.group(1))
        assert port != 0
        response = wait_for(
            lambda: _get(f"http://127.0.0.1:{port}/healthz"), 20, "the probes to answer"
        )
        assert response.json()["supervisor"] == run.proc.pid
        assert run.stop() == 0
    finally:
        run.kill()


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None


def test_metrics_on_the_health_port_hold_this_supervisors_workers(
    store: Store, probed: Callable[..., Probed]
) -> None:
    # Registry rows, and the figures they carry, are refreshed every half second.
    supervisor = probed(env_of(store, JOBWORKER_HEARTBEAT_TIMEOUT="2"), "--concurrency", "2")
    supervisor.wait("/readyz", 200)
    app = store.app()  # the default registry, which proc_jobs fills
    try:
        for i in range(6):
            proc_jobs.noop.delay(i=i)
        proc_jobs.always_fails.delay()
    finally:
        app.close()

    def scraped() -> dict[str, Any] | None:
        response = supervisor.get("/metrics")
        if response is None or response.status_code != 200:
            return None
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        attempts: dict[tuple[str, str], float] = {}
        owners: set[str] = set()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "jobworker_attempts_total":
                    key = (sample.labels["job_type"], sample.labels["outcome"])
                    attempts[key] = attempts.get(key, 0.0) + sample.value
                    owners.add(sample.labels["worker"])
        done = {
            ("proc.noop", "succeeded"): 6.0,
            ("proc.always_fails", "failed"): 1.0,
            ("proc.always_fails", "dead"): 1.0,
        }
        return {"owners": owners} if attempts == done else None

    result = wait_for(scraped, 30, "the jobs' attempts on /metrics")
    # Each series is one of this supervisor's worker processes (host:supervisor pid:index...).
    pid = str(supervisor.run.proc.pid)
    assert result["owners"] and all(owner.split(":")[1] == pid for owner in result["owners"])
    assert supervisor.run.stop() == 0
