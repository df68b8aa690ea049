"""What every command shares: loading the app, the `--app` / `--database-url` option block,
and turning our errors into one line and exit code 2."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import click

from jobworker.app import App, find_app
from jobworker.client import Client
from jobworker.definitions import import_object
from jobworker.display import printable
from jobworker.errors import JobworkerError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class BadInput(click.ClickException):
    """A one-line error and exit code 2."""

    exit_code = 2

    def format_message(self) -> str:
        return printable(self.message, keep="\n")


def friendly_errors(fn: F) -> F:
    """Our own errors (bad URL, unknown job, bad arguments...) become one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JobworkerError as exc:
            raise BadInput(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def load_app(app_path: str | None, database_url: str | None) -> App:
    """The App a command works on. It is not bound: the command uses its client directly. Its
    connections are named for the command line (`run` and `beat` rename them)."""
    if app_path:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        app = find_app(import_object(app_path), database_url=database_url)
    else:
        app = App(database_url, bind=False) if database_url else App(bind=False)
    app.application_name = "jobworker cli"
    return app


def load_module_app(module: str, database_url: str | None) -> App:
    """The App of the module `run` and `beat` serve; an import failure is one error, exit 2."""
    return friendly_errors(load_app)(module, database_url)


class Target(NamedTuple):
    """Where a command's client works: the `--app` module and the `--database-url`."""

    app_path: str | None
    database_url: str | None

    def load(self) -> App:
        return load_app(self.app_path, self.database_url)

    def call(self, call: Callable[[Client], T]) -> T:
        """Load the app, make one client call, and close the app again."""
        app = self.load()
        try:
            return call(app.client)
        finally:
            app.close()


database_option = click.option(
    "--database-url",
    metavar="URL",
    help="Where jobs are stored (overrides the App and JOBWORKER_DATABASE_URL).",
)
_app_option = click.option(
    "--app",
    "app_path",
    envvar="JOBWORKER_APP",
    metavar="MODULE[:ATTR]",
    help="Module that defines the jobs (and optionally an App).",
)


def target_options(fn: Callable[..., T]) -> Callable[..., T]:
    """`--app` and `--database-url`, given to the command as one `target`; our errors become
    one line and exit code 2."""

    @_app_option
    @database_option
    @friendly_errors
    @functools.wraps(fn)
    def command(*args: Any, app_path: str | None, database_url: str | None, **kwargs: Any) -> T:
        return fn(*args, target=Target(app_path, database_url), **kwargs)

    return command


def name_command(
    group: click.Group, command: str, help: str, call: Callable[[Client, str], object], done: str
) -> None:
    """Add `GROUP COMMAND NAME`: one client call on NAME, then `done` (with NAME) on stdout."""

    @group.command(command, help=help)
    @click.argument("name")
    @target_options
    def run_command(name: str, target: Target) -> None:
        target.call(lambda client: call(client, name))
        click.echo(done.format(name))
