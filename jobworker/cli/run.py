"""The long-running commands: `run` (the supervisor and its workers) and `beat`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import click
import setproctitle

from jobworker.beat import Beat
from jobworker.cli.common import (
    BadInput,
    Target,
    database_option,
    friendly_errors,
    load_module_app,
)
from jobworker.cli.format import format_beat_status
from jobworker.errors import JobworkerError
from jobworker.supervisor import Supervisor, SupervisorOptions


@click.command()
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
    default=None,
    help="Jobs each worker process runs at once, async and sync alike, on as many threads "
    "(default: --async-slots and --thread-slots).",
)
@click.option(
    "--async-slots",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Without --parallelism: async jobs each worker process runs at once "
    "[default: the async_slots setting, 100].",
)
@click.option(
    "--thread-slots",
    type=click.IntRange(1),
    default=None,
    metavar="N",
    help="Without --parallelism: sync jobs each worker process runs at once, its threads "
    "[default: the thread_slots setting, 10].",
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
    "--max-start-failures",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    metavar="N",
    help="Stop (exit code 1) when this many worker processes in a row die as they start.",
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
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="PORT",
    help="Serve /healthz and /readyz on this port, from a process of the supervisor's own.",
)
@click.option(
    "--health-host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="The address --health-port listens on.",
)
def run(
    module: str,
    database_url: str | None,
    concurrency: int,
    parallelism: int | None,
    async_slots: int | None,
    thread_slots: int | None,
    queues: str | None,
    max_jobs_per_child: int | None,
    max_memory_per_child: float | None,
    max_start_failures: int,
    drain_timeout: float | None,
    heartbeat_timeout: float | None,
    health_port: int | None,
    health_host: str,
) -> None:
    """Run worker processes for the jobs MODULE defines."""
    if parallelism is not None and (async_slots is not None or thread_slots is not None):
        raise BadInput(
            "--parallelism sets one set of slots for both kinds of handler: "
            "give it, or --async-slots and --thread-slots"
        )
    app = load_module_app(module, database_url)
    app.application_name = "jobworker supervisor"  # its helper processes' too
    if not len(app.registry):
        raise BadInput(f"module {module!r} defines no @job")
    # Jobs that enqueue jobs (`.delay()` in a handler) write where these workers run, which is
    # not the module's own App when --database-url moved it.
    app.bind(replace=True)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    supervisor = Supervisor(
        app,
        SupervisorOptions(
            concurrency=concurrency,
            parallelism=parallelism,
            async_slots=async_slots,
            thread_slots=thread_slots,
            queues=queue_list,
            max_jobs_per_child=max_jobs_per_child,
            max_memory_per_child=max_memory_per_child,
            max_start_failures=max_start_failures,
            drain_timeout=drain_timeout,
            heartbeat_timeout=heartbeat_timeout,
            title=module,
            health_port=health_port,
            health_host=health_host,
        ),
    )
    sys.exit(friendly_errors(supervisor.run)())


@click.command("beat")
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
        status = friendly_errors(Target(module, database_url).call)(
            lambda client: client.beat_status()
        )
        click.echo(format_beat_status(status, as_json=as_json))
        return
    if not module:
        raise BadInput("beat needs the module that defines the jobs: jobworker beat MODULE")
    app = load_module_app(module, database_url)
    app.application_name = "jobworker beat"
    setproctitle.setproctitle(f"jobworker: beat [{module}]")
    try:
        asyncio.run(_run_beat(Beat(app, module=module)))
    except JobworkerError as exc:
        raise BadInput(str(exc)) from None


async def _run_beat(beat: Beat) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, beat.request_stop)
    await beat.run()


COMMANDS = [run, beat_command]
