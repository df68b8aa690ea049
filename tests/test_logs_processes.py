"""`--log-format json` in real `jobworker run`, `beat` and `web` processes: every line on stderr
is one JSON object, and a handler's lines carry its job's fields; `App(on_error=...)` is
called in the worker process for each failed attempt and for a timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import FAST, JOBWORKER, TESTS, subprocess_env
from .web.test_web_command import free_port

sys.path.insert(0, str(TESTS / "apps"))
import log_jobs

pytestmark = pytest.mark.slow


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Process:
    """A `jobworker ...` process; stdout and stderr in separate files."""

    def __init__(self, tmp_path: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.err_path = tmp_path / f"{name}.err"
        self._out = (tmp_path / f"{name}.out").open("wb")
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [*JOBWORKER, *args], stdout=self._out, stderr=self._err, env=env
        )

    def lines(self) -> list[dict[str, Any]]:
        """Every stderr line, parsed (a line that is no JSON object fails the test)."""
        text = self.err_path.read_text()
        parsed = []
        for line in text.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                raise AssertionError(f"not JSON: {line!r}\nin:\n{text}") from None
            assert isinstance(value, dict), line
            parsed.append(value)
        return parsed

    def messages(self) -> list[str]:
        return [line["message"] for line in self.lines()]

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        self._err.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(name: str, *args: str, **env: str) -> Process:
        process = Process(tmp_path, name, list(args), subprocess_env(**env))
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


BASE = ("time", "level", "logger", "message", "process")


def test_run_logs_json_lines_with_each_jobs_fields_and_calls_on_error(
    tmp_path: Path, sqlite_url: str, processes: Callable[..., Process]
) -> None:
    errors = tmp_path / "errors.jsonl"
    fast = {f"JOBWORKER_{k.upper()}": str(v) for k, v in FAST.items()}
    run = processes(
        "run",
        "--log-format",
        "json",
        "run",
        "log_jobs",
        "--concurrency",
        "1",
        "--database-url",
        sqlite_url,
        ERROR_LOG=str(errors),
        **fast,
    )
    app = log_jobs.app.with_database_url(sqlite_url)
    app.bind(replace=True)
    try:
        wait_for(lambda: any(" started: queues=" in m for m in run.messages()), 30, "a worker")
        handles = {
            "sync": log_jobs.sync_talk.delay(word="sync-word"),
            "async": log_jobs.async_talk.delay(word="async-word"),
            "fails": log_jobs.fails.delay(),
            "slow": log_jobs.too_slow.delay(),
            "slow_sync": log_jobs.too_slow_sync.delay(),
        }

        def settled() -> bool:
            jobs = [app.client.get(h.job_id) for h in handles.values()]
            return all(j is not None and j.status.is_terminal for j in jobs)

        wait_for(settled, 30, "every job to end")
        assert run.stop() == 0
    finally:
        app.close()

    lines = run.lines()
    assert all(list(line)[:5] == list(BASE) for line in lines)
    [worker_pid] = {line["process"] for line in lines if line["logger"] == "jobworker.worker"}
    for key, job_type, queue in [
        ("sync", "logs.sync_talk", "default"),
        ("async", "logs.async_talk", "chatty"),
    ]:
        word = f"{key}-word"
        for via, logger in [("ctx logger", "jobworker.job"), ("plain logging", "log_jobs")]:
            [line] = [line for line in lines if line["message"] == f"{via} says {word}"]
            assert line["logger"] == logger and line["process"] == worker_pid
            assert line["job_id"] == str(handles[key].job_id)
            assert (line["job_type"], line["attempt"], line["queue"]) == (job_type, 1, queue)
            assert line["worker"].split(":")[1] == str(run.proc.pid)  # host:supervisor pid:...
    warned = [line for line in lines if line["message"] == "about to fail"]
    assert [line["attempt"] for line in warned] == [1, 2]
    # The worker's own line about the failure, logged from the attempt's task.
    dead = [line for line in lines if line["message"].endswith("(dead)")]
    assert {line["job_type"] for line in dead} == {
        "logs.fails",
        "logs.too_slow",
        "logs.too_slow_sync",
    }

    hooked = [json.loads(line) for line in errors.read_text().splitlines()]
    assert {h["pid"] for h in hooked} == {worker_pid}
    assert sorted((h["job_type"], h["attempt"], h["type"], h["timeout"]) for h in hooked) == [
        ("logs.fails", 1, "ValueError", False),
        ("logs.fails", 2, "ValueError", False),
        ("logs.too_slow", 1, "AttemptTimedOut", True),
        ("logs.too_slow_sync", 1, "AttemptTimedOut", True),
    ]


def test_beat_logs_json_lines_from_the_environment_variable(
    tmp_path: Path, sqlite_url: str, processes: Callable[..., Process]
) -> None:
    beat = processes(
        "beat",
        "beat",
        "beat_jobs",
        "--database-url",
        sqlite_url,
        JOBWORKER_LOG_FORMAT="json",
        JOBWORKER_BEAT_RETRY_INTERVAL="0.5",
    )
    wait_for(lambda: any("is the leader" in m for m in beat.messages()), 30, "leadership")
    assert beat.stop() == 0
    lines = beat.lines()
    assert lines and all(list(line)[:5] == list(BASE) for line in lines)
    assert {line["process"] for line in lines} == {beat.proc.pid}


@pytest.mark.parametrize("workers", [1, 2])
def test_web_logs_json_lines_including_uvicorns_and_the_access_log(
    tmp_path: Path, sqlite_url: str, processes: Callable[..., Process], workers: int
) -> None:
    port = free_port()
    web = processes(
        "web",
        "--log-format",
        "json",
        "web",
        "web_jobs",
        "--database-url",
        sqlite_url,
        "--port",
        str(port),
        "--workers",
        str(workers),
    )

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/jobs-ui/nowhere", timeout=5) is not None
        except httpx.TransportError:
            assert web.proc.poll() is None, web.err_path.read_text()
            return False

    wait_for(answers, 30, "the web tail")
    assert web.stop() == 0
    lines = web.lines()
    loggers = {line["logger"] for line in lines}
    assert {"jobworker.web", "uvicorn.error", "uvicorn.access"} <= loggers, loggers
    access = next(line for line in lines if line["logger"] == "uvicorn.access")
    assert "GET /jobs-ui/nowhere HTTP/1.1" in access["message"]
    assert any(line["message"].startswith("listening on http://") for line in lines)
    assert os.path.getsize(tmp_path / "web.out") == 0
    # uvicorn's server processes (`--workers 2`) log the same way as the parent.
    assert len({line["process"] for line in lines}) == (1 if workers == 1 else workers + 1)
