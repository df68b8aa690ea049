"""What a worker process needs before it forks: Django set up, every task imported (and so
registered as a job type), and the App of the chosen backend."""

from __future__ import annotations

from importlib import import_module

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils.module_loading import module_has_submodule

from jobworker.app import App
from jobworker.contrib.django import jobs
from jobworker.contrib.django.backend import JobworkerBackend
from jobworker.contrib.django.compat import Task, task_backends


def worker_app(alias: str = "default") -> App:
    """The App that runs the tasks of `TASKS[alias]`: imports each installed app's `tasks`
    module and the backend's `TASK_MODULES`, so that every task is a registered job type."""
    backend = task_backends[alias]
    if not isinstance(backend, JobworkerBackend):
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}] is {type(backend).__module__}.{type(backend).__qualname__}, "
            "not jobworker.contrib.django.JobworkerBackend"
        )
    names = [
        f"{config.name}.tasks"
        for config in apps.get_app_configs()
        if module_has_submodule(config.module, "tasks")
    ]
    for name in [*names, *backend.config.task_modules]:
        # A task declared for another backend (`@task(backend="other")`) may still be sent
        # here with `.using(backend=...)`: every task of these modules is a job type.
        for value in vars(import_module(name)).values():
            if isinstance(value, Task):
                jobs.register(value, backend.config.max_attempts, type(backend))
    # Nothing opened here may cross fork(): each worker process opens its own connections.
    connections.close_all()
    return backend.app
