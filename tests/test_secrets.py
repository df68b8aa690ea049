"""Secrets never printed (issue 12, point 8): one function redacts every URL jobworker prints or
logs, and real processes that fail to connect to a URL with a password never show it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobworker.display import redact_url

from .conftest import JOBWORKER, TESTS, subprocess_env

sys.path.insert(0, str(TESTS / "apps"))

# (URL, the secret in it, what must still show). Each secret contains "s3cr"; none is shown.
FORMS = [
    (
        "postgresql://app:s3cr3t@db.internal:5432/myapp",
        "s3cr3t",
        "postgresql://app:***@db.internal:5432/myapp",
    ),
    ("postgres://app:s3cr3t@db.internal/myapp", "s3cr3t", "postgres://app:***@db.internal/myapp"),
    # a password with an unencoded '@', '/', '?', '#' or ':'
    (
        "postgresql://app:p@s3cr@t@db.internal/myapp",
        "p@s3cr@t",
        "postgresql://app:***@db.internal/myapp",
    ),
    (
        "postgresql://app:s3cr/t?x#y:z@db.internal/myapp",
        "s3cr/t?x#y:z",
        "postgresql://app:***@db.internal/myapp",
    ),
    (
        "postgresql://app:s3cr%40t@db.internal/myapp",
        "s3cr%40t",
        "postgresql://app:***@db.internal/myapp",
    ),
    # query parameters, any case, first or later, and a later '@' elsewhere in the query
    (
        "postgresql://db.internal/myapp?user=app&password=s3cr3t&sslmode=require",
        "s3cr3t",
        "?user=app&password=***&sslmode=require",
    ),
    (
        "postgresql://db.internal/myapp?PASSWORD=s3cr3t",
        "s3cr3t",
        "postgresql://db.internal/myapp?PASSWORD=***",
    ),
    (
        "postgresql://db.internal/myapp?password=s3cr@t&application_name=a",
        "s3cr@t",
        "password=***&application_name=a",
    ),
    ("postgresql://db.internal/myapp?sslpassword=s3cr3t", "s3cr3t", "sslpassword=***"),
    ("postgresql://db.internal/myapp?password=my s3cr3t phrase", "s3cr3t", "password=***"),
    # a misspelt scheme, a missing '//', no scheme at all
    (
        "postgersql://app:s3cr3t@db.internal/myapp",
        "s3cr3t",
        "postgersql://app:***@db.internal/myapp",
    ),
    ("postgresql:/app:s3cr3t@db.internal/myapp", "s3cr3t", "***@db.internal/myapp"),
    ("app:s3cr3t@db.internal/myapp", "s3cr3t", "***@db.internal/myapp"),
    # libpq keyword/value strings
    ("host=db.internal password=s3cr3t dbname=myapp", "s3cr3t", "host=db.internal password=***"),
    (
        "host=db.internal password='my s3cr3t' dbname=myapp",
        "s3cr3t",
        "host=db.internal password=***",
    ),
    # SQL Server: URL, ODBC connection string, odbc_connect percent-encoded
    (
        "mssql+pyodbc://sa:s3cr3t@db.internal:1433/myapp?driver=ODBC+Driver+18",
        "s3cr3t",
        "mssql+pyodbc://sa:***@db.internal:1433/myapp?driver=ODBC+Driver+18",
    ),
    (
        "DRIVER={ODBC Driver 18};SERVER=db.internal;UID=sa;PWD=s3cr3t;DATABASE=myapp",
        "s3cr3t",
        "UID=sa;PWD=***;DATABASE=myapp",
    ),
    (
        "DRIVER={x};SERVER=db;UID=sa;pwd={s3cr;3t}};x};DATABASE=myapp",
        "s3cr",
        "UID=sa;pwd=***;DATABASE=myapp",
    ),
    ("Server=db;Password=s3cr3t;", "s3cr3t", "Server=db;Password=***;"),
    (
        "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7Bx%7D%3BSERVER%3Ddb%3BUID%3Dsa%3BPWD%3Ds3cr3t%3B",
        "s3cr3t",
        "UID%3Dsa%3BPWD%3D***",
    ),
    (
        "mssql+pyodbc:///?odbc_connect=SERVER%3Ddb%3BPWD%3D%7Bs3cr%3Bt%7D%3BDATABASE%3Dx",
        "s3cr",
        "PWD%3D***",
    ),
    # Redis
    ("redis://:s3cr3t@127.0.0.1:6379/0", "s3cr3t", "redis://:***@127.0.0.1:6379/0"),
    (
        "rediss://default:s3cr3t@cache.internal:6380/0",
        "s3cr3t",
        "rediss://default:***@cache.internal:6380/0",
    ),
    (
        "redis://cache.internal:6379/0?password=s3cr3t",
        "s3cr3t",
        "redis://cache.internal:6379/0?password=***",
    ),
    (
        "unix:///run/redis.sock?db=0&password=s3cr3t",
        "s3cr3t",
        "unix:///run/redis.sock?db=0&password=***",
    ),
]
UNCHANGED = [
    "sqlite:///jobs.db",
    "sqlite:////var/lib/app/jobs.db",
    "postgresql://app@db.internal:5432/myapp?sslmode=require",
    "postgresql:///myapp?host=/run/postgresql&application_name=me@work",
    "redis://127.0.0.1:6379/0",
    "mssql+pyodbc://db.internal/myapp?driver=ODBC+Driver+18&Trusted_Connection=yes",
]


@pytest.mark.parametrize(("url", "secret", "shown"), FORMS)
def test_redact_url_hides_the_password_of_every_form(url: str, secret: str, shown: str) -> None:
    redacted = redact_url(url)
    print(f"{url!r} -> {redacted!r}")
    assert secret not in redacted and "s3cr" not in redacted
    assert shown in redacted
    assert redact_url(redacted) == redacted


@pytest.mark.parametrize("url", UNCHANGED)
def test_redact_url_leaves_urls_without_a_password_alone(url: str) -> None:
    assert redact_url(url) == url


# Real processes ------------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _jobs(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBWORKER, "jobs", "--database-url", url],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_failed_connection_never_prints_the_password(closed_port: int) -> None:
    port = closed_port
    urls = [
        f"postgresql://app:s3cr3t@127.0.0.1:{port}/myapp",
        f"postgresql://127.0.0.1:{port}/myapp?user=app&password=s3cr3t",
        f"postgresql://app:p@s3cr@t@127.0.0.1:{port}/myapp",
        "postgresql://app:s3cr3t@127.0.0.1:notaport/myapp",
        f"postgressql://app:s3cr3t@127.0.0.1:{port}/myapp",
        f"postgresql:/app:s3cr3t@127.0.0.1:{port}/myapp",
        f"mssql+pyodbc://sa:s3cr3t@127.0.0.1:{port}/myapp?driver=No+Such+Driver",
        f"mssql+pyodbc://sa:s3cr3t@127.0.0.1:{port}/",
    ]
    for url in urls:
        run = _jobs(url)
        print(f"{url} -> exit {run.returncode}: {run.stderr.strip()}")
        assert run.returncode == 2, run.stderr
        assert "s3cr" not in run.stdout + run.stderr
        assert "Traceback" not in run.stderr
        assert "***" in run.stderr


@contextlib.contextmanager
def _process(args: list[str], log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*JOBWORKER, *args], stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(**env)
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(30)


def _wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return log.read_text()


def test_supervisor_and_beat_never_log_a_password(tmp_path: Path, closed_port: int) -> None:
    """`jobworker run` against a database it cannot reach exits 2 with the URL redacted; beat's
    warning about an unreachable Redis and the workers' Redis failures hide its password."""
    database = f"postgresql://app:s3cr3t@127.0.0.1:{closed_port}/myapp?password=s3cr3t"
    refused = subprocess.run(
        [*JOBWORKER, "run", "proc_jobs", "-c", "1", "--database-url", database],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(refused.stderr)
    assert refused.returncode == 2 and "s3cr" not in refused.stdout + refused.stderr
    assert f"127.0.0.1:{closed_port}/myapp?password=***" in refused.stderr

    redis = f"redis://:s3cr3t@127.0.0.1:{closed_port}/0?password=s3cr3t"
    sqlite = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {"JOBWORKER_REDIS_URL": redis, "JOBWORKER_DATABASE_URL": sqlite}
    beat_log = tmp_path / "beat.log"
    with _process(["beat", "proc_jobs"], beat_log, **env) as beat:
        text = _wait_for_log(beat_log, "falls back to the database", beat)
    print(text)
    assert "s3cr" not in text
    assert f"Redis at redis://:***@127.0.0.1:{closed_port}/0?password=*** is unreachable" in text

    run_log = tmp_path / "run.log"
    with _process(["run", "proc_jobs", "-c", "1"], run_log, **env) as run:
        text = _wait_for_log(run_log, "started worker 0", run)
        text = _wait_for_log(run_log, "started: queues=", run)
    print(text)
    assert "s3cr" not in text
    assert f"database={sqlite}" in text  # the start-up line names where it works
