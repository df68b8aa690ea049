"""`jobworker types`: the job-type catalogue as a table (or JSON)."""

from __future__ import annotations

from datetime import datetime

import click
import msgspec

from jobworker import codec
from jobworker.cli.common import Target, target_options
from jobworker.cli.format import format_json, render_table
from jobworker.models import JobType

# The display name goes last: an icon is one character wide to Python but two in a terminal.
HEADER: tuple[str, ...] = ("TYPE", "KIND", "QUEUE", "CRON", "LAST SEEN", "DISPLAY NAME")


@click.command("types")
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per job type.")
def types(target: Target, as_json: bool) -> None:
    """Every job type a worker process or beat has declared (the job-type catalogue): its kind,
    queue, cron, when a process last started with it, and its display name and icon. A type no
    code declares any more stays listed, with the last time it was seen."""
    rows = target.call(lambda client: client.job_types())
    click.echo(format_json(types_json(rows), indent=2) if as_json else format_types(rows))


def types_json(rows: list[JobType]) -> list[dict[str, object]]:
    """The rows as JSON objects, each argument schema as the JSON object it is, not as text."""
    found: list[dict[str, object]] = []
    for row in rows:
        item: dict[str, object] = codec.to_builtins(row)
        if row.args_schema is not None:
            item["args_schema"] = msgspec.json.decode(row.args_schema)
        found.append(item)
    return found


def format_types(rows: list[JobType]) -> str:
    table: list[tuple[str, ...]] = [HEADER] + [
        (
            row.name,
            row.kind.value,
            row.queue,
            f"{row.cron} ({row.timezone or 'UTC'})" if row.cron else "-",
            _when(row.last_seen),
            f"{row.icon} {row.display_name}" if row.icon else row.display_name,
        )
        for row in rows
    ]
    return render_table(table, empty="(no job types: no worker or beat has started yet)")


def _when(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%S%z")
