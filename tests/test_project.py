"""The project as a whole: packaging, public API, code quality gates, the README's demo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jobworker

from .conftest import ROOT

BIN = Path(sys.executable).parent


def test_public_api_is_pinned() -> None:
    assert sorted(jobworker.__all__) == [
        "App",
        "AttemptOutcome",
        "AttemptRecord",
        "BeatStatus",
        "CancelResult",
        "Client",
        "ConfigurationError",
        "DefinitionError",
        "DuplicateJobError",
        "EventKind",
        "InvalidJobStateError",
        "JobArgumentsError",
        "JobCancelledError",
        "JobContext",
        "JobDefinition",
        "JobDescriptor",
        "JobEvent",
        "JobEventError",
        "JobFailedError",
        "JobFunction",
        "JobHandle",
        "JobKind",
        "JobNotFoundError",
        "JobStatus",
        "JobworkerError",
        "MissingExtraError",
        "PermanentJobError",
        "QueueInfo",
        "RecurringJob",
        "Registry",
        "ResultTimeoutError",
        "ScheduleOptions",
        "SchemaMissingError",
        "Settings",
        "TypedEvent",
        "UnknownJobError",
        "WorkerInfo",
        "WorkerRole",
        "__version__",
        "default_app",
        "job",
    ]
    for name in jobworker.__all__:
        assert hasattr(jobworker, name), name


def test_the_web_api_is_pinned() -> None:
    import jobworker.web

    assert sorted(jobworker.web.__all__) == [
        "FollowError",
        "JobJson",
        "SecurityHeaders",
        "StreamHub",
        "WebConfig",
        "admin_api",
        "allow_all",
        "create_app",
        "event_json",
        "event_object",
        "follow",
        "hash_password",
        "job_json",
        "job_object",
        "job_routes",
    ]
    for name in jobworker.web.__all__:
        assert hasattr(jobworker.web, name), name


@pytest.mark.slow
def test_the_wheel_ships_the_sql_the_dashboard_and_py_typed(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("jobworker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jobworker/py.typed" in names
    assert "jobworker/_sql/sqlite/006_baseline.sql" in names
    assert "jobworker/_sql/sqlite/queries.sql" in names
    from jobworker.web.dashboard.routes import STATIC, asset_digest

    for path in STATIC.rglob("*"):
        if path.is_file():
            assert f"jobworker/{path.relative_to(ROOT / 'jobworker').as_posix()}" in names, path
    # The installed package finds its SQL inside itself.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = (
        "from jobworker.storage.sqlfiles import sql_root, queries;"
        "from jobworker.web.dashboard.routes import STATIC, asset_digest;"
        "print(sql_root()); print(len(queries('sqlite'))); print(STATIC); print(asset_digest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0].startswith(str(target)) and int(out[1]) > 10
    # ... and serves the dashboard from inside itself, the same files as this checkout.
    assert out[2].startswith(str(target)) and out[3] == asset_digest()


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "jobworker", "tests", "benchmarks", "examples"],
        ["ruff", "format", "--check", "jobworker", "tests", "benchmarks", "examples"],
        ["mypy"],
        ["lint-imports"],
    ],
    ids=["ruff", "ruff-format", "mypy", "import-linter"],
)
def test_quality_gate(command: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_readme_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWORKER_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "jobworker.db").exists()
    lines = result.stdout.splitlines()
    assert any(line.startswith("demo.greet") and "succeeded" in line for line in lines)
    assert any(line.startswith("demo.flaky") and "attempts=3" in line for line in lines)
    assert any(line.startswith("demo.slow") and "succeeded" in line for line in lines)
    assert "attempt 1: failed  (ConnectionError: payments is not answering" in result.stdout


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = readme.split("```")
    first_commands = [
        line for line in blocks[1].splitlines() if line.strip() and not line.startswith("#")
    ]
    demo, tests = first_commands[-2:] if len(first_commands) >= 2 else ("", "")
    assert "examples/demo.py" in demo
    assert "pytest" in tests
    assert tests.strip() in ci, "CI runs exactly the README's test command"
