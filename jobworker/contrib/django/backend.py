"""`JobworkerBackend`: Django's task backend interface over a jobworker App."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings as django_settings
from django.db import connections, transaction
from django.utils import timezone

from jobworker.app import App
from jobworker.config import Settings
from jobworker.contrib.django import jobs
from jobworker.contrib.django.compat import (
    BackendBase,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from jobworker.contrib.django.options import BackendOptions, read_options
from jobworker.contrib.django.results import to_task_result
from jobworker.ids import uuid7
from jobworker.models import AttemptRecord, JobDescriptor, ScheduleOptions

T = TypeVar("T")
# What a result id enqueued on commit is stored under, until the job has an id of its own.
PENDING_KEY = "django-task:{}"

_apps: dict[Settings, App] = {}
_apps_lock = threading.Lock()


def app_for(settings: Settings) -> App:
    """One App per set of settings in this process, whatever the thread (Django makes a
    backend per thread; they share the App, its connection pool and its portal thread)."""
    with _apps_lock:
        app = _apps.get(settings)
        if app is None:
            app = _apps[settings] = App(settings=settings, registry=jobs.registry, bind=False)
        return app


def close_apps() -> None:
    """Close every App the backends opened in this process (tests, a shutdown hook)."""
    with _apps_lock:
        apps = list(_apps.values())
        _apps.clear()
    for app in apps:
        app.close()


class JobworkerBackend(BackendBase):  # type: ignore[misc]
    """A `TASKS` backend: `@task` functions become jobworker jobs, run by `jobworker run`.

    OPTIONS: `DATABASE_URL` (default: derived from `DATABASES[DATABASE]`), `DATABASE` (the
    Django database alias, default "default"; an enqueue inside its `atomic()` block is stored
    when it commits), `SETTINGS` (other jobworker settings by name), `MAX_ATTEMPTS` (default 1:
    a Django task runs once) and `TASK_MODULES` (modules the worker imports besides each
    installed app's `tasks`).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.config: BackendOptions = read_options(
            alias, params.get("OPTIONS") or {}, django_settings.DATABASES
        )

    @property
    def app(self) -> App:
        return app_for(self.config.settings)

    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        jobs.register(task, self.config.max_attempts, type(self))

    # Enqueueing --------------------------------------------------------------------------

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        arguments, options = self._job(task, args, kwargs)
        if self._in_atomic_block():
            return self._on_commit(task, arguments, options)
        handle = self.app.client.enqueue(task.module_path, arguments, options)
        return self._enqueued(task, str(handle.job_id), arguments)

    async def aenqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        arguments, options = self._job(task, args, kwargs)
        if self._in_atomic_block():
            return self._on_commit(task, arguments, options)
        handle = await self._on_portal(
            self.app.client.aenqueue(task.module_path, arguments, options)
        )
        return self._enqueued(task, str(handle.job_id), arguments)

    def _job(self, task: Any, args: Any, kwargs: Any) -> tuple[dict[str, Any], ScheduleOptions]:
        arguments = {
            "args": normalize_json(list(args)),
            "kwargs": normalize_json(dict(kwargs)),
            "backend": self.alias,
        }
        options = ScheduleOptions(
            run_at=_aware(task.run_after), queue=task.queue_name, priority=task.priority
        )
        return arguments, options

    def _in_atomic_block(self) -> bool:
        alias = self.config.database_alias
        return alias is not None and bool(connections[alias].in_atomic_block)

    def _on_commit(self, task: Any, arguments: dict[str, Any], options: ScheduleOptions) -> Any:
        """Store the job when the transaction commits (nothing if it rolls back). Its result id
        is known now; until the job is stored it is its idempotency key."""
        result_id = str(uuid7(timezone.now()))
        keyed = ScheduleOptions(
            run_at=options.run_at,
            queue=options.queue,
            priority=options.priority,
            idempotency_key=PENDING_KEY.format(result_id),
        )
        result = self._result(task, result_id, arguments, enqueued_at=None)

        def store() -> None:
            self.app.client.enqueue(task.module_path, arguments, keyed)
            object.__setattr__(result, "enqueued_at", timezone.now())
            task_enqueued.send(type(self), task_result=result)

        transaction.on_commit(store, using=self.config.database_alias)
        return result

    def _enqueued(self, task: Any, result_id: str, arguments: dict[str, Any]) -> Any:
        result = self._result(task, result_id, arguments, enqueued_at=timezone.now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def _result(
        self, task: Any, result_id: str, arguments: dict[str, Any], enqueued_at: datetime | None
    ) -> Any:
        return TaskResult(
            task=task,
            id=result_id,
            status=TaskResultStatus.READY,
            enqueued_at=enqueued_at,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=arguments["args"],
            kwargs=arguments["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

    # Results -----------------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        job, attempts = self.app.portal.call(self._read(result_id))
        return to_task_result(job, attempts, result_id, self.alias)

    async def aget_result(self, result_id: str) -> Any:
        job, attempts = await self._on_portal(self._read(result_id))
        return to_task_result(job, attempts, result_id, self.alias)

    async def _read(self, result_id: str) -> tuple[JobDescriptor, list[AttemptRecord]]:
        try:
            job_id = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        client = self.app.client
        job = await client.aget(job_id)
        if job is None:  # enqueued on commit: stored under its key
            job = await client.afind_by_idempotency_key(PENDING_KEY.format(job_id))
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        return job, await client.aattempts(job.job_id)

    async def _on_portal(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the App's own loop (one connection pool for the process, whichever loop
        awaits), without blocking the caller's."""
        loop = self.app.portal.loop
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))


def _aware(at: datetime | None) -> datetime | None:
    if at is None or timezone.is_aware(at):
        return at
    aware: datetime = timezone.make_aware(at)  # USE_TZ = False: Django's times are local
    return aware


__all__ = ["JobworkerBackend", "app_for", "close_apps"]
