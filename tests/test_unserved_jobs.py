"""Waiting jobs of types the app a command loaded does not define: `jobworker jobs` and
`jobworker queues list` warn about them instead of showing them as if some worker would come."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from jobworker import App, JobContext, Registry, ScheduleOptions

from .conftest import JOBWORKER, Store, subprocess_env


@pytest.fixture
def retired(store: Store) -> Iterator[App]:
    """An App of an older release: it defines `reports.retired` (which cli_jobs does not) and
    `cli.export`, and enqueues both."""
    registry = Registry()

    @registry.job(name="reports.retired", queue="reports")
    def retired_job(ctx: JobContext, year: int) -> None: ...

    @registry.job(name="cli.export")
    def export(ctx: JobContext, tenant_id: str) -> None: ...

    app = store.app(registry=registry, bind=False)
    yield app
    app.close()


def run_cli(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own: its default registry holds only what it imports."""
    return subprocess.run(
        [*JOBWORKER, *args, "--database-url", store.url],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(**store.env),
    )


def test_jobs_and_queues_warn_about_waiting_jobs_of_types_the_app_does_not_define(
    store: Store, retired: App
) -> None:
    for year in (2020, 2021):
        retired.client.enqueue("reports.retired", {"year": year})
    retired.client.enqueue(
        "reports.retired", {"year": 2019}, ScheduleOptions(queue="default")
    )  # a third, in a queue the app's workers do claim from
    retired.client.enqueue("cli.export", {"tenant_id": "00000000-0000-0000-0000-000000000001"})

    listed = run_cli(store, "jobs", "--app", "cli_jobs")
    assert listed.returncode == 0, listed.stderr
    assert "reports.retired" in listed.stdout  # the table is unchanged...
    warning = listed.stderr.strip()
    print(warning)
    assert warning.startswith("warning: 3 waiting job(s) listed are of a type the app loaded")
    assert "reports.retired (3)" in warning and "cli.export" not in warning

    queues = run_cli(store, "queues", "list", "--app", "cli_jobs")
    assert queues.returncode == 0, queues.stderr
    warning = queues.stderr.strip()
    print(warning)
    assert warning.startswith("warning: 3 of the newest 1000 queued jobs are of a type")
    assert "reports.retired (3)" in warning

    # Without --app there is nothing to compare with: no warning, and no guess.
    assert run_cli(store, "jobs").stderr == ""
    assert run_cli(store, "queues", "list").stderr == ""
    # With only served types waiting, nothing to say either.
    assert run_cli(store, "jobs", "--app", "cli_jobs", "--type", "cli.export").stderr == ""
