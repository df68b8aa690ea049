"""`manage.py jobworker ARGS...`: the `jobworker` command, on the database and settings of a
`TASKS` backend (`--backend`, default "default"): `manage.py jobworker migrate`,
`manage.py jobworker jobs --status dead`,
`manage.py jobworker run jobworker.contrib.django.worker`."""

from __future__ import annotations

import argparse
import os
from typing import Any

import msgspec
from django.core.management.base import BaseCommand, CommandError

from jobworker.cli import main
from jobworker.config import ENV_PREFIX, Settings
from jobworker.contrib.django.backend import JobworkerBackend
from jobworker.contrib.django.compat import task_backends


class Command(BaseCommand):  # type: ignore[misc]
    help = "Run a jobworker command on the database of a TASKS backend."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--backend", default="default", help="The TASKS alias.")
        parser.add_argument("jobworker_args", nargs=argparse.REMAINDER, metavar="ARGS")

    def handle(self, *args: Any, backend: str, jobworker_args: list[str], **options: Any) -> None:
        instance = task_backends[backend]
        if not isinstance(instance, JobworkerBackend):
            raise CommandError(f"TASKS[{backend!r}] is not the jobworker backend")
        os.environ.update(settings_environment(instance.config.settings))
        os.environ["JOBWORKER_DJANGO_BACKEND"] = backend
        try:
            main.main(args=jobworker_args, prog_name="manage.py jobworker")
        except SystemExit as exc:  # click always ends this way; 0 is success
            if exc.code:
                code = exc.code if isinstance(exc.code, int) else 1
                raise CommandError(f"jobworker exited with {code}", returncode=code) from None


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as the `JOBWORKER_*` variables the command reads (those not at defaults)."""
    defaults = Settings()
    changed = {
        name: getattr(settings, name)
        for name in Settings.__struct_fields__
        if getattr(settings, name) != getattr(defaults, name)
    }
    return {
        ENV_PREFIX + name.upper(): str(msgspec.to_builtins(value))
        for name, value in changed.items()
        if value is not None
    }
