"""`jobworker workers`: the worker registry as a table (or JSON)."""

from __future__ import annotations

from datetime import datetime

import click

from jobworker import codec
from jobworker.cli.common import Target, target_options
from jobworker.cli.format import format_json, render_table
from jobworker.models import WorkerInfo

HEADER: tuple[str, ...] = (
    "HOST",
    "PID",
    "ROLE",
    "MODULE",
    "QUEUES",
    "SLOTS",
    "RUNNING",
    "STARTED",
    "LAST HEARTBEAT",
    "STATE",
)


@click.command("workers")
@target_options
@click.option("--live", is_flag=True, help="Leave out the processes marked gone.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per process.")
def workers(target: Target, live: bool, as_json: bool) -> None:
    """Every supervisor, worker process and beat with its row in the worker registry: what it
    serves, its slots, the jobs it runs now and its last heartbeat. A process whose heartbeat
    went stale (killed, or stalled) shows as gone until the janitor removes it."""
    rows = target.call(lambda client: client.workers(include_gone=not live))
    click.echo(format_json(codec.to_builtins(rows), indent=2) if as_json else format_workers(rows))


def format_workers(rows: list[WorkerInfo]) -> str:
    table: list[tuple[str, ...]] = [HEADER] + [
        (
            row.host,
            str(row.pid),
            row.role.value,
            row.module or "-",
            ",".join(row.queues) or "-",
            str(row.slots),
            str(row.running),
            _when(row.started_at),
            _when(row.last_heartbeat),
            "gone" if row.gone else "live",
        )
        for row in rows
    ]
    return render_table(table, empty="(no workers)")


def _when(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%S%z")
