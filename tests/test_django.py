"""jobworker as the backend of Django's task framework, with a real Django (tests/django_project)
and real `jobworker run` workers, on SQLite and on PostgreSQL: tasks run end to end, results,
errors and signals come back as Django defines them, and an enqueue inside `atomic()` is stored
only when the transaction commits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from .conftest import JOBWORKER, ROOT, subprocess_env
from .test_processes import wait_for

pytestmark = pytest.mark.slow

DATABASE = {"default": "default", "pg": "pg"}  # backend alias -> the Django database it waits on


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Django set up once in this test process: an SQLite file of its own as `default`, a
    PostgreSQL database of its own as `pg` (jobworker's jobs in a schema there, migrated with
    `manage.py jobworker migrate`); all removed afterwards."""
    import django
    from django.core.management import call_command
    from django.db import connections

    from jobworker.contrib.django import close_apps

    from .pg import new_schema_name, temporary_database

    with temporary_database() as pg_url:
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
            "DJANGO_TEST_SQLITE": str(tmp_path_factory.mktemp("django") / "db.sqlite3"),
            "DJANGO_TEST_PG": pg_url,
            "DJANGO_TEST_PG_SCHEMA": new_schema_name(),
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            django.setup()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key)
                else:
                    os.environ[key] = value
        for database in DATABASE.values():
            call_command("migrate", run_syncdb=True, database=database, verbosity=0)
        call_command("jobworker", "--backend", "pg", "migrate")
        try:
            yield env
        finally:
            close_apps()
            connections.close_all()


@pytest.fixture(params=["default", "pg"])
def alias(request: pytest.FixtureRequest, django_project: dict[str, str]) -> str:
    return str(request.param)


class Worker:
    """`jobworker run jobworker.contrib.django.worker` for one backend alias."""

    def __init__(self, tmp_path: Path, env: dict[str, str], alias: str) -> None:
        self.signal_log = tmp_path / "signals.jsonl"
        self.log_path = tmp_path / "worker.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*JOBWORKER, "run", "jobworker.contrib.django.worker", "-c", "1", "-p", "2"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=subprocess_env(
                **env,
                DJANGO_TEST_SIGNAL_LOG=str(self.signal_log),
                JOBWORKER_DJANGO_BACKEND=alias,
                JOBWORKER_POLL_INTERVAL="0.05",
            ),
        )

    def signals(self) -> list[dict[str, Any]]:
        if not self.signal_log.exists():
            return []
        return [json.loads(line) for line in self.signal_log.read_text().splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        finally:
            self._log.close()


@pytest.fixture
def worker(tmp_path: Path, django_project: dict[str, str], alias: str) -> Iterator[Worker]:
    running = Worker(tmp_path, django_project, alias)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def enqueued() -> Iterator[list[Any]]:
    """The `task_enqueued` signals sent in this process."""
    from jobworker.contrib.django.compat import task_enqueued

    received: list[Any] = []

    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        received.append((sender, task_result))

    task_enqueued.connect(receiver)
    yield received
    task_enqueued.disconnect(receiver)


def finished(task: Any, result_id: str, worker: Worker) -> Any:
    """The task's result once it is finished (`task` asks its own backend)."""

    def done() -> Any:
        assert worker.proc.poll() is None, worker.log_path.read_text()
        result = task.get_result(result_id)
        return result if result.is_finished else None

    return wait_for(done, 60, f"task {result_id}")


def test_tasks_run_end_to_end_through_a_worker(
    alias: str, worker: Worker, enqueued: list[Any]
) -> None:
    from jobworker.contrib.django import JobworkerBackend
    from jobworker.contrib.django.compat import TaskResultStatus, task_backends
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import greet, order_total, shout, which_attempt

    order = Order.objects.using(DATABASE[alias]).create(customer="ada", total_cents=1250)
    total = order_total.using(backend=alias).enqueue(order.pk, database=DATABASE[alias])
    hello = greet.using(backend=alias).enqueue(name="django")  # async, priority 7, "reports"
    attempt = which_attempt.using(backend=alias).enqueue()

    assert total.status == TaskResultStatus.READY
    assert [(sender, result.id) for sender, result in enqueued] == [
        (JobworkerBackend, total.id),
        (JobworkerBackend, hello.id),
        (JobworkerBackend, attempt.id),
    ]
    got = finished(order_total.using(backend=alias), total.id, worker)
    assert got.status == TaskResultStatus.SUCCESSFUL
    assert got.return_value["customer"] == "ada"
    assert got.return_value["total"] == 12.5
    assert got.return_value["pid"] != os.getpid()
    assert got.args == [order.pk] and got.kwargs == {"database": DATABASE[alias]}
    assert got.backend == alias and got.attempts == 1 and not got.errors
    assert got.enqueued_at <= got.started_at <= got.finished_at
    assert finished(greet.using(backend=alias), hello.id, worker).return_value == "hello django"
    assert finished(which_attempt.using(backend=alias), attempt.id, worker).return_value == [
        1,
        attempt.id,
    ]
    # A task declared on another backend, sent here: the worker knows it too.
    loud = shout.using(backend=alias).enqueue("quiet")
    assert finished(shout.using(backend=alias), loud.id, worker).return_value == "QUIET"
    hello.refresh()
    assert hello.status == TaskResultStatus.SUCCESSFUL and hello.return_value == "hello django"
    assert asyncio.run(greet.using(backend=alias).aget_result(hello.id)).is_finished

    # What jobworker stored: one job type per task, its module path; queue and priority mapped.
    job = task_backends[alias].app.client.get(uuid.UUID(hello.id))
    assert job.job_type == "tests.django_project.shop.tasks.greet"
    assert (job.queue, job.priority, job.status) == ("reports", 7, "succeeded")

    # task_started and task_finished, sent in the worker process.
    sent = [s for s in worker.signals() if s["id"] in {total.id, hello.id, attempt.id}]
    for result_id in (total.id, hello.id, attempt.id):
        mine = [(s["signal"], s["status"]) for s in sent if s["id"] == result_id]
        assert mine == [("started", "RUNNING"), ("finished", "SUCCESSFUL")]
    assert {s["sender"] for s in sent} == {"jobworker.contrib.django.backend.JobworkerBackend"}
    assert os.getpid() not in {s["pid"] for s in sent}


def test_a_failing_task_reports_its_error(alias: str, worker: Worker) -> None:
    from jobworker.contrib.django.compat import TaskResultStatus
    from tests.django_project.shop.tasks import OutOfStock, reserve

    result = reserve.using(backend=alias).enqueue("sku-1")
    got = finished(reserve.using(backend=alias), result.id, worker)
    assert got.status == TaskResultStatus.FAILED
    (error,) = got.errors
    assert error.exception_class is OutOfStock
    assert "OutOfStock: no sku-1 left" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        got.return_value  # noqa: B018
    wait_for(lambda: len([s for s in worker.signals() if s["id"] == result.id]) == 2, 30, "signals")
    mine = [(s["signal"], s["status"]) for s in worker.signals() if s["id"] == result.id]
    assert mine == [("started", "RUNNING"), ("finished", "FAILED")]


class Rollback(Exception):
    pass


def test_an_enqueue_inside_atomic_is_stored_on_commit(
    alias: str, worker: Worker, enqueued: list[Any]
) -> None:
    from django.db import transaction

    from jobworker.contrib.django.compat import TaskResultDoesNotExist, TaskResultStatus
    from tests.django_project.shop.tasks import which_attempt

    task = which_attempt.using(backend=alias)
    dropped: list[Any] = []

    def enqueue_then_roll_back() -> None:
        with transaction.atomic(using=DATABASE[alias]):
            dropped.append(task.enqueue())
            raise Rollback

    with pytest.raises(Rollback):
        enqueue_then_roll_back()
    with transaction.atomic(using=DATABASE[alias]):
        kept = task.enqueue()
        assert not enqueued  # nothing is stored before the commit
        with pytest.raises(TaskResultDoesNotExist):
            task.get_result(kept.id)
    assert [result.id for _, result in enqueued] == [kept.id]
    assert kept.enqueued_at is not None
    got = finished(which_attempt.using(backend=alias), kept.id, worker)
    assert got.status == TaskResultStatus.SUCCESSFUL and got.id == kept.id
    assert got.return_value[0] == 1
    with pytest.raises(TaskResultDoesNotExist):
        task.get_result(dropped[0].id)


def test_run_after_and_priority_map_to_the_job(alias: str) -> None:
    from django.utils import timezone

    from jobworker.contrib.django.compat import TaskResultStatus, task_backends
    from tests.django_project.shop.tasks import which_attempt

    later = timezone.now() + timedelta(hours=1)
    task = which_attempt.using(backend=alias, run_after=later, priority=-5)
    result = asyncio.run(task.aenqueue())
    client = task_backends[alias].app.client
    job = client.get(uuid.UUID(result.id))
    assert (job.status, job.run_at, job.priority) == ("scheduled", later, -5)
    assert asyncio.run(task.aget_result(result.id)).status == TaskResultStatus.READY
    client.cancel(job.job_id)
    cancelled = which_attempt.using(backend=alias).get_result(result.id)
    assert cancelled.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in cancelled.errors] == [
        "jobworker.errors.JobCancelledError"
    ]


def test_the_backend_says_what_jobworker_supports(django_project: dict[str, str]) -> None:
    from jobworker.contrib.django.compat import task_backends

    backend = task_backends["default"]
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_an_unknown_result_id_does_not_exist(alias: str) -> None:
    from jobworker.contrib.django.compat import TaskResultDoesNotExist
    from tests.django_project.shop.tasks import which_attempt

    for result_id in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(TaskResultDoesNotExist):
            which_attempt.using(backend=alias).get_result(result_id)


def test_manage_py_jobworker_runs_the_command_on_the_backends_database(
    django_project: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from django.core.management import call_command

    call_command("jobworker", "--backend", "pg", "migrate")
    assert f"(schema {django_project['DJANGO_TEST_PG_SCHEMA']}): the schema is up to date" in (
        capsys.readouterr().out
    )
    call_command("jobworker", "sql", "--dialect", "postgres", "--schema", "shop_jobs")
    assert 'CREATE SCHEMA IF NOT EXISTS "shop_jobs"' in capsys.readouterr().out
