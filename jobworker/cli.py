"""The `jobworker` command. The only composition root: it builds apps, workers and supervisors."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import msgspec
import setproctitle

from jobworker import codec
from jobworker._version import __version__
from jobworker.app import App, find_app
from jobworker.beat import Beat
from jobworker.client import Client
from jobworker.definitions import import_object
from jobworker.errors import AppImportError, JobworkerError
from jobworker.events.model import Lifecycle
from jobworker.models import CancelResult, EventKind, JobDescriptor, JobStatus, ScheduleOptions
from jobworker.recurring import BeatStatus, RecurringJob
from jobworker.storage import DIALECTS, schema_sql
from jobworker.supervisor import Supervisor, SupervisorOptions
from jobworker.terminal import EXIT_CODES, TailView

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"


class BadInput(click.ClickException):
    """A one-line error and exit code 2."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


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
    if app_path:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return find_app(import_object(app_path), database_url=database_url)
    return App(database_url) if database_url else App()


app_option = click.option(
    "--app",
    "app_path",
    envvar="JOBWORKER_APP",
    metavar="MODULE[:ATTR]",
    help="Module that defines the jobs (and optionally an App).",
)
database_option = click.option(
    "--database-url",
    metavar="URL",
    help="Where jobs are stored (overrides the App and JOBWORKER_DATABASE_URL).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobworker")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    envvar="JOBWORKER_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def main(log_level: str) -> None:
    """jobworker: durable, typed, streaming background jobs."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)


@main.command()
@click.argument("module", metavar="MODULE[:ATTR]")
@database_option
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1),
    default=os.cpu_count() or 1,
    show_default="CPU count",
    help="Worker processes.",
)
@click.option(
    "--parallelism",
    "-p",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Jobs each worker process runs at once.",
)
@click.option(
    "--queues",
    "-q",
    default=None,
    help="Comma-separated queues (default: the default queue and those jobs declare).",
)
@click.option(
    "--max-jobs-per-child",
    type=click.IntRange(1),
    default=None,
    help="Replace a worker process after it has run this many jobs.",
)
@click.option(
    "--max-memory-per-child",
    type=click.FloatRange(min=1),
    default=None,
    metavar="MB",
    help="Replace a worker process whose resident memory exceeds this.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="On SIGTERM, how long running jobs may finish before they are released.",
)
@click.option(
    "--heartbeat-timeout",
    type=click.FloatRange(min=1),
    default=None,
    metavar="S",
    help="Kill a worker process whose event loop is stuck this long.",
)
def run(
    module: str,
    database_url: str | None,
    concurrency: int,
    parallelism: int,
    queues: str | None,
    max_jobs_per_child: int | None,
    max_memory_per_child: float | None,
    drain_timeout: float | None,
    heartbeat_timeout: float | None,
) -> None:
    """Run worker processes for the jobs MODULE defines."""
    try:
        app = load_app(module, database_url)
    except AppImportError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except JobworkerError as exc:
        raise BadInput(str(exc)) from None
    if not len(app.registry):
        raise BadInput(f"module {module!r} defines no @job")
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    supervisor = Supervisor(
        app,
        SupervisorOptions(
            concurrency=concurrency,
            parallelism=parallelism,
            queues=queue_list,
            max_jobs_per_child=max_jobs_per_child,
            max_memory_per_child=max_memory_per_child,
            drain_timeout=drain_timeout,
            heartbeat_timeout=heartbeat_timeout,
            title=module,
        ),
    )
    try:
        code = supervisor.run()
    except JobworkerError as exc:
        raise BadInput(str(exc)) from None
    sys.exit(code)


@main.command()
@click.argument("name")
@app_option
@database_option
@click.option(
    "--args",
    "args_json",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="The job's arguments as a JSON object.",
)
@click.option(
    "--run-at", default=None, metavar="ISO", help="Run at this instant (ISO 8601, with offset)."
)
@click.option("--queue", default=None)
@click.option("--priority", type=int, default=None)
@click.option("--idempotency-key", default=None)
@friendly_errors
def enqueue(
    name: str,
    app_path: str | None,
    database_url: str | None,
    args_json: str,
    run_at: str | None,
    queue: str | None,
    priority: int | None,
    idempotency_key: str | None,
) -> None:
    """Enqueue job NAME; prints its id."""
    if not app_path:
        raise BadInput("enqueue needs the job definitions: pass --app MODULE or set JOBWORKER_APP")
    try:
        arguments = msgspec.json.decode(args_json)
    except msgspec.DecodeError as exc:
        raise BadInput(f"--args is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise BadInput("--args must be a JSON object")
    when = None
    if run_at:
        try:
            when = datetime.fromisoformat(run_at)
        except ValueError:
            raise BadInput(f"--run-at {run_at!r} is not an ISO 8601 date and time") from None
    options = ScheduleOptions(
        run_at=when, queue=queue, priority=priority, idempotency_key=idempotency_key
    )
    handle = with_client(
        app_path, database_url, lambda client: client.enqueue(name, arguments, options)
    )
    click.echo(str(handle.job_id))


def with_client(app_path: str | None, database_url: str | None, call: Callable[[Client], T]) -> T:
    """Load the app, make one client call, and close the app again."""
    app = load_app(app_path, database_url)
    try:
        return call(app.client)
    finally:
        app.close()


def name_command(
    group: click.Group, command: str, help: str, call: Callable[[Client, str], object], done: str
) -> None:
    """Add `GROUP COMMAND NAME`: one client call on NAME, then `done` (with NAME) on stdout."""

    @group.command(command, help=help)
    @click.argument("name")
    @app_option
    @database_option
    @friendly_errors
    def run_command(name: str, app_path: str | None, database_url: str | None) -> None:
        with_client(app_path, database_url, lambda client: call(client, name))
        click.echo(done.format(name))


def render_table(rows: list[tuple[str, ...]], *, empty: str) -> str:
    """Rows (the first is the header) as aligned columns; `empty` under a header alone."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if len(rows) == 1:
        lines.append(empty)
    return "\n".join(lines)


def descriptor_json(job: JobDescriptor) -> dict[str, Any]:
    data: dict[str, Any] = codec.to_builtins(job)
    return data


@main.command()
@click.argument("job_id")
@app_option
@database_option
@friendly_errors
def status(job_id: str, app_path: str | None, database_url: str | None) -> None:
    """Print job JOB_ID as JSON."""
    job = with_client(app_path, database_url, lambda client: client.get(job_id))
    if job is None:
        raise BadInput(f"no job with id {job_id}")
    click.echo(msgspec.json.format(codec.encode(descriptor_json(job)), indent=2).decode())


@main.command()
@app_option
@database_option
@click.option("--status", "status_filter", default=None, help="Only jobs in this status.")
@click.option("--type", "job_type", default=None, help="Only jobs of this name.")
@click.option("--queue", default=None, help="Only jobs in this queue.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@friendly_errors
def jobs(
    app_path: str | None,
    database_url: str | None,
    status_filter: str | None,
    job_type: str | None,
    queue: str | None,
    limit: int,
    offset: int,
) -> None:
    """List jobs, newest first, as a table."""
    rows = with_client(
        app_path,
        database_url,
        lambda client: client.list(
            status=status_filter, job_type=job_type, queue=queue, limit=limit, offset=offset
        ),
    )
    click.echo(format_table(rows))


def format_table(rows: list[JobDescriptor]) -> str:
    headers: tuple[str, ...] = ("JOB ID", "TYPE", "STATUS", "ATTEMPT", "QUEUE", "ENQUEUED", "ERROR")
    table: list[tuple[str, ...]] = [headers] + [
        (
            str(job.job_id),
            job.job_type,
            job.status.value,
            f"{job.attempt}/{job.max_attempts}",
            job.queue,
            job.enqueued_at.strftime("%Y-%m-%d %H:%M:%S"),
            (job.error or "").splitlines()[0][:60] if job.error else "",
        )
        for job in rows
    ]
    return render_table(table, empty="(no jobs)")


@main.command()
@click.argument("job_id")
@app_option
@database_option
@click.option("--reason", default="cancelled from the command line", show_default=True)
@friendly_errors
def cancel(job_id: str, app_path: str | None, database_url: str | None, reason: str) -> None:
    """Cancel job JOB_ID (a running job is asked to stop)."""
    result = with_client(app_path, database_url, lambda client: client.cancel(job_id, reason))
    messages = {
        CancelResult.CANCELLED: f"job {job_id} cancelled",
        CancelResult.REQUESTED: f"job {job_id} is running: its worker has been asked to stop it",
        CancelResult.FINISHED: f"job {job_id} had already finished: nothing to cancel",
    }
    click.echo(messages[result])


@main.command()
@click.argument("job_id")
@app_option
@database_option
@friendly_errors
def retry(job_id: str, app_path: str | None, database_url: str | None) -> None:
    """Queue dead job JOB_ID again."""
    with_client(app_path, database_url, lambda client: client.retry(job_id))
    click.echo(f"job {job_id} queued again")


@main.command()
@click.argument("job_id")
@app_option
@database_option
@friendly_errors
def delete(job_id: str, app_path: str | None, database_url: str | None) -> None:
    """Delete job JOB_ID with its attempts and events."""
    with_client(app_path, database_url, lambda client: client.delete(job_id))
    click.echo(f"job {job_id} deleted")


@main.group()
def queues() -> None:
    """List, pause and resume queues."""


@queues.command("list")
@app_option
@database_option
@friendly_errors
def queues_list(app_path: str | None, database_url: str | None) -> None:
    """Every queue with its job counts and whether it is paused."""
    infos = with_client(app_path, database_url, lambda client: client.queues())
    columns = (
        "queued",
        "scheduled",
        "awaiting",
        "running",
        "failed",
        "succeeded",
        "dead",
        "cancelled",
    )
    header = ("QUEUE", "STATE", *(c.upper() for c in columns))
    rows: list[tuple[str, ...]] = [header] + [
        (q.name, "paused" if q.paused else "active", *(str(q.counts.get(c, 0)) for c in columns))
        for q in infos
    ]
    click.echo(render_table(rows, empty="(no queues)"))


name_command(
    queues,
    "pause",
    "Stop every worker claiming from queue NAME (running jobs carry on).",
    Client.pause_queue,
    "queue {} paused",
)
name_command(
    queues,
    "resume",
    "Let workers claim from queue NAME again.",
    Client.resume_queue,
    "queue {} resumed",
)


@main.command()
@app_option
@database_option
@click.option(
    "--schema",
    default=None,
    help="PostgreSQL schema (default: the database_schema setting, jobworker).",
)
@friendly_errors
def migrate(app_path: str | None, database_url: str | None, schema: str | None) -> None:
    """Create or upgrade the jobworker schema in the database."""
    app = load_app(app_path, database_url)
    if schema:
        app = App(registry=app.registry, settings=app.settings.replace(database_schema=schema))

    async def apply() -> list[int]:
        storage = app.create_storage()
        await storage.open()
        try:
            return await storage.schema.migrate()
        finally:
            await storage.close()

    applied = asyncio.run(apply())
    where = app.dialect
    if where == "sqlite":
        click.echo("sqlite: the schema is ready (SQLite creates and upgrades it on first use)")
        return
    where += f" (schema {app.settings.database_schema})"
    if applied:
        click.echo(f"applied schema version(s) {', '.join(map(str, applied))} to {where}")
    else:
        click.echo(f"{where}: the schema is up to date")


@main.command()
@click.argument("job_id")
@app_option
@database_option
@click.option(
    "--from-seq",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Show only events after this sequence number (resume where you left off).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@friendly_errors
def tail(
    job_id: str, app_path: str | None, database_url: str | None, from_seq: int, as_json: bool
) -> None:
    """Follow a job's events live until it ends.

    Exit status: 0 if the job succeeded, 1 if it ended dead, 3 if it was cancelled.
    """
    app = load_app(app_path, database_url)
    out = sys.stdout
    view = TailView(out, tty=out.isatty())

    async def follow() -> JobStatus | None:
        try:
            async for event in app.client.stream_typed(job_id, from_seq):
                if as_json:
                    click.echo(codec.encode(event).decode())
                else:
                    view.show(event)
                lifecycle = event.data if event.kind is EventKind.LIFECYCLE else None
                if isinstance(lifecycle, Lifecycle) and lifecycle.terminal:
                    return lifecycle.status
            return None
        finally:
            view.close()
            await app.aclose()

    try:
        final = asyncio.run(follow())
    except (ValueError, JobworkerError) as exc:
        raise BadInput(str(exc)) from None
    except KeyboardInterrupt:
        sys.exit(130)
    if final is None:
        raise BadInput(f"job {job_id} no longer exists")
    sys.exit(EXIT_CODES[final])


@main.command("sql")
@click.option("--dialect", type=click.Choice(DIALECTS), required=True)
@click.option("--schema", default="jobworker", show_default=True, help="PostgreSQL schema name.")
@friendly_errors
def sql_command(dialect: str, schema: str) -> None:
    """Print the schema scripts, for your own migration tool (Alembic, Django, Flyway...)."""
    for version, name, text in schema_sql(dialect, schema):
        click.echo(f"-- jobworker schema version {version} ({name})")
        click.echo(text.rstrip() + "\n")


# Beat and recurring jobs --------------------------------------------------------------------


@main.command("beat")
@click.argument("module", metavar="MODULE[:ATTR]", required=False)
@database_option
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Print who leads and each recurring job's next fire, then exit.",
)
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
def beat_command(
    module: str | None, database_url: str | None, show_status: bool, as_json: bool
) -> None:
    """Run beat for the jobs MODULE defines: cron ticks, lease rescue and the janitor, done by
    one leader among any number of beat processes."""
    if show_status:
        status = friendly_errors(with_client)(
            module, database_url, lambda client: client.beat_status()
        )
        click.echo(format_beat_status(status, as_json=as_json))
        return
    if not module:
        raise BadInput("beat needs the module that defines the jobs: jobworker beat MODULE")
    try:
        app = load_app(module, database_url)
    except AppImportError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except JobworkerError as exc:
        raise BadInput(str(exc)) from None
    setproctitle.setproctitle(f"jobworker: beat [{module}]")
    try:
        asyncio.run(_run_beat(Beat(app)))
    except JobworkerError as exc:
        raise BadInput(str(exc)) from None


async def _run_beat(beat: Beat) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, beat.request_stop)
    await beat.run()


def _when(instant: datetime | None) -> str:
    return "-" if instant is None else instant.strftime("%Y-%m-%d %H:%M:%S%z")


def format_beat_status(status: BeatStatus, *, as_json: bool) -> str:
    if as_json:
        data = codec.to_builtins(status)
        for item, record in zip(data["recurring"], status.recurring, strict=True):
            item["args"] = msgspec.json.decode(record.args)  # the arguments, not base64
        return msgspec.json.format(codec.encode(data), indent=2).decode()
    leader = status.leader
    if leader is None:
        head = "leader: none (no live beat leader: workers do lease rescue and the janitor)"
    else:
        head = (
            f"leader: {leader.holder} by {leader.mechanism}, since {_when(leader.since)} "
            f"(renewed {_when(leader.renewed_at)})"
        )
    return head + "\n\n" + format_recurring(status.recurring)


def format_recurring(records: list[RecurringJob]) -> str:
    header: tuple[str, ...] = ("NAME", "JOB", "CRON", "TIMEZONE", "STATE", "LAST FIRE", "NEXT FIRE")
    rows: list[tuple[str, ...]] = [header] + [
        (
            r.name,
            r.job_type,
            r.cron,
            r.timezone,
            "enabled" if r.enabled else "disabled",
            _when(r.last_fire_at),
            _when(r.next_fire_at) if r.enabled else "-",
        )
        for r in records
    ]
    return render_table(rows, empty="(no recurring jobs)")


@main.group()
def recurring() -> None:
    """List, enable, disable and run recurring (cron) jobs."""


@recurring.command("list")
@app_option
@database_option
@friendly_errors
def recurring_list(app_path: str | None, database_url: str | None) -> None:
    """Every recurring job with its schedule and its last and next fire."""
    records = with_client(app_path, database_url, lambda client: client.list_recurring())
    click.echo(format_recurring(records))


name_command(
    recurring,
    "enable",
    "Fire recurring job NAME again, from its next scheduled time.",
    Client.enable_recurring,
    "recurring job {} enabled",
)
name_command(
    recurring,
    "disable",
    "Stop firing recurring job NAME (it stays disabled when beat restarts).",
    Client.disable_recurring,
    "recurring job {} disabled",
)


@recurring.command("run")
@click.argument("name")
@app_option
@database_option
@friendly_errors
def recurring_run(name: str, app_path: str | None, database_url: str | None) -> None:
    """Enqueue recurring job NAME's job now, once; prints its id."""
    if not app_path:
        raise BadInput("run needs the job definitions: pass --app MODULE or set JOBWORKER_APP")
    handle = with_client(app_path, database_url, lambda client: client.run_recurring(name))
    click.echo(str(handle.job_id))


if __name__ == "__main__":  # pragma: no cover
    main()
