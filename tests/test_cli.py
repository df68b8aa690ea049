from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jobworker import __version__
from jobworker.cli import main

from .conftest import JOBWORKER, TESTS, subprocess_env

sys.path.insert(0, str(TESTS / "apps"))


@pytest.fixture
def cli(sqlite_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        # `queues pause NAME`: the option belongs to the subcommand, after its arguments.
        return runner.invoke(main, [*args, "--database-url", sqlite_url])

    return invoke


def one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_enqueue_status_and_jobs(cli) -> None:  # type: ignore[no-untyped-def]
    tenant = uuid.uuid4()
    enqueued = cli(
        "enqueue",
        "cli.export",
        "--app",
        "cli_jobs",
        "--args",
        json.dumps({"tenant_id": str(tenant)}),
    )
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.output.strip()
    uuid.UUID(job_id)
    status = cli("status", job_id)
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    for field in (
        "job_id",
        "job_type",
        "status",
        "attempt",
        "enqueued_at",
        "started_at",
        "completed_at",
        "idempotency_key",
        "result",
        "error",
    ):
        assert field in data
    assert data["job_id"] == job_id and data["job_type"] == "cli.export"
    assert data["status"] == "queued" and data["attempt"] == 0 and data["result"] is None
    table = cli("jobs")
    assert table.exit_code == 0
    header, row = table.output.splitlines()
    assert header.split()[:3] == ["JOB", "ID", "TYPE"] and row.startswith(job_id)
    assert "queued" in row and "0/4" in row
    assert "(no jobs)" in cli("jobs", "--status", "succeeded").output


def test_jobs_filters_by_kind_and_search_and_pages_with_before(cli) -> None:  # type: ignore[no-untyped-def]
    def enqueue(name: str, args: dict[str, str] | None = None) -> str:
        result = cli("enqueue", name, "--app", "cli_jobs", "--args", json.dumps(args or {}))
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    exports = [enqueue("cli.export", {"tenant_id": str(uuid.uuid4())}) for _ in range(3)]
    cleanups = [enqueue("cli.cleanup") for _ in range(2)]

    def listed(*options: str) -> list[list[str]]:
        result = cli("jobs", *options)
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        assert header.split()[:4] == ["JOB", "ID", "TYPE", "KIND"]
        return [row.split() for row in rows if row != "(no jobs)"]

    assert [row[0] for row in listed()] == [*reversed(cleanups), *reversed(exports)]
    system = listed("--kind", "system")
    assert [row[0] for row in system] == list(reversed(cleanups))
    assert all(row[1:3] == ["cli.cleanup", "system"] for row in system)
    assert [row[2] for row in listed("--kind", "user")] == ["user"] * 3
    assert [row[0] for row in listed("--search", "CLEAN")] == list(reversed(cleanups))
    assert [row[0] for row in listed("--search", exports[1][-12:].upper())] == [exports[1]]
    assert listed("--search", "export", "--kind", "system") == []
    one_line_error(cli("jobs", "--kind", "admin"), "unknown kind 'admin' (known: user, system)")

    first = cli("jobs", "--limit", "2")
    assert [row.split()[0] for row in first.stdout.splitlines()[1:]] == list(reversed(cleanups))
    assert first.stderr.strip() == f"next page: --before {cleanups[0]}"
    second = cli("jobs", "--limit", "2", "--before", cleanups[0])
    assert [row.split()[0] for row in second.stdout.splitlines()[1:]] == [exports[2], exports[1]]
    last = cli("jobs", "--limit", "2", "--before", exports[1])
    assert [row.split()[0] for row in last.stdout.splitlines()[1:]] == [exports[0]]
    assert last.stderr == ""
    one_line_error(cli("jobs", "--before", "nope"), "not a job id")


def test_enqueue_with_options(cli) -> None:  # type: ignore[no-untyped-def]
    args = json.dumps({"tenant_id": str(uuid.uuid4())})
    result = cli(
        "enqueue",
        "cli.export",
        "--app",
        "cli_jobs",
        "--args",
        args,
        "--run-at",
        "2099-01-01T00:00:00+00:00",
        "--queue",
        "q2",
        "--priority",
        "4",
        "--idempotency-key",
        "once",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(cli("status", result.output.strip()).output)
    assert data["status"] == "scheduled" and data["queue"] == "q2" and data["priority"] == 4
    assert data["idempotency_key"] == "once" and data["run_at"].startswith("2099-01-01")
    again = cli(
        "enqueue", "cli.export", "--app", "cli_jobs", "--args", args, "--idempotency-key", "once"
    )
    assert again.output.strip() == result.output.strip()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["enqueue", "cli.nope", "--app", "cli_jobs"], ["unknown job 'cli.nope'"]),
        (
            ["enqueue", "cli.export", "--app", "cli_jobs", "--args", "{bad"],
            ["--args is not valid JSON"],
        ),
        (["enqueue", "cli.export", "--app", "cli_jobs", "--args", "[1]"], ["JSON object"]),
        (
            ["enqueue", "cli.export", "--app", "cli_jobs", "--args", '{"tenant_id": "nope"}'],
            ["'cli.export'", "Invalid UUID", "$.tenant_id"],
        ),
        (
            [
                "enqueue",
                "cli.export",
                "--app",
                "cli_jobs",
                "--run-at",
                "tomorrow",
                "--args",
                json.dumps({"tenant_id": str(uuid.UUID(int=1))}),
            ],
            ["--run-at"],
        ),
        (
            [
                "enqueue",
                "cli.export",
                "--app",
                "cli_jobs",
                "--run-at",
                "2099-01-01T00:00:00",
                "--args",
                json.dumps({"tenant_id": str(uuid.UUID(int=1))}),
            ],
            ["timezone-aware"],
        ),
        (["enqueue", "cli.export"], ["--app"]),
        (["enqueue", "cli.export", "--app", "no_such_module_xyz"], ["no_such_module_xyz"]),
        (["status", str(uuid.UUID(int=5))], ["no job with id"]),
        (["status", "not-a-uuid"], ["not a job id"]),
        (["jobs", "--status", "finished"], ["unknown status 'finished'"]),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(cli, args: list[str], fragments: list[str]) -> None:  # type: ignore[no-untyped-def]
    one_line_error(cli(*args), *fragments)


def test_bad_database_url() -> None:
    result = CliRunner().invoke(main, ["jobs", "--database-url", "mysql://nope"])
    one_line_error(result, "unknown scheme 'mysql'")


def test_the_installed_command_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run(
        [
            *JOBWORKER,
            "enqueue",
            "cli.export",
            "--app",
            "cli_jobs",
            "--database-url",
            url,
            "--args",
            '{"tenant_id": 5}',
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: invalid arguments for job 'cli.export'")
    assert "Traceback" not in result.stderr


def test_a_missing_dotted_module_is_one_line(cli) -> None:  # type: ignore[no-untyped-def]
    one_line_error(cli("enqueue", "x", "--app", "nosuch_pkg.mod"), "no module named 'nosuch_pkg'")


def test_an_in_memory_sqlite_url_is_refused() -> None:
    result = CliRunner().invoke(main, ["jobs", "--database-url", "sqlite:///:memory:"])
    one_line_error(result, "in-memory SQLite")


def test_cancel_retry_delete_and_queues_commands(cli, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    args = json.dumps({"tenant_id": str(uuid.uuid4())})
    job_id = cli("enqueue", "cli.export", "--app", "cli_jobs", "--args", args).output.strip()
    assert cli("cancel", job_id).output.strip() == f"job {job_id} cancelled"
    assert "already finished" in cli("cancel", job_id).output
    one_line_error(cli("retry", job_id), "only dead jobs can be retried")
    one_line_error(cli("cancel", str(uuid.UUID(int=9))), "no job with id")
    assert cli("delete", job_id).output.strip() == f"job {job_id} deleted"
    one_line_error(cli("delete", job_id), "no job with id")
    one_line_error(cli("retry", "nope"), "not a job id")

    queued = cli("enqueue", "cli.export", "--app", "cli_jobs", "--args", args, "--queue", "q1")
    assert queued.exit_code == 0
    assert cli("queues", "pause", "q1").output.strip() == "queue q1 paused"
    listing = cli("queues", "list").output.splitlines()
    assert listing[0].split()[:3] == ["QUEUE", "STATE", "QUEUED"]
    assert listing[1].split()[:3] == ["q1", "paused", "1"]
    assert cli("queues", "resume", "q1").output.strip() == "queue q1 resumed"
    assert cli("queues", "list").output.splitlines()[1].split()[:2] == ["q1", "active"]
    one_line_error(cli("queues", "pause", "bad queue"), "invalid queue name")


# jobworker tail --------------------------------------------------------------------------


def _tail_app(sqlite_url: str):  # type: ignore[no-untyped-def]
    import tail_jobs  # noqa: F401  (registers the jobs)

    from jobworker import App

    return App(sqlite_url, retry_base_delay=0.05, retry_max_delay=0.05, poll_interval=0.05)


def test_tail_follows_a_job_live_and_exits_with_its_outcome(sqlite_url: str) -> None:
    import tail_jobs

    from jobworker.testing import drain

    app = _tail_app(sqlite_url)
    ok = tail_jobs.steps.delay(rows=3)
    bad = tail_jobs.fails.delay()
    app.close()
    command = [*JOBWORKER, "tail", "--app", "tail_jobs", "--database-url", sqlite_url]
    live = subprocess.Popen(
        [*command, str(ok.job_id)], env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    drain(_tail_app(sqlite_url))
    output, _ = live.communicate(timeout=30)
    assert live.returncode == 0, output
    lines = output.splitlines()
    assert lines[0] == "▶ running (attempt 1)"
    assert "INFO  exporting rows=3" in lines[1]
    assert "[" + "#" * 40 + "] 3/3 100% rows" in output
    assert "row1 \n" in output and "row3 \n" in output
    assert "metric rows_per_second = 12.5" in output
    assert lines[-2:] == ['result: {"rows":3}', "✓ succeeded (attempt 1)"]

    failed = subprocess.run(
        [*command, str(bad.job_id)], env=subprocess_env(), capture_output=True, text=True
    )
    assert failed.returncode == 1, failed.stdout
    assert "ERROR giving up code=7" in failed.stdout
    assert failed.stdout.splitlines()[-1] == "✗ dead (attempt 1): RuntimeError: no luck"

    resumed = subprocess.run(
        [*command, str(ok.job_id), "--from-seq", "7", "--json"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert [event["seq"] for event in events] == list(range(8, 8 + len(events)))
    assert events[-1]["data"]["status"] == "succeeded"


def test_tail_of_a_cancelled_or_unknown_job(cli, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    import tail_jobs

    app = _tail_app(sqlite_url)
    waiting = tail_jobs.steps.delay()
    app.client.cancel(waiting.job_id, "changed my mind")
    app.close()
    cancelled = cli("tail", str(waiting.job_id), "--app", "tail_jobs")
    assert cancelled.exit_code == 3, cancelled.output
    assert cancelled.output.strip() == "■ cancelled (attempt 0): changed my mind"
    one_line_error(cli("tail", str(uuid.uuid4())), "no job with id")
    one_line_error(cli("tail", "not-a-uuid"))


@pytest.mark.slow
def test_run_with_a_database_url_sends_the_jobs_handlers_enqueue_there(tmp_path: Path) -> None:
    """`--database-url` moves the module's App; `.delay()` inside a handler follows it."""
    import chain_jobs

    from jobworker import App, JobStatus

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    workdir = tmp_path / "module"
    workdir.mkdir()
    app = App(url, registry=chain_jobs.registry, bind=False)
    app.client.enqueue("chain.first")
    run = subprocess.Popen(
        [*JOBWORKER, "run", "chain_jobs", "--database-url", url, "-c", "1"],
        cwd=workdir,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = app.client.list(status=JobStatus.SUCCEEDED)
            if len(done) == 2:
                break
            time.sleep(0.1)
        assert sorted(job.job_type for job in done) == ["chain.first", "chain.second"]
    finally:
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
        app.close()
    assert run.returncode == 0, output
    assert not (workdir / "jobworker.db").exists(), "nothing went to the module's own App"
