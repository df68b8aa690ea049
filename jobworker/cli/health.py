"""`jobworker health`: the database, Redis, live workers and beat's leader, one line per check,
and an exit code per outcome (the table is in `jobworker.health.report` and docs/health.md)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import click

from jobworker.cli.common import Target, target_options
from jobworker.cli.format import format_json
from jobworker.health.checks import Check
from jobworker.health.report import check_everything, exit_code, overall


@click.command("health")
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    metavar="S",
    help="How long each check may take before it counts as failed.",
)
def health(target: Target, as_json: bool, timeout: float) -> None:
    """Check the database (and its schema version), Redis when configured, the worker processes
    alive and beat's leader. Exit code: 0 healthy, 1 warnings only, 3 no live worker process,
    4 Redis unreachable, 5 database unreachable or schema not current (the most severe wins);
    2 is bad input, as for every command."""
    app = target.load()
    try:
        checks = asyncio.run(check_everything(app.settings, timeout))
    finally:
        app.close()
    code = exit_code(checks)
    click.echo(format_report(checks, code) if as_json else format_lines(checks))
    sys.exit(code)


def format_lines(checks: Sequence[Check]) -> str:
    """One line per check: its name, status, time taken and detail, in aligned columns."""
    width = max(len(check.name) for check in checks)
    return "\n".join(
        f"{check.name:<{width}}  {check.status.value:<4}  {check.seconds * 1000:5.0f} ms  "
        f"{check.detail}"
        for check in checks
    )


def format_report(checks: Sequence[Check], code: int) -> str:
    return format_json(
        {"status": overall(checks), "exit_code": code, "checks": list(checks)}, indent=2
    )
