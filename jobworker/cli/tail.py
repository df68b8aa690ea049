"""`jobworker tail`: follow a job's events live until it ends; the exit status is its outcome."""

from __future__ import annotations

import asyncio
import sys

import click

from jobworker.app import App
from jobworker.cli.common import BadInput, Target, target_options
from jobworker.cli.format import format_json
from jobworker.errors import JobworkerError
from jobworker.events.model import Lifecycle
from jobworker.models import EventKind, JobStatus
from jobworker.terminal import EXIT_CODES, TailView


@click.command()
@click.argument("job_id")
@target_options
@click.option(
    "--from-seq",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Show only events after this sequence number (resume where you left off).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def tail(job_id: str, target: Target, from_seq: int, as_json: bool) -> None:
    """Follow a job's events live until it ends.

    Exit status: 0 if the job succeeded, 1 if it ended dead, 3 if it was cancelled.
    """
    app = target.load()
    try:
        final = asyncio.run(_follow(app, job_id, from_seq, as_json=as_json))
    except (ValueError, JobworkerError) as exc:
        raise BadInput(str(exc)) from None
    except KeyboardInterrupt:
        sys.exit(130)
    if final is None:
        raise BadInput(f"job {job_id} no longer exists")
    sys.exit(EXIT_CODES[final])


async def _follow(app: App, job_id: str, from_seq: int, *, as_json: bool) -> JobStatus | None:
    """Show the job's events until its terminal one; its final status (None: it was deleted)."""
    out = sys.stdout
    view = TailView(out, tty=out.isatty())
    try:
        async for event in app.client.stream_typed(job_id, from_seq):
            if as_json:
                click.echo(format_json(event))
            else:
                view.show(event)
            lifecycle = event.data if event.kind is EventKind.LIFECYCLE else None
            if isinstance(lifecycle, Lifecycle) and lifecycle.terminal:
                return lifecycle.status
        return None
    finally:
        view.close()
        await app.aclose()
