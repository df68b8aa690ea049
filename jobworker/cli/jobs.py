"""Commands on jobs: enqueue, status, jobs (a table), cancel, retry, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
import msgspec

from jobworker.cli.common import BadInput, Target, target_options
from jobworker.cli.format import cancel_message, format_descriptor, format_table, own_labels
from jobworker.cli.unserved import warn_unserved
from jobworker.client import Client
from jobworker.models import JobDescriptor, ScheduleOptions


@click.command()
@click.argument("name")
@target_options
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
def enqueue(
    name: str,
    target: Target,
    args_json: str,
    run_at: str | None,
    queue: str | None,
    priority: int | None,
    idempotency_key: str | None,
) -> None:
    """Enqueue job NAME; prints its id."""
    if not target.app_path:
        raise BadInput("enqueue needs the job definitions: pass --app MODULE or set JOBWORKER_APP")
    arguments = _arguments(args_json)
    options = ScheduleOptions(
        run_at=_instant(run_at), queue=queue, priority=priority, idempotency_key=idempotency_key
    )
    handle = target.call(lambda client: client.enqueue(name, arguments, options))
    click.echo(str(handle.job_id))


def _arguments(args_json: str) -> dict[str, Any]:
    try:
        arguments = msgspec.json.decode(args_json)
    except msgspec.DecodeError as exc:
        raise BadInput(f"--args is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise BadInput("--args must be a JSON object")
    return arguments


def _instant(run_at: str | None) -> datetime | None:
    if not run_at:
        return None
    try:
        return datetime.fromisoformat(run_at)
    except ValueError:
        raise BadInput(f"--run-at {run_at!r} is not an ISO 8601 date and time") from None


@click.command()
@click.argument("job_id")
@target_options
def status(job_id: str, target: Target) -> None:
    """Print job JOB_ID as JSON."""
    job = target.call(lambda client: client.get(job_id))
    if job is None:
        raise BadInput(f"no job with id {job_id}")
    click.echo(format_descriptor(job))


@click.command()
@target_options
@click.option("--status", "status_filter", default=None, help="Only jobs in this status.")
@click.option("--kind", default=None, help="Only jobs of this kind (user or system).")
@click.option("--type", "job_type", default=None, help="Only jobs of this name.")
@click.option("--queue", default=None, help="Only jobs in this queue.")
@click.option(
    "--search",
    default=None,
    metavar="TEXT",
    help="Only jobs whose name or id holds TEXT (ignoring case).",
)
@click.option(
    "--before",
    default=None,
    metavar="ID",
    help="Only jobs older than job ID: the next page after a page ending with ID.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
def jobs(
    target: Target,
    status_filter: str | None,
    kind: str | None,
    job_type: str | None,
    queue: str | None,
    search: str | None,
    before: str | None,
    limit: int,
    offset: int,
) -> None:
    """List jobs, newest first, as a table. A full page ends with the --before ID of the next
    page (on standard error)."""

    def listing(client: Client) -> list[JobDescriptor]:
        rows = client.list(
            status=status_filter,
            kind=kind,
            job_type=job_type,
            queue=queue,
            search=search,
            before=before,
            limit=limit,
            offset=offset,
        )
        click.echo(format_table(rows, own_labels(client.type_labels())))
        if rows.unreadable:
            count = len(rows.unreadable)
            click.echo(f"{count} row(s) of this page could not be read:", err=True)
            for line in rows.unreadable:
                click.echo(f"  {line}", err=True)
        if rows.next_before is not None:
            click.echo(f"next page: --before {rows.next_before}", err=True)
        warn_unserved(client, rows, "{n} waiting job(s) listed")
        return rows

    target.call(listing)


@click.command()
@click.argument("job_id")
@target_options
@click.option("--reason", default="cancelled from the command line", show_default=True)
def cancel(job_id: str, target: Target, reason: str) -> None:
    """Cancel job JOB_ID (a running job is asked to stop)."""
    result = target.call(lambda client: client.cancel(job_id, reason))
    click.echo(cancel_message(job_id, result))


@click.command()
@click.argument("job_id")
@target_options
def retry(job_id: str, target: Target) -> None:
    """Queue dead job JOB_ID again."""
    target.call(lambda client: client.retry(job_id))
    click.echo(f"job {job_id} queued again")


@click.command()
@click.argument("job_id")
@target_options
def delete(job_id: str, target: Target) -> None:
    """Delete job JOB_ID with its attempts and events."""
    target.call(lambda client: client.delete(job_id))
    click.echo(f"job {job_id} deleted")


COMMANDS = [enqueue, status, jobs, cancel, retry, delete]
