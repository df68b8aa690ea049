"""Django tasks as jobworker jobs: one job type per task, named by the task's module path, whose
handler runs the task in the worker between Django's `task_started` and `task_finished`.

Every task a jobworker backend validates is registered here, in one registry for the process
(backends are made per thread; their tasks are the same)."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from jobworker.context import JobContext
from jobworker.contrib.django.compat import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from jobworker.contrib.django.errors import exception_class_path
from jobworker.definitions import Registry, build_definition

registry = Registry()  # every Django task of this process, by module path
_tasks: dict[str, Any] = {}  # module path -> the Task whose function the job runs
_lock = threading.Lock()


def register(task: Any, max_attempts: int, sender: type) -> None:
    """Make `task` a job type (once per module path; `.using()` copies share it)."""
    name = task.module_path
    with _lock:
        if name in _tasks:
            return
        handler = _async_handler(name, sender) if iscoroutinefunction(task.func) else None
        definition = build_definition(
            handler or _sync_handler(name, sender),
            name=name,
            display_name=task.name,
            description=(task.func.__doc__ or "").strip().split("\n\n")[0] or None,
            queue=task.queue_name,
            priority=task.priority,
            max_attempts=max_attempts,
        )
        registry.register(definition)
        _tasks[name] = task


def registered_task(name: str) -> Any | None:
    return _tasks.get(name)


def _sync_handler(name: str, sender: type) -> Callable[..., Any]:
    def run_django_task(
        ctx: JobContext[Any], args: list[Any], kwargs: dict[str, Any], backend: str = "default"
    ) -> Any:
        task = _tasks[name]
        result = _running(task, ctx, args, kwargs, backend)
        close_old_connections()  # as Django does around a request: CONN_MAX_AGE holds
        try:
            task_started.send(sender, task_result=result)
            try:
                value = task.call(*_call_args(task, result, args), **kwargs)
                value = normalize_json(value)
            except Exception as exc:
                _finish(result, exc)
                task_finished.send(sender, task_result=result)
                raise
            _finish(result, None, value)
            task_finished.send(sender, task_result=result)
            return value
        finally:
            close_old_connections()

    return run_django_task


def _async_handler(name: str, sender: type) -> Callable[..., Any]:
    async def run_django_task(
        ctx: JobContext[Any], args: list[Any], kwargs: dict[str, Any], backend: str = "default"
    ) -> Any:
        task = _tasks[name]
        result = _running(task, ctx, args, kwargs, backend)
        await task_started.asend(sender, task_result=result)
        try:
            value = normalize_json(await task.acall(*_call_args(task, result, args), **kwargs))
        except Exception as exc:
            _finish(result, exc)
            await task_finished.asend(sender, task_result=result)
            raise
        _finish(result, None, value)
        await task_finished.asend(sender, task_result=result)
        return value

    return run_django_task


def _call_args(task: Any, result: Any, args: list[Any]) -> list[Any]:
    return [TaskContext(task_result=result), *args] if task.takes_context else args


def _running(
    task: Any, ctx: JobContext[Any], args: list[Any], kwargs: dict[str, Any], alias: str
) -> Any:
    """The TaskResult the signals and a task's context see while it runs. Earlier attempts'
    workers are not read here: `worker_ids` holds this worker once for each attempt so far, so
    that `context.attempt` is right (`get_result` reads the real ones)."""
    now = timezone.now()
    return TaskResult(
        task=task,
        id=str(ctx.job_id),
        status=TaskResultStatus.RUNNING,
        enqueued_at=ctx.enqueued_at,
        started_at=now,
        last_attempted_at=now,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=[ctx.worker_id] * ctx.attempt,
    )


def _finish(result: Any, exc: BaseException | None, value: Any = None) -> None:
    object.__setattr__(result, "finished_at", timezone.now())
    if exc is None:
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
        return
    object.__setattr__(result, "status", TaskResultStatus.FAILED)
    error = TaskError(exception_class_path=exception_class_path(type(exc)), traceback=_trace(exc))
    result.errors.append(error)


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


__all__ = ["Task", "register", "registered_task", "registry"]
