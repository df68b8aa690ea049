"""The process units in contrib/ as shipped: supervisord (from PyPI) runs the worker, beat and
web programs of `contrib/supervisord/jobworker.conf` for real, each does its work, and
`supervisorctl stop all` drains them (a running job finishes, nothing is killed); the systemd
units pass `systemd-analyze verify` and its offline security review when systemd-analyze is
installed."""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobworker import App, JobStatus
from jobworker.web.config import hash_password

from .conftest import ROOT, subprocess_env
from .web.test_web_command import free_port

pytestmark = pytest.mark.slow

CONTRIB = ROOT / "contrib"
SHIPPED_HOME = "/srv/app"  # the app directory the shipped files name
VENV = Path(sys.prefix)
UNITS = ["jobworker.service", "jobworker-beat.service", "jobworker-web.service"]
PROGRAMS = ["jobworker-worker", "jobworker-beat", "jobworker-web"]

APP_MODULE = '''
"""The jobs the supervisord test runs."""
import time
from pathlib import Path

from jobworker import App, JobContext, Registry

registry = Registry()
app = App(registry=registry)  # JOBWORKER_DATABASE_URL, from supervisord's environment


@app.job(name="units.sleep", max_attempts=1)
def sleep(ctx: JobContext, seconds: float, marker: str = "") -> str:
    if marker:
        Path(marker).touch()
    time.sleep(seconds)
    return f"slept {seconds}"
'''


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def app_home(tmp_path: Path) -> Path:
    """A directory laid out like the shipped /srv/app: the jobs module and `.venv`."""
    if not (VENV / "bin" / "jobworker").exists():
        pytest.skip(f"no jobworker script in {VENV}/bin (install the package in a virtualenv)")
    home = tmp_path / "app"
    home.mkdir()
    (home / "units_app.py").write_text(APP_MODULE)
    (home / ".venv").symlink_to(VENV)
    return home


class Supervisord:
    """supervisord in the foreground on a config of its own that includes the shipped file
    (with the app directory, user and port made this test's)."""

    def __init__(self, tmp_path: Path, home: Path, env: dict[str, str], port: int) -> None:
        self.dir = tmp_path
        shipped = (CONTRIB / "supervisord" / "jobworker.conf").read_text()
        user = pwd.getpwuid(os.getuid()).pw_name
        programs = (
            shipped.replace(SHIPPED_HOME, str(home))
            .replace("\nuser=app\n", f"\nuser={user}\n")
            .replace("--port 8000", f"--port {port}")
        )
        assert SHIPPED_HOME not in programs and "\nuser=app\n" not in programs
        (tmp_path / "jobworker.conf").write_text(programs)
        (tmp_path / "childlogs").mkdir()
        self.conf = tmp_path / "supervisord.conf"
        self.conf.write_text(
            f"""
[unix_http_server]
file={tmp_path}/supervisor.sock

[supervisord]
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
childlogdir={tmp_path}/childlogs
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{tmp_path}/supervisor.sock

[include]
files = {tmp_path}/jobworker.conf
"""
        )
        self._out = (tmp_path / "supervisord.out").open("wb")
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "supervisord"), "-c", str(self.conf)],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its programs too: one group to clean up after a failure
        )

    def ctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(VENV / "bin" / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.stdout + done.stderr

    def states(self) -> dict[str, str]:
        states = {}
        for line in self.ctl("status").splitlines():
            match = re.match(r"jobworker:(\S+)\s+(\S+)", line)
            if match:
                states[match[1]] = match[2]
        return states

    def pid(self, program: str) -> int:
        return int(self.ctl("pid", f"jobworker:{program}").strip())

    @property
    def log(self) -> str:
        return (self.dir / "supervisord.log").read_text()

    def child_log(self, program: str) -> str:
        [path] = (self.dir / "childlogs").glob(f"{program}-stdout---supervisor-*.log")
        return path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._out.close()


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[Callable[..., Supervisord]]:
    started: list[Supervisord] = []

    def start(home: Path, env: dict[str, str], port: int) -> Supervisord:
        started.append(Supervisord(tmp_path, home, env, port))
        return started[-1]

    yield start
    for instance in started:
        instance.close()


def test_supervisord_runs_the_three_programs_and_stop_all_drains_them(
    tmp_path: Path, supervisord: Callable[..., Supervisord]
) -> None:
    home = app_home(tmp_path)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    password = secrets.token_urlsafe(12)
    port = free_port()
    env = subprocess_env(
        JOBWORKER_APP="units_app",
        JOBWORKER_DATABASE_URL=url,
        JOBWORKER_WEB_ADMIN_PASSWORD_HASH=hash_password(password),
        JOBWORKER_WEB_SESSION_SECRET=secrets.token_urlsafe(48),
        JOBWORKER_POLL_INTERVAL="0.1",
        JOBWORKER_BEAT_RETRY_INTERVAL="0.5",
    )
    env.pop("PYTHONPATH")  # the programs find the module in their directory, as deployed
    sup = supervisord(home, env, port)
    wait_for(
        lambda: sup.states() == dict.fromkeys(PROGRAMS, "RUNNING"),
        60,
        "the three programs RUNNING",
    )

    spec = importlib.util.spec_from_file_location("units_app_in_test", home / "units_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = App(url, registry=module.registry, bind=False)
    try:
        # The worker runs a job.
        quick = app.client.enqueue("units.sleep", {"seconds": 0.1})
        assert quick.result(timeout=30) == "slept 0.1"

        # Beat holds leadership, as the program supervisord started.
        beat_pid = sup.pid("jobworker-beat")
        leader = wait_for(lambda: app.client.beat_status().leader, 30, "a beat leader")
        assert leader.holder.endswith(f":{beat_pid}"), leader

        # The web tail answers on its port, with the admin API on (a login, then stats).
        site = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=f"{site}/jobs-ui/api", timeout=10) as web:
            assert web.get("/stats").status_code == 401
            login = web.post(
                "/login",
                json={"username": "admin", "password": password},
                headers={"Origin": site},
            )
            assert login.status_code == 200, login.text

            def stats_with_a_worker() -> dict[str, Any] | None:
                stats: dict[str, Any] = web.get("/stats").json()
                return stats if any(w["role"] == "worker" for w in stats["workers"]) else None

            stats = wait_for(stats_with_a_worker, 30, "the worker in the registry")
        assert stats["counts"]["succeeded"] == 1
        assert stats["beat"]["leader"] == leader.holder

        # `stop all` while a job runs: the job finishes, each program exits 0, none is killed.
        marker = tmp_path / "running"
        slow = app.client.enqueue("units.sleep", {"seconds": 3, "marker": str(marker)})
        wait_for(marker.exists, 30, "the slow job to start")
        began = time.monotonic()
        stopped = sup.ctl("stop", "all")
        took = time.monotonic() - began
        for program in PROGRAMS:
            assert f"jobworker:{program}: stopped" in stopped, stopped
        assert 2 < took < 60, took
        job = app.client.get(slow.job_id)
        assert job is not None and job.status is JobStatus.SUCCEEDED
        log = sup.log
        for program in PROGRAMS:
            assert f"stopped: {program} (exit status 0)" in log, log
        assert "SIGKILL" not in log, log
        assert sup.states() == dict.fromkeys(PROGRAMS, "STOPPED")
        assert "draining" in sup.child_log("jobworker-worker")
        assert "admin API: on" in sup.child_log("jobworker-web")
    finally:
        app.close()
    assert "Shut down" in sup.ctl("shutdown")
    assert sup.proc.wait(30) == 0


def test_the_shipped_supervisord_file_needs_no_folder_that_a_fresh_machine_lacks() -> None:
    text = (CONTRIB / "supervisord" / "jobworker.conf").read_text()
    settings = [line for line in text.splitlines() if line and not line.startswith(";")]
    logfiles = [line for line in settings if "logfile=" in line]
    assert logfiles and all(line.endswith("=AUTO") for line in logfiles), logfiles
    paths = {p for line in settings for p in re.findall(r"=\s*(/\S+)", line)}
    assert all(p.startswith(f"{SHIPPED_HOME}") for p in paths), paths  # the app's own only


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
def test_systemd_units_verify_and_are_hardened(tmp_path: Path) -> None:
    home = app_home(tmp_path)  # ExecStart must name a real executable for `verify`
    for unit in UNITS:
        text = (CONTRIB / "systemd" / unit).read_text()
        (tmp_path / unit).write_text(text.replace(SHIPPED_HOME, str(home)))
    done = subprocess.run(
        ["systemd-analyze", "verify", *(f"./{unit}" for unit in UNITS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys are only warned about (exit 0): any output is a failure.
    assert done.returncode == 0 and not done.stdout + done.stderr, done.stdout + done.stderr
    for unit in UNITS:
        security = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", f"./{unit}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
        assert match, security.stdout + security.stderr
        assert float(match[1]) <= 2.0, f"{unit}: {match[0]}"
        text = (CONTRIB / "systemd" / unit).read_text()
        for line in ("KillSignal=SIGTERM", "Restart=on-failure", "DynamicUser=yes"):
            assert f"\n{line}\n" in text, (unit, line)
        stop = int(re.search(r"\nTimeoutStopSec=(\d+)\n", text)[1])  # type: ignore[index]
        drain = re.search(r"--drain-timeout (\d+)", text)
        graceful = 5  # beat stops within a tick; web's --graceful-timeout is 5 s
        assert stop > (int(drain[1]) if drain else graceful), (unit, stop)


def test_each_procfile_process_starts_works_and_stops_with_sigterm(tmp_path: Path) -> None:
    """Each line of Procfile.example, run the way Heroku and honcho run it (`sh -c`), in a
    directory holding the `app.jobs` module it names."""
    home = app_home(tmp_path)
    (home / "app").mkdir()
    (home / "app" / "__init__.py").write_text("")
    (home / "units_app.py").rename(home / "app" / "jobs.py")
    processes = dict(
        line.split(": ", 1)
        for line in (ROOT / "Procfile.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(processes) == {"worker", "beat", "web"}
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    port = free_port()
    env = subprocess_env(
        PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
        PORT=str(port),
        JOBWORKER_DATABASE_URL=url,
        JOBWORKER_POLL_INTERVAL="0.1",
        JOBWORKER_BEAT_RETRY_INTERVAL="0.5",
    )
    env.pop("PYTHONPATH")
    started: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in processes}
    try:
        for name, command in processes.items():
            # Listening on every address is what a dyno needs; here, loopback is enough.
            command = command.replace("--host 0.0.0.0", "--host 127.0.0.1")
            started[name] = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {command}"],
                cwd=home,
                env=env,
                stdout=logs[name],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        spec = importlib.util.spec_from_file_location("procfile_app_in_test", home / "app/jobs.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        app = App(url, registry=module.registry, bind=False)
        try:
            wait_for(lambda: (tmp_path / "jobs.db").exists(), 30, "the database")
            handle = app.client.enqueue("units.sleep", {"seconds": 0.1})
            assert handle.result(timeout=30) == "slept 0.1"
            leader = wait_for(lambda: app.client.beat_status().leader, 30, "a beat leader")
            assert leader.holder.endswith(f":{started['beat'].pid}")

            def answers() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/jobs-ui/", timeout=5) is not None
                except httpx.TransportError:
                    return False

            wait_for(answers, 30, "the web process on $PORT")
        finally:
            app.close()
        for name, process in started.items():
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, (name, (tmp_path / f"{name}.log").read_text())
    finally:
        for process in started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for log in logs.values():
            log.close()
    worker_log = (tmp_path / "worker.log").read_text()
    assert "starting 2 worker process(es)" in worker_log  # ${WEB_CONCURRENCY:-2}
